"""The pipeline scripts: usage lines, missing-input messages, and the small recipe end to end (edit sets,
training, Table-6-shaped evaluation) through the real shell scripts and console tools."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import editable_fairseq.tasks  # noqa: F401  (allow-lists what fairseq checkpoints need, for torch.load below)
from editable_fairseq.edit_samples import read_edit_samples

from .conftest import run_script

USAGE = {
    "train-baseline.sh": "DATA_BIN SAVE_DIR MAX_UPDATE",
    "train-editable.sh": "DATA_BIN TRAIN_EDITS SAVE_DIR EDIT_LR MAX_UPDATE",
    "make-edits.sh": "DATA_BIN BASELINE_CHECKPOINT OUT_DIR TRAIN_SIZE EVAL_SIZE",
    "evaluate.sh": "DATA_BIN EVAL_EDITS NUM_EDITS TEST_SIZE OUT_DIR CHECKPOINT...",
    "demo.sh": "WORKDIR",
}


@pytest.mark.parametrize("script", sorted(USAGE))
def test_each_script_prints_its_usage_line_without_arguments(script, tmp_path):
    proc = run_script(script, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"Usage: scripts/{script} {USAGE[script]}")


def test_each_step_names_the_script_that_makes_its_missing_input(tmp_path, corpus):
    missing = tmp_path / "nothing"
    cases = [
        (("train-baseline.sh", missing, tmp_path / "s", 10), f"missing {missing}/dict.en.txt (made by "
                                                             "scripts/prepare-iwslt14.sh or scripts/prepare-ding.sh)"),
        (("train-editable.sh", corpus, missing, tmp_path / "s", "1e-3", 10),
         f"missing {missing} (made by scripts/make-edits.sh)"),
        (("make-edits.sh", corpus, missing, tmp_path / "e", 5, 5),
         f"missing {missing} (made by scripts/train-baseline.sh)"),
        (("evaluate.sh", corpus, missing, 3, 0, tmp_path / "o", missing),
         f"missing {missing} (made by scripts/train-baseline.sh or scripts/train-editable.sh)"),
    ]
    for args, message in cases:
        proc = run_script(*args, cwd=tmp_path, check=False)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
    assert not (tmp_path / "s").exists() and not (tmp_path / "e").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("env, message", [
    ({"CONT_SCHEDULE": "cosine"}, "CONT_SCHEDULE must be inverse_sqrt or linear, got 'cosine'"),
    ({"DEVICE": "gpu"}, "DEVICE must be cpu or cuda, got 'gpu'"),
])
def test_demo_names_a_bad_setting_before_it_writes_anything(tmp_path, env, message):
    proc = run_script("demo.sh", tmp_path / "work", cwd=tmp_path, check=False, env=env)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not (tmp_path / "work").exists()


def _fields(path: Path) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_edit_sets_have_the_task_shape_and_share_no_source(pipeline):
    train, evaluation = _fields(pipeline.edits / "train.tsv"), _fields(pipeline.edits / "eval.tsv")
    assert len(train) == 30 and len(evaluation) == 12
    for row in train + evaluation:
        assert 3 <= len(row) <= 2 + 4, row            # source, target, 1..k=4 alternatives
        assert all(field.strip() for field in row)
        assert row[1] not in row[2:] or len(row) == 3  # the sampled target is not among its alternatives
    sources = [row[0] for row in train], [row[0] for row in evaluation]
    assert len(set(sources[0])) == 30 and len(set(sources[1])) == 12
    assert not set(sources[0]) & set(sources[1]), "train and evaluation edits share a source sentence"
    valid = set((pipeline.data.parent / "text" / "valid.de").read_text(encoding="utf-8").splitlines())
    assert set(sources[1]) <= valid, "evaluation edits come from the valid subset"
    # the task reads both files (same dictionaries, no <unk>)
    from fairseq.data import Dictionary

    d = Dictionary.load(str(pipeline.data / "dict.en.txt"))
    for name in ("train.tsv", "eval.tsv"):
        samples = read_edit_samples(str(pipeline.edits / name), d, d)
        assert all(int((t == d.unk()).sum()) == 0 for s in samples for t in (s.source, s.target, *s.alternatives))


def test_editable_training_continued_from_the_baseline_with_the_table_6_settings(pipeline):
    state = torch.load(pipeline.editable, weights_only=True)
    criterion = state["cfg"]["criterion"]
    assert criterion["_name"] == "editable_cross_entropy"
    assert (criterion["loc_coef"], criterion["edit_lr"], criterion["editable_layers"]) == (100.0, 1e-3, "last")
    assert state["cfg"]["model"].arch == "transformer_iwslt_de_en"
    assert state["optimizer_history"][-1]["num_updates"] == 10


def test_evaluate_script_prints_and_writes_the_table_6_comparison(pipeline):
    table = (pipeline.evaluation / "table.md").read_text(encoding="utf-8").splitlines()
    assert table[0] == "| Training procedure | Test BLEU | BLEU Drawdown | BLEU drop | Success rate | Num Steps |"
    assert table[2].startswith("| Baseline training, α=0.001 |")
    assert table[3].startswith("| Editable, c_loc=100, α=0.001 |")
    assert "\n".join(table) in pipeline.stdout
    rows = json.loads((pipeline.evaluation / "results.json").read_text())["rows"]
    assert [r["num_edits"] for r in rows] == [3, 3] and [r["test_sentences"] for r in rows] == [30, 30]
    assert [r["bleu_sentences"] for r in rows] == [60, 60]  # --bleu-size 0: the Test BLEU column on all of them
    for row, line in zip(rows, table[2:]):
        assert 0 <= row["test_bleu"] <= 100 + 1e-9 and row["bleu_drawdown"] >= 0 and 0 <= row["num_steps"] <= 10
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1:] == [f"{row['test_bleu']:.2f}", f"{row['bleu_drawdown']:.2f} ± {row['bleu_drawdown_se']:.2f}",
                             f"{row['bleu_drop']:.2f} ± {row['bleu_drop_se']:.2f}",
                             f"{100 * row['success_rate']:.0f}%", f"{row['num_steps']:.2f}"]
        assert row["bleu_drawdown"] == pytest.approx(
            sum(abs(e["bleu"] - row["unedited_bleu"]) for e in row["edits"]) / 3)
        changes = torch.tensor([abs(e["bleu"] - row["unedited_bleu"]) for e in row["edits"]], dtype=torch.float64)
        assert row["bleu_drawdown_se"] == pytest.approx((changes.std() / 3 ** 0.5).item(), abs=1e-9)
        edited = torch.tensor([e["bleu"] for e in row["edits"]], dtype=torch.float64)  # the authors' measure
        assert row["bleu_drop"] == pytest.approx(row["unedited_bleu"] - edited.mean().item(), abs=1e-9)
        assert row["bleu_drop_se"] == pytest.approx((edited.std() / 3 ** 0.5).item(), abs=1e-9)
        assert abs(row["bleu_drop"]) <= row["bleu_drawdown"] + 1e-9  # |mean change| <= mean |change|
    assert rows[0]["test_bleu"] > 50, "the tiny baseline learns the synthetic corpus"
