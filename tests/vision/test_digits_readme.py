"""The README's digits experiment, end to end (slow: about 4-8 minutes on 2 CPU cores): Editable Training
gives much lower drawdown than the baseline at comparable test error (Table 3's claim).

One seed decides the test error of a model on 360 images only to within a few images (seeds 0-2 gave the
editable model 7, 0 and 1 errors on one machine), so "comparable" is judged on the mean over two seeds
(the README's seed 0, and seed 1); the drawdown claim must hold for each seed."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from .test_cli import cli

TRAIN = ["--width", "16", "--epochs", "20", "--threads", "1", "--quiet"]
SEEDS = (0, 1)


def best(rows: list[dict], procedure: str) -> dict:
    """The paper's rule: least drawdown among the editors succeeding on >= 95% of edits."""
    return min((r for r in rows if r["procedure"] == procedure and r["success_rate"] >= 0.95),
               key=lambda r: r["drawdown"])


@pytest.mark.slow
def test_editable_training_lowers_drawdown_on_digits(tmp_path):
    def train(mode: str, seed: int) -> dict:
        return cli("train", "--mode", mode, *TRAIN, "--seed", str(seed), "--out", str(tmp_path / f"{mode}{seed}.pt"),
                   "--json", str(tmp_path / f"{mode}{seed}.json"))

    def table3(seed: int) -> list[dict]:
        return cli("evaluate", "--checkpoint", f"baseline={tmp_path / f'plain{seed}.pt'}",
                   "--checkpoint", f"editable={tmp_path / f'editable{seed}.pt'}", "--editors",
                   "trained,scaled_gd:0.03,rmsprop:0.0003", "--num-edits", "100", "--threads", "1", "--quiet",
                   "--json", str(tmp_path / f"table3_{seed}.json"))["rows"]

    with ThreadPoolExecutor(2) as pool:  # one thread per process, two processes at a time
        list(pool.map(lambda run: train(*run), [(mode, seed) for seed in SEEDS for mode in ("plain", "editable")]))
        tables = list(pool.map(table3, SEEDS))

    baselines, editables = [best(rows, "baseline") for rows in tables], [best(rows, "editable") for rows in tables]
    assert all(b["base_error"] < 0.03 for b in baselines)
    mean_error = {name: sum(r["base_error"] for r in rows) / len(rows)
                  for name, rows in (("baseline", baselines), ("editable", editables))}
    assert abs(mean_error["editable"] - mean_error["baseline"]) < 0.01, mean_error
    for baseline, editable in zip(baselines, editables):
        assert editable["drawdown"] < 0.5 * baseline["drawdown"], (baseline, editable)
