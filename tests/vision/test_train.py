"""Training: Editable Fine-Tuning keeps frozen parts fixed, checkpoints round-trip and resume exactly,
and the editable objective trains the editor's beta."""
from __future__ import annotations

import os

import pytest
import torch

from editable_vision import TrainConfig, Trainer
from editable_vision.checkpoint import module_state, read_checkpoint
from editable_vision.train import kl_to_teacher

from .conftest import SPEC, tiny_trainer

EXTRA_SPEC = {**SPEC, "extra_layer": 16}


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_editable_finetuning_leaves_frozen_parts_unchanged(digits):
    trainer = tiny_trainer(digits, "finetune", spec=EXTRA_SPEC, lr=1e-2, lr_extra=1e-1,
                           freeze=["stem", "chain1", "chain2", "chain3", "chain4"], max_batches=3)
    before = module_state(trainer.editable.module)
    # the teacher is a copy of the original network: L_base starts at exactly 0
    images = torch.stack([digits.train[i][0] for i in range(8)])
    with torch.no_grad():
        trainer.editable.module.eval()
        kl = kl_to_teacher(trainer.editable.module(images), trainer.teacher(images))
        assert kl.item() == pytest.approx(0, abs=1e-7)
    groups = trainer.optimizer.param_groups
    assert isinstance(trainer.optimizer, torch.optim.SGD) and [g["lr"] for g in groups] == [1e-2, 1e-1]
    assert all(g["momentum"] == 0.9 for g in groups)
    extra_ids = {id(p) for p in trainer.editable.module.extra.parameters()} | {id(trainer.editable.editor.beta.raw)}
    assert {id(p) for p in groups[1]["params"]} == extra_ids
    record = trainer.train_epoch()
    assert record["edit_steps"] > 0
    after = module_state(trainer.editable.module)
    frozen = [k for k in before if k.split(".")[0] in ("stem", "chain1", "chain2", "chain3", "chain4")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # weights and BN statistics
    trained = [k for k in before if k.split(".")[0] in ("extra", "head")]
    assert all(not torch.equal(before[k], after[k]) for k in trained)
    # the teacher never moves
    assert states_equal(module_state(trainer.teacher), before)


def test_unknown_freeze_part_and_bad_config(digits):
    with pytest.raises(ValueError, match=r"cannot freeze unknown part\(s\) \['chain9'\]"):
        tiny_trainer(digits, "finetune", freeze=["chain9"])
    with pytest.raises(ValueError, match="unknown training mode"):
        TrainConfig(mode="fancy")
    with pytest.raises(ValueError, match="backprop must be 'full', 'first_order' or 'truncated:m'"):
        TrainConfig(backprop="second_order")
    with pytest.raises(ValueError, match="loc_batch must be None"):
        TrainConfig(loc_batch=0)
    with pytest.raises(ValueError, match="unknown edit targets"):
        TrainConfig(targets="nearest")
    with pytest.raises(ValueError, match="need a rank distribution"):
        tiny_trainer(digits, "editable", targets="match-ranks")


def test_frozen_batch_norm_keeps_running_statistics_and_trains_the_rest(digits):
    with pytest.raises(ValueError, match="unknown batch-norm mode 'sync'"):
        TrainConfig(batch_norm="sync")
    trainer = tiny_trainer(digits, "editable", batch_norm="frozen", max_batches=2)
    before = module_state(trainer.editable.module)
    trainer.train_epoch()
    after = module_state(trainer.editable.module)
    statistics = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert statistics and all(torch.equal(before[k], after[k]) for k in statistics)
    assert all(not torch.equal(before[k], after[k]) for k in before if k not in statistics)  # weights, BN affine


def test_editable_training_step_trains_beta_and_reports_terms(digits):
    trainer = tiny_trainer(digits, "editable", c_edit=1.0, c_loc=1.0)
    beta = trainer.editable.editor.beta().item()
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    images, labels = next(iter(torch.utils.data.DataLoader(digits.train, batch_size=32)))
    stats = trainer.train_step(images, labels)
    assert {"l_base", "l_edit", "l_loc", "edit_steps", "edit_success"} <= set(stats)
    assert stats["loss"] == pytest.approx(stats["l_base"] + stats["l_edit"] + stats["l_loc"], rel=1e-5)
    for _ in range(3):
        trainer.train_step(images, labels)
    assert trainer.editable.editor.beta().item() != beta
    assert trainer.step == 4


def test_channels_last_changes_the_memory_layout_only(digits, tmp_path):
    images, labels = next(iter(torch.utils.data.DataLoader(digits.train, batch_size=32)))
    runs = {}
    for channels_last in (False, True):
        trainer = tiny_trainer(digits, "finetune", spec=EXTRA_SPEC, channels_last=channels_last, lr=1e-2)
        runs[channels_last] = trainer, [trainer.train_step(images, labels) for _ in range(3)]
    (nchw, nchw_stats), (nhwc, nhwc_stats) = runs[False], runs[True]
    convs = [p for p in nhwc.editable.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert any(not p.is_contiguous() for p in convs)  # (a 1-channel or 1x1 kernel is both)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in nhwc.teacher.parameters() if p.dim() == 4)
    assert all(p.is_contiguous() for p in nchw.editable.parameters())
    for ours, theirs in zip(nhwc_stats, nchw_stats):
        assert ours["edit_steps"] == theirs["edit_steps"] and ours["edit_success"] == theirs["edit_success"]
        for key in ("loss", "l_base", "l_edit", "l_loc"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
    for key, value in module_state(nhwc.editable).items():
        assert torch.allclose(value, module_state(nchw.editable)[key], rtol=1e-4, atol=1e-6), key
    # a checkpoint holds plain tensors: resumed either way, in the layout asked for
    path = str(tmp_path / "run.pt")
    nhwc.save(path)
    for channels_last in (False, True):
        resumed = Trainer.resume(path, digits, progress=False, channels_last=channels_last)
        assert states_equal(module_state(resumed.editable), module_state(nhwc.editable))
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert all(p.is_contiguous(memory_format=layout) for p in resumed.editable.parameters() if p.dim() == 4)


@pytest.mark.parametrize("mode,spec", [("editable", SPEC), ("finetune", EXTRA_SPEC)])
def test_checkpoint_resume_is_exact(digits, tmp_path, mode, spec):
    config = dict(epochs=2, max_batches=3, schedule="cosine", targets="random")
    if mode == "finetune":
        config.update(lr=1e-2, lr_extra=1e-1)
    torch.manual_seed(5)
    straight = tiny_trainer(digits, mode, spec=spec, **config)
    straight.fit()

    torch.manual_seed(5)
    first = tiny_trainer(digits, mode, spec=spec, **config)
    path = str(tmp_path / "run.pt")
    first.train_epoch()  # a run of 2 epochs, interrupted after its first checkpoint
    first.save(path)
    del first
    torch.manual_seed(123)  # whatever happens between the runs must not matter
    resumed = Trainer.resume(path, digits, progress=False)
    assert resumed.epoch == 1 and resumed.step == 3
    resumed.fit(path)

    assert states_equal(module_state(straight.editable), module_state(resumed.editable))
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]
    saved = read_checkpoint(path)
    assert saved["trainer"]["epoch"] == 2 and saved["model_spec"] == spec
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_resume_needs_a_training_checkpoint(digits, tmp_path):
    from editable_vision import save

    trainer = tiny_trainer(digits)
    save(trainer.editable, str(tmp_path / "model.pt"), SPEC)
    with pytest.raises(ValueError, match="no training state to resume"):
        Trainer.resume(str(tmp_path / "model.pt"), digits)
