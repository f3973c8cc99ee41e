"""Console script ``editable-fairseq-patch``: fix translations of a deployed checkpoint, ship the patched one.

    editable-fairseq-patch model.pt --out patched.pt --source "Das ist gut." --target "That is good."
    editable-fairseq-patch model.pt --out patched.pt --pairs fixes.tsv      # raw source<TAB>raw target

Sentences are raw text, tokenised and BPE'd with the model's own codes (``DATA/bpecodes``). Each fix is an
edit ``l_e = max_i log p(y_i|s) - log p(y_0|s)`` whose alternatives ``y_1..y_k`` are the current model's
beam search; if beam search still prefers something else afterwards, its new hypotheses join the
alternatives and the edit continues (``--rounds``), with a doubled ``--margin`` if beam search missed a
``y_0`` that already outscores what it returned. Fixes apply one after another. The patched checkpoint
(same state, only the edited tensors changed) is written atomically, and only when every fix succeeded;
``fairseq-generate`` / ``fairseq-interactive --user-dir editable_fairseq`` load it. Exit status: 0 when
written, 3 when a fix did not take, 1 for any other failure (a bad flag, file or sentence).
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from editable_core import save_atomically
from editable_core.errors import EditFailed

from ..checkpoints import allow_fairseq_checkpoint_globals
from ..edit_samples import EditSample, read_utf8_lines
from ..editing import apply_translation_edit, edit_translation, score_sequences
from ..generation import beam_alternatives
from ..prepare.text import TextCodec
from .common import add_edit_arguments, check_edit_arguments, edit_settings, load_for_tools, run_tool
from .decoding import make_generator, translate_tokens

logger = logging.getLogger(__name__)
PROG = "editable-fairseq-patch"


@dataclass
class Fix:
    """One requested fix; ``where`` names its origin (``--source/--target`` or ``file:line``)."""

    where: str
    source: str
    target: str


def read_pairs(path: str) -> list[Fix]:
    """``raw source<TAB>raw target`` per line; errors name ``path:line``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--pairs {path}: file does not exist")
    fixes = []
    for number, line in read_utf8_lines(path):
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected raw source<TAB>raw target, got {len(fields)} "
                             "tab-separated field(s)")
        fixes.append(Fix(f"{path}:{number}", *fields))
    if not fixes:
        raise ValueError(f"--pairs {path}: the file is empty")
    return fixes


def encode(codec: TextCodec, dictionary, text: str, where: str, what: str) -> tuple[str, Tensor]:
    """Raw text -> (word-pieces, token ids ending in eos); an empty text or unknown word-piece is an error."""
    if not text.strip():
        raise ValueError(f"{where}: the {what} is empty")
    pieces = codec.encode(text)
    unknown = sorted({p for p in pieces.split() if dictionary.index(p) == dictionary.unk()})
    if unknown:
        raise ValueError(f"{where}: the {what} {text!r} has word-pieces the model's dictionary does not know: "
                         f"{' '.join(unknown)} (a word the model cannot write)")
    return pieces, dictionary.encode_line(pieces, add_if_not_exist=False, append_eos=True).long()


#: An edit that moves the edited tensors by more than this fraction of their norm overshot (too large an lr).
MAX_RELATIVE_CHANGE = 1.0


@dataclass
class Outcome:
    """What :func:`patch_one` did: ``success``, editor ``steps``, the final ``hypothesis``, and whether an edit
    ``diverged`` (``l_e`` not finite or higher after the edit than before it, or the edited tensors moved by
    more than their own norm: the edit-lr is too large)."""

    success: bool
    steps: int
    hypothesis: Tensor
    diverged: bool = False


def diverged(before: Tensor, after: Tensor) -> bool:
    """Whether an edit that started at ``l_e = before`` and ended at ``after`` made things worse."""
    return not bool(torch.isfinite(after).all()) or float(after.max()) > float(before.max())


def patch_one(model, task, settings, generator, source: Tensor, target: Tensor, alternatives: int,
              rounds: int, margin: float = 0.0) -> Outcome:
    """Edit ``model`` in place until beam search yields ``target``.

    Each round edits against the alternatives found so far (the model's own beam search, never ``target``)
    and writes the result into the model. fairseq's beam search stops once ``beam`` hypotheses have ended,
    so it can miss a ``target`` that outscores all of them; a round that ends in such a search error
    doubles ``margin``, which pushes the early-ending hypotheses down. On failure the model is restored.
    """
    applied, steps, seen, success, worse = [], 0, [], False, False
    hypothesis = translate_tokens(generator, source)
    try:
        for _ in range(rounds):
            if torch.equal(hypothesis, target):
                success = True
                return Outcome(True, steps, hypothesis, worse)
            found = beam_alternatives([model], task.tgt_dict, [source], alternatives, max_len_a=0, max_len_b=200,
                                      src_pad=task.src_dict.pad())[0]
            for a in [hypothesis, *found]:
                if not torch.equal(a, target) and not any(torch.equal(a, b) for b in seen):
                    seen.append(a)
            sample = EditSample(source, target, tuple(seen))
            scores = score_sequences(model, sample)  # log p(y|s) of y_0, y_1..y_k before the edit
            start = scores[1:].max() - scores[0] + margin
            result = edit_translation(model, sample, settings.editor, part=settings.part,
                                      max_steps=settings.max_steps, margin=margin)
            steps += result.steps
            applied.append(apply_translation_edit(model, result.params, settings.part))
            worse = worse or diverged(start, result.l_e) or applied[-1].relative_change() > MAX_RELATIVE_CHANGE
            hypothesis = translate_tokens(generator, source)
            if result.success and any(torch.equal(hypothesis, a) for a in seen):
                margin *= 2  # a search error: y_0 beats this hypothesis, yet the beam ended before reaching y_0
        success = torch.equal(hypothesis, target)
    finally:
        if not success:
            for edit in reversed(applied):
                edit.undo()
    return Outcome(success, steps, hypothesis, worse)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     epilog="exit status: 0 when --out was written, 3 when a fix did not take, "
                                            "1 for any other failure",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoint", help="the deployed fairseq checkpoint")
    parser.add_argument("--out", required=True, help="where to write the patched checkpoint")
    parser.add_argument("--source", help="raw source sentence to fix")
    parser.add_argument("--target", help="its desired raw translation")
    parser.add_argument("--pairs", help="TSV of fixes (raw source<TAB>raw target), applied one after another")
    parser.add_argument("--data", help="data-bin folder with the dictionaries and bpecodes (default: the "
                                       "checkpoint's)")
    parser.add_argument("--bpe-codes", help="subword-nmt codes (default: DATA/bpecodes)")
    parser.add_argument("--alternatives", type=int, default=32, help="k: beam-search alternatives per round")
    parser.add_argument("--margin", type=float, default=0.5,
                        help="y_0 must outscore every alternative by this much (mean log-probability per token), "
                             "so that beam search, not only the known alternatives, yields it; doubled after a "
                             "round whose beam search still returns an alternative y_0 already beats (0: never)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="edit rounds per fix; each adds the model's new beam hypotheses as alternatives")
    parser.add_argument("--beam", type=int, default=5, help="beam of the translations shown (fairseq's default)")
    add_edit_arguments(parser)
    return parser


def patch(args: argparse.Namespace) -> bool:
    """Apply every fix; write ``--out`` only if all succeeded. Returns whether they did."""
    check_edit_arguments(args)
    if args.pairs and (args.source is not None or args.target is not None):
        raise ValueError("give --pairs FILE or --source/--target, not both")
    if not args.pairs and (args.source is None or args.target is None):
        raise ValueError("give --source and --target (raw sentences), or --pairs FILE")
    if args.margin < 0:
        raise ValueError(f"--margin must be >= 0, got {args.margin}")
    for flag in ("alternatives", "rounds", "beam"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint {args.checkpoint!r} does not exist")
    if os.path.isdir(args.out) or not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise FileNotFoundError(f"--out {args.out}: not a file path in an existing folder")
    fixes = read_pairs(args.pairs) if args.pairs else [Fix("--source/--target", args.source, args.target)]

    loaded = load_for_tools(args.checkpoint, args.data)
    task, model = loaded.task, loaded.model
    codes = args.bpe_codes or os.path.join(loaded.data, "bpecodes")
    if not os.path.isfile(codes):
        raise FileNotFoundError(f"no BPE codes at {codes} (the prepare scripts copy them there); pass --bpe-codes")
    src_codec, tgt_codec = TextCodec(task.cfg.source_lang, codes), TextCodec(task.cfg.target_lang, codes)
    encoded = []
    for fix in fixes:  # every fix is checked before any is made
        where = fix.where if args.pairs else None
        _, source = encode(src_codec, task.src_dict, fix.source, where or "--source", "source")
        _, target = encode(tgt_codec, task.tgt_dict, fix.target, where or "--target", "target")
        encoded.append((fix, source, target))
    settings = edit_settings(loaded.state, args.editor, args.edit_lr, args.edit_max_steps, args.editable_layers)
    generator = make_generator(model, task.tgt_dict, beam=args.beam)
    record = []
    for fix, source, target in encoded:
        before = translate_tokens(generator, source)
        outcome = patch_one(model, task, settings, generator, source, target, args.alternatives, args.rounds,
                            args.margin)
        success, steps, after = outcome.success, outcome.steps, outcome.hypothesis
        show = [tgt_codec.decode(task.tgt_dict.string(t)) for t in (before, after)]
        print(f"{fix.where}\n  source:  {fix.source}\n  before:  {show[0]}\n  desired: {fix.target}\n"
              f"  after:   {show[1]}\n  success: {success}  steps: {steps}", flush=True)
        if not success:
            hint = (f"the edit diverged: try a smaller --edit-lr than {settings.lr:g}" if outcome.diverged else
                    "try more --rounds, --edit-max-steps or a larger --edit-lr")
            raise EditFailed(f"{fix.where}: the fix did not take within --rounds {args.rounds} x "
                             f"--edit-max-steps {settings.max_steps} steps; {args.out} was not written ({hint})")
        record.append({"source": fix.source, "target": fix.target, "steps": steps})

    # the file as saved (fairseq's loader turns its config into omegaconf objects that weights-only loading
    # refuses), with only the edited tensors replaced: the patched file loads wherever the original did
    allow_fairseq_checkpoint_globals()
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    weights = model.state_dict()
    changed = [name for name, saved in state["model"].items()  # tied tensors (shared embeddings) included
               if name in weights and not torch.equal(weights[name].to(saved), saved)]
    for name in changed:
        state["model"][name] = weights[name].detach().clone().to(state["model"][name])
    extra = state.setdefault("extra_state", {}) or {}
    extra["editable_patches"] = list(extra.get("editable_patches", [])) + record
    state["extra_state"] = extra
    save_atomically(state, args.out)
    print(f"wrote {args.out} ({len(record)} fix(es), {len(changed)} tensors changed)", flush=True)
    return True


def main(argv: Optional[list[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    run_tool(PROG, lambda: patch(args))


if __name__ == "__main__":
    main()
