from __future__ import annotations

import pytest
import torch

from editable_core import (ControlSet, EditResult, Editable, RMSProp, classification_error, drawdown,
                           drawdown_standard_error, evaluate_edits, mean_steps, sequential_edit_curve, success_rate)

from .conftest import least_likely


def result(success, steps):
    return EditResult({}, success, torch.zeros(1), steps)


def test_pure_metrics():
    assert drawdown(0.10, [0.12, 0.09, 0.10]) == pytest.approx((0.02 + 0.01 + 0.0) / 3)
    results = [result(True, 2), result(False, 10), result(True, 0)]
    assert success_rate(results) == pytest.approx(2 / 3)
    assert mean_steps(results) == pytest.approx(4.0)
    assert classification_error(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1])) == 0.5
    with pytest.raises(ValueError):
        drawdown(0.1, [])


def test_drawdown_standard_error_is_the_sample_std_of_the_changes_over_sqrt_n():
    changes = torch.tensor([0.02, 0.01, 0.0, 0.05])
    assert drawdown_standard_error(0.10, [0.12, 0.09, 0.10, 0.05]) == pytest.approx(
        (changes.std(unbiased=True) / 2).item())
    assert drawdown_standard_error(0.1, [0.3]) == 0.0
    with pytest.raises(ValueError):
        drawdown_standard_error(0.1, [])


def test_evaluate_edits_agrees_with_direct_recomputation(mlp, inputs):
    editable = Editable(mlp, "middle", RMSProp(lr=0.05))
    control_x, control_y = torch.randn(64, 6), torch.randint(0, 4, (64,))
    targets = least_likely(mlp, inputs[:3])
    metrics, results = evaluate_edits(editable, ControlSet(editable, control_x, control_y, batch_size=16),
                                      inputs[:3], targets)
    base = classification_error(mlp(control_x), control_y)
    errors = []
    for i, res in enumerate(results):
        direct = editable.edit(inputs[i:i + 1], targets[i:i + 1])
        assert direct.steps == res.steps
        with editable.apply(direct):
            with torch.no_grad():
                errors.append(classification_error(mlp(control_x), control_y))
    assert metrics.base_error == pytest.approx(base)
    assert metrics.drawdown == pytest.approx(sum(abs(e - base) for e in errors) / 3)
    assert metrics.success_rate == 1.0 and metrics.num_edits == 3


def test_sequential_curve_accumulates_edits(mlp, inputs):
    editable = Editable(mlp, "middle", RMSProp(lr=0.05))
    control_x, control_y = torch.randn(64, 6), torch.randint(0, 4, (64,))
    control = ControlSet(editable, control_x, control_y)
    targets = least_likely(mlp, inputs[:4])
    curve = sequential_edit_curve(editable, control, inputs[:4], targets)
    assert len(curve) == 5 and curve[0] == pytest.approx(classification_error(mlp(control_x), control_y))
    params = None
    for i in range(4):
        params = editable.edit(inputs[i:i + 1], targets[i:i + 1], params=params).params
    with editable.apply(params), torch.no_grad():
        assert curve[-1] == pytest.approx(classification_error(mlp(control_x), control_y))
