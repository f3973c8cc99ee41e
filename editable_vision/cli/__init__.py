"""``python -m editable_vision {train,finetune,evaluate,edit} ...``: each prints a markdown table and, with
``--json PATH``, writes its figures as JSON. Errors are one line on stderr and a non-zero exit.

One module per command (``train``: train and finetune, ``evaluate``, ``edit``); ``options`` holds the option
groups and helpers they share (the editor flags are the fairseq tools' own: ``--editor``, ``--edit-lr``,
``--edit-max-steps``, ``--edit-learnable``, ``--edit-coef``, ``--loc-coef``).

``torchrun --nproc-per-node N -m editable_vision train|finetune|evaluate ...`` runs the same command on N
processes (see :mod:`editable_vision.distributed`); rank 0 alone prints and writes files.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from . import edit, evaluate, train
from .checks import given_flags
from .options import resolve_device, run

PROG = "python -m editable_vision"
#: the commands torchrun may start on several processes (``edit`` makes one edit in one process)
LAUNCHABLE = ("train", "finetune", "evaluate")

__all__ = ["build_parser", "main", "resolve_device"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Editable Training and Editable Fine-Tuning of image "
                                                            "classifiers (Sinitsin et al., ICLR 2020, sections "
                                                            "4.1-4.3).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,finetune,evaluate,edit}")
    train.add_parsers(commands)
    evaluate.add_parser(commands)
    edit.add_parser(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.given = given_flags(build_parser, argv)  # which flags were typed (what --resume may not change)
    return run(PROG, args, args.command_function, launchable=args.command in LAUNCHABLE)
