"""The README's digits experiment, end to end (slow: about 7 minutes on 2 CPU cores): Editable Training
gives much lower drawdown than the baseline at comparable test error (Table 3's claim)."""
from __future__ import annotations

import pytest

from .test_cli import cli

TRAIN = ["--width", "16", "--epochs", "20", "--threads", "1", "--quiet"]


@pytest.mark.slow
def test_editable_training_lowers_drawdown_on_digits(tmp_path):
    for mode in ("plain", "editable"):
        cli("train", "--mode", mode, *TRAIN, "--out", str(tmp_path / f"{mode}.pt"),
            "--json", str(tmp_path / f"{mode}.json"))
    rows = cli("evaluate", "--checkpoint", f"baseline={tmp_path / 'plain.pt'}",
               "--checkpoint", f"editable={tmp_path / 'editable.pt'}", "--editors",
               "trained,scaled_gd:0.03,rmsprop:0.0003", "--num-edits", "100", "--threads", "1", "--quiet",
               "--json", str(tmp_path / "table3.json"))["rows"]

    def best(procedure):  # the paper's rule: least drawdown among editors succeeding on >= 95% of edits
        return min((r for r in rows if r["procedure"] == procedure and r["success_rate"] >= 0.95),
                   key=lambda r: r["drawdown"])

    baseline, editable = best("baseline"), best("editable")
    assert baseline["base_error"] < 0.03 and abs(editable["base_error"] - baseline["base_error"]) < 0.01
    assert editable["drawdown"] < 0.5 * baseline["drawdown"]
