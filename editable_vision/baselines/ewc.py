"""Elastic Weight Consolidation editors (Kirkpatrick et al., 2017), the GD+EWC and RMSProp+EWC rows of Table 3.

An EWC edit minimises ``max(0, l_e(theta)) + lambda * sum_i F_i (theta_i - theta*_i)^2``: the edit loss plus a
Fisher-weighted squared distance to the original parameters ``theta*``. ``F`` is the diagonal empirical
Fisher information of the editable parameters, estimated on training data:
``F_i = E_(x, y) [(d log p(y | x, theta*) / d theta_i)^2]`` over per-example gradients.

:class:`EWCEditor` wraps any core editor: it adds ``lambda * dP/dtheta = 2 lambda F (theta - theta*)`` to the
gradient of the edit loss before the wrapped editor's step, so ``edit()`` and ``Editable`` use it unchanged.
The edit still stops as soon as every constraint holds (``l_e <= 0``).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from editable_core import Editable, Editor, eval_mode
from editable_core.parameters import Params


def fisher_diagonal(editable: Editable, images: Tensor, labels: Tensor, *, batch_size: int = 64) -> Params:
    """Diagonal empirical Fisher ``F_i = mean_n (d log p(y_n | x_n) / d theta_i)^2`` of the editable parameters.

    images: ``[N, C, H, W]`` training images, labels: ``[N]`` their classes. Per-example gradients come from
    ``torch.func.vmap(grad(...))`` over the editable suffix (the prefix features are computed once), in eval
    mode (batch-norm running statistics, as at edit time). Returns ``{name: [same shape as the parameter]}``.
    """
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"the Fisher needs matching, non-empty images and labels; got {len(images)} images "
                         f"and {len(labels)} labels")
    params = {k: p.detach() for k, p in editable.editable_parameters().items()}
    suffix = editable.suffix

    def log_likelihood(p: Params, feature: Tensor, label: Tensor) -> Tensor:
        logits = functional_call(suffix, p, (feature[None],))
        return -F.cross_entropy(logits, label[None])

    per_example = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
    total = {k: torch.zeros_like(p) for k, p in params.items()}
    with eval_mode(editable.module):
        for start in range(0, len(images), batch_size):
            with torch.no_grad():
                features = editable.features(images[start:start + batch_size])
            grads = per_example(params, features, labels[start:start + batch_size].to(features.device).long())
            for k, g in grads.items():
                total[k] += g.detach().pow(2).sum(0)
    return {k: v / len(images) for k, v in total.items()}


def ewc_penalty(params: Params, anchor: Params, fisher: Params) -> Tensor:
    """``P(theta) = sum_i F_i (theta_i - theta*_i)^2`` over every tensor in ``params`` (a 0-dim tensor)."""
    missing = sorted(set(params) - set(anchor) | set(params) - set(fisher))
    if missing:
        raise ValueError(f"no anchor / Fisher for parameter(s) {missing}")
    return sum((fisher[k] * (p - anchor[k]).pow(2)).sum() for k, p in params.items())


class EWCState(NamedTuple):
    anchor: Params  # theta*: the parameters the edit started from
    inner: Any      # the wrapped editor's state


class EWCEditor(Editor):
    """``editor`` + EWC: each step uses ``g + 2 * weight * F * (theta - theta*)`` instead of ``g``.

    editor: the wrapped core editor (GD, RMSProp, ...); fisher: :func:`fisher_diagonal` of the editable
    parameters; weight: ``lambda`` (>= 0; 0 gives the wrapped editor exactly). ``theta*`` is the starting
    point of each edit (the original model for independent edits) unless ``anchor`` fixes it.
    """

    def __init__(self, editor: Editor, fisher: Params, weight: float, anchor: Optional[Params] = None):
        if not isinstance(editor, Editor):
            raise TypeError(f"editor must be an editable_core Editor, got {type(editor).__name__}")
        if not weight >= 0:
            raise ValueError(f"the EWC weight must be >= 0, got {weight!r}")
        nn.Module.__init__(self)  # not Editor.__init__: the wrapped editor owns every hyper-parameter
        self.inner = editor
        self.name = f"{editor.name}+ewc"
        self.hyper_parameters = editor.hyper_parameters
        self.weight = float(weight)
        self.fisher = {k: v.detach() for k, v in fisher.items()}
        self.anchor = None if anchor is None else {k: v.detach() for k, v in anchor.items()}

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in self.__dict__.get("hyper_parameters", ()) or name == "lr":
                return getattr(self._modules["inner"], name)
            raise

    def init(self, params: Params) -> EWCState:
        missing = sorted(set(params) - set(self.fisher))
        if missing:
            raise ValueError(f"the Fisher has no entry for editable parameter(s) {missing}")
        anchor = self.anchor if self.anchor is not None else {k: p.detach().clone() for k, p in params.items()}
        return EWCState(anchor, self.inner.init(params))

    def update(self, grads: Params, state: EWCState, params: Params) -> tuple[Params, EWCState]:
        total = {k: g + 2 * self.weight * self.fisher[k].to(g) * (params[k] - state.anchor[k].to(g))
                 for k, g in grads.items()}
        new, inner = self.inner.update(total, state.inner, params)
        return new, EWCState(state.anchor, inner)

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}"
