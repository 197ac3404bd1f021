"""`python -m reproduce bench`: the project's default training path against the way most public CIFAR code does it.

Reference: torchvision's CIFAR10 with per-image RandomCrop(32, 4), RandomHorizontalFlip, ToTensor,
Normalize through a DataLoader (2 workers, shuffle, batch 128), an eager fp32 NCHW network and
torch.optim.SGD. Project: what a run of the paper profile does (training/loop.py): CifarStream batches
on the device, the default precision (fp32), the memory format `speed.channels_last: auto` picks for
this device, BN over groups of 64, the recipe's SGD. Also measured: the other memory format (does auto
pick the faster?), bf16 autocast where the device has native bf16 (never on an AVX2-only CPU, where
it is ~10x slower than fp32), torch.compile (full mode), and ResNet-1001's memory with activation
checkpointing. Sides are timed in alternation (A, B, A, B, ...) so that machine noise hits both;
speeds are medians over rounds, and a ratio is the median of each round's ratio with its
order-statistic interval, against which a target is met, NOT met or undecided.
"""
import itertools
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import cifar
from ..data.augment import CifarStream
from ..errors import UserError
from ..files import write_json
from ..models import describe
from ..models.batchnorm import GroupBatchNorm2d
from ..training import speed as knobs
from ..training.loop import compiled, network, train_step
from .memory import deep_steps, memory_case, peak_bytes, start_memory_probe
from .plan import peak_tflops
from .timing import BATCH, DEFAULT, PROTOCOL, R110, alternate, machine, paired_ratio, seconds, timed

# (field, sense, bound): targets for this project's default path on a 2-core CPU, checked on CPU only.
TARGETS = {"cifar_data_pipeline": [("ratio", ">=", 20)], "train_resnet110": [("ratio", ">=", 1.2)],
           "train_resnet110_layout": [("ratio", ">=", 1.0)], "train_resnet110_one_bn": [("ratio", ">=", 0.95)],
           "train_resnet1001_memory": [("ratio", ">=", 4), ("time_ratio", "<=", 1.4)]}
# quick: under two minutes on 2 CPU cores of either kind. rounds = alternations (5: a ratio's [min, max]
# covers its median 93.75%); data_batches = reference batches per round; images = how many of
# CIFAR-10's the stream holds (a batch is a gather: its speed does not depend on how many to gather from).
SIZES = {"quick": dict(rounds=5, data_rounds=5, data_batches=10, deep_rounds=2, deep_batch=8, compile=(),
                       images=10_000),
         "full": dict(rounds=7, data_rounds=7, data_batches=50, deep_rounds=3, deep_batch=BATCH,
                      compile=("default",), images=50_000)}


def images(path="data/cifar10.pt"):
    """CIFAR-10's training images if converted already, else random ones of its shape (speed does not
    depend on pixel values); the third value says which. The smoke profile's 8x8 digits stand-in, which
    the smoke study leaves at that path, is not CIFAR: random images then."""
    if Path(path).exists():
        data = cifar.load(path)
        if tuple(data["train_x"].shape[1:]) == (3, 32, 32):
            return data["train_x"], data["train_y"], "cifar10"
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (50000,), generator=g), "random")


def reference_loader(x, y, device):
    """The usual public CIFAR input pipeline, fed with our images (its constructor would demand the
    official files and their md5s, so the object is made bare and given its fields)."""
    from torchvision import transforms as T
    from torchvision.datasets import CIFAR10

    mean, std = (tuple(v / 255 for v in m) for m in cifar.MEAN_STD["cifar10"])
    ds = CIFAR10.__new__(CIFAR10)
    ds.data, ds.targets = x.permute(0, 2, 3, 1).numpy(), y.tolist()  # HWC uint8, as torchvision keeps it
    ds.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                              T.Normalize(mean, std)])
    ds.target_transform = None
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True,
                                         persistent_workers=True, pin_memory=device.type == "cuda")

    def forever():
        while True:
            for xb, yb in loader:
                yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
    return forever()


def data_case(stream, loader, device, size):
    # The project's batches take ~50x less time: it drains 10x as many per round, so that a round is
    # not a few milliseconds that any hiccup of this shared machine doubles.
    n, it = {"project": 10 * size["data_batches"], "reference": size["data_batches"]}, itertools.count()
    times = {"project": [], "reference": []}
    def drain(batches, n):  # as a training loop: one batch alive at a time
        for _ in range(n):
            next(batches)

    for i in range(1 + size["data_rounds"]):  # the first round warms up (and starts the workers)
        t = timed(device, lambda: drain((stream.batch(step) for step in it), n["project"]))
        for _ in range(4):  # the 2 workers x 2 batches prefetched while idle come for free: not timed
            next(loader)
        u = timed(device, lambda: drain(loader, n["reference"]))
        time.sleep(0.2)  # the workers refill their queues now rather than during the project's turn
        if i:
            times["project"].append(t)
            times["reference"].append(u)
    project, reference = (n[k] * BATCH / seconds(times[k]) for k in ("project", "reference"))
    per_batch = {k: [t / n[k] for t in times[k]] for k in n}
    return {"case": "cifar_data_pipeline", "project_img_s": project, "reference_img_s": reference,
            **paired_ratio(per_batch["reference"], per_batch["project"]),
            "precision": f"{stream.rows.dtype} (reference: fp32)".replace("torch.", ""),
            "batches_per_round": f"{n['project']} project, {n['reference']} reference"}


def project_side(stream, device, precision="fp32", channels_last=True, compile=False, bn_groups=None, share=None):
    """One training step of ResNet-110 as a run takes it: CifarStream batch, network(), train_step().
    `share`: another side's `.share`, its (network, optimizer), to train instead of a new one; BN over
    `bn_groups` groups of the batch in this side's steps (1: one BN over the whole batch)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model, opt = share or network(R110, PROTOCOL, precision, device, fmt)
    bns = [m for m in model.modules() if isinstance(m, GroupBatchNorm2d)]
    groups = bn_groups or bns[0].groups
    net, autocast, it = compiled(model.train(), compile), knobs.autocast(precision, device), itertools.count()
    tf32 = precision == "tf32"

    def step():
        x, y = stream.batch(next(it))  # the stream's layout: the other side pays one copy (~1% of a step)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
        for m in bns:
            m.groups = groups
        train_step(net, opt, x.contiguous(memory_format=fmt), y, len(y), 1, autocast)
    step.share = model, opt
    return step


def reference_side(loader, device):
    model = build_reference(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step():
        x, y = next(loader)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def build_reference(device):
    from ..models import build_model

    return build_model(**R110).to(device).train()  # eager fp32 NCHW, nn.BatchNorm2d over the whole batch


def default_layout(device) -> bool:
    """Whether a run trains channels-last here by default."""
    return knobs.channels_last(DEFAULT.channels_last, device)


def train_sides(stream, loader, device, size) -> dict:
    """ResNet-110 training steps: the project's default path, its other memory format, the same with one
    BN over the whole batch (what the paper's BN groups cost), bf16 where the device has it natively,
    tf32 on a GPU, compiled (`size["compile"]` modes), and the reference."""
    layout = default_layout(device)
    default = project_side(stream, device, DEFAULT.precision, layout)
    # one BN trains the default side's network: two networks built alike differ by up to 7% in step
    # time on a shared 2-core machine (measured), more than the 5% this case tells apart.
    sides = {"default": default, "other_layout": project_side(stream, device, DEFAULT.precision, not layout),
             "one_bn": project_side(stream, device, DEFAULT.precision, layout, bn_groups=1, share=default.share),
             "reference": reference_side(loader, device)}
    if knobs.native_bf16(device):
        sides["bf16"] = project_side(stream, device, "bf16", layout)
    else:
        print("bf16: not measured (this CPU has no native bf16: autocast would run ~10x slower than fp32)")
    if device.type == "cuda":
        sides["tf32"] = project_side(stream, device, "tf32", layout)
    for mode in size["compile"]:  # speed.compile: its first step compiles (minutes on a CPU)
        sides[f"compile {mode}"] = project_side(stream, device, DEFAULT.precision, layout,
                                                compile=True if mode == "default" else mode)
    return sides


def train_cases(sides, device, size):
    layout = "channels_last" if default_layout(device) else "NCHW"
    other = {"channels_last": "NCHW", "NCHW": "channels_last"}[layout]
    compile_s = {side: timed(device, fn) for side, fn in sides.items() if side.startswith("compile")}
    # Without the pause the side timed after the reference paid for its 2 workers' refill (measured on
    # a 2-core Xeon: channels_last 65-76 img/s after the reference, 100-107 alone). With it the
    # reference's prefetch comes free: a conservative ratio.
    # Warm-up: a side's first three steps on a CPU take up to 3x a later one (oneDNN's primitives, the
    # allocator's pools; measured on a 2-core EPYC), and with one warm-up step the quick medians held them.
    s = alternate(device, sides, size["rounds"], warmup=3, settle=0.3 if device.type == "cpu" else 0.0)
    records = []

    def record(case, side, versus, precision, **extra):
        r = {"case": case, "project_img_s": BATCH / seconds(s[side]), "reference_img_s": BATCH / seconds(s[versus]),
             **paired_ratio(s[versus], s[side]), "precision": precision, "batch_size": BATCH, **extra}
        if device.type == "cuda":
            r.update(gpu_utilisation(r["project_img_s"], device, side if side in ("bf16", "tf32") else "fp32"))
        records.append(r)

    record("train_resnet110", "default", "reference", f"fp32 {layout} vs fp32 NCHW")
    record("train_resnet110_layout", "default", "other_layout", f"fp32 {layout} vs fp32 {other}",
           note=f"speed.channels_last: auto picks {layout} here; reference = the other memory format")
    record("train_resnet110_one_bn", "default", "one_bn", f"fp32 {layout}, BN over groups of 64 vs one BN",
           note="reference = the same network, trained in turn with one BN over the batch of 128: what the paper's "
                "per-GPU BN costs")
    for side in ("bf16", "tf32"):
        if side in sides:
            record(f"train_resnet110_{side}", side, "reference", f"{side} {layout} vs fp32 NCHW")
    for side, first in compile_s.items():
        record(f"train_resnet110_{side.replace(' ', '_')}", side, "reference", f"fp32 {layout} vs fp32 NCHW",
               compile_s=first, note=f"torch.compile mode {side.split()[1]}; compile_s: its first step")
    return records


def gpu_utilisation(img_s, device, precision) -> dict:
    """Training multiply-adds per second (forward x 3 for forward + backward) against the GPU's peak."""
    name = torch.cuda.get_device_name(device)
    rate = describe(**R110)["multiply_adds"] * 3 * img_s
    peak = peak_tflops(name, precision)
    return {"gpu": name, "multiply_adds_per_s": rate,
            "peak_fraction": rate / (peak * 1e12 / 2) if peak else None}  # 2 FLOPs per multiply-add


def check(record) -> list:
    """('field value op bound', outcome) for each target of the record's case (CPU only). A timed ratio
    is judged by its interval: "met" when all of it meets the bound, "NOT met" when none of it does,
    "undecided" when the bound lies inside (this run's rounds cannot tell)."""
    found = []
    for field, sense, bound in TARGETS.get(record["case"], []) if record["device"] == "cpu" else []:
        value = record[field]
        low, high = record.get(f"{field.removesuffix('ratio')}interval") or (value, value)
        meets = (lambda v: v >= bound) if sense == ">=" else (lambda v: v <= bound)
        outcome = "met" if meets(low) and meets(high) else "NOT met" if not (meets(low) or meets(high)) else "undecided"
        shown = f"{value:.2f}" + (f" [{low:.2f}, {high:.2f}]" if low != high else "")
        found.append((f"{field} {shown} {sense} {bound}", outcome))
    return found


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help="fewer, shorter timed steps (under two minutes on 2 CPU cores)")
    parser.add_argument("--steps", type=int, help="timed rounds per case (overrides the mode's)")
    parser.add_argument("--deep-batch", type=int, help="ResNet-1001's batch (default 128; --quick: 8)")
    parser.add_argument("--out", default="reports/bench.json", help="where the records go")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def measure(device, size) -> list[dict]:
    """Every case on `device`, as records (see `run`)."""
    probe = start_memory_probe(size["deep_batch"], device)
    x, y, data = images()
    x, y = x[:size["images"]], y[:size["images"]]
    shown = "data/cifar10.pt" if data == "cifar10" else \
        "RANDOM (no CIFAR-10 in data/cifar10.pt; speed does not depend on pixels)"
    print(f"bench on {machine(device)['machine']}; images: {shown}")
    fmt = torch.channels_last if default_layout(device) else torch.contiguous_format
    stream = CifarStream(x, y, "cifar10", BATCH, seed=0, device=device, dtype=knobs.images_dtype(DEFAULT.precision),
                         memory_format=fmt)  # as the training loop keeps it
    loader = reference_loader(x, y, device)
    r110, r1001 = train_sides(stream, loader, device, size), deep_steps(size["deep_batch"], device)
    peaks = peak_bytes(probe, size["deep_batch"])  # before timing anything: it would compete for the CPU
    print("timing the data pipeline, ResNet-110 training, ResNet-1001 memory and step time ...", flush=True)
    records = [data_case(stream, loader, device, size), *train_cases(r110, device, size),
               memory_case(r1001, peaks, device, size)]
    for r in records:
        r.update(device=device.type, data=data, date=time.strftime("%Y-%m-%d"), **machine(device))
        outcomes = {outcome for _, outcome in check(r)}
        r["targets"] = ("NOT met" if "NOT met" in outcomes else "undecided" if "undecided" in outcomes
                        else "met") if outcomes else None
    return records


def run(args):
    start = time.perf_counter()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is visible; use auto or cpu")
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    size = dict(SIZES["quick" if args.quick else "full"])
    for flag, value in (("--steps", args.steps), ("--deep-batch", args.deep_batch)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1 (got {value})")
    if args.steps:
        size.update(rounds=args.steps, data_rounds=args.steps, deep_rounds=args.steps)
    size["deep_batch"] = args.deep_batch or size["deep_batch"]
    records = measure(device, size)
    print(f"{'case':<30}{'project':>12}{'reference':>12}{'ratio':>9}  target")
    for r in records:
        print(f"{r['case']:<30}{r['project_img_s']:>8.0f} i/s{r['reference_img_s']:>8.0f} i/s{r['ratio']:>8.2f}x  "
              + "; ".join(f"{text}: {outcome}" for text, outcome in check(r)))
    m = records[-1]
    print(f"ResNet-1001 step, batch {m['batch_size']}: peak {m['peak_mib_without']:.0f} MiB without checkpointing, "
          f"{m['peak_mib_with_checkpointing']:.0f} MiB with; step time x{m['time_ratio']:.2f} with")
    for r in records:
        if "compile_s" in r:
            print(f"{r['case']}: its first step, compiling, took {r['compile_s']:.0f} s")
        if r.get("multiply_adds_per_s"):
            print(f"{r['case']}: {r['multiply_adds_per_s'] / 1e12:.1f} T multiply-adds/s"
                  + (f", {100 * r['peak_fraction']:.0f}% of {r['gpu']}'s peak" if r["peak_fraction"] else ""))
    write_json(args.out, records)
    print(f"wrote {args.out}; the bench took {time.perf_counter() - start:.0f} s")
