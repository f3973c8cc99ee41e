"""Editable Training on real data (scikit-learn's digits), through the example's command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_editable_training.py"


def run_example(tmp_path: Path, seed: int) -> dict:
    out = tmp_path / f"digits{seed}.json"
    subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "30", "--edits", "100", "--seed", str(seed),
                    "--json", str(out)], check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.read_text())["results"]


def test_editable_training_lowers_drawdown_at_comparable_error(tmp_path):
    """Three seeds: the test-error gap of one seed depends on the CPU's rounding (seed 0's was 0.030 on one
    AMD EPYC machine, under 0.025 on another), so "comparable" is judged on the mean over the seeds."""
    gaps = []
    for seed in (0, 1, 2):
        results = run_example(tmp_path, seed)
        baseline, editable = results["baseline"], results["editable"]
        assert baseline["base_error"] < 0.06 and editable["base_error"] < 0.06, seed    # both learned the task
        assert editable["drawdown"] < 0.5 * baseline["drawdown"], seed                  # clearly more local edits
        assert editable["success_rate"] >= 0.85 and baseline["success_rate"] >= 0.95, seed
        gaps.append(editable["base_error"] - baseline["base_error"])
    assert abs(sum(gaps) / len(gaps)) < 0.025, gaps                                     # comparable test error
