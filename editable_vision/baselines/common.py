"""What the ``table3`` and ``analysis`` commands share: options, data, and the trained models (the plain
baseline, Editable Training, Editable+CNP), trained with :mod:`editable_vision.train` or loaded from files.

Models are cached in ``--work-dir`` (``plain.pt``, ``editable.pt``, ``cnp.pt``), so that ``analysis`` and a
re-run of ``table3`` reuse them; ``--plain`` / ``--editable`` / ``--cnp`` name other checkpoint files.
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from editable_core import make_editor, save_atomically

from ..api import VisionEditable
from ..checkpoint import load
from ..cli.options import resolve_device
from ..data import DATASETS, TensorImages, VisionData, load_data, stack
from ..models import build_model
from ..train import TrainConfig, Trainer
from .cnp import ConditionalClassifier, cnp_from_payload, cnp_payload, train_cnp

logger = logging.getLogger("editable_vision.baselines")


def add_common(parser: argparse.ArgumentParser) -> None:
    """Data, model, training and run options."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", choices=DATASETS, default="digits",
                      help="digits (scikit-learn, no download; default), cifar10 or folder")
    data.add_argument("--data-root", help="CIFAR-10 folder, or the training ImageFolder")
    data.add_argument("--test-dir", help="the test ImageFolder (folder data)")
    data.add_argument("--image-size", type=int, help="input size (digits: 16)")
    data.add_argument("--channels", type=int, choices=(1, 3), default=1, help="digits: 1 or 3 channels")
    data.add_argument("--download", action="store_true", help="download CIFAR-10 if missing")
    data.add_argument("--control-limit", type=int, help="use only the first N test images as the control set")

    models = parser.add_argument_group("models (trained unless found in --work-dir or given as files)")
    models.add_argument("--work-dir", default="runs/baselines", help="where trained models are cached")
    models.add_argument("--plain", metavar="CKPT", help="plain-training checkpoint (python -m editable_vision train "
                                                        "--mode plain); default: WORK_DIR/plain.pt")
    models.add_argument("--editable", metavar="CKPT", help="Editable Training checkpoint; default WORK_DIR/editable.pt")
    models.add_argument("--retrain", action="store_true", help="train again even if WORK_DIR holds the models")
    models.add_argument("--width", type=int, default=8, help="cifar_resnet18 width (64 = paper; default 8)")
    models.add_argument("--epochs", type=int, default=10)
    models.add_argument("--batch-size", type=int, default=64)
    models.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    models.add_argument("--max-batches", type=int, help="at most this many batches per epoch (quick runs)")
    models.add_argument("--edit-coef", type=float, default=0.1, help="c_edit: weight of L_edit (Editable Training, "
                                                                      "CNP)")
    models.add_argument("--loc-coef", type=float, default=0.1, help="c_loc: weight of L_loc (Editable Training, CNP)")
    models.add_argument("--edit-lr", type=float, default=3e-4,
                        help="RMSProp alpha (Editable Training and baseline edits; 3e-4 suits digits at width 8)")
    models.add_argument("--edit-max-steps", type=int, default=10, help="k, the most editor steps per edit")

    run = parser.add_argument_group("run")
    run.add_argument("--num-edits", type=int, default=100, help="N, the number of independent edits")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    run.add_argument("--seed", type=int, default=0, help="random seed (model init, data order, edits)")
    run.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    run.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")


def positive(name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


@dataclass
class Setup:
    """The run's data, control set, edit source and trained models."""

    data: VisionData
    data_spec: dict[str, Any]
    images: Tensor   # control set [n, C, H, W]
    labels: Tensor   # [n]
    device: torch.device
    args: argparse.Namespace

    def train_arrays(self, limit: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Training images ``[N, C, H, W]`` and labels ``[N]``, without augmentation where the data allows."""
        train = self.data.train
        if isinstance(train, TensorImages):
            n = len(train) if limit is None else min(limit, len(train))
            return train.images[:n], train.labels[:n]
        return stack(train, limit)

    def model_spec(self) -> dict[str, Any]:
        return {"arch": "cifar_resnet18", "width": self.args.width, "num_classes": self.data.num_classes,
                "in_channels": self.data.input_shape[0]}

    def config(self, mode: str) -> TrainConfig:
        a = self.args
        return TrainConfig(mode=mode, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, c_edit=a.edit_coef,
                           c_loc=a.loc_coef, seed=a.seed, max_batches=a.max_batches)

    def _path(self, given: Optional[str], name: str) -> tuple[str, bool]:
        if given:
            if not os.path.isfile(given):
                raise FileNotFoundError(f"checkpoint {given!r} does not exist")
            return given, True
        path = os.path.join(self.args.work_dir, name)
        return path, os.path.isfile(path) and not self.args.retrain

    def trained(self, mode: str) -> VisionEditable:
        """The plain (``mode="plain"``) or Editable Training model: loaded, or trained and cached."""
        path, exists = self._path(self.args.plain if mode == "plain" else self.args.editable, f"{mode}.pt")
        if not exists:
            torch.manual_seed(self.args.seed)
            editor = make_editor("rmsprop", self.args.edit_lr, "auto" if mode == "editable" else False)
            editable = VisionEditable(build_model(self.model_spec()), "chain3", editor, self.args.edit_max_steps,
                                      input_shape=self.data.input_shape)
            trainer = Trainer(editable, self.data, self.config(mode), model_spec=self.model_spec(),
                              data_spec=self.data_spec, device=self.device, progress=not self.args.quiet)
            logger.info("training the %s model (%d epochs) -> %s", mode, self.args.epochs, path)
            trainer.fit(path)
        else:
            logger.info("using the %s model %s", mode, path)
        return load(path, device=self.device)

    def cnp(self, given: Optional[str], edits_per_batch: int) -> ConditionalClassifier:
        """The Editable+CNP model: loaded from ``given`` or the cache, or trained (``edits_per_batch``
        random-target edits per batch) and cached."""
        path, exists = self._path(given, "cnp.pt")
        if exists:
            logger.info("using the Editable+CNP model %s", path)
            return cnp_from_payload(torch.load(path, map_location=self.device, weights_only=True), self.device)
        torch.manual_seed(self.args.seed)
        model = ConditionalClassifier(build_model(self.model_spec()), self.data.num_classes, "chain3")
        logger.info("training the Editable+CNP model (%d epochs) -> %s", self.args.epochs, path)
        history = train_cnp(model, self.data, self.config("editable"),
                            edits_per_batch=edits_per_batch, device=self.device,
                            progress=not self.args.quiet)
        payload = cnp_payload(model, self.model_spec(), self.data.input_shape, self.data_spec)
        payload["history"] = history
        save_atomically(payload, path)
        return model.eval()


def setup(args: argparse.Namespace) -> Setup:
    """Check the shared options, load the data and the control set."""
    for flag, value in (("--num-edits", args.num_edits), ("--epochs", args.epochs), ("--width", args.width),
                        ("--batch-size", args.batch_size), ("--edit-max-steps", args.edit_max_steps),
                        ("--max-batches", args.max_batches), ("--control-limit", args.control_limit)):
        positive(flag, value)
    device = resolve_device(args.device)
    spec = {"name": args.data, "root": args.data_root, "test_dir": args.test_dir, "image_size": args.image_size,
            "channels": args.channels, "seed": 0}
    data = load_data(args.data, args.data_root, image_size=args.image_size, channels=args.channels,
                     download=args.download, test_dir=args.test_dir)
    images, labels = stack(data.test, args.control_limit)
    if args.num_edits > len(images):
        raise ValueError(f"--num-edits {args.num_edits} exceeds the {len(images)} control images")
    return Setup(data, {k: v for k, v in spec.items() if v is not None}, images, labels, device, args)
