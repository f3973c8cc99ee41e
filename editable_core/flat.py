"""All editable tensors as one flat vector, so that an elementwise editor takes one kernel per operation.

An editor whose update treats every element alike (:attr:`editable_core.editors.Editor.elementwise`: scalar
hyper-parameters, at most a global norm) computes the same ``theta_hat`` on the editable tensors concatenated
into one vector ``[n]`` (``n`` elements in all) as on each tensor apart. :func:`editable_core.edit.edit`
therefore edits that vector and the model runs on views of it: each editor operation is one kernel instead
of one per tensor, and so is each node of its backward (on a GPU, where an edit is bound by kernel launches,
that removed a third of an exact ResNet-18 step's launches). The gradient reaches the original tensors
through the concatenation. On a CPU the per-tensor loop is faster (measured: the element-wise passes over one
long vector took 2-3x the time of those over its pieces), so there the editor keeps the tensors apart unless
:data:`ON_CPU` is set.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .parameters import Params

#: the one key of a flattened ``Params`` dict
FLAT = "flat"

#: flatten CPU tensors too (off: slower there; tests switch it on to check the flat path on a CPU)
ON_CPU = False


def memory_order(tensor: torch.Tensor) -> tuple[int, ...]:
    """``tensor``'s dimensions from the outermost in memory to the innermost (largest stride first): ``(0, 1, 2,
    3)`` for a contiguous ``[N, C, H, W]`` tensor, ``(0, 2, 3, 1)`` for a channels-last one."""
    return tuple(sorted(range(tensor.dim()), key=lambda d: -tensor.stride(d)))


class FlatLayout:
    """Where each named tensor of a ``Params`` dict lies in the flat vector, in its own memory order (a
    channels-last weight's views are channels-last too): ``orders``, ``{name: memory_order(tensor)}``, and
    ``stored``, ``{name: (its shape in that order, the permutation back to its own shape)}``, in order."""

    def __init__(self, params: Params):
        self.orders = {name: memory_order(tensor) for name, tensor in params.items()}
        self.stored = {name: ([params[name].shape[d] for d in order], [order.index(d) for d in range(len(order))])
                       for name, order in self.orders.items()}
        self.sizes = [math.prod(shape) for shape, _ in self.stored.values()]

    @classmethod
    def of(cls, params: Params) -> Optional["FlatLayout"]:
        """The layout of ``params``, or None where flattening gains nothing or cannot be done: one tensor
        only, tensors of several dtypes or devices, or CPU tensors (unless :data:`ON_CPU`)."""
        tensors = list(params.values())
        if len(tensors) < 2 or len({(t.dtype, t.device) for t in tensors}) > 1:
            return None
        if tensors[0].device.type == "cpu" and not ON_CPU:
            return None
        return cls(params)

    def flatten(self, params: Params) -> Params:
        """``{FLAT: [n]}``: the tensors of ``params`` (in the layout's order, each in its memory order)
        concatenated, differentiably."""
        return {FLAT: torch.cat([params[name].permute(order).reshape(-1) for name, order in self.orders.items()])}

    def unflatten(self, flat: Params) -> Params:
        """``{name: view}``: each tensor as a view of ``flat[FLAT]``, in its own shape and memory order."""
        pieces = flat[FLAT].split(self.sizes)
        return {name: piece.view(shape).permute(back)
                for (name, (shape, back)), piece in zip(self.stored.items(), pieces)}
