"""Which parameters an edit may change, how a module runs with edited ones, and applying an edit in place.

* :func:`select_parameters` turns a selection (module name, parameter name, list, predicate or submodule)
  into an ordered ``{name: parameter}`` dict, the ``theta`` an editor may change.
* :func:`call` runs a module with some parameters substituted (``torch.func.functional_call``); the module
  itself is never modified, not even its BatchNorm running statistics.
* :func:`apply_edit` writes edited tensors into a module in place for deployment and returns a handle whose
  ``undo()`` restores the original values bit for bit.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call

Params = dict[str, Tensor]
Selection = Union[str, Sequence[str], nn.Module, Callable[[str, nn.Parameter], bool]]


def _select_by_name(module: nn.Module, name: str) -> list[str]:
    names = [n for n, _ in module.named_parameters()]
    if name in names:
        return [name]
    try:
        module.get_submodule(name)
    except AttributeError:
        children = [n for n, _ in module.named_children()]
        raise ValueError(
            f"no module or parameter named {name!r} in {type(module).__name__}; "
            f"its top-level modules are {children}"
        ) from None
    prefix = f"{name}." if name else ""
    return [n for n in names if n.startswith(prefix)]


def select_parameters(module: nn.Module, selection: Selection) -> dict[str, nn.Parameter]:
    """Resolve ``selection`` to ``{name: parameter}`` of ``module``, in the module's own order.

    ``selection`` is one of: a module or parameter name (``"layer3"``, ``"fc.weight"``; ``""`` is the
    whole module), a list of such names, a submodule object of ``module``, or a predicate
    ``(name, parameter) -> bool``. Raises ``ValueError`` for an unknown name or an empty selection.
    """
    named = dict(module.named_parameters())
    if isinstance(selection, nn.Module):
        found = [n for n, m in module.named_modules() if m is selection]
        if not found:
            raise ValueError(f"{type(selection).__name__} is not a submodule of {type(module).__name__}")
        chosen = set(_select_by_name(module, found[0]))
    elif isinstance(selection, str):
        chosen = set(_select_by_name(module, selection))
    elif callable(selection):
        chosen = {n for n, p in named.items() if selection(n, p)}
    elif isinstance(selection, Sequence):
        if not selection:
            raise ValueError("empty parameter selection: name at least one module or parameter")
        chosen = {n for item in selection for n in _select_by_name(module, item)}
    else:
        raise TypeError(f"cannot select parameters with a {type(selection).__name__}: {selection!r}")
    if not chosen:
        raise ValueError(f"parameter selection {selection!r} matched no parameters of {type(module).__name__}")
    return {n: p for n, p in named.items() if n in chosen}


def call(module: nn.Module, params: Params, *args: Any, **kwargs: Any) -> Any:
    """``module(*args, **kwargs)`` with ``params`` substituted for the module's own tensors.

    Gradients flow into whatever ``params`` were computed from. In training mode the module's buffers
    are passed as copies, so batch-norm running statistics of the real module never change.
    """
    if module.training:
        params = {**{n: b.clone() for n, b in module.named_buffers()}, **params}
    return functional_call(module, params, args, kwargs)


class AppliedEdit:
    """An edit written into a module in place; :meth:`undo` restores the original values exactly.

    Also a context manager: ``with apply_edit(model, result.params): ...`` undoes on exit.
    """

    def __init__(self, module: nn.Module, params: Params):
        named = dict(module.named_parameters())
        unknown = sorted(set(params) - set(named))
        if unknown:
            raise ValueError(f"edited tensors {unknown} are not parameters of {type(module).__name__}")
        for name, value in params.items():
            if value.shape != named[name].shape:
                raise ValueError(f"edited {name} has shape {tuple(value.shape)}, "
                                 f"the parameter has {tuple(named[name].shape)}")
        self._targets = {name: named[name] for name in params}
        self._saved: Params | None = {name: p.detach().clone() for name, p in self._targets.items()}
        with torch.no_grad():
            for name, value in params.items():
                self._targets[name].copy_(value.detach())

    @property
    def active(self) -> bool:
        return self._saved is not None

    def relative_change(self) -> float:
        """``||theta_hat - theta|| / ||theta||`` over the edited tensors, while the edit is applied."""
        if self._saved is None:
            raise RuntimeError("this edit was already undone")
        with torch.no_grad():
            change = sum(float((self._targets[n] - s).double().pow(2).sum()) for n, s in self._saved.items())
            norm = sum(float(s.double().pow(2).sum()) for s in self._saved.values())
        return (change / max(norm, 1e-30)) ** 0.5

    def undo(self) -> None:
        """Restore the parameters as they were before the edit was applied."""
        if self._saved is None:
            raise RuntimeError("this edit was already undone")
        with torch.no_grad():
            for name, saved in self._saved.items():
                self._targets[name].copy_(saved)
        self._saved = None

    def __enter__(self) -> "AppliedEdit":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            self.undo()


def apply_edit(module: nn.Module, params: Params) -> AppliedEdit:
    """Write ``params`` (e.g. ``EditResult.params``) into ``module`` in place; returns an undo handle."""
    return AppliedEdit(module, params)
