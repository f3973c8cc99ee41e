"""The README's digits experiment (Table 3 on CPU) for each ``--edit-backprop`` mode (and ``--loc-batch``): how much
of exact Editable Training's drawdown cut a cheaper outer gradient keeps, at what test error.

For each seed (default 0 and 1, as ``tests/vision/test_digits_readme.py``) trains the plain baseline and one
editable model per mode (width-16 CIFAR ResNet-18, 20 epochs, ``--threads 1``, the README's commands), then
makes the same 100 edits on all of them with the editors of the slow test. Per seed and model the row is the
paper's: least drawdown among editors succeeding on >= 95% of edits. The drawdown cut of a mode is the
baseline's drawdown minus the mode's, and ``kept_<mode>`` its mean over seeds divided by the exact mode's.

    python bench/digits_modes.py [--modes full,first_order,truncated:2,first_order@16] [--seeds 0,1]
                                 [--out runs/digits_modes]

A mode followed by ``@N`` trains with ``--loc-batch N`` (``L_loc`` on the first N of the 64 images of a batch).
Prints a markdown table, then one JSON line (keys ``drawdown_<variant>``, ``test_error_<variant>``,
``kept_<variant>``, means over seeds; ``truncated:2`` -> ``truncated_2``, ``first_order@16`` ->
``first_order_loc16``, ``full@16`` -> ``loc16``). Each training takes 1-3 minutes on 2 idle cores.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _measure import backprop_modes, variant_key, variant_mode

TRAIN = ["--width", "16", "--epochs", "20", "--threads", "1", "--quiet"]
EDITORS = "trained,scaled_gd:0.03,rmsprop:0.0003"


def vision(*args: str) -> dict:
    """``python -m editable_vision ARGS --json PATH``; returns what it wrote to PATH."""
    subprocess.run([sys.executable, "-m", "editable_vision", *args], check=True, capture_output=True, text=True)
    return json.loads(Path(args[args.index("--json") + 1]).read_text())


def best(rows: list[dict], procedure: str) -> dict:
    """The paper's rule: least drawdown among the editors succeeding on >= 95% of edits."""
    return min((r for r in rows if r["procedure"] == procedure and r["success_rate"] >= 0.95),
               key=lambda r: r["drawdown"], default={"drawdown": float("nan"), "base_error": float("nan")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="full,first_order,truncated:2",
                        help="comma list of backprop modes, each optionally @N (L_loc on N images of a batch)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", default="runs/digits_modes", help="folder for checkpoints and JSON")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time (each uses one thread)")
    args = parser.parse_args()
    modes = backprop_modes(parser, args.modes)
    if "full" not in modes:
        parser.error("--modes must include 'full': the other modes are judged against it")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = {mode: variant_key(mode) for mode in modes}

    def train(run: tuple[str, int]) -> None:
        mode, seed = run
        name = "baseline" if mode == "plain" else names[mode]
        if mode == "plain":
            flags = ["--mode", "plain"]
        else:
            backprop, loc_batch = variant_mode(mode)
            flags = ["--mode", "editable", "--edit-backprop", backprop,
                     *(["--loc-batch", str(loc_batch)] if loc_batch else [])]
        vision("train", *flags, *TRAIN, "--seed", str(seed), "--out", str(out / f"{name}{seed}.pt"),
               "--json", str(out / f"{name}{seed}.json"))

    def table3(seed: int) -> list[dict]:
        checkpoints = [a for name in ["baseline", *names.values()]
                       for a in ("--checkpoint", f"{name}={out / f'{name}{seed}.pt'}")]
        return vision("evaluate", *checkpoints, "--editors", EDITORS, "--num-edits", "100", "--threads", "1",
                      "--quiet", "--json", str(out / f"table3_{seed}.json"))["rows"]

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(train, [(mode, seed) for seed in seeds for mode in ["plain", *modes]]))
        tables = list(pool.map(table3, seeds))

    rows = {name: [best(table, name) for table in tables] for name in ["baseline", *names.values()]}
    cut = {name: statistics.mean(b["drawdown"] - r["drawdown"] for b, r in zip(rows["baseline"], rows[name]))
           for name in names.values()}
    report = {}
    for name in ["baseline", *names.values()]:
        report[f"drawdown_{name}"] = statistics.mean(r["drawdown"] for r in rows[name])
        report[f"test_error_{name}"] = statistics.mean(r["base_error"] for r in rows[name])
        if name != "baseline":
            report[f"kept_{name}"] = cut[name] / cut["full"]
    print(f"| model | test error (mean of seeds {args.seeds}) | drawdown | drawdown cut kept |")
    print("|---|---|---|---|")
    for name in ["baseline", *names.values()]:
        kept = f"{report[f'kept_{name}']:.0%}" if name != "baseline" else ""
        print(f"| {name} | {report[f'test_error_{name}']:.2%} | {report[f'drawdown_{name}']:.2%} | {kept} |")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
