"""Faults: `dvc repro` SIGKILLed at every stage, then run again, loses nothing (see watch.py)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import torch
import yaml

import conftest
from reproduce.training import checkpoint
from reproduce.results.cells import RESULT_COLUMNS
from reproduce.results.runs import RUN_COLUMNS
from reproduce.data import cifar
from reproduce.files import write_json
from reproduce.results.paper import paper_numbers
from test_pipeline import DVC, ENV, dvc, make_project
from watch import (DEADLINE_S, EXPERIMENTS, SMOKE, TIME_DEPENDENT, cmdline, files_under, finish, inside, role,
                   run_dvc, run_outputs, running, start, under)

TWO = {name: EXPERIMENTS[name] for name in ("r110_original", "c100_r164_full_preact")}  # a CIFAR-10, a CIFAR-100


def _cwd_inside(p, root):
    try:
        return inside(p.cwd(), root)
    except (psutil.Error, OSError):
        return False


def _alive(p):
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _pgid(p):
    try:
        return os.getpgid(p.pid)
    except OSError:
        return None


def kill_everything(proc, root):
    """SIGKILL `dvc repro`'s process group, then every process that was under it or still works in `root`:
    a Jupyter kernel runs in a process group of its own and would outlive killpg. Everything dies at once,
    as when a machine or a job's cgroup goes. Returns what killpg alone would have left running."""
    seen = under(proc.pid)
    outside = [p for p in seen if _alive(p) and _pgid(p) not in (proc.pid, None)]
    os.killpg(proc.pid, signal.SIGKILL)
    stragglers = [p for p in psutil.process_iter() if p.pid != proc.pid and p not in seen and _alive(p)
                  and _cwd_inside(p, root)]
    missed = [role(cmdline(p)) or " ".join(cmdline(p)[:3]) for p in [*outside, *stragglers]]
    for p in [*outside, *stragglers]:
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs([*seen, *stragglers], timeout=30)
    assert not alive, f"still running after SIGKILL: {[cmdline(p) for p in alive]}"
    return missed



# ------------------------------------------------------------------------- 1. SIGKILL at every stage

POINTS = ["download", "train", "aggregate", "notebook", "report"]


def in_the_act(point, now_running, root):
    """Whether `point` is caught in the middle of its work (not merely started)."""
    if point == "download":  # converting: the temporary file of data/DATASET.pt is being written
        return "download" in now_running and any((root / "data").glob(".*.pt.*.tmp"))
    if point == "train":  # the run being trained has a checkpoint: the next repro must resume from it
        experiments = [cmd[cmd.index("--experiment") + 1] for cmd in now_running.get("train", [])
                       if "--experiment" in cmd]
        return any(True for e in experiments for _ in (root / "checkpoints").glob(f"{e}-seed*.pt"))
    if point == "notebook":  # papermill has started writing the executed copy
        return "notebook" in now_running and any((root / "reports" / "notebooks").glob("*.ipynb"))
    if point == "report":  # its notebook is executing in a kernel
        return {"report", "kernel"} <= now_running.keys()
    return point in now_running


def repro_killed_at(root, points, log, env=ENV):
    """`dvc repro` in `root`, SIGKILLed as soon as the first of `points` is caught in the act. Returns the point
    hit (None when the pipeline finished first), the points it went past, and what killpg alone would have missed."""
    proc = start(DVC + ["repro"], root, log, env)
    points, passed, now_running, next_scan = list(points), [], {}, 0.0
    deadline = time.monotonic() + DEADLINE_S
    try:
        while proc.poll() is None:
            now = time.monotonic()
            assert now < deadline, f"dvc repro in {root} still running after {DEADLINE_S} s"
            if now >= next_scan:  # the process tree every 10 ms; the files (cheap) every millisecond
                now_running, next_scan = running(proc.pid), now + 0.01
                later = [i for i, p in enumerate(points) if p in now_running]
                if later and later[-1] > 0:  # a later stage runs already: the earlier points went by
                    passed += points[:later[-1]]
                    points = points[later[-1]:]
            if points and in_the_act(points[0], now_running, root):
                return points[0], passed, kill_everything(proc, root)
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            kill_everything(proc, root)
    assert proc.returncode == 0, f"dvc repro failed (rc {proc.returncode}):\n{Path(log.name).read_text()[-3000:]}"
    return None, passed + points, []


def assert_nothing_half_written(root):
    """Every file a later stage (or a resumed run) trusts is absent or whole."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    for name in cifar.NAMES:
        path = root / "data" / f"{name}.pt"
        if path.exists():
            data = cifar.load(path)
            assert data["name"] == name and data["source_md5"] == params["data"][name]["md5"]
            assert len(data["train_x"]) == len(data["train_y"]) > 0 and len(data["test_x"]) == len(data["test_y"]) > 0
    for path in (root / "checkpoints").glob("*.pt"):
        state = checkpoint.load(path, path.stem.rsplit("-", 1)[1])  # <experiment>-seed<seed>-<digest>.pt
        assert 0 < state["iteration"] <= params["smoke"]["iterations"]
    for path in [*(root / "runs").glob("*/seed*/**/metrics.json"), *(root / "metrics").glob("*.json")]:
        json.loads(path.read_text())
    for path in (root / "runs").glob("*/seed*/**/model.pt"):
        assert torch.load(path, weights_only=False)["status"] == "finished"
    reports = root / "reports"
    if (reports / "results.csv").exists():
        results = pd.read_csv(reports / "results.csv")
        assert list(results.columns) == RESULT_COLUMNS
        assert len(results) == (~paper_numbers().literature).sum()
    if (reports / "runs.csv").exists():
        runs = pd.read_csv(reports / "runs.csv")
        assert list(runs.columns) == RUN_COLUMNS and len(runs) == len(params["experiments"]) * len(params["seeds"])
    if (reports / "report.html").exists():
        assert (reports / "report.html").read_text().rstrip().endswith("</html>")
    if (root / "dvc.lock").exists():
        assert isinstance(yaml.safe_load((root / "dvc.lock").read_text()), dict)


def test_sigkill_at_every_stage_of_dvc_repro_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "N_TRAIN", 500)  # archives big enough for a conversion to be caught writing
    root = make_project(tmp_path / "killed", TWO, **SMOKE)
    reference = tmp_path / "reference"
    shutil.copytree(root, reference, symlinks=True)
    # The same study uninterrupted, alongside, up to what the comparison needs (the notebooks and the
    # report stamp times): the runs, results.csv and runs.csv.
    with open(tmp_path / "reference.log", "w") as log:
        uninterrupted = start(DVC + ["repro", "aggregate"], reference, log)

    temporary = tmp_path / "tmp"  # TMPDIR of the killed study
    temporary.mkdir()
    env = {**ENV, "TMPDIR": str(temporary)}
    hits, passed, missed_by_killpg, logs, pending = [], [], [], [], list(POINTS)
    while pending:
        logs.append(tmp_path / f"repro-{len(logs)}.log")
        with open(logs[-1], "w") as log:
            hit, went_by, missed = repro_killed_at(root, pending, log, env)
        passed += went_by
        if hit is None:
            break
        hits.append(hit)
        missed_by_killpg += missed
        pending = pending[pending.index(hit) + 1:]
        assert_nothing_half_written(root)
    print(f"\nkill points hit: {hits}; went by: {passed}; outside dvc's process group: {missed_by_killpg}")
    assert {"train", "notebook", "report"} <= set(hits), (hits, passed)

    final = run_dvc("repro", cwd=root, env=env)
    after_train_kill = "".join(p.read_text() for p in logs[hits.index("train") + 1:]) + final
    assert "resuming from iteration" in after_train_kill  # the run killed in training went on from its checkpoint
    assert finish(uninterrupted, "the uninterrupted dvc repro") == 0, (tmp_path / "reference.log").read_text()[-3000:]

    for name in ("results.csv", "runs.csv"):
        killed, whole = (pd.read_csv(r / "reports" / name).drop(columns=TIME_DEPENDENT, errors="ignore")
                         for r in (root, reference))
        assert len(killed) > 0
        pd.testing.assert_frame_equal(killed, whole)
    for experiment in TWO:
        assert run_outputs(root, experiment, 0) == run_outputs(reference, experiment, 0)
    assert json.loads(dvc("status", "--json", cwd=root).stdout) == {}
    assert (root / "reports" / "report.html").read_text().rstrip().endswith("</html>")
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp") if ".dvc" not in p.parts)
    assert left == []  # what a killed writer left, the next write of the same file removed
    print(f"temporary files the kills left in TMPDIR: {files_under(temporary)}")


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "metrics.json"
    dead = _finished_pid()
    host = socket.gethostname()
    stale = tmp_path / f".metrics.json.{host}.{dead}.abc123.tmp"
    live = tmp_path / f".metrics.json.{host}.{os.getppid()}.def456.tmp"  # a writer still at work
    other = tmp_path / f".metrics.json.elsewhere.{dead}.ghi789.tmp"  # another machine's: not ours to judge
    for path in (stale, live, other):
        path.write_text("half")
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert not stale.exists() and live.exists() and other.exists()


def _finished_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
