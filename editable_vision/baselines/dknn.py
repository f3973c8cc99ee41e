"""Deep k-Nearest Neighbours (Papernot & McDaniel, 2018) and its edit by label flips (Table 3, "DkNN").

The DkNN keeps the training set's embeddings at several layers of a trained network. For an input ``x`` it
finds, at each layer ``l``, the ``k`` nearest training embeddings (scikit-learn ``NearestNeighbors``) and
predicts the class with the most votes over all layers, ``argmax_j sum_l |{n in N_l(x): y_n = j}|`` (ties go
to the smaller class index). An edit ``(x, y_ref)`` flips the labels of ``x``'s neighbours to ``y_ref`` until
the prediction is ``y_ref``; it stops there. Each flip takes the neighbour that most raises the vote margin of
``y_ref`` over the strongest other class (a training point that is a neighbour at ``m`` layers moves ``m``
votes), ties going to the nearer one. When every neighbour counts once (one layer, or disjoint neighbour
sets) this uses the fewest flips possible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from editable_core import eval_mode

POOLING = ("flatten", "avg")


def layer_embeddings(model: nn.Sequential, images: Tensor, layers: Sequence[str], *, pool: str = "flatten",
                     batch_size: int = 256) -> list[np.ndarray]:
    """The outputs of the named top-level parts of ``model`` for ``images [N, C, H, W]`` (eval mode), one
    ``[N, D_l]`` float32 array per layer: flattened, or (``pool="avg"``) averaged over space first."""
    if pool not in POOLING:
        raise ValueError(f"unknown pooling {pool!r}; choose one of {list(POOLING)}")
    names = [n for n, _ in model.named_children()]
    unknown = [layer for layer in layers if layer not in names]
    if unknown or not layers:
        raise ValueError(f"DkNN layers must be parts of the model, got {list(layers)}; the parts are {names}")
    device = next(model.parameters()).device
    chunks: dict[str, list[Tensor]] = {layer: [] for layer in layers}
    last = max(names.index(layer) for layer in layers)
    with torch.no_grad(), eval_mode(model):
        for start in range(0, len(images), batch_size):
            h = images[start:start + batch_size].to(device)
            for name, part in list(model.named_children())[:last + 1]:
                h = part(h)
                if name in chunks:
                    out = h.mean(dim=(2, 3)) if pool == "avg" and h.dim() == 4 else h.flatten(1)
                    chunks[name].append(out.float().cpu())
    return [torch.cat(chunks[layer]).numpy() for layer in layers]


@dataclass
class FlipResult:
    """An edit of the DkNN: the training points relabelled (``indices``), in flip order, and the outcome."""

    indices: list[int]
    target: int
    success: bool

    @property
    def num_flips(self) -> int:
        return len(self.indices)


def votes(neighbours: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Vote counts ``[N, classes]`` from neighbour indices ``[N, L, k]`` (L layers, k neighbours each)."""
    flat = labels[neighbours.reshape(len(neighbours), -1)]
    counts = np.zeros((len(neighbours), num_classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(neighbours)), flat.shape[1]), flat.reshape(-1)), 1)
    return counts


class DeepKNN:
    """A DkNN over ``embeddings`` (one ``[N_train, D_l]`` array per layer) with ``labels [N_train]``.

    ``labels`` is copied: :meth:`flip` edits the copy, :meth:`restore` undoes flips. ``k``: neighbours per layer.
    """

    def __init__(self, embeddings: Sequence[np.ndarray], labels: np.ndarray | Tensor, num_classes: int, k: int,
                 *, metric: str = "euclidean"):
        from sklearn.neighbors import NearestNeighbors

        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"DkNN k must be an integer >= 1, got {k!r}")
        labels = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels, dtype=np.int64)
        if not embeddings:
            raise ValueError("the DkNN needs the embeddings of at least one layer")
        if any(len(e) != len(labels) for e in embeddings):
            raise ValueError(f"every layer needs one embedding per training label ({len(labels)})")
        if k > len(labels):
            raise ValueError(f"DkNN k={k} exceeds the {len(labels)} training points")
        if num_classes < 2 or labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"labels must lie in 0..{num_classes - 1}")
        self.k, self.num_classes = int(k), int(num_classes)
        self.original = labels.copy()
        self.labels = labels.copy()
        self.indexes = [NearestNeighbors(n_neighbors=self.k, metric=metric).fit(e) for e in embeddings]

    def neighbours(self, embeddings: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, distances)``, both ``[N, L, k]``, nearest first, for query embeddings (one array per layer)."""
        if len(embeddings) != len(self.indexes):
            raise ValueError(f"expected embeddings of {len(self.indexes)} layers, got {len(embeddings)}")
        found = [index.kneighbors(e) for index, e in zip(self.indexes, embeddings)]
        return np.stack([i for _, i in found], 1), np.stack([d for d, _ in found], 1)

    def predict(self, neighbours: np.ndarray, labels: Optional[np.ndarray] = None) -> np.ndarray:
        """Predicted classes ``[N]`` from neighbour indices ``[N, L, k]`` under the current (or given) labels."""
        return votes(neighbours, self.labels if labels is None else labels, self.num_classes).argmax(1)

    def flip(self, neighbours: np.ndarray, distances: np.ndarray, target: int) -> FlipResult:
        """Edit: relabel neighbours of one input (``neighbours``, ``distances``: ``[L, k]``) as ``target`` until
        the input is predicted as ``target``. The labels are changed in place (see :meth:`restore`)."""
        if not 0 <= target < self.num_classes:
            raise ValueError(f"target class {target} out of range (0..{self.num_classes - 1})")
        flat = neighbours.reshape(-1)
        points, position, multiplicity = np.unique(flat, return_inverse=True, return_counts=True)
        nearest = np.full(len(points), np.inf)
        np.minimum.at(nearest, position, distances.reshape(-1))
        counts = np.bincount(self.labels[flat], minlength=self.num_classes).astype(np.int64)
        flipped: list[int] = []
        while counts.argmax() != target:
            candidates = np.flatnonzero(self.labels[points] != target)
            own, m = self.labels[points[candidates]], multiplicity[candidates]
            others = counts.copy()
            others[target] = np.iinfo(np.int64).min
            strongest = int(others.argmax())
            runner_up = np.delete(others, strongest).max()
            # the strongest other class after the flip: it loses m votes only if the flipped point is its own
            other_max = np.where(own == strongest, np.maximum(runner_up, counts[strongest] - m), counts[strongest])
            margin = counts[target] + m - other_max
            order = np.lexsort((nearest[candidates], -m, -margin))  # last key first: margin, multiplicity, distance
            best = candidates[order[0]]
            point = int(points[best])
            counts[self.labels[point]] -= multiplicity[best]
            counts[target] += multiplicity[best]
            self.labels[point] = target
            flipped.append(point)
        return FlipResult(flipped, int(target), True)

    def restore(self, result: Optional[FlipResult] = None) -> None:
        """Undo one edit's flips (or, with no argument, every flip) so the labels are the original ones."""
        if result is None:
            self.labels[:] = self.original
        else:
            self.labels[result.indices] = self.original[result.indices]
