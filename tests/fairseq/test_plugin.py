"""The package as a fairseq --user-dir: registration on import, flag names, weights-only allow-list."""
from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import editable_fairseq
import editable_fairseq.tasks  # noqa: F401  (registers the task and the criterion)
from editable_fairseq.checkpoints import SAFE_CHECKPOINT_GLOBALS


class Payload:
    """A class nobody allow-listed."""


def test_importing_registers_the_task_and_the_criterion():
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    assert TASK_REGISTRY["editable_translation"].__module__ == "editable_fairseq.tasks.editable_translation"
    assert CRITERION_REGISTRY["editable_cross_entropy"].__module__ == \
        "editable_fairseq.criterions.editable_cross_entropy"


def test_flags_have_the_documented_names_defaults_and_choices():
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    parser = argparse.ArgumentParser()
    TASK_REGISTRY["editable_translation"].add_args(parser)
    CRITERION_REGISTRY["editable_cross_entropy"].add_args(parser)
    args = parser.parse_args(["data-bin", "--edit-samples", "e.tsv", "--editable-layers", "penultimate"])
    assert (args.edit_samples, args.edit_alternatives, args.edit_temperature, args.edit_baseline) == \
        ("e.tsv", 32, 1.2, None)
    assert (args.edit_coef, args.loc_coef, args.edit_max_steps, args.editor, args.edit_lr) == \
        (100.0, 100.0, 10, "rmsprop", 1e-3)
    assert (args.editable_layers, args.edit_margin, args.edit_learnable) == ("penultimate", 0.0, "auto")
    with pytest.raises(SystemExit):
        parser.parse_args(["data-bin", "--editable-layers", "first"])
    help_text = parser.format_help()
    assert "{last,penultimate,output}" in help_text and "c_edit" in help_text and "c_loc" in help_text


def test_module_prints_the_user_dir(tmp_path):
    out = subprocess.run([sys.executable, "-m", "editable_fairseq"], capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    assert Path(out.stdout.strip()) == Path(editable_fairseq.__file__).resolve().parent


def test_weights_only_loading_allows_namespace_but_still_refuses_other_classes(tmp_path):
    assert argparse.Namespace in SAFE_CHECKPOINT_GLOBALS
    path = tmp_path / "ok.pt"
    torch.save({"cfg": {"model": argparse.Namespace(arch="transformer", dropout=0.3)}}, path)
    assert torch.load(path, weights_only=True)["cfg"]["model"].dropout == 0.3
    evil = tmp_path / "other.pt"
    torch.save({"x": Payload()}, evil)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(evil, weights_only=True)


def test_broadcast_allow_list_applies_inside_fairseq_broadcast_only():
    from fairseq.distributed import utils as distributed_utils
    from omegaconf import DictConfig

    assert getattr(distributed_utils.broadcast_object, "_editable_fairseq", False)
    assert DictConfig not in torch.serialization.get_safe_globals()
