"""`--engine slurm`: job arrays through submitit's SlurmExecutor, one array per shape of job.

A job's state comes from `squeue` (which needs no accounting database, unlike `sacct`): listed, it is
pending, running or requeued; no longer listed, it has ended, and what it left (metrics.json, its log)
says how.
"""
import shlex
import shutil
import subprocess
import sys

import submitit
from submitit.slurm.slurm import _make_sbatch_string  # what sbatch receives, for --dry-run

from ..config.schema import Slurm
from ..errors import UserError


def parameters(slurm: Slurm, gpus: int, tasks: int) -> dict:
    """SlurmExecutor's parameters for a job of `tasks` processes on `gpus` GPUs of one node."""
    p = {"job_name": "reproduce", "time": slurm.time, "nodes": 1, "ntasks_per_node": tasks,
         "cpus_per_task": slurm.cpus_per_task, "signal_delay_s": slurm.signal_delay_s,
         "array_parallelism": slurm.array_parallelism}
    if gpus:
        p["gpus_per_node"] = gpus
    if slurm.mem_gb:
        p["mem"] = f"{int(slurm.mem_gb * 1024)}MB"
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(slurm, key):
            p[key] = getattr(slurm, key)
    return p


def shapes(jobs: list) -> dict:
    """Jobs by (GPUs, processes): each shape is one array."""
    arrays = {}
    for job in jobs:
        arrays.setdefault((job.gpus, job.tasks), []).append(job)
    return arrays


def script(folder, slurm: Slurm, gpus: int, tasks: int, count: int) -> str:
    """The sbatch script submitit writes for an array of `count` such jobs."""
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=count if count > 1 else None,
                               **parameters(slurm, gpus, tasks))


def check_commands():
    missing = [c for c in ("sbatch", "srun", "squeue", "scontrol") if shutil.which(c) is None]
    if missing:
        raise UserError(f"--engine slurm: {', '.join(missing)} not found on PATH: run `launch` on a Slurm "
                        "login node, or --dry-run to see what would be submitted")


def submit(folder, slurm: Slurm, gpus: int, tasks: int, fns: list) -> list:
    """Submit `fns` as one array (a single job if there is one); returns submitit's jobs."""
    executor = submitit.SlurmExecutor(folder, max_num_timeout=slurm.max_requeues)
    executor.update_parameters(**parameters(slurm, gpus, tasks))
    try:
        return executor.submit_array(fns)
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as e:
        lines = str(e).strip().splitlines() or ["no message"]
        raise UserError(f"sbatch refused the jobs: {lines[-1]}") from None


def queue() -> dict:
    """{job id: state} of this user's jobs, array elements one by one (`123_4`)."""
    try:
        out = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True,
                             timeout=120)
    except FileNotFoundError:
        raise UserError("squeue not found on PATH: job states need Slurm's commands") from None
    if out.returncode:
        lines = (out.stderr or out.stdout).strip().splitlines() or [f"exit status {out.returncode}"]
        raise UserError(f"squeue failed: {lines[-1]}")
    return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)
