"""Two CPU ranks (gloo) training the toy model with editable_cross_entropy under torch's own
DistributedDataParallel, wrapped as fairseq's ``pytorch_ddp`` backend wraps model and criterion (the
criterion, which owns the editor's parameters, is wrapped too and called with the wrapped model).

    python torch_ddp_worker.py OUT_DIR PORT      -> OUT_DIR/rank{0,1}.pt

The editor learns both RMSProp hyper-parameters. Update 2 allows one editor step only: that step uses
the learning rate but not beta (RMSProp's first step has no running average), so beta takes no part
in the loss; torch DDP must still find a gradient for it, or it fails on the next update.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def worker(rank: int, out: str, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    from editable_fairseq.criterions.editable_cross_entropy import EditableCrossEntropyCriterion
    from editable_fairseq.edit_samples import EditSample
    from tests.fairseq.conftest import ToySetup, build_tiny_model, make_toy_task
    from tests.fairseq.toy_corpus import make_pair

    rng = random.Random(0)
    task = make_toy_task()
    setup = ToySetup(task, build_tiny_model(task, seed=0), [make_pair(rng) for _ in range(200)])
    enc = setup.encode_target
    task._edit_pool = [EditSample(setup.encode_source(s), enc(t.replace(" .", " here .")), (enc(t), enc(". " + t)))
                       for s, t in setup.pairs[:10]]
    criterion = EditableCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1, edit_learnable="all")
    model = DistributedDataParallel(setup.model, broadcast_buffers=False, find_unused_parameters=False)
    wrapped_criterion = DistributedDataParallel(criterion, broadcast_buffers=False, find_unused_parameters=False)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(criterion.parameters()), lr=3e-3)
    steps, beta_grad_nonzero = [], False
    for update in range(4):
        task._update_num = update
        criterion.edit_max_steps = 1 if update == 2 else 10  # update 2: one step, beta unused
        sample = setup.batch(setup.pairs[20 + 40 * update + 20 * rank:][:20])
        sample["id"] = sample["id"] + 1000 * rank
        model.train()
        optimizer.zero_grad()
        loss, sample_size, log = wrapped_criterion(model, sample)
        (loss / sample_size).backward()
        grad = criterion.editor.beta.raw.grad
        beta_grad_nonzero |= grad is not None and bool(grad.abs().sum() > 0)
        optimizer.step()
        steps.append(int(log["edit_steps"]))
    params = {f"model.{k}": v.detach().clone() for k, v in setup.model.state_dict().items()}
    params.update({f"criterion.{k}": v.detach().clone() for k, v in criterion.state_dict().items()})
    torch.save({"params": params, "steps": steps, "beta_grad_nonzero": beta_grad_nonzero},
               os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1], int(sys.argv[2])), nprocs=2, join=True)
