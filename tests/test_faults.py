"""Faults: `dvc repro` killed at every stage, two trainings of one study in parallel, one run in two clones at once.

Each test builds a fresh project with tests/test_pipeline.py's `make_project` (smoke profile, the generated
CIFAR archives, tiny runs) and runs the real `dvc repro`, watching its processes through their command lines.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import torch
import yaml
import zc.lockfile

import conftest
from conftest import REPO
from reproduce import checkpoint
from reproduce.aggregate import RESULT_COLUMNS, RUN_COLUMNS
from reproduce.data import cifar
from reproduce.paper import paper_numbers
from test_pipeline import DVC, ENV, dvc, make_project

EXPERIMENTS = yaml.safe_load((REPO / "params.yaml").read_text())["experiments"]
TWO = {name: EXPERIMENTS[name] for name in ("r110_original", "c100_r164_full_preact")}  # a CIFAR-10, a CIFAR-100
# Tiny runs on the real CIFAR path (download, conversion, training); 40 iterations write 4 checkpoints.
SMOKE = {"profile": "smoke", "seeds": [0], "smoke.data": "cifar", "smoke.seeds": [0], "smoke.iterations": 40,
         "smoke.train_images": 128, "smoke.test_images": 64, "smoke.batch_size": 16}
TIME_DEPENDENT = ["wall_s"]  # what a run records of the clock: a column of runs.csv, a key of metrics files
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


def train_stages(root, experiment, env=ENV):
    """The stages of dvc.yaml that train `experiment` (one per seed or one for all seeds, as dvc.yaml has it)."""
    names = run_dvc("stage", "list", "--name-only", cwd=root, env=env).split()
    stages = [n for n in names if re.fullmatch(rf"train@{re.escape(experiment)}(-\d+)?", n)]
    assert stages, names
    return stages


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
    print(f"temporary files the kills left in the project: {left}; in TMPDIR: {files_under(temporary)}")


# ------------------------------------------------------------- 2. two trainings of one study in parallel

def watch_overlap(procs, deadline_s=DEADLINE_S):
    """Wait for every process of `procs` ({name: Popen}); returns their exit codes and whether their training
    processes ever ran at the same time."""
    deadline, together = time.monotonic() + deadline_s, False
    while any(p.poll() is None for p in procs.values()):
        assert time.monotonic() < deadline, f"still running after {deadline_s} s: {procs}"
        training = [name for name, p in procs.items() if "train" in running(p.pid)]
        together |= len(training) == len(procs)
        time.sleep(0.01)
    return {name: p.returncode for name, p in procs.items()}, together


def test_two_runs_of_one_study_in_parallel_do_not_mix(tmp_path):
    """README: one GPU each, `dvc repro --single-item train@...` side by side in one workspace. DVC releases
    its repository lock while a stage's command runs, but holds it while it checks and records stages, and a
    plain `dvc` gives up on a held lock after 3 s: `dvc --wait-for-lock` waits instead."""
    pair = {name: EXPERIMENTS[name] for name in ("r110_original", "r110_full_preact")}
    root = make_project(tmp_path / "study", pair, **{**SMOKE, "smoke.iterations": 20})
    dvc("repro", "validate", "download@cifar10", "download@cifar100", cwd=root)
    stages = {e: train_stages(root, e) for e in pair}
    assert all(len(s) == 1 for s in stages.values()), stages
    logs = tmp_path / "logs"
    logs.mkdir()
    alone = tmp_path / "alone"
    shutil.copytree(root, alone, symlinks=True)
    with open(logs / "alone.log", "w") as log:  # the same runs in a copy, one after the other
        one_by_one = start(DVC + ["repro", "--single-item", *(s for (s,) in stages.values())], alone, log)

    # While a dvc process holds the repository lock (as when it checks or records a stage), a plain
    # `dvc repro` fails and `dvc --wait-for-lock repro` waits.
    held = zc.lockfile.LockFile(str(root / ".dvc" / "tmp" / "lock"))
    try:
        t0 = time.monotonic()
        with open(logs / "plain.log", "w") as log:
            plain = start(DVC + ["repro", "--single-item", stages["r110_original"][0]], root, log)
        assert finish(plain, "dvc repro on a held lock", 60) != 0
        gave_up_after = time.monotonic() - t0
        assert "Unable to acquire lock" in (logs / "plain.log").read_text()
        assert not list((root / "runs").glob("*/seed*/**/metrics.json"))  # nothing trained
        assert finish(one_by_one, "dvc repro of the runs one by one") == 0, (logs / "alone.log").read_text()[-3000:]
        procs, t0 = {}, time.monotonic()
        for experiment, (stage,) in stages.items():
            with open(logs / f"{experiment}.log", "w") as log:
                procs[experiment] = start(DVC + ["--wait-for-lock", "repro", "--single-item", stage], root, log)
        while time.monotonic() - t0 < gave_up_after + 1:  # longer than the plain one waited
            assert all(p.poll() is None for p in procs.values()), "a dvc --wait-for-lock repro ended on a held lock"
            assert not any(running(p.pid) for p in procs.values()), "a stage ran while the lock was held"
            time.sleep(0.05)
    finally:
        held.close()

    codes, together = watch_overlap(procs)
    assert codes == {e: 0 for e in pair}, {e: (logs / f"{e}.log").read_text()[-3000:] for e in pair}
    assert together, "the two trainings never ran at the same time"
    for experiment in pair:
        assert run_outputs(root, experiment, 0) == run_outputs(alone, experiment, 0)
    assert json.loads(dvc("status", "--json", *(s for (s,) in stages.values()), cwd=root).stdout) == {}
    locked = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert all(stage in locked for (stage,) in stages.values())  # dvc.lock records both, neither lost


# ------------------------------------------------------------- 3. the same run in two clones at once

def test_two_clones_train_the_same_run_at_once_without_touching_each_other(tmp_path):
    base = tmp_path.parent
    before = sorted(p.name for p in base.iterdir())
    one = make_project(tmp_path / "one", {"r110_original": EXPERIMENTS["r110_original"]},
                       **{**SMOKE, "smoke.iterations": 20})
    two = tmp_path / "two"
    subprocess.run(["git", "clone", "-q", str(one), str(two)], check=True, capture_output=True)
    shutil.copytree(one / "data" / "raw", two / "data" / "raw")  # each clone has the archives
    clones = (one, two)
    # Whatever the processes write outside the clones must land here: temporary files, home, DVC's site cache.
    sandbox = {name: tmp_path / name for name in ("tmp", "home", "dvc-site", "logs")}
    for folder in sandbox.values():
        folder.mkdir()
    env = {**ENV, "TMPDIR": str(sandbox["tmp"]), "HOME": str(sandbox["home"]),
           "DVC_SITE_CACHE_DIR": str(sandbox["dvc-site"])}

    def both(*args, name):
        procs = {}
        for clone in clones:
            with open(sandbox["logs"] / f"{name}-{clone.name}.log", "w") as log:
                procs[clone] = start(DVC + list(args), clone, log, env)
        return procs

    procs = both("repro", "validate", "download@cifar10", "download@cifar100", name="data")
    assert {c: finish(p, f"dvc repro in {c}") for c, p in procs.items()} == {c: 0 for c in clones}
    stage, = train_stages(one, "r110_original", env)
    procs = both("repro", "--single-item", stage, name="train")
    deadline, together, strays, site, observed = time.monotonic() + DEADLINE_S, False, set(), {c: set() for c in clones}, 0
    while any(p.poll() is None for p in procs.values()):
        assert time.monotonic() < deadline, "training still running"
        training = 0
        for clone, proc in procs.items():
            other = two if clone == one else one
            for p in under(proc.pid):
                if role(cmdline(p)) != "train":
                    continue
                training += 1
                try:
                    opened = p.open_files()
                except psutil.Error:
                    continue
                observed += len(opened)
                for f in opened:  # a clone's training never opens the other's files, writes only its own
                    if inside(f.path, sandbox["dvc-site"]):  # DVC's state of the repository (DVCLive opens it)
                        site[clone].add(Path(f.path).relative_to(sandbox["dvc-site"]).parts[:2])
                    elif Path(f.path) == sandbox["logs"] / f"train-{clone.name}.log":  # its stdout
                        continue
                    elif inside(f.path, other) or f.mode != "r" and not (inside(f.path, clone) or
                                                                       inside(f.path, sandbox["tmp"])):
                        strays.add((clone.name, f.path, f.mode))
        together |= training == 2
        time.sleep(0.01)
    assert observed, "no open file of a training process was ever seen"
    codes = {c.name: p.returncode for c, p in procs.items()}
    assert codes == {"one": 0, "two": 0}, [(sandbox["logs"] / f"train-{c}.log").read_text()[-3000:] for c in codes]
    assert together, "the two clones never trained at the same time"
    assert not strays, strays
    assert len(site[one]) <= 1 and len(site[two]) <= 1 and not site[one] & site[two], site

    assert run_outputs(one, "r110_original", 0) == run_outputs(two, "r110_original", 0)
    for top in ("runs", "curves", "checkpoints"):  # the same files in each clone, each named for this run only
        assert files_under(one / top) == files_under(two / top)
        assert all(f.startswith(("_configs/", "r110_original")) for f in files_under(one / top)), files_under(one / top)
    assert all(json.loads(run_dvc("status", "--json", stage, cwd=c, env=env)) == {} for c in clones)

    assert sorted(p.name for p in base.iterdir()) == before  # nothing new next to this test's folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*sandbox, "one", "two"])
    assert files_under(sandbox["tmp"]) == []  # temporary files are gone
    site = sorted((sandbox["dvc-site"] / "repo").iterdir())
    assert len(site) == 2  # DVC's own index of each clone, kept apart
    print(f"\nwritten to the sandboxed home: {files_under(sandbox['home'])}")
