"""Edit quality metrics of section 4.1: drawdown, success rate, num steps, and the sequential-edit curve.

The pure functions take numbers; :class:`ControlSet` and the ``evaluate_*`` helpers measure a classifier
wrapped in :class:`~editable_core.editable.Editable`, caching the control set's prefix features once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor

from .edit import EditResult
from .editable import Editable, eval_mode
from .parameters import Params

Progress = Callable[[Iterable], Iterable]


def classification_error(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose arg-max differs from ``labels``; logits ``[batch, classes]``."""
    return (logits.argmax(-1) != labels).float().mean().item()


def drawdown(base_error: float, edited_errors: Sequence[float]) -> float:
    """Mean over N independent edits of ``|error after edit - error before|`` on the control set."""
    if not edited_errors:
        raise ValueError("drawdown needs at least one edit")
    return sum(abs(e - base_error) for e in edited_errors) / len(edited_errors)


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean of ``values``: sample standard deviation / sqrt(N); 0 for a single value."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return (sum((v - mean) ** 2 for v in values) / (n - 1) / n) ** 0.5


def drawdown_standard_error(base_error: float, edited_errors: Sequence[float]) -> float:
    """Standard error of :func:`drawdown` over the N edits: ``std(|error after - before|) / sqrt(N)``
    (sample standard deviation; 0 for a single edit)."""
    if not edited_errors:
        raise ValueError("drawdown_standard_error needs at least one edit")
    return standard_error([abs(e - base_error) for e in edited_errors])


def success_rate(results: Sequence[EditResult]) -> float:
    """Fraction of edits that satisfied ``l_e <= 0`` within ``k`` steps."""
    return sum(r.success for r in results) / len(results)


def mean_steps(results: Sequence[EditResult]) -> float:
    """Mean number of editor steps per edit (failed edits count the steps they spent)."""
    return sum(r.steps for r in results) / len(results)


@dataclass
class EditMetrics:
    """Summary of N independent edits (the columns of Tables 1-6)."""

    num_edits: int
    base_error: float
    mean_edited_error: float
    drawdown: float
    success_rate: float
    mean_steps: float
    drawdown_se: float  # standard error of ``drawdown`` over the edits

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(base_error: float, edited_errors: Sequence[float], results: Sequence[EditResult]) -> EditMetrics:
    """Collect the metrics of N independent edits."""
    if len(edited_errors) != len(results):
        raise ValueError(f"{len(edited_errors)} errors for {len(results)} edits")
    return EditMetrics(len(results), base_error, sum(edited_errors) / len(edited_errors),
                       drawdown(base_error, edited_errors), success_rate(results), mean_steps(results),
                       drawdown_standard_error(base_error, edited_errors))


class ControlSet:
    """A labelled control set whose prefix features are computed once, for fast error evaluation.

    inputs: ``[n, ...]``; labels: ``[n]``. Features are kept in memory (``n * prefix output size``).
    """

    def __init__(self, editable: Editable, inputs: Tensor, labels: Tensor, batch_size: int = 512):
        self.editable, self.labels = editable, labels
        with torch.no_grad(), eval_mode(editable.module):
            self.features = [editable.features(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)]

    def error(self, params: Optional[Params] = None) -> float:
        """Classification error of the model, edited with ``params`` if given."""
        with torch.no_grad(), eval_mode(self.editable.module):
            logits = torch.cat([self.editable.head(f, params) for f in self.features])
        return classification_error(logits, self.labels.to(logits.device))


def edit_errors(editable: Editable, control: ControlSet, edit_inputs: Tensor, edit_targets: Tensor,
                progress: Optional[Progress] = None) -> tuple[list[float], list[EditResult]]:
    """Apply each edit ``(edit_inputs[i], edit_targets[i])`` independently: the control error after each edit
    and its result (the raw material of :func:`summarize`; edits split over processes concatenate)."""
    results, errors = [], []
    indices: Iterable[int] = range(len(edit_inputs))
    with eval_mode(editable.module):
        for i in progress(indices) if progress else indices:
            result = editable.edit(edit_inputs[i:i + 1], edit_targets[i:i + 1])
            results.append(result)
            errors.append(control.error(result.params))
    return errors, results


def evaluate_edits(editable: Editable, control: ControlSet, edit_inputs: Tensor, edit_targets: Tensor,
                   progress: Optional[Progress] = None) -> tuple[EditMetrics, list[EditResult]]:
    """Apply each edit ``(edit_inputs[i], edit_targets[i])`` independently and measure it on ``control``."""
    base_error = control.error()
    errors, results = edit_errors(editable, control, edit_inputs, edit_targets, progress)
    return summarize(base_error, errors, results), results


def sequential_edit_curve(editable: Editable, control: ControlSet, edit_inputs: Tensor, edit_targets: Tensor,
                          progress: Optional[Progress] = None) -> list[float]:
    """Control error before any edit and after each of N edits applied one after another (Figure 5)."""
    curve = [control.error()]
    params: Optional[Params] = None
    indices: Iterable[int] = range(len(edit_inputs))
    with eval_mode(editable.module):
        for i in progress(indices) if progress else indices:
            params = editable.edit(edit_inputs[i:i + 1], edit_targets[i:i + 1], params=params).params
            curve.append(control.error(params))
    return curve
