"""The Python API: load a classifier, make it editable, ``edit(image, label)``, apply.

    from editable_vision import load, make_editable, cifar_resnet18

    editable = load("runs/editable.pt")                  # a trained checkpoint (editable_vision.checkpoint.load)
    result = editable.edit(image, 3)                      # image [C, H, W]; EditResult(params, success, l_e, steps)
    with editable.apply(result):                          # in place, undone on exit
        print(editable.predict(images))

    editable = make_editable(cifar_resnet18(), part="chain3", editor="rmsprop", input_shape=(3, 32, 32))

:class:`VisionEditable` is the core's :class:`~editable_core.Editable` with the checks a user needs:
the part names, the image shape and the label range are validated with a clear message.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from editable_core import Editable, EditResult, Editor, Learnable, eval_mode, make_editor
from editable_core.editable import Constraint
from editable_core.parameters import Params

from .models import num_classes_of, part_names

Part = Union[str, Sequence[str]]
WHOLE_MODEL = ("all", "whole", "")


def resolve_part(model: nn.Module, part: Part) -> Union[str, list[str]]:
    """Check a part name (or list of names) against the model's parts; ``"all"`` is the whole model."""
    parts = part_names(model)
    names = [part] if isinstance(part, str) else list(part)
    if not names:
        raise ValueError(f"empty part list; choose from {parts} or 'all'")
    for name in names:
        if name not in WHOLE_MODEL and name not in parts:
            raise ValueError(f"unknown part {name!r}; this model's editable parts are {parts} or 'all'")
    if any(name in WHOLE_MODEL for name in names):
        return ""
    return names[0] if isinstance(part, str) else names


class VisionEditable(Editable):
    """An image classifier made editable.

    module: an ``nn.Sequential`` of named parts (see :mod:`editable_vision.models`).
    part: the editable part(s): ``"chain3"``, ``["chain3", "chain4"]``, ``"extra"``, or ``"all"``.
    input_shape: ``(C, H, W)`` the model expects; num_classes: inferred from the last linear layer.
    """

    def __init__(self, module: nn.Module, part: Part = "chain3", editor: Optional[Editor] = None,
                 max_steps: int = 10, *, input_shape: Sequence[int], num_classes: Optional[int] = None,
                 constraint: Optional[Constraint] = None):
        kwargs = {} if constraint is None else {"constraint": constraint}
        super().__init__(module, resolve_part(module, part), editor, max_steps, **kwargs)
        self.part = part if isinstance(part, str) else list(part)
        self.input_shape = tuple(int(s) for s in input_shape)
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
        self.num_classes = int(num_classes if num_classes is not None else num_classes_of(module))

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def check_images(self, images: Tensor) -> Tensor:
        """``[C, H, W]`` or ``[N, C, H, W]`` -> ``[N, C, H, W]`` on the model's device, or a ValueError."""
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a tensor, got {type(images).__name__}")
        shape = list(images.shape)
        if images.dim() == 3:
            images = images[None]
        if images.dim() != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(f"expected an image of shape {list(self.input_shape)} (or a batch "
                             f"[N, {', '.join(map(str, self.input_shape))}]), got {shape}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point, preprocessed like the test set; got {images.dtype}")
        dtype = next(self.module.parameters()).dtype  # float64 (or float16) images are read as the model's dtype
        return images.to(self.device, dtype)

    def check_labels(self, labels: Union[int, Sequence[int], Tensor], count: int) -> Tensor:
        """An int or ``[count]`` labels -> LongTensor ``[count]``, or a ValueError if out of range."""
        labels = torch.as_tensor(labels, device=self.device)
        if labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        labels = labels.long().reshape(-1)
        if labels.numel() == 1 and count > 1:
            labels = labels.expand(count)
        if labels.numel() != count:
            raise ValueError(f"got {labels.numel()} labels for {count} images")
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.numel():
            raise ValueError(f"label {bad[0].item()} out of range: this model has {self.num_classes} classes "
                             f"(0..{self.num_classes - 1})")
        return labels

    def edit(self, inputs: Tensor, targets: Union[int, Sequence[int], Tensor], *, params: Optional[Params] = None,
             create_graph: bool = False, max_steps: Optional[int] = None,
             constraint: Optional[Constraint] = None, backprop: str = "full") -> EditResult:
        """Edit so that every image in ``inputs`` (``[C, H, W]`` or ``[N, C, H, W]``) is classified as its
        label (an int for all, or ``[N]``), within ``k = max_steps`` editor steps. The module is not
        modified: deploy the result with :meth:`apply`. Other arguments as in the core's ``Editable.edit``."""
        inputs = self.check_images(inputs)
        targets = self.check_labels(targets, len(inputs))
        return super().edit(inputs, targets, params=params, create_graph=create_graph, max_steps=max_steps,
                            constraint=constraint, backprop=backprop)

    @torch.no_grad()
    def logits(self, images: Tensor, params: Optional[Params] = None, batch_size: int = 256) -> Tensor:
        """Eval-mode logits ``[N, classes]`` of the model (edited with ``params`` if given)."""
        images = self.check_images(images)
        with eval_mode(self.module):
            return torch.cat([self.head(self.features(images[i:i + batch_size]), params)
                              for i in range(0, len(images), batch_size)])

    def predict(self, images: Tensor, params: Optional[Params] = None) -> Tensor:
        """Predicted classes ``[N]`` (eval mode), edited with ``params`` if given."""
        return self.logits(images, params).argmax(-1)


def make_editable(model: nn.Module, part: Part = "chain3", editor: Union[str, Editor] = "rmsprop", *,
                  input_shape: Sequence[int], lr: float = 1e-3, max_steps: int = 10,
                  learnable: Learnable = False, **hyper: Any) -> VisionEditable:
    """Wrap ``model`` so that ``part`` can be edited with ``editor`` (a name or an Editor) in ``k = max_steps``
    steps; ``lr``, ``learnable`` and ``hyper`` (e.g. ``beta=0.5``) configure a named editor (see
    :func:`editable_core.make_editor`)."""
    if isinstance(editor, str):
        editor = make_editor(editor, lr, learnable, **hyper)
    elif hyper:
        raise ValueError(f"editor hyper-parameters {sorted(hyper)} only apply to an editor given by name")
    return VisionEditable(model, part, editor, max_steps, input_shape=input_shape).to(
        next(model.parameters()).device)
