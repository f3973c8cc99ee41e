"""No code runs from a checkpoint's config: with the plugin imported, every string fairseq would ``eval`` while
building a model is read as a literal, through the plugin's tools and stock fairseq-generate/-interactive."""
from __future__ import annotations

import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

import editable_fairseq.tasks  # noqa: F401  (the plugin: installs the literal config reader)
from editable_fairseq.literal_config import UnsafeConfigValue, literal, safe_eval

from .conftest import TINY_ARCH, cli, run_cli

PLUGIN = str(Path(editable_fairseq.__file__).resolve().parent)
PAYLOAD = "[__import__('os').system('touch {marker}') + 10]"


@pytest.fixture(scope="module")
def checkpoint(toy_data_bin: Path, tmp_path_factory) -> Path:
    """One epoch of a plain fairseq translation model (``cfg.model`` is an ``argparse.Namespace``).

    A whole epoch, not ``--max-update 1``: stopping mid-epoch leaves fairseq's prefetch thread inside torch at
    interpreter exit, which sometimes aborts the process ("terminate called without an active exception")."""
    root = tmp_path_factory.mktemp("literal")
    run_cli([cli("fairseq-train"), str(toy_data_bin), "--task", "translation", "--user-dir", PLUGIN, *TINY_ARCH,
             "--cpu", "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "800", "--max-epoch", "1",
             "--save-dir", "ckpt", "--no-epoch-checkpoints", "--disable-validation", "--no-save-optimizer-state",
             "--num-workers", "0"], cwd=root)
    return root / "ckpt" / "checkpoint_last.pt"


def craft(checkpoint: Path, folder: Path, field: str = "adaptive_softmax_cutoff") -> tuple[Path, Path]:
    """A checkpoint that loads with weights-only unpickling and whose ``cfg.model.FIELD`` is code."""
    marker = folder / "PWNED"
    state = torch.load(checkpoint, weights_only=True)
    setattr(state["cfg"]["model"], field, PAYLOAD.format(marker=marker))
    evil = folder / "evil.pt"
    torch.save(state, evil)
    return evil, marker


def test_stock_fairseq_without_the_plugin_runs_the_crafted_config_as_code(checkpoint, toy_data_bin, tmp_path):
    """The control: the payload is live, so the tests below that find no marker could fail."""
    evil, marker = craft(checkpoint, tmp_path)
    code = ("import argparse, sys, torch; torch.serialization.add_safe_globals([argparse.Namespace]); "
            "from fairseq import checkpoint_utils; "
            "checkpoint_utils.load_model_ensemble_and_task([sys.argv[1]], arg_overrides={'data': sys.argv[2]})")
    proc = subprocess.run([sys.executable, "-c", code, str(evil), str(toy_data_bin)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "editable_fairseq" not in proc.stderr
    assert marker.exists(), proc.stderr[-2000:]


TOOLS = {
    "editable-fairseq-patch": lambda evil, data, tmp: [cli("editable-fairseq-patch"), str(evil), "--out",
                                                        str(tmp / "out.pt"), "--source", "ich sieht .",
                                                        "--target", "i sees .", "--data", str(data)],
    "editable-fairseq-evaluate": lambda evil, data, tmp: [cli("editable-fairseq-evaluate"), str(data), "--path",
                                                           str(evil), "--edits", str(evil), "--num-edits", "1"],
    "editable-fairseq-make-edits": lambda evil, data, tmp: [cli("editable-fairseq-make-edits"), str(data), "--path",
                                                             str(evil), "--eval-out", str(tmp / "e.tsv"),
                                                             "--eval-size", "1"],
    "fairseq-generate": lambda evil, data, tmp: [cli("fairseq-generate"), str(data), "--user-dir", PLUGIN,
                                                  "--path", str(evil), "--cpu", "--gen-subset", "test"],
    "fairseq-interactive": lambda evil, data, tmp: [cli("fairseq-interactive"), str(data), "--user-dir", PLUGIN,
                                                     "--path", str(evil), "--cpu", "--source-lang", "de",
                                                     "--target-lang", "en"],
}


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_no_entry_point_runs_code_from_a_checkpoint_config(tool, checkpoint, toy_data_bin, tmp_path):
    evil, marker = craft(checkpoint, tmp_path)
    proc = run_cli(TOOLS[tool](evil, toy_data_bin, tmp_path), cwd=tmp_path, check=False, stdin="ich sieht .\n")
    assert not marker.exists()
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert f"checkpoint {evil}: config field cfg.adaptive_softmax_cutoff " \
           "(fairseq/models/transformer/transformer_decoder.py:" in line
    assert "is not a literal; fairseq would run it as Python code, so it was refused" in line
    if tool.startswith("editable-"):
        assert line.startswith(f"{tool}: error: checkpoint {evil}") and "Traceback" not in proc.stderr
        assert not (tmp_path / "out.pt").exists() and not (tmp_path / "e.tsv").exists()


def test_bare_eval_in_fairseq_models_reads_literals_and_refuses_code(tmp_path):
    """fconv evaluates ``encoder_layers`` with a bare ``eval``: its own default ``[(256, 3)] * 4`` still builds."""
    from fairseq.models import ARCH_CONFIG_REGISTRY
    from fairseq.models.fconv import FConvModel

    from .conftest import make_toy_task

    task = make_toy_task()
    args = Namespace(arch="fconv_iwslt_de_en", max_source_positions=1024, max_target_positions=1024)
    ARCH_CONFIG_REGISTRY["fconv_iwslt_de_en"](args)
    assert FConvModel.build_model(args, task).encoder.convolutions[3].kernel_size == (3,)
    marker = tmp_path / "PWNED"
    args.encoder_layers = PAYLOAD.format(marker=marker)
    with pytest.raises(UnsafeConfigValue, match=r"config field args\.encoder_layers \(fairseq/models/fconv\.py:"):
        FConvModel.build_model(args, task)
    assert not marker.exists()


def test_every_fairseq_module_that_evaluates_config_strings_is_covered():
    """Each imported fairseq module that calls ``eval(`` sees the literal reader; nobody holds the originals."""
    from fairseq import utils

    from editable_fairseq import literal_config

    calling = 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "fairseq" or name.startswith(("fairseq.", "fairseq_cli"))):
            continue
        source = Path(getattr(module, "__file__", None) or "/nonexistent")
        if source.suffix == ".py" and re.search(r"(?<![\w.])eval\(", source.read_text(encoding="utf-8")):
            calling += 1
            assert vars(module).get("eval") is safe_eval, name
        for helper in literal_config.EVALUATORS:
            held = vars(module).get(helper)
            assert held is None or held is getattr(literal_config, helper) or \
                held.__module__ == "fairseq.dataclass.utils", f"{name}.{helper}"
    assert calling >= 10  # fconv, fconv_self_att, lightconv_lm, transformer_lm, wav2vec, hubert, optimizers ...
    assert utils.eval_str_list("[1000, 5000]", type=int) == [1000, 5000]
    assert utils.eval_bool("1") is True and utils.eval_str_dict("{'a': 1}") == {"a": 1}


@pytest.mark.parametrize("text, value", [
    ("[1000, 5000]", [1000, 5000]), ("(0.9, 0.98)", (0.9, 0.98)), ("1e-8", 1e-8), ("-3", -3), ("'x'", "x"),
    ("{'a': [1]}", {"a": [1]}), ("True", True), ("None", None), ("[(512, 3)] * 2", [(512, 3), (512, 3)]),
    ("[(512, 10, 5)] + [(512, 3, 2)] * 2", [(512, 10, 5), (512, 3, 2), (512, 3, 2)]),
])
def test_literal_reads_what_fairseq_configs_hold(text, value):
    assert literal(text) == value


@pytest.mark.parametrize("text", ["__import__('os')", "x", "f()", "().__class__", "[i for i in x]", "lambda: 1",
                                  "{**a}", "[0] * 10 ** 9", "'a' * 1000000", "", "[1, 2"])
def test_literal_refuses_everything_else(text):
    with pytest.raises(UnsafeConfigValue, match="is (not a literal|a literal of more than)"):
        literal(text)
