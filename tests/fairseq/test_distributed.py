"""Distributed data parallel Editable Training on CPU: two worker processes, gloo.

fairseq on CPU: the default launcher spawns ``min(cuda devices, world size)`` = 0 processes, and its
``pytorch_ddp`` backend passes ``device_ids=[device_id]``, which torch's DistributedDataParallel refuses
for CPU modules. So each rank is started explicitly (``--distributed-no-spawn --distributed-rank R
--distributed-init-method tcp://...``) with ``--ddp-backend legacy_ddp`` (fairseq's own all-reduce after
backward), the real fairseq-train code path. torch's hook-based DDP (what ``pytorch_ddp`` uses on GPUs) is
exercised directly in a second test.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import cli
from .test_cli import json_lines, train_args, write_edits

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(commands: list[list[str]], cwd: Path, timeout: float = 240) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in commands]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs):
        if p.returncode != 0:
            pytest.fail(f"a rank exited {p.returncode}:\n{out[-4000:]}")
    return outputs


def ddp_commands(root: Path, data_bin: Path, edits: Path, max_update: int) -> list[list[str]]:
    port = free_port()
    commands = []
    for rank in range(2):
        args = train_args(data_bin, "ckpt_ddp", max_update, "--edit-samples", str(edits), "--update-freq", "1",
                          "--distributed-world-size", "2", "--distributed-rank", str(rank),
                          "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
                          "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp")
        assert args[0] == cli("fairseq-train")
        commands.append([sys.executable, str(HERE / "ddp_worker.py"), str(root / f"ddp_rank{rank}.pt"), *args[1:]])
    return commands


def assert_ranks_identical(root: Path, updates: int) -> dict:
    states = [torch.load(root / f"ddp_rank{rank}.pt", weights_only=True) for rank in range(2)]
    assert states[0]["num_updates"] == states[1]["num_updates"] == updates
    assert states[0]["model"].keys() == states[1]["model"].keys()
    for name in states[0]["model"]:
        assert torch.equal(states[0]["model"][name], states[1]["model"][name]), name
    beta = [s["criterion"]["editor.beta.raw"] for s in states]
    assert torch.equal(beta[0], beta[1]) and beta[0].abs().item() > 0, "beta trained, identically on both ranks"
    return states[0]


def test_two_gloo_workers_train_identical_parameters_and_editor_and_resume(toy_data_bin):
    root = toy_data_bin.parent
    edits = write_edits(root / "ddp_edits.tsv", root / "text")
    outputs = run_ranks(ddp_commands(root, toy_data_bin, edits, 5), cwd=root)
    inner = json_lines(outputs[0], "train_inner")
    assert [int(r["num_updates"]) for r in inner] == [1, 2, 3, 4, 5]
    assert all(float(r["wpb"]) > 800 for r in inner), "each update sums the two workers' batches"
    assert all("l_edit" in r and "editor_beta" in r for r in inner)
    state = assert_ranks_identical(root, 5)
    saved = torch.load(root / "ckpt_ddp" / "checkpoint_last.pt", weights_only=True)
    assert torch.equal(saved["criterion"]["editor.beta.raw"], state["criterion"]["editor.beta.raw"])

    # resume: rank 0 loads the checkpoint and fairseq sends it to rank 1 (torch.load, weights-only)
    outputs = run_ranks(ddp_commands(root, toy_data_bin, edits, 7), cwd=root)
    assert "Loaded checkpoint ckpt_ddp/checkpoint_last.pt (epoch 1 @ 5 updates)" in outputs[0]
    assert [int(r["num_updates"]) for r in json_lines(outputs[0], "train_inner")] == [6, 7]
    assert_ranks_identical(root, 7)


def test_torch_hook_based_ddp_syncs_model_and_editor_even_when_an_edit_leaves_beta_unused(tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "torch_ddp_worker.py"), str(tmp_path), str(free_port())],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for result in results:
        assert result["steps"][2] == 1 and any(s >= 2 for s in result["steps"]), result["steps"]
    for name in results[0]["params"]:
        assert torch.equal(results[0]["params"][name], results[1]["params"][name]), name
    assert results[0]["beta_grad_nonzero"]
