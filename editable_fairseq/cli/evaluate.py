"""Console script ``editable-fairseq-evaluate``: Table 6 of the paper for one or more checkpoints.

For each checkpoint (a row): Test BLEU of the unedited model; then each of N edits of an evaluation edit
set is applied on its own (edit, write into the model, decode the test sentences, undo) and the row reports

* BLEU drawdown: mean over the N edits of ``|BLEU(edited) - BLEU(original)|`` on the test sentences, with
  its standard error over the edits (``± se``): the paper's definition (section 4.1, "mean absolute difference");
* BLEU drop: ``BLEU(original) - mean over the N edits of BLEU(edited)``, ± its standard error: what the
  authors' code computed for Table 6 (``mt/evaluate.ipynb`` of xtinkt/editable averages the edited models' BLEU).
  An edit's change is a shift common to the edits plus a spread from edit to edit; the drop averages the spread
  away (its error falls as 1/sqrt(N)), while the drawdown keeps about 0.8 of it however many edits are made;
* success rate: fraction of edits with ``l_e <= 0`` within ``k`` steps; num steps: mean editor steps.

Beside the table, ``--json`` records for each edit its BLEU, how many of the scored translations it changed
(``changed``), how many of those got better or worse against their reference (``improved``, ``worsened``:
sentence BLEU, sacrebleu's ``sentence_bleu`` lowercased, above or below the unedited translation's) and the
edited output's length over the references' (``length_ratio``, sacrebleu's ``sys_len / ref_len``), and for each
row the mean fractions of translations an edit changes, improves and worsens (``changed_fraction``,
``improved_fraction``, ``worsened_fraction``): a locality figure free of BLEU's noise, whether the changes cost
BLEU or trade gains for losses, and whether the edits' common shift in BLEU comes from the length of the
output (the brevity penalty).

The drawdown decodes the ``--test-size`` sentences once per edit; the Test BLEU column decodes the
``--bleu-size`` ones once per row, so it can cover the whole test set (``--bleu-size 0``) at the cost of one
decoding: between two models, BLEU on a few hundred sentences is noisier than the drawdown, a paired difference.
BLEU is sacrebleu's on detokenised, de-BPE'd output against the references (normalised as the training text
was), lowercased.

    editable-fairseq-evaluate DATA --edits eval.tsv --path baseline.pt editable.pt --num-edits 1000
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from editable_core import EditResult, atomic_open, standard_error, summarize

from ..edit_samples import read_edit_samples
from ..editing import apply_translation_edit, edit_translation
from ..prepare.text import TextCodec
from .common import add_edit_arguments, check_edit_arguments, edit_settings, load_for_tools, run_tool
from .decoding import SentenceBatches, corpus_bleu, make_generator, references, sentence_bleus, subset_indices

logger = logging.getLogger(__name__)
PROG = "editable-fairseq-evaluate"
COLUMNS = ("Training procedure", "Test BLEU", "BLEU Drawdown", "BLEU drop", "Success rate", "Num Steps")


@dataclass
class EditOutcome:
    """One edit of the evaluation: ``bleu`` of the test sentences after it, ``success``, ``steps``;
    ``changed``: how many of their translations differ from the unedited model's, ``improved`` / ``worsened``:
    how many of those have a higher / lower sentence BLEU than the unedited one; ``length_ratio``: the edited
    output's length over the references' (sacrebleu's ``sys_len / ref_len``)."""

    edit: int
    bleu: float
    success: bool
    steps: int
    changed: int
    improved: int
    worsened: int
    length_ratio: float


@dataclass
class Row:
    """One row of Table 6 and the numbers behind it."""

    name: str
    checkpoint: str
    test_bleu: float         # the Test BLEU column, on ``bleu_sentences`` sentences
    unedited_bleu: float     # BLEU of the unedited model on the ``test_sentences`` the edits are scored on
    unedited_length_ratio: float  # its output's length over the references' on those sentences
    bleu_drawdown: float
    bleu_drawdown_se: float
    bleu_drop: float         # unedited_bleu - mean over the edits of their BLEU (the authors' Table 6 measure)
    bleu_drop_se: float
    success_rate: float
    num_steps: float
    changed_fraction: float  # mean over the edits of the fraction of the test_sentences' translations changed
    improved_fraction: float  # ... changed to a higher sentence BLEU
    worsened_fraction: float  # ... changed to a lower sentence BLEU
    num_edits: int
    test_sentences: int
    bleu_sentences: int
    edit_lr: float
    edit_max_steps: int
    editable_layers: str
    seconds: float
    edits: list[EditOutcome] = field(default_factory=list)


def evaluate_checkpoint(path: str, args: argparse.Namespace, name: Optional[str] = None) -> Row:
    """Test BLEU and the N independent edits of one checkpoint."""
    import torch
    from tqdm import tqdm

    start = time.perf_counter()
    loaded = load_for_tools(path, args.data)
    task, model = loaded.task, loaded.model
    if torch.cuda.is_available() and not args.cpu:
        model.cuda()
    settings = edit_settings(loaded.state, args.editor, args.edit_lr, args.edit_max_steps, args.editable_layers)
    settings.editor.to(next(model.parameters()).device)
    task.load_dataset(args.test_subset)
    dataset = task.dataset(args.test_subset)
    codec = TextCodec(task.cfg.target_lang)
    generator = make_generator(model, task.tgt_dict, beam=args.beam, max_len_a=args.max_len_a,
                               max_len_b=args.max_len_b, lenpen=args.lenpen)

    def scorer(indices: list[int]) -> Callable[[], Scored]:
        """The model as it is now on the sentences ``indices`` of the subset: translations and their BLEU."""
        refs = references(loaded.data, args.test_subset, task.cfg.target_lang, dataset, task.tgt_dict, indices,
                          codec)
        batches = SentenceBatches(dataset, indices, args.batch_size)
        return lambda: Scored.of([codec.decode(h) for h in batches.translate(generator, task.tgt_dict)], refs)

    test_indices = subset_indices(len(dataset), args.test_size, args.seed)
    score, test_sentences = scorer(test_indices), len(test_indices)
    samples = read_edit_samples(args.edits, task.src_dict, task.tgt_dict, task.cfg.max_source_positions,
                                task.cfg.max_target_positions, allow_unk=args.allow_unk)
    if len(samples) < args.num_edits:
        raise ValueError(f"--num-edits {args.num_edits}: {args.edits} holds only {len(samples)} edits")
    base = score()
    column_indices = test_indices if args.bleu_size is None else subset_indices(len(dataset), args.bleu_size,
                                                                                args.seed)
    test_bleu = base.bleu if column_indices == test_indices else scorer(column_indices)().bleu
    bleu_sentences = len(column_indices)
    outcomes, results, bleus = [], [], []
    label = name or settings.label()
    for i, sample in enumerate(tqdm(samples[:args.num_edits], desc=label, unit="edit", disable=args.no_progress)):
        result = edit_translation(model, sample, settings.editor, part=settings.part,
                                  max_steps=settings.max_steps)
        with apply_translation_edit(model, result.params, settings.part):
            edited = score() if result.steps else base
        outcomes.append(EditOutcome(i, edited.bleu, result.success, result.steps, *edited.changes_from(base),
                                    edited.length_ratio))
        results.append(EditResult({}, result.success, result.l_e.detach(), result.steps))
        bleus.append(edited.bleu)
    metrics = summarize(base.bleu, bleus, results)
    fractions = [sum(getattr(o, kind) for o in outcomes) / (len(outcomes) * test_sentences)
                 for kind in ("changed", "improved", "worsened")]
    return Row(label, path, test_bleu, base.bleu, base.length_ratio, metrics.drawdown, metrics.drawdown_se,
               base.bleu - metrics.mean_edited_error, standard_error(bleus), metrics.success_rate,
               metrics.mean_steps, *fractions, len(results), test_sentences, bleu_sentences, settings.lr,
               settings.max_steps, settings.part, time.perf_counter() - start, outcomes)


@dataclass
class Scored:
    """The scored sentences' translations (detokenised), their references, corpus BLEU and length ratio."""

    translations: list[str]
    refs: list[str]
    bleu: float
    length_ratio: float

    @classmethod
    def of(cls, translations: list[str], refs: list[str]) -> "Scored":
        score = corpus_bleu(translations, refs)
        return cls(translations, refs, score.score, score.sys_len / max(score.ref_len, 1))

    @functools.cached_property
    def sentence_bleus(self) -> list[float]:
        """Each translation's sentence BLEU, computed on first use (for the unedited model: once per row)."""
        return sentence_bleus(self.translations, self.refs)

    def changes_from(self, base: "Scored") -> tuple[int, int, int]:
        """``(changed, improved, worsened)``: how many sentences are translated differently here and in
        ``base``, and how many of those have a higher / lower sentence BLEU here."""
        changed = [j for j, (a, b) in enumerate(zip(self.translations, base.translations)) if a != b]
        ours = sentence_bleus([self.translations[j] for j in changed], [self.refs[j] for j in changed])
        theirs = [base.sentence_bleus[j] for j in changed]
        return (len(changed), sum(a > b for a, b in zip(ours, theirs)), sum(a < b for a, b in zip(ours, theirs)))


def markdown_table(rows: list[Row]) -> str:
    """The rows as a markdown table shaped like Table 6."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join([":---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.test_bleu:.2f} | {r.bleu_drawdown:.2f} ± {r.bleu_drawdown_se:.2f} "
                     f"| {r.bleu_drop:.2f} ± {r.bleu_drop_se:.2f} | {100 * r.success_rate:.0f}% "
                     f"| {r.num_steps:.2f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("data", help="fairseq data-bin folder (dictionaries, binarized test set, raw/ references)")
    parser.add_argument("--path", nargs="+", required=True, help="checkpoints, one row each")
    parser.add_argument("--names", nargs="+", help="row names, one per --path (default: from each checkpoint)")
    parser.add_argument("--edits", required=True, help="TSV of evaluation edits (editable-fairseq-make-edits)")
    parser.add_argument("--num-edits", type=int, default=1000, help="N: the first N edits of --edits")
    parser.add_argument("--allow-unk", action="store_true",
                        help="accept word-pieces of --edits the dictionary does not know (they become <unk>)")
    parser.add_argument("--test-subset", default="test", help="subset whose BLEU is measured")
    parser.add_argument("--test-size", type=int, default=0,
                        help="a fixed random subset of this many test sentences (0: all), decoded after each edit")
    parser.add_argument("--bleu-size", type=int, default=None,
                        help="the Test BLEU column on a fixed random subset of this many test sentences (0: all; "
                             "default: the --test-size ones)")
    parser.add_argument("--beam", type=int, default=5, help="beam size of the test decoding")
    parser.add_argument("--lenpen", type=float, default=1.0, help="length penalty of the test decoding")
    parser.add_argument("--max-len-a", type=float, default=1.2,
                        help="translations are cut at max-len-a * source length + max-len-b tokens")
    parser.add_argument("--max-len-b", type=int, default=10, help="see --max-len-a")
    parser.add_argument("--batch-size", type=int, default=64, help="test sentences per decoding batch")
    parser.add_argument("--seed", type=int, default=1, help="seed of the --test-size subset")
    parser.add_argument("--json", help="write the rows (and every edit's numbers) here as JSON")
    parser.add_argument("--markdown", help="write the table here as well as to stdout")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_edit_arguments(parser)
    return parser


def _write(path: str, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def evaluate(args: argparse.Namespace) -> list[Row]:
    check_edit_arguments(args)
    if args.num_edits < 1:
        raise ValueError(f"--num-edits must be >= 1, got {args.num_edits}")
    for flag in ("test_size", "bleu_size"):
        if (getattr(args, flag) or 0) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0 (0: all sentences), got {getattr(args, flag)}")
    if args.names and len(args.names) != len(args.path):
        raise ValueError(f"--names has {len(args.names)} names for {len(args.path)} --path checkpoints")
    for path in args.path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--path {path}: checkpoint does not exist")
    if not os.path.isfile(args.edits):
        raise FileNotFoundError(f"--edits {args.edits}: file does not exist")
    for flag in ("json", "markdown"):
        out = getattr(args, flag)
        if out and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
            raise FileNotFoundError(f"--{flag} {out}: its folder does not exist")
        if out and os.path.isdir(out):
            raise ValueError(f"--{flag} {out}: is a folder; give a file path")
    rows = [evaluate_checkpoint(path, args, args.names[i] if args.names else None)
            for i, path in enumerate(args.path)]
    table = markdown_table(rows)
    print(table, flush=True)
    if args.markdown:
        _write(args.markdown, table + "\n")
    if args.json:
        _write(args.json, json.dumps({"rows": [asdict(r) for r in rows], "edits_file": args.edits,
                                      "beam": args.beam, "test_subset": args.test_subset}, indent=1) + "\n")
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    run_tool(PROG, lambda: evaluate(args))


if __name__ == "__main__":
    main()
