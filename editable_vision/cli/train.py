"""``train`` (a classifier from scratch: plain or Editable Training, 4.1) and ``finetune`` (Editable
Fine-Tuning or distillation of a trained model, 4.3): each prints the epoch history."""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import asdict
from typing import Any, Optional

import torch

from editable_core import make_editor, parse_learnable
from editable_core.errors import InputError

from .. import distributed, report
from ..api import VisionEditable
from ..checkpoint import editable_from_checkpoint, read_checkpoint
from ..data import VisionData, stack
from ..models import ARCHS, build_model, with_extra_layer
from ..targets import rank_distribution
from ..train import FINETUNE_DEFAULTS, TrainConfig, Trainer
from .checks import check_output_file, check_resume, resumed_data_spec
from .options import (add_data_options, add_run_options, add_training_options, csv, data_spec_from_args, emit,
                      open_data, resolve_device)

logger = logging.getLogger("editable_vision")

TRAIN_DEFAULTS = TrainConfig(mode="editable")
FINETUNE = TrainConfig(mode="finetune", **FINETUNE_DEFAULTS)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train from scratch: plain baseline or Editable Training (4.1)",
                                description="Train a classifier from scratch: the plain baseline (cross-entropy) "
                                            "or Editable Training (equation 2, one random-target edit per batch).")
    train.add_argument("--mode", choices=("plain", "editable"), default=TRAIN_DEFAULTS.mode)
    train.add_argument("--arch", choices=ARCHS, default="cifar_resnet18")
    train.add_argument("--width", type=int, default=64, help="cifar_resnet18 channels of chain 1 (64 = paper)")
    add_data_options(train), add_training_options(train, TRAIN_DEFAULTS, "chain3"), add_run_options(train)
    train.set_defaults(command_function=cmd_train)

    tune = commands.add_parser("finetune", help="Editable Fine-Tuning or distillation of a trained model (4.3)",
                               description="Fine-tune a trained model with L_base = KL(original || model): "
                                           "Editable Fine-Tuning (with the edit terms) or the distillation-only "
                                           "baseline. SGD, momentum 0.9, separate learning rates.")
    tune.add_argument("--mode", choices=("editable", "distill"), default="editable")
    source = tune.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", metavar="CKPT", help="start from this checkpoint")
    source.add_argument("--arch", choices=("resnet18", "densenet169"), help="start from a torchvision model")
    tune.add_argument("--weights", help="torchvision weights name (e.g. IMAGENET1K_V1, if available locally) "
                                        "or a state-dict file, for --arch (required unless --random-init)")
    tune.add_argument("--random-init", action="store_true",
                      help="with --arch: fine-tune a randomly initialised network (not Editable Fine-Tuning proper)")
    tune.add_argument("--extra-layer", type=int, default=4096, metavar="HIDDEN",
                      help="add the extra residual layer with this many hidden units (0: none)")
    tune.add_argument("--lr-extra", type=float, default=FINETUNE.lr_extra,
                      help="SGD learning rate of the extra layer and the editor's hyper-parameters")
    tune.add_argument("--momentum", type=float, default=FINETUNE.momentum)
    tune.add_argument("--freeze", default="", help="comma list of parts kept fixed (no gradient, eval-mode BN)")
    add_data_options(tune, default=None), add_training_options(tune, FINETUNE, None), add_run_options(tune)
    tune.set_defaults(command_function=cmd_finetune)


def _check_new_run(args: argparse.Namespace) -> None:
    """The output files can be written; a new run trains at least one epoch."""
    check_output_file("--out", args.out)
    check_output_file("--json", args.json)
    if not args.resume and args.epochs < 1:
        raise InputError(f"--epochs {args.epochs}: a run needs at least 1 epoch (nothing would be written to "
                         f"{args.out})")


def cmd_train(args: argparse.Namespace) -> None:
    _check_new_run(args)
    if args.resume:
        return _resume(args, finetune=False)
    torch.manual_seed(args.seed)
    data_spec = data_spec_from_args(args)
    data = open_data(data_spec, args.download)
    model_spec = {"arch": args.arch, "width": args.width, "num_classes": data.num_classes,
                  "in_channels": data.input_shape[0]}
    _fit(args, build_model(model_spec), model_spec, data, data_spec, _config(args, args.mode))


def cmd_finetune(args: argparse.Namespace) -> None:
    _check_new_run(args)
    if args.resume:
        return _resume(args, finetune=True)
    torch.manual_seed(args.seed)
    model, model_spec, saved_data = _finetune_source(args)  # before the data, as the seed's first use
    data_spec = data_spec_from_args(args, saved_data)
    data = open_data(data_spec, args.download)
    if model_spec.get("num_classes", data.num_classes) != data.num_classes:
        logger.warning("the model has %d outputs but the data has %d classes: labels index its first %d outputs",
                       model_spec["num_classes"], data.num_classes, data.num_classes)
    config = _config(args, "finetune" if args.mode == "editable" else "distill", lr_extra=args.lr_extra,
                     momentum=args.momentum, freeze=csv(args.freeze))
    _fit(args, model, model_spec, data, data_spec, config)


def _config(args: argparse.Namespace, mode: str, **finetuning: Any) -> TrainConfig:
    return TrainConfig(mode=mode, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       weight_decay=args.weight_decay, c_edit=args.edit_coef, c_loc=args.loc_coef,
                       targets=args.targets, max_norm=args.max_norm or None, schedule=args.schedule,
                       batch_norm=args.batch_norm, backprop=args.edit_backprop, loc_batch=args.loc_batch,
                       seed=args.seed, max_batches=args.max_batches, **finetuning)


def _fit(args: argparse.Namespace, model: torch.nn.Module, model_spec: dict[str, Any], data: VisionData,
         data_spec: dict[str, Any], config: TrainConfig) -> None:
    device = resolve_device(args.device)
    part = args.part or ("extra" if model_spec.get("extra_layer") else "chain3")
    editor = make_editor(args.editor, args.edit_lr, parse_learnable(args.edit_learnable))
    editable = VisionEditable(model, part, editor, args.edit_max_steps, input_shape=data.input_shape)
    rank_probs = None
    if config.targets == "match-ranks":
        images, labels = stack(data.train, workers=args.workers)
        rank_probs = rank_distribution(editable.to(device).logits(images), labels.to(device), smoothing=0.5)
    trainer = Trainer(editable, data, config, model_spec=model_spec, data_spec=data_spec, device=device,
                      workers=args.workers, rank_probs=rank_probs, progress=not args.quiet,
                      channels_last=args.channels_last)
    _report(args, trainer)


def _resume(args: argparse.Namespace, finetune: bool) -> None:
    """Continue the run in ``--out`` with its own settings (see :func:`.checks.check_resume`)."""
    payload = read_checkpoint(args.out)
    epochs = check_resume(args, args.given, payload, finetune)
    data = open_data(resumed_data_spec(args, args.given, payload["data"]), args.download)
    _report(args, Trainer.resume(args.out, data, device=resolve_device(args.device), workers=args.workers,
                                 epochs=epochs, progress=not args.quiet, channels_last=args.channels_last))


def _report(args: argparse.Namespace, trainer: Trainer) -> None:
    ctx = distributed.current()
    if ctx.enabled:
        logger.info("%d processes (%s): %d images per process and step, a global batch of %d", ctx.world_size,
                    torch.distributed.get_backend(), trainer.config.batch_size,
                    ctx.world_size * trainer.config.batch_size)
    trainer.fit(args.out)
    history = trainer.history
    keys = [k for k in ("epoch", "loss", "l_base", "l_edit", "l_loc", "edit_steps", "test_error", "editor_beta",
                        "seconds") if history and k in history[0]]
    rows = [[f"{h[k]:.4g}" if isinstance(h[k], float) else h[k] for k in keys] for h in history]
    text = report.markdown_table(keys, rows) + f"\n\ncheckpoint: {args.out}"
    emit(args, text, {"checkpoint": args.out, "config": asdict(trainer.config),
                      "model_spec": trainer.model_spec, "history": history})


def _finetune_source(args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, Any], Optional[dict]]:
    """The model to fine-tune: a checkpoint's, or torchvision's (optionally with ImageNet weights)."""
    if args.source:
        payload = read_checkpoint(args.source)
        model = editable_from_checkpoint(payload).module
        spec, saved_data = dict(payload["model_spec"]), payload.get("data")
    elif args.arch:
        saved_data = None
        if args.data is None:
            raise ValueError("fine-tuning a torchvision model needs --data (e.g. folder --data-root ... )")
        if not args.weights and not args.random_init:
            cache = os.path.join(torch.hub.get_dir(), "checkpoints")
            raise InputError(f"--arch {args.arch} without --weights would fine-tune a randomly initialised "
                             f"network: pass --weights IMAGENET1K_V1 (torchvision looks for the file in {cache}) "
                             "or a state-dict file, or --random-init to mean it")
        spec = {"arch": args.arch, "num_classes": 1000}
        model = build_model(spec, weights=args.weights)
    else:
        raise ValueError("say what to fine-tune: --from CHECKPOINT or --arch resnet18/densenet169")
    if args.extra_layer:
        if spec.get("extra_layer"):
            raise ValueError("the model already has an extra layer; pass --extra-layer 0")
        model, spec["extra_layer"] = with_extra_layer(model, args.extra_layer), args.extra_layer
    return model, spec, saved_data
