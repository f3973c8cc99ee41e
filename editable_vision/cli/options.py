"""What the commands of ``python -m editable_vision`` (and ``.baselines``) share: option groups, the device,
the data a checkpoint names, printing a table / writing JSON (rank 0 alone under torchrun), and running a
command with one-line errors (in the process group torchrun describes, for the commands that allow it)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, Optional

import torch

from editable_core import EDITORS, parse_backprop
from editable_core.errors import InputError, exit_status, is_expected, one_line

from .. import distributed, report
from ..data import DATASETS, VisionData, load_data
from ..loop import TrainingInterrupted
from ..train import BATCH_NORMS, TrainConfig
from .checks import interrupted_line

logger = logging.getLogger("editable_vision")


def resolve_device(name: str) -> torch.device:
    """``--device``: ``auto`` -> CUDA when available, else CPU; a CUDA device that is not available is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here (torch.cuda.is_available() is False)")
    return device


def backprop_mode(text: str) -> str:
    """``--edit-backprop``: a mode :func:`editable_core.parse_backprop` accepts, else an argparse error."""
    try:
        parse_backprop(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def positive_int(text: str) -> int:
    """An integer >= 1, else an argparse error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def csv(text: Optional[str]) -> list[str]:
    """``"a, b,"`` -> ``["a", "b"]``."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


# ----------------------------------------------------------------------------------------------- option groups
def add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    group.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default 0)")
    group.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    group.add_argument("--seed", type=int, default=0, help="random seed (model init, data order, edits)")
    group.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    group.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")


def add_data_options(parser: argparse.ArgumentParser, default: Optional[str] = "digits") -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", choices=DATASETS, default=default,
                       help="digits (scikit-learn, no download), cifar10 (torchvision) or folder (ImageFolder)"
                            + ("" if default else "; default: the checkpoint's"))
    group.add_argument("--data-root", help="CIFAR-10 folder, or the training ImageFolder")
    group.add_argument("--test-dir", help="the test ImageFolder (folder data)")
    group.add_argument("--classes-file", help="text file with the full ordered class list (folder names), e.g. "
                                              "ImageNet's 1000 wnids, to label a subset folder such as ImageNet-A")
    group.add_argument("--image-size", type=int, help="input size (digits: 16, folder: 224)")
    group.add_argument("--channels", type=int, choices=(1, 3), default=None, help="digits: 1 or 3 channels")
    group.add_argument("--download", action="store_true", help="download CIFAR-10 if missing")


def add_editor_options(group: argparse._ArgumentGroup, *, trained: bool) -> None:
    """``--editor``, ``--edit-lr``, ``--edit-max-steps`` (the flags the fairseq tools use too); trained:
    for a trained checkpoint, where each defaults to the checkpoint's own."""
    own = " (default: the checkpoint's)"
    group.add_argument("--editor", choices=list(EDITORS), default=None if trained else "rmsprop",
                       help="the differentiable optimiser that edits" + (own if trained else ""))
    group.add_argument("--edit-lr", type=float, default=None if trained else 1e-3,
                       help="the editor's learning rate alpha" + (own if trained else ""))
    group.add_argument("--edit-max-steps", type=int, default=None if trained else 10,
                       help="k, the most editor steps per edit" + (own if trained else ""))


def add_training_options(parser: argparse.ArgumentParser, defaults: TrainConfig, part: Optional[str]) -> None:
    """The options of ``train`` and ``finetune``; every default is ``defaults``' (a :class:`TrainConfig`)."""
    group = parser.add_argument_group("editing")
    group.add_argument("--part", default=part, help="editable part: stem, chain1..chain4, extra, head or all "
                                                    f"(default: {part or 'extra if --extra-layer, else chain3'})")
    add_editor_options(group, trained=False)
    group.add_argument("--edit-learnable", default="auto",
                       help="editor hyper-parameters trained with the model: auto (all but alpha: RMSProp's beta), "
                            "none, all or a comma list")
    group.add_argument("--edit-backprop", type=backprop_mode, default=defaults.backprop,
                       help="outer gradient through the edit: full (equation 2, exact), truncated:M (exact through "
                            "the last M editor steps only) or first_order (no second-order terms; cheapest)")
    group.add_argument("--loc-batch", type=positive_int, default=defaults.loc_batch, metavar="N",
                       help="estimate L_loc on the first N images of each batch (of each process's, under torchrun; "
                            "default: all); the edited pass over the batch is most of an editable step's extra cost, "
                            "so N = batch/4 is the cheap step")
    group.add_argument("--edit-coef", type=float, default=defaults.c_edit, help="c_edit: weight of L_edit")
    group.add_argument("--loc-coef", type=float, default=defaults.c_loc, help="c_loc: weight of L_loc")
    group.add_argument("--targets", default=defaults.targets, choices=("random", "match-ranks"),
                       help="edit targets during training")
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=defaults.epochs,
                       help="epochs of the run; with --resume, a larger total extends the run (the cosine schedule "
                            "then spans the new total)")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size,
                       help="images per step and process (under torchrun the global batch is N times this)")
    group.add_argument("--lr", type=float, default=defaults.lr,
                       help="learning rate" + (" of pre-existing layers (SGD)" if defaults.distils else " (Adam)"))
    group.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    group.add_argument("--schedule", choices=("constant", "cosine"), default=defaults.schedule,
                       help="learning-rate schedule")
    group.add_argument("--batch-norm", choices=BATCH_NORMS, default=defaults.batch_norm,
                       help="batch: train-mode batch-norm (the statistics of each process's batch); frozen: eval mode "
                            "throughout (running statistics fixed, affine weights trained)")
    group.add_argument("--max-norm", type=float, default=defaults.max_norm, help="gradient clipping norm (0: off)")
    group.add_argument("--max-batches", type=int, default=defaults.max_batches,
                       help="at most this many batches per epoch (quick runs)")
    group.add_argument("--channels-last", action="store_true",
                       help="keep weights and activations in channels-last (NHWC) memory, the layout of oneDNN's "
                            "and cuDNN's fast convolutions (the same results up to rounding; may be given or left "
                            "out on --resume)")
    group.add_argument("--out", required=True, metavar="PATH", help="checkpoint written after every epoch")
    group.add_argument("--resume", action="store_true",
                       help="continue the run saved in --out exactly, with its own settings (a flag that disagrees "
                            "with them is an error); under torchrun exactly with the number of processes it was saved "
                            "by (with another, the model, optimizer and schedule continue and the random streams are "
                            "re-seeded)")


# ----------------------------------------------------------------------------------------------- data
def data_spec_from_args(args: argparse.Namespace, saved: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The data description: command-line options over the checkpoint's saved ones."""
    spec = dict(saved or {})
    if args.data is not None and args.data != spec.get("name"):
        spec = {"name": args.data}
    spec.setdefault("name", "digits")
    for key, value in (("root", args.data_root), ("test_dir", args.test_dir), ("image_size", args.image_size),
                       ("channels", args.channels), ("classes_file", args.classes_file)):
        if value is not None:
            spec[key] = value
    spec.setdefault("seed", 0)
    return spec


def open_data(spec: dict[str, Any], download: bool = False) -> VisionData:
    """The data ``spec`` describes (see :func:`data_spec_from_args`)."""
    classes = None
    if spec.get("classes_file"):
        with open(spec["classes_file"], encoding="utf-8") as file:
            classes = [line.strip() for line in file if line.strip()]
    return load_data(spec["name"], spec.get("root"), image_size=spec.get("image_size"),
                     channels=spec.get("channels") or 1, seed=spec.get("seed", 0), download=download,
                     test_dir=spec.get("test_dir"), classes=classes)


# ----------------------------------------------------------------------------------------------- running
def emit(args: argparse.Namespace, text: str, payload: dict[str, Any]) -> None:
    """Print the markdown ``text``; with ``--json``, write ``payload`` there too (under torchrun: rank 0 alone)."""
    if not distributed.current().is_main:
        return
    print(text)
    if args.json:
        report.write_json(args.json, payload)
        logger.info("wrote %s", args.json)


def run(prog: str, args: argparse.Namespace, command: Callable[[argparse.Namespace], None], *,
        launchable: bool = False) -> int:
    """Run ``command(args)`` with logging and ``--threads`` set up. Expected failures
    (:func:`editable_core.errors.is_expected`, or training that diverged) are one line ``PROG COMMAND: error: ...``
    on stderr and exit status 1, or 3 for an edit that did not take (``EDITABLE_VISION_DEBUG=1`` re-raises);
    anything else is a bug and keeps its traceback. Ctrl-C is one line (naming the last complete checkpoint of an
    interrupted training) and status 130.

    Started by torchrun, a ``launchable`` command joins the process group first (:func:`.distributed.setup`:
    ``args.device`` becomes this rank's device); the other ranks log warnings only, with ``[rank R]`` before each
    line, and leave printing and files to rank 0. A command that is not launchable refuses to run there.
    """
    prefix, joined = "", False
    try:
        if distributed.launched():
            prefix = f"[rank {distributed.launched_rank()}] "
            args.quiet = args.quiet or distributed.launched_rank() != 0
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                            format=f"%(asctime)s {prefix}%(name)s: %(message)s", datefmt="%H:%M:%S")
        if args.threads:
            torch.set_num_threads(args.threads)
        if distributed.launched():
            if not launchable:
                raise InputError(f"{args.command} runs in one process: run it without torchrun")
            joined = not torch.distributed.is_initialized()  # a caller's own group stays for the caller to end
            args.device = str(distributed.setup(resolve_device(args.device))[1])
        command(args)
    except TrainingInterrupted as interrupted:
        print(f"{prefix}{prog} {args.command}: {interrupted_line(interrupted)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{prefix}{prog} {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, FloatingPointError) as error:  # FloatingPointError: training diverged
        expected = is_expected(error) or isinstance(error, FloatingPointError)
        if not expected or os.environ.get("EDITABLE_VISION_DEBUG"):
            raise  # a bug keeps its traceback
        print(f"{prefix}{prog} {args.command}: error: {one_line(error)}", file=sys.stderr)
        return exit_status(error)
    finally:
        if joined:
            distributed.teardown()
    return 0
