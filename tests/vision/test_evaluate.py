"""Evaluation: the reported numbers agree with a direct re-computation (full forward passes of the
edited model, no cached features), for independent edits, sweeps and the sequential curve."""
from __future__ import annotations

import pytest
import torch

from editable_core import ControlSet, apply_edit, make_editor
from editable_vision.data import stack
from editable_vision.evaluate import (best_rows, evaluate, generalisation, make_edit_set, random_edit_set,
                                      sequential_curves, sweep, with_editor)
from editable_vision.targets import match_rank_targets, rank_distribution, true_class_ranks


def full_error(editable, images, labels) -> float:
    """Test error with a plain forward of the whole module (eval mode)."""
    editable.module.eval()
    with torch.no_grad():
        return (editable.module(images).argmax(-1) != labels).float().mean().item()


@pytest.fixture(scope="module")
def control(digits):
    return stack(digits.test, limit=120)


def test_independent_edits_agree_with_direct_computation(trained, control):
    images, labels = control
    edits = make_edit_set(trained, images, 6, seed=3)
    assert len(set(edits.indices.tolist())) == 6 and torch.equal(edits.images, images[edits.indices])
    metrics = evaluate(trained, ControlSet(trained, images, labels), edits, progress=False)

    base = full_error(trained, images, labels)
    errors, successes, steps = [], [], []
    for image, target in zip(edits.images, edits.targets):
        result = trained.edit(image, int(target))
        with apply_edit(trained.module, result.params):
            errors.append(full_error(trained, images, labels))
            successes.append(int(trained.module(image[None]).argmax()) == int(target))
        steps.append(result.steps)
    assert metrics.num_edits == 6
    assert metrics.base_error == pytest.approx(base, abs=1e-6)
    assert metrics.mean_edited_error == pytest.approx(sum(errors) / 6, abs=1e-6)
    assert metrics.drawdown == pytest.approx(sum(abs(e - base) for e in errors) / 6, abs=1e-6)
    assert metrics.success_rate == pytest.approx(sum(successes) / 6)
    assert metrics.mean_steps == pytest.approx(sum(steps) / 6)
    assert metrics.drawdown > 0  # edits of a plainly trained model do cost accuracy


def test_sweep_rows_and_tuning_rule(trained, control):
    images, labels = control
    edits = make_edit_set(trained, images, 4, seed=1)
    rows = sweep(trained, images, labels, edits, editors=("gd", "rmsprop"), parts=("chain3", "all"),
                 lrs={"gd": (1e-2, 1e-1), "rmsprop": (1e-3, 1e-2)}, progress=False)
    assert [(r.editor, r.lr, r.part) for r in rows] == [
        ("gd", 1e-2, "chain3"), ("gd", 1e-1, "chain3"), ("rmsprop", 1e-3, "chain3"), ("rmsprop", 1e-2, "chain3"),
        ("gd", 1e-2, "all"), ("gd", 1e-1, "all"), ("rmsprop", 1e-3, "all"), ("rmsprop", 1e-2, "all")]
    # each row is what a fresh evaluation with that editor, lr and part gives
    row = rows[3]
    again = with_editor(trained, make_editor("rmsprop", 1e-2), "chain3")
    direct = evaluate(again, ControlSet(again, images, labels), edits, progress=False)
    assert row.metrics == direct
    best = best_rows(rows, lambda r: (r.editor,), min_success=0.5)
    for (name,), chosen in best.items():
        members = [r for r in rows if r.editor == name]
        ok = [r for r in members if r.metrics.success_rate >= 0.5]
        assert chosen.metrics.drawdown == min(r.metrics.drawdown for r in ok) if ok else True
    with pytest.raises(ValueError, match="unknown part 'chain7'"):
        sweep(trained, images, labels, edits, parts=("chain7",), progress=False)


def test_sequential_curve_agrees_with_applying_edits_in_turn(trained, control):
    images, labels = control
    curves = sequential_curves(trained, images, labels, 3, runs=2, seed=4, progress=False)
    assert len(curves) == 2 and all(len(c) == 4 for c in curves)
    edits = make_edit_set(trained, images, 3, seed=4 + 1000)  # the second run's edits
    expected = [full_error(trained, images, labels)]
    applied = []
    try:
        for image, target in zip(edits.images, edits.targets):
            result = trained.edit(image, int(target))
            applied.append(trained.apply(result))  # edit the edited model in place, one after another
            expected.append(full_error(trained, images, labels))
    finally:
        for handle in reversed(applied):
            handle.undo()
    assert curves[1] == pytest.approx(expected, abs=1e-6)


def test_generalisation_and_match_ranks(trained, control, digits):
    images, labels = control
    edits = make_edit_set(trained, images, 3, seed=2)
    result = generalisation(trained, images, edits, digits.augment, num_augmentations=3, progress=False)
    assert result.num_pairs == 3 and 0 <= result.accuracy <= 1 and 0 <= result.success_rate <= 1
    # match ranks: the target is the class the model ranks r-th, r drawn from the true classes' ranks
    logits = trained.logits(images)
    probs = rank_distribution(logits, labels, smoothing=0.5)
    assert probs.shape == (10,) and probs[0] == 0 and probs.sum().item() == pytest.approx(1)
    targets = match_rank_targets(logits, probs, torch.Generator().manual_seed(0))
    ranks = true_class_ranks(logits, targets)
    assert (ranks >= 1).all()
    ranked = make_edit_set(trained, images, 5, targets="match-ranks", rank_probs=probs, seed=0)
    assert (true_class_ranks(trained.logits(ranked.images), ranked.targets) >= 1).all()
    with pytest.raises(ValueError, match="num_edits must be in 1..120"):
        make_edit_set(trained, images, 500)
    with pytest.raises(ValueError, match="need a rank distribution"):
        make_edit_set(trained, images, 2, targets="match-ranks")


def test_random_edit_sets_need_no_model_and_match_the_models_own(trained, control):
    images, _ = control
    alone = random_edit_set(images, trained.num_classes, 7, seed=5)
    drawn = make_edit_set(trained, images, 7, seed=5)
    assert torch.equal(alone.indices, drawn.indices) and torch.equal(alone.targets, drawn.targets)
    assert torch.equal(alone.images, images[alone.indices]) and int(alone.targets.max()) < trained.num_classes
    with pytest.raises(ValueError, match="num_edits must be in 1..120"):
        random_edit_set(images, 10, 0)
