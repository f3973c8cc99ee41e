"""Careless input to the plugin and its tools: damaged or foreign checkpoints, non-UTF-8 and out-of-vocabulary
edit files, folders given as output files, a diverging patch: one line naming the file, no silent <unk>."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch

import editable_fairseq.tasks  # noqa: F401
from editable_core import make_editor
from editable_core.errors import InputError
from editable_fairseq.checkpoints import load_checkpoint
from editable_fairseq.cli import evaluate as evaluate_tool
from editable_fairseq.cli import patch as patch_tool
from editable_fairseq.cli.common import EditSettings, run_tool
from editable_fairseq.cli.decoding import make_generator
from editable_fairseq.edit_samples import read_edit_samples
from editable_fairseq.editing import HYPER_SHAPE

from tests.fairseq.conftest import make_toy_task


def _damaged(folder: Path) -> dict[str, Path]:
    torch.save({"a": torch.ones(2)}, folder / "ok.pt")
    data = (folder / "ok.pt").read_bytes()
    paths = {name: folder / f"{name}.pt" for name in ("empty", "truncated", "garbage", "refused", "vision")}
    paths["empty"].write_bytes(b"")
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["garbage"].write_bytes(b"not a checkpoint\n" * 20)
    torch.save({"x": Fraction(1, 3)}, paths["refused"])
    torch.save({"format": "editable_vision/1", "model_spec": {}, "state_dict": {}}, paths["vision"])
    return paths


@pytest.mark.parametrize("kind, message", [
    ("empty", "the file is empty"), ("truncated", "truncated or not a torch checkpoint"),
    ("garbage", "truncated or not a torch checkpoint"), ("refused", "pickles a fractions.Fraction object"),
    ("vision", "not a fairseq checkpoint"),
])
def test_damaged_refused_or_foreign_checkpoints_are_named_in_one_line(kind, message, tmp_path, capsys):
    path = _damaged(tmp_path)[kind]
    with pytest.raises(InputError, match=message) as error:
        load_checkpoint(str(path))
    assert str(error.value).startswith(f"{path}: ") and "weights_only=False" not in str(error.value)
    with pytest.raises(SystemExit) as exit_:
        patch_tool.main([str(path), "--out", str(tmp_path / "out.pt"), "--source", "a", "--target", "b"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"editable-fairseq-patch: error: {error.value}"
    assert not (tmp_path / "out.pt").exists()


def test_a_bug_keeps_its_traceback():
    def broken():
        raise KeyError("best_loss")

    with pytest.raises(KeyError, match="best_loss"):
        run_tool("tool", broken)


def _tsv(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_edit_files_that_are_not_utf8_or_hold_unknown_word_pieces_name_file_and_line(tmp_path):
    task = make_toy_task()
    good = b"ich hund sieht .\ti sees dog .\ti sees cat ."
    bad_bytes = _tsv(tmp_path / "latin1.tsv", [good, "ich hund sieht .\ti sees d\u00f6g .\tx".encode("latin-1")])
    with pytest.raises(ValueError, match=rf"^{bad_bytes}:2: not UTF-8 text .*; save the file as UTF-8$"):
        read_edit_samples(str(bad_bytes), task.src_dict, task.tgt_dict)
    unknown = _tsv(tmp_path / "oov.tsv", [good, b"ich hund sieht .\ti sees zebra .\ti sees cat ."])
    with pytest.raises(ValueError, match=rf"^{unknown}:2: the target field \(column 2\) has word-pieces the "
                                         "dictionary does not know: zebra"):
        read_edit_samples(str(unknown), task.src_dict, task.tgt_dict)
    samples = read_edit_samples(str(unknown), task.src_dict, task.tgt_dict, allow_unk=True)  # the explicit opt-in
    assert int(samples[1].target[2]) == task.tgt_dict.unk()
    explicit = _tsv(tmp_path / "unk.tsv", [b"ich hund sieht .\ti sees <unk> .\ti sees cat ."])  # a written <unk>
    assert len(read_edit_samples(str(explicit), task.src_dict, task.tgt_dict)) == 1
    # training reads the same way, with --edit-allow-unk as the opt-in
    with pytest.raises(ValueError, match=rf"{unknown}:2: the target field"):
        make_toy_task(edit_samples=str(unknown)).prepare_edits()
    make_toy_task(edit_samples=str(unknown), edit_allow_unk=True).prepare_edits()


def test_patch_pairs_that_are_not_utf8_name_the_line(tmp_path):
    pairs = _tsv(tmp_path / "fixes.tsv", [b"a\tb", "c\td\u00e9".encode("latin-1")])
    with pytest.raises(ValueError, match=rf"^{pairs}:2: not UTF-8 text"):
        patch_tool.read_pairs(str(pairs))


def test_output_files_that_are_folders_are_refused(tmp_path):
    edits = _tsv(tmp_path / "e.tsv", [b"a\tb\tc"])
    args = evaluate_tool.build_parser().parse_args([str(tmp_path), "--path", str(edits), "--edits", str(edits),
                                                    "--json", str(tmp_path)])
    with pytest.raises(ValueError, match=rf"--json {tmp_path}: is a folder; give a file path"):
        evaluate_tool.evaluate(args)


@pytest.mark.parametrize("lr, diverged", [(1e4, True), (1e-9, False)])
def test_a_failed_patch_says_whether_the_edit_diverged(fresh_toy, lr, diverged):
    setup = fresh_toy
    model, task = setup.model, setup.task
    settings = EditSettings(make_editor("gd", lr, False, shape=HYPER_SHAPE), lr, 2, "last", None)
    generator = make_generator(model, task.tgt_dict, beam=2)
    source = setup.encode_source("ich hund sieht .")
    target = setup.encode_target("dog dog dog sees i .")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    outcome = patch_tool.patch_one(model, task, settings, generator, source, target, alternatives=2, rounds=1)
    assert not outcome.success and outcome.diverged is diverged
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # a failed fix is undone
