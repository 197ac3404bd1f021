"""`launch --engine slurm` through a real single-node Slurm (Debian's slurm-wlm and munge), started here
in a temporary folder and stopped at the end: an array of smoke jobs end to end, one of them preempted
with `scancel --signal=USR2`, requeued, resumed. Skipped, saying why, where such a cluster cannot start."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_cli, write_params
from reproduce.data import digits

DAEMONS = ("munged", "slurmctld", "slurmd")
COMMANDS = ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo")
TINY = {name: {"dataset": "cifar10", "depth": 8, "block": "basic", "unit": unit}
        for name, unit in [("tiny", "full_preact"), ("tiny_original", "original"), ("tiny_relu", "relu_only_preact")]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(d: Path) -> str:
    # cred_expire: a requeued job waits this long before it starts again (Slurm's default: 120 s)
    return f"""ClusterName=reproduce-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge.socket,cred_expire=10
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
NodeName=localhost CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def stop(d: Path):
    for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
        try:
            os.kill(int((d / pid_file).read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """SLURM_CONF of a running single-node cluster (this machine's CPUs, no accounting: job states come
    from squeue)."""
    missing = [c for c in DAEMONS + COMMANDS if not shutil.which(c) and not Path(f"/usr/sbin/{c}").exists()]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): `.ci/run` installs Debian's "
                    "slurmctld slurmd slurm-client munge")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs; run the tests as root (as CI does)")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    (d / "munge.key").write_bytes(os.urandom(1024))
    (d / "munge.key").chmod(0o400)
    (d / "slurm.conf").write_text(slurm_conf(d))
    env = {**os.environ, "SLURM_CONF": str(d / "slurm.conf")}
    sbin = lambda name: shutil.which(name) or f"/usr/sbin/{name}"  # noqa: E731
    starts = [[sbin("munged"), "--force", f"--key-file={d}/munge.key", f"--socket={d}/munge.socket",
               f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/munged.seed"],
              [sbin("slurmctld"), "-f", str(d / "slurm.conf")], [sbin("slurmd"), "-f", str(d / "slurm.conf")]]
    try:
        for command in starts:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
            if done.returncode:
                pytest.skip(f"{Path(command[0]).name} would not start: {(done.stderr or done.stdout).strip()[-300:]}")
        deadline = time.monotonic() + 30
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout:
            if time.monotonic() > deadline:
                logs = " | ".join((d / f).read_text()[-300:] for f in ("slurmctld.log", "slurmd.log") if (d / f).exists())
                pytest.skip(f"the single-node Slurm did not come up within 30 s: {logs}")
            time.sleep(0.5)
        yield env
    finally:
        subprocess.run(["scancel", "--me"], env=env, capture_output=True)
        stop(d)


def test_an_array_of_smoke_jobs_through_a_real_slurm_with_a_requeue(cluster, tmp_path):
    digits.write("cifar10", tmp_path / "data" / "cifar10.pt")
    experiments = {**TINY, "tiny": {**TINY["tiny"], "protocol": {"iterations": 1500, "milestones": [750]}}}
    # one thread, in the jobs (cpus_per_task 1) and the reference alike: on a CPU it changes the last bits
    write_params(tmp_path, experiments, seeds=[0], **{"cifar.iterations": 300, "cifar.milestones": [150],
                 "cifar.log_every": 10, "cifar.checkpoint_every": 50, "cifar.eval_every": 100, "speed.threads": 1})
    run_cli("train", "--experiment", "tiny", "--out", "reference", "--curves", "reference-curves", "--checkpoint-dir",
            "reference-ck", "--metrics", "reference.json", cwd=tmp_path)
    log = open(tmp_path / "launch.log", "w")
    launch = subprocess.Popen([sys.executable, "-m", "reproduce", "launch", "--engine", "slurm", "--cifar-gpus", "0",
                               "--cpus-per-task", "1", "--time", "10", "--signal-delay-s", "30", "--poll", "1",
                               "--no-repro"], cwd=tmp_path, env=cluster, stdout=log, stderr=subprocess.STDOUT)
    try:
        record = None
        deadline = time.monotonic() + 120
        checkpoint = lambda: next((tmp_path / "checkpoints").glob("tiny-seed0-*.pt"), None)  # noqa: E731
        while not (checkpoint() and torch.load(checkpoint(), weights_only=False)["iteration"] >= 50):
            assert time.monotonic() < deadline and launch.poll() is None, (tmp_path / "launch.log").read_text()[-3000:]
            time.sleep(0.1)
        record = json.loads(next((tmp_path / "jobs" / "runs").glob("tiny-seed0-*.job")).read_text())
        subprocess.run(["scancel", "--signal=USR2", record["job_id"]], env=cluster, check=True)  # as on preemption
        assert launch.wait(timeout=240) == 0, (tmp_path / "launch.log").read_text()[-3000:]
    finally:
        if launch.poll() is None:
            launch.kill()
        log.close()
    out = (tmp_path / "launch.log").read_text().replace("\r", "\n")
    assert "3 runs to train" in out and "3 finished" in out
    assert out.index("tiny seed 0: running") < out.index("tiny seed 0: pending", out.index("tiny seed 0: running"))
    row = next(line.split() for line in out.splitlines() if line.startswith("tiny seed 0 ") and "finished" in line)
    assert row[-1] == "1"  # the final table: finished, requeued once
    state = json.loads(next((tmp_path / "jobs" / "runs").glob("tiny-seed0-*.state")).read_text())
    assert state["starts"] == 2 and state["job_id"] == record["job_id"]  # requeued once, the same array element
    job_log = Path(record["folder"]) / f"{record['job_id']}_0_log.out"
    assert "resuming from iteration" in job_log.read_text()
    finished, reference = (json.loads((tmp_path / d / "metrics.json").read_text())
                           for d in ("runs/tiny/seed0", "reference/seed0"))
    for m in (finished, reference):
        m.pop("wall_s")
    assert finished == reference  # the requeued run ends as an uninterrupted one
    assert not list((tmp_path / "jobs" / "runs").glob("*.lock"))  # every job released its run
