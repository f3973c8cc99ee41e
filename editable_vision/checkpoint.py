"""Checkpoint files: one ``torch.save`` dict, written atomically (temp file, then ``os.replace``).

Keys: ``format``; ``model_spec`` (for :func:`~editable_vision.models.build_model`); ``editable`` (part,
editor name / learnable hyper-parameters / eps, ``max_steps``, ``input_shape``, ``num_classes``);
``state_dict`` (the :class:`~editable_vision.api.VisionEditable`'s: model *and* editor hyper-parameters);
``data`` (how the data was loaded); and, from a training run, ``trainer`` (optimizer, epoch, step, RNG
states, teacher, history) so that training resumes exactly. Only tensors and plain containers are
stored, so files load with ``weights_only=True``.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Union

import torch
from torch import nn

from editable_core import Editor, Positive, make_editor, save_atomically
from editable_core.files import load_torch_file
from editable_core.parameters import Params

from .api import Part, VisionEditable
from .models import build_model

FORMAT = "editable_vision/1"


def editor_spec(editor: Editor) -> dict[str, Any]:
    """What rebuilds ``editor``: its name, which hyper-parameters are learnable, and ``eps`` if any."""
    spec: dict[str, Any] = {"name": editor.name,
                            "learnable": [h for h in editor.hyper_parameters if getattr(editor, h).learnable]}
    if hasattr(editor, "eps"):
        spec["eps"] = editor.eps
    return spec


def editable_payload(editable: VisionEditable, model_spec: dict[str, Any],
                     params: Optional[dict[str, torch.Tensor]] = None) -> dict[str, Any]:
    """The checkpoint dict of ``editable`` (with ``params`` written over its own tensors, if given)."""
    state = {k: v.detach().cpu().clone() for k, v in editable.state_dict().items()}
    for name, value in (params or {}).items():
        state[f"module.{name}"] = value.detach().cpu().clone()
    return {"format": FORMAT, "model_spec": dict(model_spec),
            "editable": {"part": editable.part, "editor": editor_spec(editable.editor),
                         "max_steps": editable.max_steps, "input_shape": list(editable.input_shape),
                         "num_classes": editable.num_classes},
            "state_dict": state}


def read_checkpoint(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict; a clear error if the file is missing or not one of ours."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    payload = load_torch_file(path, map_location=device)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an editable_vision checkpoint")
    return payload


def build_editable(payload: dict[str, Any], *, part: Optional[Part] = None, editor: Union[str, Editor, None] = None,
                   max_steps: Optional[int] = None) -> VisionEditable:
    """A fresh model and editor shaped as ``payload`` says (parameters not loaded yet)."""
    spec = payload["editable"]
    model = build_model(payload["model_spec"])
    editor_obj = editor if isinstance(editor, Editor) else None
    if editor_obj is None:
        saved = spec["editor"]
        name = editor or saved["name"]
        kwargs = {"eps": saved["eps"]} if name == saved["name"] and "eps" in saved else {}
        editor_obj = make_editor(name, 1e-3, saved["learnable"] if name == saved["name"] else False, **kwargs)
    return VisionEditable(model, spec["part"] if part is None else part, editor_obj,
                          spec["max_steps"] if max_steps is None else max_steps,
                          input_shape=spec["input_shape"], num_classes=spec["num_classes"])


def editable_from_checkpoint(payload: dict[str, Any], *, part: Optional[Part] = None,
                             editor: Union[str, Editor, None] = None, lr: Optional[float] = None,
                             max_steps: Optional[int] = None,
                             device: Union[str, torch.device] = "cpu") -> VisionEditable:
    """The checkpoint's model with its trained editor; ``editor`` (another editor, given by name or
    object) and ``lr`` override the trained ones, ``part`` / ``max_steps`` the trained choices."""
    editable = build_editable(payload, part=part, editor=editor, max_steps=max_steps)
    state = payload["state_dict"]
    editable.module.load_state_dict({k[len("module."):]: v for k, v in state.items() if k.startswith("module.")})
    same_editor = editor is None or (isinstance(editor, str) and editor == payload["editable"]["editor"]["name"])
    if same_editor:
        editable.editor.load_state_dict({k[len("editor."):]: v for k, v in state.items() if k.startswith("editor.")})
    if lr is not None:
        editable.editor.lr = Positive(lr, learnable=editable.editor.lr.learnable)
    return editable.to(device).eval()


def module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``module.state_dict()`` (for the teacher and for exact comparisons)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load(path: str, *, part: Optional[Part] = None, editor: Union[str, Editor, None] = None,
         lr: Optional[float] = None, max_steps: Optional[int] = None,
         device: Union[str, torch.device] = "cpu") -> VisionEditable:
    """Load a checkpoint written by ``python -m editable_vision train/finetune`` (or :func:`save`) as a
    :class:`VisionEditable`, with the part and editor it was trained with (its learned ``beta``, ...)
    unless ``part`` / ``editor`` / ``lr`` / ``max_steps`` override them."""
    return editable_from_checkpoint(read_checkpoint(path, device), part=part, editor=editor, lr=lr,
                                    max_steps=max_steps, device=device)


def save(editable: VisionEditable, path: str, model_spec: dict[str, Any], params: Optional[Params] = None) -> None:
    """Save ``editable`` (with an edit's ``params`` written in, if given) as a checkpoint that :func:`load`
    and the command line read. model_spec: as for :func:`editable_vision.models.build_model`."""
    save_atomically(editable_payload(editable, model_spec, params), path)
