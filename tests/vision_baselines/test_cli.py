"""The commands through their real entry point: ``python -m editable_vision.baselines {table3,analysis}``."""
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from editable_vision.baselines.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--width", "2", "--epochs", "1", "--max-batches", "2", "--batch-size", "32", "--threads", "1", "--quiet"]
ROWS = [("Baseline Training", "RMSProp"), ("Baseline Training", "GD"), ("Editable Training", "RMSProp (trained)"),
        ("Baseline Training", "GD+EWC"), ("Baseline Training", "RMSProp+EWC"), ("DkNN k = 3", "Flip Labels"),
        ("DkNN k = 20", "Flip Labels"), ("Editable+CNP", "Cond. vector")]


@pytest.fixture(scope="module")
def table3_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("baselines")
    out = work / "table3.json"
    command = [sys.executable, "-m", "editable_vision.baselines", "table3", "--work-dir", str(work / "models"),
               "--num-edits", "6", "--fisher-samples", "32", "--dknn-k", "3,20", "--json", str(out), *TINY]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return work, json.loads(out.read_text()), done.stdout


def test_table3_has_every_row_on_the_same_edits(table3_run):
    work, payload, stdout = table3_run
    rows = payload["rows"]
    assert [(r["procedure"], r["editor"]) for r in rows] == ROWS
    assert len(payload["edit_targets"]) == 6 and all(r["num_edits"] == 6 for r in rows)
    for row in rows:
        assert 0 <= row["base_error"] <= 1 and 0 <= row["drawdown"] <= 1 and 0 <= row["success_rate"] <= 1
        iterative = row["procedure"] in ("Baseline Training", "Editable Training")
        assert (row["mean_steps"] is None) != iterative
    assert all(r["success_rate"] == 1.0 for r in rows if r["editor"] == "Flip Labels")
    assert all(r["mean_flips"] >= 0 for r in rows if r["editor"] == "Flip Labels")
    # the printed table has the header and every row, with n/a steps where there are none
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| Training Procedure | Editor Function") and len(lines) == 2 + len(ROWS)
    assert lines[-1].endswith("| n/a |")
    assert {p.name for p in (work / "models").iterdir()} >= {"plain.pt", "editable.pt", "cnp.pt"}


def test_analysis_reuses_the_models_and_writes_three_pngs(table3_run, tmp_path, capsys):
    work, _, _ = table3_run
    code = main(["analysis", "--work-dir", str(work / "models"), "--num-edits", "12", "--plot-dir", str(tmp_path),
                 "--json", str(tmp_path / "analysis.json"), *TINY])
    assert code == 0, capsys.readouterr().err
    payload = json.loads((tmp_path / "analysis.json").read_text())
    assert [m["model"] for m in payload["models"]] == ["Baseline", "Editable Training"]
    for model in payload["models"]:
        assert len(model["drawdown_matrix"]) == 10 and all(len(r) == 10 for r in model["drawdown_matrix"])
        curve = model["explained_variance"]
        assert all(a <= b + 1e-9 for a, b in zip(curve, curve[1:])) and curve[-1] <= 1 + 1e-6
    for name in ("drawdown_per_class", "edit_tsne", "edit_svd"):
        path = tmp_path / f"{name}.png"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 200
        assert path.stat().st_size < 200_000


@pytest.mark.parametrize("argv, message", [
    (["table3", "--methods", "baseline,magic"], "--methods: unknown method(s) ['magic']"),
    (["table3", "--dknn-k", "10,0"], "--dknn-k: every k must be an integer >= 1"),
    (["table3", "--dknn-k", "ten"], "--dknn-k must be a comma list of integers"),
    (["table3", "--ewc-weight", "-1"], "--ewc-weight must be >= 0"),
    (["table3", "--num-edits", "0"], "--num-edits must be >= 1"),
    (["analysis", "--num-edits", "2"], "--num-edits must be >= 4"),
])
def test_bad_input_gives_a_one_line_error(argv, message, capsys, tmp_path):
    assert main([*argv, "--work-dir", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # rejected before any training


def test_unknown_command_and_help():
    done = subprocess.run([sys.executable, "-m", "editable_vision.baselines", "table3", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--ewc-weight" in done.stdout and "--dknn-k" in done.stdout
    with pytest.raises(SystemExit) as exit_info:
        main(["tabel3"])
    assert exit_info.value.code == 2
