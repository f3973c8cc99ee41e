"""Editable Training on real data (scikit-learn's digits), through the example's command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_editable_training.py"


def test_editable_training_lowers_drawdown_at_comparable_error(tmp_path):
    out = tmp_path / "digits.json"
    subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "30", "--edits", "100", "--seed", "0",
                    "--json", str(out)], check=True, capture_output=True, text=True, timeout=600)
    results = json.loads(out.read_text())["results"]
    baseline, editable = results["baseline"], results["editable"]
    assert baseline["base_error"] < 0.06 and editable["base_error"] < 0.06        # both learned the task
    assert abs(editable["base_error"] - baseline["base_error"]) < 0.025          # comparable test error
    assert editable["drawdown"] < 0.5 * baseline["drawdown"]                     # clearly more local edits
    assert editable["success_rate"] >= 0.85 and baseline["success_rate"] >= 0.95
