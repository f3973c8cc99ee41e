"""Editable Training and edit latency through editable_vision's training loop (``Trainer.train_step``) on
the CIFAR ResNet-18 of section 4.1: the ratios of ``bench/core_resnet18.py``, measured the way users train.

Batch 128 of 32x32 images (random data: speed does not depend on it), chain 3 editable, RMSProp with
learnable beta, k=10, the trainer's defaults otherwise (Adam, gradient clipping, one edit per batch drawn
from the training set). Reports
  (a) one Editable Training step over one plain step (``Trainer.train_step`` in modes editable / plain);
  (b) one edit forced to take all 10 steps (``VisionEditable.edit``, input checks included) over 10
      forward+backward passes of the editable suffix (chain 3, chain 4, head) on that single image;
  (c) the peak memory of a step (beyond model, data and optimizer), editable over plain, each measured
      in a fresh process.
Edits are forced to take all 10 steps (the worst case); the step ratio with 4-step edits, typical of an
editable-trained model (Table 3: 4.13), is reported beside it. The last output line is one JSON object
with the keys editable_step_over_plain_step, edit10_over_10_suffix_passes and peak_memory_ratio. With
``--channels-last``, a plain and an editable trainer in channels-last memory (``Trainer(channels_last=True)``)
are timed in the same rounds: plain_step_s_channels_last, editable_step_s_channels_last,
editable_step_over_plain_step_channels_last and channels_last_speedup_{plain,editable} (the default layout's
step time over the channels-last one's).

    python bench/vision_resnet18.py [--repeats 3] [--threads 2] [--device cpu|cuda] [--width 64] [--channels-last]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import in_subprocess, interleaved_medians, peak_step_memory, step_report  # noqa: E402

from editable_core import classification_constraint  # noqa: E402
from editable_core import make_editor  # noqa: E402
from editable_vision import TrainConfig, Trainer, VisionData, VisionEditable, build_model  # noqa: E402
from editable_vision.data import TensorImages  # noqa: E402

BATCH = 128


def never_satisfied(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``|l_e| + 1``: costs what ``l_e`` costs but never reaches 0, so every edit takes all k steps."""
    return classification_constraint(logits, targets).abs() + 1.0


def make_trainer(mode: str, device: torch.device, width: int,
                 channels_last: bool = False) -> tuple[Trainer, torch.Tensor, torch.Tensor]:
    """A trainer of ``mode`` (plain / editable) on random CIFAR-shaped data, and one batch of it."""
    torch.manual_seed(0)
    spec = {"arch": "cifar_resnet18", "num_classes": 10, "in_channels": 3, "width": width}
    editable = VisionEditable(build_model(spec), "chain3", make_editor("rmsprop", 1e-3, "auto"), 10,
                              input_shape=(3, 32, 32), constraint=never_satisfied)
    images, labels = torch.randn(4 * BATCH, 3, 32, 32), torch.randint(0, 10, (4 * BATCH,))
    data = VisionData(TensorImages(images, labels), TensorImages(images[:BATCH], labels[:BATCH]), 10, (3, 32, 32),
                      lambda image: image, "random", lambda picture: picture)
    trainer = Trainer(editable, data, TrainConfig(mode=mode, batch_size=BATCH), model_spec=spec,
                      data_spec={"name": "random"}, device=device, progress=False, channels_last=channels_last)
    return trainer, images[:BATCH].to(device), labels[:BATCH].to(device)


def step_fn(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor, edit_steps: int = 10):
    def step():
        trainer.editable.max_steps = edit_steps
        stats = trainer.train_step(images, labels)
        trainer.editable.max_steps = 10
        assert stats.get("edit_steps", edit_steps) == edit_steps, stats
    return step


def edit_latency(trainer: Trainer, repeats: int, device: torch.device) -> dict[str, float]:
    editable = trainer.editable.eval()
    image, target = trainer.data.train[0][0].to(device), 3
    features = editable.features(image[None]).detach()
    suffix_params = list(editable.suffix.parameters())
    y = torch.tensor([target], device=device)

    def edit10():
        assert editable.edit(image, target).steps == 10

    def suffix_passes10():
        for _ in range(10):
            torch.autograd.grad(F.cross_entropy(editable.head(features), y), suffix_params)

    return interleaved_medians({"edit10": edit10, "suffix10": suffix_passes10}, repeats, device, warmup=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=int, default=64, help="cifar_resnet18 width (64: the paper's model)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true",
                        help="also time a plain and an editable step with the model in channels-last memory")
    parser.add_argument("--memory-of", choices=["plain", "editable"], help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.memory_of:
        trainer, images, labels = make_trainer(args.memory_of, device, args.width)
        print(json.dumps({"peak_bytes": peak_step_memory(step_fn(trainer, images, labels), device)}))
        return

    plain, images, labels = make_trainer("plain", device, args.width)
    editable, _, _ = make_trainer("editable", device, args.width)
    channels_last = {}
    if args.channels_last:
        plain_cl, _, _ = make_trainer("plain", device, args.width, channels_last=True)
        editable_cl, _, _ = make_trainer("editable", device, args.width, channels_last=True)
        channels_last = {"plain_channels_last": step_fn(plain_cl, images, labels),
                         "editable_channels_last": step_fn(editable_cl, images, labels)}
    steps = interleaved_medians({"plain": step_fn(plain, images, labels),
                                 "editable": step_fn(editable, images, labels),
                                 "editable_4": step_fn(editable, images, labels, 4), **channels_last},
                                args.repeats, device)
    latency = edit_latency(editable, args.repeats, device)
    if device.type == "cuda":  # CUDA's peak counter resets, so this process can measure both
        memory = {kind: peak_step_memory(step_fn(*make_trainer(kind, device, args.width)), device)
                  for kind in ("plain", "editable")}
    else:  # a CPU process's peak only grows: measure each kind in a fresh one
        child = ["--device", args.device, "--threads", str(args.threads), "--width", str(args.width), "--memory-of"]
        memory = {kind: in_subprocess(__file__, *child, kind)["peak_bytes"] for kind in ("plain", "editable")}

    report = {
        **step_report(steps, latency, memory),
        "device": str(device), "threads": args.threads, "width": args.width, "repeats": args.repeats,
        "torch": torch.__version__,
    }
    if args.channels_last:
        for kind in ("plain", "editable"):
            report[f"{kind}_step_s_channels_last"] = steps[f"{kind}_channels_last"]
            report[f"channels_last_speedup_{kind}"] = steps[kind] / steps[f"{kind}_channels_last"]
        report["editable_step_over_plain_step_channels_last"] = (steps["editable_channels_last"]
                                                                 / steps["plain_channels_last"])
    print(f"editable_vision Trainer, CIFAR ResNet-18 (width {args.width}), batch {BATCH}, chain3 editable, "
          f"RMSProp k=10 forced, {device}, {args.threads} threads")
    print(f"  plain step {report['plain_step_s']:.3f} s, editable step {report['editable_step_s']:.3f} s: "
          f"ratio {report['editable_step_over_plain_step']:.2f}; with 4-step edits "
          f"{report['editable_step_over_plain_step_4_edit_steps']:.2f}")
    print(f"  edit (10 steps) {report['edit10_ms']:.0f} ms, 10 suffix passes {report['suffix10_ms']:.0f} ms: "
          f"ratio {report['edit10_over_10_suffix_passes']:.2f}")
    print(f"  step peak memory: plain {report['plain_step_peak_mib']:.0f} MiB, editable "
          f"{report['editable_step_peak_mib']:.0f} MiB: ratio {report['peak_memory_ratio']:.2f}")
    if args.channels_last:
        print(f"  channels-last: plain step {report['plain_step_s_channels_last']:.3f} s "
              f"({report['channels_last_speedup_plain']:.2f}x faster), editable step "
              f"{report['editable_step_s_channels_last']:.3f} s ({report['channels_last_speedup_editable']:.2f}x): "
              f"ratio {report['editable_step_over_plain_step_channels_last']:.2f}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
