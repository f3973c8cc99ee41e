"""Editable+CNP (Table 3): edits as a condition vector, after Conditional Neural Processes (Garnelo et al., 2018).

A :class:`ConditionalClassifier` wraps a classifier made of named parts (``stem``, ``chain1`` .. ``chain4``,
``head``). Its encoder reads the edited image's chain-3 activations ``h_3(x_e)`` plus a learned embedding
``E[y_ref]`` of the target class, passes them through one residual block, averages over space and projects
linearly to the condition vector ``c`` (``[C_3]``, one value per chain-3 channel). Every later input is then
classified as ``tail(h_3(x) + c)``; with ``c = 0`` the model is the plain classifier, exactly.

Training (:class:`CNPTrainer`, on the epoch loop of :mod:`editable_vision.train`) minimises
``L_base(c = 0) + c_edit * L_edit + c_loc * L_loc`` (equation 2 with the condition vector in place of
``Edit(theta)``): random-target edits of training images, the edited passes in eval mode (as deployed) and the
encoder always in eval mode (one image is too few for batch statistics).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from editable_core import classification_constraint, editable_objective, eval_mode

from ..data import VisionData, stack
from ..models import build_model
from ..loop import EpochLoop
from ..train import TrainConfig

FORMAT = "editable_vision.baselines/cnp/1"


def _channels(part: nn.Module) -> int:
    convs = [m for m in part.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the conditioned part has no convolution to read its channel count from")
    return convs[-1].out_channels


class ConditionalClassifier(nn.Module):
    """A classifier with a CNP encoder at part ``split``.

    backbone: ``nn.Sequential`` of named parts whose ``split`` part outputs ``[B, C_3, H', W']``.
    num_classes: ``|Y|``, for the target embedding ``E``: ``[num_classes, C_3]``.
    """

    def __init__(self, backbone: nn.Sequential, num_classes: int, split: str = "chain3"):
        super().__init__()
        names = [n for n, _ in backbone.named_children()]
        if split not in names or names.index(split) == len(names) - 1:
            raise ValueError(f"the condition must be added after a part that is not the last; got split={split!r}, "
                             f"the parts are {names}")
        self.backbone, self.split, self.num_classes = backbone, split, int(num_classes)
        self._index = names.index(split) + 1
        channels = _channels(getattr(backbone, split))
        self.embedding = nn.Embedding(self.num_classes, channels)
        self.encoder = BasicBlock(channels, channels)
        self.project = nn.Linear(channels, channels)

    def trunk(self, images: Tensor) -> Tensor:
        """``h_3``: the output of the parts up to and including ``split``; ``[B, C_3, H', W']``."""
        return self.backbone[:self._index](images)

    def tail(self, h: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        """Logits ``[B, classes]`` of the parts after ``split`` on ``h + c`` (``c``: ``[C_3]``, or None for 0)."""
        return self.backbone[self._index:](h if condition is None else h + condition.reshape(1, -1, 1, 1))

    def forward(self, images: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        return self.tail(self.trunk(images), condition)

    def codes(self, images: Tensor, targets: Tensor, h: Optional[Tensor] = None) -> Tensor:
        """One condition vector per row: ``[n, C_3]`` for ``images [n, C, H, W]`` and ``targets [n]``
        (``h``: their ``h_3`` if already computed). The encoder runs in eval mode."""
        h = self.trunk(images) if h is None else h
        targets = torch.as_tensor(targets, device=h.device).long().reshape(-1)
        if len(targets) != len(h):
            raise ValueError(f"got {len(targets)} targets for {len(h)} edit images")
        with eval_mode(self.encoder):
            code = self.encoder(h + self.embedding(targets)[:, :, None, None]).mean(dim=(2, 3))
        return self.project(code)

    def condition(self, images: Tensor, targets: Tensor, h: Optional[Tensor] = None) -> Tensor:
        """The condition vector ``c`` ``[C_3]`` of one edit: ``images [n, C, H, W]`` must all get ``targets [n]``
        (an edit may show several images of the same object; their codes are averaged)."""
        return self.codes(images, targets, h).mean(0)


def cnp_loss(model: ConditionalClassifier, images: Tensor, labels: Tensor, edit_images: Tensor,
             edit_targets: Tensor, *, c_edit: float, c_loc: float) -> tuple[Any, Tensor]:
    """Equation (2) for the CNP on one batch ``images [B, ...]``, ``labels [B]`` and ``n`` independent edits
    ``edit_images [n, ...]``, ``edit_targets [n]`` (``L_edit``, ``L_loc`` averaged over them). The plain pass
    (``c = 0``) runs in the module's mode; the edits and the edited passes over the batch in eval mode.
    Returns the :class:`editable_core.Objective` and ``l_e`` ``[n]``."""
    h = model.trunk(images)
    logits = model.tail(h)
    with eval_mode(model):
        codes = model.codes(edit_images, edit_targets)
        l_e = torch.cat([classification_constraint(model(edit_images[i:i + 1], code), edit_targets[i:i + 1])
                         for i, code in enumerate(codes)])
        edited = torch.cat([model.tail(h, code) for code in codes])
    reference = logits.repeat(len(codes), 1)
    return editable_objective(F.cross_entropy(logits, labels), l_e, reference, edited, c_edit=c_edit,
                              c_loc=c_loc), l_e


class CNPTrainer(EpochLoop):
    """Trains backbone, encoder, embedding and projection jointly with Adam (``config.lr``, its schedule and
    gradient clipping, ``config.max_batches`` per epoch): ``edits_per_batch`` random-target edits of training
    images per batch, drawn from a generator seeded with ``config.seed``."""

    label = "cnp"

    def __init__(self, model: ConditionalClassifier, data: VisionData, config: TrainConfig, *,
                 edits_per_batch: int = 1, device: str | torch.device = "cpu", progress: bool = True):
        if edits_per_batch < 1:
            raise ValueError(f"edits_per_batch must be >= 1, got {edits_per_batch}")
        super().__init__(data, config, progress=progress)
        self.device = torch.device(device)
        self.model, self.edits_per_batch = model.to(self.device), edits_per_batch
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.generator = torch.Generator().manual_seed(config.seed)
        self._test = stack(data.test)

    def train_step(self, images: Tensor, labels: Tensor) -> dict[str, float]:
        self.model.train()
        indices = torch.randint(len(self.data.train), (self.edits_per_batch,), generator=self.generator)
        edit_image = torch.stack([self.data.train[int(j)][0] for j in indices]).to(self.device)
        edit_target = torch.randint(self.model.num_classes, (self.edits_per_batch,), generator=self.generator)
        objective, l_e = cnp_loss(self.model, images.to(self.device), labels.to(self.device), edit_image,
                                  edit_target.to(self.device), c_edit=self.config.c_edit, c_loc=self.config.c_loc)
        self.optimizer.zero_grad(set_to_none=True)
        objective.total.backward()
        if self.config.max_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_norm)
        self.optimizer.step()
        self.step += 1
        return {"loss": objective.total.item(), "l_base": objective.l_base.item(),
                "l_edit": objective.l_edit.item(), "l_loc": objective.l_loc.item(),
                "edit_success": float((l_e <= 0).float().mean())}

    @torch.no_grad()
    def test_error(self) -> float:
        images, labels = self._test
        with eval_mode(self.model):
            predictions = torch.cat([self.model(images[j:j + 256].to(self.device)).argmax(-1).cpu()
                                     for j in range(0, len(images), 256)])
        return (predictions != labels).float().mean().item()


def train_cnp(model: ConditionalClassifier, data: VisionData, config: TrainConfig, *, edits_per_batch: int = 1,
              device: str | torch.device = "cpu", progress: bool = True) -> list[dict[str, float]]:
    """Train ``model`` with a :class:`CNPTrainer`; returns one record per epoch."""
    return CNPTrainer(model, data, config, edits_per_batch=edits_per_batch, device=device, progress=progress).fit()


def cnp_payload(model: ConditionalClassifier, model_spec: dict[str, Any], input_shape: tuple[int, ...],
                data_spec: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """A checkpoint dict (tensors and plain containers only, so it loads with ``weights_only=True``)."""
    return {"format": FORMAT, "model_spec": dict(model_spec), "split": model.split,
            "num_classes": model.num_classes, "input_shape": list(input_shape), "data": data_spec,
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def cnp_from_payload(payload: dict[str, Any], device: str | torch.device = "cpu") -> ConditionalClassifier:
    """Rebuild a :class:`ConditionalClassifier` from :func:`cnp_payload`'s dict."""
    if payload.get("format") != FORMAT:
        raise ValueError("not an Editable+CNP checkpoint (format mismatch)")
    model = ConditionalClassifier(build_model(payload["model_spec"]), payload["num_classes"], payload["split"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
