"""`launch`: every unfinished run a submitit job, on this machine's GPUs or Slurm (mocked here; a real
single-node Slurm in test_slurm.py), then one `dvc repro` that records them without training."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import cloudpickle
import psutil
import pandas as pd
import pytest
import torch

from conftest import committed_params_dict, make_imagenet, run_cli, write_params
from reproduce.config import load_params
from reproduce.data import digits
from reproduce.launch.job import Job
from reproduce.launch.local import LocalPool
from reproduce.launch.records import Record
from reproduce.launch.runs import pending

# The probe below runs inside submitit's job processes, which cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
TINY = {name: {"dataset": "cifar10", "depth": 8, "block": "basic", "unit": unit}
        for name, unit in [("tiny", "full_preact"), ("tiny_original", "original"), ("tiny_relu", "relu_only_preact")]}


def until(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def probe(gate: Path):
    """A job that says which GPUs it was given, then waits until the test lets it end."""
    seen = os.environ["CUDA_VISIBLE_DEVICES"]
    (gate / f"started-{os.getpid()}").write_text(seen)
    while not (gate / "go").exists():
        time.sleep(0.05)
    return seen


def test_local_jobs_get_gpus_of_their_own_never_more_jobs_than_gpus(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    pool = LocalPool(tmp_path / "submitit", gpus=[0, 1])
    for i in range(4):
        pool.add(i, partial(probe, gate), gpus=1)
    pool.add("pack", partial(probe, gate), gpus=1, tasks=2)  # runs_per_gpu: two processes on one GPU
    given, results = {}, {}
    pool.step()
    assert len(pool.running) == 2 and len(pool.queue) == 3
    until(lambda: len(list(gate.glob("started-*"))) == 2, "the first two jobs")
    assert sorted(p.read_text() for p in gate.glob("started-*")) == ["0", "1"]  # one GPU each, not the same
    (gate / "go").touch()
    while pool.running or pool.queue:
        for key, (job, held) in pool.running.items():
            given[key] = held
        assert len(pool.running) <= 2 and len({g for _, held in pool.running.values() for g in held}) == \
            sum(len(held) for _, held in pool.running.values())  # no GPU held twice
        for key, job in pool.step():
            results[key] = job.results()
        time.sleep(0.05)
    # each job saw the GPU it was given, both processes of the pack the same one
    assert results == {k: [str(given[k][0])] * (2 if k == "pack" else 1) for k in given}


def slow_study(root, iterations=300, **changes):
    digits.write("cifar10", root / "data" / "cifar10.pt")
    write_params(root, {"tiny": TINY["tiny"]}, seeds=[0], **{"cifar.iterations": iterations,
                 "cifar.milestones": [iterations // 2], "cifar.log_every": 10, "cifar.checkpoint_every": 50,
                 "cifar.eval_every": 100, "speed.threads": 1}, **changes)  # one thread: quick on a busy CPU too
    return root


def metrics_of(run_dir):
    m = json.loads((Path(run_dir) / "metrics.json").read_text())
    m.pop("wall_s")
    return m


def test_a_preempted_job_is_requeued_and_ends_like_an_uninterrupted_run(tmp_path):
    root = slow_study(tmp_path)
    run_cli("train", "--experiment", "tiny", "--seed", "0", "--out", "reference", "--curves", "reference-curves",
            "--checkpoint-dir", "reference-ck", "--metrics", "reference.json", cwd=root)
    (run,), _ = pending(load_params(root / "params.yaml"), root)
    record = Record(root, run.name)
    token = record.take("local")
    assert token and record.take("local") is None  # a run is locked once
    pool = LocalPool(root / "jobs" / "submitit", gpus=[])
    pool.add("tiny", Job(root, [run], {run.name: token}), gpus=0)
    pool.step()
    job = pool.running["tiny"][0]
    checkpoint = root / "checkpoints" / f"{run.name}.pt"
    until(lambda: checkpoint.exists() and torch.load(checkpoint, weights_only=False)["iteration"] >= 50,
          "the first checkpoint")
    task = next(p for p in psutil.Process(int(job.job_id)).children()
                if p.environ().get("SUBMITIT_LOCAL_LOCALID") == "0")
    task.send_signal(signal.SIGUSR2)  # what Slurm sends on preemption (scancel --signal=USR2)
    until(lambda: (pool.step(), not pool.running)[1], "the job to end", timeout=300)
    assert job.result() == {"run": run.name, "status": "finished"}
    assert record.state()["starts"] == 2  # requeued once, under the same token
    assert "resuming from iteration" in job.stdout()
    assert "Requeued" in job.stdout() + job.stderr()
    assert metrics_of(run.out(root)) == metrics_of(root / "reference" / "seed0")
    assert not record.lock.exists()  # the job released its run
    assert not (root / "metrics").exists()  # a job writes its own run's files only


FAKE = {"sbatch": 'n=$(( $(cat "$LOG/count" 2>/dev/null || echo 0) + 1 )); echo $n > "$LOG/count"\n'
                  'cp "$1" "$LOG/sbatch-$n.sh"; echo "Submitted batch job $n"',
        "squeue": 'cat "$LOG/queue" 2>/dev/null', "srun": "exit 0", "scontrol": "exit 0"}


@pytest.fixture
def fake_slurm(tmp_path):
    """sbatch/squeue/srun/scontrol that record what they are given and answer from files, as
    submitit's own tests mock them."""
    bin_dir, log = tmp_path / "fake-bin", tmp_path / "fake-log"
    bin_dir.mkdir()
    log.mkdir()
    for name, body in FAKE.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "LOG": str(log), "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin"}
    return env, log


def slurm_study(root):
    digits.write("cifar10", root / "data" / "cifar10.pt")
    make_imagenet(root / "imagenet")
    experiments = {**TINY, "in_r50": {"dataset": "imagenet", "depth": 50, "unit": "full_preact"}}
    return write_params(root, experiments, seeds=[0], **{"data.imagenet.root": str(root / "imagenet")})


def test_slurm_arrays_their_sbatch_scripts_and_no_run_sent_twice(tmp_path, fake_slurm):
    env, log = fake_slurm
    slurm_study(tmp_path)
    flags = ["--engine", "slurm", "--partition", "gpu", "--array-parallelism", "2", "--no-wait"]
    dry = run_cli("launch", *flags, "--dry-run", cwd=tmp_path, env=env)
    assert "#SBATCH --array=0-2%2" in dry.stdout and not (log / "count").exists() and not (tmp_path / "jobs").exists()
    packed = run_cli("launch", *flags, "--dry-run", "--runs-per-gpu", "2", cwd=tmp_path, env=env).stdout
    assert "job 0: 1 GPU, 2 processes: tiny seed 0, tiny_original seed 0" in packed
    assert "job 1: 1 GPU, 1 process: tiny_relu seed 0" in packed and "#SBATCH --ntasks-per-node=2" in packed

    first = run_cli("launch", *flags, cwd=tmp_path, env=env)
    assert "4 to submit as 4 jobs" in first.stdout
    cifar, imagenet = ((log / f"sbatch-{n}.sh").read_text().splitlines() for n in (1, 2))
    assert {"#SBATCH --array=0-2%2", "#SBATCH --gpus-per-node=1", "#SBATCH --ntasks-per-node=1",
            "#SBATCH --signal=USR2@120", "#SBATCH --partition=gpu", "#SBATCH --time=1440",
            "#SBATCH --cpus-per-task=8"} <= set(cifar)
    assert {"#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=8"} <= set(imagenet)  # one DDP job
    assert not any(line.startswith("#SBATCH --array") for line in imagenet)
    jobs = {p.name.split("-seed")[0]: json.loads(p.read_text())["job_id"] for p in (tmp_path / "jobs" / "runs").glob("*.job")}
    assert sorted(jobs.values()) == ["1_0", "1_1", "1_2", "2"]

    (log / "queue").write_text("1_0|RUNNING\n1_1|PENDING\n1_2|PENDING\n2|PENDING\n")
    again = run_cli("launch", *flags, cwd=tmp_path, env=env)
    assert "4 already submitted, 0 to submit" in again.stdout and (log / "count").read_text().strip() == "2"
    status = run_cli("launch", "--status", cwd=tmp_path, env=env).stdout
    assert "3 pending, 1 running" in status and "slurm 1_0" in status

    (log / "queue").write_text("")  # the jobs are gone without a word (killed): their locks are stale
    status = run_cli("launch", "--status", cwd=tmp_path, env=env).stdout
    assert "4 lost" in status
    third = run_cli("launch", *flags, cwd=tmp_path, env=env)
    assert "4 to submit" in third.stdout and (log / "count").read_text().strip() == "4"


@pytest.mark.parametrize("args,words", [
    (["--engine", "pbs"], ["engine: Input should be 'local' or 'slurm'", "'pbs'"]),
    (["--engine", "slurm"], ["sbatch", "not found"]),
    (["--gpus", "7"], ["--gpus 7", "GPU 7 is not on this machine"]),
    (["--engine", "slurm", "--dry-run", "--time", "60", "--signal-delay-s", "3600"], ["signal_delay_s (3600)"]),
    (["--runs-per-gpu", "2", "--cifar-gpus", "2"], ["runs_per_gpu (2)", "cifar_gpus 1"]),
    (["--engine", "slurm", "--dry-run", "--imagenet-gpus", "3"], ["in_r50 seed 0 on 3 GPUs", "8 BN groups"]),
    (["--jobs", "0"], ["--jobs must be at least 1"]),
    (["--no-wait"], ["--no-wait needs --engine slurm"]),
])
def test_bad_input_is_one_line_exit_2_and_nothing_submitted(tmp_path, fake_slurm, args, words):
    env, log = fake_slurm
    slurm_study(tmp_path)
    env = {**env, "PATH": str(Path(sys.executable).parent)}  # no Slurm commands here
    result = run_cli("launch", *args, cwd=tmp_path, env=env, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert all(w in result.stderr for w in words), result.stderr
    assert not (tmp_path / "jobs").exists()


def test_launch_then_dvc_repro_records_every_run_without_training_as_a_plain_repro_would(tmp_path):
    from test_pipeline import dvc, make_project, ran

    experiments = committed_params_dict()["experiments"]
    keep = {k: experiments[k] for k in ("r110_original", "r164_full_preact", "in_r152_full_preact")}
    launched = make_project(tmp_path / "launched", keep, profile="smoke", seeds=[0, 1],
                            **{"smoke.iterations": 30, "smoke.evaluations": 3, "data.imagenet.root": None,
                               "speed.threads": 1})
    plain = tmp_path / "plain"
    shutil.copytree(launched, plain, symlinks=True)
    dvc("repro", "validate", "download@cifar10", "download@cifar100", cwd=plain)
    assert not list((launched / "data").glob("*.pt"))  # `launch` writes the data its runs train on

    dry = run_cli("launch", "--dry-run", cwd=launched).stdout
    assert "would write it with dvc repro validate download@cifar10\n" in dry
    assert not (launched / "data" / "cifar10.pt").exists()
    out = run_cli("launch", "--no-repro", "--poll", "0.5", cwd=launched).stdout
    assert "writing it: dvc repro validate download@cifar10\n" in out  # only the dataset its runs train on
    assert "2 runs to train (0 finished, 0 failed, 3 not run)" in out and "2 finished" in out
    assert "dvc repro" in out
    checkpoints = {p.name: p.stat().st_mtime_ns for p in (launched / "checkpoints").glob("*.pt")}
    assert len(checkpoints) == 2
    recorded = dvc("repro", "aggregate", cwd=launched).stdout
    assert {"train@r110_original", "train@r164_full_preact"} <= set(ran(recorded))
    assert recorded.count("resuming from iteration 30") == 2  # each stage took its run from checkpoints/
    assert {p.name: p.stat().st_mtime_ns for p in (launched / "checkpoints").glob("*.pt")} == checkpoints
    dvc("repro", "aggregate", cwd=plain)

    clock = ["compute_hours", "wall_s"]  # how long the runs took: the one thing that differs
    for table in ("results.csv", "runs.csv"):
        a, b = (pd.read_csv(root / "reports" / table).drop(columns=clock, errors="ignore") for root in (launched, plain))
        pd.testing.assert_frame_equal(a, b)
    assert json.loads((launched / "metrics" / "r110_original.json").read_text()) == \
        json.loads((plain / "metrics" / "r110_original.json").read_text())  # every seed, as the stage writes it
    assert run_cli("launch", "--no-repro", cwd=launched).stdout.startswith("0 runs to train (2 finished")


def ctrl_c_default():
    """Ctrl-C reaches the launcher even when pytest runs as a background job, whose shell ignores SIGINT
    (and a child inherits that: Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_local_jobs_and_the_next_launch_resumes_them(tmp_path):
    root = slow_study(tmp_path, iterations=600)
    launch = subprocess.Popen([sys.executable, "-m", "reproduce", "launch", "--no-repro", "--poll", "0.2"], cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_default)
    checkpoint = lambda: next((root / "checkpoints").glob("tiny-seed0-*.pt"), None)  # noqa: E731
    until(lambda: checkpoint() is not None or launch.poll() is not None, "the first checkpoint")
    task = next(p for p in psutil.Process(launch.pid).children(recursive=True)
                if p.environ().get("SUBMITIT_LOCAL_LOCALID") == "0")
    launch.send_signal(signal.SIGINT)  # Ctrl-C, to the launcher alone
    out, err = launch.communicate(timeout=120)
    assert launch.returncode == 130 and "Stopped the local jobs" in err
    assert not task.is_running() or task.status() == psutil.STATUS_ZOMBIE
    assert not list((root / "jobs" / "runs").glob("*.lock"))  # free to be launched again
    again = run_cli("launch", "--no-repro", "--poll", "0.2", cwd=root).stdout
    assert "1 runs to train" in again and "1 finished" in again
    job = json.loads(next((root / "jobs" / "runs").glob("tiny-seed0-*.job")).read_text())
    assert "resuming from iteration" in (Path(job["folder"]) / f"{job['job_id']}_0_log.out").read_text()


def test_ctrl_c_leaves_slurm_jobs_running_and_says_how_to_reattach(tmp_path, fake_slurm):
    env, log = fake_slurm
    slurm_study(tmp_path)
    (log / "queue").write_text("".join(f"1_{i}|RUNNING\n" for i in range(3)) + "2|PENDING\n")
    launch = subprocess.Popen([sys.executable, "-m", "reproduce", "launch", "--engine", "slurm", "--poll", "0.2"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=ctrl_c_default)
    until(lambda: len(list((tmp_path / "jobs" / "runs").glob("*.job"))) == 4, "the submission")
    launch.send_signal(signal.SIGINT)
    out, err = launch.communicate(timeout=60)
    assert launch.returncode == 130 and "keep running on Slurm" in err and "launch --engine slurm" in err
    assert len(list((tmp_path / "jobs" / "runs").glob("*.lock"))) == 4  # still theirs
    assert "4 already submitted, 0 to submit" in run_cli("launch", "--engine", "slurm", "--no-wait", cwd=tmp_path,
                                                         env=env).stdout
