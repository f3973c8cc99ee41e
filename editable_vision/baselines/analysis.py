"""Section 4.2, "Analyzing Edited Models" (Figure 2): what edits do to a baseline and to an editable model.

For N independent edits of a model, each edit gets a *descriptor*: the KL divergence between the model's
predictions before and after the edit on every control image, ``d_e[j] = KL(p(y | x_j, theta) ||
p(y | x_j, theta_hat_e))`` (``[n_control]``). From them:

* the per-class drawdown matrix ``M[r, c]``: mean over edits of images of class ``r`` of
  ``|error_c(theta_hat) - error_c(theta)|`` on the control images of class ``c`` (Figure 2, left);
* a t-SNE map of the descriptors (sklearn ``TSNE``), coloured by the edited image's class, brightness by the
  edit's target (Figure 2, middle);
* the cumulative explained-variance ratio of a truncated SVD of the descriptor matrix (sklearn
  ``TruncatedSVD``; Figure 2, right): how many directions the edits' effects span.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from editable_core import ControlSet, eval_mode, make_editor

from .. import report
from ..api import VisionEditable
from ..evaluate import EditSet, progress_bar, random_edit_set, with_editor
from .common import setup


@dataclass
class EditAnalysis:
    """descriptors: ``[E, n]`` per-control-sample KL of each edit; edited_class / targets / success: ``[E]``;
    class_error_before: ``[C]``, class_error_after: ``[E, C]`` (error on the control images of each class)."""

    descriptors: np.ndarray
    edited_class: np.ndarray
    targets: np.ndarray
    success: np.ndarray
    class_error_before: np.ndarray
    class_error_after: np.ndarray


def _class_errors(logits: Tensor, labels: Tensor, num_classes: int) -> np.ndarray:
    wrong = (logits.argmax(-1) != labels).double()
    counts = torch.bincount(labels, minlength=num_classes).double()
    return (torch.bincount(labels, weights=wrong, minlength=num_classes) / counts.clamp_min(1)).cpu().numpy()


def analyse_edits(editable: VisionEditable, images: Tensor, labels: Tensor, edits: EditSet, edited_class: Tensor,
                  *, progress: bool = True, desc: str = "analysis") -> EditAnalysis:
    """Apply each edit independently and record its descriptor and per-class errors.
    images, labels: the control set ``[n, C, H, W]``, ``[n]``; edited_class: ``[E]`` true labels of the edit
    images."""
    device, num_classes = editable.device, editable.num_classes
    labels = labels.to(device)
    control = ControlSet(editable, images.to(device), labels)

    def logits_with(params=None) -> Tensor:
        with torch.no_grad(), eval_mode(editable.module):
            return torch.cat([editable.head(f, params) for f in control.features]).double()

    before = logits_with()
    logp_before = F.log_softmax(before, -1)
    descriptors, errors_after, success = [], [], []
    with eval_mode(editable.module):
        for i in progress_bar(desc, progress)(range(len(edits.targets))):
            result = editable.edit(edits.images[i], int(edits.targets[i]))
            after = logits_with(result.params)
            kl = (logp_before.exp() * (logp_before - F.log_softmax(after, -1))).sum(-1)
            descriptors.append(kl.clamp_min(0).cpu().numpy())
            errors_after.append(_class_errors(after, labels, num_classes))
            success.append(result.success)
    return EditAnalysis(np.stack(descriptors), edited_class.cpu().numpy(), edits.targets.cpu().numpy(),
                        np.asarray(success), _class_errors(before, labels, num_classes), np.stack(errors_after))


def drawdown_matrix(analysis: EditAnalysis, num_classes: int) -> np.ndarray:
    """``M [C, C]``: row ``r`` = edits of images of class ``r``, column ``c`` = mean ``|delta error|`` on the
    control images of class ``c``; NaN for a class that was never edited."""
    delta = np.abs(analysis.class_error_after - analysis.class_error_before[None])
    matrix = np.full((num_classes, num_classes), np.nan)
    for r in range(num_classes):
        rows = analysis.edited_class == r
        if rows.any():
            matrix[r] = delta[rows].mean(0)
    return matrix


def tsne_embedding(descriptors: np.ndarray, *, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """``[E, 2]`` t-SNE map of the descriptors ``[E, n]`` (perplexity capped below ``E / 3``)."""
    from sklearn.manifold import TSNE

    if len(descriptors) < 4:
        raise ValueError(f"t-SNE needs at least 4 edits, got {len(descriptors)}")
    perplexity = min(perplexity, (len(descriptors) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(descriptors)


def explained_variance(descriptors: np.ndarray, *, max_components: int = 50, seed: int = 0) -> np.ndarray:
    """Cumulative explained-variance ratio ``[m]`` of a truncated SVD of ``descriptors [E, n]``, for
    ``1..m`` components (``m = min(max_components, E - 1, n - 1)``)."""
    from sklearn.decomposition import TruncatedSVD

    m = min(max_components, descriptors.shape[0] - 1, descriptors.shape[1] - 1)
    if m < 1:
        raise ValueError(f"a truncated SVD needs at least 2 edits and 2 control images, got {descriptors.shape}")
    svd = TruncatedSVD(n_components=m, random_state=seed).fit(descriptors)
    return np.cumsum(svd.explained_variance_ratio_)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    fig.savefig(path, dpi=90)


def plot_drawdown_matrices(matrices: dict[str, np.ndarray], path: str) -> None:
    """Figure 2 (left): one heat map per model, shared colour scale, in percent."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 3.8), squeeze=False)
    vmax = max(np.nanmax(m) for m in matrices.values()) * 100 or 1.0
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        image = ax.imshow(100 * matrix, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(f"{name}: drawdown per class, %", fontsize=9)
        ax.set_xlabel("class of the affected images")
        ax.set_ylabel("class of the edited image")
        ax.set_xticks(range(matrix.shape[1]))
        ax.set_yticks(range(matrix.shape[0]))
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8)
    _save(fig, path)
    plt.close(fig)


def plot_tsne(maps: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], num_classes: int, path: str) -> None:
    """Figure 2 (middle): ``maps[name] = (embedding [E, 2], edited_class [E], targets [E])``; colour = class of
    the edited image, brightness = edit target (dark: 0 .. light: C-1)."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 4.0), squeeze=False)
    for ax, (name, (xy, classes, targets)) in zip(axes[0], maps.items()):
        base = np.array([cmap(int(c) % cmap.N)[:3] for c in classes])
        shade = (0.35 + 0.65 * targets / max(1, num_classes - 1))[:, None]
        colours = np.clip(base * shade + (1 - shade) * 0.0, 0, 1)
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=10, linewidths=0)
        ax.set_title(f"{name}: t-SNE of edit descriptors", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=cmap(c % cmap.N), label=str(c))
               for c in range(num_classes)]
    fig.legend(handles=handles, title="edited class", loc="center right", fontsize=7, title_fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    _save(fig, path)
    plt.close(fig)


def plot_explained_variance(curves: dict[str, np.ndarray], path: str, title: Optional[str] = None) -> None:
    """Figure 2 (right): cumulative explained-variance ratio vs number of SVD components, one curve per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, marker=".", markersize=3, label=name)
    ax.set_xlabel("number of SVD components")
    ax.set_ylabel("explained variance ratio (cumulative)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "Truncated SVD of edit descriptors", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def components_for(curve: np.ndarray, fraction: float) -> Optional[int]:
    """The fewest SVD components whose cumulative explained-variance ratio reaches ``fraction`` (None: more
    than the curve has)."""
    reached = np.flatnonzero(curve >= fraction)
    return int(reached[0]) + 1 if reached.size else None


def run_analysis(args) -> tuple[str, dict]:
    """The ``analysis`` command: the same edits on the plain model (edited with RMSProp) and the Editable
    Training model; writes the three PNGs into ``--plot-dir``; returns a summary table and the JSON payload."""
    if args.perplexity <= 0:
        raise ValueError(f"--perplexity must be > 0, got {args.perplexity}")
    if args.num_edits < 4:
        raise ValueError(f"--num-edits must be >= 4 for t-SNE and SVD, got {args.num_edits}")
    run = setup(args)
    num_classes = run.data.num_classes
    models = {"Baseline": with_editor(run.trained("plain"), make_editor("rmsprop", args.edit_lr), "chain3"),
              "Editable Training": run.trained("editable")}
    edits = random_edit_set(run.images, num_classes, args.num_edits, seed=args.seed + 9)
    edited_class = run.labels[edits.indices]
    analyses = {name: analyse_edits(model, run.images, run.labels, edits, edited_class,
                                    progress=not args.quiet, desc=name) for name, model in models.items()}
    matrices = {name: drawdown_matrix(a, num_classes) for name, a in analyses.items()}
    curves = {name: explained_variance(a.descriptors, max_components=args.components, seed=args.seed)
              for name, a in analyses.items()}
    maps = {name: (tsne_embedding(a.descriptors, perplexity=args.perplexity, seed=args.seed), a.edited_class,
                   a.targets) for name, a in analyses.items()}
    paths = {key: os.path.join(args.plot_dir, f"{args.prefix}{key}.png") for key in ("drawdown_per_class",
                                                                                    "edit_tsne", "edit_svd")}
    plot_drawdown_matrices(matrices, paths["drawdown_per_class"])
    plot_tsne(maps, num_classes, paths["edit_tsne"])
    plot_explained_variance(curves, paths["edit_svd"])
    rows, summary = [], []
    for name, a in analyses.items():
        m = matrices[name]
        same = float(np.nanmean(np.diag(m)))
        other = float(np.nanmean(m[~np.eye(num_classes, dtype=bool)]))
        drawdown = float(np.abs(a.class_error_after - a.class_error_before[None]).mean())
        needed = {f: components_for(curves[name], f) for f in (0.8, 0.9)}
        rows.append([name, len(a.targets), report.percent(float(a.success.mean()), 1),
                     report.percent(same), report.percent(other),
                     f"{float(np.median(a.descriptors.mean(1))):.2e}",
                     needed[0.8] or f"> {len(curves[name])}", needed[0.9] or f"> {len(curves[name])}"])
        summary.append({"model": name, "num_edits": len(a.targets), "success_rate": float(a.success.mean()),
                        "mean_class_drawdown": drawdown, "same_class_drawdown": same,
                        "other_class_drawdown": other, "drawdown_matrix": m.tolist(),
                        "explained_variance": curves[name].tolist(),
                        "components_for_80": needed[0.8], "components_for_90": needed[0.9]})
    headers = ["Model", "Edits", "Success Rate", "Drawdown, same class", "Drawdown, other classes",
               "Median mean KL", "SVD comps for 80%", "for 90%"]
    text = report.markdown_table(headers, rows) + "\n\n" + "\n".join(f"{k}: {p}" for k, p in paths.items())
    payload = {"settings": {k: v for k, v in vars(args).items() if k not in ("command", "func")},
               "edit_indices": edits.indices.tolist(), "edit_targets": edits.targets.tolist(),
               "models": summary, "plots": paths}
    return text, payload
