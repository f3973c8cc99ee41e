"""Two CPU ranks (gloo) under torchrun, for tests/vision/test_distributed.py:

    torchrun --standalone --nproc-per-node 2 tests/vision/ddp_worker.py OUT_DIR   -> OUT_DIR/rank{0,1}.pt, OUT_DIR/*.pt

* Trainer steps under DistributedDataParallel on fixed batches and edits (:func:`scenarios`): each rank takes
  its half of a 16-image global batch and its own edit; the parameters (model and editor) after every step
  are saved for the test to compare with one process.
* A small editor sweep, edit generalisation and sequential curves, their work shared out (:func:`evaluations`).
* ``python -m editable_vision train`` through :func:`editable_vision.cli.main` in the same process group
  (:func:`cli_runs`): 2 epochs straight, and 1 epoch resumed for a second.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

EXTRA_SPEC = {"arch": "cifar_resnet18", "num_classes": 10, "in_channels": 1, "width": 4, "extra_layer": 16}
#: scenario -> (training mode, config): every mode that trains, a cheaper outer gradient (--edit-backprop) and
#: the model in channels-last memory (--channels-last)
SCENARIOS = {"plain": ("plain", {}), "editable": ("editable", {}),
             "first_order": ("editable", {"backprop": "first_order"}),
             "finetune": ("finetune", {"lr": 1e-2, "lr_extra": 1e-1}),
             "channels_last": ("editable", {"channels_last": True})}
#: a tiny Editable Training run of 3 steps per epoch at a constant learning rate (a 1-epoch run resumed for a
#: 2nd is then the 2-epoch run)
TINY = ["--width", "4", "--image-size", "8", "--batch-size", "16", "--max-batches", "3", "--schedule", "constant",
        "--device", "cpu"]


def global_batch(data) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 16 training images (unaugmented) and labels: the global batch of every step."""
    return data.train.images[:16], data.train.labels[:16]


def make_trainer(data, scenario: str):
    """The trainer of a scenario, built identically in every process (batch-norm frozen)."""
    from tests.vision.conftest import SPEC, tiny_trainer

    mode, config = SCENARIOS[scenario]
    torch.manual_seed(0)
    return tiny_trainer(data, mode, spec=EXTRA_SPEC if mode == "finetune" else SPEC, batch_norm="frozen",
                        c_edit=1.0, c_loc=1.0, **config)


def edits(trainer, data, rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s edit at ``step``: test image ``rank``, relabelled. Step 0: rank 0's edit already
    holds (its current prediction, no editor step) while rank 1's needs steps; step 1: both need steps;
    step 2: both already hold, so no rank uses the editor's beta."""
    image = data.test.images[rank:rank + 1]
    prediction = int(trainer.editable.predict(image))
    holds = (step == 0 and rank == 0) or step == 2
    return image, torch.tensor([prediction if holds else (prediction + 3 + rank) % 10])


def scenarios(data, rank: int, world: int) -> dict[str, list[dict]]:
    """Three steps per scenario; returns ``{scenario: [{"state": ..., "stats": ...} per step]}``."""
    from editable_vision.checkpoint import module_state

    images, labels = global_batch(data)
    out = {}
    for scenario in SCENARIOS:
        trainer = make_trainer(data, scenario)
        assert type(trainer.model).__name__ == ("DistributedDataParallel" if world > 1 else "TrainingLoss")
        records = []
        for step in range(3):
            half = slice(rank * 8, rank * 8 + 8)
            edit = edits(trainer, data, rank, step) if trainer.config.edits else None
            stats = trainer.train_step(images[half], labels[half], edit)
            records.append({"state": module_state(trainer.editable), "stats": stats})
        out[scenario] = records
    return out


def evaluations(data) -> dict:
    """An editor x learning-rate sweep of 7 edits (Table 1's raw material), edit generalisation on 5 pairs
    and 3 sequential-edit curves of a tiny model, each shared out over the ranks in a process group."""
    from editable_vision.evaluate import generalisation, make_edit_set, sequential_curves, sweep
    from tests.vision.conftest import tiny_editable

    editable = tiny_editable(seed=3).eval()
    images, labels = data.test.images[:40], data.test.labels[:40]
    edit_set = make_edit_set(editable, images, 7, seed=11)
    rows = sweep(editable, images, labels, edit_set, editors=("gd", "rmsprop"),
                 lrs={"gd": (1e-2,), "rmsprop": (1e-2,)}, progress=False)
    pairs = make_edit_set(editable, images, 5, seed=7)
    found = generalisation(editable, images, pairs, data.augment, num_augmentations=3, seed=1, progress=False)
    curves = sequential_curves(editable, images, labels, 4, runs=3, seed=2, progress=False)
    return {"sweep": [row.as_dict() for row in rows], "generalisation": found.as_dict(), "sequential": curves}


def cli_runs(out: Path, rank: int) -> None:
    """Editable Training through the command line: 2 epochs straight; 1 epoch (copied to epoch1.pt) resumed
    for a second."""
    from editable_vision.cli import main

    train = ["train", "--mode", "editable", *TINY]
    # the first call sets up logging: info on rank 0 (the others log warnings only, whatever the flags say)
    assert main([*train, "--epochs", "2", "--out", str(out / "straight.pt")]) == 0
    assert main([*train, "--epochs", "1", "--quiet", "--out", str(out / "run.pt")]) == 0
    if rank == 0:
        shutil.copy(out / "run.pt", out / "epoch1.pt")
    dist.barrier()
    assert main(["train", "--resume", "--epochs", "2", "--device", "cpu", "--quiet", "--out", str(out / "run.pt"),
                 "--json", str(out / "resumed.json")]) == 0


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    from editable_vision import load_digits

    data = load_digits(image_size=8)
    torch.save({"steps": scenarios(data, rank, world), **evaluations(data)}, out / f"rank{rank}.pt")
    cli_runs(out, rank)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
