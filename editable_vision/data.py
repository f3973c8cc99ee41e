"""Data sets: scikit-learn's digits (the default, no download), CIFAR-10 and any ImageFolder.

Every loader returns a :class:`VisionData`: train and test sets of ``(image [C, H, W] float, label)``
pairs, the number of classes, the input shape, and ``augment``, the training augmentation as a function
of one image tensor (used by the edit-generalisation test). Loaders never download unless asked.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from editable_core.errors import InputError

logger = logging.getLogger(__name__)

DATASETS = ("digits", "cifar10", "folder")
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class VisionData:
    """train / test: datasets of ``(image [C, H, W], label)``; augment: ``image -> augmented image``;
    preprocess: a PIL image -> the test-time model input ``[C, H, W]``."""

    train: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]
    augment: Callable[[Tensor], Tensor]
    name: str
    preprocess: Callable[[Any], Tensor]


class RandomShift:
    """Random crop after zero padding (``pad`` pixels each side) and, if ``flip``, a random horizontal
    flip, on an image tensor ``[C, H, W]``: the CIFAR augmentation of section 4.1, as a tensor op."""

    def __init__(self, pad: int, flip: bool):
        self.pad, self.flip = pad, flip

    def __call__(self, image: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        _, h, w = image.shape
        padded = F.pad(image, (self.pad,) * 4)
        dy, dx = (int(v) for v in torch.randint(0, 2 * self.pad + 1, (2,), generator=generator))
        out = padded[:, dy:dy + h, dx:dx + w]
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            out = out.flip(-1)
        return out

    def __repr__(self) -> str:
        return f"RandomShift(pad={self.pad}, flip={self.flip})"


class TensorImages(Dataset):
    """In-memory images ``[N, C, H, W]`` and labels ``[N]``, optionally augmented on access."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Optional[Callable[[Tensor], Tensor]] = None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index]
        return (self.transform(image) if self.transform else image), int(self.labels[index])


def load_digits(image_size: int = 16, channels: int = 1, test_fraction: float = 0.2, seed: int = 0,
                augment: bool = True) -> VisionData:
    """scikit-learn's 1797 handwritten digits (8x8, 10 classes), bilinearly resized to
    ``[channels, image_size, image_size]``, normalised to zero mean / unit variance (train statistics),
    with a fixed stratified split seeded by ``seed``. Augmentation: random shifts by up to 1/8 of the
    image (no flips: a flipped digit is another digit)."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    if channels not in (1, 3):
        raise ValueError(f"digits can be made 1- or 3-channel, got channels={channels}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    bunch = sk_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(torch.arange(len(labels)).numpy(), test_size=test_fraction,
                                           random_state=seed, stratify=labels.numpy())
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = ((images - mean) / std).expand(-1, channels, -1, -1).contiguous()
    shift = RandomShift(max(1, image_size // 8), flip=False)
    train = TensorImages(images[train_idx], labels[train_idx], shift if augment else None)
    test = TensorImages(images[test_idx], labels[test_idx])

    def preprocess(picture: Any) -> Tensor:  # a light digit on a dark background, like the data set
        from torchvision.transforms.functional import pil_to_tensor

        grey = pil_to_tensor(picture.convert("L").resize((image_size, image_size))).float() / 255.0
        return ((grey - mean) / std).expand(channels, -1, -1).contiguous()

    return VisionData(train, test, 10, (channels, image_size, image_size), shift, "digits", preprocess)


def load_cifar10(root: str, download: bool = False) -> VisionData:
    """CIFAR-10 through torchvision (standard split); train augmentation: random crop (pad 4) + flip."""
    from torchvision import datasets, transforms

    normalize = transforms.Normalize(CIFAR_MEAN, CIFAR_STD)
    train_tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), normalize])
    test_tf = transforms.Compose([transforms.ToTensor(), normalize])
    try:
        train = datasets.CIFAR10(root, train=True, transform=train_tf, download=download)
        test = datasets.CIFAR10(root, train=False, transform=test_tf, download=download)
    except RuntimeError as error:
        raise FileNotFoundError(f"CIFAR-10 not found under {root!r} ({error}); download=True fetches it") from None
    return VisionData(train, test, 10, (3, 32, 32), RandomShift(4, flip=True), "cifar10",
                      lambda picture: test_tf(picture.convert("RGB")))


def read_image(path: str, mode: Optional[str] = "RGB"):
    """An image file as a ``PIL.Image`` (converted to ``mode`` unless None); a damaged or non-image file is an
    ``InputError`` naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as file:
            picture = Image.open(file)
            return picture.convert(mode) if mode else picture.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:  # PIL raises SyntaxError on some bad headers
        if isinstance(error, FileNotFoundError):
            raise
        raise InputError(f"{path}: not a readable image ({error}); remove or replace the file") from None


def load_image_folder(train_dir: Optional[str], test_dir: str, image_size: int = 224,
                      classes: Optional[Sequence[str]] = None) -> VisionData:
    """Any ``ImageFolder`` (ImageNet, Natural Adversarial Examples): train with random resized crops +
    flips, test with resize to 8/7 of ``image_size`` + centre crop, ImageNet normalisation.

    classes: the full ordered class list (folder names, e.g. ImageNet's 1000 wnids); a folder holding a
    subset of them (ImageNet-A's 200) is then labelled with the full list's indices, as a model
    trained on the full set predicts them. Defaults to the train folder's (or test folder's) classes.
    """
    from torchvision import datasets, transforms

    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = transforms.Compose([transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), normalize])
    test_tf = transforms.Compose([transforms.Resize(image_size * 8 // 7), transforms.CenterCrop(image_size),
                                  transforms.ToTensor(), normalize])
    for path in (train_dir, test_dir):
        if path is not None and not os.path.isdir(path):
            raise FileNotFoundError(f"image folder {path!r} does not exist")
    if classes is None:
        classes = sorted(e.name for e in os.scandir(train_dir or test_dir) if e.is_dir())
    index = {name: i for i, name in enumerate(classes)}

    def folder(path: str, transform: Callable) -> Dataset:
        dataset = datasets.ImageFolder(path, transform=transform, loader=read_image)
        unknown = sorted(set(dataset.classes) - set(index))
        if unknown:
            raise ValueError(f"folders {unknown[:5]} of {path!r} are not among the {len(index)} known classes")
        remap = {i: index[name] for i, name in enumerate(dataset.classes)}
        dataset.target_transform = remap.__getitem__
        return dataset

    test = folder(test_dir, test_tf)
    train = folder(train_dir, train_tf) if train_dir else test
    augment = transforms.Compose([transforms.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True),
                                  transforms.RandomHorizontalFlip()])
    return VisionData(train, test, len(classes), (3, image_size, image_size), augment, "folder",
                      lambda picture: test_tf(picture.convert("RGB")))


def load_data(name: str, root: Optional[str] = None, *, image_size: Optional[int] = None, channels: int = 1,
              seed: int = 0, download: bool = False, test_dir: Optional[str] = None,
              classes: Optional[Sequence[str]] = None) -> VisionData:
    """Dispatch on ``name`` (``digits``, ``cifar10``, ``folder``); ``root`` is the data folder (for
    ``folder``: the train ImageFolder, with ``test_dir`` the test one)."""
    if name == "digits":
        return load_digits(image_size or 16, channels, seed=seed)
    if name == "cifar10":
        return load_cifar10(root or "data", download)
    if name == "folder":
        if test_dir is None and root is None:
            raise ValueError("the folder dataset needs root (train) and/or test_dir")
        return load_image_folder(root, test_dir or root, image_size or 224, classes)
    raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")


def loader(dataset: Dataset, batch_size: int, *, shuffle: bool, workers: int = 0,
           generator: Optional[torch.Generator] = None, drop_last: bool = False,
           sampler: Optional[Sampler] = None) -> DataLoader:
    """A DataLoader with ``workers`` worker processes; ``generator`` fixes the order and the workers'
    seeds (so a resumed run sees the same batches); ``sampler`` (e.g. a ``DistributedSampler``) replaces
    the shuffle."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=generator,
                      drop_last=drop_last, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False, sampler=sampler)


def stack(dataset: Dataset, limit: Optional[int] = None, workers: int = 0,
          batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """All (or the first ``limit``) examples of ``dataset`` as ``images [N, C, H, W]``, ``labels [N]``."""
    if isinstance(dataset, TensorImages) and dataset.transform is None:
        n = len(dataset) if limit is None else min(limit, len(dataset))
        return dataset.images[:n], dataset.labels[:n]
    if limit is not None and limit < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(limit))
    images, labels = zip(*loader(dataset, batch_size, shuffle=False, workers=workers))
    return torch.cat(images), torch.cat(labels)
