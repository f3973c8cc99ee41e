"""``loc_batch``: ``L_loc`` estimated on the first rows of the batch (the cheaper Editable Training step)."""
from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from editable_core import Editable, RMSProp, call, editable_training_loss, eval_mode, locality_kl

from .conftest import least_likely, make_mlp


def problem(model):
    editable = Editable(model, "middle", RMSProp(lr=0.002, beta=0.6, learnable=True).double(), max_steps=3)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g)
    x_edit = torch.randn(1, 6, generator=g, dtype=torch.float64)
    with eval_mode(model):
        return editable, x, y, x_edit, least_likely(model, x_edit)


def with_batch_norm():
    """An MLP with batch-norm inside the editable suffix, in training mode."""
    torch.manual_seed(5)
    return nn.Sequential(OrderedDict(
        hidden=nn.Linear(6, 16), act1=nn.Tanh(), middle=nn.Linear(16, 16), norm=nn.BatchNorm1d(16),
        act2=nn.Tanh(), out=nn.Linear(16, 4),
    )).double().train()


def gradients(editable, x, y, x_edit, y_edit, **options):
    editable.zero_grad(set_to_none=True)
    objective, result = editable_training_loss(editable, x, y, x_edit, y_edit, c_edit=1.0, c_loc=10.0, **options)
    objective.total.backward()
    return objective, result, {n: p.grad.clone() for n, p in editable.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("eval_locality", [False, True])
def test_loc_batch_of_the_whole_batch_or_more_is_the_default(eval_locality):
    # a fresh model per call: the base pass moves batch-norm running statistics, which the eval-mode edit reads
    default = gradients(*problem(with_batch_norm()), eval_locality=eval_locality)
    for loc_batch in (8, 100):
        got = gradients(*problem(with_batch_norm()), eval_locality=eval_locality, loc_batch=loc_batch)
        assert got[0].total.item() == default[0].total.item()
        for name in default[2]:
            assert torch.equal(got[2][name], default[2][name]), name


def test_l_loc_is_the_kl_over_the_first_rows():
    editable, x, y, x_edit, y_edit = args = problem(make_mlp(torch.float64, seed=3))
    objective, result, _ = gradients(*args, loc_batch=3)
    assert result.steps == 3
    h = editable.features(x[:3])
    expected = locality_kl(editable.head(h), editable.head(h, result.params))
    # a KL of nearly equal distributions: its float64 rounding differs between machines by ~1e-12 relative
    torch.testing.assert_close(objective.l_loc, expected, rtol=1e-9, atol=0)
    assert objective.l_loc.item() != gradients(*args)[0].l_loc.item()  # not the whole batch's mean


def test_with_batch_norm_the_reference_uses_the_same_rows_statistics():
    """Train-mode batch-norm: reference and edited pass both normalise over the first rows, so an edit that
    takes no step gives ``L_loc = 0`` exactly; a real edit gives the KL of two passes over those rows."""
    model = with_batch_norm()
    untouched = copy.deepcopy(model)
    editable, x, y, x_edit, y_edit = problem(model)
    with eval_mode(model), torch.no_grad():
        reached = model(x_edit).argmax(-1)  # already the prediction: the edit takes no step
    objective, result, _ = gradients(editable, x, y, x_edit, reached, loc_batch=3)
    assert result.steps == 0 and objective.l_loc.item() == 0.0

    objective, result, grads = gradients(editable, x, y, x_edit, y_edit, loc_batch=3)
    assert result.steps == 3
    h = editable.features(x[:3])
    suffix, theta = editable.suffix, editable.editable_parameters()
    expected = locality_kl(call(suffix, theta, h), call(suffix, result.params, h))
    # a KL of nearly equal distributions: its float64 rounding differs between machines by ~1e-12 relative
    torch.testing.assert_close(objective.l_loc, expected, rtol=1e-9, atol=0)
    assert objective.l_loc.item() > 0 and grads["module.hidden.weight"].abs().sum() > 0
    # only the two base passes moved the running statistics: the reference and edited passes left them alone
    for _ in range(2):
        untouched(x)
    torch.testing.assert_close(model.norm.running_mean, untouched.norm.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(model.norm.running_var, untouched.norm.running_var, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_bad_loc_batch_is_an_error_before_any_pass(bad):
    editable, x, y, x_edit, y_edit = problem(make_mlp(torch.float64))
    with pytest.raises(ValueError, match="loc_batch"):
        editable_training_loss(editable, x, y, x_edit, y_edit, c_edit=1.0, c_loc=1.0, loc_batch=bad)
