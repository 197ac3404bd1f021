"""`python -m reproduce plan`: what the study in params.yaml costs, before anything trains.

Cost is counted in multiply-adds: a network's forward count (`describe`) × 3 for forward + backward,
× the images a run sees. Hours follow from a multiply-add rate: this device's, measured on a few
training steps of a small network, and a named GPU's peak at the params' precision × a stated efficiency.
"""
import argparse
import statistics
import time

from ..config import load_params, not_run_reason, run_config
from ..errors import UserError, did_you_mean
from ..training.schedule import epoch_batches, schedule

IMAGENET_TRAIN, CIFAR_TRAIN = 1_281_167, 50_000
# Dense peaks in TFLOPS by precision (NVIDIA datasheets; 2 FLOPs per multiply-add): fp32 on the CUDA
# cores, tf32 and bf16 on the tensor cores. Matched in order against a device name, so the PCIe/NVL
# variants come before the plain name.
PEAK_TFLOPS = {"H100 PCIe": {"fp64": 26, "fp32": 51, "tf32": 378, "bf16": 756},
               "H100 NVL": {"fp64": 30, "fp32": 60, "tf32": 418, "bf16": 835},
               "H100": {"fp64": 34, "fp32": 67, "tf32": 495, "bf16": 989},
               "H200": {"fp64": 34, "fp32": 67, "tf32": 495, "bf16": 989},
               "A100": {"fp64": 9.7, "fp32": 19.5, "tf32": 156, "bf16": 312}}
# --no-measure: ResNet-110 at ~110 img/s (fp32, channels_last) on a 2-core AMX CPU, in multiply-adds/s.
DEFAULT_RATE = 110 * 252_887_680 * 3
PROBE = dict(dataset="cifar10", depth=20, block="basic", unit="full_preact")
# The counter counts convolutions and matrix products only: where BN/ReLU sit and the shortcut's
# constants change no count, so networks differing only in these are described once.
NOT_COUNTED = ("unit", "gate_bias", "shortcut_scale", "residual_scale", "dropout_p")


def peak_tflops(name: str, precision: str):
    """Peak of a GPU named like 'H100' or 'NVIDIA H100 80GB HBM3' at `precision`; None when not in the table."""
    return next((v[precision] for k, v in PEAK_TFLOPS.items() if k.lower() in name.lower()), None)


def table_of(name: str, dataset: str, custom: bool) -> str:
    """The paper table an experiment belongs to, from its name (r110_original is shared: Table 1)."""
    if custom:
        return "custom"
    if name.startswith("t1_") or name == "r110_original":
        return "Table 1"
    if name.startswith("in_") or dataset == "imagenet":
        return "Table 5"
    if name.startswith(("r1001", "c100_")) or "_1layer_" in name:
        return "Table 3/4"
    if name.startswith(("r110_", "r164_")):
        return "Table 2"
    return "other"


def measure_rate(speed, steps=3) -> float:
    """This device's multiply-adds per second on training steps of ResNet-20 at batch 128 (the
    params' precision and memory format); deeper and wider networks may run at another rate."""
    from contextlib import nullcontext

    import torch
    import torch.nn.functional as F

    from ..models import build_model, describe

    if speed.device == "cuda" and not torch.cuda.is_available():
        raise UserError("speed.device is 'cuda' but no CUDA device is visible; use --no-measure or another device")
    cuda = speed.device == "cuda" or (speed.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    fmt = torch.channels_last if speed.channels_last else torch.contiguous_format
    model = build_model(**PROBE).to(device, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(128, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (128,), device=device)
    times = []
    for i in range(steps + 1):  # the first step warms up
        t = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16) if speed.precision == "bf16" else nullcontext():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return describe(**PROBE)["multiply_adds"] * 3 * 128 / statistics.median(times[1:])


def runs(params):
    """One row per experiment: its table, iterations, batch, training multiply-adds, the memory one process
    training its whole batch needs, and why it would not run."""
    from tqdm import tqdm

    from ..models import describe
    from ..training.memory import input_size, process_bytes

    rows, counts = [], {}
    for name, exp in tqdm(params.all_experiments().items(), desc="counting multiply-adds", leave=False,
                          disable=None):
        cfg = run_config(params, name)
        p, model = cfg.protocol, cfg.model
        key = tuple(sorted((k, v) for k, v in model.items() if k not in NOT_COUNTED))
        if key not in counts:  # forward + backward ≈ 3 forwards, plus checkpointing's recompute; memory
            info = describe(**model)
            counts[key] = (3 * info["multiply_adds"] + info["multiply_adds_recomputed"],
                           process_bytes(model, p["batch_size"], input_size(cfg), cfg.precision))
        per_image, memory = counts[key]
        imagenet = model["dataset"] == "imagenet"
        if imagenet:
            per_image *= (cfg.data.get("size", 224) / 224) ** 2  # smoke crops: convolutions scale with the pixels
        images = cfg.data.get("train_images") or (IMAGENET_TRAIN if imagenet else CIFAR_TRAIN)
        iterations = schedule(p, epoch_batches(images, p["batch_size"], p["batches"]))[0]
        rows.append(dict(name=name, table=table_of(name, model["dataset"], name in params.custom),
                         network=f"{model['dataset']} {model['depth']} {model['block']} {model['unit']}",
                         iterations=iterations, batch=p["batch_size"], memory_gib=memory / 2**30,
                         multiply_adds=per_image * iterations * p["batch_size"],
                         seeds=len(params.run_seeds() if params.profile == "smoke" else params.seeds_of(name)),
                         skipped=not_run_reason(params, cfg, params.run_seeds()[0])))
    return rows


def measured_rates(path, precision):
    """From a gpu-check JSON: multiply-adds/s per network (dataset, depth, block) at `precision`, and the
    median per kind (ImageNet or CIFAR) for the networks it did not time."""
    from ..files import load_json

    try:
        rates = [r for r in load_json(path)["speed"]["rates"] if "img_s" in r and r["precision"] == precision]
    except (OSError, KeyError, ValueError) as e:
        raise UserError(f"--gpu-check {path}: not a gpu-check file with speed measurements ({e})") from None
    if not rates:
        raise UserError(f"--gpu-check {path}: no {precision} training rate in it (speed.precision is {precision})")
    exact = {(r["spec"]["dataset"], r["spec"]["depth"], r["spec"].get("block", "bottleneck")): r["multiply_adds_per_s"]
             for r in rates}
    kind = {}
    for (dataset, _, _), rate in exact.items():
        kind.setdefault(dataset == "imagenet", []).append(rate)
    return exact, {k: statistics.median(v) for k, v in kind.items()}


def seconds(seconds_) -> str:
    if seconds_ >= 360:
        return f"{seconds_ / 3600:,.0f} h" if seconds_ >= 36000 else f"{seconds_ / 3600:.1f} h"
    return f"{seconds_ / 60:.1f} min" if seconds_ >= 60 else f"{seconds_:.1f} s"


def add_arguments(parser):
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--gpu", default="H100", help=f"GPU for the estimate: {', '.join(PEAK_TFLOPS)}")
    parser.add_argument("--efficiency", type=float, default=0.05,
                        help="fraction of the GPU's peak at speed.precision a training run reaches (default "
                             "0.05: small CIFAR networks reach a few percent; `gpu-check` measures it)")
    parser.add_argument("--gpu-check", metavar="JSON",
                        help="take each network's GPU rate from a gpu-check file (reports/gpu-check.json) "
                             "instead of --efficiency (ImageNet rates: one GPU's share of the batch)")
    parser.add_argument("--measure", action=argparse.BooleanOptionalAction, default=True,
                        help="time a few steps on this device (--no-measure: a 2-core AMX CPU's rate)")


def run(args):
    params = load_params(args.params)
    peak = peak_tflops(args.gpu, params.speed.precision)
    if peak is None:
        raise UserError(f"unknown GPU '{args.gpu}'{did_you_mean(args.gpu, PEAK_TFLOPS)}; "
                        f"known: {', '.join(PEAK_TFLOPS)}")
    if not 0 < args.efficiency <= 1:
        raise UserError(f"--efficiency must be in (0, 1] (got {args.efficiency})")
    exact, kind = measured_rates(args.gpu_check, params.speed.precision) if args.gpu_check else ({}, {})
    rate = measure_rate(params.speed) if args.measure else DEFAULT_RATE
    rows = runs(params)
    gpu = f"{args.gpu} {params.speed.precision} " + ("measured" if exact else f"@{100 * args.efficiency:.0f}%")
    for r in rows:
        dataset, depth, block, _ = r["network"].split()
        gpu_rate = exact.get((dataset, int(depth), block)) or kind.get(dataset == "imagenet") or \
            peak * 1e12 / 2 * args.efficiency
        r["here_s"], r["gpu_s"] = r["multiply_adds"] / rate, r["multiply_adds"] / gpu_rate
    how = "measured on ResNet-20 training steps" if args.measure else "a 2-core AMX CPU's, not measured"
    counts = sorted({r["seeds"] for r in rows})
    print(f"{args.params}: profile {params.profile}, {len(rows)} experiments, {'/'.join(map(str, counts))} seeds "
          f"each. Multiply-adds/s: this device {rate / 1e9:,.0f} G ({how}); on {gpu}: "
          + (f"per network from {args.gpu_check}" if exact else f"{peak * 1e12 / 2 * args.efficiency / 1e12:,.0f} T")
          + ". Hours are per run (one seed); memory: one GPU process training the whole batch (data and CUDA context included).")
    if not exact:
        print("Small CIFAR networks reach far less of a GPU's peak than large ones: `gpu-check` on a GPU measures "
              "each network's rate; pass its JSON as --gpu-check.")
    tables = {}
    for r in rows:
        tables.setdefault(r["table"], []).append(r)
    for table, group in tables.items():
        print(f"\n{table}\n  {'experiment':<28}{'network':<40}{'iterations':>11}{'batch':>6}{'P mult-adds':>12}"
              f"{'GiB':>6}{'this device':>13}{gpu:>22}")
        for r in group:
            print(f"  {r['name']:<28}{r['network']:<40}{r['iterations']:>11,}{r['batch']:>6}"
                  f"{r['multiply_adds'] / 1e15:>12.2f}{r['memory_gib']:>6.0f}{seconds(r['here_s']):>13}"
                  f"{seconds(r['gpu_s']):>22}" + (f"  ({r['skipped']})" if r["skipped"] else ""))
    one = f"{gpu}, 1 seed"
    print(f"\n{'totals':<12}{'runs':>5}{'this device, 1 seed':>22}{'all seeds':>12}{one:>30}{'all seeds':>12}")
    for name, group in [*tables.items(), ("all", rows)]:
        here, there = (sum(r[k] for r in group) for k in ("here_s", "gpu_s"))
        every_here, every_there = (sum(r[k] * r["seeds"] for r in group) for k in ("here_s", "gpu_s"))
        print(f"{name:<12}{sum(r['seeds'] for r in group):>5}{seconds(here):>22}{seconds(every_here):>12}"
              f"{seconds(there):>30}{seconds(every_there):>12}")
    skipped = [r for r in rows if r["skipped"]]
    if skipped:
        here, there = (sum(r[k] * r["seeds"] for r in rows if not r["skipped"]) for k in ("here_s", "gpu_s"))
        reasons = "; ".join(sorted({r["skipped"] for r in skipped}))
        print(f"{len(skipped)} experiments will not run ({reasons}); the rest: {seconds(here)} here, "
              f"{seconds(there)} on {gpu}")
