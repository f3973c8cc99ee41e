"""editable-fairseq-evaluate against a direct re-computation: the same edits made with the editable_fairseq
API, the test sentences decoded by fairseq's own task.inference_step in one batch, scored with sacrebleu."""
from __future__ import annotations

import json
import random

import pytest
import sacrebleu
import torch
from fairseq import checkpoint_utils
from sacremoses import MosesDetokenizer

import editable_fairseq.tasks  # noqa: F401  (registers the task; allow-lists what fairseq checkpoints pickle)
from editable_core import make_editor
from editable_fairseq.checkpoints import load_checkpoint
from editable_fairseq.edit_samples import read_edit_samples
from editable_fairseq.editing import HYPER_SHAPE, apply_translation_edit, edit_translation, editor_from_checkpoint
from editable_fairseq.prepare.text import remove_bpe

from tests.fairseq.conftest import cli, run_cli


def _translate(model, task, indices) -> list[str]:
    """One batch of all ``indices`` through ``task.inference_step`` (beam 2), de-BPE'd, detokenised."""
    from argparse import Namespace

    dataset = task.dataset("test")
    sample = dataset.collater([dataset[i] for i in indices])
    generator = task.build_generator([model], Namespace(beam=2))
    hypos = task.inference_step(generator, [model], sample)
    detok = MosesDetokenizer(lang="en")
    by_id = {int(i): detok.detokenize(remove_bpe(task.tgt_dict.string(h[0]["tokens"].int())).split(), unescape=True)
             for i, h in zip(sample["id"], hypos)}
    return [by_id[i] for i in indices]


def _bleu(translations, references):
    """sacrebleu's BLEUScore of :func:`_translate`'s output."""
    return sacrebleu.corpus_bleu(translations, [references], lowercase=True)


@pytest.mark.parametrize("row", [0, 1], ids=["baseline", "editable"])
def test_evaluator_numbers_agree_with_a_direct_recomputation(pipeline, row):
    result = json.loads((pipeline.evaluation / "results.json").read_text())["rows"][row]
    path = (pipeline.baseline, pipeline.editable)[row]
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(path)],
                                                                    arg_overrides={"data": str(pipeline.data)})
    model = models[0].eval()
    task.load_dataset("test")
    everything = list(range(len(task.dataset("test"))))
    indices = sorted(random.Random(1).sample(everything, 30))  # --test-size 30, --seed 1
    raw = (pipeline.data / "raw" / "test.en").read_text(encoding="utf-8").splitlines()
    normalised = [" ".join(line.replace("\u2019", "'").split()) for line in raw]  # as the training text
    references = [normalised[i] for i in indices]
    with torch.no_grad():
        unedited = _translate(model, task, indices)
        score = _bleu(unedited, references)
        assert score.score == pytest.approx(result["unedited_bleu"], abs=1e-6)
        assert score.sys_len / score.ref_len == pytest.approx(result["unedited_length_ratio"])
        # --bleu-size 0: the Test BLEU column is scored on every test sentence
        assert _bleu(_translate(model, task, everything), normalised).score == pytest.approx(result["test_bleu"],
                                                                                             abs=1e-6)

    if row == 0:  # a normally trained model: RMSProp, alpha 1e-3, nothing learned
        editor = make_editor("rmsprop", 1e-3, False, shape=HYPER_SHAPE)
    else:         # the editor Editable Training learned (beta) at the checkpoint's alpha
        editor, _ = editor_from_checkpoint(load_checkpoint(str(path)))
    samples = read_edit_samples(str(pipeline.edits / "eval.tsv"), task.src_dict, task.tgt_dict)
    for i in range(2):
        edit = edit_translation(model, samples[i], editor, part="last", max_steps=10)
        expected = result["edits"][i]
        assert (edit.success, edit.steps) == (expected["success"], expected["steps"])
        with apply_translation_edit(model, edit.params), torch.no_grad():
            edited = _translate(model, task, indices)
            score = _bleu(edited, references)
            assert score.score == pytest.approx(expected["bleu"], abs=1e-6)
            assert score.sys_len / score.ref_len == pytest.approx(expected["length_ratio"])
            changed = [j for j, (a, b) in enumerate(zip(edited, unedited)) if a != b]
            assert len(changed) == expected["changed"]
            gain = [sacrebleu.sentence_bleu(edited[j], [references[j]], lowercase=True).score
                    - sacrebleu.sentence_bleu(unedited[j], [references[j]], lowercase=True).score for j in changed]
            assert (sum(g > 0 for g in gain), sum(g < 0 for g in gain)) == (expected["improved"], expected["worsened"])
    successes = [e["success"] for e in result["edits"]]
    assert result["success_rate"] == pytest.approx(sum(successes) / len(successes))
    assert result["num_steps"] == pytest.approx(sum(e["steps"] for e in result["edits"]) / len(successes))
    for kind in ("changed", "improved", "worsened"):
        assert result[f"{kind}_fraction"] == pytest.approx(
            sum(e[kind] for e in result["edits"]) / (len(successes) * result["test_sentences"]))
    assert any(e["changed"] for e in result["edits"])


def test_evaluator_rejects_a_bad_edit_file_naming_file_and_line(pipeline, tmp_path):
    bad = tmp_path / "bad.tsv"
    lines = (pipeline.edits / "eval.tsv").read_text(encoding="utf-8").splitlines()
    bad.write_text(lines[0] + "\n" + lines[1].split("\t")[0] + "\n", encoding="utf-8")
    out = tmp_path / "r.json"
    proc = run_cli([cli("editable-fairseq-evaluate"), str(pipeline.data), "--path", str(pipeline.baseline),
                    "--edits", str(bad), "--num-edits", "1", "--json", str(out)], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and not out.exists()
    assert f"editable-fairseq-evaluate: error: {bad}:2: expected source<TAB>target<TAB>alternative_1" in proc.stderr
    proc = run_cli([cli("editable-fairseq-evaluate"), str(pipeline.data), "--path", str(tmp_path / "none.pt"),
                    "--edits", str(bad), "--json", str(out)], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and f"--path {tmp_path / 'none.pt'}: checkpoint does not exist" in proc.stderr
    assert not out.exists()
    proc = run_cli([cli("editable-fairseq-evaluate"), str(pipeline.data), "--path", str(pipeline.baseline),
                    "--edits", str(pipeline.edits / "eval.tsv"), "--bleu-size", "-1", "--json", str(out)],
                   cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "--bleu-size must be >= 0 (0: all sentences), got -1" in proc.stderr
    assert not out.exists()


def test_evaluator_decodes_a_subset_once_when_both_columns_share_it(pipeline, monkeypatch):
    """--test-size 0 --bleu-size N (N >= the subset's size) name the same sentences: one decoding serves both."""
    from editable_fairseq.cli import decoding, evaluate

    decodings = []
    translate = decoding.SentenceBatches.translate
    monkeypatch.setattr(decoding.SentenceBatches, "translate",
                        lambda self, *a, **k: decodings.append(len(self.indices)) or translate(self, *a, **k))
    size = len((pipeline.data / "raw" / "test.en").read_text(encoding="utf-8").splitlines())
    args = evaluate.build_parser().parse_args([str(pipeline.data), "--path", str(pipeline.baseline), "--edits",
                                               str(pipeline.edits / "eval.tsv"), "--num-edits", "1", "--beam", "2",
                                               "--test-size", "0", "--bleu-size", str(size + 5), "--no-progress"])
    row = evaluate.evaluate_checkpoint(str(pipeline.baseline), args)
    assert row.test_sentences == row.bleu_sentences == size and row.test_bleu == row.unedited_bleu
    assert decodings == [size] * (1 + (row.edits[0].steps > 0))  # the unedited model once, then the edit's
