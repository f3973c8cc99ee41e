"""The decoder cut at its editable part: exact logits, shared modules, captured replays, run counts."""
from __future__ import annotations

import pytest
import torch

from editable_core import RMSProp
from editable_fairseq.decoder_split import DecoderSplit, split_for
from editable_fairseq.edit_samples import EditSample, collate_edit
from editable_fairseq.editing import edit_translation

from .conftest import build_tiny_model, make_toy_task


def edit_batch(setup, source: str, targets: list[str]):
    sample = EditSample(setup.encode_source(source), setup.encode_target(targets[0]),
                        tuple(setup.encode_target(t) for t in targets[1:]))
    return sample, collate_edit(sample, setup.task.tgt_dict.pad(), setup.task.tgt_dict.eos())


TARGETS = ["i sees the dog .", "i sees a dog .", "you see .", "the dog sees me here today ."]


@pytest.mark.parametrize("part", ["last", "penultimate", "output"])
def test_suffix_on_the_prefix_gives_the_models_own_logits(trained_toy, part):
    model = trained_toy.model.eval()
    _, batch = edit_batch(trained_toy, "ich hund sieht .", TARGETS)
    split = DecoderSplit(model, part)
    with torch.no_grad():
        logits = split.run_suffix(split.prefix(batch.src_tokens, batch.src_lengths, batch.prev_output_tokens))
        n = batch.num_sequences
        reference, _ = model(batch.src_tokens.expand(n, -1), batch.src_lengths.expand(n), batch.prev_output_tokens)
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("part", ["last", "penultimate", "output"])
def test_selected_rows_cut_to_their_length_give_the_same_logits(trained_toy, part):
    model = trained_toy.model.eval()
    _, batch = edit_batch(trained_toy, "ich hund sieht .", TARGETS)
    split = DecoderSplit(model, part)
    with torch.no_grad():
        state = split.prefix(batch.src_tokens, batch.src_lengths, batch.prev_output_tokens)
        full = split.run_suffix(state)
        rows = torch.tensor([0, 2])
        part_logits = split.run_suffix(state.select(rows, length=6))
    torch.testing.assert_close(part_logits, full[rows, :6], rtol=1e-5, atol=1e-5)


def test_replaying_a_training_capture_redraws_the_same_dropout_masks(fresh_toy):
    model = fresh_toy.model.train()
    sample = fresh_toy.batch(fresh_toy.pairs[:16])
    split = split_for(model, "last")
    with split.capture(record_rng=True) as captured:
        logits, _ = model(**sample["net_input"])
    replayed = split.run_suffix(captured, dict(split.editable_parameters()))
    assert torch.equal(replayed, logits)  # bit for bit: L_loc is exactly 0 for a no-op edit
    captured.rng = None
    assert not torch.equal(split.run_suffix(captured), logits)  # dropout is on: the replay is not trivial


def test_the_suffix_shares_the_decoders_modules_and_adds_no_parameters(trained_toy):
    model = trained_toy.model
    count = sum(1 for _ in model.parameters())
    state_keys = set(model.state_dict())
    split = split_for(model, "penultimate")
    assert split is split_for(model, "penultimate")
    assert split.suffix.layers[0] is model.decoder.layers[-2] and split.suffix.layers[1] is model.decoder.layers[-1]
    assert split.suffix.output_projection is model.decoder.output_projection
    named = dict(model.named_parameters())
    assert all(p is named[split.model_names[n]] for n, p in split.editable_parameters().items())
    assert all(name.startswith("decoder.layers.0.") for name in split.model_names.values())
    assert sum(1 for _ in model.parameters()) == count and set(model.state_dict()) == state_keys


def test_encoder_and_lower_layers_run_once_per_edit_not_once_per_step(trained_toy):
    model = trained_toy.model.eval()
    sample, _ = edit_batch(trained_toy, "ich hund sieht .", TARGETS)
    calls = {"encoder": 0, "lower": 0, "editable": 0}
    hooks = [model.encoder.register_forward_hook(lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1)),
             model.decoder.layers[0].register_forward_hook(lambda *a: calls.__setitem__("lower", calls["lower"] + 1)),
             model.decoder.layers[1].register_forward_hook(
                 lambda *a: calls.__setitem__("editable", calls["editable"] + 1))]
    try:
        # a huge margin keeps l_e > 0: all k steps are taken, for training (graph) and inference edits
        for create_graph in (False, True):
            calls.update(encoder=0, lower=0, editable=0)
            result = edit_translation(model, sample, RMSProp(learnable=True), max_steps=7, margin=1e4,
                                      create_graph=create_graph)
            assert result.steps == 7 and not result.success
            # 8 evaluations of l_e, each: all rows without a graph, then target + best alternative
            assert calls == {"encoder": 1, "lower": 1, "editable": 16}
    finally:
        for h in hooks:
            h.remove()


def test_unsupported_cuts_are_clear_errors():
    task = make_toy_task()
    tied = build_tiny_model(task, share_decoder_input_output_embed=True)
    with pytest.raises(ValueError, match="tied to the decoder input embeddings"):
        DecoderSplit(tied, "output")
    DecoderSplit(tied, "last")  # editing a layer of a tied model is fine
    with pytest.raises(ValueError, match="needs at least 2 decoder layers, the model has 1"):
        DecoderSplit(build_tiny_model(task, decoder_layers=1), "penultimate")
    with pytest.raises(ValueError, match="must be one of"):
        DecoderSplit(tied, "first")
    with pytest.raises(ValueError, match="decoder_layerdrop"):
        DecoderSplit(build_tiny_model(task, decoder_layerdrop=0.1), "last")
