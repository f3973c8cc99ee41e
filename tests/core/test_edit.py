from __future__ import annotations

import math

import pytest
import torch

from editable_core import Editable, RMSProp, apply_edit, classification_constraint, edit

from .conftest import least_likely


def snapshot(module):
    return {n: t.detach().clone() for n, t in module.state_dict().items()}


def assert_bitwise_equal(before, module):
    after = module.state_dict()
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert torch.equal(value, after[name]), name


def test_edit_changes_only_the_selected_parameters(mlp, inputs):
    before = snapshot(mlp)
    editable = Editable(mlp, "middle", RMSProp(lr=0.05))
    result = editable.edit(inputs[:1], least_likely(mlp, inputs[:1]))
    assert result.success
    assert set(result.params) == {"middle.weight", "middle.bias"}
    assert not torch.equal(result.params["middle.weight"], before["middle.weight"])
    assert_bitwise_equal(before, mlp)  # out of place: the module is untouched, every tensor bit for bit
    with editable.apply(result):
        for name, value in before.items():
            if not name.startswith("middle."):
                assert torch.equal(value, mlp.state_dict()[name]), name


def test_apply_then_undo_restores_the_model_exactly(mlp, inputs):
    before = snapshot(mlp)
    editable = Editable(mlp, ["hidden", "out.bias"], RMSProp(lr=0.05))
    targets = least_likely(mlp, inputs[:2])
    result = editable.edit(inputs[:2], targets)
    assert result.success
    handle = editable.apply(result)
    assert torch.equal(mlp.hidden.weight, result.params["hidden.weight"])
    assert torch.equal(mlp(inputs[:2]).argmax(-1), targets)
    handle.undo()
    assert_bitwise_equal(before, mlp)
    with pytest.raises(RuntimeError, match="already undone"):
        handle.undo()


def test_already_satisfied_constraint_costs_zero_steps(mlp, inputs):
    prediction = mlp(inputs[:3]).argmax(-1)
    result = Editable(mlp, "middle").edit(inputs[:3], prediction)
    assert result.success and result.steps == 0
    assert (result.l_e <= 0).all()


def test_several_edits_at_once_must_all_hold(mlp, inputs):
    targets = least_likely(mlp, inputs[:4])
    result = Editable(mlp, "middle", RMSProp(lr=0.05), max_steps=20).edit(inputs[:4], targets)
    assert result.success and result.l_e.shape == (4,) and (result.l_e <= 0).all()
    with apply_edit(mlp, result.params):
        assert torch.equal(mlp(inputs[:4]).argmax(-1), targets)


def test_sequence_of_edits_starts_from_the_previous_edit(mlp, inputs):
    editable = Editable(mlp, "middle", RMSProp(lr=0.05))
    targets = least_likely(mlp, inputs[:2])
    first = editable.edit(inputs[:1], targets[:1])
    second = editable.edit(inputs[1:2], targets[1:], params=first.params)
    assert first.success and second.success
    with editable.apply(second):
        assert mlp(inputs[1:2]).argmax(-1) == targets[1]
    # the second edit was applied on top of the first: starting from scratch gives different tensors
    fresh = editable.edit(inputs[1:2], targets[1:])
    assert not torch.equal(fresh.params["middle.weight"], second.params["middle.weight"])


def test_failed_edit_reports_failure_after_k_steps(mlp, inputs):
    result = Editable(mlp, "out.bias", RMSProp(lr=1e-6), max_steps=3).edit(inputs[:1], least_likely(mlp, inputs[:1]))
    assert not result.success and result.steps == 3 and result.l_e.item() > 0


def test_non_finite_loss_stops_the_edit_and_leaves_the_model_intact(mlp, inputs):
    before = snapshot(mlp)
    calls = []

    def exploding(params):
        calls.append(1)
        logits = torch.func.functional_call(mlp, params, (inputs[:1],))
        l_e = classification_constraint(logits, torch.tensor([0]))
        return l_e * (math.inf if len(calls) == 2 else -1.0) + (1.0 if len(calls) < 2 else 0.0)

    start = dict(mlp.named_parameters())
    result = edit(exploding, {k: v for k, v in start.items() if k.startswith("middle")}, RMSProp(lr=0.1))
    assert not result.success and result.steps == 1 and not torch.isfinite(result.l_e).all()
    assert all(result.params[k] is start[k] for k in result.params)  # the starting tensors, unchanged
    assert_bitwise_equal(before, mlp)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_k_below_one_is_rejected(mlp, k):
    with pytest.raises(ValueError, match="max_steps"):
        Editable(mlp, "middle", max_steps=k)


def test_out_of_range_target_is_a_clear_error(mlp, inputs):
    with pytest.raises(ValueError, match="target class 7 out of range for 4 classes"):
        Editable(mlp, "middle").edit(inputs[:1], torch.tensor([7]))


def test_prefix_runs_once_per_edit(mlp, inputs):
    target, calls = least_likely(mlp, inputs[:1]), []
    mlp.hidden.register_forward_hook(lambda *_: calls.append("hidden"))
    mlp.middle.register_forward_hook(lambda *_: calls.append("middle"))
    result = Editable(mlp, "middle", RMSProp(lr=0.01), max_steps=5).edit(inputs[:1], target)
    assert result.steps >= 2
    assert calls.count("hidden") == 1 and calls.count("middle") == result.steps + 1
