"""Edit-quality evaluation (sections 4.1 and 4.3): N independent edits, editor / part sweeps (Tables 1
and 2), edit generalisation, and the sequential-edit curve (Figure 5).

Every evaluation runs in eval mode (batch-norm running statistics), as at deployment, and measures
the error on a control set whose prefix features are cached once (``editable_core.ControlSet``).

In a process group (torchrun, :mod:`editable_vision.distributed`) :func:`evaluate` (and so :func:`sweep`),
:func:`generalisation` and :func:`sequential_curves` give each rank its block of the edits (of the runs) and
gather the per-edit figures in order: every rank returns exactly what one process would.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from editable_core import (EDITORS, ControlSet, EditMetrics, Editor, edit_errors, eval_mode, make_editor,
                           sequential_edit_curve, summarize)

from . import distributed
from .api import VisionEditable, resolve_part
from .targets import TARGETS, match_rank_targets, random_targets

logger = logging.getLogger(__name__)

#: learning rates tried per editor when tuning (Table 1): scaled GD's ``alpha`` is a step length in
#: parameter space, the others' a per-parameter step.
DEFAULT_LRS = {"gd": (3e-4, 1e-3, 3e-3, 1e-2), "scaled_gd": (0.03, 0.1, 0.3, 1.0),
               "rprop": (3e-5, 1e-4, 3e-4, 1e-3), "rmsprop": (3e-5, 1e-4, 3e-4, 1e-3),
               "momentum": (1e-4, 3e-4, 1e-3, 3e-3), "adam": (3e-5, 1e-4, 3e-4, 1e-3)}


@dataclass
class EditSet:
    """N edits: ``images [N, C, H, W]``, ``targets [N]``, and where the images came from (``indices``)."""

    images: Tensor
    targets: Tensor
    indices: Tensor


def progress_bar(desc: str, enabled: bool = True) -> Callable[[Iterable], Iterable]:
    return lambda items: tqdm(items, desc=desc, leave=False, disable=not enabled)


def make_edit_set(editable: VisionEditable, images: Tensor, num_edits: int, *, targets: str = "random",
                  rank_probs: Optional[Tensor] = None, seed: int = 9) -> EditSet:
    """Draw ``num_edits`` distinct images from ``images [M, C, H, W]`` and give each a target: uniformly
    random, or ``match-ranks`` (a class the model ranks ``r``-th, ``r ~ rank_probs``)."""
    if targets not in TARGETS:
        raise ValueError(f"unknown edit targets {targets!r}; choose one of {list(TARGETS)}")
    if targets == "random":
        return random_edit_set(images, editable.num_classes, num_edits, seed=seed)
    if rank_probs is None:
        raise ValueError("match-ranks targets need a rank distribution (rank_probs)")
    generator, indices = _draw(images, num_edits, seed)
    labels = match_rank_targets(editable.logits(images[indices]), rank_probs, generator)
    return EditSet(images[indices], labels, indices)


def random_edit_set(images: Tensor, num_classes: int, num_edits: int, *, seed: int = 9) -> EditSet:
    """``num_edits`` distinct images of ``images [M, C, H, W]``, each with a uniformly random target among
    ``num_classes`` (section 4.1); needs no model, so every method of Table 3 gets the same edits."""
    generator, indices = _draw(images, num_edits, seed)
    return EditSet(images[indices], random_targets(num_edits, num_classes, generator), indices)


def _draw(images: Tensor, num_edits: int, seed: int) -> tuple[torch.Generator, Tensor]:
    if not 0 < num_edits <= len(images):
        raise ValueError(f"num_edits must be in 1..{len(images)} (the number of images), got {num_edits}")
    generator = torch.Generator().manual_seed(seed)
    return generator, torch.randperm(len(images), generator=generator)[:num_edits]


def evaluate(editable: VisionEditable, control: ControlSet, edits: EditSet, *, progress: bool = True,
             desc: str = "edits") -> EditMetrics:
    """Apply each edit independently (from the unedited model) and summarise (drawdown, success, steps).
    In a process group each rank applies its block of the N edits and the per-edit figures are gathered."""
    device, ctx = editable.device, distributed.current()
    base_error = control.error()
    mine = distributed.shard(len(edits.targets), ctx)
    block = slice(mine.start, mine.stop)
    errors, results = edit_errors(editable, control, edits.images[block].to(device), edits.targets[block].to(device),
                                  progress=progress_bar(desc, progress and ctx.is_main))
    if ctx.enabled:  # gather the figures, not the edited tensors
        outcomes = distributed.gather([(e, replace(r, params={}, l_e=r.l_e.detach().cpu()))
                                       for e, r in zip(errors, results)], ctx)
        errors, results = [e for e, _ in outcomes], [r for _, r in outcomes]
    return summarize(base_error, errors, results)


@dataclass
class SweepRow:
    """One (editor, lr, part) configuration and its metrics."""

    editor: str
    lr: float
    part: str
    metrics: EditMetrics

    def as_dict(self) -> dict:
        return {"editor": self.editor, "lr": self.lr, "part": self.part, **self.metrics.as_dict()}


def with_editor(editable: VisionEditable, editor: Editor, part: str) -> VisionEditable:
    """The same model (shared, not copied) editable in ``part`` with ``editor``."""
    return VisionEditable(editable.module, part, editor, editable.max_steps, input_shape=editable.input_shape,
                          num_classes=editable.num_classes).to(editable.device)


def sweep(editable: VisionEditable, images: Tensor, labels: Tensor, edits: EditSet, *,
          editors: Sequence[str] = tuple(EDITORS), parts: Sequence[str] = ("chain3",),
          lrs: Optional[dict[str, Sequence[float]]] = None, progress: bool = True) -> list[SweepRow]:
    """Evaluate every editor x learning rate x part on the same edits (the raw material of Tables 1, 2).
    images, labels: the control set; lrs: per-editor learning rates (default :data:`DEFAULT_LRS`)."""
    lrs = {**DEFAULT_LRS, **(lrs or {})}
    rows = []
    for part in parts:
        resolve_part(editable.module, part)
        control = None
        for name in editors:
            for lr in lrs[name]:
                candidate = with_editor(editable, make_editor(name, lr), part)
                control = control or ControlSet(candidate, images.to(editable.device), labels.to(editable.device))
                metrics = evaluate(candidate, control, edits, progress=progress, desc=f"{name} lr={lr:g} {part}")
                rows.append(SweepRow(name, lr, part, metrics))
                logger.info("%s lr=%g %s: drawdown %.4f, success %.3f, steps %.2f", name, lr, part,
                            metrics.drawdown, metrics.success_rate, metrics.mean_steps)
    return rows


def best_rows(rows: Sequence[SweepRow], key: Callable[[SweepRow], tuple], min_success: float = 0.95
              ) -> dict[tuple, SweepRow]:
    """For each group ``key(row)``, the row with the smallest drawdown among those whose success rate
    is at least ``min_success`` (the paper's tuning rule); failing that, the most successful one."""
    groups: dict[tuple, list[SweepRow]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    best = {}
    for group, members in groups.items():
        ok = [r for r in members if r.metrics.success_rate >= min_success]
        best[group] = (min(ok, key=lambda r: r.metrics.drawdown) if ok else
                       max(members, key=lambda r: (r.metrics.success_rate, -r.metrics.drawdown)))
    return best


def penultimate_features(editable: VisionEditable, images: Tensor, batch_size: int = 256) -> Tensor:
    """The input of the model's last linear layer for each image: ``[N, features]``."""
    linear = [m for m in editable.module.modules() if isinstance(m, torch.nn.Linear)][-1]
    captured: list[Tensor] = []
    handle = linear.register_forward_hook(lambda module, args, output: captured.append(args[0].detach()))
    try:
        editable.logits(images, batch_size=batch_size)
    finally:
        handle.remove()
    return torch.cat(captured)


@dataclass
class Generalisation:
    """Edit generalisation (4.3.1): edit with augmentations of one image, test on a similar one's."""

    num_pairs: int
    success_rate: float   # edits of the augmented batch that succeeded
    accuracy: float       # fraction of the neighbour's augmentations predicted as the edit's target
    accuracy_before: float  # the same fraction before the edit

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def generalisation(editable: VisionEditable, images: Tensor, edits: EditSet, augment: Callable[[Tensor], Tensor],
                   *, num_augmentations: int = 5, seed: int = 0, progress: bool = True) -> Generalisation:
    """For each edit image ``images[i]``, find its nearest other image ``j`` in penultimate features,
    edit with ``num_augmentations`` augmentations of ``i`` (all must reach the target), and measure how
    often augmentations of ``j`` are then classified as the target. In a process group each rank edits its
    block of the pairs; it still draws the augmentations of the pairs before it, so that its random stream is
    the one a single process would use there."""
    features = penultimate_features(editable, images)
    distances = torch.cdist(features[edits.indices.to(features.device)], features)
    distances[torch.arange(len(edits.indices)), edits.indices.to(features.device)] = math.inf
    neighbours = distances.argmin(1).cpu()
    ctx = distributed.current()
    mine = distributed.shard(len(edits.indices), ctx)
    outcomes = []  # (success, hit rate after, hit rate before) per pair of this rank
    with torch.random.fork_rng(devices=[]), eval_mode(editable.module):
        torch.manual_seed(seed)
        for i in progress_bar("generalisation", progress and ctx.is_main)(range(mine.stop)):
            target = int(edits.targets[i])
            source = torch.stack([augment(images[edits.indices[i]]) for _ in range(num_augmentations)])
            probe = torch.stack([augment(images[neighbours[i]]) for _ in range(num_augmentations)])
            if i < mine.start:
                continue
            result = editable.edit(source, target)
            outcomes.append((result.success, (editable.predict(probe, result.params) == target).float().mean().item(),
                             (editable.predict(probe) == target).float().mean().item()))
    successes, hits, hits_before = 0, 0.0, 0.0
    for success, hit, hit_before in distributed.gather(outcomes, ctx):  # summed in order, as one process does
        successes, hits, hits_before = successes + success, hits + hit, hits_before + hit_before
    n = len(edits.indices)
    return Generalisation(n, successes / n, hits / n, hits_before / n)


def sequential_curves(editable: VisionEditable, images: Tensor, labels: Tensor, num_edits: int, *, runs: int = 3,
                      targets: str = "random", rank_probs: Optional[Tensor] = None, seed: int = 0,
                      progress: bool = True) -> list[list[float]]:
    """``runs`` curves of the control error after 0, 1, ..., ``num_edits`` edits applied one after
    another (Figure 5, bottom-left); each run draws its own edits. In a process group each rank takes its
    block of the runs."""
    device, ctx = editable.device, distributed.current()
    control = ControlSet(editable, images.to(device), labels.to(device))
    curves = []
    for run in distributed.shard(runs, ctx):
        edits = make_edit_set(editable, images, num_edits, targets=targets, rank_probs=rank_probs,
                              seed=seed + 1000 * run)
        curves.append(sequential_edit_curve(editable, control, edits.images.to(device), edits.targets.to(device),
                                            progress=progress_bar(f"sequential run {run + 1}",
                                                                  progress and ctx.is_main)))
    return distributed.gather(curves, ctx)
