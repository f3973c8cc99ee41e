"""Console script ``editable-fairseq-make-edits``: the edit sets of section 4.4 from a baseline checkpoint.

For each chosen source sentence ``s``: ``k`` (32) alternatives ``y_1..y_k`` by beam search and a target
``y_0`` sampled at temperature ``tau`` (1.2), written as the TSV that ``--edit-samples`` reads. A training
set (default from the ``train`` subset) and an evaluation set (default from ``valid``) are made in one call;
no source sentence appears twice within or across them.

    editable-fairseq-make-edits DATA --path baseline.pt --train-out train.tsv --train-size 10000 \
        --eval-out eval.tsv --eval-size 1000
"""
from __future__ import annotations

import argparse
import logging
import os
import random
from typing import Optional

from ..edit_samples import write_edit_samples
from ..generation import DEFAULT_ALTERNATIVES, DEFAULT_TEMPERATURE, make_edit_samples
from .common import load_for_tools, run_tool

logger = logging.getLogger(__name__)
PROG = "editable-fairseq-make-edits"


def choose_sources(dataset, count: int, seed: int, exclude: set[tuple[int, ...]], flag: str,
                   max_positions: Optional[int] = None) -> list[int]:
    """``count`` random sentence indices of ``dataset`` whose sources are distinct and not in ``exclude``.

    Adds the chosen sources (as token tuples) to ``exclude``. Raises ``ValueError`` naming ``flag`` when the
    subset has too few distinct sentences.
    """
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    chosen = []
    for i in order:
        if len(chosen) == count:
            break
        source = dataset.src[i]
        key = tuple(source.tolist())
        if key in exclude or (max_positions is not None and source.numel() > max_positions):
            continue
        exclude.add(key)
        chosen.append(i)
    if len(chosen) < count:
        raise ValueError(f"{flag} {count}: only {len(chosen)} distinct unused source sentences are available")
    return chosen


def make_set(model, task, dataset, indices: list[int], alternatives: int, temperature: float, seed: int,
             batch_size: int, progress: bool) -> list:
    """Edit samples for ``dataset`` sentences ``indices`` (in that order), generated in length-sorted batches."""
    from tqdm import tqdm

    order = sorted(range(len(indices)), key=lambda j: dataset.src_sizes[indices[j]])
    samples: list = [None] * len(indices)
    starts = range(0, len(order), batch_size)
    for b, start in enumerate(tqdm(starts, desc="edits", unit="batch", disable=not progress)):
        chunk = order[start:start + batch_size]
        made = make_edit_samples([model], task.tgt_dict, [dataset.src[indices[j]] for j in chunk],
                                 num_alternatives=alternatives, temperature=temperature, seed=seed + b,
                                 src_pad=task.src_dict.pad())
        for j, sample in zip(chunk, made):
            samples[j] = sample
    return samples


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("data", help="fairseq data-bin folder (dictionaries and binarized subsets)")
    parser.add_argument("--path", required=True, help="checkpoint of the normally trained baseline")
    parser.add_argument("--train-out", help="TSV of training edits to write")
    parser.add_argument("--train-size", type=int, default=0, help="number of training edits")
    parser.add_argument("--train-subset", default="train", help="subset the training edits' sources come from")
    parser.add_argument("--eval-out", help="TSV of evaluation edits to write")
    parser.add_argument("--eval-size", type=int, default=0, help="number of evaluation edits")
    parser.add_argument("--eval-subset", default="valid", help="subset the evaluation edits' sources come from")
    parser.add_argument("--alternatives", type=int, default=DEFAULT_ALTERNATIVES,
                        help="k: alternatives per edit, by beam search with beam k")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help="tau: sampling temperature of the target y_0")
    parser.add_argument("--batch-size", type=int, default=32, help="source sentences per generation batch")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sentence choice and the sampling")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[list[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    run_tool(PROG, lambda: make_edits(args))


def make_edits(args: argparse.Namespace) -> None:
    import torch

    wanted = [(name, getattr(args, f"{name}_out"), getattr(args, f"{name}_size"), getattr(args, f"{name}_subset"))
              for name in ("train", "eval")]
    wanted = [w for w in wanted if w[1] or w[2]]
    if not wanted:
        raise ValueError("nothing to make: give --train-out/--train-size and/or --eval-out/--eval-size")
    for name, out, size, _ in wanted:
        if not out or size < 1:
            raise ValueError(f"--{name}-out and --{name}-size >= 1 go together (got {out!r}, {size})")
        folder = os.path.dirname(os.path.abspath(out))
        if os.path.isdir(out):
            raise ValueError(f"--{name}-out {out}: is a folder; give a file path")
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"--{name}-out {out}: folder {folder!r} does not exist")
    if len(wanted) == 2 and os.path.abspath(wanted[0][1]) == os.path.abspath(wanted[1][1]):
        raise ValueError("--train-out and --eval-out are the same file")
    if args.alternatives < 1:
        raise ValueError(f"--alternatives must be >= 1, got {args.alternatives}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")

    loaded = load_for_tools(args.path, args.data)
    task, model = loaded.task, loaded.model
    if torch.cuda.is_available() and not args.cpu:
        model.cuda()
    max_positions = getattr(task.cfg, "max_source_positions", None)
    used: set[tuple[int, ...]] = set()
    chosen = []  # every set is chosen (and checked) before anything is generated or written
    for n, (name, out, size, subset) in enumerate(wanted):
        task.load_dataset(subset)
        dataset = task.dataset(subset)
        chosen.append((dataset, choose_sources(dataset, size, args.seed + n, used, f"--{name}-size", max_positions)))
    made = [make_set(model, task, dataset, indices, args.alternatives, args.temperature,
                     args.seed * 1000 + n * 100_000, args.batch_size, not args.no_progress)
            for n, (dataset, indices) in enumerate(chosen)]
    for (name, out, _, subset), samples in zip(wanted, made):
        count = write_edit_samples(out, samples, task.src_dict, task.tgt_dict)
        mean_k = sum(len(s.alternatives) for s in samples) / count
        logger.info("wrote %d %s edits to %s (sources from %s; %.1f alternatives per edit, tau=%g)",
                    count, name, out, subset, mean_k, args.temperature)

if __name__ == "__main__":
    main()
