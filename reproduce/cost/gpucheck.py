"""`python -m reproduce gpu-check`: what a machine with an NVIDIA GPU can tell about this project, in at
most five minutes on one GPU, written to one JSON file (default reports/gpu-check.json).

The sections run in turn under one deadline; each one's result, or its error, is written to the file as
soon as it ends, so a section that fails or runs out of time loses nothing that came before it. Without
a GPU it says so at once (no torch import) and exits non-zero.
"""
import subprocess
import sys
import time
import traceback
from pathlib import Path

from ..errors import UserError
from ..files import write_json

BUDGET_S = 300  # all sections together, on one GPU
# name, what it measures, its own time limit (s)
SECTIONS = [
    ("tests", "the GPU-only tests (pytest -m gpu)", 60),
    ("sync", "~20 real training iterations of ResNet-110, -164 and -1001 with any host sync an error, BN "
             "groups across 'processes' on a one-process NCCL group included", 45),
    ("speed", "img/s (CUDA events over 30 steps) and peak memory of ResNet-110/-164/-1001 at the paper's batch "
              "and BN groups and ImageNet ResNet-200 at a GPU's batch, fp32 and bf16; hours per run and for "
              "the study at those rates (`plan --gpu-check` reads them)", 90),
    ("compile", "ResNet-110 bf16 under torch.compile mode reduce-overhead (CUDA graphs): compile time, img/s", 60),
    ("packing", "1, 2 and 4 ResNet-110 processes sharing the GPU: their img/s together (how many runs to pack)",
     45),
    ("ddp", "two or more GPUs: one tiny run on one process and on two (NCCL), fp64: largest weight difference", 60),
]


def describe_sections() -> str:
    return "\n".join(f"  {name:<8} (≤ {limit} s) {what}" for name, what, limit in SECTIONS)


def run_sections(functions: dict, out: Path, budget_s: float, record: dict) -> dict:
    """Run each section function (seconds left -> dict) in SECTIONS' order under one deadline, recording
    its result, its error or that the budget was spent; the JSON is rewritten after every section."""
    deadline = time.monotonic() + budget_s
    for name, what, limit in SECTIONS:
        if name not in functions:
            continue
        left = min(limit, deadline - time.monotonic())
        print(f"{name}: {what} ...", flush=True)
        started = time.monotonic()
        if left <= 1:
            result = {"skipped": f"the {budget_s:.0f} s budget was spent"}
        else:
            try:
                result = functions[name](left)
            except subprocess.TimeoutExpired as e:
                result = {"error": f"timed out after {e.timeout:.0f} s"}
            except Exception as e:  # a section's failure is its result; the next sections still run
                result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
        result["wall_s"] = time.monotonic() - started
        record[name] = result
        print(f"  {_summary(result)}", flush=True)
        write_json(out, record)
    return record


def _summary(result: dict) -> str:
    shown = {k: v for k, v in result.items() if k != "traceback" and not isinstance(v, (list, dict))}
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())


def nvidia_present() -> bool:
    """An NVIDIA driver's device files, checked without importing torch (seconds on a CPU machine)."""
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/proc/driver/nvidia/gpus").is_dir()


def add_arguments(parser):
    parser.description = (f"{parser.description}. Sections, in order, within {BUDGET_S} s in all on one GPU:\n"
                          + describe_sections())
    parser.formatter_class = __import__("argparse").RawDescriptionHelpFormatter
    parser.add_argument("--out", default="reports/gpu-check.json", help="where the measurements go")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for all sections (default {BUDGET_S})")
    parser.add_argument("--only", nargs="+", choices=[name for name, _, _ in SECTIONS], help="run these sections only")


def run(args):
    if not nvidia_present():
        raise UserError("no NVIDIA GPU on this machine (no /dev/nvidia*): gpu-check measures the CUDA path; "
                        "on a CPU, `python -m reproduce bench` measures this one")
    import torch

    if not torch.cuda.is_available():
        raise UserError("an NVIDIA device is present but torch sees no CUDA device: check the driver "
                        f"(torch {torch.__version__} was built for CUDA {torch.version.cuda})")
    from . import gpu_sections as S

    record = {"date": time.strftime("%Y-%m-%d"), "gpu": torch.cuda.get_device_name(0),
              "gpus": torch.cuda.device_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "budget_s": args.budget}
    functions = {"tests": S.gpu_tests, "sync": S.no_host_sync, "speed": S.speed, "compile": S.compiled_speed,
                 "packing": S.packing, "ddp": S.two_gpus_like_one}
    if args.only:
        functions = {k: v for k, v in functions.items() if k in args.only}
    record = run_sections(functions, Path(args.out), args.budget, record)
    print(f"wrote {args.out}")
    if any("error" in r or r.get("passed") is False for r in record.values() if isinstance(r, dict)):
        sys.exit(1)
