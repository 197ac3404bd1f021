"""`--engine local`: this machine's GPUs, each job on GPUs of its own, never more jobs than GPUs.

submitit's LocalExecutor gives every job of one executor the same CUDA_VISIBLE_DEVICES and starts them
all at once (facebookincubator/submitit#1685; `visible_gpus`, PR #1630), so each job gets an executor
of its own, with the GPUs it was given, and starts only when they are free. Without GPUs, `slots`
jobs run side by side on the CPU (one by default), the cores shared among them.
"""
import os
import socket
import time
from collections import deque
from pathlib import Path

import submitit

from ..errors import UserError
from ..files import alive

LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # no time limit of its own here; a job is interrupted by USR2 only


def visible_gpus() -> list[int]:
    """The GPU ids this process may hand out: CUDA_VISIBLE_DEVICES's when it is set, else every GPU."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        try:
            return [int(g) for g in given.split(",") if g.strip()]
        except ValueError:
            raise UserError(f"CUDA_VISIBLE_DEVICES={given}: give GPU indices (0,1,...) to hand them out to "
                            "jobs, or --gpus") from None
    import torch

    return list(range(torch.cuda.device_count()))


def choose_gpus(asked: str | None) -> list[int]:
    """`--gpus 0,1` checked against the GPUs this machine has; all of them when not given."""
    here = visible_gpus()
    if asked is None:
        return here
    try:
        ids = [int(g) for g in asked.split(",")]
    except ValueError:
        raise UserError(f"--gpus {asked}: give GPU indices separated by commas, e.g. --gpus 0,1") from None
    missing = sorted(set(ids) - set(here))
    if missing or len(set(ids)) != len(ids):
        has = f"GPUs {', '.join(map(str, here))}" if here else "no GPU"
        raise UserError(f"--gpus {asked}: " + (f"GPU {', '.join(map(str, missing))} is not on this machine "
                        f"(it has {has})" if missing else "a GPU is named twice"))
    return ids


class LocalPool:
    """Jobs waiting for GPUs (or CPU slots) and the jobs running on them, on one LocalExecutor each."""

    def __init__(self, folder, gpus: list[int], cpu_slots: int = 1):
        self.folder = Path(folder)
        self.free = list(gpus) if gpus else [None] * cpu_slots  # None: a CPU slot
        self.size = len(self.free)
        self.queue = deque()  # (key, callable, gpus, tasks, on_start)
        self.running = {}  # key: (job, the GPUs or slot it holds)

    def add(self, key, fn, gpus: int, tasks: int = 1, on_start=None):
        """Queue `fn` to run as a job of `tasks` processes on `gpus` GPUs (0: a CPU slot); `on_start(job)`
        is called once it is submitted."""
        if gpus > self.size:
            raise UserError(f"a job needs {gpus} GPUs; {self.size} are handed out here")
        self.queue.append((key, fn, gpus, tasks, on_start))

    def step(self) -> list:
        """Collect the jobs that ended (freeing their GPUs), start those that fit; returns the ended
        (key, job) pairs."""
        ended = [(key, job) for key, (job, _) in self.running.items() if job.done()]
        for key, _ in ended:
            self.free.extend(self.running.pop(key)[1])
        waiting = deque()
        while self.queue:
            key, fn, gpus, tasks, on_start = self.queue.popleft()
            need = max(gpus, 1)
            if len(self.free) < need:
                waiting.append((key, fn, gpus, tasks, on_start))
                continue
            held, self.free = self.free[:need], self.free[need:]
            executor = submitit.LocalExecutor(self.folder)
            executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, tasks_per_node=tasks, gpus_per_node=gpus,
                                       visible_gpus=tuple(held) if gpus else ())
            job = executor.submit(fn)
            self.running[key] = (job, held)
            if on_start:
                on_start(job)
        self.queue = waiting
        return ended

    def stop(self):
        """Ctrl-C: SIGINT to every running job (its tasks stop; their runs resume next time)."""
        for job, _ in self.running.values():
            job.cancel()
        deadline = time.monotonic() + 60  # a controller ends once its tasks have (SIGKILL after 1 s)
        while any(not job.done() for job, _ in self.running.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.running.clear()
        self.queue.clear()


def job_alive(job: dict, claim: dict) -> bool:
    """Whether a local job (its id is its controller's pid) still runs: on this host, its process is
    alive; a job of another host is taken to be."""
    if claim.get("host") != socket.gethostname():
        return True
    return alive(int(job["job_id"]))

