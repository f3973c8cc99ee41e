"""Loading fairseq checkpoints under torch >= 2.6, whose ``torch.load`` defaults to ``weights_only=True``.

A fairseq checkpoint pickles its configuration; for architectures registered the legacy way (such as
``transformer_iwslt_de_en``) ``cfg["model"]`` is an :class:`argparse.Namespace`, the one class that the
weights-only unpickler refuses in the checkpoints fairseq-train writes. Importing this plugin allow-lists
exactly the classes in :data:`SAFE_CHECKPOINT_GLOBALS` with ``torch.serialization.add_safe_globals``, so
``fairseq-train --restore-file``, ``fairseq-generate`` and ``fairseq-interactive`` (given
``--user-dir editable_fairseq``) load editable checkpoints with weights-only loading still on: no
environment variable, and any other class in any file is still refused.

Resuming a distributed run has one more load: rank 0 reads the checkpoint and fairseq sends it to the
other ranks with ``torch.save``/``torch.load`` (``fairseq.distributed.utils.broadcast_object``), by then
holding omegaconf containers. :func:`allow_fairseq_broadcast_globals` wraps that one function so its
``torch.load`` allow-lists :data:`BROADCAST_GLOBALS` for its own duration only.
"""
from __future__ import annotations

import argparse
import collections
import functools
import os
import typing
from typing import Any, Optional

import torch

from editable_core.errors import InputError
from editable_core.files import unreadable

#: Plain attribute containers found in fairseq checkpoints; unpickling them runs no code.
SAFE_CHECKPOINT_GLOBALS: tuple[type, ...] = (argparse.Namespace,)


def allow_fairseq_checkpoint_globals() -> None:
    """Allow-list :data:`SAFE_CHECKPOINT_GLOBALS` for ``torch.load(weights_only=True)`` (idempotent)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4 loads pickles without restriction: nothing to do
        return
    known = set(torch.serialization.get_safe_globals())
    missing = [cls for cls in SAFE_CHECKPOINT_GLOBALS if cls not in known]
    if missing:
        add(missing)


def broadcast_globals() -> list:
    """What fairseq's rank-to-rank transfer of a loaded checkpoint pickles (omegaconf containers etc.)."""
    from fairseq.distributed.utils import _TensorPlaceholder
    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode

    return [*SAFE_CHECKPOINT_GLOBALS, DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, typing.Any,
            collections.defaultdict, dict, list, int, _TensorPlaceholder]


def allow_fairseq_broadcast_globals() -> None:
    """Make ``fairseq.distributed.utils.broadcast_object`` load with :func:`broadcast_globals` allowed.

    Only inside that call (``torch.serialization.safe_globals``): a checkpoint file is never loaded with
    them. Idempotent.
    """
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:
        return
    from fairseq.distributed import utils as distributed_utils

    original = distributed_utils.broadcast_object
    if getattr(original, "_editable_fairseq", False):
        return

    @functools.wraps(original)
    def broadcast_object(*args: Any, **kwargs: Any) -> Any:
        with safe_globals(broadcast_globals()):
            return original(*args, **kwargs)

    broadcast_object._editable_fairseq = True  # type: ignore[attr-defined]
    distributed_utils.broadcast_object = broadcast_object


def load_checkpoint(path: str, arg_overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """``fairseq.checkpoint_utils.load_checkpoint_to_cpu`` with the allow-list in place.

    Raises ``FileNotFoundError`` naming ``path`` when it does not exist.
    """
    from fairseq import checkpoint_utils

    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    allow_fairseq_checkpoint_globals()
    try:
        return checkpoint_utils.load_checkpoint_to_cpu(path, arg_overrides)
    except Exception as error:  # noqa: BLE001  (a damaged, refused or foreign file is one line; bugs re-raise)
        friendly = unreadable(path, error)
        if friendly is not None:
            raise friendly from None
        if isinstance(error, (KeyError, AttributeError)) and _not_fairseq(path):
            raise InputError(f"{path}: not a fairseq checkpoint (it has no 'cfg'/'args' and 'model' entries); "
                             "pass a checkpoint written by fairseq-train") from None
        raise


def _not_fairseq(path: str) -> bool:
    """Whether the (loadable) file lacks what every fairseq checkpoint holds."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return not isinstance(state, dict) or "model" not in state or not (state.get("cfg") or state.get("args"))

