from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn


def make_mlp(dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Sequential:
    """A tiny classifier whose parts have names: ``hidden`` (first layer), ``middle``, ``out``."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        hidden=nn.Linear(6, 16), act1=nn.Tanh(), middle=nn.Linear(16, 16), act2=nn.Tanh(), out=nn.Linear(16, 4),
    )).to(dtype)


@pytest.fixture
def mlp() -> nn.Sequential:
    return make_mlp()


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.randn(8, 6, generator=torch.Generator().manual_seed(1))


def least_likely(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The class each row currently finds least likely: an edit target that needs steps."""
    with torch.no_grad():
        return model(x).argmin(-1)
