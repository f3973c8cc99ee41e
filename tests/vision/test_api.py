"""The Python API: edit(image, label), apply / undo, save / load, and clear errors on bad input."""
from __future__ import annotations

import pytest
import torch

from editable_vision import load, make_editable, save
from editable_vision.models import cifar_resnet18

from .conftest import SPEC, tiny_editable


def least_likely(editable, image):
    return int(editable.logits(image).argmin())


def test_edit_apply_undo(trained, digits):
    image = digits.test[0][0]
    target = least_likely(trained, image)
    before = {k: v.clone() for k, v in trained.module.state_dict().items()}
    result = trained.edit(image, target)
    assert result.success and 1 <= result.steps <= 10 and float(result.l_e.max()) <= 0
    assert set(result.params) == set(trained.param_names) and all(k.startswith("chain3.") for k in result.params)
    # the edit is out of place: the module is untouched until applied
    assert all(torch.equal(before[k], v) for k, v in trained.module.state_dict().items())
    assert int(trained.predict(image, result.params)) == target
    with trained.apply(result):
        assert int(trained.predict(image)) == target
        assert not torch.equal(trained.module.state_dict()["chain3.0.conv1.weight"], before["chain3.0.conv1.weight"])
    assert all(torch.equal(before[k], v) for k, v in trained.module.state_dict().items())
    # a batch of images, one label for all: every constraint must hold
    batch = torch.stack([digits.test[i][0] for i in range(3)])
    result = trained.edit(batch, target)
    assert result.l_e.shape == (3,)
    assert result.success == bool((trained.predict(batch, result.params) == target).all())


def test_bad_input_gives_clear_errors(trained):
    image = torch.zeros(1, 8, 8)
    with pytest.raises(ValueError, match=r"label 10 out of range: this model has 10 classes \(0..9\)"):
        trained.edit(image, 10)
    with pytest.raises(ValueError, match="label -1 out of range"):
        trained.edit(image, -1)
    with pytest.raises(ValueError, match="labels must be integers"):
        trained.edit(image, torch.tensor([1.5]))
    with pytest.raises(ValueError, match=r"expected an image of shape \[1, 8, 8\].*got \[3, 8, 8\]"):
        trained.edit(torch.zeros(3, 8, 8), 1)
    with pytest.raises(ValueError, match=r"got \[8, 8\]"):
        trained.predict(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="got 2 labels for 3 images"):
        trained.edit(torch.zeros(3, 1, 8, 8), [1, 2])
    with pytest.raises(TypeError, match="images must be a tensor"):
        trained.edit([[0.0]], 1)
    with pytest.raises(ValueError, match=r"unknown part 'chain5'.*\['stem', 'chain1', 'chain2', 'chain3', "
                                         r"'chain4', 'head'\]"):
        tiny_editable(part="chain5")
    with pytest.raises(ValueError, match="unknown part 'extra'"):
        tiny_editable(part=["chain3", "extra"])
    with pytest.raises(ValueError, match="unknown editor 'sgd'"):
        tiny_editable(editor="sgd")
    with pytest.raises(ValueError, match="input_shape must be"):
        make_editable(cifar_resnet18(width=4), input_shape=(32, 32))
    with pytest.raises(ValueError, match="max_steps"):
        make_editable(cifar_resnet18(width=4), input_shape=(3, 32, 32), max_steps=0)


def test_parts_select_what_an_edit_changes():
    editable = make_editable(cifar_resnet18(width=4), ["chain2", "head"], "gd", input_shape=(3, 16, 16), lr=0.1)
    assert {k.split(".")[0] for k in editable.param_names} == {"chain2", "head"}
    whole = make_editable(cifar_resnet18(width=4), "all", input_shape=(3, 16, 16))
    assert len(whole.param_names) == len(list(whole.module.parameters()))
    result = editable.eval().edit(torch.randn(3, 16, 16), 4, max_steps=2)
    assert {k.split(".")[0] for k in result.params} == {"chain2", "head"}


def test_save_load_round_trip(tmp_path, digits):
    editable = tiny_editable(part="chain4", lr=3e-3)
    with torch.no_grad():
        editable.editor.beta.raw.fill_(0.7)  # a "trained" beta, which must travel with the model
    path = tmp_path / "model.pt"
    save(editable, str(path), SPEC)
    loaded = load(str(path))
    assert loaded.part == "chain4" and loaded.max_steps == 10 and loaded.num_classes == 10
    assert loaded.input_shape == (1, 8, 8) and loaded.editor.beta.learnable
    torch.testing.assert_close(loaded.editor.beta(), editable.editor.beta(), rtol=0, atol=0)
    torch.testing.assert_close(loaded.editor.lr(), editable.editor.lr(), rtol=0, atol=0)
    for (name, a), (_, b) in zip(editable.module.state_dict().items(), loaded.module.state_dict().items()):
        assert torch.equal(a, b), name
    images = torch.stack([digits.test[i][0] for i in range(5)])
    editable.eval()
    torch.testing.assert_close(loaded.logits(images), editable.logits(images), rtol=0, atol=0)
    a, b = editable.edit(images[0], 3), loaded.edit(images[0], 3)
    assert a.steps == b.steps and all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    # overrides: another part / editor / lr
    other = load(str(path), part="head", editor="gd", lr=0.5, max_steps=3)
    assert other.param_names == ("head.2.weight", "head.2.bias") and other.editor.name == "gd"
    assert other.max_steps == 3 and abs(other.editor.lr().item() - 0.5) < 1e-6
    # an edit saved into a checkpoint is the edit
    save(editable, str(tmp_path / "edited.pt"), SPEC, params=a.params)
    edited = load(str(tmp_path / "edited.pt"))
    with editable.apply(a):
        torch.testing.assert_close(edited.logits(images), editable.logits(images), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(str(tmp_path / "missing.pt"))
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an editable_vision checkpoint"):
        load(str(tmp_path / "other.pt"))
