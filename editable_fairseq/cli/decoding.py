"""Batched beam search over a fixed set of sentences, decoded to raw text and scored with sacrebleu.

The evaluator decodes the same test sentences once per edit, so the batches are built once (length-sorted,
collated by fairseq's ``LanguagePairDataset``) and only ``SequenceGenerator.generate`` runs per edit; and as
an edit of a decoder layer leaves the encoder as it was, each batch's encoder output is computed once and
reused for as long as the encoder's weights are unchanged (an edit of an output projection shared with the
encoder's embeddings changes them, and the encoder runs again).
"""
from __future__ import annotations

import logging
import os
import random
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from ..prepare.text import TextCodec

logger = logging.getLogger(__name__)


def make_generator(model: nn.Module, tgt_dict, beam: int = 5, max_len_a: float = 0.0, max_len_b: int = 200,
                   lenpen: float = 1.0):
    """fairseq's ``SequenceGenerator`` with ``fairseq-generate``'s defaults (beam 5, max length 200)."""
    from fairseq.sequence_generator import SequenceGenerator

    if beam < 1:
        raise ValueError(f"--beam must be >= 1, got {beam}")
    return SequenceGenerator([model], tgt_dict, beam_size=beam, max_len_a=max_len_a, max_len_b=max_len_b,
                             len_penalty=lenpen)


def subset_indices(size: int, count: int = 0, seed: int = 1) -> list[int]:
    """A fixed random subset of ``count`` of ``range(size)`` (all when ``count`` is 0 or >= size), sorted."""
    if count < 0:
        raise ValueError(f"a subset size must be >= 0 (0: all sentences), got {count}")
    if count == 0 or count >= size:
        return list(range(size))
    return sorted(random.Random(seed).sample(range(size), count))


class SentenceBatches:
    """Sentences ``indices`` of a fairseq ``LanguagePairDataset``, pre-collated in length-sorted batches.

    translate(model) -> hypotheses as word-piece strings, in the order of ``indices``.
    """

    def __init__(self, dataset, indices: Sequence[int], batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        self.indices = list(indices)
        self.encoded: dict[int, tuple[tuple, Any]] = {}  # batch -> (encoder weights' versions, encoder output)
        order = sorted(range(len(self.indices)), key=lambda j: dataset.src_sizes[self.indices[j]])
        self.batches = []
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            sample = dataset.collater([dataset[self.indices[j]] for j in chunk])
            position = {self.indices[j]: j for j in chunk}  # the collater re-sorts rows; "id" says which is which
            self.batches.append(([position[int(i)] for i in sample["id"]], sample))

    def __len__(self) -> int:
        return len(self.indices)

    @torch.no_grad()
    def translate(self, generator, tgt_dict) -> list[str]:
        """Beam-search every sentence; returns the best hypothesis of each as word-pieces (BPE kept)."""
        out: list[Optional[str]] = [None] * len(self.indices)
        for batch, (chunk, sample) in enumerate(self.batches):
            device = next(generator.model.parameters()).device
            net_input = {k: v.to(device) for k, v in sample["net_input"].items()}
            with encoder_output_reused(generator.model, self.encoded, batch):
                hypos = generator.generate(generator.model.models, {"net_input": net_input})
            for j, sentence in zip(chunk, hypos):
                out[j] = tgt_dict.string(sentence[0]["tokens"].int().cpu())
        return out  # type: ignore[return-value]


def encoder_weights_version(ensemble) -> tuple:
    """Changes whenever an encoder weight of ``ensemble`` (fairseq's ``EnsembleModel``) is replaced or written
    in place (each tensor's ``_version`` counts its in-place writes)."""
    return tuple((p.data_ptr(), p._version) for model in ensemble.models for p in model.encoder.parameters())


@contextmanager
def encoder_output_reused(ensemble, cache: dict, key: Any) -> Iterator[None]:
    """Within the block, ``ensemble.forward_encoder`` returns ``cache[key]``'s output while the encoder weights
    are those it was computed with (:func:`encoder_weights_version`), and otherwise computes and stores it."""
    compute = ensemble.forward_encoder
    version = encoder_weights_version(ensemble)

    def forward_encoder(net_input):
        if key not in cache or cache[key][0] != version:
            cache[key] = version, compute(net_input)
        outs = cache[key][1]
        # fairseq's reorder_encoder_out reorders the lists it is given in place: hand out copies of them
        return None if outs is None else [{name: list(value) for name, value in out.items()} for out in outs]

    ensemble.forward_encoder = forward_encoder
    try:
        yield
    finally:
        del ensemble.forward_encoder


@torch.no_grad()
def translate_tokens(generator, source: Tensor) -> Tensor:
    """Best beam hypothesis ``[T]`` (ending in eos) for one source ``[S]`` (ending in eos)."""
    device = next(generator.model.parameters()).device
    sample = {"net_input": {"src_tokens": source[None].to(device),
                            "src_lengths": torch.tensor([source.numel()], device=device)}}
    return generator.generate(generator.model.models, sample)[0][0]["tokens"].long().cpu()


def references(data: str, subset: str, lang: str, dataset, tgt_dict, indices: Sequence[int],
               codec: TextCodec) -> list[str]:
    """Reference sentences of ``indices``: ``data/raw/{subset}.{lang}`` (written by the prepare scripts) after
    :meth:`TextCodec.normalize` (the training text's apostrophes), else the binarized targets with BPE removed
    and detokenised (lowercased, with ``<unk>``)."""
    path = os.path.join(data, "raw", f"{subset}.{lang}")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f]
        if len(lines) != len(dataset):
            raise ValueError(f"{path} has {len(lines)} lines but the binarized {subset} set has {len(dataset)} "
                             "sentences; re-run the prepare script")
        return [codec.normalize(lines[i]) for i in indices]
    logger.warning("no raw references at %s: scoring against the binarized (lowercased) %s targets", path, subset)
    return [codec.decode(tgt_dict.string(dataset.tgt[i])) for i in indices]


def corpus_bleu(hypotheses: Sequence[str], refs: Sequence[str]):
    """sacrebleu's corpus BLEU (13a tokenisation, case-insensitive: the models translate into lowercase) of
    detokenised hypotheses against raw references: its ``BLEUScore`` (``.score``, ``.sys_len``, ``.ref_len``)."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(hypotheses), [list(refs)], lowercase=True)


def sentence_bleus(hypotheses: Sequence[str], refs: Sequence[str]) -> list[float]:
    """sacrebleu's sentence BLEU of each hypothesis against its reference (lowercased, effective order, as
    ``sacrebleu.sentence_bleu``)."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(lowercase=True, effective_order=True)
    return [metric.sentence_score(h, [r]).score for h, r in zip(hypotheses, refs)]
