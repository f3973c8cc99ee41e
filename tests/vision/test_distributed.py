"""Training and evaluation on two CPU processes (gloo, started by torchrun), against one process.

* ``ddp_worker.py``: Trainer steps under DistributedDataParallel equal one-process steps on the global
  batch, with batch-norm frozen (``batch_norm="frozen"``: eval-mode statistics, so a batch's loss does not
  depend on how it is split; SyncBatchNorm needs CUDA). The Editable Training objective, whose forward edits
  with ``create_graph=True``, runs inside DDP's forward; the steps include one where only one rank's edit
  takes editor steps and one where no rank's does (the editor's ``beta`` unused on a rank, then on all), and
  the ``first_order`` outer gradient. A sweep, edit generalisation and sequential curves split over the ranks
  equal one process's. A 2-process ``train`` checkpoint resumes exactly on 2 processes.
* That checkpoint resumes on one process with the promised warning; ``torchrun -m editable_vision evaluate``
  gives one process's rows; ``edit`` and the baselines refuse to run under torchrun.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from editable_core.files import temporaries
from editable_vision import distributed
from editable_vision.checkpoint import module_state, read_checkpoint
from editable_vision.cli import main

from .conftest import tiny_editable
from .ddp_worker import SCENARIOS, edits, evaluations, global_batch, make_trainer

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
TIMEOUT = 900  # seconds per launch: well under a minute on an idle 2-core machine, far more on a shared one


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT, env=ENV)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, list[dict]]:
    """The output folder of ``ddp_worker.py`` on 2 ranks, its process, and each rank's results."""
    out = tmp_path_factory.mktemp("ddp")
    proc = torchrun(str(Path(__file__).with_name("ddp_worker.py")), str(out), cwd=out)
    return out, proc, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def assert_close(state: dict, reference: dict) -> None:
    assert state.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_ddp_steps_equal_one_process_steps_on_the_global_batch(worker, digits, scenario):
    images, labels = global_batch(digits)
    reference = make_trainer(digits, scenario)
    assert type(reference.model).__name__ == "TrainingLoss"  # no process group here: no DDP
    beta = [reference.editable.editor.beta.raw.item()]
    for step in range(3):
        if not reference.config.edits:
            reference.train_step(images, labels)  # plain: the 16 images in one batch
        else:
            # each rank edits with its own sample: the objective is the mean of the two halves' objectives
            reference.optimizer.zero_grad(set_to_none=True)
            for rank in range(2):
                half = slice(8 * rank, 8 * rank + 8)
                reference.backward(images[half], labels[half], edits(reference, digits, rank, step), scale=0.5)
            reference.optimizer_step()
        expected = module_state(reference.editable)
        got = [r["steps"][scenario][step] for r in worker[2]]
        assert all(torch.equal(got[0]["state"][k], got[1]["state"][k]) for k in expected), "ranks in sync"
        assert_close(got[0]["state"], expected)
        beta.append(got[0]["state"]["editor.beta.raw"].item())
        if scenario != "plain":
            assert [g["stats"]["edit_steps"] > 0 for g in got] == [step == 1, step < 2]
    if scenario == "plain":
        assert beta == [beta[0]] * 4
    else:  # beta trained while some rank's edit took steps, untouched when none did (no gradient anywhere)
        assert beta[0] != beta[1] != beta[2] == beta[3]


def test_distributed_evaluation_equals_one_process(worker, digits):
    single = evaluations(digits)
    assert [r["num_edits"] for r in single["sweep"]] == [7, 7] and single["sweep"][0]["success_rate"] > 0
    assert single["generalisation"]["num_pairs"] == 5 and len(single["sequential"]) == 3
    for rank in worker[2]:
        assert {key: rank[key] for key in single} == single


def test_two_process_checkpoint_resumes_exactly(worker):
    d, proc, _ = worker
    assert proc.stdout.count("| epoch |") == 3, "rank 0 alone prints (3 runs)"
    assert "2 processes (gloo): 16 images per process and step, a global batch of 32" in proc.stderr
    straight, resumed = read_checkpoint(d / "straight.pt"), read_checkpoint(d / "run.pt")
    assert resumed["trainer"]["world_size"] == 2 and len(resumed["trainer"]["ranks"]) == 2
    assert resumed["trainer"]["epoch"] == 2 and resumed["trainer"]["step"] == 6
    for key, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    assert straight["state_dict"]["editor.beta.raw"].item() != 0  # the editor trained
    history = json.loads((d / "resumed.json").read_text())["history"]
    assert [h["loss"] for h in history] == [h["loss"] for h in straight["trainer"]["history"]]
    assert not temporaries(d / "run.pt") and not temporaries(d / "straight.pt")


def test_two_process_checkpoint_resumes_on_one_process_with_a_warning(worker, tmp_path, caplog):
    path = tmp_path / "one.pt"
    shutil.copy(worker[0] / "epoch1.pt", path)
    assert main(["train", "--resume", "--epochs", "2", "--device", "cpu", "--quiet", "--out", str(path)]) == 0
    assert "was saved by 2 process(es) and resumes on 1: the model, editor, optimizer, epoch 1, step 3" in caplog.text
    assert "the global batch is now 1 x 16 (it was 2 x 16)" in caplog.text
    saved = read_checkpoint(path)["trainer"]
    assert saved["epoch"] == 2 and saved["step"] == 6 and "world_size" not in saved


def test_torchrun_evaluate_gives_one_process_rows(worker, tmp_path):
    args = ["evaluate", "--checkpoint", f"ed={worker[0] / 'run.pt'}", "--editors", "trained,gd:1e-2",
            "--num-edits", "7", "--control-limit", "100", "--generalisation", "3", "--sequential", "3", "--runs", "3",
            "--device", "cpu"]
    proc = torchrun("-m", "editable_vision", *args, "--json", str(tmp_path / "two.json"), cwd=tmp_path)
    assert proc.stdout.count("| Training Procedure |") == 2, "rank 0 alone prints (table 3, generalisation)"
    assert main([*args, "--quiet", "--json", str(tmp_path / "one.json")]) == 0
    two, one = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("two", "one"))
    assert [r["num_edits"] for r in one["rows"]] == [7, 7] and len(one["sequential"]["ed"]) == 3
    assert {k: two[k] for k in ("rows", "generalisation", "sequential")} == \
        {k: one[k] for k in ("rows", "generalisation", "sequential")}


def test_without_torchrun_nothing_is_distributed():
    editable = tiny_editable()
    assert not distributed.launched() and distributed.current() == distributed.SINGLE
    assert distributed.shard(7, distributed.SINGLE) == range(7)
    assert [list(distributed.shard(7, distributed.Context(r, 2))) for r in range(2)] == [[0, 1, 2], [3, 4, 5, 6]]
    assert distributed.gather([1, 2], distributed.SINGLE) == [1, 2]
    assert distributed.wrap(editable, distributed.SINGLE, torch.device("cpu")) is editable


def test_edit_and_baselines_refuse_torchrun(monkeypatch, tmp_path, capsys):
    from editable_vision.baselines.__main__ import main as baselines

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["edit", "--checkpoint", str(tmp_path / "x.pt"), "--index", "0", "--label", "3", "--out",
                 str(tmp_path / "y.pt")]) == 1
    assert capsys.readouterr().err.strip() == ("[rank 1] python -m editable_vision edit: error: edit runs in one "
                                               "process: run it without torchrun")
    assert baselines(["table3"]) == 1
    assert "table3 runs in one process: run it without torchrun" in capsys.readouterr().err
    assert not torch.distributed.is_initialized()
