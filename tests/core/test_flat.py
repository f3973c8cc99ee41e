"""Elementwise editors edit one flat vector (``editable_core.flat``): the same edit, values and derivatives,
as per tensor."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import editable_core.flat
from editable_core import (EDITORS, Editable, Editor, call, classification_constraint, edit, editable_training_loss,
                           make_editor)
from editable_core.flat import FLAT, FlatLayout

from .conftest import least_likely, make_mlp

K = 3


@pytest.fixture
def flat_on_cpu(monkeypatch):
    """Flat editing on this CPU (by default it runs on accelerators only)."""
    monkeypatch.setattr(editable_core.flat, "ON_CPU", True)


def one_storage(params) -> bool:
    """Whether all tensors of ``params`` are views of one vector (the flat path ran)."""
    return len({p.untyped_storage().data_ptr() for p in params.values()}) == 1


def setup(name: str):
    """A float64 MLP with ``hidden`` and ``middle`` editable (four tensors), a batch and an edit that needs steps."""
    model = make_mlp(torch.float64, seed=5)
    editor = make_editor(name, lr=0.05 if name in ("gd", "scaled_gd", "momentum") else 0.01, learnable=True)
    editable = Editable(model, ["hidden", "middle"], editor.double(), max_steps=K)
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g)
    x_edit = torch.randn(2, 6, generator=g, dtype=torch.float64)
    return editable, x, y, x_edit, least_likely(model, x_edit)


def training_step(editable: Editable, x, y, x_edit, y_edit, backprop: str):
    """Equation (2) on one batch: its value, the edit and the gradient of every parameter and hyper-parameter."""
    editable.zero_grad(set_to_none=True)
    objective, result = editable_training_loss(editable, x, y, x_edit, y_edit, c_edit=1.0, c_loc=10.0,
                                               backprop=backprop)
    objective.total.backward()
    grads = {n: p.grad.clone() for n, p in editable.named_parameters() if p.grad is not None}
    return objective.total.detach(), result, grads


@pytest.mark.parametrize("name", sorted(EDITORS))
@pytest.mark.parametrize("backprop", ["full", "truncated:1", "first_order"])
def test_flat_and_per_tensor_edits_agree_in_value_and_gradient(flat_on_cpu, name, backprop):
    editable, x, y, x_edit, y_edit = setup(name)
    assert type(editable.editor).elementwise
    flat_total, flat_result, flat_grads = training_step(editable, x, y, x_edit, y_edit, backprop)
    editable.editor.elementwise = False  # this instance edits tensor by tensor
    total, result, grads = training_step(editable, x, y, x_edit, y_edit, backprop)
    assert one_storage(flat_result.params) and not one_storage(result.params)

    assert flat_result.steps == result.steps > 0
    assert list(flat_result.params) == list(result.params) == list(editable.param_names)
    for key, value in result.params.items():
        torch.testing.assert_close(flat_result.params[key], value, rtol=1e-12, atol=1e-12)
        assert flat_result.params[key].shape == editable.editable_parameters()[key].shape
    torch.testing.assert_close(flat_total, total, rtol=1e-12, atol=1e-12)
    assert set(flat_grads) == set(grads) and any(n.startswith("editor.") for n in grads)
    for key, value in grads.items():
        torch.testing.assert_close(flat_grads[key], value, rtol=1e-10, atol=1e-12, msg=key)


@pytest.mark.parametrize("name", sorted(EDITORS))
def test_flat_and_per_tensor_inference_edits_agree(flat_on_cpu, name):
    editable, _, _, x_edit, y_edit = setup(name)
    flat = editable.edit(x_edit, y_edit, max_steps=8)
    editable.editor.elementwise = False
    per_tensor = editable.edit(x_edit, y_edit, max_steps=8)
    assert one_storage(flat.params) and not one_storage(per_tensor.params)
    assert (flat.steps, flat.success) == (per_tensor.steps, per_tensor.success)
    for key, value in per_tensor.params.items():
        assert not flat.params[key].requires_grad
        torch.testing.assert_close(flat.params[key], value, rtol=1e-12, atol=1e-12)


def test_layout_round_trip_keeps_names_shapes_and_gradient(flat_on_cpu):
    model = make_mlp(torch.float64)
    params = dict(model.named_parameters())
    layout = FlatLayout.of(params)
    flat = layout.flatten(params)
    assert list(flat) == [FLAT] and flat[FLAT].shape == (sum(p.numel() for p in params.values()),)
    views = layout.unflatten(flat)
    assert list(views) == list(params)
    for key, value in views.items():
        assert value.shape == params[key].shape and torch.equal(value, params[key])
        assert value._base is flat[FLAT]  # views, not copies
    sum((i + 1) * v.sum() for i, v in enumerate(views.values())).backward()
    for i, p in enumerate(params.values()):
        torch.testing.assert_close(p.grad, torch.full_like(p, i + 1.0))


def test_views_keep_each_tensors_memory_order(flat_on_cpu):
    g = torch.Generator().manual_seed(0)
    params = {"conv": torch.randn(4, 3, 2, 5, generator=g).to(memory_format=torch.channels_last),
              "fc": torch.randn(6, 4, generator=g), "scale": torch.randn(6, generator=g)}
    layout = FlatLayout.of(params)
    flat = layout.flatten(params)[FLAT]
    torch.testing.assert_close(flat[:120], params["conv"].permute(0, 2, 3, 1).reshape(-1), rtol=0, atol=0)
    views = layout.unflatten({FLAT: flat})
    for name, tensor in params.items():
        assert torch.equal(views[name], tensor) and views[name].stride() == tensor.stride(), name
    assert views["conv"].is_contiguous(memory_format=torch.channels_last) and not views["conv"].is_contiguous()


def test_a_channels_last_conv_net_edits_alike_flat_and_per_tensor(flat_on_cpu):
    torch.manual_seed(3)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(2, 3, 3, padding=1), act=nn.Tanh(), conv2=nn.Conv2d(3, 3, 3), flatten=nn.Flatten(),
        out=nn.Linear(27, 4))).double().to(memory_format=torch.channels_last)
    editable = Editable(model, ["conv1", "conv2"], make_editor("rmsprop", lr=0.01, learnable=True).double(),
                        max_steps=K)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 2, 5, 5, generator=g, dtype=torch.float64), torch.randint(0, 4, (6,), generator=g)
    x_edit = torch.randn(1, 2, 5, 5, generator=g, dtype=torch.float64)
    y_edit = least_likely(model, x_edit)
    flat_total, flat_result, flat_grads = training_step(editable, x, y, x_edit, y_edit, "full")
    editable.editor.elementwise = False
    total, result, grads = training_step(editable, x, y, x_edit, y_edit, "full")
    assert one_storage(flat_result.params) and flat_result.steps == result.steps > 0
    for key, value in result.params.items():
        assert flat_result.params[key].stride() == value.stride() == editable.editable_parameters()[key].stride()
        torch.testing.assert_close(flat_result.params[key], value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(flat_total, total, rtol=1e-12, atol=1e-12)
    for key, value in grads.items():
        torch.testing.assert_close(flat_grads[key], value, rtol=1e-10, atol=1e-12, msg=key)


def test_layout_is_none_on_a_cpu_by_default():
    assert FlatLayout.of({"w": torch.zeros(3, 2), "b": torch.zeros(3)}) is None


def test_layout_is_none_for_one_tensor_or_mixed_dtypes(flat_on_cpu):
    weight = torch.zeros(3, 2)
    assert FlatLayout.of({"w": weight}) is None
    assert FlatLayout.of({"w": weight, "b": torch.zeros(3, dtype=torch.float64)}) is None
    assert FlatLayout.of({"w": weight, "b": torch.zeros(3)}) is not None


class NamedSteps(Editor):
    """A non-elementwise editor (the default): a step size per tensor name."""

    name = "named"

    def __init__(self, steps: dict[str, float]):
        super().__init__()
        self.steps = steps
        self.seen: list[list[str]] = []

    def update(self, grads, state, params):
        self.seen.append(list(params))
        return {k: p - self.steps[k] * grads[k] for k, p in params.items()}, state


def test_an_editor_that_is_not_elementwise_sees_each_named_tensor(flat_on_cpu):
    model = make_mlp(torch.float64)
    x = torch.randn(1, 6, dtype=torch.float64)
    target = least_likely(model, x)
    params = {k: p for k, p in model.named_parameters() if k.startswith("out.")}
    editor = NamedSteps({"out.weight": 0.5, "out.bias": 0.0})
    result = edit(lambda p: classification_constraint(call(model, p, x), target), params, editor, max_steps=2)
    assert editor.seen and all(keys == ["out.weight", "out.bias"] for keys in editor.seen)
    torch.testing.assert_close(result.params["out.bias"], params["out.bias"].detach())


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_failed_flat_edit_returns_the_starting_tensors(flat_on_cpu, create_graph):
    model = make_mlp(torch.float64)
    params = dict(model.named_parameters())
    result = edit(lambda p: sum(t.sum() for t in p.values()) * float("nan"), params, make_editor("gd", 0.1),
                  create_graph=create_graph)
    assert not result.success and result.steps == 0
    assert all(result.params[k] is p for k, p in params.items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: there the editor is flat by default")
@pytest.mark.parametrize("backprop", ["full", "first_order"])
def test_on_a_gpu_the_default_edit_is_flat_and_equals_the_per_tensor_one(backprop):
    editable, x, y, x_edit, y_edit = setup("rmsprop")
    editable.cuda()
    x, y, x_edit, y_edit = x.cuda(), y.cuda(), x_edit.cuda(), y_edit.cuda()
    flat_total, flat_result, flat_grads = training_step(editable, x, y, x_edit, y_edit, backprop)
    editable.editor.elementwise = False
    total, result, grads = training_step(editable, x, y, x_edit, y_edit, backprop)
    assert one_storage(flat_result.params) and not one_storage(result.params)
    torch.testing.assert_close(flat_total, total, rtol=1e-12, atol=1e-12)
    for key, value in grads.items():
        torch.testing.assert_close(flat_grads[key], value, rtol=1e-10, atol=1e-12, msg=key)
