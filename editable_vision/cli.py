"""``python -m editable_vision {train,finetune,evaluate,edit} ...``: each prints a markdown table and, with
``--json PATH``, writes its figures as JSON. Errors are one line on stderr and a non-zero exit."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Optional, Sequence

import torch

from editable_core import ControlSet
from editable_core.errors import InputError, is_expected, one_line
from editable_core.files import load_torch_file

from . import report
from .api import VisionEditable, build_editor, resolve_device
from .checkpoint import editable_from_checkpoint, editable_payload, read_checkpoint, write_checkpoint
from .cli_checks import check_output_file, check_resume, given_flags, interrupted_line, resumed_data_spec
from .data import DATASETS, VisionData, load_data, read_image, stack
from .evaluate import (EDITOR_ORDER, best_rows, generalisation, make_edit_set, sequential_curves, sweep,
                       evaluate)
from .models import ARCHS, build_model, with_extra_layer
from .targets import rank_distribution
from .train import SCHEDULES, TrainConfig, Trainer, TrainingInterrupted

logger = logging.getLogger("editable_vision")


# ----------------------------------------------------------------------------------------------- options
def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    group.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default 0)")
    group.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    group.add_argument("--seed", type=int, default=0, help="random seed (model init, data order, edits)")
    group.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    group.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")


def _data(parser: argparse.ArgumentParser, default: Optional[str] = "digits") -> None:
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


def _editor(parser: argparse.ArgumentParser, part: Optional[str], c_default: float) -> None:
    group = parser.add_argument_group("editing")
    group.add_argument("--part", default=part, help="editable part: stem, chain1..chain4, extra, head or all "
                                                    f"(default: {part or 'extra if --extra-layer, else chain3'})")
    group.add_argument("--editor", default="rmsprop", choices=EDITOR_ORDER, help="editor function")
    group.add_argument("--editor-lr", type=float, default=1e-3, help="the editor's learning rate alpha")
    group.add_argument("--learnable", default="beta",
                       help="comma list of editor hyper-parameters trained with the model ('' for none)")
    group.add_argument("--max-steps", type=int, default=10, help="k, the most editor steps per edit")
    group.add_argument("--c-edit", type=float, default=c_default, help="weight of L_edit")
    group.add_argument("--c-loc", type=float, default=c_default, help="weight of L_loc")
    group.add_argument("--targets", default="random", choices=("random", "match-ranks"),
                       help="edit targets during training")


def _training(parser: argparse.ArgumentParser, lr: float, epochs: int) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=epochs,
                       help="epochs of the run; with --resume, a larger total extends the run (the cosine schedule "
                            "then spans the new total)")
    group.add_argument("--batch-size", type=int, default=64)
    group.add_argument("--lr", type=float, default=lr, help="learning rate" + (" (Adam)" if lr >= 1e-4 else
                                                                                 " of pre-existing layers (SGD)"))
    group.add_argument("--weight-decay", type=float, default=0.0)
    group.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="learning-rate schedule")
    group.add_argument("--max-norm", type=float, default=10.0, help="gradient clipping norm (0: off)")
    group.add_argument("--max-batches", type=int, help="at most this many batches per epoch (quick runs)")
    group.add_argument("--out", required=True, metavar="PATH", help="checkpoint written after every epoch")
    group.add_argument("--resume", action="store_true",
                       help="continue the run saved in --out exactly, with its own settings (a flag that disagrees "
                            "with them is an error)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m editable_vision",
                                     description="Editable Training and Editable Fine-Tuning of image "
                                                 "classifiers (Sinitsin et al., ICLR 2020, sections 4.1-4.3).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,finetune,evaluate,edit}")

    train = commands.add_parser("train", help="train from scratch: plain baseline or Editable Training (4.1)",
                                description="Train a classifier from scratch: the plain baseline (cross-entropy) "
                                            "or Editable Training (equation 2, one random-target edit per batch).")
    train.add_argument("--mode", choices=("plain", "editable"), default="editable")
    train.add_argument("--arch", choices=ARCHS, default="cifar_resnet18")
    train.add_argument("--width", type=int, default=64, help="cifar_resnet18 channels of chain 1 (64 = paper)")
    _data(train), _editor(train, "chain3", 0.1), _training(train, 1e-3, 10), _common(train)

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
    tune.add_argument("--lr-extra", type=float, default=1e-3,
                      help="SGD learning rate of the extra layer and the editor's hyper-parameters")
    tune.add_argument("--momentum", type=float, default=0.9)
    tune.add_argument("--freeze", default="", help="comma list of parts kept fixed (no gradient, eval-mode BN)")
    _data(tune, default=None), _editor(tune, None, 0.03), _training(tune, 1e-5, 1), _common(tune)

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
    _data(ev, default=None), _common(ev)

    ed = commands.add_parser("edit", help="edit one image's label in a checkpoint and save the edited model",
                             description="Edit a model so that one image gets the given label; prints the "
                                         "prediction and test error before and after, saves the edited model.")
    ed.add_argument("--checkpoint", required=True, metavar="PATH")
    image = ed.add_mutually_exclusive_group(required=True)
    image.add_argument("--image", help="an image file (png/jpg, preprocessed like the test set) or a .pt "
                                       "tensor [C, H, W] already preprocessed")
    image.add_argument("--index", type=int, help="the test-set image with this index")
    ed.add_argument("--label", type=int, required=True, help="the class the image must get")
    ed.add_argument("--part", help="editable part (default: the checkpoint's)")
    ed.add_argument("--editor", choices=EDITOR_ORDER, help="editor (default: the checkpoint's trained one)")
    ed.add_argument("--editor-lr", type=float, help="editor learning rate (default: the checkpoint's)")
    ed.add_argument("--max-steps", type=int, help="k (default: the checkpoint's)")
    ed.add_argument("--out", metavar="PATH", help="write the edited model here")
    _data(ed, default=None), _common(ed)
    return parser


# ----------------------------------------------------------------------------------------------- helpers
def _csv(text: Optional[str]) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


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
    classes = None
    if spec.get("classes_file"):
        with open(spec["classes_file"], encoding="utf-8") as file:
            classes = [line.strip() for line in file if line.strip()]
    return load_data(spec["name"], spec.get("root"), image_size=spec.get("image_size"),
                     channels=spec.get("channels") or 1, seed=spec.get("seed", 0), download=download,
                     test_dir=spec.get("test_dir"), classes=classes)


def _emit(args: argparse.Namespace, text: str, payload: dict[str, Any]) -> None:
    print(text)
    if args.json:
        report.write_json(args.json, payload)
        logger.info("wrote %s", args.json)


# ----------------------------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace, finetune: bool = False) -> None:
    device = resolve_device(args.device)
    check_output_file("--out", args.out)
    check_output_file("--json", args.json)
    if args.resume:
        payload = read_checkpoint(args.out)
        epochs = check_resume(args, args.given, payload, finetune)
        data = open_data(resumed_data_spec(args, args.given, payload["data"]), args.download)
        trainer = Trainer.resume(args.out, data, device=device, workers=args.workers, epochs=epochs,
                                 progress=not args.quiet)
    else:
        if args.epochs < 1:
            raise InputError(f"--epochs {args.epochs}: a run needs at least 1 epoch (nothing would be written to "
                             f"{args.out})")
        torch.manual_seed(args.seed)
        if finetune:
            model, model_spec, saved_data = _finetune_source(args)
        else:
            model_spec = {"arch": args.arch, "width": args.width}
            model, saved_data = None, None
        data_spec = data_spec_from_args(args, saved_data)
        data = open_data(data_spec, args.download)
        if model is not None and model_spec.get("num_classes", data.num_classes) != data.num_classes:
            logger.warning("the model has %d outputs but the data has %d classes: labels index its first %d outputs",
                           model_spec["num_classes"], data.num_classes, data.num_classes)
        if model is None:
            model_spec.update(num_classes=data.num_classes, in_channels=data.input_shape[0])
            model = build_model(model_spec)
        part = args.part or ("extra" if model_spec.get("extra_layer") else "chain3")
        editor = build_editor(args.editor, args.editor_lr, _csv(args.learnable))
        editable = VisionEditable(model, part, editor, args.max_steps, input_shape=data.input_shape)
        config = TrainConfig(
            mode=("finetune" if args.mode == "editable" else "distill") if finetune else args.mode,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_extra=getattr(args, "lr_extra", 1e-3),
            momentum=getattr(args, "momentum", 0.9), weight_decay=args.weight_decay, c_edit=args.c_edit,
            c_loc=args.c_loc, targets=args.targets, freeze=_csv(getattr(args, "freeze", "")),
            max_norm=args.max_norm or None, schedule=args.schedule, seed=args.seed, max_batches=args.max_batches)
        rank_probs = None
        if config.targets == "match-ranks":
            images, labels = stack(data.train, workers=args.workers)
            rank_probs = rank_distribution(editable.to(device).logits(images), labels.to(device), smoothing=0.5)
        trainer = Trainer(editable, data, config, model_spec=model_spec, data_spec=data_spec, device=device,
                          workers=args.workers, rank_probs=rank_probs, progress=not args.quiet)
    trainer.fit(args.out)
    history = trainer.history
    keys = [k for k in ("epoch", "loss", "l_base", "l_edit", "l_loc", "edit_steps", "test_error", "editor_beta",
                        "seconds") if history and k in history[0]]
    rows = [[f"{h[k]:.4g}" if isinstance(h[k], float) else h[k] for k in keys] for h in history]
    text = report.markdown_table(keys, rows) + f"\n\ncheckpoint: {args.out}"
    _emit(args, text, {"checkpoint": args.out, "config": trainer.state_dict()["trainer"]["config"],
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


def _parse_checkpoints(items: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        out.append((name or os.path.splitext(os.path.basename(path))[0], path))
    return out


def _editor_specs(text: str) -> list[tuple[str, Optional[float]]]:
    specs = []
    for item in _csv(text):
        name, _, lr = item.partition(":")
        if name != "trained" and name not in EDITOR_ORDER:
            raise ValueError(f"unknown editor {name!r}; choose 'trained' or one of {list(EDITOR_ORDER)}")
        specs.append((name, float(lr) if lr else None))
    return specs


def cmd_evaluate(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    check_output_file("--json", args.json)
    checkpoints = _parse_checkpoints(args.checkpoint)
    progress = not args.quiet
    rows, sweeps, tuned, gen_rows, curves, texts = [], {}, {}, [], {}, []
    rank_probs = None
    data_cache: dict[str, VisionData] = {}
    for name, path in checkpoints:
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
        if args.targets == "match-ranks" and rank_probs is None:  # the first checkpoint's (the baseline's) ranks
            rank_probs = rank_distribution(editable.logits(edit_images), edit_labels.to(device), smoothing=0.5)
        if args.num_edits > len(edit_images):
            raise InputError(f"--num-edits {args.num_edits}: only {len(edit_images)} images to edit "
                             f"({args.edit_dir or 'the test set'}); pass --num-edits {len(edit_images)} or fewer")
        edits = make_edit_set(editable, edit_images, args.num_edits,
                              targets="random" if args.targets == "labels" else args.targets,
                              rank_probs=rank_probs, seed=args.seed + 9)
        if args.targets == "labels":
            edits.targets = edit_labels[edits.indices]
        parts = _csv(args.parts)
        if args.table == "3":
            for editor_name, lr in _editor_specs(args.editors):
                for part in parts or [editable.part]:
                    candidate = editable_from_checkpoint(payload, part=part, device=device,
                                                         editor=None if editor_name == "trained" else editor_name,
                                                         lr=lr)
                    control = ControlSet(candidate, images.to(device), labels.to(device))
                    metrics = evaluate(candidate, control, edits, progress=progress, desc=f"{name} {editor_name}")
                    shown = candidate.editor.name if editor_name == "trained" else editor_name
                    row = report.metrics_row(name, shown, part, metrics, float(candidate.editor.lr()))
                    if editor_name == "trained":
                        # the checkpoint's own editor: trained with the model in modes editable / finetune
                        row["editor_title"] = f"{report.editor_title(shown)} (checkpoint's, lr {row['lr']:g})"
                    rows.append(row)
        else:
            editors = [n for n, _ in _editor_specs(args.editors) if n != "trained"] or list(EDITOR_ORDER)
            parts = parts or ["all", "chain1", "chain2", "chain3", "chain4"] + (
                ["extra"] if "extra" in dict(editable.module.named_children()) else [])
            grid = [float(v) for v in _csv(args.lr_grid)]
            lrs = {n: grid for n in editors} if grid else None
            result = sweep(editable, images, labels, edits, editors=editors, parts=parts, lrs=lrs, progress=progress)
            sweeps[name] = [r.as_dict() for r in result]
            if args.table == "1":
                best = {k[0]: v.as_dict() for k, v in
                        best_rows(result, lambda r: (r.editor,), args.min_success).items()}
                texts.append(f"### {name}: editor functions (best part and lr per editor)\n\n" + report.table1(best))
                _plot(args, lambda p: report.plot_editors(best, p, name), f"editors_{name}.png")
            else:
                best = {k: v.as_dict() for k, v in
                        best_rows(result, lambda r: (r.editor, r.part), args.min_success).items()}
                texts.append(f"### {name}: drawdown per editable part (best lr)\n\n"
                             + report.table2(best, editors, parts))
            tuned[name] = list(best.values())  # the rows the table shows
        if args.generalisation:
            pairs = make_edit_set(editable, images, min(args.generalisation, len(images)), targets=args.targets
                                  if args.targets != "labels" else "random", rank_probs=rank_probs, seed=args.seed + 7)
            gen = generalisation(editable, images, pairs, data.augment, seed=args.seed, progress=progress)
            gen_rows.append({"procedure": name, "part": editable.part, **gen.as_dict()})
        if args.sequential:
            curves[name] = sequential_curves(editable, images, labels, min(args.sequential, len(images)),
                                             runs=args.runs, targets="random" if args.targets == "labels"
                                             else args.targets, rank_probs=rank_probs, seed=args.seed,
                                             progress=progress)
    if rows:
        texts.insert(0, report.table3(rows))
    if gen_rows:
        texts.append("### Edit generalisation\n\n" + report.generalisation_table(gen_rows))
    if curves:
        finals = [[n, f"{100 * sum(c[0] for c in cs) / len(cs):.2f}%", f"{100 * sum(c[-1] for c in cs) / len(cs):.2f}%"]
                  for n, cs in curves.items()]
        texts.append(f"### Sequential edits ({args.sequential} edits, {args.runs} runs)\n\n"
                     + report.markdown_table(["Model", "Error before", f"Error after {args.sequential} edits"], finals))
        _plot(args, lambda p: report.plot_sequential(curves, p), "sequential.png")
    if rank_probs is not None:
        _plot(args, lambda p: report.plot_ranks(rank_probs.tolist(), p), "rank_distribution.png")
    _emit(args, "\n\n".join(texts), {
        "num_edits": args.num_edits, "targets": args.targets, "rows": rows, "sweeps": sweeps, "tuned": tuned,
        "generalisation": gen_rows, "sequential": curves,
        "rank_distribution": rank_probs.tolist() if rank_probs is not None else None})


def _plot(args: argparse.Namespace, draw, filename: str) -> None:
    folder = args.plot_dir or (os.path.dirname(os.path.abspath(args.json)) if args.json else "plots")
    path = os.path.join(folder, filename)
    draw(path)
    logger.info("wrote %s", path)


def _load_image(path: str, data: VisionData) -> torch.Tensor:
    if not os.path.isfile(path):
        raise InputError(f"--image {path}: file does not exist")
    if path.endswith(".pt"):
        image = load_torch_file(path)
        if not isinstance(image, torch.Tensor) or not image.is_floating_point():
            raise InputError(f"--image {path}: expected a float tensor [C, H, W], got "
                             f"{getattr(image, 'dtype', type(image).__name__)}")
        return image
    return data.preprocess(read_image(path, mode=None))


def cmd_edit(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    check_output_file("--out", args.out)
    check_output_file("--json", args.json)
    payload = read_checkpoint(args.checkpoint)
    data = open_data(data_spec_from_args(args, payload.get("data")), args.download)
    editable = editable_from_checkpoint(payload, part=args.part, editor=args.editor, lr=args.editor_lr,
                                        max_steps=args.max_steps, device=device)
    if args.index is not None:
        if not 0 <= args.index < len(data.test):
            raise ValueError(f"--index {args.index} out of range: the test set has {len(data.test)} images")
        image = data.test[args.index][0]
    else:
        image = _load_image(args.image, data)
    images, labels = stack(data.test, workers=args.workers)
    before = int(editable.predict(image))
    result = editable.edit(image, args.label)
    after = int(editable.predict(image, result.params))
    error_before = (editable.predict(images).cpu() != labels).float().mean().item()
    error_after = (editable.predict(images, result.params).cpu() != labels).float().mean().item()
    figures = {"label": args.label, "prediction_before": before, "prediction_after": after,
               "success": result.success, "steps": result.steps, "test_error_before": error_before,
               "test_error_after": error_after, "part": editable.part, "editor": editable.editor.name,
               "out": args.out}
    text = report.markdown_table(
        ["Label", "Prediction before", "Prediction after", "Success", "Num Steps", "Test error before",
         "Test error after"],
        [[args.label, before, after, result.success, result.steps, report.percent(error_before),
          report.percent(error_after)]])
    if args.out and not result.success:
        print(text)
        raise InputError(f"the edit did not succeed within {editable.max_steps} steps; {args.out} was not written "
                         "(try more --max-steps or another --editor-lr)")
    if args.out:
        edited = editable_payload(editable, payload["model_spec"], result.params)
        edited["data"] = payload.get("data")
        write_checkpoint(args.out, edited)
        text += f"\n\nedited model: {args.out}"
    _emit(args, text, figures)


COMMANDS = {"train": cmd_train, "finetune": lambda a: cmd_train(a, finetune=True), "evaluate": cmd_evaluate,
            "edit": cmd_edit}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.given = given_flags(build_parser, argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        COMMANDS[args.command](args)
    except TrainingInterrupted as interrupted:
        print(f"python -m editable_vision {args.command}: {interrupted_line(interrupted)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"python -m editable_vision {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, FloatingPointError) as error:  # FloatingPointError: training diverged
        expected = is_expected(error) or isinstance(error, FloatingPointError)
        if not expected or os.environ.get("EDITABLE_VISION_DEBUG"):
            raise  # a bug keeps its traceback
        print(f"python -m editable_vision {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 1
    return 0
