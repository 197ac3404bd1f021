"""What a submitit job runs: the training loop on its run, resumable on Slurm's signal.

A job is `Checkpointable`: on USR2 (preemption, or `signal_delay_s` before the time limit) submitit
pickles it again and requeues it; started again it trains the same run, which resumes from its last
checkpoint (at most `checkpoint_every` iterations lost) and ends with the numbers of an
uninterrupted run. It writes only its own run's files: runs/EXPERIMENT/seedK, curves/EXPERIMENT/seedK,
its checkpoint and its records (never metrics/EXPERIMENT.json, which the DVC stage writes).
"""
import os
from pathlib import Path

import submitit

from ..config import load_params, run_config
from ..errors import UserError
from .records import Record


class Job(submitit.helpers.Checkpointable):
    def __init__(self, root, runs: list, token: dict, ddp: bool = False, threads: int | None = None):
        """`runs`: one run trained by every task (DDP), or one run per task (a pack); `token`: each
        run's lock token; `threads`: torch's threads per process when `speed.threads` is auto."""
        self.root, self.runs, self.token, self.ddp, self.threads = str(root), runs, token, ddp, threads

    def __call__(self) -> dict:
        env = submitit.JobEnvironment()
        os.chdir(self.root)  # a Slurm job starts where sbatch ran; every path below is the workspace's
        os.environ.setdefault("TQDM_MININTERVAL", "10")  # a progress line in the log every 10 s, not 10 a second
        if self.ddp:
            # RANK, WORLD_SIZE, LOCAL_RANK, MASTER_* for the training code; each process takes the GPU
            # of its local rank among those the job was given. The job's values win over any inherited
            # (a launch from inside another job or torchrun has RANK and MASTER_PORT set already).
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        run = self.runs[0] if self.ddp else self.runs[env.global_rank]
        record, token = Record(self.root, run.name), self.token[run.name]
        lead = not self.ddp or env.global_rank == 0
        if not record.holds(token):  # its lock was found stale and taken again: another job has the run
            print(f"{run.label}: the lock {record.lock} is no longer this job's; not training")
            return {"run": run.name, "status": "skipped"}
        if lead:
            record.started(token, env.job_id)
        try:
            metrics = self.train(run)
        except Exception:
            if lead:
                record.release(token)  # the job is over: a later `launch` may submit the run again
            raise
        if lead:
            record.release(token)
        return {"run": run.name, "status": metrics.get("status")}

    def train(self, run) -> dict:
        params = load_params(Path(self.root) / "params.yaml")
        cfg = run_config(params, run.experiment)
        if cfg.digest(run.seed) != run.digest:
            raise UserError(f"{run.label}: params.yaml changed since this job was submitted (config "
                            f"{cfg.digest(run.seed)}, submitted {run.digest}); launch again")
        speed = params.speed
        if self.threads and speed.threads == "auto":
            speed = speed.model_copy(update={"threads": self.threads})
        from ..training.loop import train  # torch starts here
        from ..training.speed import end_process_group

        root = Path(self.root)
        try:  # a pack's processes share the GPU: each checks that its share of the memory fits
            return train(cfg, run.seed, speed, run.out(root), root / "checkpoints", run.curves(root),
                         sharing=1 if self.ddp else len(self.runs)) or {}
        finally:
            end_process_group()
