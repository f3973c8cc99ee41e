"""Edit samples: TSV parsing with file:line errors, writing, batching into fairseq tensors."""
from __future__ import annotations

import pytest
import torch

from editable_fairseq.edit_samples import (EditSample, collate_edit, format_edit_line, read_edit_samples,
                                           write_edit_samples)

from .conftest import toy_dictionary


@pytest.fixture
def vocab():
    return toy_dictionary()


def test_reads_source_target_and_all_alternatives_ending_in_eos(tmp_path, vocab):
    path = tmp_path / "edits.tsv"
    path.write_text("ich sieht .\ti sees .\tyou sees .\the sees .\n"
                    "du hat .\tyou has .\ti has .\n")
    samples = read_edit_samples(str(path), vocab, vocab)
    assert len(samples) == 2
    first = samples[0]
    assert vocab.string(first.source) == "ich sieht ."
    assert vocab.string(first.target) == "i sees ."
    assert [vocab.string(a) for a in first.alternatives] == ["you sees .", "he sees ."]
    assert all(seq[-1].item() == vocab.eos() for seq in (first.source, first.target, *first.alternatives))
    assert len(samples[1].alternatives) == 1


@pytest.mark.parametrize("bad_line, message", [
    ("ich sieht .\ti sees .\n", "expected source<TAB>target<TAB>alternative_1"),
    ("ich sieht .\t\tyou sees .\n", "target field (column 2) is empty"),
    ("ich sieht .\ti sees .\t \n", "alternative 1 field (column 3) is empty"),
    ("\n", "expected source<TAB>target<TAB>alternative_1"),
])
def test_a_malformed_line_is_an_error_naming_file_and_line(tmp_path, vocab, bad_line, message):
    path = tmp_path / "edits.tsv"
    path.write_text("ich sieht .\ti sees .\tyou sees .\n" + bad_line)
    with pytest.raises(ValueError) as err:
        read_edit_samples(str(path), vocab, vocab)
    assert f"{path}:2:" in str(err.value)
    assert message in str(err.value)


def test_too_long_sequences_and_missing_or_empty_files_are_errors(tmp_path, vocab):
    path = tmp_path / "edits.tsv"
    path.write_text("ich sieht .\ti sees .\tyou sees you sees .\n")
    with pytest.raises(ValueError, match=r"edits.tsv:1: alternative 1 has 6 tokens .* max_target_positions 5"):
        read_edit_samples(str(path), vocab, vocab, max_target_positions=5)
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        read_edit_samples(str(tmp_path / "missing.tsv"), vocab, vocab)
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(ValueError, match="empty.tsv: no edit samples"):
        read_edit_samples(str(tmp_path / "empty.tsv"), vocab, vocab)


def test_written_tsv_reads_back_identically(tmp_path, vocab):
    line = "ich hund sieht .\ti sees dog .\ti dog sees .\tdog sees i ."
    sample = read_edit_samples(_write(tmp_path / "a.tsv", line + "\n"), vocab, vocab)[0]
    assert format_edit_line(sample, vocab, vocab) == line
    assert write_edit_samples(str(tmp_path / "b.tsv"), [sample, sample], vocab, vocab) == 2
    again = read_edit_samples(str(tmp_path / "b.tsv"), vocab, vocab)
    assert len(again) == 2 and torch.equal(again[1].target, sample.target)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".edits-")] == []


def test_collate_puts_target_first_and_moves_eos_to_the_front(vocab):
    enc = lambda text: vocab.encode_line(text, add_if_not_exist=False).long()  # noqa: E731
    sample = EditSample(enc("ich sieht ."), enc("i sees ."), (enc("you sees it ."), enc("he .")))
    batch = collate_edit(sample, vocab.pad(), vocab.eos())
    assert batch.src_tokens.shape == (1, 4) and batch.src_lengths.tolist() == [4]
    assert batch.target.shape == (3, 5) and batch.num_sequences == 3
    assert torch.equal(batch.target[0, :4], sample.target)
    assert batch.target[2, 3:].tolist() == [vocab.pad(), vocab.pad()]
    assert batch.prev_output_tokens[:, 0].tolist() == [vocab.eos()] * 3
    assert torch.equal(batch.prev_output_tokens[1, 1:], batch.target[1, :-1])


def test_an_edit_needs_an_alternative(vocab):
    tokens = torch.tensor([5, 2])
    with pytest.raises(ValueError, match="at least one alternative"):
        EditSample(tokens, tokens, ())


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)
