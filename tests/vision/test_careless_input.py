"""Careless and hostile input to ``python -m editable_vision`` and the API: one line naming the file and what
to do, never a traceback for expected failures (bugs keep theirs), no silent wrong result, clean interrupts."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from editable_core.errors import EDIT_FAILED_STATUS, InputError
from editable_vision import load
from editable_vision.checkpoint import read_checkpoint
from editable_vision.cli import edit as edit_command
from editable_vision.cli import main
from editable_vision.data import load_image_folder
from editable_vision.loop import sigint_deferred

from .conftest import tiny_trainer

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--width", "4", "--image-size", "8", "--batch-size", "64", "--threads", "1", "--quiet"]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A plain run of 2 epochs (1 batch each), finished."""
    path = tmp_path_factory.mktemp("careless") / "run.pt"
    assert main(["train", "--mode", "plain", *TINY, "--epochs", "2", "--max-batches", "1", "--out", str(path)]) == 0
    return path


def test_resume_takes_the_epochs_of_the_run_not_the_default(digits, tmp_path, capsys):
    path = tmp_path / "half.pt"
    trainer = tiny_trainer(digits, epochs=3, max_batches=1)
    trainer.train_epoch()
    trainer.save(str(path))  # a 3-epoch run stopped after its first epoch
    assert main(["train", "--resume", "--out", str(path), "--quiet", "--threads", "1"]) == 0
    saved = read_checkpoint(path)["trainer"]
    assert saved["epoch"] == 3 and saved["config"]["epochs"] == 3  # not the default 10
    assert saved["config"]["schedule"] == "constant"  # tiny_trainer's, not the command line's default cosine


def test_resume_refuses_flags_that_disagree_and_extends_only_when_asked(finished, capsys):
    before = finished.read_bytes()
    assert main(["train", "--resume", "--out", str(finished), "--quiet"]) == 1
    assert error_line(capsys).endswith(f"the run in {finished} already finished its 2 epochs; pass --epochs N "
                                       "(N > 2) to extend it")
    assert main(["train", "--resume", "--out", str(finished), "--epochs", "3", "--lr", "0.5", "--quiet"]) == 1
    assert "--lr 0.5 disagrees with the run's 0.001" in error_line(capsys)
    assert main(["train", "--resume", "--out", str(finished), "--epochs", "3", "--mode", "editable", "--quiet"]) == 1
    assert "--mode editable disagrees with the run's plain" in error_line(capsys)
    assert main(["train", "--resume", "--out", str(finished), "--epochs", "3", "--batch-norm", "frozen",
                 "--quiet"]) == 1
    assert "--batch-norm frozen disagrees with the run's batch" in error_line(capsys)
    assert main(["train", "--resume", "--out", str(finished), "--epochs", "3", "--edit-lr", "0.1", "--quiet"]) == 1
    assert "--edit-lr cannot be given" in error_line(capsys)
    assert finished.read_bytes() == before
    # a flag equal to the run's is fine; --epochs larger than the run's extends it
    assert main(["train", "--resume", "--out", str(finished), "--epochs", "3", "--mode", "plain", "--batch-size",
                 "64", "--quiet", "--threads", "1"]) == 0
    saved = read_checkpoint(finished)["trainer"]
    assert saved["epoch"] == 3 and saved["config"]["epochs"] == 3


def test_zero_epochs_is_an_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "zero.pt"
    assert main(["train", "--mode", "plain", *TINY, "--epochs", "0", "--out", str(out)]) == 1
    assert "--epochs 0: a run needs at least 1 epoch" in error_line(capsys)
    assert not out.exists()


def test_ctrl_c_inside_a_checkpoint_write_is_raised_when_the_write_is_done():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with sigint_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # Python runs a signal handler between bytecodes: give it the chance
                done.append("written")
        assert done == ["written"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with sigint_deferred():  # no Ctrl-C: nothing raised
            done.append("again")
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_training_prints_one_line_and_exits_130(tmp_path):
    out = tmp_path / "long.pt"
    proc = subprocess.Popen([sys.executable, "-m", "editable_vision", "train", "--mode", "plain", *TINY, "--epochs",
                             "1000", "--max-batches", "1", "--out", str(out)], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            # a shell's background job inherits SIGINT ignored, and Python then keeps it so
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 600  # a shared, busy CPU can make the first epoch slow
        while not out.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert out.exists(), "no checkpoint was written"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and "Traceback" not in stderr
    epoch = read_checkpoint(out)["trainer"]["epoch"]
    assert stderr.strip().splitlines()[-1] == (f"python -m editable_vision train: interrupted; last complete "
                                               f"checkpoint {out}, epoch {epoch}; continue with --resume --out {out}")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_a_failed_edit_writes_nothing_and_exits_3(finished, tmp_path, capsys):
    model = load(str(finished))
    from editable_vision.data import load_digits

    prediction = int(model.predict(load_digits(image_size=8).test[0][0]))
    out = tmp_path / "edited.pt"
    assert main(["edit", "--checkpoint", str(finished), "--index", "0", "--label", str((prediction + 1) % 10),
                 "--edit-lr", "1e-12", "--edit-max-steps", "1", "--out", str(out), "--quiet"]) == EDIT_FAILED_STATUS
    assert f"the edit did not succeed within 1 steps; {out} was not written" in error_line(capsys)
    assert not out.exists()


def test_more_edits_than_images_is_an_error(finished, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(finished), "--num-edits", "100000", "--quiet"]) == 1
    line = error_line(capsys)
    assert "--num-edits 100000: only" in line and "images to edit (the test set)" in line


def test_finetuning_a_torchvision_model_needs_weights_or_an_explicit_random_init(tmp_path, capsys, caplog):
    out = tmp_path / "ft.pt"
    assert main(["finetune", "--arch", "resnet18", "--data", "digits", "--out", str(out), "--quiet"]) == 1
    line = error_line(capsys)
    assert "without --weights would fine-tune a randomly initialised network" in line
    assert os.path.join(torch.hub.get_dir(), "checkpoints") in line and "--random-init" in line
    assert not out.exists()
    assert main(["finetune", "--arch", "resnet18", "--random-init", "--data", "digits", "--channels", "3",
                 "--image-size", "8", "--extra-layer", "0", "--mode", "distill", "--max-batches", "1", "--threads",
                 "1", "--out", str(out)]) == 0
    assert "the model has 1000 outputs but the data has 10 classes" in caplog.text


def damaged(folder: Path) -> dict[str, Path]:
    torch.save({"a": torch.ones(2)}, folder / "ok.pt")
    data = (folder / "ok.pt").read_bytes()
    files = {"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"not a checkpoint\n" * 20}
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.pt"
        paths[name].write_bytes(content)
    paths["refused"] = folder / "refused.pt"
    torch.save({"x": Fraction(1, 3)}, paths["refused"])
    return paths


def test_damaged_or_refused_checkpoints_are_one_line_naming_the_file(tmp_path, capsys):
    for kind, path in damaged(tmp_path).items():
        for argv in (["evaluate", "--checkpoint", str(path)], ["edit", "--checkpoint", str(path), "--index", "0",
                                                               "--label", "1"]):
            assert main([*argv, "--quiet"]) == 1, kind
            line = error_line(capsys)
            assert f"{path}: " in line and "weights_only=False" not in line, line
            expected = "fractions.Fraction object" if kind == "refused" else \
                ("the file is empty" if kind == "empty" else "truncated or not a torch checkpoint")
            assert expected in line
        with pytest.raises(InputError, match=str(path)):
            load(str(path))


def test_output_paths_that_are_folders_are_refused_before_any_work(finished, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(finished), "--json", str(tmp_path), "--quiet"]) == 1
    assert f"--json {tmp_path}: is a folder; give a file path" in error_line(capsys)
    assert main(["train", "--mode", "plain", *TINY, "--out", str(tmp_path)]) == 1
    assert f"--out {tmp_path}: is a folder" in error_line(capsys)


def test_image_tensors_of_another_float_dtype_are_converted_and_integers_refused(finished, tmp_path, capsys):
    from editable_vision.data import load_digits

    image = load_digits(image_size=8).test[0][0]
    model = load(str(finished))
    assert torch.equal(model.predict(image.double()), model.predict(image))
    torch.save(image.double(), tmp_path / "f64.pt")
    assert main(["edit", "--checkpoint", str(finished), "--image", str(tmp_path / "f64.pt"), "--label", "1",
                 "--quiet"]) == 0
    torch.save((image * 10).to(torch.uint8), tmp_path / "u8.pt")
    assert main(["edit", "--checkpoint", str(finished), "--image", str(tmp_path / "u8.pt"), "--label", "1",
                 "--quiet"]) == 1
    assert "expected a float tensor [C, H, W], got torch.uint8" in error_line(capsys)


def test_a_corrupt_image_in_an_image_folder_is_named(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "test" / name).mkdir(parents=True)
        Image.new("RGB", (10, 10), (200, 10, 10)).save(tmp_path / "test" / name / "good.png")
    bad = tmp_path / "test" / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    data = load_image_folder(None, str(tmp_path / "test"), image_size=8)
    assert data.test[0][0].shape == (3, 8, 8)
    with pytest.raises(InputError, match=rf"{bad}: not a readable image .*; remove or replace the file"):
        [data.test[i] for i in range(len(data.test))]


def test_a_bug_keeps_its_traceback(finished, monkeypatch):
    def broken(args):
        raise KeyError("internal")

    monkeypatch.setattr(edit_command, "cmd_edit", broken)
    with pytest.raises(KeyError, match="internal"):
        main(["edit", "--checkpoint", str(finished), "--index", "0", "--label", "1", "--quiet"])

