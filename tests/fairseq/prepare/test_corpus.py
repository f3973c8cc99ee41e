"""The corpus preparation: Ding and IWSLT14 formats, tokenisation/BPE, and the prepare scripts end to end."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from editable_fairseq.prepare.corpus import (is_full_sentence, keep_for_training, read_ding_pairs, read_iwslt14,
                                             split_pairs)
from editable_fairseq.prepare.text import TextCodec, remove_bpe

ROOT = Path(__file__).resolve().parents[3]
SUBJECTS = [("Der Hund", "The dog"), ("Meine Schwester", "My sister"), ("Das Kind", "The child"),
            ("Unser Nachbar", "Our neighbour"), ("Die Lehrerin", "The teacher"), ("Ein Mann", "A man")]
VERBS = [("sieht", "sees"), ("kauft", "buys"), ("findet", "finds"), ("liest", "reads"), ("malt", "paints")]
OBJECTS = [("das Haus", "the house"), ("ein Buch", "a book"), ("den Baum", "the tree"), ("die Katze", "the cat"),
           ("einen Apfel", "an apple"), ("das Auto", "the car"), ("den Brief", "the letter")]


def sentence_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = set()
    while len(pairs) < n:
        (sd, se), (vd, ve), (od, oe) = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)
        end = rng.choice([".", "!", "?"])
        time_de, time_en = rng.choice([("heute", "today"), ("morgen", "tomorrow"), ("oft", "often"), ("", "")])
        de = " ".join(w for w in (sd, vd, time_de, od) if w) + end
        en = " ".join(w for w in (se, ve, oe, time_en) if w) + end
        pairs.add((de, en))
    return sorted(pairs)


def write_ding(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """Ding's format: headwords and examples as aligned `|` sub-entries of `German :: English` lines."""
    lines = ["# Version :: test", "# License :: GPL Version 2 or later"]
    for i in range(0, len(pairs), 2):
        chunk = pairs[i:i + 2]
        lines.append(" | ".join(["Wort {n}; Wörter {pl}"] + [de for de, _ in chunk]) + " :: "
                     + " | ".join(["word; words"] + [en for _, en in chunk]))
    lines.append("etw. tun {vt} | Er tut etw. :: to do sth. | He does sth.")   # placeholders: dropped
    lines.append("Ich weiß. | extra :: I know.")                                  # misaligned: dropped
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_iwslt(folder: Path, pairs: list[tuple[str, str]]) -> Path:
    """The de-en folder of fairseq's de-en.tgz: tagged training text and five XML test sets."""
    folder.mkdir(parents=True)
    train, test = pairs[:-10], pairs[-10:]
    for k, lang in enumerate(("de", "en")):
        body = ["<url>http://www.ted.com/talks/x</url>", "<keywords>talks</keywords>", "<talkid>1</talkid>",
                f"<title>{train[0][k]}</title>"] + [p[k] for p in train[1:]]
        (folder / f"train.tags.de-en.{lang}").write_text("\n".join(body) + "\n", encoding="utf-8")
        for j, name in enumerate(("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
                                  "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")):
            segs = "".join(f'<seg id="{i}"> {p[k].replace("&", "&amp;")} </seg>\n'
                           for i, p in enumerate(test[2 * j:2 * j + 2], 1))
            (folder / f"{name}.de-en.{lang}.xml").write_text(f"<mteval>\n<doc>\n{segs}</doc>\n</mteval>\n")
    return folder


def run_script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          env={**os.environ, "PATH": path, **(env or {})}, timeout=300)


def test_full_sentence_filter_keeps_examples_and_drops_headwords():
    assert is_full_sentence("Der Hund sieht das Haus.")
    assert not is_full_sentence("Hund {m}")                  # headword with annotation
    assert not is_full_sentence("Er tut etw.")                # placeholder
    assert not is_full_sentence("Ja!")                        # too short
    assert not is_full_sentence("Er kommt; sie geht.")        # alternatives


def test_read_ding_pairs_aligns_sub_entries(tmp_path):
    pairs = sentence_pairs(30)
    found = read_ding_pairs(write_ding(tmp_path / "de-en", pairs))
    assert sorted(found) == sorted(pairs)
    with pytest.raises(ValueError, match="no example-sentence pairs"):
        read_ding_pairs(write_ding(tmp_path / "empty", []))


def test_read_iwslt14_splits_like_fairseqs_recipe(tmp_path):
    pairs = sentence_pairs(80)
    splits = read_iwslt14(write_iwslt(tmp_path / "de-en", pairs))
    train_all = pairs[:-10]  # the title line is kept without its tags, the other tag lines dropped
    assert splits["valid"] == [p for i, p in enumerate(train_all, 1) if i % 23 == 0]
    assert len(splits["train"]) + len(splits["valid"]) == len(train_all)
    assert splits["test"] == pairs[-10:]
    with pytest.raises(FileNotFoundError, match="train.tags.de-en.de"):
        read_iwslt14(tmp_path / "nowhere")


def test_split_and_clean():
    pairs = sentence_pairs(50)
    splits = split_pairs(pairs, valid_size=5, test_size=10, seed=3)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [35, 5, 10]
    assert sorted(sum(splits.values(), [])) == sorted(pairs)
    with pytest.raises(ValueError, match="cannot hold out"):
        split_pairs(pairs, 30, 30)
    assert keep_for_training("a b c", "a b c d", ratio=1.5)
    assert not keep_for_training("a", "a b c", ratio=1.5)


def test_text_codec_round_trip(tmp_path):
    codes = tmp_path / "code"
    codes.write_text("#version: 0.2\nh u\nhu n\nhun d</w>\n")
    assert TextCodec("en").tokenize("The Dog’s ball.") == "the dog &apos;s ball ."  # escaped as tokenizer.perl
    codec = TextCodec("de", codes)
    encoded = codec.encode("Der Hund bellt.")
    assert "hund" in remove_bpe(encoded).split()
    assert codec.decode(encoded) == "der hund bellt."
    with pytest.raises(FileNotFoundError, match="BPE codes"):
        TextCodec("de", tmp_path / "missing")


def test_prepare_ding_script_makes_data_bin(tmp_path):
    ding = write_ding(tmp_path / "de-en", sentence_pairs(120))
    proc = run_script("prepare-ding.sh", str(tmp_path / "out"), "60", "--valid-size", "10", "--test-size", "20",
                      env={"DING_FILE": str(ding)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = tmp_path / "out" / "data-bin"
    for name in ("dict.de.txt", "dict.en.txt", "bpecodes", "train.de-en.de.bin", "test.de-en.en.idx",
                 "raw/test.de", "raw/test.en"):
        assert (data / name).is_file(), name
    assert len((data / "raw" / "test.en").read_text().splitlines()) == 20
    text = tmp_path / "out" / "text"
    assert len((text / "train.de").read_text().splitlines()) == 90
    assert all("@@" in line or line == line.lower() for line in (text / "train.de").read_text().splitlines())


def test_prepare_iwslt14_script_from_a_local_archive(tmp_path):
    source = write_iwslt(tmp_path / "src" / "de-en", sentence_pairs(150))
    archive = tmp_path / "de-en.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="de-en")
    proc = run_script("prepare-iwslt14.sh", str(tmp_path / "out"), "80", str(archive))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "data-bin" / "valid.de-en.de.bin").is_file()
    assert len((tmp_path / "out" / "text" / "test.en").read_text().splitlines()) == 10


def test_scripts_explain_usage_and_missing_inputs(tmp_path):
    proc = run_script("prepare-ding.sh")
    assert proc.returncode == 2 and "Usage: scripts/prepare-ding.sh OUT_DIR" in proc.stderr
    proc = run_script("prepare-ding.sh", str(tmp_path / "out"), env={"DING_FILE": str(tmp_path / "none")})
    assert proc.returncode != 0 and "DING_FILE" in proc.stderr and "is not a file" in proc.stderr
    proc = run_script("prepare-iwslt14.sh", str(tmp_path / "out"), "100", str(tmp_path / "missing.tgz"))
    assert proc.returncode != 0 and "missing.tgz" in proc.stderr


def test_corpus_preparation_imports_no_fairseq():
    code = ("import sys, editable_fairseq.prepare.corpus; "
            "print(sorted(m for m in sys.modules if m.startswith('fairseq')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
