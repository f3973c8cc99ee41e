"""Edits made by a baseline: k alternatives by beam search, a target sampled at temperature 1.2."""
from __future__ import annotations

import torch

from editable_fairseq.generation import beam_alternatives, make_edit_samples, sampled_targets


def test_beam_gives_k_distinct_alternatives_best_first(trained_toy):
    source = trained_toy.encode_source(trained_toy.pairs[0][0])
    (beams,) = beam_alternatives([trained_toy.model], trained_toy.task.tgt_dict, [source], 12)
    assert len(beams) == 12 and len({tuple(b.tolist()) for b in beams}) == 12
    assert all(b[-1].item() == trained_toy.task.tgt_dict.eos() for b in beams)
    assert trained_toy.task.tgt_dict.string(beams[0]) == trained_toy.pairs[0][1]  # the model learnt the toy task


def test_sampling_is_seeded_and_leaves_the_global_generator_alone(trained_toy):
    sources = [trained_toy.encode_source(s) for s, _ in trained_toy.pairs[:6]]
    model, vocab = [trained_toy.model], trained_toy.task.tgt_dict
    state = torch.get_rng_state()
    a = sampled_targets(model, vocab, sources, 1.2, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = sampled_targets(model, vocab, sources, 1.2, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    hot = [sampled_targets(model, vocab, sources, 5.0, seed=s) for s in range(3)]
    assert len({tuple(t.tolist()) for run in hot for t in run}) > 6, "high temperature samples vary by seed"


def test_edit_samples_keep_the_source_and_drop_the_target_from_the_alternatives(trained_toy):
    sources = [trained_toy.encode_source(s) for s, _ in trained_toy.pairs[:4]]
    samples = make_edit_samples([trained_toy.model], trained_toy.task.tgt_dict, sources, num_alternatives=8,
                                temperature=1.2, seed=1)
    assert len(samples) == 4
    for source, sample in zip(sources, samples):
        assert torch.equal(sample.source, source)
        assert 7 <= len(sample.alternatives) <= 8
        assert not any(torch.equal(a, sample.target) for a in sample.alternatives)
