import os

import pytest
import torch

from editable_core import atomic_open, save_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "edits.tsv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError, match="bad line"):
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write("half")
            raise RuntimeError("bad line")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["edits.tsv"]


def test_save_atomically_round_trips_and_creates_the_folder(tmp_path):
    path = tmp_path / "new" / "model.pt"
    save_atomically({"w": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    assert os.listdir(path.parent) == ["model.pt"]


def test_a_payload_that_cannot_be_pickled_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_atomically({"value": torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_atomically({"value": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["value"], torch.ones(2))
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_append_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_open(tmp_path / "x", "a"):
            pass


def test_the_written_file_gets_the_mode_open_would_give(tmp_path):
    mask = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "a.tsv", "w", encoding="utf-8") as f:
            f.write("x\n")
        (tmp_path / "b.tsv").write_text("x\n")
    finally:
        os.umask(mask)
    modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in ("a.tsv", "b.tsv")}
    assert modes == {"a.tsv": 0o644, "b.tsv": 0o644}
