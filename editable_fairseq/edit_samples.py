"""Edit samples ``(s, y_0, {y_1..y_k})`` of section 4.4: reading and writing the TSV, batching into tensors.

TSV format, one edit per line, every field in the BPE space of the binarized data::

    source<TAB>target<TAB>alternative_1<TAB>...<TAB>alternative_k

``source`` is ``s``, ``target`` the desired translation ``y_0`` and the alternatives ``y_1..y_k`` the
translations it must outscore: ``l_e = max_i log p(y_i|s) - log p(y_0|s) <= 0``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from editable_core import atomic_open


@dataclass(frozen=True)
class EditSample:
    """One edit. Token tensors are 1-d int64 and end with the dictionary's ``eos``.

    source: ``s`` ``[S]``; target: ``y_0`` ``[T_0]``; alternatives: ``y_1..y_k``, each ``[T_i]``.
    """

    source: Tensor
    target: Tensor
    alternatives: tuple[Tensor, ...]

    def __post_init__(self) -> None:
        if not self.alternatives:
            raise ValueError("an edit needs at least one alternative translation")
        for name, tokens in (("source", self.source), ("target", self.target)):
            if tokens.dim() != 1 or tokens.numel() == 0:
                raise ValueError(f"edit {name} must be a non-empty 1-d token tensor, got shape "
                                 f"{tuple(tokens.shape)}")


@dataclass
class EditBatch:
    """One edit as fairseq tensors: the source once, target and alternatives as ``N = 1 + k`` rows.

    src_tokens: ``[1, S]``; src_lengths: ``[1]``; prev_output_tokens, target: ``[N, T]`` (row 0 is
    ``y_0``, rows ``1..k`` the alternatives), right-padded with ``pad``.
    """

    src_tokens: Tensor
    src_lengths: Tensor
    prev_output_tokens: Tensor
    target: Tensor
    pad: int

    @property
    def num_sequences(self) -> int:
        return self.target.size(0)


def collate_edit(edit: EditSample, pad: int, eos: int, device: Optional[torch.device] = None) -> EditBatch:
    """Batch one :class:`EditSample` the way ``LanguagePairDataset`` batches targets (eos moved to the front)."""
    from fairseq.data import data_utils

    sequences = [edit.target, *edit.alternatives]
    target = data_utils.collate_tokens(sequences, pad, eos, left_pad=False)
    prev = data_utils.collate_tokens(sequences, pad, eos, left_pad=False, move_eos_to_beginning=True)
    src = edit.source[None]
    lengths = torch.tensor([edit.source.numel()])
    return EditBatch(*(t.to(device) if device is not None else t for t in (src, lengths, prev, target)), pad=pad)


def _encode(dictionary, text: str) -> Tensor:
    return dictionary.encode_line(text, add_if_not_exist=False, append_eos=True).long()


def unknown_pieces(dictionary, text: str) -> list[str]:
    """The word-pieces of ``text`` that ``dictionary`` does not know (they would become ``<unk>``)."""
    return sorted({w for w in text.split() if dictionary.index(w) == dictionary.unk() and w != dictionary.unk_word})


def parse_edit_line(line: str, src_dict, tgt_dict, where: str = "<string>", allow_unk: bool = False) -> EditSample:
    """Parse one TSV line; ``where`` (``path:line``) prefixes every error message.

    A word-piece the dictionary does not know is an error (the edit would aim at ``<unk>``) unless ``allow_unk``.
    """
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) < 3:
        raise ValueError(f"{where}: expected source<TAB>target<TAB>alternative_1[<TAB>...], got "
                         f"{len(fields)} tab-separated field(s)")
    for index, field in enumerate(fields):
        if not field.strip():
            name = ("source", "target")[index] if index < 2 else f"alternative {index - 1}"
            raise ValueError(f"{where}: the {name} field (column {index + 1}) is empty")
        unknown = [] if allow_unk else unknown_pieces(src_dict if index == 0 else tgt_dict, field)
        if unknown:
            name = ("source", "target")[index] if index < 2 else f"alternative {index - 1}"
            raise ValueError(f"{where}: the {name} field (column {index + 1}) has word-pieces the dictionary does "
                             f"not know: {' '.join(unknown[:10])} (is the file in the BPE space of the data? "
                             "they would become <unk>)")
    source = _encode(src_dict, fields[0])
    target = _encode(tgt_dict, fields[1])
    alternatives = tuple(_encode(tgt_dict, f) for f in fields[2:])
    return EditSample(source, target, alternatives)


def read_utf8_lines(path: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 file; a line that is not UTF-8 is a ``ValueError`` naming ``path:line``."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number}: not UTF-8 text ({error.reason} at byte {error.start} of the "
                                 "line); save the file as UTF-8") from None


def read_edit_samples(path: str, src_dict, tgt_dict, max_source_positions: Optional[int] = None,
                      max_target_positions: Optional[int] = None, allow_unk: bool = False) -> list[EditSample]:
    """Read every edit of a TSV file. A malformed line raises ``ValueError`` naming ``path:line``."""
    if os.path.isdir(path):
        raise ValueError(f"edit samples file {path!r} is a folder")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"edit samples file {path!r} does not exist")
    samples: list[EditSample] = []
    for number, line in read_utf8_lines(path):
        where = f"{path}:{number}"
        sample = parse_edit_line(line, src_dict, tgt_dict, where, allow_unk)
        if max_source_positions is not None and sample.source.numel() > max_source_positions:
            raise ValueError(f"{where}: source has {sample.source.numel()} tokens (with eos), more than "
                             f"max_source_positions {max_source_positions}")
        if max_target_positions is not None:
            for i, seq in enumerate((sample.target, *sample.alternatives)):
                if seq.numel() > max_target_positions:
                    name = "target" if i == 0 else f"alternative {i}"
                    raise ValueError(f"{where}: {name} has {seq.numel()} tokens (with eos), more than "
                                     f"max_target_positions {max_target_positions}")
        samples.append(sample)
    if not samples:
        raise ValueError(f"{path}: no edit samples (the file is empty)")
    return samples


def unk_fraction(samples: Sequence[EditSample], unk: int) -> float:
    """Fraction of ``<unk>`` tokens over all sequences (a high value means the TSV is in another BPE space)."""
    total = unks = 0
    for s in samples:
        for seq in (s.source, s.target, *s.alternatives):
            total += seq.numel()
            unks += int((seq == unk).sum())
    return unks / max(total, 1)


def format_edit_line(sample: EditSample, src_dict, tgt_dict) -> str:
    """The TSV line of ``sample`` (tokens as dictionary symbols, eos dropped), without the newline."""
    fields = [src_dict.string(sample.source), tgt_dict.string(sample.target),
              *(tgt_dict.string(a) for a in sample.alternatives)]
    for field in fields:
        if "\t" in field or "\n" in field:
            raise ValueError(f"cannot write a field containing a tab or newline: {field!r}")
    return "\t".join(fields)


def write_edit_samples(path: str, samples: Iterable[EditSample], src_dict, tgt_dict) -> int:
    """Write ``samples`` as TSV atomically (temporary file + rename); returns the number written."""
    count = 0
    with atomic_open(path, "w", encoding="utf-8") as f:
        for sample in samples:
            f.write(format_edit_line(sample, src_dict, tgt_dict) + "\n")
            count += 1
    return count
