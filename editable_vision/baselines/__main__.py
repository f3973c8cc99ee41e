"""``python -m editable_vision.baselines {table3,analysis} ...``: print a markdown table; ``--json PATH`` also
writes the figures as JSON. Errors are one line on stderr and exit status 1 (2 for bad options)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..cli.options import emit, run
from .analysis import run_analysis
from .common import add_common
from .table3 import add_arguments, run_table3

PROG = "python -m editable_vision.baselines"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Table 3's baselines (EWC, DkNN, Editable+CNP) next "
                                     "to plain and Editable Training, and section 4.2's analysis of edits.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{table3,analysis}")
    table = commands.add_parser("table3", help="every row of Table 3 on the same edits",
                                description="Train (or load) the plain, Editable Training and Editable+CNP "
                                            "models, then measure test error, drawdown, success rate and num "
                                            "steps of: the baseline with RMSProp and GD, Editable Training, "
                                            "GD+EWC, RMSProp+EWC, DkNN (each --dknn-k) and Editable+CNP.")
    add_arguments(table)
    table.set_defaults(func=run_table3)
    analysis = commands.add_parser("analysis", help="section 4.2: per-class drawdown, t-SNE and SVD of edits",
                                   description="Edit the plain model (RMSProp) and the Editable Training model "
                                               "with the same edits; plot the per-class drawdown matrices, a "
                                               "t-SNE of the edit descriptors (KL per control image) and the "
                                               "explained variance of their truncated SVD.")
    group = analysis.add_argument_group("analysis")
    group.add_argument("--plot-dir", default="plots", help="folder for the three PNGs (default: plots)")
    group.add_argument("--prefix", default="", help="prefix of the PNG file names")
    group.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (capped below edits / 3)")
    group.add_argument("--components", type=int, default=50, help="most truncated-SVD components")
    add_common(analysis)
    analysis.set_defaults(func=run_analysis)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run(PROG, args, lambda a: emit(a, *a.func(a)))


if __name__ == "__main__":
    sys.exit(main())
