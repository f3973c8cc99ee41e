"""editable-fairseq-patch: a fixed translation that stock fairseq-generate reproduces from the patched file,
the input checkpoint untouched, and clear errors that write nothing."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import editable_fairseq.tasks  # noqa: F401
from editable_core.errors import EDIT_FAILED_STATUS
from editable_fairseq.prepare.text import TextCodec

from tests.fairseq.conftest import cli, run_cli

PLUGIN = str(Path(editable_fairseq.__file__).resolve().parent)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _generate(data: Path, checkpoint: Path, cwd: Path) -> dict[int, str]:
    """Stock fairseq-generate on the test subset: sentence id -> de-BPE'd hypothesis."""
    proc = run_cli([cli("fairseq-generate"), str(data), "--user-dir", PLUGIN, "--path", str(checkpoint), "--cpu",
                    "--gen-subset", "test", "--beam", "5", "--batch-size", "64", "--remove-bpe"], cwd=cwd)
    return {int(line.split("\t")[0][2:]): line.split("\t")[2] for line in proc.stdout.splitlines()
            if line.startswith("H-")}


@pytest.fixture(scope="module")
def patched(pipeline, tmp_path_factory):
    """Patch test sentence 0 of the baseline: its reference with the object phrase swapped."""
    root = tmp_path_factory.mktemp("patch")
    source = (pipeline.data / "raw" / "test.de").read_text(encoding="utf-8").splitlines()[0]
    reference = (pipeline.data / "raw" / "test.en").read_text(encoding="utf-8").splitlines()[0]
    objects = ["the house", "a book", "the tree", "the cat", "an apple", "the car", "the letter"]
    present = next(o for o in objects if o in reference)
    other = next(o for o in objects if o != present and o.split()[0] == present.split()[0])
    desired = reference.replace(present, other)
    before = _sha(pipeline.baseline)
    out = root / "patched.pt"
    proc = run_cli([cli("editable-fairseq-patch"), str(pipeline.baseline), "--out", str(out), "--source", source,
                    "--target", desired, "--data", str(pipeline.data), "--alternatives", "8"], cwd=root)
    return root, source, desired, out, proc.stdout, before


def test_patched_checkpoint_makes_fairseq_generate_emit_the_desired_translation(pipeline, patched):
    root, source, desired, out, stdout, _ = patched
    assert f"  source:  {source}" in stdout and "success: True" in stdout and f"wrote {out}" in stdout
    hypotheses = _generate(pipeline.data, out, root)
    assert hypotheses[0] == TextCodec("en").tokenize(desired)
    assert f"  after:   {TextCodec('en').decode(TextCodec('en').tokenize(desired))}" in stdout


def test_patch_changes_only_the_edited_layer_and_leaves_the_input_alone(pipeline, patched):
    _, source, desired, out, _, before = patched
    assert _sha(pipeline.baseline) == before
    original = torch.load(pipeline.baseline, weights_only=True)
    new = torch.load(out, weights_only=True)  # still loads with weights-only loading
    changed = {k for k in original["model"] if not torch.equal(original["model"][k], new["model"][k])}
    assert changed and all(k.startswith("decoder.layers.1.") for k in changed)  # the last of 2 decoder layers
    assert new["extra_state"]["editable_patches"][-1]["target"] == desired
    assert not list(out.parent.glob(".*.tmp")), "no temporary file left behind"


def test_a_tsv_of_fixes_applies_them_one_after_another(pipeline, tmp_path):
    sources = (pipeline.data / "raw" / "test.de").read_text(encoding="utf-8").splitlines()[1:3]
    references = (pipeline.data / "raw" / "test.en").read_text(encoding="utf-8").splitlines()[1:3]
    desired = [references[0].replace("!", "?").replace(".", "?"), references[1]]
    pairs = tmp_path / "fixes.tsv"
    pairs.write_text("".join(f"{s}\t{t}\n" for s, t in zip(sources, desired)), encoding="utf-8")
    out = tmp_path / "patched.pt"
    proc = run_cli([cli("editable-fairseq-patch"), str(pipeline.baseline), "--out", str(out), "--pairs", str(pairs),
                    "--data", str(pipeline.data)], cwd=tmp_path)
    assert proc.stdout.count("success: True") == 2 and f"{pairs}:2" in proc.stdout
    hypotheses = _generate(pipeline.data, out, tmp_path)
    assert [hypotheses[1], hypotheses[2]] == [TextCodec("en").tokenize(t) for t in desired]


def test_bad_input_gives_a_clear_error_and_writes_nothing(pipeline, tmp_path):
    out = tmp_path / "patched.pt"
    source = "Der Hund sieht das Haus."
    bad_tsv = tmp_path / "bad.tsv"
    bad_tsv.write_text(f"{source}\tThe dog sees the house.\n{source}\n", encoding="utf-8")
    cases = [
        (["--pairs", str(bad_tsv)], f"{bad_tsv}:2: expected raw source<TAB>raw target, got 1 tab-separated field(s)"),
        (["--source", source, "--target", "The dog sees the 象."],
         "--target: the target 'The dog sees the 象.' has word-pieces the model's dictionary does not know: "
         "象 (a word the model cannot write)"),
        (["--source", source, "--target", "  "], "--target: the target is empty"),
    ]
    for args, message in cases:
        proc = run_cli([cli("editable-fairseq-patch"), str(pipeline.baseline), "--out", str(out), "--data",
                        str(pipeline.data), *args], cwd=tmp_path, check=False)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == f"editable-fairseq-patch: error: {message}"
        assert not out.exists()
    missing = tmp_path / "missing.pt"
    proc = run_cli([cli("editable-fairseq-patch"), str(missing), "--out", str(out), "--source", source, "--target",
                    "The dog."], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and f"checkpoint '{missing}' does not exist" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_fix_that_does_not_take_says_so_writes_nothing_and_exits_3(pipeline, tmp_path):
    """scripts/demo.sh tells this failure (by its exit status, 3) from any other one (1), and tries its next
    mistranslated sentence only then."""
    out = tmp_path / "patched.pt"
    source = (pipeline.data / "raw" / "test.de").read_text(encoding="utf-8").splitlines()[0]
    reference = (pipeline.data / "raw" / "test.en").read_text(encoding="utf-8").splitlines()[0]
    desired = " ".join(reversed(reference.rstrip(".!?").split())) + "."
    proc = run_cli([cli("editable-fairseq-patch"), str(pipeline.baseline), "--out", str(out), "--data",
                    str(pipeline.data), "--source", source, "--target", desired, "--alternatives", "4",
                    "--edit-lr", "1e-9", "--edit-max-steps", "1", "--rounds", "1"], cwd=tmp_path, check=False)
    assert proc.returncode == EDIT_FAILED_STATUS == 3, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "editable-fairseq-patch: error: --source/--target: the fix did not take within --rounds 1 x "
        f"--edit-max-steps 1 steps; {out} was not written")
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
