"""Tiny settings shared by the vision tests: 8x8 digits and a width-4 CIFAR ResNet-18."""
from __future__ import annotations

import pytest
import torch

from editable_core import make_editor
from editable_vision import TrainConfig, Trainer, VisionEditable, build_model, load_digits

SPEC = {"arch": "cifar_resnet18", "num_classes": 10, "in_channels": 1, "width": 4}
DATA_SPEC = {"name": "digits", "image_size": 8, "seed": 0}


@pytest.fixture(scope="session")
def digits():
    return load_digits(image_size=8)


def tiny_editable(part="chain3", editor="rmsprop", lr=1e-2, seed=0, spec=None) -> VisionEditable:
    torch.manual_seed(seed)
    model = build_model(spec or SPEC)
    return VisionEditable(model, part, make_editor(editor, lr, "auto" if editor == "rmsprop" else False),
                          10, input_shape=(1, 8, 8))


def tiny_trainer(data, mode="plain", spec=None, channels_last=False, **config) -> Trainer:
    spec = dict(spec or SPEC)
    editable = tiny_editable("extra" if spec.get("extra_layer") else "chain3", spec=spec)
    config = TrainConfig(mode=mode, **{"epochs": 1, "batch_size": 64, "max_batches": 4, "schedule": "constant",
                                       **config})
    return Trainer(editable, data, config, model_spec=spec, data_spec=DATA_SPEC, progress=False,
                   channels_last=channels_last)


@pytest.fixture(scope="session")
def trained(digits):
    """A width-4 model trained plainly for a few epochs (test error well below chance), in eval mode."""
    torch.manual_seed(0)
    trainer = tiny_trainer(digits, epochs=6, max_batches=None, lr=3e-3)
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        trainer.fit()
    return trainer.editable.eval()
