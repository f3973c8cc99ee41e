"""Editable Training with the core alone, on scikit-learn's digits (no download): baseline vs editable.

Trains the same small MLP twice, with plain cross-entropy and with the Editable Training objective
(equation 2: one random-target edit per batch, RMSProp editor with learnable beta, k=10), then makes N
independent edits on test images with random wrong labels and reports test error, drawdown, success rate
and mean steps (the columns of Table 3). Runs in about a minute on 2 CPU cores.

    python examples/digits_editable_training.py [--epochs 40] [--edits 300] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections import OrderedDict

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from editable_core import ControlSet, Editable, RMSProp, editable_training_loss, evaluate_edits

logger = logging.getLogger("digits")


def load_data(seed: int) -> tuple[torch.Tensor, ...]:
    """Digits as ``[n, 64]`` floats in [0, 1]; a fixed 1200 / 597 train / test split."""
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = order[:1200], order[1200:]
    return x[train], y[train], x[test], y[test]


def make_model(hidden: int = 256) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        layer1=nn.Linear(64, hidden), act1=nn.ReLU(),
        layer2=nn.Linear(hidden, hidden), act2=nn.ReLU(),
        layer3=nn.Linear(hidden, hidden), act3=nn.ReLU(),
        out=nn.Linear(hidden, 10),
    ))


def random_wrong_labels(labels: torch.Tensor, generator: torch.Generator, classes: int = 10) -> torch.Tensor:
    """A uniformly random label different from the true one, for every row."""
    return (labels + torch.randint(1, classes, labels.shape, generator=generator)) % classes


def train(args: argparse.Namespace, editable_training: bool, data: tuple[torch.Tensor, ...]) -> Editable:
    x_train, y_train, _, _ = data
    torch.manual_seed(args.seed)
    editor = RMSProp(lr=args.edit_lr, beta=0.5, learnable=True)
    editable = Editable(make_model(), args.editable, editor, max_steps=args.edit_max_steps)
    optimizer = torch.optim.Adam(editable.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            x, y = x_train[batch], y_train[batch]
            if editable_training:
                edit_index = torch.randint(len(x_train), (1,), generator=generator)
                edit_target = random_wrong_labels(y_train[edit_index], generator)
                objective, _ = editable_training_loss(editable, x, y, x_train[edit_index], edit_target,
                                                      c_edit=args.edit_coef, c_loc=args.loc_coef)
                loss = objective.total
            else:
                loss = F.cross_entropy(editable(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        logger.info("%s epoch %d loss %.4f", "editable" if editable_training else "baseline", epoch, loss.item())
    return editable.eval()


def evaluate(args: argparse.Namespace, editable: Editable, data: tuple[torch.Tensor, ...]) -> dict[str, float]:
    _, _, x_test, y_test = data
    generator = torch.Generator().manual_seed(args.seed + 1)
    edit_index = torch.randperm(len(x_test), generator=generator)[:args.edits]
    targets = random_wrong_labels(y_test[edit_index], generator)
    control = ControlSet(editable, x_test, y_test)
    metrics, _ = evaluate_edits(editable, control, x_test[edit_index], targets)
    return metrics.as_dict()


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (section 4.1)")
    parser.add_argument("--editable", default="layer3", help="the part of the MLP edits may change")
    parser.add_argument("--edit-lr", type=float, default=3e-3, help="RMSProp editor learning rate alpha")
    parser.add_argument("--edit-max-steps", type=int, default=10, help="k, the most editor steps per edit")
    parser.add_argument("--edit-coef", type=float, default=1.0, help="c_edit, weight of L_edit")
    parser.add_argument("--loc-coef", type=float, default=0.3, help="c_loc, weight of L_loc")
    parser.add_argument("--edits", type=int, default=300, help="N, independent test edits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    torch.set_num_threads(min(2, torch.get_num_threads()))

    data = load_data(args.seed)
    results = {}
    for name, editable_training in (("baseline", False), ("editable", True)):
        started = time.perf_counter()
        model = train(args, editable_training, data)
        results[name] = {**evaluate(args, model, data), "train_seconds": time.perf_counter() - started}

    print(f"Digits, MLP, {args.editable} editable, RMSProp k={args.edit_max_steps}, "
          f"N={args.edits} random-label edits\n")
    print("| Training | Test error | Drawdown | Success rate | Num steps | Train time |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        label = "Baseline" if name == "baseline" else f"Editable, c_loc={args.loc_coef:g}"
        print(f"| {label} | {r['base_error']:.2%} | {r['drawdown']:.2%} | {r['success_rate']:.1%} "
              f"| {r['mean_steps']:.2f} | {r['train_seconds']:.0f} s |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
