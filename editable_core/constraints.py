"""Edit constraints ``l_e(theta) <= 0`` (paper sections 3 and 4.4), batched: one value per constraint.

An edit of several constraints succeeds when every value is ``<= 0``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def classification_constraint(logits: Tensor, targets: Tensor, margin: float = 0.0) -> Tensor:
    """``l_e = max_{y != y_ref} log p(y|x) - log p(y_ref|x) + margin``.

    logits: ``[batch, classes]``; targets: ``[batch]`` class indices ``y_ref``. Returns ``[batch]``.
    The log-softmax normaliser cancels in the difference, so raw logits are used directly.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [batch, classes], got shape {tuple(logits.shape)}")
    batch, classes = logits.shape
    targets = torch.as_tensor(targets, device=logits.device).long().reshape(-1)
    if targets.numel() != batch:
        raise ValueError(f"got {targets.numel()} targets for a batch of {batch} logits")
    if classes < 2:
        raise ValueError("a classification constraint needs at least 2 classes")
    out_of_range = (targets < 0) | (targets >= classes)
    if out_of_range.any():
        bad = targets[out_of_range][0].item()
        raise ValueError(f"target class {bad} out of range for {classes} classes (valid: 0..{classes - 1})")
    reference = logits.gather(1, targets[:, None]).squeeze(1)
    is_target = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, targets[:, None], True)
    best_other = logits.masked_fill(is_target, float("-inf")).amax(dim=1)
    return best_other - reference + margin


def sequence_log_prob(lprobs: Tensor, tokens: Tensor, pad_idx: Optional[int] = None,
                      normalize: bool = True) -> Tensor:
    """Log-probability of each token sequence, summed or averaged over its non-padding tokens.

    lprobs: ``[num_seqs, length, vocab]`` log-probabilities; tokens: ``[num_seqs, length]``.
    Returns ``[num_seqs]``: ``sum_t log p(y_t | s, y_<t)``, divided by the length if ``normalize``.
    """
    if lprobs.dim() != 3 or tokens.shape != lprobs.shape[:2]:
        raise ValueError(f"expected lprobs [N, T, V] and tokens [N, T], got {tuple(lprobs.shape)} "
                         f"and {tuple(tokens.shape)}")
    token_lp = lprobs.gather(2, tokens.unsqueeze(2)).squeeze(2)
    if pad_idx is None:
        lengths = torch.full(token_lp.shape[:1], token_lp.shape[1], dtype=token_lp.dtype, device=token_lp.device)
    else:
        keep = tokens.ne(pad_idx)
        token_lp = token_lp.masked_fill(~keep, 0.0)
        lengths = keep.sum(1).to(token_lp.dtype)
        if (lengths == 0).any():
            raise ValueError("a sequence consists of padding only")
    total = token_lp.sum(1)
    return total / lengths if normalize else total


def sequence_constraint(target_logp: Tensor, alternative_logp: Tensor,
                        alternative_mask: Optional[Tensor] = None, margin: float = 0.0) -> Tensor:
    """``l_e = max_i log p(y_i|s) - log p(y_0|s) + margin`` over the alternatives ``y_1..y_k``.

    target_logp: ``[batch]``, log p of each edit's desired translation ``y_0``;
    alternative_logp: ``[batch, k]``; alternative_mask: ``[batch, k]``, True where an alternative
    exists (rows may have fewer than k). Returns ``[batch]``.
    """
    if alternative_logp.dim() != 2 or target_logp.shape != alternative_logp.shape[:1]:
        raise ValueError(f"expected target_logp [B] and alternative_logp [B, k], got "
                         f"{tuple(target_logp.shape)} and {tuple(alternative_logp.shape)}")
    if alternative_mask is not None:
        if not alternative_mask.any(1).all():
            raise ValueError("every edit needs at least one alternative translation")
        alternative_logp = alternative_logp.masked_fill(~alternative_mask, float("-inf"))
    elif alternative_logp.shape[1] == 0:
        raise ValueError("every edit needs at least one alternative translation")
    return alternative_logp.amax(dim=1) - target_logp + margin
