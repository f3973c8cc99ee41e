"""Fixtures for the translation pipeline: a synthetic Ding-format corpus prepared by the real prepare script,
and the whole small recipe (train baseline, make edits, train editable, evaluate) run once through the real
shell scripts and console tools."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fairseq.conftest import TINY_ARCH, run_cli
from tests.fairseq.prepare.test_corpus import sentence_pairs, write_ding

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "scripts"
#: fairseq-train flags of the tiny CPU recipe (appended to the scripts' IWSLT recipe, so they win)
TINY_TRAIN = [*TINY_ARCH, "--cpu", "--dropout", "0.1", "--lr", "3e-3", "--warmup-updates", "20", "--max-tokens", "2000",
              "--num-workers", "0", "--seed", "1", "--disable-validation", "--no-save-optimizer-state"]


def run_script(name: str, *args: str, cwd: Path, check: bool = True, timeout: float = 300, env: dict | None = None):
    """Run ``scripts/NAME`` with this environment's console tools first on PATH (and ``env`` set)."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return run_cli(["bash", str(SCRIPTS / name), *map(str, args)], cwd=cwd, check=check, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """``scripts/prepare-ding.sh`` on a synthetic Ding file: 2000 German-English pairs, 300 BPE merges.

    Returns the data-bin folder (dictionaries, binarized splits, ``bpecodes``, ``raw/``).
    """
    root = tmp_path_factory.mktemp("corpus")
    ding = write_ding(root / "de-en", sentence_pairs(2000))
    env_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    run_cli(["bash", str(SCRIPTS / "prepare-ding.sh"), str(root / "ding"), "300", "--valid-size", "60",
             "--test-size", "60"], cwd=root, env={"PATH": env_path, "DING_FILE": str(ding)})
    return root / "ding" / "data-bin"


@dataclass
class Pipeline:
    root: Path
    data: Path
    baseline: Path
    editable: Path
    edits: Path        # folder with train.tsv and eval.tsv
    evaluation: Path   # folder with table.md and results.json
    stdout: str        # what evaluate.sh printed


@pytest.fixture(scope="session")
def pipeline(corpus: Path, tmp_path_factory) -> Pipeline:
    """The small recipe through the real scripts: baseline (120 updates), edit sets (k=4), editable training
    continued from the baseline (10 updates, alpha 1e-3), and the evaluation of both (3 edits, drawdown on
    30 test sentences, Test BLEU on all 60)."""
    root = tmp_path_factory.mktemp("pipeline")
    run_script("train-baseline.sh", corpus, root / "baseline", 120, *TINY_TRAIN, cwd=root)
    baseline = root / "baseline" / "checkpoint_last.pt"
    run_script("make-edits.sh", corpus, baseline, root / "edits", 30, 12, "--alternatives", "4", "--no-progress",
               cwd=root)
    run_script("train-editable.sh", corpus, root / "edits" / "train.tsv", root / "editable", "1e-3", 10, *TINY_TRAIN,
               "--lr", "3e-4", "--finetune-from-model", baseline, cwd=root)
    editable = root / "editable" / "checkpoint_last.pt"
    proc = run_script("evaluate.sh", corpus, root / "edits" / "eval.tsv", 3, 30, root / "eval", baseline, editable,
                      "--", "--beam", "2", "--bleu-size", "0", "--no-progress", cwd=root)
    return Pipeline(root, corpus, baseline, editable, root / "edits", root / "eval", proc.stdout)
