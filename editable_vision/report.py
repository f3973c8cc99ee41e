"""Output: markdown tables shaped like the paper's, JSON files, and PNG plots (matplotlib, Agg backend)."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Optional, Sequence

from editable_core import EditMetrics, atomic_open

EDITOR_TITLES = {"gd": "GD", "scaled_gd": "Scaled GD", "rprop": "RProp", "rmsprop": "RMSProp",
                 "momentum": "Momentum", "adam": "Adam", "trained": "trained editor"}


def part_title(part: Any) -> str:
    """``"chain3"`` -> ``"Chain 3"``, ``""`` / ``"all"`` -> ``"Whole Model"``, ``"extra"`` -> ``"Extra layer"``."""
    if isinstance(part, (list, tuple)):
        return " + ".join(part_title(p) for p in part)
    if part in ("", "all", "whole"):
        return "Whole Model"
    if part.startswith("chain") and part[5:].isdigit():
        return f"Chain {part[5:]}"
    return {"extra": "Extra layer", "head": "Final linear", "stem": "Stem"}.get(part, part)


def editor_title(name: str, lr: Optional[float] = None) -> str:
    title = EDITOR_TITLES.get(name, name)
    return title if lr is None else f"{title} (lr {lr:g})"


def percent(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.{digits}f}%"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def table3(rows: Sequence[dict[str, Any]]) -> str:
    """Table 3 / 4 / 5 layout: one row per (training procedure, editor, editable layers).
    rows: dicts with ``procedure``, ``editor``, ``part`` and the :class:`EditMetrics` fields."""
    headers = ["Training Procedure", "Editor Function", "Editable Layers", "Test Error Rate",
               "Test Error Drawdown", "Success Rate", "Num Steps"]
    return markdown_table(headers, [
        [r["procedure"], r["editor_title"], part_title(r["part"]), percent(r["base_error"]),
         percent(r["drawdown"]), percent(r["success_rate"], 1), f"{r['mean_steps']:.2f}"] for r in rows])


def table1(best: dict[str, dict[str, Any]]) -> str:
    """Table 1 layout: editors as columns; drawdown, success rate, num steps (and the tuned lr / part)."""
    names = list(best)
    headers = ["Editor Function"] + [EDITOR_TITLES.get(n, n) for n in names]
    return markdown_table(headers, [
        ["Drawdown"] + [percent(best[n]["drawdown"]) for n in names],
        ["Success Rate"] + [percent(best[n]["success_rate"], 1) for n in names],
        ["Num Steps"] + [f"{best[n]['mean_steps']:.2f}" for n in names],
        ["Editable Layers"] + [part_title(best[n]["part"]) for n in names],
        ["Learning rate"] + [f"{best[n]['lr']:g}" for n in names],
    ])


def table2(best: dict[tuple[str, str], dict[str, Any]], editors: Sequence[str], parts: Sequence[str]) -> str:
    """Table 2 layout: mean test error drawdown, editors as rows and editable parts as columns."""
    headers = ["Editable Layers"] + [part_title(p) for p in parts]
    rows = []
    for name in editors:
        cells = [best.get((name, p)) for p in parts]
        rows.append([EDITOR_TITLES.get(name, name)] + [percent(c["drawdown"]) if c else "n/a" for c in cells])
    return markdown_table(headers, rows)


def generalisation_table(rows: Sequence[dict[str, Any]]) -> str:
    """Edit generalisation (4.3.1): edit on augmentations of one image, test on a similar image's."""
    headers = ["Training Procedure", "Editable Layers", "Pairs", "Edit Success", "Accuracy on neighbour",
               "Before edit"]
    return markdown_table(headers, [[r["procedure"], part_title(r["part"]), r["num_pairs"],
                                     percent(r["success_rate"], 1), percent(r["accuracy"], 1),
                                     percent(r["accuracy_before"], 1)] for r in rows])


def metrics_row(procedure: str, editor: str, part: Any, metrics: EditMetrics, lr: Optional[float] = None
                ) -> dict[str, Any]:
    """A JSON-able row of :func:`table3`."""
    return {"procedure": procedure, "editor": editor, "lr": lr, "editor_title": editor_title(editor, lr),
            "part": part, **metrics.as_dict()}


def write_json(path: str, payload: Any) -> None:
    """Write ``payload`` as indented JSON (creating the folder; atomically, so a failure leaves no half file)."""
    with atomic_open(path, "w", encoding="utf-8") as file:
        json.dump(payload, file, indent=2, sort_keys=False)
        file.write("\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sequential(curves: dict[str, list[list[float]]], path: str) -> None:
    """Figure 5 (bottom): control error vs number of sequential edits, mean and +-1 std over runs."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, runs in curves.items():
        values = 100 * np.asarray(runs)
        mean, std = values.mean(0), values.std(0)
        steps = np.arange(values.shape[1])
        ax.plot(steps, mean, label=label)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
    ax.set_xlabel("number of edits")
    ax.set_ylabel("test error, %")
    ax.set_title("Error rate for edit sequences")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_editors(best: dict[str, dict[str, Any]], path: str, title: str = "") -> None:
    """A bar chart of Table 1's drawdowns, one bar per editor."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = list(best)
    ax.bar([EDITOR_TITLES.get(n, n) for n in names], [100 * best[n]["drawdown"] for n in names])
    ax.set_ylabel("drawdown, %")
    ax.set_title(title or "Drawdown per editor function")
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ranks(rank_probs: Sequence[float], path: str) -> None:
    """Figure 5 (top-right): the distribution of the true class's rank."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(range(len(rank_probs)), [float(p) for p in rank_probs])
    ax.set_xlabel("rank of the reference class")
    ax.set_ylabel("probability")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
