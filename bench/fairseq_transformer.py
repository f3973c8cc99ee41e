"""Cost of Editable Training and of one edit for ``transformer_iwslt_de_en`` (section 4.4 set-up), CPU or CUDA.

Reports, with fairseq's own Trainer (forward, backward, Adam update) and the IWSLT14 de-en recipe
(dropout 0.3, label smoothing 0.1, shared decoder input/output embeddings, batches of 4096 tokens):

  (a) ``editable_update_over_plain_update``: one update with ``--criterion editable_cross_entropy``
      (RMSProp editor, beta learnable, k=10, 32 alternatives, final decoder layer editable) over one
      update with ``label_smoothed_cross_entropy``; same batch, same initial weights. Every edit inside
      the editable update is forced to take all k=10 steps (the worst case) unless ``--natural-steps``.
      Measured for the exact gradient (``--edit-backprop full``) and for each cheaper ``--modes`` entry
      (``truncated:M``, ``first_order``), all interleaved in this one process.
  (b) ``edit10_ms``: one inference edit (no graph, eval mode) forced to take 10 RMSProp steps, with
      32 alternatives, on a trained model: ``--checkpoint`` (with its ``--data``), or else the model
      trained by the updates of (a), whose cost per step is the same.

By default the data are synthetic with the IWSLT14 de-en dictionary sizes (8848 German, 6632 English
types, fairseq's prepare-iwslt14.sh); sentences and edit sequences are 25 tokens + eos, the batch is
157 sentences (4082 source and 4082 target tokens). ``--data DIR`` takes the dictionaries and a real
4096-token batch from a fairseq data-bin instead, and ``--edits TSV`` real edits.

    python bench/fairseq_transformer.py [--repeats 3] [--threads 2] [--device cpu|cuda]
                                        [--data DIR --checkpoint PT --edits TSV]

The last output line is one JSON object with the keys editable_update_over_plain_update (exact),
editable_update_over_plain_update_<mode> for each cheaper mode (``truncated:2`` -> ``truncated_2``) and
edit10_ms (an inference edit builds no graph, so its latency is the same in every mode).
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from _measure import backprop_modes, interleaved_times, sync

ROOT = Path(__file__).resolve().parent.parent
IWSLT14_DICT_SIZES = {"de": 8848, "en": 6632}
SENTENCE_TOKENS = 25  # without eos
NUM_EDITS = 8
FORCE_MARGIN = 1e4    # added to l_e: no edit can reach l_e <= 0, so every edit takes all k steps


def write_synthetic_data(folder: Path, alternatives: int, seed: int = 0) -> tuple[Path, Path]:
    """Dictionaries of IWSLT14 size and a TSV of random edits; returns (data dir, edits TSV)."""
    g = torch.Generator().manual_seed(seed)
    data = folder / "data-bin"
    data.mkdir(parents=True)
    for lang, size in IWSLT14_DICT_SIZES.items():
        # fairseq adds <s> <pad> </s> <unk>: size - 4 symbols make a dictionary of `size` types
        (data / f"dict.{lang}.txt").write_text("".join(f"{lang}{i} {100000 - i}\n" for i in range(size - 4)))

    def sentence(lang: str, length: int = SENTENCE_TOKENS) -> str:
        ids = torch.randint(0, IWSLT14_DICT_SIZES[lang] - 4, (length,), generator=g)
        return " ".join(f"{lang}{i}" for i in ids.tolist())

    edits = folder / "edits.tsv"
    with open(edits, "w") as f:
        for _ in range(NUM_EDITS):
            fields = [sentence("de"), sentence("en")] + [sentence("en", SENTENCE_TOKENS - 3 + i % 7)
                                                          for i in range(alternatives)]
            f.write("\t".join(fields) + "\n")
    return data, edits


def build(data: Path, edits: Path, criterion_args: list[str], device: torch.device):
    """Task, model and criterion from fairseq's real command-line parser (``--cpu`` unless ``device`` is CUDA)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = [str(data), "--user-dir", str(ROOT / "editable_fairseq"), "--task", "editable_translation",
            "--source-lang", "de", "--target-lang", "en", "--edit-samples", str(edits),
            "--arch", "transformer_iwslt_de_en", "--share-decoder-input-output-embed", "--dropout", "0.3",
            "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt",
            "--warmup-updates", "4000", "--max-tokens", "4096", "--seed", "1", "--num-workers", "0",
            *criterion_args, *(["--cpu"] if device.type == "cpu" else [])]
    parser = options.get_training_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))
    task = tasks.setup_task(cfg.task)
    return cfg, task


def synthetic_batch(task, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    bsz = 4096 // (SENTENCE_TOKENS + 1)
    eos, pad = task.src_dict.eos(), task.src_dict.pad()

    def tokens(vocab: int) -> torch.Tensor:
        body = torch.randint(task.src_dict.nspecial, vocab, (bsz, SENTENCE_TOKENS), generator=g)
        return torch.cat([body, torch.full((bsz, 1), eos)], 1)

    src, tgt = tokens(len(task.src_dict)), tokens(len(task.tgt_dict))
    prev = torch.cat([torch.full((bsz, 1), eos), tgt[:, :-1]], 1)
    assert pad not in src and pad not in tgt
    return {"id": torch.arange(bsz), "nsentences": bsz, "ntokens": tgt.numel(),
            "net_input": {"src_tokens": src, "src_lengths": torch.full((bsz,), SENTENCE_TOKENS + 1),
                          "prev_output_tokens": prev},
            "target": tgt}


def real_batch(cfg, task) -> dict:
    """The largest batch of the first training epoch under --max-tokens 4096."""
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=4096, seed=1, num_workers=0,
                                  max_positions=task.max_positions()).next_epoch_itr(shuffle=False)
    return max(itr, key=lambda s: s["ntokens"])


def make_trainer(cfg, task, model):
    from fairseq.trainer import Trainer

    return Trainer(cfg, task, model, task.build_criterion(cfg.criterion))


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"],
                        help="where the model trains and edits (fairseq's --cpu when cpu)")
    parser.add_argument("--alternatives", type=int, default=32, help="k alternatives per edit")
    parser.add_argument("--edit-max-steps", type=int, default=10, help="k editor steps")
    parser.add_argument("--modes", default="first_order,truncated:2",
                        help="comma list of cheaper --edit-backprop modes to time beside the exact one")
    parser.add_argument("--loc-mode", default="replay", choices=["replay", "eval"],
                        help="the criterion's --loc-mode (eval adds a whole eval-mode pass for L_loc)")
    parser.add_argument("--natural-steps", action="store_true",
                        help="let edits inside the update stop when satisfied instead of forcing k steps")
    parser.add_argument("--data", help="fairseq data-bin (dictionaries and a real batch) instead of synthetic")
    parser.add_argument("--edits", help="edit TSV in the BPE space of --data")
    parser.add_argument("--checkpoint", help="trained checkpoint (of --data) for the edit latency")
    args = parser.parse_args(argv)
    if (args.data is None) != (args.edits is None) or (args.checkpoint and not args.data):
        parser.error("--data and --edits go together, and --checkpoint needs them")
    modes = backprop_modes(parser, args.modes, loc_batch=False)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    logging.disable(logging.WARNING)  # fairseq's INFO lines would drown the report

    import editable_fairseq.tasks  # noqa: F401  (registers the task and criterion)
    from editable_fairseq.checkpoints import load_checkpoint
    from editable_core import make_editor
    from editable_fairseq.editing import HYPER_SHAPE, edit_translation, editor_from_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            data, edits = Path(args.data), Path(args.edits)
        else:
            data, edits = write_synthetic_data(Path(tmp), args.alternatives)
        editable_args = ["--criterion", "editable_cross_entropy", "--label-smoothing", "0.1",
                         "--edit-max-steps", str(args.edit_max_steps), "--editor", "rmsprop", "--edit-lr", "1e-3",
                         "--edit-margin", str(0.0 if args.natural_steps else FORCE_MARGIN),
                         "--loc-mode", args.loc_mode]
        plain_args = ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
        cfg_e, task_e = build(data, edits, editable_args, device)
        cfg_p, task_p = build(data, edits, plain_args, device)
        sample = real_batch(cfg_p, task_p) if args.data else synthetic_batch(task_p)
        torch.manual_seed(1)
        model = task_e.build_model(cfg_e.model)
        plain = make_trainer(cfg_p, task_p, copy.deepcopy(model))
        trainers = {}
        for mode in modes:
            cfg_m, task_m = build(data, edits, [*editable_args, "--edit-backprop", mode], device)
            trainers[f"editable_{mode}"] = make_trainer(cfg_m, task_m, copy.deepcopy(model))
        editable = trainers["editable"] = make_trainer(cfg_e, task_e, model)
        steps_taken: dict[str, list[float]] = {name: [] for name in trainers}

        def editable_update(name):
            out = trainers[name].train_step([sample])
            steps_taken[name].append(out["edit_steps"] if out and "edit_steps" in out else float("nan"))

        order = ["editable", *(f"editable_{mode}" for mode in modes)]
        updates = {name: functools.partial(editable_update, name) for name in order}
        times = interleaved_times({"plain": lambda: plain.train_step([sample]), **updates},
                                  repeats=args.repeats, device=device, warmup=1)
        plain_s, editable_s = statistics.median(times["plain"]), statistics.median(times["editable"])

        # (b) latency of one inference edit forced to 10 steps, on a trained model
        if args.checkpoint:
            state = load_checkpoint(args.checkpoint)
            trained = task_e.build_model(state["cfg"].model)
            trained.load_state_dict(state["model"], strict=True, model_cfg=state["cfg"].model)
            trained.to(device)
            try:
                editor = editor_from_checkpoint(state)[0]
            except ValueError:  # a baseline checkpoint: the paper's RMSProp
                editor = make_editor("rmsprop", 1e-3, "auto", shape=HYPER_SHAPE)
            editor.to(device)
            source = f"checkpoint {args.checkpoint}"
        else:
            trained, editor = model, editable.get_criterion().editor
            source = f"the bench's model after {len(times['editable']) + 1} editable updates"
        trained.eval()
        pool = task_e.edit_pool
        pool = [type(e)(e.source, e.target, e.alternatives[:args.alternatives]) for e in pool]
        latencies, results = [], []
        for i in range(1 + max(args.repeats, 3)):
            sync(device)
            started = time.perf_counter()
            result = edit_translation(trained, pool[i % len(pool)], editor, max_steps=10, margin=FORCE_MARGIN)
            sync(device)
            if i:  # the first edit warms up
                latencies.append(time.perf_counter() - started)
            results.append(result.steps)

    report = {
        "device": str(device), "threads": args.threads, "batch_target_tokens": int(sample["ntokens"]),
        "batch_sentences": int(sample["nsentences"]), "alternatives": args.alternatives,
        "max_steps": args.edit_max_steps, "loc_mode": args.loc_mode, "edit_steps_in_updates": steps_taken["editable"],
        "plain_update_s": round(plain_s, 3), "editable_update_s": round(editable_s, 3),
        "plain_update_times_s": [round(t, 3) for t in times["plain"]],
        "editable_update_times_s": [round(t, 3) for t in times["editable"]],
        "edit_model": source, "edit_steps": results[1:],
        "editable_update_over_plain_update": round(editable_s / plain_s, 3),
        "edit10_ms": round(1000 * statistics.median(latencies), 1),
    }
    summary = {"editable_update_over_plain_update": report["editable_update_over_plain_update"],
               "loc_mode": args.loc_mode}
    for mode in modes:
        key, mode_s = mode.replace(":", "_"), statistics.median(times[f"editable_{mode}"])
        report[f"editable_update_s_{key}"] = round(mode_s, 3)
        report[f"edit_steps_in_updates_{key}"] = steps_taken[f"editable_{mode}"]
        report[f"editable_update_over_plain_update_{key}"] = summary[f"editable_update_over_plain_update_{key}"] = \
            round(mode_s / plain_s, 3)
    for key, value in report.items():
        print(f"{key}: {value}")
    print(json.dumps({**summary, "edit10_ms": report["edit10_ms"]}))
    return report


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    main()
