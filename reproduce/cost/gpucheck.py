"""`python -m reproduce gpu-check`: what a machine with an NVIDIA GPU can tell about this project, in at
most five minutes on one GPU, written to one JSON file (default reports/gpu-check.json).

The sections run in turn under one deadline, cheapest first and compiling last, each in a child process
of its own session that keeps its figures on disk as it measures; at its limit its whole process group
is killed. A section that crashes, hangs or runs out of memory loses only what it had not yet measured,
and nothing else; the last line says `gpu-check: PASS` or `FAIL` with the sections. Without a GPU it
says so at once (no torch import) and exits non-zero.
"""
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from ..errors import UserError
from ..files import load_json, write_json

BUDGET_S = 300  # all sections together, on one GPU
# name, what it measures, its own time limit (s)
SECTIONS = [
    ("tests", "the GPU-only tests (pytest -m gpu)", 60),
    ("sync", "~20 real training iterations of ResNet-110, -164 and -1001 with any host sync an error, BN "
             "groups across 'processes' on a one-process NCCL group included", 45),
    ("speed", "img/s (CUDA events over 30 steps) and peak memory of ResNet-110/-164/-1001 at the paper's batch "
              "and BN groups and ImageNet ResNet-200 at a GPU's batch, fp32 and bf16; hours per run and for "
              "the study at those rates (`plan --gpu-check` reads them)", 90),
    ("packing", "1, 2 and 4 ResNet-110 processes sharing the GPU: their img/s together (how many runs to pack)",
     45),
    ("ddp", "two or more GPUs: one tiny run on one process and on two (NCCL), fp64: largest weight difference", 60),
    ("compile", "ResNet-110 fp32 and bf16 as `compile: auto` trains it (reduce-overhead: CUDA graphs): compile "
                "time, img/s beside eager's", 60),
]


def describe_sections() -> str:
    return "\n".join(f"  {name:<8} (≤ {limit} s) {what}" for name, what, limit in SECTIONS)


def run_sections(functions: dict, out: Path, budget_s: float, record: dict, limits: dict | None = None) -> dict:
    """Run each section ("module:function" or ("module:function", its keyword arguments), called with its
    seconds and a dict it fills as it measures) in a child process in its own session, in SECTIONS' order
    under one deadline, each within its limit (SECTIONS', or `limits`'). A crash, a hang or an OOM costs
    that section only what it had not yet kept; its process group is killed at its end, so nothing it
    started keeps the GPU. Only this parent writes `out`, after every section."""
    deadline, failed, limits = time.monotonic() + budget_s, [], limits or {}
    for name, what, limit in SECTIONS:
        if name not in functions:
            continue
        left = min(limits.get(name, limit), deadline - time.monotonic())
        print(f"{name}: {what} ...", flush=True)
        started = time.monotonic()
        if left <= 1:
            result = {"skipped": f"the {budget_s:.0f} s budget was spent"}
        else:
            target, kwargs = functions[name] if isinstance(functions[name], tuple) else (functions[name], {})
            result = _in_child(target, kwargs, left)
        result["wall_s"] = time.monotonic() - started
        record[name] = result
        if "error" in result or result.get("passed") is False:
            failed.append(name)
        print(f"  {_summary(result)}", flush=True)
        write_json(out, record)
    ran = [n for n in functions if "skipped" not in record.get(n, {"skipped": 1})]
    print(f"wrote {out}\ngpu-check: " + (f"FAIL (sections {', '.join(failed)})" if failed
                                         else f"PASS (sections {', '.join(ran)})"), flush=True)
    return record


GRACE_S = 2  # a section is told this much less than its limit, so it can keep its figures before the kill


def _in_child(target: str, kwargs: dict, left: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        kept = Path(tmp) / "kept.json"
        code = (f"from reproduce.cost.gpucheck import child; "
                f"child({target!r}, {left - GRACE_S!r}, {str(kept)!r}, {kwargs!r})")
        proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        try:
            proc.wait(timeout=left)
            error = None if proc.returncode == 0 else _ended(proc.returncode)
        except subprocess.TimeoutExpired:
            error = f"timed out after {left:.0f} s (its processes killed)"
        finally:
            _kill_group(proc.pid)  # what it started (pytest's `train`, packing's workers) dies with it
            proc.wait()
        result = load_json(kept) if kept.exists() else {}
    if error and "error" not in result:
        result["error"] = error
    return result


def _ended(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _kill_group(pgid: int):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:  # the group has no process left
        pass


class Kept(dict):
    """A section's figures so far, on disk after every assignment: what a crash leaves behind."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        write_json(self.path, self)


def child(target: str, left: float, path: str, kwargs: dict):
    """The child's side of _in_child: run one section, keep what it returns or how it failed."""
    module, _, function = target.partition(":")
    kept = Kept(Path(path))
    try:
        for key, value in getattr(importlib.import_module(module), function)(left, kept, **kwargs).items():
            kept[key] = value
    except Exception as e:  # torch.OutOfMemoryError included: the figures kept so far stay
        kept["traceback"] = traceback.format_exc()[-2000:]
        kept["error"] = f"{type(e).__name__}: {e}"
        sys.exit(1)


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
    parser.add_argument("--params", default="params.yaml", help="the study whose hours `speed` estimates")
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
    record = {"date": time.strftime("%Y-%m-%d"), "gpu": torch.cuda.get_device_name(0),
              "gpus": torch.cuda.device_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "budget_s": args.budget}
    study = {"params": str(Path(args.params).resolve())}
    functions = {name: (f"reproduce.cost.gpu_sections:{f}", kwargs) for name, f, kwargs in (
        ("tests", "gpu_tests", {}), ("sync", "no_host_sync", {}), ("speed", "speed", study),
        ("packing", "packing", {}), ("ddp", "two_gpus_like_one", study), ("compile", "compiled_speed", {}))}
    if args.only:
        functions = {k: v for k, v in functions.items() if k in args.only}
    record = run_sections(functions, Path(args.out), args.budget, record)
    if any("error" in r or r.get("passed") is False for r in record.values() if isinstance(r, dict)):
        sys.exit(1)
