"""Fixtures for the fairseq plugin tests: a toy corpus, a small model trained in-process, CLI helpers."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from .toy_corpus import make_pair, write_corpus

BIN = Path(sys.executable).parent


def cli(name: str) -> str:
    """Path of a console script of the test's virtual environment (e.g. ``fairseq-train``)."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} not found next to {sys.executable}; is fairseq installed in this environment?")
    return str(path)


def run_cli(args: list[str], cwd: Path, timeout: float = 300, check: bool = True,
            env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run a console tool with one thread per process; on failure show the end of its output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    full_env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    full_env.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
                          input=stdin if stdin is not None else "")
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args[:2])} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
                    f"\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


TINY_ARCH = ["--arch", "transformer_iwslt_de_en", "--encoder-layers", "2", "--decoder-layers", "2",
             "--encoder-embed-dim", "64", "--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
             "--decoder-ffn-embed-dim", "128", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]


@pytest.fixture(scope="session")
def toy_data_bin(tmp_path_factory) -> Path:
    """The toy corpus binarized by the real ``fairseq-preprocess`` (joined dictionary)."""
    root = tmp_path_factory.mktemp("toy")
    write_corpus(root / "text")
    run_cli([cli("fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
             "--trainpref", "text/train", "--validpref", "text/valid", "--testpref", "text/test",
             "--destdir", "data-bin", "--joined-dictionary", "--workers", "1"], cwd=root)
    return root / "data-bin"


# --- in-process models ---------------------------------------------------------------------------------
@dataclass
class ToySetup:
    task: object            # EditableTranslationTask
    model: torch.nn.Module  # fairseq TransformerModel
    pairs: list             # (source text, target text)

    def encode_source(self, text: str) -> torch.Tensor:
        return self.task.src_dict.encode_line(text, add_if_not_exist=False).long()

    def encode_target(self, text: str) -> torch.Tensor:
        return self.task.tgt_dict.encode_line(text, add_if_not_exist=False).long()

    def batch(self, pairs: list) -> dict:
        """A fairseq training sample of ``pairs`` collated by LanguagePairDataset."""
        from fairseq.data import LanguagePairDataset

        cache = self.__dict__.setdefault("_encoded", {})
        for pair in pairs:
            if pair not in cache:
                cache[pair] = (self.encode_source(pair[0]), self.encode_target(pair[1]))
        src = [cache[p][0] for p in pairs]
        tgt = [cache[p][1] for p in pairs]
        dataset = LanguagePairDataset(src, [len(s) for s in src], self.task.src_dict, tgt, [len(t) for t in tgt],
                                      self.task.tgt_dict, shuffle=False)
        return dataset.collater([dataset[i] for i in range(len(pairs))])


def toy_dictionary():
    from fairseq.data import Dictionary

    from .toy_corpus import SOURCE_VERBS, SOURCE_WORDS, TARGET_VERBS, TARGET_WORDS

    d = Dictionary()
    for word in SOURCE_WORDS + SOURCE_VERBS + TARGET_WORDS + TARGET_VERBS + ["."]:
        d.add_symbol(word)
    d.finalize(padding_factor=8)
    return d


def make_toy_task(**cfg_overrides):
    """An ``editable_translation`` task over in-memory toy dictionaries (no data files)."""
    import editable_fairseq.tasks  # noqa: F401  (registers the task and criterion)
    from editable_fairseq.tasks.editable_translation import EditableTranslationConfig, EditableTranslationTask

    cfg = EditableTranslationConfig(data="unused", source_lang="de", target_lang="en", seed=1, **cfg_overrides)
    d = toy_dictionary()
    return EditableTranslationTask(cfg, d, d)


def tiny_model_args(**overrides) -> Namespace:
    from fairseq.models import ARCH_CONFIG_REGISTRY

    settings = dict(arch="transformer_iwslt_de_en", encoder_layers=2, decoder_layers=2, encoder_embed_dim=64,
                    decoder_embed_dim=64, encoder_ffn_embed_dim=128, decoder_ffn_embed_dim=128,
                    encoder_attention_heads=2, decoder_attention_heads=2, dropout=0.1,
                    max_source_positions=1024, max_target_positions=1024)
    args = Namespace(**{**settings, **overrides})
    ARCH_CONFIG_REGISTRY["transformer_iwslt_de_en"](args)
    return args


def build_tiny_model(task, seed: int = 0, **overrides) -> torch.nn.Module:
    from fairseq.models.transformer import TransformerModel

    torch.manual_seed(seed)
    return TransformerModel.build_model(tiny_model_args(**overrides), task)


def train_plain(setup: ToySetup, updates: int, batch_size: int = 64, lr: float = 3e-3, seed: int = 0) -> None:
    """Train ``setup.model`` with label-smoothed cross-entropy (fairseq's own criterion)."""
    from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion

    criterion = LabelSmoothedCrossEntropyCriterion(setup.task, sentence_avg=False, label_smoothing=0.1)
    optimizer = torch.optim.Adam(setup.model.parameters(), lr=lr)
    rng = random.Random(seed)
    setup.model.train()
    for _ in range(updates):
        loss, sample_size, _ = criterion(setup.model, setup.batch(rng.sample(setup.pairs, batch_size)))
        optimizer.zero_grad()
        (loss / sample_size).backward()
        optimizer.step()
    setup.model.eval()


@pytest.fixture(scope="session")
def trained_toy() -> ToySetup:
    """A 2+2-layer, 64-d Transformer trained for 200 updates on the toy corpus (about 15 s)."""
    rng = random.Random(0)
    task = make_toy_task()
    setup = ToySetup(task, build_tiny_model(task), [make_pair(rng) for _ in range(3000)])
    with torch.random.fork_rng():
        train_plain(setup, updates=200, lr=4e-3)
    return setup


@pytest.fixture
def fresh_toy(trained_toy) -> ToySetup:
    """A copy of the trained toy model that a test may change."""
    import copy

    return ToySetup(trained_toy.task, copy.deepcopy(trained_toy.model), trained_toy.pairs)
