from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from editable_core import classification_constraint, sequence_constraint, sequence_log_prob


def test_classification_constraint_is_log_prob_gap_to_best_other_class():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    targets = torch.tensor([1, 1])
    logp = F.log_softmax(logits, -1)
    expected = torch.stack([logp[0, 0] - logp[0, 1], logp[1, 2] - logp[1, 1]])
    torch.testing.assert_close(classification_constraint(logits, targets), expected)
    assert (classification_constraint(logits, targets) <= 0).tolist() == [False, True]
    torch.testing.assert_close(classification_constraint(logits, targets, margin=0.5), expected + 0.5)


@pytest.mark.parametrize("bad", [-1, 3])
def test_classification_target_out_of_range_names_the_value(bad):
    with pytest.raises(ValueError, match=f"target class {bad} out of range for 3 classes"):
        classification_constraint(torch.zeros(2, 3), torch.tensor([0, bad]))


def test_classification_shape_errors():
    with pytest.raises(ValueError, match=r"\[batch, classes\]"):
        classification_constraint(torch.zeros(3), torch.tensor([0]))
    with pytest.raises(ValueError, match="got 1 targets for a batch of 2"):
        classification_constraint(torch.zeros(2, 3), torch.tensor([0]))


def test_sequence_log_prob_masks_padding_and_normalises_by_length():
    pad = 0
    lprobs = torch.log_softmax(torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0)), -1)
    tokens = torch.tensor([[1, 2, 3], [4, 2, pad]])
    total = sequence_log_prob(lprobs, tokens, pad_idx=pad, normalize=False)
    manual = [lprobs[0, 0, 1] + lprobs[0, 1, 2] + lprobs[0, 2, 3], lprobs[1, 0, 4] + lprobs[1, 1, 2]]
    torch.testing.assert_close(total, torch.stack(manual))
    mean = sequence_log_prob(lprobs, tokens, pad_idx=pad, normalize=True)
    torch.testing.assert_close(mean, torch.stack([manual[0] / 3, manual[1] / 2]))
    with pytest.raises(ValueError, match="padding only"):
        sequence_log_prob(lprobs, torch.full((2, 3), pad), pad_idx=pad)


def test_sequence_constraint_uses_the_best_existing_alternative():
    target = torch.tensor([-1.0, -2.0])
    alternatives = torch.tensor([[-3.0, -0.5], [-1.0, 9.0]])
    mask = torch.tensor([[True, True], [True, False]])  # row 1 has only one alternative
    torch.testing.assert_close(sequence_constraint(target, alternatives, mask), torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="at least one alternative"):
        sequence_constraint(target, alternatives, torch.tensor([[True, True], [False, False]]))
