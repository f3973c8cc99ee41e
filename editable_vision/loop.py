"""The epoch loop every vision trainer shares (:class:`editable_vision.train.Trainer`, the CNP baseline): batches
in a seeded order (a ``DistributedSampler`` shard under torchrun), the learning-rate schedule, a divergence
check, one record of means per epoch, a checkpoint after each epoch, and Ctrl-C as :class:`TrainingInterrupted`.
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from . import distributed
from .data import VisionData, loader

if TYPE_CHECKING:
    from .train import TrainConfig

logger = logging.getLogger(__name__)


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block ends, then raise it.

    Around a checkpoint write and the record of it, so the checkpoint an interrupted run names is the one on
    disk. Only where Python handles SIGINT (its handler runs in the main thread): an ignored SIGINT stays ignored.
    """
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[object] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            previous(signal.SIGINT, held[0])  # Python's default handler raises KeyboardInterrupt


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
    to checkpoint); ``label`` names it in progress bars and logs. A subclass that trains data-parallel sets
    ``dist`` to its process group's context: each rank then takes its ``DistributedSampler`` shard and the
    epoch's means are over all ranks.
    """

    label = "train"
    optimizer: torch.optim.Optimizer
    dist: distributed.Context = distributed.SINGLE

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

    def _set_lr(self, position: int, total: int) -> None:
        """Cosine schedule: ``lr = initial_lr * (1 + cos(pi * position / total)) / 2`` where ``position`` counts
        the batches of the schedule (``epoch * batches_per_epoch + batch``, the step of a run on one number of
        processes) and ``total`` is ``epochs * batches_per_epoch``: a resumed run continues it exactly, on another
        number of processes too; constant otherwise."""
        if self.config.schedule != "cosine":
            return
        total = max(1, total)
        factor = 0.5 * (1 + math.cos(math.pi * min(position, total) / total))
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def _batches(self) -> DataLoader:
        """This epoch's batches: a shuffle seeded by (seed, epoch) in one process; under DDP this rank's
        ``DistributedSampler`` shard (``set_epoch`` each epoch, the tail dropped so that every rank takes the
        same number of steps)."""
        cfg, train = self.config, self.data.train
        order = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.epoch)
        if not self.dist.enabled:
            return loader(train, cfg.batch_size, shuffle=True, workers=self.workers, generator=order,
                          drop_last=len(train) > cfg.batch_size)
        sampler = DistributedSampler(train, self.dist.world_size, self.dist.rank, shuffle=True, seed=cfg.seed,
                                     drop_last=True)
        sampler.set_epoch(self.epoch)
        order.manual_seed(distributed.rank_seed(cfg.seed * 1_000_003 + self.epoch, self.dist.rank))  # workers' seeds
        return loader(train, cfg.batch_size, shuffle=False, workers=self.workers, generator=order,
                      drop_last=len(sampler) > cfg.batch_size, sampler=sampler)

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training set (at most ``max_batches`` batches); returns the epoch's means (over
        all ranks)."""
        batches = self._batches()
        total = len(batches) if self.config.max_batches is None else min(len(batches), self.config.max_batches)
        sums: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(batches, total=total, desc=f"{self.label} epoch {self.epoch + 1}/{self.config.epochs}",
                   disable=not self.progress, leave=False)
        for i, (images, labels) in enumerate(bar):
            if i >= total:
                break
            self._set_lr(self.epoch * total + i, self.config.epochs * total)
            stats = self.train_step(images, labels)
            if not math.isfinite(stats["loss"]):
                raise FloatingPointError(f"{self.label} training diverged at step {self.step}: loss {stats['loss']}")
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix(loss=f"{stats['loss']:.3f}")
        bar.close()
        sums = distributed.all_sum(sums, self.dist)
        record = {k: v / max(total * self.dist.world_size, 1) for k, v in sums.items()}
        record.update(epoch=self.epoch + 1, step=self.step, seconds=time.perf_counter() - start,
                      test_error=self.test_error(), **self.epoch_values())
        self.epoch += 1
        self.history.append(record)
        if self.dist.is_main:
            logger.info("%s epoch %d: %s", self.label, self.epoch, ", ".join(f"{k}={v:.4g}" for k, v in record.items()))
        return record

    def fit(self, checkpoint: Optional[str] = None) -> list[dict[str, float]]:
        """Train until ``config.epochs`` epochs are done, saving ``checkpoint`` after each epoch.

        Ctrl-C raises :class:`TrainingInterrupted` naming the last checkpoint written completely (a Ctrl-C during
        a checkpoint write takes effect once the write is done).
        """
        try:
            while self.epoch < self.config.epochs:
                self.train_epoch()
                if checkpoint:
                    with sigint_deferred():  # the file on disk and the epoch it is reported with agree
                        self.save(checkpoint)
                        self.saved = (checkpoint, self.epoch)
        except KeyboardInterrupt:
            raise TrainingInterrupted(*self.saved) from None
        return self.history
