"""A tiny, learnable German->English-like parallel corpus written by the tests (no downloads).

Each source word has one English translation; sentences are 3-8 words drawn from a Zipf-like
distribution and translated word by word, with the sentence-final verb moved to second position
(as in German main clauses turned into English order), so a small Transformer learns it in a few
hundred updates but still has plausible alternatives to rank.
"""
from __future__ import annotations

import random
from pathlib import Path

SOURCE_WORDS = ("ich du er sie wir ihr es der die das ein eine hund katze haus baum auto buch mann frau kind "
                "rot blau gross klein alt neu schnell heute morgen hier dort").split()
TARGET_WORDS = ("i you he she we you it the the the a a dog cat house tree car book man woman child "
                "red blue big small old new fast today tomorrow here there").split()
SOURCE_VERBS = "sieht hat liest kauft findet malt".split()
TARGET_VERBS = "sees has reads buys finds paints".split()
LEXICON = dict(zip(SOURCE_WORDS + SOURCE_VERBS, TARGET_WORDS + TARGET_VERBS))


def make_pair(rng: random.Random) -> tuple[str, str]:
    """One (source, target) sentence pair; the source ends with its verb, the target has it second."""
    n = rng.randint(2, 7)
    words = [rng.choices(SOURCE_WORDS, weights=[1 / (i + 1) ** 0.7 for i in range(len(SOURCE_WORDS))])[0]
             for _ in range(n)]
    verb = rng.choice(SOURCE_VERBS)
    source = words + [verb, "."]
    target_words = [LEXICON[w] for w in words]
    target = target_words[:1] + [LEXICON[verb]] + target_words[1:] + ["."]
    return " ".join(source), " ".join(target)


def write_corpus(folder: Path, sizes: dict[str, int] | None = None, seed: int = 0,
                 src: str = "de", tgt: str = "en") -> Path:
    """Write ``{split}.{src}`` / ``{split}.{tgt}`` text files into ``folder``; returns ``folder``."""
    sizes = sizes or {"train": 2000, "valid": 80, "test": 40}
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, size in sizes.items():
        pairs = [make_pair(rng) for _ in range(size)]
        (folder / f"{split}.{src}").write_text("".join(s + "\n" for s, _ in pairs))
        (folder / f"{split}.{tgt}").write_text("".join(t + "\n" for _, t in pairs))
    return folder
