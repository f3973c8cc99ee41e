"""Training loops: plain baseline, Editable Training (4.1), Editable Fine-Tuning and distillation (4.3).

* ``plain``: cross-entropy, Adam (default hyper-parameters, as in 4.1).
* ``editable``: ``L_base + c_edit * L_edit + c_loc * L_loc`` (equation 2) with one random-target edit per
  batch (an augmented training image), ``k = max_steps`` editor steps, Adam; the editor's learnable
  hyper-parameters (RMSProp's ``beta``) are trained with the model. ``backprop`` picks the exact outer
  gradient or a cheaper one (:func:`editable_core.parse_backprop`).
* ``finetune``: the same objective with ``L_base = KL(p_original || p_model)`` on the batch (the original
  network is a frozen copy taken at the start), SGD with momentum 0.9, ``lr`` for pre-existing layers and
  ``lr_extra`` for the extra layer and the editor's hyper-parameters (4.3: 1e-5 and 1e-3).
* ``distill``: the KL term alone, same optimiser (the distillation-only baseline of Table 4).

Parts listed in ``freeze`` get no gradient and keep eval-mode batch-norm, so they stay bit-for-bit fixed.
Checkpoints (see :mod:`editable_vision.checkpoint`) are written at the end of each epoch and resume exactly:
optimizer, editor hyper-parameters, teacher, RNG states, epoch and step all travel in them.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from editable_core import editable_training_loss, locality_kl, parse_backprop, save_atomically

from .api import VisionEditable
from .checkpoint import editable_from_checkpoint, editable_payload, module_state, read_checkpoint
from .data import VisionData, loader, stack
from .models import build_model
from .targets import TARGETS, match_rank_targets, random_targets

logger = logging.getLogger(__name__)

MODES = ("plain", "editable", "finetune", "distill")
SCHEDULES = ("constant", "cosine")
#: where Editable Fine-Tuning's settings (4.3) differ from training from scratch: one epoch, SGD at 1e-5 for the
#: pre-existing layers, lighter edit terms
FINETUNE_DEFAULTS = {"epochs": 1, "lr": 1e-5, "c_edit": 0.03, "c_loc": 0.03}


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (``c_edit``, ``c_loc`` as in equation 2)."""

    mode: str = "plain"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    lr_extra: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    c_edit: float = 0.1
    c_loc: float = 0.1
    targets: str = "random"
    freeze: list[str] = field(default_factory=list)
    max_norm: Optional[float] = 10.0
    schedule: str = "cosine"
    eval_locality: bool = True
    backprop: str = "full"
    seed: int = 0
    max_batches: Optional[int] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown training mode {self.mode!r}; choose one of {list(MODES)}")
        if self.targets not in TARGETS:
            raise ValueError(f"unknown edit targets {self.targets!r}; choose one of {list(TARGETS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {self.schedule!r}; choose one of {list(SCHEDULES)}")
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
        parse_backprop(self.backprop)
        self.freeze = list(self.freeze)

    @property
    def edits(self) -> bool:
        return self.mode in ("editable", "finetune")

    @property
    def distils(self) -> bool:
        return self.mode in ("finetune", "distill")


def kl_to_teacher(logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """``L_base`` of 4.3: mean ``KL(p_teacher || p_model)``; both ``[batch, classes]``."""
    return locality_kl(teacher_logits, logits)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`EpochLoop.fit`; ``checkpoint`` holds the run up to ``epoch`` (both None: nothing saved)."""

    def __init__(self, checkpoint: Optional[str], epoch: Optional[int]):
        super().__init__(checkpoint, epoch)
        self.checkpoint, self.epoch = checkpoint, epoch


class EpochLoop:
    """The epoch loop every trainer here shares: shuffled batches (an order that depends only on the seed and
    the epoch, so a resumed run sees the same batches), at most ``max_batches`` per epoch, the learning-rate
    schedule, a divergence check, and one record of means per epoch in ``history``.

    A subclass sets ``optimizer`` and implements :meth:`train_step` and :meth:`test_error` (and :meth:`save`
    to checkpoint); ``label`` names it in progress bars and logs.
    """

    label = "train"
    optimizer: torch.optim.Optimizer

    def __init__(self, data: VisionData, config: TrainConfig, *, workers: int = 0, progress: bool = True):
        self.data, self.config, self.workers, self.progress = data, config, workers, progress
        self.epoch, self.step, self.history = 0, 0, []
        self.saved: tuple[Optional[str], Optional[int]] = (None, None)  # (checkpoint, epoch) last written

    def train_step(self, images: Tensor, labels: Tensor) -> dict[str, float]:
        """One optimiser step on a batch ``images [B, C, H, W]``, ``labels [B]``; returns the loss terms."""
        raise NotImplementedError

    def test_error(self) -> float:
        """Classification error on the test set (eval mode)."""
        raise NotImplementedError

    def epoch_values(self) -> dict[str, float]:
        """Values added to each epoch's record besides the means of the step's terms."""
        return {}

    def save(self, path: str) -> None:
        raise NotImplementedError

    def _set_lr(self, batches_per_epoch: int) -> None:
        """Cosine schedule: ``lr = initial_lr * (1 + cos(pi * step / total_steps)) / 2``, a function of
        the step alone (so a resumed run continues it exactly); constant otherwise."""
        if self.config.schedule != "cosine":
            return
        total = max(1, self.config.epochs * batches_per_epoch)
        factor = 0.5 * (1 + math.cos(math.pi * min(self.step, total) / total))
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training set (at most ``max_batches`` batches); returns the epoch's means."""
        order = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.epoch)
        batches = loader(self.data.train, self.config.batch_size, shuffle=True, workers=self.workers,
                         generator=order, drop_last=len(self.data.train) > self.config.batch_size)
        total = len(batches) if self.config.max_batches is None else min(len(batches), self.config.max_batches)
        sums: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(batches, total=total, desc=f"{self.label} epoch {self.epoch + 1}/{self.config.epochs}",
                   disable=not self.progress, leave=False)
        for i, (images, labels) in enumerate(bar):
            if i >= total:
                break
            self._set_lr(total)
            stats = self.train_step(images, labels)
            if not math.isfinite(stats["loss"]):
                raise FloatingPointError(f"{self.label} training diverged at step {self.step}: loss {stats['loss']}")
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix(loss=f"{stats['loss']:.3f}")
        bar.close()
        record = {k: v / max(total, 1) for k, v in sums.items()}
        record.update(epoch=self.epoch + 1, step=self.step, seconds=time.perf_counter() - start,
                      test_error=self.test_error(), **self.epoch_values())
        self.epoch += 1
        self.history.append(record)
        logger.info("%s epoch %d: %s", self.label, self.epoch, ", ".join(f"{k}={v:.4g}" for k, v in record.items()))
        return record

    def fit(self, checkpoint: Optional[str] = None) -> list[dict[str, float]]:
        """Train until ``config.epochs`` epochs are done, saving ``checkpoint`` after each epoch.

        Ctrl-C raises :class:`TrainingInterrupted` naming the last checkpoint written completely.
        """
        try:
            while self.epoch < self.config.epochs:
                self.train_epoch()
                if checkpoint:
                    self.save(checkpoint)
                    self.saved = (checkpoint, self.epoch)
        except KeyboardInterrupt:
            raise TrainingInterrupted(*self.saved) from None
        return self.history


class Trainer(EpochLoop):
    """Trains ``editable.module`` (and the editor's learnable hyper-parameters) on ``data``.

    model_spec / data_spec: JSON-able descriptions stored in checkpoints (see ``build_model``,
    ``load_data``). rank_probs: ``[classes]`` rank distribution for ``targets="match-ranks"``.
    teacher_state: the original network's state (for resuming a fine-tuning run).
    """

    def __init__(self, editable: VisionEditable, data: VisionData, config: TrainConfig, *,
                 model_spec: dict[str, Any], data_spec: dict[str, Any], device: str | torch.device = "cpu",
                 workers: int = 0, rank_probs: Optional[Tensor] = None,
                 teacher_state: Optional[dict[str, Tensor]] = None, progress: bool = True):
        if config.targets == "match-ranks" and config.edits and rank_probs is None:
            raise ValueError("match-ranks targets need a rank distribution (rank_probs)")
        super().__init__(data, config, workers=workers, progress=progress)
        self.label = config.mode
        self.device = torch.device(device)
        self.editable = editable.to(self.device)
        self.model_spec, self.data_spec, self.rank_probs = dict(model_spec), dict(data_spec), rank_probs
        self.generator = torch.Generator().manual_seed(config.seed)
        self.frozen = self._freeze(config.freeze)
        self.teacher = self._teacher(teacher_state) if config.distils else None
        self.optimizer = self._optimizer()
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self._test: Optional[tuple[Tensor, Tensor]] = None

    def _freeze(self, parts: list[str]) -> list[nn.Module]:
        modules = dict(self.editable.module.named_children())
        unknown = [p for p in parts if p not in modules]
        if unknown:
            raise ValueError(f"cannot freeze unknown part(s) {unknown}; the parts are {list(modules)}")
        for part in parts:
            modules[part].requires_grad_(False)
        return [modules[p] for p in parts]

    def _teacher(self, state: Optional[dict[str, Tensor]]) -> nn.Module:
        """The original network of 4.3, frozen: built from the spec and loaded with ``state`` (on resume)
        or the model's own state (a fresh run); building it leaves the global RNG untouched."""
        with torch.random.fork_rng(devices=[]):
            teacher = build_model(self.model_spec)
        teacher.load_state_dict(state if state is not None else self.editable.module.state_dict())
        return teacher.to(self.device).eval().requires_grad_(False)

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        trainable = [p for p in self.editable.parameters() if p.requires_grad]
        if not cfg.distils:
            return torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        extra = self.editable.module._modules.get("extra")
        new_ids = {id(p) for p in self.editable.editor.parameters()}
        new_ids |= {id(p) for p in extra.parameters()} if extra is not None else set()
        groups = [{"params": [p for p in trainable if id(p) not in new_ids], "lr": cfg.lr},
                  {"params": [p for p in trainable if id(p) in new_ids], "lr": cfg.lr_extra}]
        return torch.optim.SGD([g for g in groups if g["params"]], lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)

    def _train_mode(self) -> None:
        self.editable.module.train()
        for part in self.frozen:
            part.eval()

    def _sample_edit(self) -> tuple[Tensor, Tensor]:
        """One edit ``(image [1, C, H, W], target [1])``: an augmented training image, a random or
        rank-matched target."""
        index = int(torch.randint(len(self.data.train), (1,), generator=self.generator))
        image = self.data.train[index][0][None].to(self.device)
        if self.config.targets == "random":
            target = random_targets(1, self.editable.num_classes, self.generator)
        else:
            target = match_rank_targets(self.editable.logits(image), self.rank_probs, self.generator)
        return image, target.to(self.device)

    def train_step(self, images: Tensor, labels: Tensor) -> dict[str, float]:
        cfg = self.config
        self._train_mode()
        self.optimizer.zero_grad(set_to_none=True)
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        base_loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy
        targets: Tensor = labels
        if cfg.distils:
            with torch.no_grad():
                targets = self.teacher(images)
            base_loss = kl_to_teacher
        if cfg.edits:
            objective, result = editable_training_loss(self.editable, images, targets, *self._sample_edit(),
                                                       c_edit=cfg.c_edit, c_loc=cfg.c_loc, base_loss=base_loss,
                                                       eval_locality=cfg.eval_locality, backprop=cfg.backprop)
            loss = objective.total
            stats = {"l_base": objective.l_base.item(), "l_edit": objective.l_edit.item(),
                     "l_loc": objective.l_loc.item(), "edit_success": float(result.success),
                     "edit_steps": float(result.steps)}
        else:
            loss = base_loss(self.editable(images), targets)
            stats = {"l_base": loss.item()}
        loss.backward()
        if cfg.max_norm is not None:
            params = [p for p in self.editable.parameters() if p.grad is not None]
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_norm))
        self.optimizer.step()
        self.step += 1
        return {"loss": loss.item(), **stats}

    def test_error(self) -> float:
        if self._test is None:
            self._test = stack(self.data.test, workers=self.workers)
        images, labels = self._test
        return (self.editable.predict(images).cpu() != labels).float().mean().item()

    def epoch_values(self) -> dict[str, float]:
        return self.editor_values()

    def editor_values(self) -> dict[str, float]:
        """Current values of the editor's hyper-parameters (e.g. ``editor_lr``, ``editor_beta``)."""
        editor = self.editable.editor
        return {f"editor_{h}": getattr(editor, h)().detach().item() for h in editor.hyper_parameters}

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint needs to resume this run exactly."""
        state = editable_payload(self.editable, self.model_spec)
        state["data"] = self.data_spec
        state["trainer"] = {
            "config": asdict(self.config), "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch, "step": self.step, "history": self.history,
            "rng_cpu": torch.get_rng_state(), "generator": self.generator.get_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "teacher": module_state(self.teacher) if self.teacher is not None else None,
            "rank_probs": self.rank_probs,
        }
        return state

    def save(self, path: str) -> None:
        save_atomically(self.state_dict(), path)
        logger.info("saved %s (epoch %d)", path, self.epoch)

    @classmethod
    def resume(cls, path: str, data: VisionData, *, device: str | torch.device = "cpu", workers: int = 0,
               epochs: Optional[int] = None, progress: bool = True) -> "Trainer":
        """Rebuild a trainer from a checkpoint of a run; ``epochs`` extends the run if given."""
        payload = read_checkpoint(path)
        if "trainer" not in payload:
            raise ValueError(f"{path!r} holds a model but no training state to resume")
        state = payload["trainer"]
        config = TrainConfig(**{**state["config"], **({"epochs": epochs} if epochs is not None else {})})
        editable = editable_from_checkpoint(payload, device=device)
        trainer = cls(editable, data, config, model_spec=payload["model_spec"], data_spec=payload["data"],
                      device=device, workers=workers, rank_probs=state["rank_probs"],
                      teacher_state=state["teacher"], progress=progress)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.epoch, trainer.step, trainer.history = state["epoch"], state["step"], list(state["history"])
        trainer.saved = (path, state["epoch"])
        trainer.generator.set_state(state["generator"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        return trainer

