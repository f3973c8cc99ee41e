"""Editor hyper-parameters that stay in their valid range, optionally learnable (paper section 3.2).

Each hyper-parameter stores an unconstrained ``raw`` tensor and maps it into its range on every call:
``Positive`` through ``exp`` (log-space), ``Interval`` through a sigmoid. With ``learnable=True`` the raw
value is an ``nn.Parameter`` that the outer optimiser trains; otherwise it is a buffer, so it still
travels with ``state_dict`` and ``.to(device)``. ``shape`` is the shape ``raw`` is stored with (one
element: ``()`` or ``(1,)``; fairseq's legacy_ddp all-reduce cannot slice a 0-dim gradient); the value is
0-dim whatever the shape.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class HyperParameter(nn.Module):
    """Base class: ``forward()`` returns the value (a 0-dim tensor) in its valid range."""

    raw: torch.Tensor

    def _store(self, raw: float, learnable: bool, shape: tuple[int, ...]) -> None:
        if math.prod(shape) != 1:
            raise ValueError(f"shape must hold one element, e.g. () or (1,), got {shape!r}")
        tensor = torch.full(tuple(shape), float(raw))
        if learnable:
            self.raw = nn.Parameter(tensor)
        else:
            self.register_buffer("raw", tensor)

    @property
    def learnable(self) -> bool:
        return isinstance(self.raw, nn.Parameter)

    def extra_repr(self) -> str:
        return f"value={self().item():.4g}, learnable={self.learnable}"


class Positive(HyperParameter):
    """A value in ``(0, inf)``, stored as its logarithm (e.g. a learning rate ``alpha``)."""

    def __init__(self, value: float, learnable: bool = False, shape: tuple[int, ...] = ()):
        super().__init__()
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"expected a positive finite value, got {value!r}")
        self._store(math.log(value), learnable, shape)

    def forward(self) -> torch.Tensor:
        return self.raw.exp().reshape(())


class Interval(HyperParameter):
    """A value in the open interval ``(low, high)``, stored as a logit (e.g. RMSProp's ``beta``)."""

    def __init__(self, value: float, low: float = 0.0, high: float = 1.0, learnable: bool = False,
                 shape: tuple[int, ...] = ()):
        super().__init__()
        if not low < value < high:
            raise ValueError(f"expected a value in ({low}, {high}), got {value!r}")
        self.low, self.high = float(low), float(high)
        fraction = (value - low) / (high - low)
        self._store(math.log(fraction) - math.log1p(-fraction), learnable, shape)

    def forward(self) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(self.raw).reshape(())
