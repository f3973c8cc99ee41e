"""The editable_cross_entropy criterion in-process: equation (2), gradients, validation, state, metrics."""
from __future__ import annotations

import math

import pytest
import torch
from fairseq.logging import metrics

from editable_fairseq.criterions.editable_cross_entropy import EditableCrossEntropyCriterion
from editable_fairseq.edit_samples import write_edit_samples

from .conftest import make_toy_task
from .test_editing import losing_edits

KEYS = {"loss", "nll_loss", "objective", "l_edit", "l_loc", "edit_success", "edit_steps", "edits", "editor_beta"}


@pytest.fixture
def editable(fresh_toy, tmp_path):
    """(task with an edit TSV of needed edits, trained model copy, criterion, a training batch)."""
    path = tmp_path / "edits.tsv"
    write_edit_samples(str(path), losing_edits(fresh_toy, count=3), fresh_toy.task.src_dict, fresh_toy.task.tgt_dict)
    task = make_toy_task(edit_samples=str(path))
    task.prepare_edits()
    criterion = EditableCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    return task, fresh_toy.model, criterion, fresh_toy.batch(fresh_toy.pairs[100:140])


def test_training_loss_is_base_plus_weighted_edit_and_locality_terms(editable):
    task, model, criterion, sample = editable
    model.train()
    total, sample_size, log = criterion(model, sample)
    assert KEYS <= set(log) and sample_size == sample["ntokens"]
    assert log["edit_steps"] >= 1 and log["edit_success"] == 1.0 and log["l_loc"] > 0
    expected = log["loss"].item() + 100 * log["l_edit"] + 100 * log["l_loc"]  # the edit terms once per batch
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert log["editor_beta"] == pytest.approx(0.5)


def test_edit_terms_weigh_c_over_sample_size_per_token(fresh_toy, tmp_path):
    """As the paper's criterion: the same batch twice over halves the per-token weight of the edit terms."""
    path = tmp_path / "edit.tsv"
    write_edit_samples(str(path), losing_edits(fresh_toy, count=1), fresh_toy.task.src_dict, fresh_toy.task.tgt_dict)
    task = make_toy_task(edit_samples=str(path))
    criterion = EditableCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    fresh_toy.model.eval()  # no dropout: the base loss per token is the same for both batches

    def per_token(pairs):
        total, sample_size, log = criterion(fresh_toy.model, fresh_toy.batch(pairs))
        return total.item() / sample_size, log["loss"].item() / sample_size, log

    once, base_once, log = per_token(fresh_toy.pairs[100:140])
    twice, base_twice, log_twice = per_token(fresh_toy.pairs[100:140] * 2)
    assert log["edit_steps"] >= 1 and log["l_loc"] > 0
    assert (log_twice["l_edit"], log_twice["l_loc"]) == pytest.approx((log["l_edit"], log["l_loc"]), rel=1e-5)
    assert base_twice == pytest.approx(base_once, rel=1e-5)
    assert twice - base_twice == pytest.approx((once - base_once) / 2, rel=1e-4)


def test_an_edit_margin_no_edit_reaches_makes_every_edit_take_k_steps(editable):
    task, model, _, sample = editable
    forced = EditableCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1, edit_max_steps=3,
                                           edit_margin=1e6)
    model.eval()
    _, _, log = forced(model, sample)
    assert log["edit_steps"] == 3 and log["edit_success"] == 0.0


def test_edit_terms_train_the_encoder_and_the_editor(editable):
    task, model, criterion, sample = editable
    model.train()

    def grads(c_edit: float, c_loc: float):
        criterion.edit_coef, criterion.loc_coef = c_edit, c_loc
        model.zero_grad()
        criterion.zero_grad()
        torch.manual_seed(0)
        total, _, _ = criterion(model, sample)
        total.backward()
        beta = criterion.editor.beta.raw.grad
        return model.encoder.layers[0].fc1.weight.grad.clone(), None if beta is None else beta.clone()

    plain_encoder, plain_beta = grads(0.0, 0.0)
    edit_encoder, edit_beta = grads(100.0, 100.0)
    assert plain_beta is not None and plain_beta.abs().sum() == 0  # in the graph (for DDP), but no effect
    assert edit_beta.abs().sum() > 0
    assert not torch.allclose(plain_encoder, edit_encoder)


def test_cheaper_backprop_modes_give_the_same_objective_and_still_train_the_encoder(editable):
    """--edit-backprop first_order / truncated:1 change only the gradient: same edit, same objective value."""
    task, model, criterion, sample = editable
    model.train()

    def run(mode: str):
        criterion.edit_backprop = mode
        model.zero_grad()
        criterion.zero_grad()
        torch.manual_seed(0)
        total, _, log = criterion(model, sample)
        total.backward()
        return total.item(), log["edit_steps"], model.encoder.layers[0].fc1.weight.grad.clone()

    full = run("full")
    assert full[1] >= 2  # truncated:1 then differs from the exact gradient
    for mode in ("first_order", "truncated:1"):
        total, steps, encoder = run(mode)
        assert total == pytest.approx(full[0], rel=1e-6) and steps == full[1]
        assert encoder.abs().sum() > 0 and not torch.allclose(encoder, full[2])
        assert criterion.editor.beta.raw.grad.abs().sum() > 0


def test_a_no_op_edit_has_exactly_zero_locality_loss(editable, fresh_toy):
    task, model, criterion, sample = editable
    from editable_fairseq.generation import beam_alternatives

    source = fresh_toy.encode_source(fresh_toy.pairs[0][0])
    beams = beam_alternatives([model], task.tgt_dict, [source], 8)[0]
    from editable_fairseq.edit_samples import EditSample

    task._edit_pool = [EditSample(source, beams[0], tuple(beams[1:]))]  # already satisfied: no step
    model.train()
    total, _, log = criterion(model, sample)
    assert log["edit_steps"] == 0 and log["l_loc"] == 0.0 and log["l_edit"] == 0.0


def test_eval_loc_mode_compares_the_eval_mode_edited_model_with_the_training_mode_reference(editable, fresh_toy):
    """``--loc-mode eval`` (the authors' criterion): ``L_loc = KL(p_train || p_eval(theta_hat))`` over the tokens."""
    from editable_core import eval_mode, locality_kl
    from editable_fairseq.editing import apply_translation_edit, edit_translation

    task, model, _, sample = editable
    criterion = EditableCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1, loc_mode="eval")
    model.train()
    torch.manual_seed(3)
    total, _, log = criterion(model, sample)
    total.backward()  # reaches the encoder through the eval-mode pass too
    assert log["edit_steps"] >= 1 and model.encoder.embed_tokens.weight.grad.abs().sum() > 0
    torch.manual_seed(3)  # the same dropout masks for the reference
    reference = model(**sample["net_input"])[0]
    edit = task.edit_sample_for(sample, training=True)
    result = edit_translation(model, edit, criterion.editor, part="last", max_steps=10)
    with eval_mode(model), torch.no_grad(), apply_translation_edit(model, result.params, "last"):
        edited = model(**sample["net_input"])[0]
    mask = sample["target"].ne(task.tgt_dict.pad())
    assert log["l_loc"] == pytest.approx(locality_kl(reference, edited, mask).item(), rel=1e-4)


def test_validation_edits_without_a_graph_and_logs_the_same_metrics(editable):
    task, model, criterion, sample = editable
    model.eval()
    with torch.no_grad():
        total, _, log = criterion(model, sample)
        again = criterion(model, sample)[2]
    assert KEYS <= set(log) and not total.requires_grad
    assert log["edit_steps"] >= 1 and log["l_loc"] > 0
    assert log["l_loc"] == again["l_loc"] and log["edit_steps"] == again["edit_steps"]  # same edit each time


def test_edits_are_chosen_deterministically_by_seed_update_and_batch(editable, fresh_toy):
    task = editable[0]
    batch_a, batch_b = fresh_toy.batch(fresh_toy.pairs[:8]), fresh_toy.batch(fresh_toy.pairs[8:16])
    batch_b["id"] += 8
    picks = {}
    for update in range(6):
        task._update_num = update
        picks[update] = task.edit_sample_for(batch_a, training=True)
        assert task.edit_sample_for(batch_a, training=True) is picks[update]
    assert len({id(p) for p in picks.values()}) > 1  # not one edit for every update
    task._update_num = 3
    valid = task.edit_sample_for(batch_b, training=False)
    task._update_num = 5
    assert task.edit_sample_for(batch_b, training=False) is valid


def test_learned_hyper_parameters_are_restored_fixed_ones_follow_the_flags(editable):
    task, _, criterion, _ = editable
    state = {"editor.lr.raw": torch.tensor(math.log(0.5)), "editor.beta.raw": torch.tensor([2.0])}
    criterion.load_state_dict(state)
    assert criterion.editor.beta().item() == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert criterion.editor.lr().item() == pytest.approx(1e-3)  # --edit-lr, not the saved value
    criterion.load_state_dict(None)  # e.g. a baseline checkpoint restored for editable fine-tuning
    with pytest.raises(RuntimeError, match="Unexpected key"):
        criterion.load_state_dict({**state, "editor.mu.raw": torch.tensor(0.0)})


def test_reduce_metrics_logs_edit_metrics_per_edit(editable):
    logs = [{"loss": 10.0, "nll_loss": 8.0, "ntokens": 10, "nsentences": 2, "sample_size": 10, "objective": 20.0,
             "edits": 1, "edit_success": s, "edit_steps": st, "l_edit": le, "l_loc": ll, "editor_beta": 0.5}
            for s, st, le, ll in [(1.0, 3.0, 0.0, 0.01), (0.0, 10.0, 0.4, 0.03)]]
    with metrics.aggregate() as agg:
        EditableCrossEntropyCriterion.reduce_metrics(logs)
        values = agg.get_smoothed_values()
    assert values["edit_success"] == 0.5 and values["edit_steps"] == 6.5
    assert values["l_edit"] == pytest.approx(0.2) and values["l_loc"] == pytest.approx(0.02)
    assert values["objective"] == pytest.approx(40 / 20 / math.log(2), abs=1e-3)
    assert values["editor_beta"] == 0.5 and "ppl" in values


def test_bad_configuration_is_a_clear_error(editable):
    task = editable[0]
    with pytest.raises(ValueError, match="--edit-max-steps"):
        EditableCrossEntropyCriterion(task, False, 0.1, edit_max_steps=0)
    with pytest.raises(ValueError, match="--edit-backprop: backprop must be 'full'.*got 'truncated:0'"):
        EditableCrossEntropyCriterion(task, False, 0.1, edit_backprop="truncated:0")
    with pytest.raises(ValueError, match="--loc-coef must be >= 0"):
        EditableCrossEntropyCriterion(task, False, 0.1, loc_coef=-1.0)
    with pytest.raises(ValueError, match="--loc-mode must be one of"):
        EditableCrossEntropyCriterion(task, False, 0.1, loc_mode="train")
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    plain_task = TranslationTask(TranslationConfig(), task.src_dict, task.tgt_dict)
    with pytest.raises(ValueError, match="needs --task editable_translation"):
        EditableCrossEntropyCriterion(plain_task, False, 0.1)
    no_edits = make_toy_task()
    with pytest.raises(ValueError, match="needs edits: pass --edit-samples PATH"):
        no_edits.prepare_edits()
