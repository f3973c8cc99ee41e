"""The edit loop ``Edit^k_alpha(theta, l_e)`` of equation (1) in the paper.

Starting from ``theta``, take editor steps on ``l_e`` until every constraint holds (``l_e <= 0``) or ``k``
steps are spent. With ``create_graph=True`` every step stays in the autograd graph, so a loss on the
result back-propagates into ``theta`` and into the editor's learnable hyper-parameters (Editable
Training); with ``create_graph=False`` the loop is the cheap inference path: one forward and one
first-order backward per step, no graph kept between steps.

``backprop`` chooses how much of that graph Editable Training differentiates (see :func:`parse_backprop`):
``"full"`` is equation (2) exactly; ``"truncated:m"`` and ``"first_order"`` drop second-order terms, as
meta-learning's truncated back-propagation and first-order MAML do, for a cheaper outer gradient.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .editors import Editor
from .flat import FlatLayout
from .parameters import Params

logger = logging.getLogger(__name__)

ConstraintFn = Callable[[Params], Tensor]


@dataclass
class EditResult:
    """What an edit returns.

    params: the edited tensors ``theta_hat`` (only the editable ones), keyed by parameter name.
    success: whether every constraint holds, ``l_e(theta_hat) <= 0``, within ``k`` steps.
    l_e: ``[num_constraints]`` constraint values at ``params`` (graph-connected when ``create_graph``).
    steps: editor steps taken (0 when the constraints already held).
    """

    params: Params
    success: bool
    l_e: Tensor
    steps: int

    @property
    def edit_loss(self) -> Tensor:
        """``L_edit = max(0, l_e(Edit(theta)))`` (equation 3), averaged over constraints."""
        return self.l_e.clamp_min(0).mean()


def parse_backprop(backprop: str) -> int | None:
    """How many editor steps the outer gradient differentiates exactly: ``None`` for all of them.

    * ``"full"``: every step (equation 2): ``d theta_hat / d theta`` through each ``g_t = grad l_e(theta_t)``.
    * ``"truncated:m"`` (``m >= 1``): only the last ``m`` steps; the earlier ones count as
      ``theta_{t+1} = theta_t - update(g_t)`` with ``g_t`` a constant, i.e. they drop the Hessian terms
      ``d g_t / d theta_t`` (the edited model's dependence on how ``theta`` shapes those gradients).
      An edit of at most ``m`` steps is exact; ``m >= k`` is ``"full"``.
    * ``"first_order"`` (``m = 0``): every ``g_t`` is a constant, so ``d theta_hat / d theta = I`` and
      ``L_edit``, ``L_loc`` are differentiated at ``theta_hat`` only. The editor's learnable
      hyper-parameters still get the gradient of the update formula, with the ``g_t`` held fixed.
    """
    if isinstance(backprop, str):
        if backprop == "full":
            return None
        if backprop == "first_order":
            return 0
        head, _, m = backprop.partition(":")
        if head == "truncated" and m.isdigit() and int(m) >= 1:
            return int(m)
    raise ValueError(f"backprop must be 'full', 'first_order' or 'truncated:m' with an integer m >= 1 "
                     f"(e.g. 'truncated:2'), got {backprop!r}")


def check_max_steps(max_steps: int) -> None:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps (k) must be an integer >= 1, got {max_steps!r}")


def edit(constraint_fn: ConstraintFn, params: Params, editor: Editor, *, max_steps: int = 10,
         create_graph: bool = False, backprop: str = "full") -> EditResult:
    """Run ``Edit^k(theta, l_e)``.

    constraint_fn: maps ``{name: tensor}`` (the editable parameters) to ``l_e``, ``[num_constraints]``.
    params: the starting values ``theta`` of the editable parameters. They are never modified.
    max_steps: ``k``, the most editor steps to take.
    create_graph: keep the graph through all steps (Editable Training); otherwise a no-graph edit.
    backprop: with ``create_graph``, which second-order terms the graph keeps (:func:`parse_backprop`).
    The edited values are the same in every mode; only their derivatives differ.
    An :attr:`~editable_core.editors.Editor.elementwise` editor on an accelerator edits the tensors as one flat
    vector (:mod:`editable_core.flat`): the same values, and ``EditResult.params`` are views of that vector.

    A non-finite ``l_e`` stops the edit: it fails and returns the starting ``params`` unchanged.
    """
    check_max_steps(max_steps)
    exact = parse_backprop(backprop)
    if not params:
        raise ValueError("nothing to edit: the parameter dict is empty")
    run = functools.partial(_edit_with_graph, exact=exact) if create_graph else _edit_without_graph
    layout = FlatLayout.of(params) if editor.elementwise else None
    with torch.set_grad_enabled(create_graph):  # the vector and its views stay in Editable Training's graph
        if layout is None:
            current, done, l_e, step = run(constraint_fn, params, editor, max_steps)
        else:  # edit one flat vector; the model sees views of it
            current, done, l_e, step = run(lambda flat: constraint_fn(layout.unflatten(flat)),
                                           layout.flatten(params), editor, max_steps)
            if current is not None:
                current = layout.unflatten(current)
    if current is None:
        logger.warning("edit stopped at step %d: l_e is not finite (%s); the edit failed and the "
                       "parameters are left as they were", step, l_e.detach().tolist())
        return EditResult(dict(params), False, l_e, step)
    return EditResult(current, done, l_e, step)


def _edit_with_graph(constraint_fn: ConstraintFn, params: Params, editor: Editor, max_steps: int, *,
                     exact: int | None) -> tuple[Params | None, bool, Tensor, int]:
    """The edit of Editable Training: every step in the graph, its second-order terms as ``exact`` says."""
    start = {k: p if p.requires_grad else p.detach().requires_grad_() for k, p in params.items()}
    seen = []  # truncated: each step's gradient, to replay the first steps as first order

    def take_step(l_e: Tensor, current: Params, state, step: int):
        # steps past the first m are first order: their gradient is a constant of the graph
        second_order = exact is None or step < exact
        grads = _constraint_grads(l_e, current, create_graph=second_order)
        if exact is not None and exact > 0:
            seen.append({k: g.detach() for k, g in grads.items()})
        return editor.update(grads, state, current)

    with torch.enable_grad():  # an edit differentiates, whatever the caller's grad mode
        current, done, l_e, step = _loop(constraint_fn, start, editor, max_steps, take_step)
        if current is not None and exact is not None and 0 < exact < step:
            # truncated, and the edit took more than m steps: the first step - m steps become first
            # order (replayed from their recorded gradients, no model pass), the last m exact
            current, state = start, editor.init(start)
            for grads in seen[:step - exact]:
                current, state = editor.update(grads, state, current)
            for _ in range(exact):
                l_e = constraint_fn(current).reshape(-1)
                current, state = editor.update(_constraint_grads(l_e, current, create_graph=True), state, current)
            l_e = constraint_fn(current).reshape(-1)
    return current, done, l_e, step


def _loop(constraint_fn: ConstraintFn, current: Params, editor: Editor, max_steps: int,
          take_step: Callable[[Tensor, Params, object, int], tuple[Params, object]]
          ) -> tuple[Params | None, bool, Tensor, int]:
    """The loop of both edits: ``l_e`` at ``current``; stop when it holds or after ``max_steps`` steps, else
    ``current, state = take_step(l_e, current, state, step)``. Returns ``(current, done, l_e, steps)``, with
    ``current`` None when ``l_e`` is not finite."""
    state, step = editor.init(current), 0
    while True:
        l_e = constraint_fn(current).reshape(-1)
        if not bool(torch.isfinite(l_e).all()):
            return None, False, l_e, step
        done = bool((l_e <= 0).all())
        if done or step == max_steps:
            return current, done, l_e, step
        current, state = take_step(l_e, current, state, step)
        step += 1


def _constraint_grads(l_e: Tensor, current: Params, create_graph: bool = False) -> Params:
    """``d sum(max(0, l_e)) / d current``: one tensor per name, zeros for tensors ``l_e`` does not use."""
    grads = torch.autograd.grad(l_e.clamp_min(0).sum(), list(current.values()), create_graph=create_graph,
                                allow_unused=True, materialize_grads=True)
    return dict(zip(current, grads))


def _edit_without_graph(constraint_fn: ConstraintFn, params: Params, editor: Editor,
                        max_steps: int) -> tuple[Params | None, bool, Tensor, int]:
    """The inference edit: one forward and one first-order backward per step, results detached."""

    def take_step(l_e: Tensor, current: Params, state, step: int):
        grads = _constraint_grads(l_e, current)
        with torch.no_grad():
            current, state = editor.update(grads, state, current)
        return {k: p.requires_grad_() for k, p in current.items()}, state

    with torch.enable_grad():
        current, done, l_e, step = _loop(constraint_fn, {k: p.detach().requires_grad_() for k, p in params.items()},
                                         editor, max_steps, take_step)
    if current is not None:
        current = {k: p.detach() for k, p in current.items()}
    return current, done, l_e.detach(), step
