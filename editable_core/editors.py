"""Differentiable editors: the optimisers inside ``Edit^k_alpha(theta, l_e)`` (paper sections 3.1, 4.1).

An editor is a pure function pair over dicts of tensors, in the style of torchopt / optax::

    state = editor.init(params)
    params, state = editor.update(grads, state, params)

``init`` builds the state, ``update`` never mutates its inputs and never copies a module: it returns new
tensors. The one exception is where the paper's formula starts from the first gradient (RMSProp's
``rms_0 = g_0^2``, scaled GD's ``||g_0||``): there ``init`` returns None and the first ``update`` builds
the state. Whether the result is differentiable (second order, for Editable Training) depends only on
whether ``grads`` were computed with ``create_graph=True``. Hyper-parameters (``alpha``, ``beta``, ``mu``,
...) are small modules from :mod:`editable_core.hyper`; :func:`make_editor` builds an editor by name and
says which of them the outer optimiser trains, as the paper does.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, NamedTuple, Optional, Union

import torch
from torch import Tensor, nn

from .hyper import HyperParameter, Interval, Positive
from .parameters import Params

#: which hyper-parameters are learnable: True (all), False (none), "auto" (all but the learning rate) or names
Learnable = Union[bool, str, Iterable[str]]


def learnable_names(learnable: Learnable, known: tuple[str, ...]) -> frozenset[str]:
    """The hyper-parameters of ``known`` that ``learnable`` selects; a ValueError names any unknown one.

    ``"auto"`` is every hyper-parameter but the learning rate (e.g. RMSProp's ``beta``, as in the paper).
    """
    if isinstance(learnable, bool):
        return frozenset(known) if learnable else frozenset()
    if learnable == "auto":
        return frozenset(known) - {"lr"}
    if isinstance(learnable, str):
        raise ValueError(f"learnable must be True, False, 'auto' or a list of names, got {learnable!r}")
    names = frozenset(learnable)
    unknown = sorted(names - set(known))
    if unknown:
        raise ValueError(f"learnable names unknown hyper-parameter(s) {unknown}; this editor has {list(known)}")
    return names


def parse_learnable(text: str) -> Learnable:
    """A command-line spelling of :data:`Learnable`: ``auto``, ``none`` (or empty), ``all`` or ``a,b``."""
    spec = text.strip().lower()
    if spec in ("none", ""):
        return False
    if spec == "all":
        return True
    if spec == "auto":
        return "auto"
    return tuple(name.strip() for name in spec.split(",") if name.strip())


class Editor(nn.Module):
    """Base class of all editors. Subclasses set ``name`` and implement ``init`` / ``update``.

    learnable: see :data:`Learnable`; shape: how each hyper-parameter stores its raw value (see
    :mod:`editable_core.hyper`). ``elementwise``: the update treats every element of every tensor alike
    (scalar hyper-parameters, at most a global norm), so :func:`editable_core.edit.edit` may run it on all
    editable tensors as one flat vector (:mod:`editable_core.flat`); a subclass whose update looks at
    tensor names or shapes leaves it False.
    """

    name: ClassVar[str]
    hyper_parameters: ClassVar[tuple[str, ...]] = ("lr",)
    elementwise: ClassVar[bool] = False

    def __init__(self, lr: float = 1e-3, learnable: Learnable = False, shape: tuple[int, ...] = ()):
        super().__init__()
        self._learned = learnable_names(learnable, self.hyper_parameters)
        self._shape = tuple(shape)
        self.lr = self._hyper("lr", Positive, lr)

    def _hyper(self, name: str, kind: Callable[..., HyperParameter], value: float, *bounds: float) -> HyperParameter:
        return kind(value, *bounds, learnable=name in self._learned, shape=self._shape)

    def init(self, params: Params) -> Any:
        """Initial editor state for ``params`` (before the first gradient is seen)."""
        return None

    def update(self, grads: Params, state: Any, params: Params) -> tuple[Params, Any]:
        """One editor step: returns ``(new_params, new_state)``; ``grads`` has the keys of ``params``."""
        raise NotImplementedError


def _like(value: Tensor, like: Tensor) -> Tensor:
    """A hyper-parameter's value (computed once per update) in the dtype and device of ``like``."""
    return value.to(dtype=like.dtype, device=like.device)


class GradientDescent(Editor):
    """GD: ``theta <- theta - alpha * g``."""

    name = "gd"
    elementwise = True

    def update(self, grads: Params, state: Any, params: Params) -> tuple[Params, Any]:
        lr = self.lr()
        return {k: p - _like(lr, p) * grads[k] for k, p in params.items()}, state


class ScaledState(NamedTuple):
    inv_norm: Tensor  # 1 / ||g_0||, the global gradient norm of the first step


class ScaledGradientDescent(Editor):
    """Scaled GD: GD whose ``alpha`` is divided by the global gradient norm of the first step.

    The state needs ``g_0``: ``init`` returns None and the first ``update`` builds it.
    """

    name = "scaled_gd"
    elementwise = True

    def update(self, grads: Params, state: Optional[ScaledState], params: Params) -> tuple[Params, ScaledState]:
        if state is None:  # the first step: ||g_0||
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
            state = ScaledState(inv_norm=1.0 / (norm + 1e-12))
        lr = self.lr() * state.inv_norm
        new = {k: p - _like(lr, p) * grads[k] for k, p in params.items()}
        return new, state


class RProp(Editor):
    """RProp / SignSGD: ``theta <- theta - alpha * sign(g)``."""

    name = "rprop"
    elementwise = True

    def update(self, grads: Params, state: Any, params: Params) -> tuple[Params, Any]:
        lr = self.lr()
        return {k: p - _like(lr, p) * torch.sign(grads[k]) for k, p in params.items()}, state


class RMSPropState(NamedTuple):
    rms: Params  # running mean of squared gradients, per parameter


class RMSProp(Editor):
    """RMSProp exactly as in section 4.1 of the paper.

    ``rms_0 = g_0^2``, ``rms_{t+1} = beta * rms_t + (1 - beta) * g_{t+1}^2`` and
    ``theta <- theta - alpha * g / sqrt(rms + eps)``. ``eps`` sits inside the square root so that the
    update stays twice differentiable when a gradient entry is zero. ``rms_0`` needs ``g_0``: ``init``
    returns None and the first ``update`` builds the state.
    """

    name = "rmsprop"
    elementwise = True
    hyper_parameters = ("lr", "beta")

    def __init__(self, lr: float = 1e-3, beta: float = 0.5, eps: float = 1e-6, learnable: Learnable = False,
                 shape: tuple[int, ...] = ()):
        super().__init__(lr, learnable, shape)
        self.beta = self._hyper("beta", Interval, beta, 0.0, 1.0)
        self.eps = float(eps)

    def update(self, grads: Params, state: Optional[RMSPropState], params: Params) -> tuple[Params, RMSPropState]:
        # each hyper-parameter is computed once per step, and the update takes as few passes over the
        # (large) parameter tensors as it can: every pass is also a node the outer backward runs twice
        lr, beta = self.lr(), self.beta()
        rms, new = {}, {}
        for k, p in params.items():
            g = grads[k]
            square = g * g
            # the first step: rms_0 = g_0^2; then beta * rms + (1 - beta) * g^2, in one pass
            rms[k] = square if state is None else torch.lerp(square, state.rms[k], _like(beta, g))
            # theta - alpha * g / sqrt(rms + eps)
            new[k] = torch.addcmul(p, g, torch.rsqrt(rms[k] + self.eps) * _like(lr, p), value=-1)
        return new, RMSPropState(rms)


class MomentumState(NamedTuple):
    nu: Params  # accumulated update direction


class Momentum(Editor):
    """Momentum GD: ``nu_0 = 0``, ``nu_{t+1} = alpha * g + mu * nu_t``, ``theta <- theta - nu_{t+1}``."""

    name = "momentum"
    elementwise = True
    hyper_parameters = ("lr", "mu")

    def __init__(self, lr: float = 1e-2, mu: float = 0.9, learnable: Learnable = False, shape: tuple[int, ...] = ()):
        super().__init__(lr, learnable, shape)
        self.mu = self._hyper("mu", Interval, mu, 0.0, 1.0)

    def init(self, params: Params) -> MomentumState:
        return MomentumState({k: torch.zeros_like(p) for k, p in params.items()})

    def update(self, grads: Params, state: MomentumState, params: Params) -> tuple[Params, MomentumState]:
        lr, mu = self.lr(), self.mu()
        nu = {k: _like(lr, g) * g + _like(mu, g) * state.nu[k] for k, g in grads.items()}
        return {k: p - nu[k] for k, p in params.items()}, MomentumState(nu)


class AdamState(NamedTuple):
    step: int
    m: Params  # first moment
    v: Params  # second moment


class Adam(Editor):
    """Adam (Kingma & Ba) with bias correction; ``beta1`` restricted to ``[0.1, 1]`` as in section 4.1.

    As in :class:`RMSProp`, ``eps`` sits inside the square root: ``alpha * m_hat / sqrt(v_hat + eps)``.
    """

    name = "adam"
    elementwise = True
    hyper_parameters = ("lr", "beta1", "beta2")

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 learnable: Learnable = False, shape: tuple[int, ...] = ()):
        super().__init__(lr, learnable, shape)
        self.beta1 = self._hyper("beta1", Interval, beta1, 0.1, 1.0)
        self.beta2 = self._hyper("beta2", Interval, beta2, 0.0, 1.0)
        self.eps = float(eps)

    def init(self, params: Params) -> AdamState:
        return AdamState(0, {k: torch.zeros_like(p) for k, p in params.items()},
                         {k: torch.zeros_like(p) for k, p in params.items()})

    def update(self, grads: Params, state: AdamState, params: Params) -> tuple[Params, AdamState]:
        t = state.step + 1
        lr, beta1, beta2 = self.lr(), self.beta1(), self.beta2()
        m, v, new = {}, {}, {}
        for k, g in grads.items():
            b1, b2 = _like(beta1, g), _like(beta2, g)
            m[k] = b1 * state.m[k] + (1 - b1) * g
            v[k] = b2 * state.v[k] + (1 - b2) * g * g
            m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            new[k] = params[k] - _like(lr, g) * m_hat / torch.sqrt(v_hat + self.eps)
        return new, AdamState(t, m, v)


EDITORS: dict[str, Callable[..., Editor]] = {
    cls.name: cls for cls in (GradientDescent, ScaledGradientDescent, RProp, RMSProp, Momentum, Adam)
}


def make_editor(name: str, lr: Optional[float] = None, learnable: Learnable = False, *,
                shape: tuple[int, ...] = (), **hyper: Any) -> Editor:
    """The editor called ``name`` (``gd``, ``scaled_gd``, ``rprop``, ``rmsprop``, ``momentum``, ``adam``).

    lr: ``alpha`` (default: the editor's own); learnable: see :data:`Learnable`; shape: how hyper-parameters
    store their raw value (see :mod:`editable_core.hyper`); hyper: the editor's others, e.g. ``beta=0.5``.
    """
    try:
        cls = EDITORS[name]
    except KeyError:
        raise ValueError(f"unknown editor {name!r}; choose one of {list(EDITORS)}") from None
    if lr is not None:
        hyper["lr"] = lr
    return cls(learnable=learnable, shape=shape, **hyper)
