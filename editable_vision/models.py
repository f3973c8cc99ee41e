"""Image classifiers as ``nn.Sequential`` of named parts, so that ``Editable`` caches the parts before the
editable one: ``stem``, ``chain1`` .. ``chain4`` (the residual chains of the paper) and ``head``."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.models.resnet import BasicBlock


def _chain(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    layers = [BasicBlock(in_planes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def cifar_resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Sequential:
    """The CIFAR-style ResNet-18 of section 4.1: a 3x3 stem without max-pool, four chains of two
    torchvision ``BasicBlock`` each (64, 128, 256, 512 channels), global average pool and a linear head.
    Input ``[batch, in_channels, 32, 32]`` (any size >= 8 works); output logits ``[batch, num_classes]``."""
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)),
        chain1=_chain(64, 64, 2, 1),
        chain2=_chain(64, 128, 2, 2),
        chain3=_chain(128, 256, 2, 2),
        chain4=_chain(256, 512, 2, 2),
        head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)),
    ))
