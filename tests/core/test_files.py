import os
import signal
import subprocess
import sys

import pytest
import torch

from editable_core import atomic_open, save_atomically
from editable_core.files import temporaries


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


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_writer_killed_mid_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    path = tmp_path / "model.pt"
    code = ("import os, signal, sys; from editable_core import atomic_open\n"
            "with atomic_open(sys.argv[1], 'wb') as f:\n    f.write(b'half'); f.flush(); os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert len(temporaries(path)) == 1 and not path.exists()
    save_atomically({"w": torch.ones(1)}, path)
    assert os.listdir(tmp_path) == ["model.pt"]


def test_only_stale_temporaries_of_the_same_target_are_removed(tmp_path):
    path = tmp_path / "a.pt"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {"dead": f".a.pt.{_dead_pid()}.abcd1234.tmp", "old": ".a.pt.k2j4h5g6.tmp",
                 "live": f".a.pt.{live.pid}.abcd1234.tmp", "other": f".b.pt.{_dead_pid()}.abcd1234.tmp",
                 "unrelated": ".a.pt.notes"}
        for name in names.values():
            (tmp_path / name).write_bytes(b"x")
        save_atomically({}, path)
    finally:
        live.kill()
        live.wait()
    left = set(os.listdir(tmp_path))
    assert left == {"a.pt", names["live"], names["other"], names["unrelated"]}


def test_data_and_folder_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "e.tsv"
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("x\n")
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[0][1].endswith(".tmp") and os.path.basename(events[0][1]).startswith(".e.tsv.")
    assert events[1][1] == str(path) and events[2][1] == str(tmp_path)
