"""EWC: the penalty, the Fisher estimate and the editor wrapper."""
import pytest
import torch
import torch.nn.functional as F

from editable_core import GradientDescent, RMSProp, edit
from editable_vision.api import VisionEditable
from editable_vision.baselines.ewc import EWCEditor, ewc_penalty, fisher_diagonal
from editable_vision.models import cifar_resnet18


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    anchor = {"a": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g)}
    fisher = {k: torch.rand(v.shape, generator=g) + 0.1 for k, v in anchor.items()}
    direction = {k: torch.randn(v.shape, generator=g) for k, v in anchor.items()}
    return anchor, fisher, direction


def test_penalty_is_zero_at_the_original_parameters_and_grows_with_distance():
    anchor, fisher, direction = _tensors()
    assert ewc_penalty(anchor, anchor, fisher).item() == 0.0
    values = [ewc_penalty({k: anchor[k] + t * direction[k] for k in anchor}, anchor, fisher).item()
              for t in (0.1, 0.5, 1.0, 2.0)]
    assert all(v > 0 for v in values)
    assert values == sorted(values) and len(set(values)) == 4
    # quadratic: twice the distance, four times the penalty; and each parameter is weighted by its F_i
    assert values[3] == pytest.approx(4 * values[2], rel=1e-5)
    manual = sum((fisher[k] * direction[k] ** 2).sum() for k in anchor)
    assert values[2] == pytest.approx(manual.item(), rel=1e-5)


def test_penalty_ignores_parameters_with_zero_fisher():
    anchor, fisher, direction = _tensors()
    fisher = {k: torch.zeros_like(v) for k, v in fisher.items()}
    moved = {k: anchor[k] + direction[k] for k in anchor}
    assert ewc_penalty(moved, anchor, fisher).item() == 0.0


def test_editor_step_adds_the_penalty_gradient():
    anchor, fisher, direction = _tensors()
    params = {k: anchor[k] + direction[k] for k in anchor}
    grads = {k: torch.randn_like(v) for k, v in anchor.items()}
    editor = EWCEditor(GradientDescent(lr=0.1), fisher, weight=3.0, anchor=anchor)
    new, _ = editor.update(grads, editor.init(params), params)
    # the gradient of weight * P(theta) is 2 * weight * F * (theta - theta*)
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    penalty_grads = torch.autograd.grad(3.0 * ewc_penalty(p, anchor, fisher), list(p.values()))
    for (k, pg) in zip(p, penalty_grads):
        torch.testing.assert_close(new[k], params[k] - 0.1 * (grads[k] + pg))


def test_zero_weight_is_the_wrapped_editor_and_weight_pulls_edits_back():
    anchor, fisher, _ = _tensors()
    w = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(1)) for k, v in anchor.items()}

    def constraint(p):  # l_e = 100 - <w, theta - theta*>: never met in 5 steps, so every edit takes all 5
        return torch.stack([100.0 - sum((w[k] * (p[k] - anchor[k])).sum() for k in p)])

    plain = edit(constraint, anchor, RMSProp(lr=0.05), max_steps=5)
    same = edit(constraint, anchor, EWCEditor(RMSProp(lr=0.05), fisher, 0.0), max_steps=5)
    pulled = edit(constraint, anchor, EWCEditor(RMSProp(lr=0.05), fisher, 10.0), max_steps=5)
    for k in anchor:
        torch.testing.assert_close(same.params[k], plain.params[k], rtol=0, atol=0)
    assert plain.steps == pulled.steps == 5
    assert ewc_penalty(pulled.params, anchor, fisher) < ewc_penalty(plain.params, anchor, fisher)


def test_fisher_matches_per_example_autograd():
    torch.manual_seed(0)
    model = cifar_resnet18(num_classes=3, in_channels=1, width=2)
    editable = VisionEditable(model, "chain3", input_shape=(1, 8, 8)).eval()
    images, labels = torch.randn(5, 1, 8, 8), torch.tensor([0, 2, 1, 1, 0])
    fisher = fisher_diagonal(editable, images, labels, batch_size=2)
    params = editable.editable_parameters()
    expected = {k: torch.zeros_like(p) for k, p in params.items()}
    for x, y in zip(images, labels):
        loss = -F.cross_entropy(model(x[None]), y[None])
        for (k, g) in zip(params, torch.autograd.grad(loss, list(params.values()))):
            expected[k] += g ** 2 / len(images)
    assert set(fisher) == set(params)
    for k in params:
        torch.testing.assert_close(fisher[k], expected[k], rtol=1e-4, atol=1e-9)
    assert all(not m.training for m in model.modules())


def test_bad_inputs_give_clear_errors():
    anchor, fisher, _ = _tensors()
    with pytest.raises(ValueError, match="EWC weight must be >= 0"):
        EWCEditor(GradientDescent(), fisher, -1.0)
    with pytest.raises(TypeError, match="Editor"):
        EWCEditor(torch.optim.SGD, fisher, 1.0)
    with pytest.raises(ValueError, match="Fisher has no entry"):
        EWCEditor(GradientDescent(), {"a": fisher["a"]}, 1.0).init(anchor)
