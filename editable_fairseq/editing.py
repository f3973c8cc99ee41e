"""Editing a fairseq translation model: ``l_e = max_i log p(y_i|s) - log p(y_0|s)`` (section 4.4).

Log-probabilities are length-normalised (mean over the tokens of each sequence, eos included), as in the
authors' implementation. The encoder runs once on ``s``, the decoder prefix once on the ``1 + k``
sequences, and each editor step runs only the suffix (see :mod:`editable_fairseq.decoder_split`).
The edit always runs in eval mode (no dropout), as it would at deployment.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from editable_core import (AppliedEdit, EditResult, Editor, apply_edit, edit, eval_mode, make_editor, parse_backprop,
                           parse_learnable, sequence_constraint, sequence_log_prob)

from .decoder_split import DecoderSplit, SuffixInput, split_for, unwrap_model
from .edit_samples import EditBatch, EditSample, collate_edit

#: how editor hyper-parameters store their raw value: one-element vectors, not 0-dim scalars, because fairseq's
#: legacy_ddp all-reduce slices each gradient and fails on a criterion whose only parameter is 0-dim
HYPER_SHAPE = (1,)


def sequence_scores(logits: Tensor, target: Tensor, pad: int) -> Tensor:
    """Length-normalised ``log p(y|s)`` of each row: logits ``[N, T, V]``, target ``[N, T]`` -> ``[N]``."""
    return sequence_log_prob(F.log_softmax(logits.float(), dim=-1), target, pad, normalize=True)


def translation_constraint(split: DecoderSplit, state: SuffixInput, batch: EditBatch, margin: float = 0.0,
                           second_order: bool = False):
    """``params -> l_e [1]`` for one edit batch whose suffix input is ``state`` (row 0 is ``y_0``).

    ``l_e = max_i s_i - s_0`` depends on the alternatives only through the best one, and so do its
    gradient and every derivative of the edit trajectory (the arg-max is piecewise constant). So each
    call scores all ``1 + k`` rows without a graph, then runs the suffix with a graph on two rows only,
    ``y_0`` and the best alternative, cut to their length: exact (up to exact ties, where any choice
    is a valid subgradient), and the graph that Editable Training back-propagates through the ``k``
    steps is ``(1 + k) / 2`` times smaller.

    second_order: the edit keeps its graph, so attention runs with the composite ("math") kernel of
    ``scaled_dot_product_attention``: the fused CPU/GPU kernels have no double backward.
    """
    n = batch.num_sequences
    lengths = batch.target.ne(batch.pad).sum(1)
    pairs: dict[int, tuple[SuffixInput, Tensor]] = {}

    def pair(best: int) -> tuple[SuffixInput, Tensor]:
        if best not in pairs:
            rows = torch.tensor([0, best], device=batch.target.device)
            length = int(lengths[rows].max())
            pairs[best] = (state.select(rows, length), batch.target.index_select(0, rows)[:, :length])
        return pairs[best]

    def constraint(params: dict[str, Tensor]) -> Tensor:
        if n > 2:
            with torch.no_grad():
                scores = sequence_scores(split.run_suffix(state, params), batch.target, batch.pad)
            best = 1 + int(scores[1:].argmax())
        else:
            best = 1
        pair_state, pair_target = pair(best)
        with sdpa_kernel([SDPBackend.MATH]) if second_order else nullcontext():
            logits = split.run_suffix(pair_state, params)
        target_score, best_score = sequence_scores(logits, pair_target, batch.pad)
        return sequence_constraint(target_score.reshape(1), best_score.reshape(1, 1), margin=margin)
    return constraint


def _as_batch(model: nn.Module, edit_sample: Union[EditSample, EditBatch], pad: int, eos: int) -> EditBatch:
    if isinstance(edit_sample, EditBatch):
        return edit_sample
    device = next(unwrap_model(model).parameters()).device
    return collate_edit(edit_sample, pad, eos, device)


def edit_translation(model: nn.Module, edit_sample: Union[EditSample, EditBatch], editor: Editor, *,
                     part: str = "last", max_steps: int = 10, create_graph: bool = False, margin: float = 0.0,
                     pad: Optional[int] = None, eos: Optional[int] = None, backprop: str = "full") -> EditResult:
    """``Edit^k(theta, l_e)`` of one translation edit on the editable ``part`` of ``model``.

    create_graph: keep the graph (Editable Training: the result is differentiable w.r.t. every model
    parameter, the encoder's included, and the editor's hyper-parameters); otherwise a cheap no-graph
    inference edit. margin: added to ``l_e`` (a large margin forces all ``k`` steps, for benchmarks).
    backprop: with ``create_graph``, the exact outer gradient or a cheaper one (``editable_core.parse_backprop``).
    Returns an ``EditResult`` whose ``params`` are keyed by suffix names; see :func:`apply_translation_edit`.
    The model itself is never modified.
    """
    core = unwrap_model(model)
    dictionary = core.decoder.dictionary
    pad = dictionary.pad() if pad is None else pad
    eos = dictionary.eos() if eos is None else eos
    batch = _as_batch(core, edit_sample, pad, eos)
    split = split_for(core, part)
    with eval_mode(core):
        with torch.set_grad_enabled(create_graph):
            state = split.prefix(batch.src_tokens, batch.src_lengths, batch.prev_output_tokens)
        # first-order edits never differentiate a gradient, so attention may use the fused kernels
        second_order = create_graph and parse_backprop(backprop) != 0
        constraint = translation_constraint(split, state, batch, margin, second_order=second_order)
        return edit(constraint, split.editable_parameters(), editor,
                    max_steps=max_steps, create_graph=create_graph, backprop=backprop)


def apply_translation_edit(model: nn.Module, params: dict[str, Tensor], part: str = "last") -> AppliedEdit:
    """Write edited suffix tensors (``EditResult.params``) into ``model`` in place; ``.undo()`` reverts."""
    core = unwrap_model(model)
    return apply_edit(core, split_for(core, part).to_model_names(params))


@torch.no_grad()
def score_sequences(model: nn.Module, edit_sample: Union[EditSample, EditBatch]) -> Tensor:
    """``log p(y|s)`` (length-normalised) of ``y_0, y_1..y_k`` by the model's ordinary forward, eval mode.

    Independent of the prefix/suffix machinery: use it to verify an applied edit. Returns ``[1 + k]``.
    """
    core = unwrap_model(model)
    dictionary = core.decoder.dictionary
    batch = _as_batch(core, edit_sample, dictionary.pad(), dictionary.eos())
    n = batch.num_sequences
    with eval_mode(core):
        logits, _ = core(batch.src_tokens.expand(n, -1), batch.src_lengths.expand(n), batch.prev_output_tokens)
    return sequence_scores(logits, batch.target, batch.pad)


def editor_from_checkpoint(state: dict[str, Any]) -> tuple[Editor, dict[str, Any]]:
    """The editor an editable checkpoint was trained with, learned hyper-parameters restored.

    state: a loaded fairseq checkpoint (``editable_fairseq.checkpoints.load_checkpoint``). Returns
    ``(editor, criterion_cfg)``; ``criterion_cfg`` holds ``edit_max_steps``, ``editable_layers`` etc.
    """
    cfg = state.get("cfg") or {}
    criterion_cfg = dict(cfg.get("criterion") or {})
    if criterion_cfg.get("_name") != "editable_cross_entropy":
        raise ValueError(f"the checkpoint was not trained with the criterion editable_cross_entropy "
                         f"(criterion: {criterion_cfg.get('_name')!r})")
    editor = make_editor(criterion_cfg.get("editor", "rmsprop"), criterion_cfg.get("edit_lr", 1e-3),
                         parse_learnable(criterion_cfg.get("edit_learnable", "auto")), shape=HYPER_SHAPE)
    saved = state.get("criterion") or {}
    editor_state = {k[len("editor."):]: v for k, v in saved.items() if k.startswith("editor.")}
    if editor_state:
        own = editor.state_dict()
        editor.load_state_dict({k: v.reshape(own[k].shape) if k in own else v for k, v in editor_state.items()})
    return editor, criterion_cfg
