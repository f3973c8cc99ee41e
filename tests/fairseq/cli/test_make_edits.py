"""editable-fairseq-make-edits: bad requests are refused with the offending flag named, writing nothing."""
from __future__ import annotations

from tests.fairseq.conftest import cli, run_cli


def test_too_many_edits_for_the_subset_names_the_flag_and_writes_nothing(pipeline, tmp_path):
    proc = run_cli([cli("editable-fairseq-make-edits"), str(pipeline.data), "--path", str(pipeline.baseline),
                    "--train-out", str(tmp_path / "t.tsv"), "--train-size", "2", "--eval-out",
                    str(tmp_path / "e.tsv"), "--eval-size", "500", "--alternatives", "2", "--no-progress"],
                   cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "editable-fairseq-make-edits: error: --eval-size 500: only" in proc.stderr
    assert not (tmp_path / "e.tsv").exists() and not list(tmp_path.glob(".*.tmp"))


def test_missing_checkpoint_and_unpaired_flags_are_named(pipeline, tmp_path):
    proc = run_cli([cli("editable-fairseq-make-edits"), str(pipeline.data), "--path", str(tmp_path / "none.pt"),
                    "--train-out", str(tmp_path / "t.tsv"), "--train-size", "2"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and f"checkpoint '{tmp_path / 'none.pt'}' does not exist" in proc.stderr
    proc = run_cli([cli("editable-fairseq-make-edits"), str(pipeline.data), "--path", str(pipeline.baseline),
                    "--eval-out", str(tmp_path / "e.tsv")], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "--eval-out and --eval-size >= 1 go together" in proc.stderr
    assert not list(tmp_path.glob("*.tsv"))
