"""``Editable``: a model, the part of it an edit may change, the editor and ``k``, in one module.

For an ``nn.Sequential`` model the children before the first editable one form the *prefix*; its output
``h = features(x)`` is computed once per edit (and once per training batch), and only the *suffix*
(``head``) runs with substituted parameters at every editor step. Any other model is edited whole
(``features`` is the identity).

    editable = Editable(model, "chain3", RMSProp(lr=1e-3, beta=0.5, learnable=True), max_steps=10)
    result = editable.edit(image[None], torch.tensor([label]))   # EditResult(params, success, l_e, steps)
    with editable.apply(result):                                 # in place, undone on exit
        predictions = model(images)
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor, nn

from .constraints import classification_constraint
from .edit import EditResult, check_max_steps, edit
from .editors import Editor, RMSProp
from .parameters import AppliedEdit, Params, Selection, apply_edit, call, select_parameters

Constraint = Callable[[Any, Tensor], Tensor]


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put ``module`` (and all its submodules) in eval mode, restoring each flag on exit."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


def _first_editable_child(module: nn.Sequential, names: tuple[str, ...]) -> int:
    for index, child in enumerate(module._modules):
        if any(name.startswith(f"{child}.") for name in names):
            return index
    raise AssertionError("selected parameters lie outside every child")  # select_parameters prevents this


class Editable(nn.Module):
    """A model made editable: ``edit(inputs, targets)`` returns an out-of-place ``EditResult``.

    module: the model; an ``nn.Sequential`` gets its prefix cached (see the module docstring).
    editable: which parameters edits may change (see :func:`select_parameters`).
    editor: the differentiable optimiser (default: RMSProp, ``alpha=1e-3``, ``beta=0.5``).
    max_steps: ``k``, the most editor steps per edit.
    constraint: ``(outputs, targets) -> l_e [n]``; default :func:`classification_constraint`.
    """

    def __init__(self, module: nn.Module, editable: Selection, editor: Optional[Editor] = None,
                 max_steps: int = 10, constraint: Constraint = classification_constraint):
        super().__init__()
        check_max_steps(max_steps)
        self.module = module
        self.editor = editor if editor is not None else RMSProp()
        self.max_steps = max_steps
        self.constraint = constraint
        self.param_names = tuple(select_parameters(module, editable))
        self._split = (_first_editable_child(module, self.param_names)
                       if isinstance(module, nn.Sequential) else 0)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def editable_parameters(self) -> dict[str, nn.Parameter]:
        """``theta``: the parameters an edit may change, ``{name: parameter}``."""
        named = dict(self.module.named_parameters())
        return {name: named[name] for name in self.param_names}

    @property
    def suffix(self) -> nn.Module:
        """The part of the model that runs with edited parameters (the whole model if not Sequential)."""
        return self.module[self._split:] if self._split else self.module

    def features(self, inputs: Any) -> Any:
        """``h``: the output of the layers before the editable part (the inputs themselves if none)."""
        return self.module[:self._split](inputs) if self._split else inputs

    def head(self, features: Any, params: Optional[Params] = None) -> Any:
        """The suffix applied to ``features``, with ``params`` (e.g. ``EditResult.params``) if given."""
        return self.suffix(features) if params is None else call(self.suffix, params, features)

    def edit(self, inputs: Any, targets: Tensor, *, params: Optional[Params] = None,
             create_graph: bool = False, max_steps: Optional[int] = None,
             constraint: Optional[Constraint] = None, backprop: str = "full") -> EditResult:
        """Edit so that ``constraint(model(inputs), targets) <= 0`` for every row.

        inputs, targets: one or several edits (a batch of constraints that must all hold).
        params: start from these editable tensors instead of the module's (for sequences of edits).
        create_graph: keep the graph for Editable Training (see :func:`editable_core.edit.edit`).
        backprop: which second-order terms that graph keeps (:func:`editable_core.edit.parse_backprop`).
        The module itself is never modified; use :meth:`apply` to deploy the result.
        """
        constraint = constraint or self.constraint
        with torch.set_grad_enabled(create_graph):
            features = self.features(inputs)
        start = dict(params) if params is not None else self.editable_parameters()
        return edit(lambda p: constraint(self.head(features, p), targets), start, self.editor,
                    max_steps=self.max_steps if max_steps is None else max_steps, create_graph=create_graph,
                    backprop=backprop)

    def apply(self, result: EditResult | Params) -> AppliedEdit:
        """Write an edit into the module in place; the returned handle's ``undo()`` reverts it exactly."""
        return apply_edit(self.module, result.params if isinstance(result, EditResult) else result)

    def extra_repr(self) -> str:
        return f"max_steps={self.max_steps}, editable={len(self.param_names)} tensors"
