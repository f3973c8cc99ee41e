"""Gradients of the Editable Training objective (equation 2) through the editor."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from editable_core import EDITORS, Editable, editable_objective, editable_training_loss, eval_mode, make_editor

from .conftest import least_likely, make_mlp

# every hyper-parameter learnable; rates small enough that k=3 steps never finish the edit, so the
# number of steps (and hence the objective) is a smooth function of theta and of the hyper-parameters
HYPER = {
    "gd": dict(lr=0.05), "scaled_gd": dict(lr=0.02), "rprop": dict(lr=0.002),
    "rmsprop": dict(lr=0.002, beta=0.6), "momentum": dict(lr=0.02, mu=0.5),
    "adam": dict(lr=0.002, beta1=0.5, beta2=0.9),
}


def objective_fn(name):
    model = make_mlp(torch.float64, seed=3)
    editor = make_editor(name, **HYPER[name], learnable=True).double()
    editable = Editable(model, "middle", editor, max_steps=3)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g)
    x_edit = torch.randn(1, 6, generator=g, dtype=torch.float64)
    y_edit = least_likely(model, x_edit)

    def total():
        return editable_training_loss(editable, x, y, x_edit, y_edit, c_edit=1.0, c_loc=10.0)

    with torch.no_grad():
        reference = model(x)

    def total_with_frozen_reference():
        """Equation (2) re-derived by hand, with p(y|x, theta) held at its unperturbed value: the function
        whose derivative the detached reference of ``editable_training_loss`` stands for."""
        features = editable.features(x)
        with eval_mode(model):
            result = editable.edit(x_edit, y_edit, create_graph=True)
        edited = editable.head(features, result.params)
        base = F.cross_entropy(editable.head(features), y)
        return editable_objective(base, result.l_e, reference, edited, c_edit=1.0, c_loc=10.0).total.item()

    return editable, total, total_with_frozen_reference


@pytest.mark.parametrize("name", sorted(EDITORS))
def test_gradient_reaches_theta_and_every_learnable_hyper_parameter(name):
    editable, total, _ = objective_fn(name)
    objective, result = total()
    assert result.steps == 3 and not result.success and objective.l_edit > 0 and objective.l_loc > 0
    objective.total.backward()
    for pname, param in editable.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
        if pname.startswith("editor."):
            assert param.grad.abs().item() > 0, f"{pname} gets no gradient through the edit"
    # parameters below the editable part are reached through the edit, not only through L_base
    assert editable.module.hidden.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(EDITORS))
def test_gradient_agrees_with_finite_differences(name):
    editable, total, frozen = objective_fn(name)
    objective, _ = total()
    objective.total.backward()
    assert objective.total.item() == pytest.approx(frozen(), rel=1e-12)
    probes = [(n, p) for n, p in editable.named_parameters() if n.startswith("editor.")]
    probes += [("module.hidden.weight", editable.module.hidden.weight),
               ("module.middle.weight", editable.module.middle.weight),
               ("module.out.bias", editable.module.out.bias)]
    h = 1e-6
    for pname, param in probes:
        index = (0,) * param.dim()
        original = param[index].item()
        values = []
        for shifted in (original + h, original - h, original):
            with torch.no_grad():
                param[index] = shifted
            values.append(frozen())
        plus, minus, _ = values
        numeric = (plus - minus) / (2 * h)
        analytic = param.grad[index].item()
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-7), pname


def test_editor_hyper_parameters_do_not_train_unless_learnable():
    model = make_mlp(seed=5)
    editable = Editable(model, "middle", make_editor("rmsprop", lr=0.002), max_steps=3)
    assert not any(n.startswith("editor.") for n, _ in editable.named_parameters())
    x = torch.randn(4, 6)
    objective, _ = editable_training_loss(editable, x, torch.tensor([0, 1, 2, 3]), x[:1], least_likely(model, x[:1]),
                                          c_edit=1.0, c_loc=1.0)
    objective.total.backward()
    assert editable.module.middle.weight.grad is not None


def test_locality_is_zero_when_the_edit_is_a_no_op():
    model = make_mlp(seed=6)
    model.train()
    editable = Editable(model, "middle")
    x = torch.randn(8, 6)
    objective, result = editable_training_loss(editable, x, torch.zeros(8, dtype=torch.long), x[:1],
                                               model(x[:1]).argmax(-1), c_edit=1.0, c_loc=1.0)
    assert result.steps == 0 and objective.l_loc.item() == 0.0 and objective.l_edit.item() == 0.0
