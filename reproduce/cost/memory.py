"""ResNet-1001's training step with and without activation checkpointing: peak memory and step time."""
import json
import os
import subprocess
import sys

import torch

from ..errors import UserError
from ..training import speed as knobs
from ..training.loop import network, train_step
from .timing import BATCH, DEFAULT, PROTOCOL, R1001, alternate, paired_ratio, seconds, step_peak


def deep_steps(batch, device) -> dict:
    """A ResNet-1001 training step on a fixed batch in the default precision and this device's default
    memory format, with (True) and without (False) activation checkpointing."""
    fmt = knobs.memory_format(DEFAULT.channels_last, device)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    autocast, protocol = knobs.autocast(DEFAULT.precision, device), {**PROTOCOL, "batch_size": batch, "bn_batch": batch}
    steps = {}
    for ckpt in (True, False):
        model, opt = network({**R1001, "activation_checkpointing": ckpt}, protocol, DEFAULT.precision, device, fmt)
        steps[ckpt] = lambda m=model.train(), o=opt: train_step(m, o, x, y, batch, 1, autocast)
    return steps


def memory_probe(batch, device):
    """Run in a fresh process: each side's first step, checkpointed first (one-off costs of a first
    step, such as oneDNN's primitive caches, then count against it: the ratio is not flattered)."""
    device = torch.device(device)
    steps = deep_steps(batch, device)
    print(json.dumps({str(ckpt): step_peak(device, steps[ckpt]) for ckpt in (True, False)}))


def start_memory_probe(batch, device) -> subprocess.Popen:
    """Start measuring {checkpointing: peak bytes of one step} in a fresh process, so that no allocator
    history counts; it runs while the images and networks are prepared (nothing is timed then). On
    CPU glibc maps every allocation of 128 KiB or more on its own and unmaps it when freed, so the
    resident size follows the live tensors rather than memory the allocator keeps for later."""
    code = f"from reproduce.cost.memory import memory_probe; memory_probe({batch}, {str(device)!r})"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def peak_bytes(probe: subprocess.Popen, batch) -> dict:
    out, err = probe.communicate()
    if probe.returncode:
        raise UserError(f"the ResNet-1001 memory probe (batch {batch}) failed with exit {probe.returncode} "
                        f"(-9 is usually out of memory): {err.strip()[-500:]}")
    return {k == "True": v for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def memory_case(steps, peaks, device, size):
    batch = size["deep_batch"]
    # Two warm-up steps: the plain step's first ones page in its ~1 GiB of fresh activations.
    s = alternate(device, steps, size["deep_rounds"], warmup=2)
    return {"case": "train_resnet1001_memory", "ratio": peaks[False] / peaks[True],
            "project_img_s": batch / seconds(s[True]), "reference_img_s": batch / seconds(s[False]),
            **{f"time_{k}": v for k, v in paired_ratio(s[True], s[False]).items()},  # time_ratio, _interval, ...
            "precision": DEFAULT.precision, "batch_size": batch,
            "peak_mib_with_checkpointing": peaks[True] / 2**20, "peak_mib_without": peaks[False] / 2**20,
            "note": "project = with activation checkpointing, reference = without; ratio = peak memory "
                    "without / with" + ("" if batch == BATCH else f"; batch {batch}, not 128")}
