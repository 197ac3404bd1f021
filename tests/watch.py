"""Watching the pipeline's processes and what runs leave, for the fault tests (test_faults.py,
test_parallel.py): each builds a fresh project with test_pipeline's `make_project` (smoke profile, the
generated CIFAR archives, tiny runs) and runs the real `dvc repro`, following its processes by command line."""
import json
import os
import signal
import subprocess
from pathlib import Path

import psutil

from conftest import committed_params_dict
from test_pipeline import DVC, ENV

EXPERIMENTS = committed_params_dict()["experiments"]
# Tiny runs on the real CIFAR path (download, conversion, training); 40 iterations write 4 checkpoints.
SMOKE = {"profile": "smoke", "seeds": [0], "smoke.data": "cifar", "smoke.seeds": [0], "smoke.iterations": 40,
         "smoke.evaluations": 4,
         "smoke.train_images": 128, "smoke.test_images": 64, "smoke.batch_size": 16}
TIME_DEPENDENT = ["compute_hours", "wall_s"]  # what a run records of the clock: a column of runs.csv, a key of metrics files
DEADLINE_S = 240


# ---------------------------------------------------------------------------------------------- processes

def cmdline(p):
    try:
        return p.cmdline()
    except psutil.Error:  # gone, a zombie, or not ours to read
        return []


def under(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def role(cmd):
    """The pipeline's work a process does, from its command line (None: dvc itself, a shell, ...)."""
    if cmd[1:3] == ["-m", "reproduce"] and len(cmd) > 3:
        return cmd[3]  # validate, download, train, aggregate, report
    if len(cmd) > 1 and Path(cmd[1]).name == "papermill":
        return "notebook"
    if "ipykernel_launcher" in cmd:
        return "kernel"
    return None


def running(pid):
    """{role: [command lines]} of the processes under `pid`."""
    found = {}
    for p in under(pid):
        cmd = cmdline(p)
        if role(cmd):
            found.setdefault(role(cmd), []).append(cmd)
    return found


def inside(path, root):
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def start(args, cwd, log, env=ENV):
    return subprocess.Popen(args, cwd=cwd, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)


def finish(proc, what, deadline_s=DEADLINE_S):
    try:
        return proc.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"{what} still running after {deadline_s} s") from None


def run_dvc(*args, cwd, env=ENV):
    result = subprocess.run(DVC + list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=DEADLINE_S)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def train_stage(root, experiment, env=ENV):
    """The stage of dvc.yaml that trains `experiment` (every seed of it), checked to be listed by DVC."""
    names = run_dvc("stage", "list", "--name-only", cwd=root, env=env).split()
    assert f"train@{experiment}" in names, names
    return f"train@{experiment}"


# -------------------------------------------------------------------------------------- what a run leaves

def without_clock(data):
    if isinstance(data, dict):
        return {k: without_clock(v) for k, v in data.items() if k not in TIME_DEPENDENT}
    if isinstance(data, list):
        return [without_clock(v) for v in data]
    return data


def run_outputs(root, experiment, seed):
    """Everything one run left for the pipeline, by path in the project: its final metrics (clock readings
    dropped), curves (DVCLive .tsv: step and value) and weights, wherever dvc.yaml puts them."""
    found = {}
    folders = [root / top / experiment / f"seed{seed}" for top in ("runs", "curves")]
    for path in sorted(p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(root))
        found[name] = without_clock(json.loads(path.read_text())) if path.suffix == ".json" else path.read_bytes()
    summary = root / "metrics" / f"{experiment}.json"  # every seed's final errors, when dvc.yaml has that file
    if summary.exists():
        found[str(summary.relative_to(root))] = without_clock(json.loads(summary.read_text()))
    assert {Path(n).name for n in found} >= {"metrics.json", "model.pt"} and any(n.endswith(".tsv") for n in found), \
        f"{root}: {sorted(found)}"
    return found


def files_under(folder):
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
