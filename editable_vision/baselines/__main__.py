"""``python -m editable_vision.baselines {table3,analysis} ...``: print a markdown table; ``--json PATH`` also
writes the figures as JSON. Errors are one line on stderr and exit status 1 (2 for bad options)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from editable_core.errors import is_expected, one_line

from ..report import write_json
from .analysis import run_analysis
from .table3 import add_arguments, run_table3
from .common import add_common

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
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        text, payload = args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, FloatingPointError) as error:  # FloatingPointError: training diverged
        expected = is_expected(error) or isinstance(error, FloatingPointError)
        if not expected or os.environ.get("EDITABLE_VISION_DEBUG"):
            raise  # a bug keeps its traceback
        print(f"{PROG} {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 1
    print(text)
    if args.json:
        write_json(args.json, payload)
        logging.getLogger("editable_vision.baselines").info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
