from __future__ import annotations

import pytest
import torch

from editable_core import Editable, apply_edit, call, select_parameters


def test_selection_by_module_name_parameter_name_list_predicate_and_module(mlp):
    assert list(select_parameters(mlp, "middle")) == ["middle.weight", "middle.bias"]
    assert list(select_parameters(mlp, "out.bias")) == ["out.bias"]
    assert list(select_parameters(mlp, ["out", "hidden.bias"])) == ["hidden.bias", "out.weight", "out.bias"]
    assert list(select_parameters(mlp, lambda name, p: p.dim() == 1)) == ["hidden.bias", "middle.bias", "out.bias"]
    assert list(select_parameters(mlp, mlp.middle)) == ["middle.weight", "middle.bias"]
    assert len(select_parameters(mlp, "")) == 6  # the whole model
    assert select_parameters(mlp, "middle")["middle.weight"] is mlp.middle.weight


def test_unknown_selection_names_the_culprit_and_the_choices(mlp):
    with pytest.raises(ValueError, match=r"no module or parameter named 'chain3'.*\['hidden', 'act1'"):
        select_parameters(mlp, "chain3")
    with pytest.raises(ValueError, match="not a submodule"):
        select_parameters(mlp, torch.nn.Linear(2, 2))


def test_empty_selection_is_an_error(mlp):
    with pytest.raises(ValueError, match="matched no parameters"):
        select_parameters(mlp, lambda name, p: False)
    with pytest.raises(ValueError, match="matched no parameters"):
        select_parameters(mlp, "act1")
    with pytest.raises(ValueError, match="empty parameter selection"):
        Editable(mlp, [])


def test_call_in_training_mode_never_touches_batch_norm_statistics():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).train()
    before = {n: b.clone() for n, b in model.named_buffers()}
    edited = {"0.weight": model[0].weight * 2}
    call(model, edited, torch.randn(8, 3))
    for name, value in model.named_buffers():
        assert torch.equal(value, before[name]), name
    model(torch.randn(8, 3))  # a plain forward still updates them
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])


def test_relative_change_measures_how_far_an_applied_edit_moved_the_tensors():
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.fill_(1.0), layer.bias.fill_(0.0)
    edit = apply_edit(layer, {"weight": torch.full((2, 3), 3.0)})
    assert edit.relative_change() == pytest.approx(2.0)  # ||3 - 1|| / ||1|| over the 6 entries
    edit.undo()
    with pytest.raises(RuntimeError, match="already undone"):
        edit.relative_change()
