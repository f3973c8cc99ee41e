"""Table 3: Editable Training against the other ways to patch a model, on the same edits, control set and
metrics. Rows (``--methods``, default all): the plain baseline edited with RMSProp (and GD), Editable
Training (its trained RMSProp), GD+EWC and RMSProp+EWC on the plain model, DkNN for each ``--dknn-k`` over the
plain model's embeddings, and Editable+CNP.
"""
from __future__ import annotations

import argparse
import logging
import time
from typing import Any, Sequence

from editable_core import make_editor

from .. import report
from ..evaluate import random_edit_set, with_editor
from .common import Setup, add_common, setup
from .dknn import POOLING
from .ewc import EWCEditor, fisher_diagonal
from .methods import CNPMethod, DkNNMethod, EditMethod, GradientMethod, evaluate_method

logger = logging.getLogger("editable_vision.baselines")

METHODS = ("baseline", "baseline-gd", "editable", "gd-ewc", "rmsprop-ewc", "dknn", "cnp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("methods")
    group.add_argument("--methods", default=",".join(METHODS),
                       help=f"comma list of rows to compute, from {', '.join(METHODS)} (default: all)")
    group.add_argument("--gd-lr", type=float, default=1e-3, help="GD alpha (baseline GD and GD+EWC)")
    group.add_argument("--ewc-weight", type=float, default=1e4,
                       help="lambda: weight of sum_i F_i (theta_i - theta*_i)^2 in the EWC edits")
    group.add_argument("--fisher-samples", type=int, default=512,
                       help="training images the diagonal Fisher is estimated on")
    group.add_argument("--dknn-k", default="10,100", help="comma list of k, one DkNN row each")
    group.add_argument("--dknn-layers", default="chain2,chain3,chain4",
                       help="parts of the plain model whose outputs are the DkNN embeddings")
    group.add_argument("--dknn-pool", choices=POOLING, default="flatten",
                       help="flatten each layer's output, or average it over space first")
    group.add_argument("--cnp", metavar="CKPT", help="Editable+CNP checkpoint (default: WORK_DIR/cnp.pt, "
                                                     "trained if missing)")
    group.add_argument("--cnp-edits", type=int, default=8, help="random-target edits per batch in CNP training")
    add_common(parser)


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown method(s) {unknown or [text]}; choose from {list(METHODS)}")
    return methods


def parse_ks(text: str) -> list[int]:
    try:
        ks = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--dknn-k must be a comma list of integers, got {text!r}") from None
    bad = [k for k in ks if k < 1]
    if bad or not ks:
        raise ValueError(f"--dknn-k: every k must be an integer >= 1, got {text!r}")
    return ks


def build_methods(run: Setup, names: Sequence[str], ks: Sequence[int]) -> list[EditMethod]:
    """The methods to evaluate, in Table 3's order."""
    a = run.args
    methods: list[EditMethod] = []
    needs_plain = any(n in names for n in ("baseline", "baseline-gd", "gd-ewc", "rmsprop-ewc", "dknn"))
    plain = run.trained("plain") if needs_plain else None
    if "baseline" in names:
        methods.append(GradientMethod(with_editor(plain, make_editor("rmsprop", a.edit_lr), "chain3"),
                                      "Baseline Training", "RMSProp"))
    if "baseline-gd" in names:
        methods.append(GradientMethod(with_editor(plain, make_editor("gd", a.gd_lr), "chain3"),
                                      "Baseline Training", "GD"))
    if "editable" in names:
        methods.append(GradientMethod(run.trained("editable"), "Editable Training", "RMSProp (trained)"))
    if "gd-ewc" in names or "rmsprop-ewc" in names:
        images, labels = run.train_arrays(a.fisher_samples)
        fisher = fisher_diagonal(plain, images.to(run.device), labels)
        for name, title, lr in (("gd", "GD+EWC", a.gd_lr), ("rmsprop", "RMSProp+EWC", a.edit_lr)):
            if f"{name}-ewc" in names:
                editor = EWCEditor(make_editor(name, lr), fisher, a.ewc_weight)
                methods.append(GradientMethod(with_editor(plain, editor, "chain3"), "Baseline Training", title))
    if "dknn" in names:
        images, labels = run.train_arrays()
        layers = [v.strip() for v in a.dknn_layers.split(",") if v.strip()]
        for k in ks:
            methods.append(DkNNMethod(plain.module, images, labels, run.data.num_classes, k, layers, a.dknn_pool))
    if "cnp" in names:
        methods.append(CNPMethod(run.cnp(a.cnp, a.cnp_edits)))
    return methods


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Table 3's layout; ``Num Steps`` is n/a for methods without editor steps."""
    headers = ["Training Procedure", "Editor Function", "Editable Layers", "Test Error Rate",
               "Test Error Drawdown", "Success Rate", "Num Steps"]
    return report.markdown_table(headers, [
        [r["procedure"], r["editor"], r["part"] if r["part"] == "n/a" else report.part_title(r["part"]),
         report.percent(r["base_error"]), report.percent(r["drawdown"]), report.percent(r["success_rate"], 1),
         "n/a" if r["mean_steps"] is None else f"{r['mean_steps']:.2f}"] for r in rows])


def run_table3(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Compute every requested row on the same N edits; returns the markdown table and the JSON payload."""
    names, ks = parse_methods(args.methods), parse_ks(args.dknn_k)
    if not args.ewc_weight >= 0:
        raise ValueError(f"--ewc-weight must be >= 0, got {args.ewc_weight}")
    if args.fisher_samples < 1:
        raise ValueError(f"--fisher-samples must be >= 1, got {args.fisher_samples}")
    if args.cnp_edits < 1:
        raise ValueError(f"--cnp-edits must be >= 1, got {args.cnp_edits}")
    run = setup(args)
    start = time.perf_counter()
    methods = build_methods(run, names, ks)
    trained = time.perf_counter() - start
    # the same edits for every method: control-set images with uniformly random targets (section 4.1)
    edits = random_edit_set(run.images, run.data.num_classes, args.num_edits, seed=args.seed + 9)
    rows = []
    for method in methods:
        began = time.perf_counter()
        row = evaluate_method(method, run.images, run.labels, edits, progress=not args.quiet)
        row["seconds"] = time.perf_counter() - began
        logger.info("%s / %s: drawdown %.4f, success %.3f", row["procedure"], row["editor"], row["drawdown"],
                    row["success_rate"])
        rows.append(row)
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    payload = {"table": "3", "settings": settings, "data": run.data_spec, "num_control": len(run.images),
               "edit_indices": edits.indices.tolist(), "edit_targets": edits.targets.tolist(),
               "setup_seconds": trained, "rows": rows}
    return markdown(rows), payload

