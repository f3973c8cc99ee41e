"""The real console tools end to end on a toy corpus made here: fairseq-preprocess, fairseq-train with
``--user-dir editable_fairseq`` (edit metrics in progress log, validation and tensorboard; --update-freq and
--max-tokens batching), resume with the editor's hyper-parameters intact, fairseq-generate and
fairseq-interactive on the checkpoint, all under torch's default weights-only loading."""
from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch

import editable_fairseq.tasks  # noqa: F401  (allow-lists what fairseq checkpoints need, for torch.load below)

from .conftest import TINY_ARCH, cli, run_cli

PLUGIN = str(Path(editable_fairseq.__file__).resolve().parent)
EDIT_METRICS = ("l_edit", "l_loc", "edit_success", "edit_steps", "editor_beta", "objective")


def write_edits(path: Path, text_dir: Path, count: int = 40, seed: int = 0) -> Path:
    """Edits from training pairs: the target swaps two words of the reference, which is an alternative."""
    rng = random.Random(seed)
    sources = (text_dir / "train.de").read_text().splitlines()[:count]
    references = (text_dir / "train.en").read_text().splitlines()[:count]
    with open(path, "w") as f:
        for source, reference in zip(sources, references):
            words = reference.split()
            i = rng.randrange(len(words) - 2)
            words[i], words[i + 1] = words[i + 1], words[i]
            shuffled = reference.split()
            rng.shuffle(shuffled)
            f.write("\t".join([source, " ".join(words), reference, " ".join(shuffled)]) + "\n")
    return path


def train_args(data_bin: Path, save_dir: str, max_update: int, *extra: str) -> list[str]:
    return [cli("fairseq-train"), str(data_bin), "--user-dir", PLUGIN, "--task", "editable_translation",
            "--criterion", "editable_cross_entropy", "--label-smoothing", "0.1", *TINY_ARCH, "--dropout", "0.1",
            "--cpu", "--optimizer", "adam", "--lr", "0.003", "--max-tokens", "800", "--update-freq", "2",
            "--max-update", str(max_update), "--save-dir", save_dir, "--no-epoch-checkpoints",
            "--log-format", "json", "--log-interval", "1", "--num-workers", "0", "--seed", "1", *extra]


def json_lines(output: str, tag: str) -> list[dict]:
    """The JSON records fairseq's json progress bar logged under ``tag`` (train_inner, valid, train)."""
    records = []
    for line in output.splitlines():
        if (f"| {tag} |" in line or f":{tag}:" in line) and "{" in line:
            records.append(json.loads(line[line.index("{"):]))
    return records


@pytest.fixture(scope="session")
def trained_run(toy_data_bin: Path):
    """6 updates of Editable Training by the real fairseq-train (update-freq 2, 800-token batches)."""
    root = toy_data_bin.parent
    edits = write_edits(root / "edits.tsv", root / "text")
    proc = run_cli(train_args(toy_data_bin, "ckpt", 6, "--edit-samples", str(edits), "--tensorboard-logdir", "tb"),
                   cwd=root)
    return root, edits, proc.stdout + proc.stderr


def test_training_logs_edit_metrics_in_progress_validation_and_tensorboard(trained_run):
    root, _, output = trained_run
    inner = json_lines(output, "train_inner")
    assert [int(r["num_updates"]) for r in inner] == [1, 2, 3, 4, 5, 6]
    valid = json_lines(output, "valid")
    assert valid, "validation ran"
    for record in inner:
        assert all(key in record for key in EDIT_METRICS), record
    for record in valid:  # fairseq prefixes validation metrics with the subset name
        assert all(f"valid_{key}" in record for key in EDIT_METRICS), record
    assert any(float(r["edit_steps"]) > 0 for r in inner), "edits that need steps were made"
    assert all(0 <= float(r["edit_success"]) <= 1 and float(r["l_loc"]) >= 0 for r in inner)
    # two micro-batches per update (--update-freq 2) of at most 800 tokens each
    assert all(800 < float(r["wpb"]) <= 1600 for r in inner)
    for split in ("train_inner", "valid"):
        events = b"".join(p.read_bytes() for p in (root / "tb" / split).glob("events.out.tfevents.*"))
        assert b"l_edit" in events and b"edit_success" in events and b"l_loc" in events, split


def test_checkpoint_holds_the_learned_editor_hyper_parameters(trained_run):
    root = trained_run[0]
    state = torch.load(root / "ckpt" / "checkpoint_last.pt", weights_only=True)  # no env var, no pickle
    assert state["cfg"]["criterion"]["_name"] == "editable_cross_entropy"
    beta = torch.sigmoid(state["criterion"]["editor.beta.raw"]).item()
    assert beta != pytest.approx(0.5, abs=1e-5), "beta (initialised at 0.5) is trained with the model"
    assert state["criterion"]["editor.lr.raw"].item() == pytest.approx(math.log(1e-3))


def test_resume_restores_the_editor_and_continues_exactly_like_an_uninterrupted_run(trained_run, toy_data_bin):
    root, edits, _ = trained_run
    shutil.copy(root / "ckpt" / "checkpoint_last.pt", root / "restore_me.pt")
    saved = torch.load(root / "restore_me.pt", weights_only=True)
    saved_beta = torch.sigmoid(saved["criterion"]["editor.beta.raw"]).item()
    proc = run_cli(train_args(toy_data_bin, "resumed", 8, "--edit-samples", str(edits),
                              "--restore-file", "restore_me.pt"), cwd=root)
    resumed = proc.stdout + proc.stderr
    assert "Loaded checkpoint restore_me.pt" in resumed and "@ 6 updates" in resumed
    after = json_lines(resumed, "train_inner")
    assert [int(r["num_updates"]) for r in after] == [7, 8]
    # the forward of update 7 used the restored beta (the optimizer step comes after)
    assert float(after[0]["editor_beta"]) == pytest.approx(saved_beta, abs=2e-6)

    straight = run_cli(train_args(toy_data_bin, "straight", 8, "--edit-samples", str(edits)), cwd=root)
    uninterrupted = {int(r["num_updates"]): r for r in json_lines(straight.stdout + straight.stderr, "train_inner")}
    for record in after:
        reference = uninterrupted[int(record["num_updates"])]
        for key in ("loss", "l_edit", "l_loc", "edit_steps", "edit_success", "editor_beta", "wpb"):
            assert record[key] == reference[key], (key, record[key], reference[key])


def test_checkpoint_generates_with_fairseq_generate_and_interactive(trained_run, toy_data_bin):
    root = trained_run[0]
    checkpoint = str(root / "ckpt" / "checkpoint_last.pt")
    common = ["--path", checkpoint, "--user-dir", PLUGIN, "--cpu", "--beam", "4"]
    # the checkpoint is an ordinary translation model: generate with fairseq's own task
    proc = run_cli([cli("fairseq-generate"), str(toy_data_bin), *common, "--task", "translation",
                    "--gen-subset", "test", "--batch-size", "16"], cwd=root)
    hypotheses = [line for line in proc.stdout.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == 40 and "BLEU" in proc.stdout + proc.stderr
    proc = run_cli([cli("fairseq-interactive"), str(toy_data_bin), *common, "--task", "editable_translation",
                    "--source-lang", "de", "--target-lang", "en"], cwd=root, stdin="ich hund sieht .\n")
    assert any(line.startswith("H-0") for line in proc.stdout.splitlines())


def test_without_the_plugin_torch_refuses_the_checkpoint_so_the_allow_list_is_what_loads_it(trained_run,
                                                                                           toy_data_bin):
    root = trained_run[0]
    proc = run_cli([cli("fairseq-generate"), str(toy_data_bin), "--path", str(root / "ckpt" / "checkpoint_last.pt"),
                    "--task", "translation", "--cpu", "--gen-subset", "test", "--batch-size", "16"],
                   cwd=root, check=False)
    assert proc.returncode != 0 and "Weights only load failed" in proc.stdout + proc.stderr


def test_a_malformed_edit_file_stops_training_naming_file_and_line(toy_data_bin, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("ich sieht .\ti sees .\tyou sees .\nich sieht .\ti sees .\n")
    proc = run_cli(train_args(toy_data_bin, str(tmp_path / "ckpt"), 2, "--edit-samples", str(bad)),
                   cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert f"{bad}:2: expected source<TAB>target<TAB>alternative_1" in proc.stdout + proc.stderr


def test_edit_baseline_makes_edits_on_the_fly_by_beam_search_and_sampling(trained_run, toy_data_bin, tmp_path):
    root = trained_run[0]
    proc = run_cli(train_args(toy_data_bin, str(tmp_path / "ckpt"), 2, "--edit-baseline",
                              str(root / "ckpt" / "checkpoint_last.pt"), "--edit-alternatives", "8",
                              "--edit-temperature", "1.2", "--disable-validation"), cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert "edits are made on the fly by" in output and "k=8 alternatives, temperature 1.20" in output
    inner = json_lines(output, "train_inner")
    assert len(inner) == 2 and all(key in inner[0] for key in EDIT_METRICS)
