"""German-English corpora for the translation pipeline, written as fairseq-preprocess expects them.

Two sources:

* **Ding** (offline): the example sentences of the Ding German-English dictionary, shipped by Debian's
  ``trans-de-en`` package (file ``usr/share/trans/de-en``, lines ``German | ... :: English | ...``, the
  sub-entries of both sides aligned by position). Only pairs whose both sides are full sentences are kept.
* **IWSLT14 De-En**: the ``de-en`` folder of fairseq's ``de-en.tgz``, split and cleaned exactly as fairseq's
  ``examples/translation/prepare-iwslt14.sh`` does (valid = every 23rd training line; test = dev2010,
  dev2012, tst2010-2012), with sacremoses and subword-nmt in place of the perl scripts.

``prepare`` then tokenises and lowercases (:class:`~editable_fairseq.prepare.text.TextCodec`), cleans the training
pairs, learns a joint BPE and writes ``{train,valid,test}.{de,en}`` (word-pieces), ``code`` (BPE codes) and
``raw/{split}.{de,en}`` (the untouched sentences).
"""
from __future__ import annotations

import argparse
import html
import io
import logging
import random
import re
import sys
from multiprocessing import Pool
from pathlib import Path
from typing import Iterable, Sequence

from subword_nmt.learn_bpe import learn_bpe

from .text import TextCodec

logger = logging.getLogger(__name__)

Pair = tuple[str, str]
LANGS = ("de", "en")
_SENTENCE_END = (".", "?", "!")
_NOT_IN_SENTENCES = set(";{}[]()/<>")
_PLACEHOLDERS = ("etw.", "jdn.", "jdm.", "jds.", "sth.", "sb.", "sb's", "…", "...")


def is_full_sentence(text: str) -> bool:
    """A dictionary example that is a sentence: ends in . ? or !, has 3+ words, no annotations or
    placeholders (``{n}``, ``[ugs.]``, ``etw.``, ``sb.``, alternatives separated by ``;``)."""
    return (text.endswith(_SENTENCE_END) and len(text.split()) >= 3
            and not _NOT_IN_SENTENCES.intersection(text) and not any(p in text for p in _PLACEHOLDERS))


def read_ding_pairs(path: str | Path) -> list[Pair]:
    """All (German, English) example-sentence pairs of a Ding dictionary file, first translation of each
    German sentence only, in file order."""
    pairs, seen = [], set()
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#") or line.count(" :: ") != 1:
                continue
            german, english = (side.split(" | ") for side in line.rstrip("\n").split(" :: "))
            if len(german) != len(english):
                continue
            for de, en in zip(german, english):
                de, en = de.strip(), en.strip()
                if de not in seen and is_full_sentence(de) and is_full_sentence(en):
                    seen.add(de)
                    pairs.append((de, en))
    if not pairs:
        raise ValueError(f"{path}: no example-sentence pairs found; is this Ding's usr/share/trans/de-en?")
    return pairs


_TAGS_TO_DROP = ("<url>", "<talkid>", "<keywords>")
_TAGS_TO_STRIP = re.compile(r"</?(title|description)>")
_SEGMENT = re.compile(r'<seg id="\d+">\s*(.*?)\s*</seg>')
IWSLT14_TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
                     "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"missing IWSLT14 file {path} (unpack fairseq's de-en.tgz first)")
    return path.read_text(encoding="utf-8").splitlines()


def read_iwslt14(folder: str | Path) -> dict[str, list[Pair]]:
    """Train, valid and test pairs from the unpacked ``de-en`` folder, split as fairseq's recipe."""
    folder = Path(folder)
    sides = []
    for lang in LANGS:
        lines = [_TAGS_TO_STRIP.sub("", line) for line in _read_lines(folder / f"train.tags.de-en.{lang}")
                 if not any(tag in line for tag in _TAGS_TO_DROP)]
        sides.append(lines)
    if len(sides[0]) != len(sides[1]):
        raise ValueError(f"{folder}: train.tags.de-en.de has {len(sides[0])} lines, .en has {len(sides[1])}")
    train_all = list(zip(*sides))
    test = []
    for name in IWSLT14_TEST_SETS:
        segments = [[html.unescape(m.group(1)) for line in _read_lines(folder / f"{name}.de-en.{lang}.xml")
                     if (m := _SEGMENT.search(line))] for lang in LANGS]
        test.extend(zip(*segments))
    return {"train": [p for i, p in enumerate(train_all, 1) if i % 23 != 0],
            "valid": [p for i, p in enumerate(train_all, 1) if i % 23 == 0], "test": test}


def split_pairs(pairs: Sequence[Pair], valid_size: int, test_size: int, seed: int = 1) -> dict[str, list[Pair]]:
    """A seeded random split into train / valid / test."""
    if valid_size + test_size >= len(pairs):
        raise ValueError(f"only {len(pairs)} pairs: cannot hold out {valid_size} valid + {test_size} test")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    test, valid, train = order[:test_size], order[test_size:test_size + valid_size], order[test_size + valid_size:]
    return {name: [pairs[i] for i in sorted(idx)] for name, idx in (("train", train), ("valid", valid), ("test", test))}


def keep_for_training(de: str, en: str, ratio: float, max_len: int = 175) -> bool:
    """clean-corpus-n.perl on tokenised text: both sides 1..max_len words, length ratio at most ``ratio``."""
    n, m = len(de.split()), len(en.split())
    return 1 <= n <= max_len and 1 <= m <= max_len and n <= ratio * m and m <= ratio * n


def _tokenize_chunk(args: tuple[str, list[str]]) -> list[str]:
    lang, lines = args
    codec = TextCodec(lang)
    return [codec.tokenize(line) for line in lines]


def tokenize_all(lines: list[str], lang: str, workers: int) -> list[str]:
    """Moses-tokenise and lowercase ``lines`` with ``workers`` processes."""
    if workers <= 1 or len(lines) < 2000:
        return _tokenize_chunk((lang, lines))
    size = (len(lines) + workers - 1) // workers
    with Pool(workers) as pool:
        chunks = pool.map(_tokenize_chunk, [(lang, lines[i:i + size]) for i in range(0, len(lines), size)])
    return [line for chunk in chunks for line in chunk]


def _write(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def prepare(splits: dict[str, list[Pair]], out_dir: str | Path, bpe_merges: int, clean_ratio: float | None,
            workers: int = 1) -> dict[str, int]:
    """Tokenise, lowercase, clean (train only), learn joint BPE on train and apply it to every split.

    Writes ``out_dir/{split}.{de,en}``, ``out_dir/code`` and ``out_dir/raw/{split}.{de,en}``; returns the
    number of pairs per split.
    """
    out = Path(out_dir)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    tokenized: dict[str, list[Pair]] = {}
    for split, pairs in splits.items():
        if not pairs:
            raise ValueError(f"the {split} split is empty")
        de, en = (tokenize_all([p[i] for p in pairs], lang, workers) for i, lang in enumerate(LANGS))
        keep = [i for i in range(len(pairs)) if split != "train" or clean_ratio is None
                or keep_for_training(de[i], en[i], clean_ratio)]
        tokenized[split] = [(de[i], en[i]) for i in keep]
        for i, lang in enumerate(LANGS):
            _write(out / "raw" / f"{split}.{lang}", (pairs[j][i] for j in keep))
        logger.info("%s: %d pairs (%d dropped by cleaning)", split, len(keep), len(pairs) - len(keep))

    codes = out / "code"
    train_text = io.StringIO("".join(f"{side}\n" for pair in tokenized["train"] for side in pair))
    with codes.open("w", encoding="utf-8") as code_file:
        learn_bpe(train_text, code_file, bpe_merges)
    codecs = {lang: TextCodec(lang, codes) for lang in LANGS}
    for split, pairs in tokenized.items():
        for i, lang in enumerate(LANGS):
            _write(out / f"{split}.{lang}", (codecs[lang].split_words(p[i]) for p in pairs))
    return {split: len(pairs) for split, pairs in tokenized.items()}


def main(argv: list[str] | None = None) -> None:
    """Console script ``editable-fairseq-prepare-corpus``."""
    parser = argparse.ArgumentParser(prog="editable-fairseq-prepare-corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", choices=("ding", "iwslt14"), help="which corpus --input holds")
    parser.add_argument("--input", required=True,
                        help="ding: the dictionary file usr/share/trans/de-en; iwslt14: the unpacked de-en folder")
    parser.add_argument("--out", required=True, help="output folder for {train,valid,test}.{de,en} and code")
    parser.add_argument("--bpe-merges", type=int, default=10000, help="joint BPE merge operations")
    parser.add_argument("--valid-size", type=int, default=500, help="ding: held-out validation pairs")
    parser.add_argument("--test-size", type=int, default=1000, help="ding: held-out test pairs")
    parser.add_argument("--max-pairs", type=int, default=None, help="ding: use at most this many pairs")
    parser.add_argument("--seed", type=int, default=1, help="ding: seed of the random split")
    parser.add_argument("--clean-ratio", type=float, default=None,
                        help="drop training pairs whose length ratio exceeds this (iwslt14 default 1.5)")
    parser.add_argument("--workers", type=int, default=2, help="tokenisation processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.source == "ding":
            pairs = read_ding_pairs(args.input)
            logger.info("%s: %d example-sentence pairs", args.input, len(pairs))
            if args.max_pairs:
                pairs = [pairs[i] for i in sorted(random.Random(args.seed).sample(range(len(pairs)),
                                                                                  min(args.max_pairs, len(pairs))))]
            splits = split_pairs(pairs, args.valid_size, args.test_size, args.seed)
            clean_ratio = args.clean_ratio
        else:
            splits = read_iwslt14(args.input)
            clean_ratio = 1.5 if args.clean_ratio is None else args.clean_ratio
        sizes = prepare(splits, args.out, args.bpe_merges, clean_ratio, args.workers)
    except (OSError, ValueError) as error:
        sys.exit(f"editable-fairseq-prepare-corpus: error: {error}")
    logger.info("wrote %s: %s", args.out, ", ".join(f"{k} {v}" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
