"""Several processes: ``torchrun --nproc-per-node N -m editable_vision train|finetune|evaluate ...``.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`setup` then joins the process group
(``nccl`` on CUDA, each rank on ``cuda:LOCAL_RANK``; ``gloo`` on CPU). Without torchrun (or with N = 1)
no group is started and every helper here is the identity, so one process behaves exactly as before.

Training wraps the whole objective (model *and* editor hyper-parameters, see
:class:`editable_vision.train.TrainingLoss`) in torch's ``DistributedDataParallel``. The Editable
Training objective edits inside that forward with ``torch.autograd.grad(..., create_graph=True)``:
that call returns the gradients without running the parameters' gradient accumulators, so DDP's
reducer hooks fire only in the outer ``backward``. The graph changes from step to step (``k`` varies,
an edit that already holds takes no step, RMSProp's first step does not use ``beta``, ``first_order``
gives ``beta`` no gradient) and differs between ranks, so ``static_graph`` does not apply: :func:`wrap`
sets ``find_unused_parameters=True``; a parameter one rank did not use counts as a zero gradient in the
average, one no rank used keeps no gradient (as in one process).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from editable_core.errors import InputError


@dataclass(frozen=True)
class Context:
    """This process's place in the group: ``rank`` of ``world_size`` (0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Context()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise InputError(f"{name}={os.environ[name]!r} (set by the launcher) is not an integer") from None


def launched() -> bool:
    """Whether torchrun (or another launcher setting ``WORLD_SIZE``) started more than one process."""
    return _env_int("WORLD_SIZE", 1) > 1


def launched_rank() -> int:
    """This process's ``RANK`` as the launcher set it (0 without one); readable before :func:`setup`."""
    return _env_int("RANK", 0) if launched() else 0


def current() -> Context:
    """The context of the initialised process group, or :data:`SINGLE` when there is none."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Context(dist.get_rank(), dist.get_world_size())
    return SINGLE


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join the group the launcher describes; returns this process's context and device (``cuda`` without
    an index becomes ``cuda:LOCAL_RANK``). Without a launcher: :data:`SINGLE` and ``device`` unchanged."""
    if not launched():
        return SINGLE, device
    if device.type == "cuda":
        if device.index is not None:
            raise InputError(f"--device {device} under torchrun: every process would use the same GPU; pass "
                             "--device cuda (or auto) and each process takes cuda:LOCAL_RANK")
        device = torch.device("cuda", _env_int("LOCAL_RANK", 0))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return current(), device


def teardown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, ctx: Context, device: torch.device) -> nn.Module:
    """``module`` inside ``DistributedDataParallel`` (gradients averaged over ranks; rank 0's parameters
    and buffers copied to every rank), or ``module`` itself in one process."""
    if not ctx.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s own random streams (edit samples, augmentations); ``seed`` itself on rank 0."""
    return seed + 1_000_033 * rank


def shard(count: int, ctx: Context) -> range:
    """This rank's contiguous block of ``range(count)``; the blocks of ranks 0..N-1 concatenate to it."""
    return range(ctx.rank * count // ctx.world_size, (ctx.rank + 1) * count // ctx.world_size)


def gather(items: list[Any], ctx: Context) -> list[Any]:
    """Every rank's ``items`` (picklable), concatenated in rank order, on every rank."""
    if not ctx.enabled:
        return list(items)
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part]


def all_sum(values: dict[str, float], ctx: Context) -> dict[str, float]:
    """Each value summed over ranks (every rank holds the same keys)."""
    if not ctx.enabled or not values:
        return dict(values)
    gathered = gather([values], ctx)
    return {key: sum(part[key] for part in gathered) for key in values}


def barrier(ctx: Context) -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint)."""
    if ctx.enabled:
        dist.barrier()
