"""The edit loop ``Edit^k_alpha(theta, l_e)`` of equation (1) in the paper.

Starting from ``theta``, take editor steps on ``l_e`` until every constraint holds (``l_e <= 0``) or ``k``
steps are spent. With ``create_graph=True`` every step stays in the autograd graph, so a loss on the
result back-propagates into ``theta`` and into the editor's learnable hyper-parameters (Editable
Training); with ``create_graph=False`` the loop is the cheap inference path: one forward and one
first-order backward per step, no graph kept between steps.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .editors import Editor
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


def check_max_steps(max_steps: int) -> None:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps (k) must be an integer >= 1, got {max_steps!r}")


def edit(constraint_fn: ConstraintFn, params: Params, editor: Editor, *, max_steps: int = 10,
         create_graph: bool = False) -> EditResult:
    """Run ``Edit^k(theta, l_e)``.

    constraint_fn: maps ``{name: tensor}`` (the editable parameters) to ``l_e``, ``[num_constraints]``.
    params: the starting values ``theta`` of the editable parameters. They are never modified.
    max_steps: ``k``, the most editor steps to take.
    create_graph: keep the graph through all steps (Editable Training); otherwise a no-graph edit.

    A non-finite ``l_e`` stops the edit: it fails and returns the starting ``params`` unchanged.
    """
    check_max_steps(max_steps)
    if not params:
        raise ValueError("nothing to edit: the parameter dict is empty")
    names = list(params)
    if create_graph:
        current = {k: p if p.requires_grad else p.detach().requires_grad_() for k, p in params.items()}
    else:
        current = {k: p.detach().requires_grad_() for k, p in params.items()}
    state = editor.init(current)

    with torch.enable_grad():  # an edit differentiates, whatever the caller's grad mode
        for step in range(max_steps + 1):
            l_e = constraint_fn(current).reshape(-1)
            if not bool(torch.isfinite(l_e).all()):
                logger.warning("edit stopped at step %d: l_e is not finite (%s); the edit failed and the "
                               "parameters are left as they were", step, l_e.detach().tolist())
                return EditResult(dict(params), False, l_e, step)
            done = bool((l_e <= 0).all())
            if done or step == max_steps:
                break
            grads = torch.autograd.grad(l_e.clamp_min(0).sum(), [current[k] for k in names],
                                        create_graph=create_graph, allow_unused=True, materialize_grads=True)
            grads = dict(zip(names, grads))
            if create_graph:
                current, state = editor.update(grads, state, current)
            else:
                with torch.no_grad():
                    current, state = editor.update(grads, state, current)
                current = {k: p.requires_grad_() for k, p in current.items()}

    if not create_graph:
        current, l_e = {k: p.detach() for k, p in current.items()}, l_e.detach()
    return EditResult(current, done, l_e, step)
