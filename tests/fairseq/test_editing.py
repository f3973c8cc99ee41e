"""Edits through the plugin on a small trained Transformer (section 4.4's l_e), and their gradients."""
from __future__ import annotations

import pytest
import torch

from editable_core import RMSProp, make_editor, sequence_constraint
from editable_fairseq.decoder_split import split_for
from editable_fairseq.edit_samples import EditSample, collate_edit
from editable_fairseq.editing import (HYPER_SHAPE, apply_translation_edit, edit_translation, editor_from_checkpoint,
                                      score_sequences, sequence_scores, translation_constraint)
from editable_fairseq.generation import beam_alternatives


def losing_edits(setup, count: int = 4, k: int = 32, rank: int = 5) -> list[EditSample]:
    """Edits whose target is the model's rank-th beam hypothesis and alternatives are the other k-1."""
    samples = []
    for source_text, _ in setup.pairs[:count]:
        source = setup.encode_source(source_text)
        beams = beam_alternatives([setup.model], setup.task.tgt_dict, [source], k)[0]
        samples.append(EditSample(source, beams[rank], tuple(beams[:rank] + beams[rank + 1:])))
    return samples


@pytest.mark.parametrize("part, lr", [("last", 1e-3), ("penultimate", 1e-3), ("output", 1e-2)])
def test_one_edit_makes_the_target_outscore_every_alternative(fresh_toy, part, lr):
    model = fresh_toy.model.eval()
    for sample in losing_edits(fresh_toy):
        before = score_sequences(model, sample)
        assert len(sample.alternatives) == 31 and (before[1:] > before[0]).any(), "the edit must be needed"
        editor = make_editor("rmsprop", lr, "auto", shape=HYPER_SHAPE)
        result = edit_translation(model, sample, editor, part=part, max_steps=10)
        assert result.success and 1 <= result.steps <= 10 and result.l_e.item() <= 0
        with apply_translation_edit(model, result.params, part=part):
            after = score_sequences(model, sample)  # the model's ordinary forward, not the suffix path
        assert (after[0] > after[1:]).all(), f"target {after[0]:.4f} vs best alternative {after[1:].max():.4f}"
        torch.testing.assert_close(score_sequences(model, sample), before)  # undone exactly


def test_a_satisfied_edit_takes_no_step_and_returns_the_parameters(trained_toy):
    model = trained_toy.model.eval()
    source = trained_toy.encode_source(trained_toy.pairs[0][0])
    beams = beam_alternatives([model], trained_toy.task.tgt_dict, [source], 8)[0]
    result = edit_translation(model, EditSample(source, beams[0], tuple(beams[1:])), RMSProp())
    assert result.success and result.steps == 0
    assert all(torch.equal(p, q) for p, q in zip(result.params.values(),
                                                    split_for(model, "last").editable_parameters().values()))


def test_pairwise_constraint_equals_the_max_over_all_alternatives_with_the_same_gradient(trained_toy):
    model = trained_toy.model.eval()
    sample = losing_edits(trained_toy, count=1)[0]
    batch = collate_edit(sample, trained_toy.task.tgt_dict.pad(), trained_toy.task.tgt_dict.eos())
    split = split_for(model, "last")
    state = split.prefix(batch.src_tokens, batch.src_lengths, batch.prev_output_tokens)
    params = {k: p.detach().clone().requires_grad_() for k, p in split.editable_parameters().items()}
    pairwise = translation_constraint(split, state, batch)(params)
    scores = sequence_scores(split.run_suffix(state, params), batch.target, batch.pad)
    full = sequence_constraint(scores[:1], scores[None, 1:])
    torch.testing.assert_close(pairwise, full, rtol=1e-5, atol=1e-6)
    g_pair = torch.autograd.grad(pairwise.sum(), list(params.values()))
    g_full = torch.autograd.grad(full.sum(), list(params.values()))
    for a, b in zip(g_pair, g_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_gradient_reaches_encoder_and_editor_through_the_edit(fresh_toy):
    model = fresh_toy.model.eval()
    sample = losing_edits(fresh_toy, count=1)[0]
    editor = make_editor("rmsprop", 1e-3, "auto", shape=HYPER_SHAPE)  # beta learnable
    result = edit_translation(model, sample, editor, max_steps=10, create_graph=True)
    assert result.steps >= 2
    # the edited parameters are a differentiable function of the encoder (through l_e's gradients) ...
    probe = sum((p * torch.randn_like(p)).sum() for p in result.params.values())
    encoder_weight = model.encoder.layers[0].fc1.weight
    g_encoder, g_beta = torch.autograd.grad(probe, [encoder_weight, editor.beta.raw])
    assert g_encoder.abs().sum() > 0 and g_beta.abs().sum() > 0
    # ... while a no-graph inference edit gives the same parameters but no graph
    plain = edit_translation(model, sample, editor, max_steps=10)
    assert plain.steps == result.steps and not any(p.requires_grad for p in plain.params.values())
    for k in plain.params:
        torch.testing.assert_close(plain.params[k], result.params[k].detach(), rtol=1e-4, atol=1e-6)


def test_editor_hyper_parameters_can_be_restored_from_a_checkpoint_state():
    editor = make_editor("rmsprop", 3e-4, "auto", shape=HYPER_SHAPE)
    with torch.no_grad():
        editor.beta.raw.fill_(1.25)
    state = {"cfg": {"criterion": {"_name": "editable_cross_entropy", "editor": "rmsprop", "edit_lr": 3e-4,
                                   "edit_learnable": "auto"}},
             "criterion": {f"editor.{k}": v for k, v in editor.state_dict().items()}}
    restored, cfg = editor_from_checkpoint(state)
    assert restored.beta().item() == pytest.approx(editor.beta().item())
    assert restored.lr().item() == pytest.approx(3e-4) and cfg["edit_lr"] == 3e-4
    with pytest.raises(ValueError, match="not trained with the criterion editable_cross_entropy"):
        editor_from_checkpoint({"cfg": {"criterion": {"_name": "label_smoothed_cross_entropy"}}})


def test_plugin_editors_store_hyper_parameters_as_one_element_vectors():
    editor = make_editor("rmsprop", 1e-3, "auto", shape=HYPER_SHAPE)
    assert [(n, tuple(p.shape)) for n, p in editor.named_parameters()] == [("beta.raw", (1,))]
    assert editor.beta().shape == () and editor.lr().shape == ()
