"""Editable+CNP: the zero condition vector is the plain model; conditions steer predictions; training runs."""
import pytest
import torch

from editable_vision.baselines.cnp import ConditionalClassifier, cnp_loss, cnp_from_payload, cnp_payload, train_cnp
from editable_vision.baselines.methods import CNPMethod
from editable_vision.data import TensorImages, VisionData
from editable_vision.models import cifar_resnet18
from editable_vision.train import TrainConfig

SPEC = {"arch": "cifar_resnet18", "num_classes": 4, "in_channels": 1, "width": 2}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _model(seed=0):
    torch.manual_seed(seed)
    backbone = cifar_resnet18(num_classes=4, in_channels=1, width=2)
    return ConditionalClassifier(backbone, 4, "chain3"), backbone


@pytest.mark.parametrize("train_mode", [False, True])
def test_zero_condition_is_exactly_the_plain_model(train_mode):
    model, backbone = _model()
    for _ in range(2):  # give batch-norm non-trivial running statistics
        backbone.train()(torch.randn(6, 1, 8, 8) * 3 + 1)
    model.train(train_mode)
    images = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        plain = backbone(images)
        zero = model(images, torch.zeros(8))
        none = model(images)
    assert torch.equal(zero, plain) and torch.equal(none, plain)


def test_condition_vector_shape_and_effect():
    model, _ = _model()
    model.eval()
    image, target = torch.randn(1, 1, 8, 8), torch.tensor([2])
    with torch.no_grad():
        condition = model.condition(image, target)
        other = model.condition(image, torch.tensor([3]))
        images = torch.randn(4, 1, 8, 8)
        assert condition.shape == (8,)  # chain 3 of width 2 has 4 * 2 channels
        assert not torch.equal(condition, other)  # the target's embedding matters
        assert not torch.allclose(model(images, condition), model(images))


def test_loss_reaches_every_part_and_training_learns_edits():
    model, _ = _model()
    images, labels = torch.randn(8, 1, 8, 8), torch.randint(4, (8,))
    model.train()
    objective, l_e = cnp_loss(model, images, labels, images[:1], torch.tensor([1]), c_edit=1.0, c_loc=1.0)
    objective.total.backward()
    for name in ("embedding.weight", "encoder.conv1.weight", "project.weight", "backbone.chain3.0.conv1.weight",
                 "backbone.stem.0.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert l_e.shape == (1,)


def test_train_cnp_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    images, labels = torch.randn(48, 1, 8, 8), torch.randint(4, (48,))
    data = VisionData(TensorImages(images[:32], labels[:32]), TensorImages(images[32:], labels[32:]), 4,
                      (1, 8, 8), lambda x: x, "toy", lambda x: x)
    model, _ = _model()
    config = TrainConfig(mode="editable", epochs=2, batch_size=16, lr=3e-3, c_edit=1.0, c_loc=0.1, seed=0,
                         schedule="constant")
    history = train_cnp(model, data, config, progress=False)
    assert [h["epoch"] for h in history] == [1, 2] and all(0 <= h["test_error"] <= 1 for h in history)
    loaded = cnp_from_payload(cnp_payload(model, SPEC, (1, 8, 8)))
    model.eval()
    with torch.no_grad():
        condition = model.condition(images[:1], torch.tensor([3]))
        assert torch.equal(loaded(images, condition), model(images, condition))
    method = CNPMethod(loaded)
    method.prepare(images[32:], labels[32:])
    outcome = method.edit(images[0], 3)
    assert outcome.steps is None and isinstance(outcome.success, bool)
    with torch.no_grad():
        success = bool(loaded(images[:1], outcome.state).argmax(-1) == 3)
    assert outcome.success == success


def test_bad_split_gives_a_clear_error():
    with pytest.raises(ValueError, match="split='head'"):
        ConditionalClassifier(cifar_resnet18(4, 1, 2), 4, "head")
    with pytest.raises(ValueError, match="split='chain7'"):
        ConditionalClassifier(cifar_resnet18(4, 1, 2), 4, "chain7")
