"""Image classifiers as ``nn.Sequential`` of named parts, so that ``Editable`` caches the parts before the
editable one: ``stem``, ``chain1`` .. ``chain4`` (the residual chains of the paper), optionally ``extra``
(the extra trainable layer of section 4.3) and ``head``.

* :func:`cifar_resnet18`: the CIFAR-style ResNet-18 of section 4.1 (``head`` = pool, flatten, linear).
* :func:`resnet18` / :func:`densenet169`: torchvision's ImageNet models, re-wrapped around the very same
  modules (``stem``, ``chain1..4``, ``pool``, ``head`` = the final linear), ImageNet weights optional.
* :func:`with_extra_layer`: inserts :class:`ExtraLayer` after the last convolutional / pooling layer.
* :func:`build_model`: one entry point from a JSON-able spec (what checkpoints store).
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Optional, Union

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from editable_core.files import load_torch_file

logger = logging.getLogger(__name__)

ARCHS = ("cifar_resnet18", "resnet18", "densenet169")
Weights = Union[str, os.PathLike, torchvision.models.WeightsEnum, None]


def _chain(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    layers = [BasicBlock(in_planes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def cifar_resnet18(num_classes: int = 10, in_channels: int = 3, width: int = 64) -> nn.Sequential:
    """The CIFAR-style ResNet-18 of section 4.1: a 3x3 stem without max-pool, four chains of two
    torchvision ``BasicBlock`` each (``width`` x 1, 2, 4, 8 channels; 64 is the paper's model), global
    average pool and a linear head. Input ``[batch, in_channels, 32, 32]`` (any size >= 8 works); output
    logits ``[batch, num_classes]``."""
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    w = width
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(in_channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)),
        chain1=_chain(w, w, 2, 1),
        chain2=_chain(w, 2 * w, 2, 2),
        chain3=_chain(2 * w, 4 * w, 2, 2),
        chain4=_chain(4 * w, 8 * w, 2, 2),
        head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, num_classes)),
    ))


class ExtraLayer(nn.Module):
    """The extra trainable layer of section 4.3: ``x + dense2(ELU(dense1(x)))``.

    x: ``[batch, features]``. ``dense1``: features -> hidden (4096 in the paper), ``dense2``: back to
    ``features``. With ``zero_init`` (default) ``dense2`` starts at zero, so inserting the layer leaves
    the pre-trained model's predictions exactly unchanged.
    """

    def __init__(self, features: int, hidden: int = 4096, zero_init: bool = True):
        super().__init__()
        self.dense1 = nn.Linear(features, hidden)
        self.act = nn.ELU()
        self.dense2 = nn.Linear(hidden, features)
        if zero_init:
            nn.init.zeros_(self.dense2.weight)
            nn.init.zeros_(self.dense2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.dense2(self.act(self.dense1(x)))


def _load_weights(model: nn.Module, weights: Weights, allow_download: bool) -> None:
    """Load ``weights`` (a state-dict file, or a torchvision weights enum / its name such as
    ``"IMAGENET1K_V1"``) into a freshly built torchvision model. Never downloads unless allowed."""
    if weights is None:
        return
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        state = load_torch_file(weights)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        model.load_state_dict(state)
        logger.info("loaded weights from %s", weights)
        return
    if isinstance(weights, str):
        builder = {torchvision.models.ResNet: "resnet18", torchvision.models.DenseNet: "densenet169"}[type(model)]
        try:
            weights = torchvision.models.get_model_weights(builder)[weights]
        except KeyError:
            raise ValueError(f"weights {weights!r} is neither a file nor a torchvision weights name for "
                             f"{builder} (e.g. IMAGENET1K_V1)") from None
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    if not os.path.isfile(cached) and not allow_download:
        raise FileNotFoundError(f"torchvision weights {weights} are not available locally (expected {cached}); "
                                f"download them once, or pass a state-dict file")
    model.load_state_dict(weights.get_state_dict(progress=False, check_hash=True))
    logger.info("loaded torchvision weights %s", weights)


def resnet18(num_classes: int = 1000, weights: Weights = None, allow_download: bool = False) -> nn.Sequential:
    """torchvision's ResNet-18 as parts ``stem`` (conv1, bn1, relu, maxpool), ``chain1..4`` (layer1..4),
    ``pool`` (average pool + flatten) and ``head`` (fc). The parts are torchvision's own modules.
    weights: a state-dict file or torchvision weights (e.g. ``"IMAGENET1K_V1"``) loaded before wrapping;
    a ``num_classes`` other than 1000 replaces ``fc`` afterwards. Input ``[batch, 3, 224, 224]``."""
    net = torchvision.models.resnet18()
    _load_weights(net, weights, allow_download)
    if num_classes != net.fc.out_features:
        net.fc = nn.Linear(net.fc.in_features, num_classes)
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
        chain1=net.layer1, chain2=net.layer2, chain3=net.layer3, chain4=net.layer4,
        pool=nn.Sequential(net.avgpool, nn.Flatten()),
        head=net.fc,
    ))


def densenet169(num_classes: int = 1000, weights: Weights = None, allow_download: bool = False) -> nn.Sequential:
    """torchvision's DenseNet-169 as parts ``stem`` (conv0, norm0, relu0, pool0), ``chain1..3``
    (dense block i + transition i), ``chain4`` (dense block 4, norm5, ReLU), ``pool`` and ``head``
    (classifier); "chain 3" is the third block group. Weights as in :func:`resnet18`."""
    net = torchvision.models.densenet169()
    _load_weights(net, weights, allow_download)
    if num_classes != net.classifier.out_features:
        net.classifier = nn.Linear(net.classifier.in_features, num_classes)
    f = net.features
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0),
        chain1=nn.Sequential(f.denseblock1, f.transition1),
        chain2=nn.Sequential(f.denseblock2, f.transition2),
        chain3=nn.Sequential(f.denseblock3, f.transition3),
        chain4=nn.Sequential(f.denseblock4, f.norm5, nn.ReLU(inplace=True)),
        pool=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        head=net.classifier,
    ))


def with_extra_layer(model: nn.Sequential, hidden: int = 4096, zero_init: bool = True) -> nn.Sequential:
    """A new ``nn.Sequential`` sharing ``model``'s modules, with an :class:`ExtraLayer` named ``extra``
    between the pooled features and the final linear layer. A ``head`` of the form (pool, flatten,
    linear), as in :func:`cifar_resnet18`, is split into ``pool`` and ``head`` (the linear)."""
    parts = OrderedDict(model.named_children())
    if "extra" in parts:
        raise ValueError("the model already has an extra layer")
    head = parts.get("head")
    if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear) and "pool" not in parts:
        parts["pool"], parts["head"] = head[:-1], head[-1]
        parts.move_to_end("head")
    if not isinstance(parts.get("head"), nn.Linear):
        raise ValueError(f"expected a final linear part named 'head', got parts {list(parts)}")
    linear = parts.pop("head")
    parts["extra"] = ExtraLayer(linear.in_features, hidden, zero_init).to(linear.weight.device)
    parts["head"] = linear
    return nn.Sequential(parts)


def build_model(spec: dict[str, Any], weights: Weights = None, allow_download: bool = False) -> nn.Sequential:
    """Build a model from a JSON-able spec, e.g. ``{"arch": "cifar_resnet18", "num_classes": 10,
    "in_channels": 1, "width": 16, "extra_layer": 0}`` (``extra_layer``: hidden units, 0 for none).
    ``weights`` applies to the torchvision architectures only."""
    arch = spec.get("arch")
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {list(ARCHS)}")
    num_classes = int(spec.get("num_classes", 10 if arch == "cifar_resnet18" else 1000))
    if arch == "cifar_resnet18":
        if weights is not None:
            raise ValueError("cifar_resnet18 has no pre-trained weights; load a checkpoint instead")
        model = cifar_resnet18(num_classes, int(spec.get("in_channels", 3)), int(spec.get("width", 64)))
    elif arch == "resnet18":
        model = resnet18(num_classes, weights, allow_download)
    else:
        model = densenet169(num_classes, weights, allow_download)
    if int(spec.get("extra_layer", 0)):
        model = with_extra_layer(model, int(spec["extra_layer"]))
    return model


def part_names(model: nn.Module) -> list[str]:
    """The names of the model's top-level parts that hold parameters (what ``--part`` accepts)."""
    return [name for name, child in model.named_children() if any(True for _ in child.parameters())]


def num_classes_of(model: nn.Module) -> Optional[int]:
    """``out_features`` of the last linear layer, or None if there is none."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None
