"""Edit targets: uniformly random classes (sections 4.1, 4.3) or "match ranks" (section 4.3.1).

"Match ranks" draws, for each edit image, a rank ``r`` from the distribution of the ranks that the true
classes of hard examples (Natural Adversarial Examples in the paper) get under the model, and takes the
class the model currently ranks ``r``-th for that image as the target.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

TARGETS = ("random", "match-ranks")


def true_class_ranks(logits: Tensor, labels: Tensor) -> Tensor:
    """Rank of each true class among the predictions (0 = the arg-max); logits ``[N, C]``, labels ``[N]``."""
    true_logit = logits.gather(1, labels[:, None].to(logits.device))
    return (logits > true_logit).sum(1)


def rank_distribution(logits: Tensor, labels: Tensor, *, misclassified_only: bool = True,
                      smoothing: float = 0.0) -> Tensor:
    """``[C]`` probabilities of each rank of the true class (Figure 5, left), from ``logits [N, C]``.

    misclassified_only: use only the examples the model gets wrong (rank >= 1), i.e. the edits one would
    actually make; smoothing: add this count to every rank >= 1 (so that rare ranks stay possible).
    """
    ranks = true_class_ranks(logits, labels)
    if misclassified_only:
        ranks = ranks[ranks > 0]
    if ranks.numel() == 0 and smoothing <= 0:
        raise ValueError("no misclassified examples to estimate the rank distribution from; "
                         "use more (or harder) examples or smoothing > 0")
    counts = torch.bincount(ranks.cpu(), minlength=logits.shape[1]).double()
    counts[1:] += smoothing
    return (counts / counts.sum()).float()


def random_targets(count: int, num_classes: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """``[count]`` classes drawn uniformly from ``0..num_classes-1`` (as in the paper, the true class is
    not excluded: such an edit already holds and takes 0 steps)."""
    return torch.randint(num_classes, (count,), generator=generator)


def match_rank_targets(logits: Tensor, rank_probs: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """``[N]`` targets: for each row of ``logits [N, C]``, the class ranked ``r``-th, ``r ~ rank_probs [C]``."""
    if rank_probs.numel() != logits.shape[1]:
        raise ValueError(f"rank distribution has {rank_probs.numel()} entries for {logits.shape[1]} classes")
    ranks = torch.multinomial(rank_probs.double().cpu(), len(logits), replacement=True, generator=generator)
    order = logits.detach().cpu().argsort(dim=1, descending=True)
    return order.gather(1, ranks[:, None]).squeeze(1)
