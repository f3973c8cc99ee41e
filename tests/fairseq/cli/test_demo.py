"""scripts/demo.sh end to end on a synthetic Ding file with small sizes (slow: a few minutes on 2 cores).

The real demo (``make demo``: the Debian trans-de-en corpus, default sizes) is not a test."""
from __future__ import annotations

import pytest

from tests.fairseq.prepare.test_corpus import sentence_pairs, write_ding

from .conftest import run_script


@pytest.mark.slow
def test_demo_prints_the_table_a_worked_edit_and_the_stage_timings(tmp_path):
    ding = write_ding(tmp_path / "de-en", sentence_pairs(2400))
    env = {"DING_FILE": str(ding), "BASE_UPDATES": "60", "CONT_UPDATES": "4", "TRAIN_EDITS": "20", "EVAL_EDITS": "3",
           "TEST_SIZE": "40", "ALTERNATIVES": "4", "MERGES": "2000", "C": "100",
           "EDIT_LRS": "1e-3 3e-4", "LAYERS": "3", "FFN": "1024"}  # 60 updates of the default 2+2 model: no fix takes
    proc = run_script("demo.sh", tmp_path / "work", cwd=tmp_path, env=env, timeout=1200)
    out = proc.stdout
    assert "## Table 6 on the Ding corpus (CPU demo, beam 4:" in out
    assert "| Training procedure | Test BLEU | BLEU Drawdown | BLEU drop | Success rate | Num Steps |" in out
    for row in ("Baseline training, α=1e-3", "Editable, c_edit=c_loc=100, α=1e-3",
                "Editable, c_edit=c_loc=100, α=3e-4"):
        assert f"| {row} |" in out
    # the header reads the sizes from the checkpoints, so it names what trained the rows
    assert ("continued the\n## 60-update baseline for 4 updates at Adam 0.001 (warm-up 10), inverse_sqrt schedule,\n"
            "## dropout 0.1)") in out
    tested = len((tmp_path / "work" / "ding" / "data-bin" / "raw" / "test.en").read_text().splitlines())
    assert (f"Test BLEU on {tested} test sentences; drawdown ± its\n## standard error over 3 edits, each scored on 40 "
            "of those sentences") in out  # BLEU_SIZE=0: every test sentence
    assert "note:" not in proc.stderr
    assert "success: True" in out and (tmp_path / "work" / "patched.pt").is_file()
    worked = out[out.index("## One worked edit"):]
    desired = next(line for line in worked.splitlines() if line.startswith("  desired:")).split(":", 1)[1].strip()
    after = next(line for line in worked.splitlines() if line.startswith("  after:")).split(":", 1)[1].strip()
    assert after.lower().rstrip(".!?").split() == desired.lower().rstrip(".!?").split()
    for stage in ("prepare-corpus", "train-baseline", "continue-plain", "make-edits", "continue-editable-1e-3",
                  "continue-editable-3e-4", "evaluate", "find-mistranslation", "patch", "generate-patched"):
        assert stage in out.split("## Wall time per stage")[1]
