"""Checks of ``python -m editable_vision`` that argparse cannot make: which flags were typed, what ``--resume``
may change, where an output file may go, and the line printed when training is interrupted."""
from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Optional, Sequence

from editable_core import EDITORS, parse_learnable
from editable_core.editors import learnable_names
from editable_core.errors import InputError

from ..loop import TrainingInterrupted

#: Flags that ``--resume`` accepts whatever the run says: where and how it runs, not what it computes.
#: ``--epochs`` is checked on its own: equal to the run's, or larger to extend it.
RESUME_FREE = {"command", "command_function", "resume", "out", "epochs", "device", "workers", "threads", "json",
               "quiet", "data_root", "test_dir", "download", "classes_file", "channels_last"}
_UNSET = object()


def given_flags(build_parser: Callable[[], argparse.ArgumentParser], argv: Optional[Sequence[str]]) -> set[str]:
    """The ``dest`` of every option typed in ``argv`` (a default, even an equal one, is not typed)."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for option in sub._actions:
                    if option.dest != "help" and option.default is not None:
                        option.default = _UNSET
    parsed = vars(parser.parse_args(argv))
    return {dest for dest, value in parsed.items() if value is not _UNSET and value is not None}


def _csv(text: Optional[str]) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def saved_settings(payload: dict[str, Any], finetune: bool) -> dict[str, Any]:
    """The command-line settings (by ``dest``) that a training checkpoint fixes, in command-line form."""
    config, spec, editable = payload["trainer"]["config"], payload["model_spec"], payload["editable"]
    data = payload.get("data") or {}
    mode = {"finetune": "editable"}.get(config["mode"], config["mode"]) if finetune else config["mode"]
    settings = {key: config[key] for key in ("batch_size", "lr", "weight_decay", "schedule", "max_batches", "targets",
                                              "seed", "lr_extra", "momentum")}
    settings.update(mode=mode, max_norm=config["max_norm"] or 0.0, freeze=list(config["freeze"]),
                    edit_coef=config["c_edit"], loc_coef=config["c_loc"], edit_backprop=config.get("backprop", "full"),
                    batch_norm=config.get("batch_norm", "batch"),
                    arch=spec.get("arch"), part=editable["part"], edit_max_steps=editable["max_steps"],
                    editor=editable["editor"]["name"], edit_learnable=sorted(editable["editor"]["learnable"]),
                    data=data.get("name"), image_size=data.get("image_size"), channels=data.get("channels"),
                    extra_layer=spec.get("extra_layer", 0))
    if not finetune:
        settings["width"] = spec.get("width")
    return settings


def check_resume(args: argparse.Namespace, given: set[str], payload: dict[str, Any], finetune: bool) -> Optional[int]:
    """Refuse flags that disagree with the run in ``args.out``; returns the epochs to run to (None: the run's).

    ``--epochs`` equal to the run's total keeps it; larger extends the run (the cosine schedule then spans the
    new total); smaller than the epochs done, or a finished run resumed without ``--epochs``, is an error.
    """
    if "trainer" not in payload:
        raise InputError(f"--resume: {args.out} holds a model but no training state to resume")
    saved = saved_settings(payload, finetune)
    for dest in sorted(given - RESUME_FREE):
        value = getattr(args, dest)
        if dest == "freeze":
            value = _csv(value)
        elif dest == "edit_learnable":  # the names it selects for the run's editor, as the checkpoint lists them
            value = sorted(learnable_names(parse_learnable(value), EDITORS[saved["editor"]].hyper_parameters))
        flag = "--" + ("from" if dest == "source" else dest.replace("_", "-"))
        if dest not in saved:
            raise InputError(f"--resume continues the run in {args.out} with its own settings: {flag} cannot be "
                             "given (start a new run with another --out to change it)")
        if value != saved[dest]:
            raise InputError(f"--resume continues the run in {args.out} with its own settings: {flag} {value} "
                             f"disagrees with the run's {saved[dest]} (leave it out, or start a new run with "
                             "another --out)")
    total, done = payload["trainer"]["config"]["epochs"], payload["trainer"]["epoch"]
    if "epochs" not in given:
        if done >= total:
            raise InputError(f"--resume: the run in {args.out} already finished its {total} epochs; pass --epochs "
                             f"N (N > {total}) to extend it")
        return None
    if args.epochs < done or args.epochs < 1:
        raise InputError(f"--epochs {args.epochs}: the run in {args.out} has already done {done} epochs")
    if args.epochs == done:
        raise InputError(f"--epochs {args.epochs}: the run in {args.out} has done {done} epochs already; give a "
                         "larger total to extend it")
    return args.epochs


def resumed_data_spec(args: argparse.Namespace, given: set[str], saved: dict[str, Any]) -> dict[str, Any]:
    """The run's data, with only its location (``--data-root``, ``--test-dir``, ``--classes-file``) changed."""
    spec = dict(saved)
    for dest, key in (("data_root", "root"), ("test_dir", "test_dir"), ("classes_file", "classes_file")):
        if dest in given:
            spec[key] = getattr(args, dest)
    return spec


def check_output_file(flag: str, path: Optional[str]) -> None:
    """``path`` can be written as a file: not a folder, and its folder exists."""
    if path is None:
        return
    if os.path.isdir(path):
        raise InputError(f"{flag} {path}: is a folder; give a file path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{flag} {path}: the folder {folder} does not exist")


def interrupted_line(error: TrainingInterrupted) -> str:
    """What an interrupted ``train``/``finetune`` prints (one line)."""
    if error.checkpoint is None:
        return "interrupted before the first epoch ended; no checkpoint was written"
    return (f"interrupted; last complete checkpoint {error.checkpoint}, epoch {error.epoch}; continue with "
            f"--resume --out {error.checkpoint}")
