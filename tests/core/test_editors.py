from __future__ import annotations

import pytest
import torch

from editable_core import EDITORS, Adam, Editable, Interval, Positive, RMSProp, make_editor, parse_learnable

from .conftest import least_likely

# learning rates that let each editor fix the least likely class of the tiny MLP within k=10 steps
LR = {"gd": 2.0, "scaled_gd": 1.0, "rprop": 0.05, "rmsprop": 0.05, "momentum": 0.5, "adam": 0.05}


@pytest.mark.parametrize("name", sorted(EDITORS))
def test_every_editor_reaches_success(name, mlp, inputs):
    x = inputs[:1]
    target = least_likely(mlp, x)
    result = Editable(mlp, "middle", make_editor(name, lr=LR[name]), max_steps=10).edit(x, target)
    assert result.success and 1 <= result.steps <= 10
    assert mlp(x).argmax(-1).item() != target.item()  # the module itself was not touched
    with Editable(mlp, "middle").apply(result):
        assert mlp(x).argmax(-1).item() == target.item()


def test_rmsprop_follows_section_4_1():
    p = {"w": torch.tensor([1.0, -2.0])}
    g0, g1 = torch.tensor([0.5, -0.1]), torch.tensor([0.2, 0.3])
    editor = RMSProp(lr=0.1, beta=0.7, eps=1e-6)
    p1, state = editor.update({"w": g0}, editor.init(p), p)
    rms0 = g0**2  # rms_0 = g_0^2
    torch.testing.assert_close(p1["w"], p["w"] - 0.1 * g0 / torch.sqrt(rms0 + 1e-6))
    p2, _ = editor.update({"w": g1}, state, p1)
    rms1 = 0.7 * rms0 + 0.3 * g1**2  # rms_{t+1} = beta * rms_t + (1 - beta) * g^2
    torch.testing.assert_close(p2["w"], p1["w"] - 0.1 * g1 / torch.sqrt(rms1 + 1e-6))


def test_momentum_starts_from_zero_velocity():
    p = {"w": torch.tensor([0.0])}
    editor = make_editor("momentum", lr=0.5, mu=0.9)
    p1, state = editor.update({"w": torch.tensor([1.0])}, editor.init(p), p)
    p2, _ = editor.update({"w": torch.tensor([1.0])}, state, p1)
    torch.testing.assert_close(p1["w"], torch.tensor([-0.5]))          # nu_1 = alpha * g
    torch.testing.assert_close(p2["w"], torch.tensor([-0.5 - 0.95]))   # nu_2 = alpha * g + mu * nu_1


def test_scaled_gd_divides_by_first_gradient_norm_only():
    p = {"a": torch.zeros(2), "b": torch.zeros(1)}
    editor = make_editor("scaled_gd", lr=1.0)
    g = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([4.0])}  # global norm 5
    p1, state = editor.update(g, editor.init(p), p)
    torch.testing.assert_close(p1["a"], torch.tensor([-0.6, 0.0]))
    p2, _ = editor.update({"a": torch.tensor([10.0, 0.0]), "b": torch.tensor([0.0])}, state, p1)
    torch.testing.assert_close(p2["a"], torch.tensor([-2.6, 0.0]))  # still divided by 5, not by 10


def test_sign_editor_uses_only_the_sign():
    p = {"w": torch.zeros(3)}
    new, _ = make_editor("rprop", lr=0.1).update({"w": torch.tensor([5.0, -1e-3, 0.0])}, None, p)
    torch.testing.assert_close(new["w"], torch.tensor([-0.1, 0.1, 0.0]))


def test_hyper_parameters_stay_in_range_when_trained_hard():
    adam = Adam(lr=1e-3, beta1=0.5, learnable=True)
    rms = RMSProp(beta=0.5, learnable=True)
    with torch.no_grad():
        adam.beta1.raw.fill_(-1e3)
        rms.beta.raw.fill_(1e3)
        adam.lr.raw.fill_(-50.0)
    assert 0.1 <= adam.beta1().item() < 1.0  # beta1 restricted to [0.1, 1] (section 4.1)
    assert 0.0 < rms.beta().item() <= 1.0
    assert adam.lr().item() > 0.0


def test_learnable_selects_which_hyper_parameters_train():
    editor = RMSProp(lr=1e-3, beta=0.5, learnable=("beta",))
    assert [n for n, _ in editor.named_parameters()] == ["beta.raw"]
    assert set(editor.state_dict()) == {"lr.raw", "beta.raw"}  # fixed ones still travel with checkpoints
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        RMSProp(learnable=("mu",))


def test_bad_hyper_parameter_values_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        Positive(0.0)
    with pytest.raises(ValueError, match=r"\(0.1, 1.0\)"):
        Interval(0.05, 0.1, 1.0)
    with pytest.raises(ValueError, match="unknown editor 'sgd'"):
        make_editor("sgd")


def test_make_editor_chooses_what_is_learnable():
    def learned(editor):
        return sorted(n for n, _ in editor.named_parameters())

    assert learned(make_editor("rmsprop", 1e-3, "auto")) == ["beta.raw"]  # all but alpha, as in the paper
    assert learned(make_editor("rmsprop", 1e-3, False)) == []
    assert learned(make_editor("adam", 1e-3, True)) == ["beta1.raw", "beta2.raw", "lr.raw"]
    assert learned(make_editor("momentum", 1e-3, ["mu"])) == ["mu.raw"]
    assert learned(make_editor("gd", 1e-3, "auto")) == []
    assert make_editor("momentum").lr().item() == pytest.approx(1e-2)  # the editor's own default alpha
    with pytest.raises(ValueError, match=r"learnable names unknown hyper-parameter\(s\) \['mu'\]"):
        make_editor("rmsprop", 1e-3, ["mu"])
    with pytest.raises(ValueError, match="learnable must be True, False, 'auto' or a list"):
        make_editor("rmsprop", 1e-3, "beta")
    with pytest.raises(ValueError, match="unknown editor 'sgd'"):
        make_editor("sgd")


def test_parse_learnable_reads_the_command_line_spelling():
    assert [parse_learnable(t) for t in ("auto", "none", "", "all", "beta1, beta2")] == [
        "auto", False, False, True, ("beta1", "beta2")]


def test_the_shape_option_changes_only_how_the_raw_value_is_stored():
    flat, vector = make_editor("rmsprop", 1e-3, "auto"), make_editor("rmsprop", 1e-3, "auto", shape=(1,))
    assert flat.beta.raw.shape == () and vector.beta.raw.shape == (1,) and vector.lr.raw.shape == (1,)
    assert vector.beta().shape == () and vector.beta().item() == flat.beta().item()
    with pytest.raises(ValueError, match="shape must hold one element"):
        Positive(1.0, shape=(2,))
