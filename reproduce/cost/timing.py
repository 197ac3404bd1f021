"""How `bench` measures: the networks and protocol every case trains, alternated timing, peak memory, the machine."""
import statistics
import time
from pathlib import Path

import torch

from ..config import Speed
from ..results.stats import median_interval
from ..training import speed as knobs

BATCH = 128
R110 = dict(dataset="cifar10", depth=110, block="basic", unit="original")
R1001 = dict(dataset="cifar10", depth=1001, block="bottleneck", unit="full_preact", stride_on="1x1")
# The paper recipe's CIFAR protocol, as far as a training step sees it.
PROTOCOL = dict(batch_size=BATCH, bn_batch=64, lr=0.1, momentum=0.9, sgd="caffe", weight_decay=1e-4,
                weight_decay_bn=True, weight_decay_gate_bias=False)
DEFAULT = Speed()  # the knobs a run uses unless params.yaml says otherwise


def timed(device, fn):
    """Seconds fn takes, its queued device work included."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def alternate(device, sides: dict, rounds: int, warmup: int = 1, settle: float = 0.0) -> dict:
    """Seconds of each side's call in each of `rounds` rounds (every side once per round), after
    `warmup` calls of each. `settle`: seconds of pause after each call, so that what a side leaves
    running in the background (the reference DataLoader's workers refilling their queue) is not timed
    in the next side's call."""
    def call(fn):
        t = timed(device, fn)
        time.sleep(settle)
        return t

    for _ in range(warmup):
        for fn in sides.values():
            call(fn)
    times, order = {name: [] for name in sides}, list(sides)
    for r in range(rounds):  # each round starts one side later: no side is always the one after another
        for name in order[r % len(order):] + order[:r % len(order)]:
            times[name].append(call(sides[name]))
    return times


def seconds(times: list) -> float:
    """A side's seconds per call: the median over rounds."""
    return statistics.median(times)


def paired_ratio(numerator: list, denominator: list) -> dict:
    """The median over rounds of one round's ratio of two sides' times (timed seconds apart, a slow
    spell of a shared machine hits both), with the order-statistic interval that covers the median
    ratio with the stated probability whatever the noise (results/stats.py: 5 rounds, [min, max], 93.75%)."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    low, high, coverage = median_interval(ratios)
    return {"ratio": statistics.median(ratios), "interval": [low, high] if coverage else None,
            "coverage": coverage}


def status_bytes(key) -> int:
    """A size from /proc/self/status (Linux), in bytes."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def step_peak(device, step) -> int:
    """Bytes one training step adds, at its peak, to what was held before it: on CUDA the caching
    allocator's peak; on CPU the peak resident size (Linux), reset just before the step."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from the current size
    before = status_bytes("VmRSS")
    step()
    return status_bytes("VmHWM") - before


def machine(device) -> dict:
    """What a figure was measured on: the GPU, or the CPU's model and the vector code torch runs there."""
    if device.type == "cuda":
        return {"machine": torch.cuda.get_device_name(device)}
    name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), "cpu") if Path("/proc/cpuinfo").exists() else "cpu"
    return {"machine": f"{name}, {knobs.cores()} cores, {torch.backends.cpu.get_cpu_capability()} code"}
