"""`python -m reproduce gpu-check`: what a machine with an NVIDIA GPU can tell about this project, in one
command of a few minutes, written to one JSON file (default reports/gpu-check.json):

1. the GPU-only tests (`pytest -m gpu`: batches reach the GPU without a host sync, runs train in fp32
   and bf16, fp32 turns TF32 off);
2. `bench` on the CUDA path: ResNet-110 training at batch 128 in fp32, tf32 and bf16 with the fraction
   of the GPU's peak each reaches (pass it to `plan --efficiency`), the data pipeline, ResNet-1001's
   memory with activation checkpointing, and torch.compile in its default and reduce-overhead (CUDA
   graphs) modes with their compile times;
3. with two GPUs visible, one tiny run trained by one process and by two (NCCL), in fp64: their
   largest relative weight difference (the CPU test's, on the GPU's kernels).

Without a GPU it says so at once (no torch import) and exits non-zero.
"""
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import UserError
from ..files import write_json

SIZE = dict(rounds=5, data_rounds=5, data_batches=50, deep_rounds=3, deep_batch=128, images=50_000,
            compile=("default", "reduce-overhead"))


def nvidia_present() -> bool:
    """An NVIDIA driver's device files, checked without importing torch (seconds on a CPU machine)."""
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/proc/driver/nvidia/gpus").is_dir()


def gpu_tests(timeout=150) -> dict:
    if not Path("tests").is_dir():
        return {"skipped": "no tests/ folder here (run gpu-check from the repository root)"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"], capture_output=True,
                          text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    return {"passed": done.returncode == 0, "summary": lines[-1] if lines else done.stderr[-500:]}


def two_gpus_like_one(timeout=120) -> dict:
    """A tiny run on the digits, trained by one process and by two (torchrun, NCCL), in fp64."""
    import torch

    from ..config import load_params
    from ..data import digits

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        params = load_params("params.yaml").model_dump(mode="json")
        params["experiments"] = {"tiny": {"dataset": "cifar10", "depth": 8, "block": "basic", "unit": "full_preact"}}
        params["cifar"].update(iterations=40, milestones=[20, 30], warmup_iterations=5, batch_size=32, bn_batch=16,
                               log_every=5, eval_every=20, checkpoint_every=10, eval_batch_size=500)
        params["speed"].update(device="cuda", precision="fp64")
        params.update(profile="paper", custom={})
        write_json(work / "params.yaml", params)  # JSON is YAML
        digits.write("cifar10", work / "data" / "cifar10.pt")
        runs = {}
        for name, launcher in (("one", [sys.executable, "-m"]),
                               ("two", [shutil.which("torchrun") or "torchrun", "--standalone", "--nproc-per-node", "2", "-m"])):
            out = ["--out", f"{name}/runs", "--curves", f"{name}/curves", "--checkpoint-dir", f"{name}/ck",
                   "--metrics", f"{name}/metrics.json"]
            t = time.perf_counter()
            done = subprocess.run([*launcher, "reproduce", "train", "--experiment", "tiny", "--seed", "0", *out],
                                  cwd=work, capture_output=True, text=True, timeout=timeout)
            if done.returncode:
                return {"passed": False, "error": f"{name}: {done.stderr.strip()[-800:]}"}
            runs[name] = (time.perf_counter() - t, torch.load(work / name / "runs" / "seed0" / "model.pt",
                                                              weights_only=False)["model"])
        (_, a), (_, b) = runs["one"], runs["two"]
        worst = max(((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-30)).item()
                    for k in a if a[k].is_floating_point())
        return {"passed": worst < 1e-9, "max_relative_weight_difference": worst,
                "wall_s": {name: seconds for name, (seconds, _) in runs.items()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def add_arguments(parser):
    parser.add_argument("--out", default="reports/gpu-check.json", help="where the measurements go")


def run(args):
    if not nvidia_present():
        raise UserError("no NVIDIA GPU on this machine (no /dev/nvidia*): gpu-check measures the CUDA path; "
                        "on a CPU, `python -m reproduce bench` measures this one")
    start = time.perf_counter()
    import torch

    if not torch.cuda.is_available():
        raise UserError("an NVIDIA device is present but torch sees no CUDA device: check the driver "
                        f"(torch {torch.__version__} was built for CUDA {torch.version.cuda})")
    from . import bench

    record = {"date": time.strftime("%Y-%m-%d"), "gpu": torch.cuda.get_device_name(0),
              "gpus": torch.cuda.device_count(), "torch": torch.__version__, "cuda": torch.version.cuda}
    print(f"gpu-check on {record['gpus']} x {record['gpu']}: GPU-only tests ...", flush=True)
    record["tests"] = gpu_tests()
    print(f"  {record['tests']}\nbench on the CUDA path (compiling takes minutes) ...", flush=True)
    torch.backends.cudnn.benchmark = True
    record["bench"] = bench.measure(torch.device("cuda"), SIZE)
    for r in record["bench"]:
        print(f"  {r['case']:<34}{r['project_img_s']:>10.0f} img/s  x{r['ratio']:.2f}"
              + (f"  {100 * r['peak_fraction']:.1f}% of peak" if r.get("peak_fraction") else ""))
    if record["gpus"] >= 2:
        print("two processes (NCCL) against one, fp64 ...", flush=True)
        record["ddp"] = two_gpus_like_one()
        print(f"  {record['ddp']}")
    else:
        record["ddp"] = {"skipped": "one GPU visible"}
    record["wall_s"] = time.perf_counter() - start
    write_json(args.out, record)
    print(f"wrote {args.out} ({record['wall_s']:.0f} s)")
    if not record["tests"].get("passed", True) or not record["ddp"].get("passed", True):
        sys.exit(1)
