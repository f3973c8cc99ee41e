"""One evaluator for every way of patching a model (Table 3): gradient editors (plain, Editable Training, EWC),
DkNN label flips and the Editable+CNP condition vector.

Each method implements :class:`EditMethod`; :func:`evaluate_method` applies the same N independent edits
(``EditSet`` from :func:`editable_vision.evaluate.make_edit_set``) from the unedited model, measures the error
on the same control set, and reports the columns of Table 3 with the core's metric functions: test error,
drawdown (mean ``|error after - error before|``), success rate and mean steps (``None`` = n/a).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from editable_core import ControlSet, classification_constraint, classification_error, drawdown, eval_mode

from ..api import VisionEditable
from ..evaluate import EditSet, progress_bar
from .cnp import ConditionalClassifier
from .dknn import DeepKNN, FlipResult, layer_embeddings


@dataclass
class Outcome:
    """One edit: whether ``l_e <= 0`` holds afterwards, editor steps (None: not an iterative editor), and the
    method's handle on the edited model (edited parameters, the flips, the condition vector)."""

    success: bool
    steps: Optional[int]
    state: Any


class EditMethod:
    """Interface: ``prepare`` a control set, then ``edit`` / ``control_error`` / ``release`` per edit."""

    procedure: str = ""
    editor: str = ""
    part: str = ""

    def prepare(self, images: Tensor, labels: Tensor) -> None:
        raise NotImplementedError

    def control_error(self, state: Any = None) -> float:
        """Classification error on the control set, of the unedited model (``state=None``) or an edited one."""
        raise NotImplementedError

    def edit(self, image: Tensor, target: int) -> Outcome:
        """Edit so that ``image [C, H, W]`` is classified as ``target``."""
        raise NotImplementedError

    def release(self, outcome: Outcome) -> None:
        """Undo an edit that changed shared state in place (DkNN labels); a no-op for out-of-place edits."""


class GradientMethod(EditMethod):
    """An ``Edit^k`` editor on a :class:`VisionEditable` (its editor may be an ``EWCEditor``)."""

    def __init__(self, editable: VisionEditable, procedure: str, editor: str):
        self.editable, self.procedure, self.editor = editable, procedure, editor
        self.part = editable.part

    def prepare(self, images: Tensor, labels: Tensor) -> None:
        self.control = ControlSet(self.editable, images.to(self.editable.device), labels.to(self.editable.device))

    def control_error(self, state: Any = None) -> float:
        return self.control.error(state)

    def edit(self, image: Tensor, target: int) -> Outcome:
        with eval_mode(self.editable.module):
            result = self.editable.edit(image, target)
        return Outcome(result.success, result.steps, result.params)


class DkNNMethod(EditMethod):
    """DkNN predictions over embeddings of ``layers`` of a trained model; edits flip neighbours' labels."""

    def __init__(self, model: nn.Sequential, train_images: Tensor, train_labels: Tensor, num_classes: int, k: int,
                 layers: Sequence[str] = ("chain2", "chain3", "chain4"), pool: str = "flatten"):
        self.model, self.layers, self.pool = model, list(layers), pool
        self.procedure, self.editor, self.part = f"DkNN k = {k}", "Flip Labels", "n/a"
        self.knn = DeepKNN(self._embed(train_images), train_labels, num_classes, k)
        self.flips: list[int] = []

    def _embed(self, images: Tensor) -> list[np.ndarray]:
        return layer_embeddings(self.model, images, self.layers, pool=self.pool)

    def prepare(self, images: Tensor, labels: Tensor) -> None:
        self.flips = []
        self.neighbours, _ = self.knn.neighbours(self._embed(images))
        self.labels = labels.cpu().numpy()

    def control_error(self, state: Any = None) -> float:  # flips live in the labels until released
        return float((self.knn.predict(self.neighbours) != self.labels).mean())

    def edit(self, image: Tensor, target: int) -> Outcome:
        neighbours, distances = self.knn.neighbours(self._embed(image[None]))
        result = self.knn.flip(neighbours[0], distances[0], int(target))
        self.flips.append(result.num_flips)
        return Outcome(result.success, None, result)

    def release(self, outcome: Outcome) -> None:
        assert isinstance(outcome.state, FlipResult)
        self.knn.restore(outcome.state)


class CNPMethod(EditMethod):
    """Editable+CNP: an edit is the condition vector of ``(image, target)``, added to chain-3 activations."""

    def __init__(self, model: ConditionalClassifier, procedure: str = "Editable+CNP"):
        self.model, self.procedure, self.editor, self.part = model, procedure, "Cond. vector", model.split
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def prepare(self, images: Tensor, labels: Tensor) -> None:
        with eval_mode(self.model):
            self.features = [self.model.trunk(images[i:i + 512].to(self.device)) for i in range(0, len(images), 512)]
        self.labels = labels.to(self.device)

    @torch.no_grad()
    def control_error(self, state: Any = None) -> float:
        with eval_mode(self.model):
            logits = torch.cat([self.model.tail(h, state) for h in self.features])
        return classification_error(logits, self.labels)

    @torch.no_grad()
    def edit(self, image: Tensor, target: int) -> Outcome:
        with eval_mode(self.model):
            image = image[None].to(self.device)
            targets = torch.tensor([int(target)], device=self.device)
            condition = self.model.condition(image, targets)
            success = bool((classification_constraint(self.model(image, condition), targets) <= 0).all())
        return Outcome(success, None, condition)


def evaluate_method(method: EditMethod, images: Tensor, labels: Tensor, edits: EditSet, *,
                    progress: bool = True) -> dict[str, Any]:
    """N independent edits of ``method`` measured on the control set ``images [n, C, H, W]``, ``labels [n]``.

    Returns a JSON-able row: procedure, editor, part, ``base_error``, ``mean_edited_error``, ``drawdown``,
    ``success_rate``, ``mean_steps`` (None when the method takes no editor steps), ``num_edits``."""
    method.prepare(images, labels)
    base = method.control_error()
    errors, successes, steps = [], [], []
    for i in progress_bar(f"{method.procedure} {method.editor}", progress)(range(len(edits.targets))):
        outcome = method.edit(edits.images[i], int(edits.targets[i]))
        errors.append(method.control_error(outcome.state))
        method.release(outcome)
        successes.append(outcome.success)
        steps.append(outcome.steps)
    if method.control_error() != base:
        raise RuntimeError(f"{method.procedure}: an edit was not undone (control error changed)")
    row = {"procedure": method.procedure, "editor": method.editor, "part": method.part, "num_edits": len(errors),
           "base_error": base, "mean_edited_error": sum(errors) / len(errors), "drawdown": drawdown(base, errors),
           "success_rate": sum(successes) / len(successes),
           "mean_steps": None if any(s is None for s in steps) else sum(steps) / len(steps)}
    if isinstance(method, DkNNMethod):
        row["mean_flips"] = sum(method.flips) / len(method.flips)
    return row
