"""The Editable Training objective, equations (2)-(4) of the paper.

``Obj = L_base + c_edit * L_edit + c_loc * L_loc`` with ``L_edit = max(0, l_e(Edit(theta)))`` and
``L_loc = E_x KL(p(y|x, theta) || p(y|x, Edit(theta)))``, the reference ``p(y|x, theta)`` detached.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .edit import EditResult, parse_backprop
from .editable import Editable, eval_mode


def _at_least_float32(tensor: Tensor) -> Tensor:
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def locality_kl(ref_logits: Tensor, edited_logits: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """``L_loc``: mean over rows of ``KL(p_ref || p_edited)``, computed in at least float32.

    ref_logits, edited_logits: ``[..., classes]`` (e.g. ``[batch, classes]`` or ``[batch, time, vocab]``);
    the reference is detached. mask: ``[...]``, True for the rows to average over (e.g. non-pad tokens).
    """
    if ref_logits.shape != edited_logits.shape:
        raise ValueError(f"reference logits {tuple(ref_logits.shape)} and edited logits "
                         f"{tuple(edited_logits.shape)} differ in shape")
    ref_logp = F.log_softmax(_at_least_float32(ref_logits.detach()), dim=-1)
    edited_logp = F.log_softmax(_at_least_float32(edited_logits), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - edited_logp)).sum(-1)
    if mask is not None:
        kl = kl[mask]
    return kl.mean()


@dataclass
class Objective:
    """The terms of equation (2); ``total`` is the scalar to back-propagate."""

    total: Tensor
    l_base: Tensor
    l_edit: Tensor
    l_loc: Tensor


def editable_objective(l_base: Tensor, l_e: Tensor, ref_logits: Tensor, edited_logits: Tensor, *,
                       c_edit: float, c_loc: float, mask: Optional[Tensor] = None) -> Objective:
    """Combine the terms: ``l_e`` is ``[num_constraints]`` at the edited parameters (``EditResult.l_e``)."""
    l_edit = l_e.clamp_min(0).mean()
    l_loc = locality_kl(ref_logits, edited_logits, mask)
    return Objective(l_base + c_edit * l_edit + c_loc * l_loc, l_base, l_edit, l_loc)


def editable_training_loss(editable: Editable, inputs: Any, targets: Tensor, edit_inputs: Any,
                           edit_targets: Tensor, *, c_edit: float, c_loc: float,
                           base_loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
                           eval_locality: bool = False, backprop: str = "full",
                           loc_batch: Optional[int] = None) -> tuple[Objective, EditResult]:
    """Equation (2) on one batch and one (or several) edits, for a classifier.

    inputs, targets: the training batch (``targets`` is whatever ``base_loss`` takes, e.g. labels
    ``[batch]`` or teacher logits for distillation). edit_inputs, edit_targets: the edit ``l_e``.
    The prefix runs once on the batch; its output feeds both the plain and the edited suffix, and a
    single backward of ``total`` reaches every parameter and the editor's hyper-parameters. The edit
    runs in eval mode, as at deployment; the edited pass over the batch runs in the module's own mode
    (with batch-norm statistics left untouched), so ``L_loc`` is exactly 0 when the edit is a no-op.
    eval_locality: run the edited pass in eval mode, as deployed, against the module-mode reference (as
    the authors' code does). ``L_loc`` then also pulls the eval-mode model toward the predictions the
    base loss trains; with batch-norm in the suffix this is what makes eval-mode edits local (in train
    mode, batch statistics hide the shift an edit makes to every input). Costs a suffix pass even when
    the edit takes no step.
    loc_batch: estimate ``L_loc`` on the first ``loc_batch`` rows of the batch only (default: every row),
    an unbiased estimate of the batch mean when rows come shuffled, and the cheaper step: the edited pass
    over the batch is most of what Editable Training adds to a plain step. In the module's own mode with
    ``loc_batch`` below the batch size, the reference is a no-grad pass over those rows, so that batch-norm
    statistics of the same rows enter both sides (``L_loc`` stays exactly 0 for a no-op edit).
    """
    parse_backprop(backprop)  # bad values fail before any model pass
    check_loc_batch(loc_batch)
    features = editable.features(inputs)
    logits = editable.head(features)
    loc_features, ref_logits = features, logits
    if loc_batch is not None and loc_batch < _rows(logits):
        loc_features = features[:loc_batch]
        if eval_locality:
            ref_logits = logits[:loc_batch]
        else:  # through call(): batch-norm running statistics stay untouched
            with torch.no_grad():
                ref_logits = editable.head(loc_features, editable.editable_parameters())
    with eval_mode(editable.module):
        result = editable.edit(edit_inputs, edit_targets, create_graph=True, backprop=backprop)
        if eval_locality:
            edited_logits = editable.head(loc_features, result.params if result.steps else None)
    if not eval_locality:
        # no step taken: the edited model is the model itself, so skip the second suffix pass
        edited_logits = ref_logits if result.steps == 0 else editable.head(loc_features, result.params)
    objective = editable_objective(base_loss(logits, targets), result.l_e, ref_logits, edited_logits,
                                   c_edit=c_edit, c_loc=c_loc)
    return objective, result


def check_loc_batch(loc_batch: Optional[int]) -> None:
    """``loc_batch`` is None (every row) or an integer >= 1, else a ValueError."""
    if loc_batch is not None and (isinstance(loc_batch, bool) or not isinstance(loc_batch, int) or loc_batch < 1):
        raise ValueError(f"loc_batch must be None (every row) or an integer >= 1 (rows of the batch for L_loc), "
                         f"got {loc_batch!r}")


def _rows(logits: Any) -> int:
    if not isinstance(logits, Tensor):
        raise TypeError(f"loc_batch needs a model whose outputs are one tensor [batch, ...], "
                        f"got {type(logits).__name__}")
    return logits.shape[0]
