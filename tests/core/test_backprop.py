"""The cheaper outer gradients of Editable Training: ``backprop="truncated:m"`` and ``"first_order"``."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from editable_core import (Editable, GradientDescent, RMSProp, classification_constraint, editable_training_loss,
                           locality_kl, parse_backprop)

from .conftest import least_likely, make_mlp

K, C_EDIT, C_LOC = 3, 1.0, 10.0


def setup(editor):
    """A float64 MLP (``middle`` editable) and a batch and an edit that ``k = 3`` small steps never finish."""
    model = make_mlp(torch.float64, seed=3)
    editable = Editable(model, "middle", editor.double(), max_steps=K)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g)
    x_edit = torch.randn(1, 6, generator=g, dtype=torch.float64)
    return editable, x, y, x_edit, least_likely(model, x_edit)


def gradients(editable, x, y, x_edit, y_edit, backprop):
    editable.zero_grad(set_to_none=True)
    objective, result = editable_training_loss(editable, x, y, x_edit, y_edit, c_edit=C_EDIT, c_loc=C_LOC,
                                               backprop=backprop)
    assert result.steps == K and not result.success
    objective.total.backward()
    return objective.total.detach(), {n: p.grad.clone() for n, p in editable.named_parameters()}


def by_hand(editable, x, y, x_edit, y_edit, theta_hat):
    """Equation (2) written out for an MLP whose ``middle`` layer takes the edited ``theta_hat``."""
    m = editable.module

    def head(h, weight, bias):
        return m.out(torch.tanh(F.linear(h, weight, bias)))

    h = torch.tanh(m.hidden(x))
    logits = head(h, m.middle.weight, m.middle.bias)
    l_e = classification_constraint(head(torch.tanh(m.hidden(x_edit)), *theta_hat), y_edit)
    total = F.cross_entropy(logits, y) + C_EDIT * l_e.clamp_min(0).mean() + C_LOC * locality_kl(
        logits, head(h, *theta_hat))
    editable.zero_grad(set_to_none=True)
    total.backward()
    return total.detach(), {n: p.grad.clone() for n, p in editable.named_parameters()}


def edit_gradients(editable, x_edit, y_edit, point):
    """``g_t``: the gradient of ``l_e`` at the (constant) point ``(weight, bias)`` of ``middle``."""
    m = editable.module
    weight, bias = (t.detach().requires_grad_() for t in point)
    l_e = classification_constraint(m.out(torch.tanh(F.linear(torch.tanh(m.hidden(x_edit)), weight, bias))), y_edit)
    return torch.autograd.grad(l_e.clamp_min(0).sum(), (weight, bias))


def assert_same(a, b):
    assert a[0].item() == pytest.approx(b[0].item(), rel=1e-12)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("m", [K, K + 2])
def test_truncated_with_m_at_least_k_is_the_exact_gradient(m):
    problem = setup(RMSProp(lr=0.002, beta=0.6, learnable=True))
    assert_same(gradients(*problem, f"truncated:{m}"), gradients(*problem, "full"))


def test_first_order_equals_the_hand_written_first_order_objective():
    """RMSProp with a learnable beta: ``theta_hat = theta - sum_t alpha g_t / sqrt(rms_t + eps)`` with
    every ``g_t`` a constant; beta keeps its gradient through ``rms_t``."""
    editable, x, y, x_edit, y_edit = problem = setup(RMSProp(lr=0.002, beta=0.6, learnable=True))
    got = gradients(*problem, "first_order")
    editor, middle = editable.editor, editable.module.middle
    theta = (middle.weight, middle.bias)
    point, steps, rms = [t.detach() for t in theta], [0.0, 0.0], None
    for t in range(K):
        g = edit_gradients(editable, x_edit, y_edit, point)
        rms = [gi * gi for gi in g] if t == 0 else [editor.beta() * r + (1 - editor.beta()) * gi * gi
                                                     for r, gi in zip(rms, g)]
        update = [editor.lr() * gi / torch.sqrt(r + editor.eps) for gi, r in zip(g, rms)]
        steps = [s + u for s, u in zip(steps, update)]
        point = [p - u.detach() for p, u in zip(point, update)]
    assert_same(got, by_hand(editable, x, y, x_edit, y_edit, [p - s for p, s in zip(theta, steps)]))
    assert got[1]["editor.beta.raw"].abs().item() > 0


def test_truncated_differentiates_only_the_last_m_steps():
    """GD, ``k = 3``, ``m = 1``: ``theta_2 = theta - alpha (g_0 + g_1)`` with constant ``g``, then one exact step."""
    editable, x, y, x_edit, y_edit = problem = setup(GradientDescent(lr=0.05))
    got = gradients(*problem, "truncated:1")
    theta, alpha = (editable.module.middle.weight, editable.module.middle.bias), editable.editor.lr().item()
    point = [t.detach() for t in theta]
    for _ in range(K - 1):
        point = [p - alpha * g for p, g in zip(point, edit_gradients(editable, x_edit, y_edit, point))]
    theta_2 = [t - (t.detach() - p) for t, p in zip(theta, point)]
    m = editable.module
    l_e = classification_constraint(m.out(torch.tanh(F.linear(torch.tanh(m.hidden(x_edit)), *theta_2))), y_edit)
    g_2 = torch.autograd.grad(l_e.clamp_min(0).sum(), theta_2, create_graph=True)
    assert_same(got, by_hand(editable, x, y, x_edit, y_edit, [t - alpha * g for t, g in zip(theta_2, g_2)]))
    # and it is neither the exact gradient nor the first-order one
    for other in ("full", "first_order"):
        assert not torch.allclose(got[1]["module.hidden.weight"], gradients(*problem, other)[1]["module.hidden.weight"])


def test_every_mode_edits_to_the_same_values():
    editable, x, y, x_edit, y_edit = setup(RMSProp(lr=0.002, beta=0.6, learnable=True))
    results = {mode: editable.edit(x_edit, y_edit, create_graph=True, backprop=mode)
               for mode in ("full", "truncated:1", "truncated:2", "first_order")}
    for result in results.values():
        assert result.steps == K
        torch.testing.assert_close(result.l_e, results["full"].l_e, rtol=0, atol=1e-12)
        for name, value in result.params.items():
            torch.testing.assert_close(value, results["full"].params[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad", ["", "truncated", "truncated:0", "truncated:-1", "truncated:x", "first-order",
                                 "Full", 2, None])
def test_unknown_backprop_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="backprop must be 'full', 'first_order' or 'truncated:m'"):
        parse_backprop(bad)
    editable, x, y, x_edit, y_edit = setup(GradientDescent(lr=0.05))
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(").replace(")", r"\)")):
        editable_training_loss(editable, x, y, x_edit, y_edit, c_edit=1.0, c_loc=1.0, backprop=bad)


def test_parse_backprop_counts_exact_steps():
    assert parse_backprop("full") is None
    assert parse_backprop("first_order") == 0
    assert parse_backprop("truncated:4") == 4
