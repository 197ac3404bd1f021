"""Two trainings of one study in parallel, and one run in two clones at once, never mix files (see watch.py)."""
import json
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import yaml
import zc.lockfile

from test_pipeline import DVC, dvc, make_project
from watch import (DEADLINE_S, EXPERIMENTS, ENV, SMOKE, cmdline, files_under, finish, inside, role, run_dvc,
                   run_outputs, running, start, train_stage, under)


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
    stages = {e: train_stage(root, e) for e in pair}
    logs = tmp_path / "logs"
    logs.mkdir()
    alone = tmp_path / "alone"
    shutil.copytree(root, alone, symlinks=True)
    with open(logs / "alone.log", "w") as log:  # the same runs in a copy, one after the other
        one_by_one = start(DVC + ["repro", "--single-item", *stages.values()], alone, log)

    # While a dvc process holds the repository lock (as when it checks or records a stage), a plain
    # `dvc repro` fails and `dvc --wait-for-lock repro` waits.
    held = zc.lockfile.LockFile(str(root / ".dvc" / "tmp" / "lock"))
    try:
        t0 = time.monotonic()
        with open(logs / "plain.log", "w") as log:
            plain = start(DVC + ["repro", "--single-item", stages["r110_original"]], root, log)
        assert finish(plain, "dvc repro on a held lock", 60) != 0
        gave_up_after = time.monotonic() - t0
        assert "Unable to acquire lock" in (logs / "plain.log").read_text()
        assert not list((root / "runs").glob("*/seed*/**/metrics.json"))  # nothing trained
        assert finish(one_by_one, "dvc repro of the runs one by one") == 0, (logs / "alone.log").read_text()[-3000:]
        procs, t0 = {}, time.monotonic()
        for experiment, stage in stages.items():
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
    assert json.loads(dvc("status", "--json", *stages.values(), cwd=root).stdout) == {}
    locked = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert all(stage in locked for stage in stages.values())  # dvc.lock records both, neither lost


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
    stage = train_stage(one, "r110_original", env)
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
