"""The sections of `gpu-check` (cost/gpucheck.py): each a function of the seconds it may take and of a dict
`kept` that it fills as it measures (gpu-check keeps what is in it however the section ends), returning
the rest. They run the training code itself (loop.network, train_step, CifarStream, BN over groups,
the cuDNN settings training uses), on synthetic images: speed does not depend on pixels."""
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..config import load_params
from ..data.augment import CifarStream
from ..models import describe
from ..training import speed as knobs
from ..training.loop import network, train_step
from ..training.memory import run_bytes
from .plan import runs as planned_runs

PROTOCOL = dict(lr=0.1, momentum=0.9, sgd="caffe", weight_decay=1e-4, weight_decay_bn=True,
                weight_decay_gate_bias=False)
# name: (model spec, batch, BN group, image size): the paper's CIFAR batch in 2 GPUs' groups; ImageNet, one
# of 8 GPUs' share
NETWORKS = {
    "resnet110": (dict(dataset="cifar10", depth=110, block="basic", unit="original"), 128, 64, 32),
    "resnet164": (dict(dataset="cifar10", depth=164, block="bottleneck", unit="full_preact", stride_on="1x1"), 128, 64,
                  32),
    "resnet1001": (dict(dataset="cifar10", depth=1001, block="bottleneck", unit="full_preact", stride_on="1x1"), 128,
                   64, 32),
    "imagenet_resnet200": (dict(dataset="imagenet", depth=200, unit="full_preact", stride_on="1x1", pool1="caffe"),
                           32, 32, 224),
}
STEPS = 30
PRECISIONS = ("fp32", "tf32", "bf16")  # the paper's fp32 (training's default) first


def _device(device=None):
    return torch.device(device or "cuda")


def setup(name, precision, device):
    """Network `name` as a run builds it (BN groups, SGD, layout, precision) and a fixed synthetic batch."""
    spec, batch, bn_batch, size = NETWORKS[name]
    if device.type == "cuda":
        knobs.cuda_settings(precision)  # as a run of this precision trains: TF32 only for tf32, autotuning on
    fmt = knobs.memory_format("auto", device)
    model, opt = network(spec, {**PROTOCOL, "batch_size": batch, "bn_batch": bn_batch}, precision, device, fmt)
    x = torch.randn(batch, 3, size, size, device=device, dtype=knobs.images_dtype(precision)).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000 if spec["dataset"] == "imagenet" else 10, (batch,), device=device)
    autocast = knobs.autocast(precision, device)
    return model.train(), opt, x, y, autocast


def seconds_per_step(step, device, steps=None, warmup=3) -> float:
    """Seconds per call of `step`: on a GPU, CUDA events around `steps` calls with no host sync between them."""
    steps = steps or STEPS
    for _ in range(warmup):
        step()
    if device.type != "cuda":
        t = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - t) / steps
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000 / steps


def gpu_tests(left, kept):
    """pytest -m gpu; the `train` processes its tests start die with this section's process group."""
    if not Path("tests").is_dir():
        return {"skipped": "no tests/ folder here (run gpu-check from the repository root)"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"], capture_output=True,
                          text=True, timeout=left)
    lines = done.stdout.strip().splitlines()
    return {"passed": done.returncode == 0, "summary": lines[-1] if lines else done.stderr[-500:]}


def _hot_loop(model, opt, stream, autocast, device, iterations, batch):
    """The training loop's body between two log points: a batch, a step, the loss and errors kept on the device."""
    losses, wrong = torch.zeros(iterations, device=device, dtype=torch.float64), torch.zeros(iterations, device=device)
    for it in range(iterations):
        x, y = stream.batch(it)
        for group in opt.param_groups:
            group["lr"] = 0.1
        loss, logits = train_step(model, opt, x, y, batch, 1, autocast)
        losses[it] = loss
        wrong[it] = (logits.argmax(1) != y).sum()


def no_host_sync(left, kept, device=None, iterations=20):
    """Each CIFAR network's hot loop under torch.cuda.set_sync_debug_mode("error"), fp32; then the first
    (ResNet-110) with its BN groups spanning the processes of a (one-process) NCCL group, the all-reduce path."""
    device, found = _device(device), {}
    images = torch.randint(0, 256, (1024, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (1024,))
    cifar = [n for n, (s, *_) in NETWORKS.items() if s["dataset"] != "imagenet"]
    cases = [(n, False) for n in cifar] + [(cifar[0], True)]
    for name, across in cases:
        model, opt, _, _, autocast = setup(name, "fp32", device)
        batch = NETWORKS[name][1]
        stream = CifarStream(images, labels, "cifar10", batch, device=device,
                             memory_format=knobs.memory_format("auto", device))
        key = name + (" (BN across processes, NCCL)" if across else "")
        try:
            if across:
                _one_process_group(model, device)
            _hot_loop(model, opt, stream, autocast, device, 2, batch)  # warm-up: cuDNN's first calls may sync
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("error")
            _hot_loop(model, opt, stream, autocast, device, iterations, batch)
            found[key] = "no host sync"
        except RuntimeError as e:
            found[key] = f"error: {str(e).splitlines()[0][:300]}"
        finally:
            kept["networks"] = found
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
            if across and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
    return {"passed": all(v == "no host sync" for v in found.values()), "networks": found}


def _one_process_group(model, device):
    import torch.distributed as dist

    store = tempfile.mkdtemp(prefix="gpu-check-pg-")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{store}/pg",
                            rank=0, world_size=1, timeout=datetime.timedelta(seconds=60))  # not NCCL's 10 min
    for m in model.modules():
        if hasattr(m, "process_group"):
            m.groups, m.process_group = 1, dist.group.WORLD


def speed(left, kept, device=None, precisions=PRECISIONS, params="params.yaml"):
    """img/s, peak memory and its estimate per network and precision, each kept as it is measured (an
    OOM loses only its own); then hours of each run of `params` at those rates."""
    device, rates, deadline = _device(device), [], time.monotonic() + left - 10
    for precision in precisions:
        for name in NETWORKS:
            if time.monotonic() > deadline:
                rates.append({"network": name, "precision": precision, "skipped": "time"})
            else:
                try:
                    rates.append(measure(name, precision, device))
                except torch.OutOfMemoryError as e:
                    rates.append({"network": name, "precision": precision, "error": f"out of memory: {e}"[:300]})
                if "error" in rates[-1]:  # (the failed step's tensors are free once its traceback is)
                    torch.cuda.empty_cache()
            kept["rates"] = rates
    kept.update(study_hours(rates, params))
    return {}


def measure(name, precision, device) -> dict:
    """One network's training rate, and its peak memory beside training/memory.py's estimate of it (the
    network's memory, without the data set or the CUDA context: the batch here is synthetic)."""
    spec, batch, _, size = NETWORKS[name]
    model, opt, x, y, autocast = setup(name, precision, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    s = seconds_per_step(lambda: train_step(model, opt, x, y, batch, 1, autocast), device)
    info = describe(**spec)
    found = {"network": name, "spec": spec, "precision": precision, "batch": batch, "img_s": batch / s,
             "multiply_adds_per_s": 3 * info["multiply_adds"] * (size / info["input_size"]) ** 2 * batch / s,
             "estimate_gib": run_bytes(spec, batch, size, precision) / 2**30}
    if device.type == "cuda":
        found.update(peak_gib=torch.cuda.max_memory_allocated(device) / 2**30,
                     reserved_gib=torch.cuda.max_memory_reserved(device) / 2**30)
    return found


def study_hours(rates, params="params.yaml") -> dict:
    """Hours of each run of params.yaml on one GPU of this kind at the measured rates (ImageNet: the
    rate of a GPU's share, so a run on n GPUs takes 1/n of it), and of the whole study (every seed)."""
    params = load_params(params)
    rows = planned_runs(params.model_copy(update={"profile": "paper"}))
    by_kind = {}  # a network not measured takes the median multiply-add rate of its data set's kind
    for r in rates:
        if "img_s" in r and r["precision"] == params.speed.precision:
            by_kind.setdefault(r["spec"]["dataset"] == "imagenet", []).append(r["multiply_adds_per_s"])
    hours = {}
    for row in rows:
        rate = by_kind.get(row["network"].startswith("imagenet"))
        if rate:
            hours[row["name"]] = row["multiply_adds"] / statistics.median(rate) / 3600
    seeds = {row["name"]: row["seeds"] for row in rows}
    return {"hours_per_run": hours, "study_gpu_hours": sum(h * seeds[n] for n, h in hours.items())}


def compiled_speed(left, kept, device=None, precisions=("fp32", "bf16")):
    """ResNet-110 as `compile: auto` trains it on a GPU (mode reduce-overhead: CUDA graphs): the first
    step's seconds (compiling) and img/s, kept as each is known, beside the eager rate."""
    device = _device(device)
    for precision in precisions:
        model, opt, x, y, autocast = setup("resnet110", precision, device)
        eager = len(y) / seconds_per_step(lambda: train_step(model, opt, x, y, len(y), 1, autocast), device)
        net = torch.compile(model, mode="reduce-overhead")
        t = time.perf_counter()
        train_step(net, opt, x, y, len(y), 1, autocast)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        kept[precision] = found = {"compile_s": time.perf_counter() - t, "eager_img_s": eager}
        s = seconds_per_step(lambda: train_step(net, opt, x, y, len(y), 1, autocast), device)
        kept[precision] = {**found, "img_s": len(y) / s, "speedup": len(y) / s / eager}
    return {"mode": "reduce-overhead", "network": "resnet110"}


def pack_worker(seconds: float, device="cuda"):
    """One of several processes sharing a GPU: ResNet-110 fp32 steps for `seconds`; prints its img/s."""
    device = torch.device(device)
    model, opt, x, y, autocast = setup("resnet110", "fp32", device)
    seconds_per_step(lambda: train_step(model, opt, x, y, len(y), 1, autocast), device, steps=3)
    steps, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        train_step(model, opt, x, y, len(y), 1, autocast)
        steps += 1
        if device.type == "cuda" and steps % 10 == 0:
            torch.cuda.synchronize(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    print(json.dumps({"img_s": steps * len(y) / (time.perf_counter() - t)}))


def packing(left, kept, device="cuda", counts=(1, 2, 4)):
    """Several runs on one GPU: small CIFAR networks cannot fill a large GPU on their own."""
    found, seconds = {}, max(2.0, left / len(counts) - 8)
    for k in counts:
        code = f"from reproduce.cost.gpu_sections import pack_worker; pack_worker({seconds}, {device!r})"
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(k)]
        try:
            rates = [_rate(p, seconds + 30) for p in procs]
        finally:  # one worker failing or late: none of the others keeps the GPU
            for p in procs:
                p.kill()
                p.wait()
        found[str(k)] = {"img_s_total": sum(rates), "img_s_each": rates}
        kept["processes"] = found
    return {"best": int(max(found, key=lambda k: found[k]["img_s_total"]))}


def _rate(worker, timeout) -> float:
    out, err = worker.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    if worker.returncode or not lines:
        raise RuntimeError(f"a packed worker exited with status {worker.returncode}: {err.strip()[-300:]}")
    return json.loads(lines[-1])["img_s"]


def launcher(nproc: int) -> list:
    """torchrun of this very Python (the one on PATH may be missing, or another environment's)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]


def two_gpus_like_one(left, kept, params="params.yaml"):
    """A tiny run on the digits, trained by one process and by two (NCCL), in fp64."""
    if torch.cuda.device_count() < 2:
        return {"skipped": "one GPU visible"}
    from ..data import digits
    from ..files import write_json

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        params = load_params(params).model_dump(mode="json")
        params["experiments"] = {"tiny": {"dataset": "cifar10", "depth": 8, "block": "basic", "unit": "full_preact"}}
        params["cifar"].update(iterations=40, milestones=[20, 30], warmup_iterations=5, batch_size=32, bn_batch=16,
                               log_every=5, eval_every=20, checkpoint_every=10, eval_batch_size=500,
                               bn_stats_images=500)
        params["speed"].update(device="cuda", precision="fp64")
        params.update(profile="paper", custom={})
        write_json(work / "params.yaml", params)  # JSON is YAML
        digits.write("cifar10", work / "data" / "cifar10.pt")
        weights = {}
        for name, start in (("one", [sys.executable, "-m"]), ("two", [*launcher(2), "-m"])):
            out = ["--out", f"{name}/runs", "--curves", f"{name}/curves", "--checkpoint-dir", f"{name}/ck",
                   "--metrics", f"{name}/metrics.json"]
            done = subprocess.run([*start, "reproduce", "train", "--experiment", "tiny", "--seed", "0", *out], cwd=work,
                                  capture_output=True, text=True, timeout=left / 2, env={**os.environ})
            if done.returncode:
                return {"passed": False, "error": f"{name}: {done.stderr.strip()[-800:]}"}
            weights[name] = torch.load(work / name / "runs" / "seed0" / "model.pt", weights_only=False)["model"]
        a, b = weights["one"], weights["two"]
        worst = max(((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-30)).item()
                    for k in a if a[k].is_floating_point())
        return {"passed": worst < 1e-9, "max_relative_weight_difference": worst}
    finally:
        shutil.rmtree(work, ignore_errors=True)
