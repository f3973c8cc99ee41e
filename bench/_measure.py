"""Measurement helpers shared by the bench scripts: interleaved timing, per-step peak memory, the ResNet report."""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

from editable_core import parse_backprop


def backprop_modes(parser: argparse.ArgumentParser, text: str, flag: str = "--modes",
                   loc_batch: bool = True) -> list[str]:
    """The comma list ``text`` of variants, each a backprop mode (:func:`editable_core.parse_backprop`)
    optionally followed by ``@N``, ``L_loc`` on N images of the batch (``loc_batch``, where the bench
    offers it); a bad one is a ``parser`` error naming ``flag``."""
    variants = [variant for variant in text.split(",") if variant]
    for variant in variants:
        mode, _, rows = variant.partition("@")
        try:
            parse_backprop(mode)
        except ValueError as error:
            parser.error(f"{flag}: {error}")
        if "@" in variant and not loc_batch:
            parser.error(f"{flag}: {variant!r}: this bench times backprop modes only (no '@N')")
        if rows and not (rows.isdigit() and int(rows) >= 1):
            parser.error(f"{flag}: {variant!r}: after '@' comes the number of images for L_loc, an integer >= 1")
    return variants


def variant_mode(variant: str) -> tuple[str, int | None]:
    """``"first_order@32"`` -> ``("first_order", 32)``: the backprop mode and the images ``L_loc`` sees."""
    mode, _, loc_batch = variant.partition("@")
    return mode, int(loc_batch) if loc_batch else None


def variant_key(variant: str) -> str:
    """A JSON key suffix: ``"truncated:2"`` -> ``truncated_2``, ``"full@32"`` -> ``loc32``,
    ``"first_order@32"`` -> ``first_order_loc32``, ``"full"`` -> ``full``."""
    mode, loc_batch = variant_mode(variant)
    name = mode.replace(":", "_")
    if loc_batch is None:
        return name
    return f"loc{loc_batch}" if mode == "full" else f"{name}_loc{loc_batch}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(steps: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                      warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each callable, run in turn ``repeats`` times (after ``warmup`` untimed rounds), so that
    a machine whose speed drifts affects all of them alike and their ratios stay meaningful."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(warmup + repeats):
        for name, step in steps.items():
            sync(device)
            started = time.perf_counter()
            step()
            sync(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - started)
    return times


def interleaved_medians(steps: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                        warmup: int = 1) -> dict[str, float]:
    """Median seconds of each callable over :func:`interleaved_times`."""
    return {name: statistics.median(values)
            for name, values in interleaved_times(steps, repeats, device, warmup).items()}


def minor_page_faults(step: Callable[[], object]) -> int:
    """Minor page faults of this process during one call of ``step``: on CPU, first touches of memory the
    allocator has just mapped (glibc maps each block above its adaptive threshold afresh and returns it when
    freed, unless told otherwise; README, Speed: the CPU allocator)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def peak_step_memory(step: Callable[[], object], device: torch.device) -> int:
    """Peak bytes a step needs beyond what was allocated before it.

    On CUDA: ``max_memory_allocated``. On CPU: the rise of the process's peak resident set size, so call
    this once per fresh process (see :func:`in_subprocess`), before anything else has run a step.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    before = _peak_rss_kib()
    step()
    return (_peak_rss_kib() - before) * 1024


def _peak_rss_kib() -> int:
    """Peak resident set size of this process image. Linux's ``VmHWM`` starts afresh at ``exec``, unlike
    ``ru_maxrss``, which a child inherits from the parent that forked it."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def in_subprocess(script: str, *args: str) -> dict:
    """Run ``script`` with ``args`` in a fresh interpreter and parse the JSON object on its last line."""
    out = subprocess.run([sys.executable, script, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_report(steps: dict[str, float], latency: dict[str, float], memory: dict[str, int]) -> dict[str, float]:
    """The headline figures of a ResNet-18 bench: step, edit-latency and peak-memory ratios, and what they
    divide. ``steps`` holds median seconds of ``plain``, ``editable`` (k = 10 forced) and ``editable_4``;
    ``latency`` of ``edit10`` and ``suffix10``; ``memory`` peak bytes of ``plain`` and ``editable``."""
    return {
        "editable_step_over_plain_step": steps["editable"] / steps["plain"],
        "edit10_over_10_suffix_passes": latency["edit10"] / latency["suffix10"],
        "peak_memory_ratio": memory["editable"] / memory["plain"],
        "editable_step_over_plain_step_4_edit_steps": steps["editable_4"] / steps["plain"],
        "plain_step_s": steps["plain"], "editable_step_s": steps["editable"],
        "edit10_ms": 1000 * latency["edit10"], "suffix10_ms": 1000 * latency["suffix10"],
        "plain_step_peak_mib": memory["plain"] / 2**20, "editable_step_peak_mib": memory["editable"] / 2**20,
    }
