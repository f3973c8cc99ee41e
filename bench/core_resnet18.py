"""Editable Training and edit latency of the core on a CIFAR-style ResNet-18 (section 4.1 set-up).

Reports, for batch 128 (``--batch``) of 32x32 images, chain 3 editable, RMSProp, k=10:
  (a) one Editable Training step (equation 2, backward and Adam update included) over one plain step;
  (b) one edit forced to take all 10 steps over 10 forward+backward passes of the editable suffix
      (chain 3, chain 4, head) on that same single input;
  (c) the peak memory a step needs (beyond the model, data and optimizer already in memory), editable
      over plain; each measured in a fresh process.
Edits inside the training step are forced to take all 10 steps, the worst case; the ratio with edits of
4 steps, typical of an editable-trained model (Table 3: 4.13), is reported beside it.
(a) and (c) are measured for the exact gradient (``backprop="full"``, equation 2) and for each cheaper
``--modes`` variant: a mode of ``editable_core.parse_backprop``, ``@N`` after it for ``L_loc`` on the first N
images only (``editable_training_loss(loc_batch=N)``); all timed interleaved in this one process.
The last output line is one JSON object with the keys editable_step_over_plain_step,
edit10_over_10_suffix_passes and peak_memory_ratio (exact mode), and for each cheaper variant
editable_step_over_plain_step_<variant> and peak_memory_ratio_<variant>, where the variant is the mode
(``truncated:2`` -> ``truncated_2``) and/or ``loc<N>`` (e.g. ``loc32``, ``first_order_loc32``). With
``--layouts``, editable_step_s_<layout>, editable_step_over_plain_step_<layout> and edit10_ms_<layout> for the
editor on one flat vector (``flat``) and on each tensor apart (``per_tensor``), each forced (exact mode).
``plain_step_minor_faults`` and ``editable_step_minor_faults`` count the page faults of one step each (on CPU,
memory the allocator mapped afresh; the README's Speed section says how to keep glibc from doing so).

    python bench/core_resnet18.py [--repeats 5] [--threads 2] [--device cpu|cuda] [--batch 128]
                                  [--modes first_order,full@32]
    python bench/core_resnet18.py --profile full   # torch.profiler tables of a plain and an editable step, then exit
    python bench/core_resnet18.py --layouts        # also the editor on one flat vector and per tensor, each forced
    python bench/core_resnet18.py --channels-last  # the model in channels-last memory throughout
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=268435456 \
        python bench/core_resnet18.py              # glibc keeping freed memory: no page faults per step
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (backprop_modes, in_subprocess, interleaved_medians, minor_page_faults,  # noqa: E402
                      peak_step_memory, step_report, sync, variant_key, variant_mode)

import editable_core.flat  # noqa: E402
from editable_core import Editable, RMSProp, classification_constraint, editable_training_loss  # noqa: E402
from editable_vision.models import cifar_resnet18  # noqa: E402


#: ``--layouts``: the editor's two layouts, forced (``editor_layout``)
LAYOUTS = {"flat": True, "per_tensor": False}


def never_satisfied(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``|l_e| + 1``: costs what ``l_e`` costs but never reaches 0, so every edit takes all k steps."""
    return classification_constraint(logits, targets).abs() + 1.0


@contextmanager
def editor_layout(editable: Editable, flat: bool | None = None):
    """The editor on one flat vector (``flat=True``, even on a CPU), on each tensor apart (False), or as
    ``editable_core.flat`` decides (None: flat on accelerators only)."""
    if flat is None:
        yield
        return
    on_cpu = editable_core.flat.ON_CPU
    editable_core.flat.ON_CPU = flat
    editable.editor.elementwise = flat
    try:
        yield
    finally:
        editable_core.flat.ON_CPU = on_cpu
        del editable.editor.elementwise  # the class's own flag again


def setup(device: torch.device, batch: int = 128, channels_last: bool = False):
    torch.manual_seed(0)
    model = cifar_resnet18().to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    editable = Editable(model, "chain3", RMSProp(lr=1e-3, beta=0.5, learnable=True), max_steps=10,
                        constraint=never_satisfied)
    optimizer = torch.optim.Adam(editable.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    x_edit, y_edit = x[:1].clone(), (y[:1] + 1) % 10

    def plain_step():
        optimizer.zero_grad()
        F.cross_entropy(editable(x), y).backward()
        optimizer.step()

    def editable_step(steps: int = 10, backprop: str = "full", loc_batch: int | None = None,
                      flat: bool | None = None):
        optimizer.zero_grad()
        editable.max_steps = steps
        with editor_layout(editable, flat):
            objective, result = editable_training_loss(editable, x, y, x_edit, y_edit, c_edit=0.01, c_loc=0.01,
                                                       backprop=backprop, loc_batch=loc_batch)
        editable.max_steps = 10
        assert result.steps == steps, (result.steps, result.l_e)
        objective.total.backward()
        optimizer.step()

    return editable, x_edit, y_edit, plain_step, editable_step


def edit_latency(editable: Editable, x_edit, y_edit, repeats: int, device: torch.device,
                 compare_layouts: bool = False) -> dict[str, float]:
    editable.eval()
    features = editable.features(x_edit).detach()
    suffix_params = [p for p in editable.suffix.parameters()]

    def edit10(flat: bool | None = None):
        with editor_layout(editable, flat):
            result = editable.edit(x_edit, y_edit)
        assert result.steps == 10

    def suffix_passes10():
        for _ in range(10):
            loss = F.cross_entropy(editable.head(features), y_edit)
            torch.autograd.grad(loss, suffix_params)

    layouts = {f"edit10_{name}": functools.partial(edit10, flat) for name, flat in LAYOUTS.items()}
    return interleaved_medians({"edit10": edit10, "suffix10": suffix_passes10, **(layouts if compare_layouts else {})},
                               repeats, device, warmup=2)


#: :func:`time_by_rows`'s groups
ROW_GROUPS = ("batch", "one image", "other tensors", "no tensor input")


def time_by_rows(prof, batch: int, cuda: bool) -> dict[str, float]:
    """Self time (s; on CUDA GPU kernel time) of a profiled step's ops, split by the rows of each op's first
    tensor input: the training batch's, the one edited image's (``[1, ...]``, or ``[C, 1, H, W]`` where a
    convolution's weight gradient runs on it transposed), other tensors (parameter-shaped: the editor's
    arithmetic and the sums of a parameter's gradients) and ops without a tensor input."""
    split = dict.fromkeys(ROW_GROUPS, 0.0)
    for event in prof.key_averages(group_by_input_shape=True):
        shape = next((s for s in event.input_shapes if s and all(isinstance(n, int) for n in s)), None)
        group = ("no tensor input" if shape is None else "batch" if shape[0] == batch else
                 "one image" if 1 in shape[:2] else "other tensors")  # [C, 1, H, W]: a one-image weight gradient
        split[group] += (event.self_device_time_total if cuda else event.self_cpu_time_total) / 1e6
    return split


def profile(steps: dict[str, Callable[[], None]], device: torch.device, batch: int) -> None:
    """Each of ``steps`` (a plain step first, then editable ones) once under ``torch.profiler``, after a warm-up
    of each: the ops by self time (on CUDA by self GPU time, then the step's wall time beside its GPU kernels'
    total and its kernel count), and that time split by :func:`time_by_rows`, in plain steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    for step in steps.values():
        step()
    plain_total = None
    for name, step in steps.items():
        sync(device)
        started = time.perf_counter()
        with torch_profile(activities=activities, record_shapes=True) as prof:
            step()
            sync(device)
        wall = time.perf_counter() - started
        events = prof.key_averages()
        print(f"{name} step:")
        print(events.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=25))
        if cuda:
            kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e6
            print(f"{name} step: wall {wall * 1000:.1f} ms (profiled), GPU kernels {busy * 1000:.1f} ms in "
                  f"{len(kernels)} kernels")
        split = time_by_rows(prof, batch, cuda)
        total = sum(split.values())
        plain_total = plain_total or total
        parts = ", ".join(f"{group} {seconds * 1000:.0f} ms ({seconds / plain_total:.2f})"
                          for group, seconds in split.items())
        print(f"{name} step: {'GPU' if cuda else 'CPU'} self time {total * 1000:.0f} ms "
              f"({total / plain_total:.2f} plain steps), by the first input's rows: {parts}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128, help="images per training batch (the edit is on one)")
    parser.add_argument("--modes", default="first_order,truncated:1,truncated:2,full@32,first_order@32",
                        help="comma list of cheaper variants to measure beside the exact one: a backprop mode, "
                             "optionally @N for L_loc on the first N images of the batch")
    parser.add_argument("--profile", metavar="MODE", help="print the torch.profiler table of one editable step "
                        "(k=10 forced) with this variant, and exit")
    parser.add_argument("--layouts", action="store_true",
                        help="also time (or profile) the exact step and the edit with the editor on one flat "
                             "vector and on each tensor apart, each forced (default: flat on accelerators only)")
    parser.add_argument("--channels-last", action="store_true",
                        help="the model in channels-last memory for the whole run (editable_vision's --channels-last)")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # child mode: 'plain' or a variant
    args = parser.parse_args()
    variants = backprop_modes(parser, args.modes)
    if args.batch < 1:
        parser.error(f"--batch: {args.batch}: a batch needs at least 1 image")
    for variant in variants:
        if (variant_mode(variant)[1] or 0) > args.batch:
            parser.error(f"--modes: {variant!r}: L_loc on more images than the batch of {args.batch}")
    if args.profile:
        backprop_modes(parser, args.profile, "--profile")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    editable, x_edit, y_edit, plain_step, editable_step = setup(device, args.batch, args.channels_last)

    def step_of(variant: str):
        return plain_step if variant == "plain" else functools.partial(editable_step, 10, *variant_mode(variant))

    if args.profile:
        steps = {"plain": plain_step, "editable": step_of(args.profile)}
        if args.layouts:
            steps.update({f"editable {name.replace('_', ' ')}": functools.partial(
                editable_step, 10, *variant_mode(args.profile), flat) for name, flat in LAYOUTS.items()})
        profile(steps, device, args.batch)
        return
    if args.memory_of:
        print(json.dumps({"peak_bytes": peak_step_memory(step_of(args.memory_of), device)}))
        return

    cheaper = {f"editable_{variant}": step_of(variant) for variant in variants}
    if args.layouts:
        cheaper.update({f"editable_{name}": functools.partial(editable_step, 10, "full", None, flat)
                        for name, flat in LAYOUTS.items()})
    steps = interleaved_medians({"plain": plain_step, "editable": editable_step,
                                 "editable_4": functools.partial(editable_step, 4), **cheaper}, args.repeats, device)
    latency = edit_latency(editable, x_edit, y_edit, args.repeats, device, args.layouts)
    faults = {name: minor_page_faults(step) for name, step in (("plain", plain_step), ("editable", editable_step))}
    kinds = {"plain": "plain", "editable": "full", **{f"editable_{variant}": variant for variant in variants}}
    if device.type == "cuda":  # CUDA's peak counter resets, so this process can measure every kind
        memory = {kind: peak_step_memory(step_of(variant), device) for kind, variant in kinds.items()}
    else:  # a CPU process's peak only grows: measure each kind in a fresh one
        child = ["--device", args.device, "--threads", str(args.threads), "--batch", str(args.batch),
                 "--modes", args.modes, *(["--channels-last"] if args.channels_last else []), "--memory-of"]
        memory = {kind: in_subprocess(__file__, *child, variant)["peak_bytes"] for kind, variant in kinds.items()}

    report = {
        **step_report(steps, latency, memory),
        "device": str(device), "threads": args.threads, "batch": args.batch, "channels_last": args.channels_last,
        "torch": torch.__version__,
        "plain_step_minor_faults": faults["plain"], "editable_step_minor_faults": faults["editable"],
    }
    for variant in variants:
        key = variant_key(variant)
        report[f"editable_step_over_plain_step_{key}"] = steps[f"editable_{variant}"] / steps["plain"]
        report[f"peak_memory_ratio_{key}"] = memory[f"editable_{variant}"] / memory["plain"]
        report[f"editable_step_s_{key}"] = steps[f"editable_{variant}"]
    for name in LAYOUTS if args.layouts else ():
        report[f"editable_step_over_plain_step_{name}"] = steps[f"editable_{name}"] / steps["plain"]
        report[f"editable_step_s_{name}"] = steps[f"editable_{name}"]
        report[f"edit10_ms_{name}"] = 1000 * latency[f"edit10_{name}"]
    print(f"ResNet-18 (CIFAR), batch {args.batch}, chain3 editable, RMSProp k=10 forced, {device}, "
          f"{args.threads} threads")
    print(f"  plain step {report['plain_step_s']:.3f} s, editable step {report['editable_step_s']:.3f} s: "
          f"ratio {report['editable_step_over_plain_step']:.2f} (target <= 1.8); with 4-step edits "
          f"{report['editable_step_over_plain_step_4_edit_steps']:.2f} (target <= 1.6)")
    print(f"  edit (10 steps) {report['edit10_ms']:.0f} ms, 10 suffix passes {report['suffix10_ms']:.0f} ms: "
          f"ratio {report['edit10_over_10_suffix_passes']:.2f} (target <= 1.5)")
    print(f"  step peak memory: plain {report['plain_step_peak_mib']:.0f} MiB, editable "
          f"{report['editable_step_peak_mib']:.0f} MiB: ratio {report['peak_memory_ratio']:.2f}")
    print(f"  minor page faults in one step: plain {faults['plain']}, editable {faults['editable']}")
    for variant in variants:
        key = variant_key(variant)
        mode, loc_batch = variant_mode(variant)
        rows = f", L_loc on {loc_batch} images" if loc_batch else ""
        print(f"  backprop={mode}{rows}: step {report[f'editable_step_s_{key}']:.3f} s, ratio "
              f"{report[f'editable_step_over_plain_step_{key}']:.2f} (target <= 1.5), memory ratio "
              f"{report[f'peak_memory_ratio_{key}']:.2f}")
    for name in LAYOUTS if args.layouts else ():
        print(f"  editor {name.replace('_', ' ')}: step {report[f'editable_step_s_{name}']:.3f} s, ratio "
              f"{report[f'editable_step_over_plain_step_{name}']:.2f}; edit (10 steps) "
              f"{report[f'edit10_ms_{name}']:.0f} ms")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
