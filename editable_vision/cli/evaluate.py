"""``evaluate``: N independent edits of one or more checkpoints. ``--table 3`` gives one row per checkpoint x
editor x part, ``--table 1`` / ``2`` tune editors and parts (Tables 1 and 2); ``--generalisation`` and
``--sequential`` add edit generalisation and the sequential-edit curve (Figure 5). Under torchrun each process
applies its block of the edits (of the sequential runs) and rank 0 prints the gathered rows."""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from editable_core import EDITORS, ControlSet
from editable_core.errors import InputError

from .. import distributed, report
from ..api import VisionEditable
from ..checkpoint import editable_from_checkpoint, read_checkpoint
from ..data import VisionData, load_data, stack
from ..evaluate import EditSet, best_rows, evaluate, generalisation, make_edit_set, sequential_curves, sweep
from ..targets import rank_distribution
from .checks import check_output_file
from .options import add_data_options, add_run_options, csv, data_spec_from_args, emit, open_data, resolve_device

logger = logging.getLogger("editable_vision")


def add_parser(commands: argparse._SubParsersAction) -> None:
    ev = commands.add_parser("evaluate", help="N independent edits: Tables 1-3, generalisation, sequential edits",
                             description="Evaluate edits of one or more checkpoints: test error, drawdown, "
                                         "success rate and num steps over N independent edits (Table 3 rows), "
                                         "editor sweeps (Table 1), part sweeps (Table 2), edit generalisation "
                                         "and the sequential-edit curve (Figure 5).")
    ev.add_argument("--checkpoint", action="append", required=True, metavar="[NAME=]PATH",
                    help="a checkpoint to evaluate (repeat for several; NAME labels its rows)")
    ev.add_argument("--table", choices=("1", "2", "3"), default="3",
                    help="3: one row per checkpoint x editor x part; 1: tuned editors side by side; "
                         "2: drawdown per editor and part")
    ev.add_argument("--editors", default="trained",
                    help="comma list of editors: 'trained' (the checkpoint's own, with its trained hyper-parameters), "
                         "a name, or name:lr (a named editor like the checkpoint's keeps its trained beta) "
                         "(tables 1 and 2: names, default all six)")
    ev.add_argument("--parts", help="comma list of parts (default: the checkpoint's; tables 1/2: "
                                    "all,chain1,chain2,chain3,chain4[,extra])")
    ev.add_argument("--lr-grid", help="comma list of editor learning rates to tune over (tables 1/2)")
    ev.add_argument("--num-edits", type=int, default=100, help="N, the number of independent edits")
    ev.add_argument("--targets", choices=("random", "match-ranks", "labels"), default="random",
                    help="edit targets: uniform random, match-ranks (4.3.1), or the edit images' own labels "
                         "(e.g. natural adversarial examples given with --edit-dir)")
    ev.add_argument("--edit-dir", help="ImageFolder of images to edit (e.g. Natural Adversarial Examples); "
                                       "default: the test set")
    ev.add_argument("--control-limit", type=int, help="use only the first N test images as the control set")
    ev.add_argument("--generalisation", type=int, default=0, metavar="PAIRS",
                    help="also test edit generalisation on this many image pairs")
    ev.add_argument("--sequential", type=int, default=0, metavar="N",
                    help="also plot the error after each of N sequential edits")
    ev.add_argument("--runs", type=int, default=3, help="runs of the sequential-edit curve")
    ev.add_argument("--plot-dir", help="folder for PNG plots (default: beside --json, or 'plots')")
    ev.add_argument("--min-success", type=float, default=0.95, help="tables 1/2: the least acceptable success rate")
    add_data_options(ev, default=None), add_run_options(ev)
    ev.set_defaults(command_function=cmd_evaluate)


@dataclass
class Evaluated:
    """One checkpoint ready to evaluate: its model, control set ``images [M, ...]`` / ``labels [M]``, edits."""

    name: str
    payload: dict[str, Any]
    editable: VisionEditable
    data: VisionData
    images: Tensor
    labels: Tensor
    edits: EditSet


@dataclass
class Results:
    """What ``evaluate`` prints and writes, gathered over the checkpoints."""

    rows: list[dict[str, Any]] = field(default_factory=list)          # table 3
    sweeps: dict[str, list] = field(default_factory=dict)             # tables 1/2: every (editor, part, lr)
    tuned: dict[str, list] = field(default_factory=dict)              # tables 1/2: the rows the table shows
    texts: list[str] = field(default_factory=list)
    generalisation: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, list] = field(default_factory=dict)             # sequential edits
    rank_probs: Optional[Tensor] = None                               # match-ranks: the first checkpoint's


def cmd_evaluate(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    check_output_file("--json", args.json)
    results, data_cache = Results(), {}
    for name, path in _parse_checkpoints(args.checkpoint):
        run = _load(args, name, path, device, results, data_cache)
        if args.table == "3":
            results.rows.extend(_table3_rows(args, run, device))
        else:
            _tuned_table(args, run, results)
        if args.generalisation:
            results.generalisation.append(_generalisation_row(args, run, results.rank_probs))
        if args.sequential:
            results.curves[name] = sequential_curves(
                run.editable, run.images, run.labels, min(args.sequential, len(run.images)), runs=args.runs,
                targets=_drawn_targets(args), rank_probs=results.rank_probs, seed=args.seed, progress=not args.quiet)
    emit(args, _text(args, results), {
        "num_edits": args.num_edits, "targets": args.targets, "rows": results.rows, "sweeps": results.sweeps,
        "tuned": results.tuned, "generalisation": results.generalisation, "sequential": results.curves,
        "rank_distribution": results.rank_probs.tolist() if results.rank_probs is not None else None})


def _parse_checkpoints(items: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        out.append((name or os.path.splitext(os.path.basename(path))[0], path))
    return out


def _editor_specs(text: str) -> list[tuple[str, Optional[float]]]:
    specs = []
    for item in csv(text):
        name, _, lr = item.partition(":")
        if name != "trained" and name not in EDITORS:
            raise ValueError(f"unknown editor {name!r}; choose 'trained' or one of {list(EDITORS)}")
        specs.append((name, float(lr) if lr else None))
    return specs


def _drawn_targets(args: argparse.Namespace) -> str:
    """The targets edits are drawn with: ``labels`` edits are drawn as ``random`` and relabelled."""
    return "random" if args.targets == "labels" else args.targets


def _load(args: argparse.Namespace, name: str, path: str, device: torch.device, results: Results,
          data_cache: dict[str, VisionData]) -> Evaluated:
    """The checkpoint, its data (loaded once per data description), control set and edits."""
    payload = read_checkpoint(path)
    spec = data_spec_from_args(args, payload.get("data"))
    key = repr(sorted(spec.items()))
    data = data_cache.get(key) or data_cache.setdefault(key, open_data(spec, args.download))
    editable = editable_from_checkpoint(payload, device=device)
    images, labels = stack(data.test, args.control_limit, workers=args.workers)
    edit_images, edit_labels = images, labels
    if args.edit_dir:
        edit_images, edit_labels = stack(load_data("folder", None, test_dir=args.edit_dir,
                                                   image_size=data.input_shape[-1]).test, workers=args.workers)
    if args.targets == "match-ranks" and results.rank_probs is None:  # the first checkpoint's (the baseline's)
        results.rank_probs = rank_distribution(editable.logits(edit_images), edit_labels.to(device), smoothing=0.5)
    if args.num_edits > len(edit_images):
        raise InputError(f"--num-edits {args.num_edits}: only {len(edit_images)} images to edit "
                         f"({args.edit_dir or 'the test set'}); pass --num-edits {len(edit_images)} or fewer")
    edits = make_edit_set(editable, edit_images, args.num_edits,
                          targets=_drawn_targets(args), rank_probs=results.rank_probs, seed=args.seed + 9)
    if args.targets == "labels":
        edits.targets = edit_labels[edits.indices]
    return Evaluated(name, payload, editable, data, images, labels, edits)


def _table3_rows(args: argparse.Namespace, run: Evaluated, device: torch.device) -> list[dict[str, Any]]:
    """One row per editor (``--editors``) x part (``--parts``, default the checkpoint's)."""
    rows = []
    for editor_name, lr in _editor_specs(args.editors):
        for part in csv(args.parts) or [run.editable.part]:
            candidate = editable_from_checkpoint(run.payload, part=part, device=device,
                                                 editor=None if editor_name == "trained" else editor_name, lr=lr)
            control = ControlSet(candidate, run.images.to(device), run.labels.to(device))
            metrics = evaluate(candidate, control, run.edits, progress=not args.quiet,
                               desc=f"{run.name} {editor_name}")
            shown = candidate.editor.name if editor_name == "trained" else editor_name
            row = report.metrics_row(run.name, shown, part, metrics, float(candidate.editor.lr()))
            if editor_name == "trained":
                # the checkpoint's own editor: trained with the model in modes editable / finetune
                row["editor_title"] = f"{report.editor_title(shown)} (checkpoint's, lr {row['lr']:g})"
            rows.append(row)
    return rows


def _tuned_table(args: argparse.Namespace, run: Evaluated, results: Results) -> None:
    """Tables 1 and 2: sweep editors x parts x learning rates, keep the best rows per editor (1) or per
    editor and part (2)."""
    editors = [n for n, _ in _editor_specs(args.editors) if n != "trained"] or list(EDITORS)
    parts = csv(args.parts) or ["all", "chain1", "chain2", "chain3", "chain4"] + (
        ["extra"] if "extra" in dict(run.editable.module.named_children()) else [])
    grid = [float(v) for v in csv(args.lr_grid)]
    lrs = {n: grid for n in editors} if grid else None
    result = sweep(run.editable, run.images, run.labels, run.edits, editors=editors, parts=parts, lrs=lrs,
                   progress=not args.quiet)
    results.sweeps[run.name] = [r.as_dict() for r in result]
    if args.table == "1":
        best = {k[0]: v.as_dict() for k, v in best_rows(result, lambda r: (r.editor,), args.min_success).items()}
        results.texts.append(f"### {run.name}: editor functions (best part and lr per editor)\n\n"
                             + report.table1(best))
        _plot(args, lambda p: report.plot_editors(best, p, run.name), f"editors_{run.name}.png")
    else:
        best = {k: v.as_dict() for k, v in best_rows(result, lambda r: (r.editor, r.part), args.min_success).items()}
        results.texts.append(f"### {run.name}: drawdown per editable part (best lr)\n\n"
                             + report.table2(best, editors, parts))
    results.tuned[run.name] = list(best.values())


def _generalisation_row(args: argparse.Namespace, run: Evaluated, rank_probs: Optional[Tensor]) -> dict[str, Any]:
    pairs = make_edit_set(run.editable, run.images, min(args.generalisation, len(run.images)),
                          targets=_drawn_targets(args), rank_probs=rank_probs, seed=args.seed + 7)
    gen = generalisation(run.editable, run.images, pairs, run.data.augment, seed=args.seed, progress=not args.quiet)
    return {"procedure": run.name, "part": run.editable.part, **gen.as_dict()}


def _text(args: argparse.Namespace, results: Results) -> str:
    """The markdown of every table, and the plots of the sequential curves and the rank distribution."""
    texts = ([report.table3(results.rows)] if results.rows else []) + results.texts
    if results.generalisation:
        texts.append("### Edit generalisation\n\n" + report.generalisation_table(results.generalisation))
    if results.curves:
        finals = [[n, f"{100 * sum(c[0] for c in cs) / len(cs):.2f}%", f"{100 * sum(c[-1] for c in cs) / len(cs):.2f}%"]
                  for n, cs in results.curves.items()]
        texts.append(f"### Sequential edits ({args.sequential} edits, {args.runs} runs)\n\n"
                     + report.markdown_table(["Model", "Error before", f"Error after {args.sequential} edits"], finals))
        _plot(args, lambda p: report.plot_sequential(results.curves, p), "sequential.png")
    if results.rank_probs is not None:
        rank_probs = results.rank_probs.tolist()
        _plot(args, lambda p: report.plot_ranks(rank_probs, p), "rank_distribution.png")
    return "\n\n".join(texts)


def _plot(args: argparse.Namespace, draw: Callable[[str], None], filename: str) -> None:
    if not distributed.current().is_main:
        return
    folder = args.plot_dir or (os.path.dirname(os.path.abspath(args.json)) if args.json else "plots")
    path = os.path.join(folder, filename)
    draw(path)
    logger.info("wrote %s", path)
