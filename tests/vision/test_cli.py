"""The command line through its real entry point, ``python -m editable_vision``, on tiny settings:
train (plain, editable, resume), finetune, evaluate (tables 3 and 1, sequential, generalisation) and
edit, each checked through the JSON it writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from editable_core import ControlSet
from editable_vision import load
from editable_vision.cli import main, resolve_device
from editable_vision.data import load_digits, stack
from editable_vision.evaluate import evaluate, make_edit_set

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--width", "4", "--image-size", "8", "--batch-size", "64", "--threads", "1", "--quiet"]


def cli(*args: str) -> dict:
    """Run ``python -m editable_vision ARGS --json PATH`` and return the JSON it wrote."""
    json_path = [a for a in args if a.endswith(".json")]
    out = subprocess.run([sys.executable, "-m", "editable_vision", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "|" in out.stdout  # the printed markdown table
    return json.loads(Path(json_path[0]).read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Checkpoints of a plain run, an editable run resumed for a second epoch, and a fine-tuning run (the last two
    in channels-last memory)."""
    d = tmp_path_factory.mktemp("cli")
    plain = cli("train", "--mode", "plain", *TINY, "--epochs", "2", "--max-batches", "6", "--lr", "3e-3",
                "--out", str(d / "plain.pt"), "--json", str(d / "plain.json"))
    cli("train", "--mode", "editable", *TINY, "--epochs", "1", "--max-batches", "2", "--edit-backprop", "truncated:2",
        "--loc-batch", "3", "--out", str(d / "ed.pt"), "--json", str(d / "ed1.json"))
    resumed = cli("train", "--resume", "--epochs", "2", "--threads", "1", "--quiet", "--out", str(d / "ed.pt"),
                  "--json", str(d / "ed2.json"), "--channels-last")  # a speed setting: free on --resume
    tuned = cli("finetune", "--from", str(d / "plain.pt"), "--extra-layer", "16", "--freeze", "stem,chain1",
                "--channels-last",
                "--max-batches", "2", "--lr", "1e-3", "--lr-extra", "1e-2", "--threads", "1", "--quiet",
                "--out", str(d / "ft.pt"), "--json", str(d / "ft.json"))
    return d, plain, resumed, tuned


def test_train_and_finetune_json(runs):
    d, plain, resumed, tuned = runs
    assert plain["config"]["mode"] == "plain" and len(plain["history"]) == 2
    assert plain["model_spec"] == {"arch": "cifar_resnet18", "width": 4, "num_classes": 10, "in_channels": 1}
    assert plain["history"][1]["loss"] < plain["history"][0]["loss"] < 2.5
    assert resumed["config"]["mode"] == "editable" and [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][1]["step"] == 4 and "l_edit" in resumed["history"][1]
    assert resumed["config"]["backprop"] == "truncated:2"  # the resumed run keeps its gradient mode
    assert resumed["config"]["loc_batch"] == 3 and plain["config"]["loc_batch"] is None
    assert tuned["config"]["mode"] == "finetune" and tuned["config"]["freeze"] == ["stem", "chain1"]
    assert tuned["model_spec"]["extra_layer"] == 16
    base, ft = load(str(d / "plain.pt")), load(str(d / "ft.pt"))
    assert ft.part == "extra" and ft.param_names[0].startswith("extra.")
    for part in ("stem", "chain1"):  # frozen: bit for bit the plain model's
        for (name, a), (_, b) in zip(base.module.get_submodule(part).state_dict().items(),
                                     ft.module.get_submodule(part).state_dict().items()):
            assert torch.equal(a, b), name


def test_evaluate_table3_sequential_generalisation(runs):
    d = runs[0]
    result = cli("evaluate", "--checkpoint", f"base={d / 'plain.pt'}", "--checkpoint", f"ft={d / 'ft.pt'}",
                 "--editors", "trained,gd:0.01", "--num-edits", "4", "--control-limit", "60", "--sequential", "2",
                 "--runs", "1", "--generalisation", "2", "--threads", "1", "--quiet", "--json", str(d / "ev.json"))
    rows = result["rows"]
    assert [(r["procedure"], r["editor"], r["part"]) for r in rows] == [
        ("base", "rmsprop", "chain3"), ("base", "gd", "chain3"), ("ft", "rmsprop", "extra"), ("ft", "gd", "extra")]
    assert all(r["num_edits"] == 4 and 0 <= r["drawdown"] <= 1 and 0 <= r["success_rate"] <= 1 for r in rows)
    assert rows[1]["lr"] == pytest.approx(0.01)
    assert len(result["sequential"]["base"][0]) == 3 and len(result["generalisation"]) == 2
    assert (d / "sequential.png").stat().st_size > 0
    # the same numbers, re-computed here from the checkpoint with the same edits (seed 0 + 9)
    torch.set_num_threads(1)
    editable = load(str(d / "plain.pt"))
    images, labels = stack(load_digits(image_size=8).test, 60)
    edits = make_edit_set(editable, images, 4, seed=9)
    metrics = evaluate(editable, ControlSet(editable, images, labels), edits, progress=False)
    for key, value in metrics.as_dict().items():
        assert rows[0][key] == pytest.approx(value, abs=1e-6), key


def test_evaluate_table1_sweep(runs):
    d = runs[0]
    result = cli("evaluate", "--table", "1", "--checkpoint", str(d / "plain.pt"), "--editors", "gd,rmsprop",
                 "--parts", "chain3,all", "--lr-grid", "0.001,0.01", "--num-edits", "2", "--control-limit", "40",
                 "--threads", "1", "--quiet", "--json", str(d / "t1.json"))
    sweep = result["sweeps"]["plain"]
    assert len(sweep) == 2 * 2 * 2 and {r["part"] for r in sweep} == {"chain3", "all"}
    assert (d / "editors_plain.png").stat().st_size > 0
    # the tuned row of each editor: least drawdown among the rows with success >= 95%, else most successful
    for best in result["tuned"]["plain"]:
        members = [r for r in sweep if r["editor"] == best["editor"]]
        ok = [r for r in members if r["success_rate"] >= 0.95]
        assert best["drawdown"] == (min(r["drawdown"] for r in ok) if ok else best["drawdown"])
        assert best in members


def test_evaluate_table2_in_process(runs, capsys):
    d = runs[0]
    assert main(["evaluate", "--table", "2", "--checkpoint", f"base={d / 'plain.pt'}", "--editors", "gd,rmsprop",
                 "--parts", "chain3,head", "--lr-grid", "0.01", "--num-edits", "2", "--control-limit", "30",
                 "--quiet", "--json", str(d / "t2.json")]) == 0
    text = capsys.readouterr().out
    assert "| Editable Layers | Chain 3 | Final linear |" in text and "| RMSProp |" in text
    tuned = json.loads((d / "t2.json").read_text())["tuned"]["base"]
    assert sorted((r["editor"], r["part"]) for r in tuned) == [("gd", "chain3"), ("gd", "head"),
                                                               ("rmsprop", "chain3"), ("rmsprop", "head")]


def test_edit_command_and_errors(runs, capsys):
    d = runs[0]
    result = cli("edit", "--checkpoint", str(d / "plain.pt"), "--index", "0", "--label", "3", "--edit-lr", "0.01",
                 "--out", str(d / "edited.pt"), "--threads", "1", "--quiet", "--json", str(d / "edit.json"))
    assert result["label"] == 3 and result["part"] == "chain3"
    assert result["success"] == (result["prediction_after"] == 3)
    edited = load(str(d / "edited.pt"))
    image = load_digits(image_size=8).test[0][0]
    assert int(edited.predict(image)) == result["prediction_after"]
    # errors: one line on stderr naming the problem, exit status 1 (in-process: the same main())
    assert main(["edit", "--checkpoint", str(d / "plain.pt"), "--index", "0", "--label", "42", "--quiet"]) == 1
    assert "label 42 out of range" in capsys.readouterr().err
    assert main(["edit", "--checkpoint", str(d / "plain.pt"), "--index", "0", "--label", "1", "--part", "chain9",
                 "--quiet"]) == 1
    assert "unknown part 'chain9'" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(d / "missing.pt"), "--quiet"]) == 1
    assert "missing.pt' does not exist" in capsys.readouterr().err
    bad_image = d / "bad.pt"
    torch.save(torch.zeros(3, 8, 8), bad_image)
    assert main(["edit", "--checkpoint", str(d / "plain.pt"), "--image", str(bad_image), "--label", "1",
                 "--quiet"]) == 1
    assert "expected an image of shape [1, 8, 8]" in capsys.readouterr().err


def test_train_rejects_an_unknown_backprop_mode(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--edit-backprop", "truncated:0", "--out", "unused.pt"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --edit-backprop: backprop must be 'full', 'first_order' or 'truncated:m'" in err


@pytest.mark.parametrize("value", ["0", "-2", "half"])
def test_train_rejects_a_bad_loc_batch(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--loc-batch", value, "--out", "unused.pt"])
    assert exit_.value.code == 2
    assert f"argument --loc-batch: expected an integer >= 1, got '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "finetune", "evaluate", "edit"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--json" in text and "--device" in text and "--workers" in text


def test_device_flag_falls_back_to_cpu_and_refuses_missing_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="--device cuda:0: CUDA is not available"):
        resolve_device("cuda:0")
