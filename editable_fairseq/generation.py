"""Making edits with a baseline model (section 4.4): ``k`` alternatives by beam search, a target by sampling.

"we approximate this by finding k=32 most likely translations with beam search using the Transformer
model trained normally on the same data. The edit targets are sampled from the same model by sampling
with temperature tau=1.2." Shared by the task's ``--edit-baseline`` (edits made on the fly) and by
tools that write edit TSV files.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .edit_samples import EditSample

DEFAULT_ALTERNATIVES = 32
DEFAULT_TEMPERATURE = 1.2


def _source_batch(sources: Sequence[Tensor], pad: int, eos: int, device: torch.device) -> dict:
    from fairseq.data import data_utils

    src_tokens = data_utils.collate_tokens(list(sources), pad, eos, left_pad=True).to(device)
    src_lengths = torch.tensor([s.numel() for s in sources], device=device)
    return {"net_input": {"src_tokens": src_tokens, "src_lengths": src_lengths}}


def _generate(models: Sequence[nn.Module], tgt_dict, sources: Sequence[Tensor], *, beam: int, nbest: int,
              sampling: bool, temperature: float, max_len_a: float, max_len_b: int, seed: Optional[int],
              src_pad: int) -> list[list[Tensor]]:
    from fairseq import search
    from fairseq.sequence_generator import SequenceGenerator

    if not sources:
        return []
    for model in models:
        model.eval()
    strategy = search.Sampling(tgt_dict) if sampling else None
    generator = SequenceGenerator(list(models), tgt_dict, beam_size=beam, max_len_a=max_len_a,
                                  max_len_b=max_len_b, temperature=temperature, search_strategy=strategy)
    device = next(models[0].parameters()).device
    sample = _source_batch(sources, src_pad, tgt_dict.eos(), device)
    devices = [device] if device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        hypos = generator.generate(list(models), sample)
    return [[h["tokens"].long().cpu() for h in sentence[:nbest]] for sentence in hypos]


def beam_alternatives(models: Sequence[nn.Module], tgt_dict, sources: Sequence[Tensor],
                      num_alternatives: int = DEFAULT_ALTERNATIVES, *, max_len_a: float = 1.2,
                      max_len_b: int = 10, src_pad: Optional[int] = None) -> list[list[Tensor]]:
    """The ``num_alternatives`` best translations of each source by beam search (beam = n-best = k)."""
    if num_alternatives < 1:
        raise ValueError(f"num_alternatives must be >= 1, got {num_alternatives}")
    beam = min(num_alternatives, len(tgt_dict) - 1)
    return _generate(models, tgt_dict, sources, beam=beam, nbest=num_alternatives, sampling=False,
                     temperature=1.0, max_len_a=max_len_a, max_len_b=max_len_b, seed=None,
                     src_pad=tgt_dict.pad() if src_pad is None else src_pad)


def sampled_targets(models: Sequence[nn.Module], tgt_dict, sources: Sequence[Tensor],
                    temperature: float = DEFAULT_TEMPERATURE, *, seed: Optional[int] = None,
                    max_len_a: float = 1.2, max_len_b: int = 10, src_pad: Optional[int] = None) -> list[Tensor]:
    """One translation of each source sampled at ``temperature`` (seeded: reproducible, RNG restored)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    out = _generate(models, tgt_dict, sources, beam=1, nbest=1, sampling=True, temperature=temperature,
                    max_len_a=max_len_a, max_len_b=max_len_b, seed=seed,
                    src_pad=tgt_dict.pad() if src_pad is None else src_pad)
    return [hypos[0] for hypos in out]


def make_edit_samples(models: Sequence[nn.Module], tgt_dict, sources: Sequence[Tensor], *,
                      num_alternatives: int = DEFAULT_ALTERNATIVES, temperature: float = DEFAULT_TEMPERATURE,
                      seed: Optional[int] = None, src_pad: Optional[int] = None) -> list[EditSample]:
    """Edits ``(s, y_0 ~ p(.|s)^(1/tau), beam-search top-k)`` for each source ``s`` (1-d, ending in eos).

    Alternatives identical to the sampled target are dropped; if nothing else is left (a one-hypothesis
    beam), the edit keeps them all, and is then satisfied exactly when ``y_0`` is the most likely.
    """
    sources = [s.long().cpu() for s in sources]
    alternatives = beam_alternatives(models, tgt_dict, sources, num_alternatives, src_pad=src_pad)
    targets = sampled_targets(models, tgt_dict, sources, temperature, seed=seed, src_pad=src_pad)
    samples = []
    for source, target, alts in zip(sources, targets, alternatives):
        kept = [a for a in alts if not torch.equal(a, target)] or alts
        samples.append(EditSample(source, target, tuple(kept)))
    return samples
