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

Parts listed in ``freeze`` get no gradient and keep eval-mode batch-norm, so they stay bit-for-bit fixed;
``batch_norm="frozen"`` keeps every batch-norm layer in eval mode (running statistics fixed, its affine
weights still trained). Checkpoints (see :mod:`editable_vision.checkpoint`) are written at the end of each
epoch and resume exactly: optimizer, editor hyper-parameters, teacher, RNG states, epoch and step all
travel in them.

Under torchrun (:mod:`editable_vision.distributed`) each of the N processes trains on its
``DistributedSampler`` shard, ``batch_size`` images per step (a global batch of ``N * batch_size``), with
its own edit samples; ``DistributedDataParallel`` averages the gradients of the model and of the editor's
hyper-parameters (:class:`TrainingLoss` holds both); rank 0 alone writes checkpoints.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from editable_core import check_loc_batch, editable_training_loss, locality_kl, parse_backprop, save_atomically

from . import distributed
from .api import VisionEditable
from .checkpoint import editable_from_checkpoint, editable_payload, module_state, read_checkpoint
from .data import VisionData, stack
from .loop import EpochLoop
from .models import build_model
from .targets import TARGETS, match_rank_targets, random_targets

logger = logging.getLogger(__name__)

MODES = ("plain", "editable", "finetune", "distill")
SCHEDULES = ("constant", "cosine")
#: batch: train-mode batch-norm (each process's batch statistics); frozen: eval mode throughout
BATCH_NORMS = ("batch", "frozen")
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
    batch_norm: str = "batch"
    eval_locality: bool = True
    backprop: str = "full"
    loc_batch: Optional[int] = None
    seed: int = 0
    max_batches: Optional[int] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown training mode {self.mode!r}; choose one of {list(MODES)}")
        if self.targets not in TARGETS:
            raise ValueError(f"unknown edit targets {self.targets!r}; choose one of {list(TARGETS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {self.schedule!r}; choose one of {list(SCHEDULES)}")
        if self.batch_norm not in BATCH_NORMS:
            raise ValueError(f"unknown batch-norm mode {self.batch_norm!r}; choose one of {list(BATCH_NORMS)}")
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
        parse_backprop(self.backprop)
        check_loc_batch(self.loc_batch)
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


class TrainingLoss(nn.Module):
    """The training objective as one module, so that ``DistributedDataParallel`` can wrap it: its parameters
    are the model's *and* the editor's learnable hyper-parameters, and its forward runs the edit (with
    ``create_graph=True``, differentiated as ``config.backprop`` says) and returns ``(loss, stats)``.

    forward(images ``[B, C, H, W]``, targets (labels ``[B]`` or teacher logits ``[B, classes]``), edit
    (``(image [1, C, H, W], target [1])`` in the modes that edit)).
    """

    def __init__(self, editable: VisionEditable, config: TrainConfig):
        super().__init__()
        self.editable, self.config = editable, config

    def forward(self, images: Tensor, targets: Tensor,
                edit: Optional[tuple[Tensor, Tensor]] = None) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        base_loss: Callable[[Tensor, Tensor], Tensor] = kl_to_teacher if cfg.distils else F.cross_entropy
        if not cfg.edits:
            loss = base_loss(self.editable(images), targets)
            return loss, {"l_base": loss.item()}
        if edit is None:
            raise ValueError(f"training mode {cfg.mode!r} needs an edit (image, target) per step")
        objective, result = editable_training_loss(self.editable, images, targets, *edit, c_edit=cfg.c_edit,
                                                   c_loc=cfg.c_loc, base_loss=base_loss,
                                                   eval_locality=cfg.eval_locality, backprop=cfg.backprop,
                                                   loc_batch=cfg.loc_batch)
        return objective.total, {"l_base": objective.l_base.item(), "l_edit": objective.l_edit.item(),
                                 "l_loc": objective.l_loc.item(), "edit_success": float(result.success),
                                 "edit_steps": float(result.steps)}


class Trainer(EpochLoop):
    """Trains ``editable.module`` (and the editor's learnable hyper-parameters) on ``data``.

    model_spec / data_spec: JSON-able descriptions stored in checkpoints (see ``build_model``,
    ``load_data``). rank_probs: ``[classes]`` rank distribution for ``targets="match-ranks"``.
    teacher_state: the original network's state (for resuming a fine-tuning run). channels_last: keep the
    model's (and the teacher's) 4-D weights, and so every activation and edit, in channels-last (NHWC) memory,
    the layout oneDNN's and cuDNN's fast convolutions use: the same results up to float rounding.
    In an initialised process group of N > 1 ranks (:func:`editable_vision.distributed.current`) it trains
    data-parallel: :class:`TrainingLoss` inside ``DistributedDataParallel``, each rank's edit samples and
    augmentations from its own seed (:func:`~editable_vision.distributed.rank_seed`).
    """

    def __init__(self, editable: VisionEditable, data: VisionData, config: TrainConfig, *,
                 model_spec: dict[str, Any], data_spec: dict[str, Any], device: str | torch.device = "cpu",
                 workers: int = 0, rank_probs: Optional[Tensor] = None,
                 teacher_state: Optional[dict[str, Tensor]] = None, progress: bool = True,
                 channels_last: bool = False):
        if config.targets == "match-ranks" and config.edits and rank_probs is None:
            raise ValueError("match-ranks targets need a rank distribution (rank_probs)")
        self.dist = distributed.current()
        super().__init__(data, config, workers=workers, progress=progress and self.dist.is_main)
        self.label = config.mode
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.preserve_format
        self.editable = editable.to(self.device, memory_format=self.memory_format)
        self.model_spec, self.data_spec, self.rank_probs = dict(model_spec), dict(data_spec), rank_probs
        self.generator = torch.Generator().manual_seed(distributed.rank_seed(config.seed, self.dist.rank))
        if self.dist.enabled:
            torch.manual_seed(distributed.rank_seed(config.seed, self.dist.rank))  # this rank's augmentations
        self.frozen = self._freeze(config.freeze)
        self.objective = TrainingLoss(self.editable, config)
        self.model = distributed.wrap(self.objective, self.dist, self.device)  # rank 0's weights on every rank
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
        return teacher.to(self.device, memory_format=self.memory_format).eval().requires_grad_(False)

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
        if self.config.batch_norm == "frozen":
            for module in self.editable.module.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def sample_edit(self) -> tuple[Tensor, Tensor]:
        """One edit ``(image [1, C, H, W], target [1])``: an augmented training image, a random or
        rank-matched target (drawn from this rank's generator)."""
        index = int(torch.randint(len(self.data.train), (1,), generator=self.generator))
        image = self.data.train[index][0][None].to(self.device)
        if self.config.targets == "random":
            target = random_targets(1, self.editable.num_classes, self.generator)
        else:
            target = match_rank_targets(self.editable.logits(image), self.rank_probs, self.generator)
        return image, target.to(self.device)

    def backward(self, images: Tensor, labels: Tensor, edit: Optional[tuple[Tensor, Tensor]] = None,
                 scale: float = 1.0) -> tuple[Tensor, dict[str, float]]:
        """The objective on ``images [B, C, H, W]``, ``labels [B]`` (and ``edit``, drawn with
        :meth:`sample_edit` if None in a mode that edits), back-propagated times ``scale``; gradients
        accumulate (averaged over ranks under DDP). Returns the loss and its terms."""
        self._train_mode()
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        targets = labels
        if self.config.distils:
            with torch.no_grad():
                targets = self.teacher(images)
        if self.config.edits and edit is None:
            edit = self.sample_edit()
        loss, stats = self.model(images, targets, edit)
        (loss * scale if scale != 1.0 else loss).backward()
        return loss, stats

    def optimizer_step(self) -> dict[str, float]:
        """Clip the gradients (``max_norm``; under DDP the averaged ones, the same on every rank) and step."""
        stats = {}
        if self.config.max_norm is not None:
            params = [p for p in self.editable.parameters() if p.grad is not None]
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.config.max_norm))
        self.optimizer.step()
        self.step += 1
        return stats

    def train_step(self, images: Tensor, labels: Tensor, edit: Optional[tuple[Tensor, Tensor]] = None
                   ) -> dict[str, float]:
        """One optimiser step on ``images [B, C, H, W]``, ``labels [B]`` (and ``edit``, drawn if None)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, stats = self.backward(images, labels, edit)
        return {"loss": loss.item(), **stats, **self.optimizer_step()}

    def test_error(self) -> float:
        """Classification error on the test set (eval mode); under DDP each rank counts its block."""
        if self._test is None:
            test = self.data.test
            if self.dist.enabled:
                test = torch.utils.data.Subset(test, distributed.shard(len(test), self.dist))
            self._test = stack(test, workers=self.workers)
        images, labels = self._test
        if not self.dist.enabled:
            return (self.editable.predict(images).cpu() != labels).float().mean().item()
        wrong = {"wrong": float((self.editable.predict(images).cpu() != labels).sum())}
        return distributed.all_sum(wrong, self.dist)["wrong"] / len(self.data.test)

    def epoch_values(self) -> dict[str, float]:
        return self.editor_values()

    def editor_values(self) -> dict[str, float]:
        """Current values of the editor's hyper-parameters (e.g. ``editor_lr``, ``editor_beta``)."""
        editor = self.editable.editor
        return {f"editor_{h}": getattr(editor, h)().detach().item() for h in editor.hyper_parameters}

    def _rng_state(self) -> dict[str, Any]:
        return {"rng_cpu": torch.get_rng_state(), "generator": self.generator.get_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint needs to resume this run exactly (under DDP also ``world_size`` and every
        rank's random states in ``ranks``, gathered: all ranks must call it)."""
        state = editable_payload(self.editable, self.model_spec)
        state["data"] = self.data_spec
        state["trainer"] = {
            "config": asdict(self.config), "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch, "step": self.step, "history": self.history, **self._rng_state(),
            "teacher": module_state(self.teacher) if self.teacher is not None else None,
            "rank_probs": self.rank_probs,
        }
        if self.dist.enabled:
            ranks = distributed.gather([self._rng_state()], self.dist)
            state["trainer"].update(world_size=self.dist.world_size, ranks=ranks)
        return state

    def save(self, path: str) -> None:
        """Write the checkpoint atomically (under DDP rank 0 alone; the other ranks wait for it)."""
        state = self.state_dict()
        if self.dist.is_main:
            save_atomically(state, path)
            logger.info("saved %s (epoch %d)", path, self.epoch)
        distributed.barrier(self.dist)

    @classmethod
    def resume(cls, path: str, data: VisionData, *, device: str | torch.device = "cpu", workers: int = 0,
               epochs: Optional[int] = None, progress: bool = True, channels_last: bool = False) -> "Trainer":
        """Rebuild a trainer from a checkpoint of a run; ``epochs`` extends the run if given. On the number of
        processes it was saved by, the run continues exactly; on another, see :meth:`_resume_rng`."""
        payload = read_checkpoint(path)
        if "trainer" not in payload:
            raise ValueError(f"{path!r} holds a model but no training state to resume")
        state = payload["trainer"]
        config = TrainConfig(**{**state["config"], **({"epochs": epochs} if epochs is not None else {})})
        editable = editable_from_checkpoint(payload, device=device)
        trainer = cls(editable, data, config, model_spec=payload["model_spec"], data_spec=payload["data"],
                      device=device, workers=workers, rank_probs=state["rank_probs"],
                      teacher_state=state["teacher"], progress=progress, channels_last=channels_last)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.epoch, trainer.step, trainer.history = state["epoch"], state["step"], list(state["history"])
        trainer.saved = (path, state["epoch"])
        trainer._resume_rng(path, state)
        return trainer

    def _resume_rng(self, path: str, state: dict[str, Any]) -> None:
        """Restore this rank's random streams. Saved by another number of processes, the model, editor,
        optimizer, epoch, step and learning-rate schedule still continue, but the global batch changes and each
        rank's data order, augmentations and edit samples are re-seeded from (seed, epoch, rank): the run goes
        on correctly but no longer matches an uninterrupted one."""
        saved = state.get("world_size", 1)
        if saved == self.dist.world_size:
            self._set_rng_state(state["ranks"][self.dist.rank] if self.dist.enabled else state)
            return
        if self.dist.is_main:
            batch = self.config.batch_size
            logger.warning("%s was saved by %d process(es) and resumes on %d: the model, editor, optimizer, epoch %d, "
                           "step %d and the learning-rate schedule continue, but the global batch is now %d x %d (it "
                           "was %d x %d) and each process's data order, augmentations and edit samples are re-seeded, "
                           "so the run no longer matches an uninterrupted %d-process run", path, saved,
                           self.dist.world_size, self.epoch, self.step, self.dist.world_size, batch, saved, batch,
                           saved)
        seed = distributed.rank_seed(self.config.seed * 1_000_003 + self.epoch, self.dist.rank)
        self.generator.manual_seed(seed)
        torch.manual_seed(seed)

