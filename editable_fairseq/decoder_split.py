"""The Transformer decoder cut in two around its editable part (shared modules, never copied).

* prefix: the encoder and the decoder layers below the editable part. It runs once per edit (and the
  plain forward pass over a training batch is the prefix for the edited pass over that batch).
* suffix: the editable part and everything above it: the editable layer(s), the final layer norm, the
  output projection. Only the suffix runs at every editor step, with the edited tensors substituted
  through :func:`editable_core.call` (``torch.func.functional_call``).

The input of the suffix is captured with forward pre-hooks on fairseq's own modules, so the prefix is
always exactly fairseq's code: the first suffix layer receives ``x`` ``[T, B, C]`` plus the encoder
output, padding masks and the causal mask as fairseq passed them; the output projection receives
the decoder features ``[B, T, C]``.

Editable parts (``--editable-layers``): ``last`` (final decoder layer, as in the paper), ``penultimate``
(the layer below it; the suffix then also runs the last layer) and ``output`` (the output projection).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import torch
from torch import Tensor, nn

from editable_core import call

EDITABLE_PARTS = ("last", "penultimate", "output")


class _StopForward(Exception):
    """Raised by a capture hook to skip the rest of a forward pass once the suffix input is known."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The fairseq encoder-decoder model inside DDP / ModuleProxyWrapper wrappers."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    if not (hasattr(model, "encoder") and hasattr(model, "decoder")):
        raise TypeError(f"expected a fairseq encoder-decoder model, got {type(model).__name__}")
    return model


class DecoderSuffix(nn.Module):
    """The decoder from layer ``start`` up: a view sharing the decoder's modules (no parameter copies).

    forward(x, layer_args) -> logits ``[B, T, V]``. With layers, ``x`` is ``[T, B, C]`` and
    ``layer_args[j]`` holds the positional (after ``x``) and keyword arguments of suffix layer ``j``;
    without layers (``start == num_layers``) ``x`` is the features ``[B, T, C]``.
    """

    def __init__(self, decoder: nn.Module, start: int):
        super().__init__()
        self.start = start
        self.layers = nn.ModuleList(list(decoder.layers)[start:])
        self.layer_norm = decoder.layer_norm
        self.project_out_dim = decoder.project_out_dim
        self.output_projection = decoder.output_projection

    def forward(self, x: Tensor, layer_args: list[tuple[tuple, dict]]) -> Tensor:
        if len(self.layers):
            for layer, (args, kwargs) in zip(self.layers, layer_args, strict=True):
                x = layer(x, *args, **kwargs)[0]
            if self.layer_norm is not None:
                x = self.layer_norm(x)
            x = x.transpose(0, 1)
            if self.project_out_dim is not None:
                x = self.project_out_dim(x)
        return self.output_projection(x)


@dataclass
class SuffixInput:
    """What the suffix needs: ``x`` and the other arguments of each suffix layer (see DecoderSuffix).

    rng: the random-number-generator state at the suffix entry (training-mode captures only), so that a
    replay draws exactly the dropout masks of the captured pass.
    """

    x: Optional[Tensor] = None
    layer_args: list[tuple[tuple, dict]] = field(default_factory=list)
    rng: Optional[tuple[Tensor, Optional[Tensor]]] = None

    def select(self, rows: Tensor, length: Optional[int] = None) -> "SuffixInput":
        """The suffix input of some rows only, optionally cut to the first ``length`` target positions.

        Exact for fairseq decoder layers: row ``b``, position ``t`` depends only on row ``b``'s positions
        ``<= t``. Layer arguments follow fairseq's signature: ``(encoder_out [S, B, C],
        encoder_padding_mask [B, S], incremental_state)`` plus ``self_attn_mask [T, T]`` and
        ``self_attn_padding_mask [B, T]`` keywords.
        """
        if self.rng is not None:
            raise ValueError("a training-mode capture (with an RNG state) cannot be split into rows")
        if not self.layer_args:  # output projection: x is the features [B, T, C]
            x = self.x.index_select(0, rows)
            return SuffixInput(x if length is None else x[:, :length])
        x = self.x.index_select(1, rows)
        x = x if length is None else x[:length]
        layer_args = []
        for args, kwargs in self.layer_args:
            args = list(args)
            if len(args) > 0 and args[0] is not None:
                args[0] = args[0].index_select(1, rows)
            if len(args) > 1 and args[1] is not None:
                args[1] = args[1].index_select(0, rows)
            kwargs = dict(kwargs)
            if kwargs.get("self_attn_padding_mask") is not None:
                mask = kwargs["self_attn_padding_mask"].index_select(0, rows)
                kwargs["self_attn_padding_mask"] = mask if length is None else mask[:, :length]
            if length is not None and kwargs.get("self_attn_mask") is not None:
                kwargs["self_attn_mask"] = kwargs["self_attn_mask"][:length, :length]
            layer_args.append((tuple(args), kwargs))
        return SuffixInput(x, layer_args)


class DecoderSplit:
    """A fairseq Transformer model cut at its editable part.

    model: a fairseq encoder-decoder Transformer (``TransformerModel``), possibly wrapped for DDP.
    part: one of :data:`EDITABLE_PARTS`.
    """

    def __init__(self, model: nn.Module, part: str = "last"):
        model = unwrap_model(model)
        decoder = model.decoder
        if part not in EDITABLE_PARTS:
            raise ValueError(f"part must be one of {EDITABLE_PARTS}, got {part!r}")
        for attr in ("layers", "layer_norm", "project_out_dim", "output_projection"):
            if not hasattr(decoder, attr):
                raise TypeError(f"{type(decoder).__name__} is not a fairseq Transformer decoder (no .{attr})")
        if getattr(decoder, "adaptive_softmax", None) is not None:
            raise ValueError("editing a decoder with an adaptive softmax is not supported")
        if type(decoder.layers).__name__ == "LayerDropModuleList":
            raise ValueError("editing a decoder with layer drop (decoder_layerdrop > 0) is not supported: the editable "
                             "layer would be skipped at random")
        num_layers = len(decoder.layers)
        if part == "output":
            start, editable = num_layers, "output_projection."
            if decoder.output_projection.weight is decoder.embed_tokens.weight:
                raise ValueError("part 'output' needs an output projection of its own, but it is tied to the "
                                 "decoder input embeddings (share_decoder_input_output_embed or "
                                 "share_all_embeddings); edit 'last' or 'penultimate' instead")
        else:
            needed = 1 if part == "last" else 2
            if num_layers < needed:
                raise ValueError(f"part {part!r} needs at least {needed} decoder layers, "
                                 f"the model has {num_layers}")
            start, editable = num_layers - needed, "layers.0."
        self.part = part
        self.model = model
        self.decoder = decoder
        self.num_layers = num_layers
        self.start = start
        self.suffix = DecoderSuffix(decoder, start)
        self.param_names = tuple(n for n, _ in self.suffix.named_parameters() if n.startswith(editable))
        by_id = {id(p): n for n, p in model.named_parameters()}
        self.model_names = {n: by_id[id(p)] for n, p in self.suffix.named_parameters() if n in self.param_names}

    # --- parameters -------------------------------------------------------------------------------
    def editable_parameters(self) -> dict[str, nn.Parameter]:
        """``theta``: the editable parameters, keyed by their name in the suffix."""
        named = dict(self.suffix.named_parameters())
        return {n: named[n] for n in self.param_names}

    def to_model_names(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        """Re-key suffix-named tensors (e.g. ``EditResult.params``) by their names in the whole model."""
        return {self.model_names[n]: t for n, t in params.items()}

    # --- capturing the suffix input ---------------------------------------------------------------
    def _hooked_modules(self) -> list[nn.Module]:
        return list(self.suffix.layers) if len(self.suffix.layers) else [self.suffix.output_projection]

    @contextmanager
    def capture(self, stop: bool = False, record_rng: bool = False) -> Iterator[SuffixInput]:
        """Record the suffix input of the forward passes run inside the block.

        stop: abort the forward pass at the suffix entry (the edit prefix needs nothing above it); the
        arguments of later suffix layers are then derived as fairseq derives them (attention weights
        are requested from the last layer only). record_rng: remember the RNG state at the suffix entry.
        """
        captured = SuffixInput()
        modules = self._hooked_modules()
        last_layer = self.num_layers - 1

        def hook(module: nn.Module, args: tuple, kwargs: dict, index: int) -> None:
            if index == 0:
                if captured.x is not None:
                    raise RuntimeError("the editable part ran twice in one captured forward pass")
                captured.x = args[0]
                if record_rng:
                    cuda = torch.cuda.get_rng_state(args[0].device) if args[0].is_cuda else None
                    captured.rng = (torch.get_rng_state(), cuda)
            if len(self.suffix.layers):
                captured.layer_args.append((tuple(args[1:]), dict(kwargs)))
                if stop:
                    first_args, first_kwargs = captured.layer_args[0]
                    for j in range(1, len(modules)):
                        flag = self.start + j == last_layer
                        captured.layer_args.append(
                            (first_args, {**first_kwargs, "need_attn": flag, "need_head_weights": flag}))
            if stop:
                raise _StopForward

        handles = [m.register_forward_pre_hook(lambda m, a, k, i=i: hook(m, a, k, i), with_kwargs=True)
                   for i, m in enumerate(modules)]
        try:
            yield captured
        finally:
            for h in handles:
                h.remove()

    def encode(self, src_tokens: Tensor, src_lengths: Tensor) -> dict:
        """The encoder output of ONE source sentence: src_tokens ``[1, S]``, src_lengths ``[1]``."""
        if src_tokens.size(0) != 1:
            raise ValueError(f"an edit has one source sentence, got {src_tokens.size(0)}")
        return self.model.encoder(src_tokens, src_lengths=src_lengths)

    def decoder_prefix(self, encoder_out: dict, prev_output_tokens: Tensor) -> SuffixInput:
        """The decoder up to the editable part for ``N`` target rows sharing a one-row ``encoder_out``.

        prev_output_tokens: ``[N, T]``. The encoder output is expanded to the ``N`` rows.
        """
        rows = torch.zeros(prev_output_tokens.size(0), dtype=torch.long, device=prev_output_tokens.device)
        return self._run_to_suffix(self.model.encoder.reorder_encoder_out(encoder_out, rows), prev_output_tokens)

    def batch_prefix(self, src_tokens: Tensor, src_lengths: Tensor, prev_output_tokens: Tensor) -> SuffixInput:
        """Encoder and decoder up to the editable part for a batch: row ``i`` of ``prev_output_tokens``
        ``[B, T]`` translates source ``i`` of ``src_tokens`` ``[B, S]``."""
        return self._run_to_suffix(self.model.encoder(src_tokens, src_lengths=src_lengths), prev_output_tokens)

    def _run_to_suffix(self, encoder_out: dict, prev_output_tokens: Tensor) -> SuffixInput:
        with self.capture(stop=True) as captured:
            try:
                self.decoder(prev_output_tokens, encoder_out=encoder_out)
            except _StopForward:
                pass
        if captured.x is None:
            raise RuntimeError("the decoder never reached its editable part")
        return captured

    def prefix(self, src_tokens: Tensor, src_lengths: Tensor, prev_output_tokens: Tensor) -> SuffixInput:
        """:meth:`encode` once, then :meth:`decoder_prefix` on the ``N`` rows of ``prev_output_tokens``."""
        return self.decoder_prefix(self.encode(src_tokens, src_lengths), prev_output_tokens)

    # --- running the suffix -----------------------------------------------------------------------
    def run_suffix(self, state: SuffixInput, params: Optional[dict[str, Tensor]] = None) -> Tensor:
        """Logits ``[B, T, V]`` of the suffix on ``state``, with ``params`` substituted if given.

        If ``state`` carries an RNG state, it is restored for the pass (and the generator put back
        afterwards), so dropout draws the same masks as the captured pass.
        """
        def run() -> Tensor:
            if params is None:
                return self.suffix(state.x, state.layer_args)
            return call(self.suffix, params, state.x, state.layer_args)

        if state.rng is None:
            return run()
        cpu, cuda = state.rng
        devices = [state.x.device] if cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state(cuda, state.x.device)
            return run()


_CACHE_ATTR = "_editable_fairseq_splits"


def split_for(model: nn.Module, part: str) -> DecoderSplit:
    """A :class:`DecoderSplit` of ``model`` for ``part``, cached on the decoder (not as a submodule)."""
    core = unwrap_model(model)
    cache: dict[str, Any] = core.decoder.__dict__.setdefault(_CACHE_ATTR, {})
    if part not in cache or cache[part].model is not core:
        cache[part] = DecoderSplit(core, part)
    return cache[part]
