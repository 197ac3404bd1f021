"""A lock per run, safe on a shared filesystem, and what is known of the run's job: jobs/runs/NAME.*

- NAME.lock: taken by the launcher before it submits the run, released by the job when the run has
  ended (or by a launcher that finds the job gone). Taken with link(2), which fails when the name
  exists, as DVC's `core.hardlink_lock` does: atomic on NFS too, and the file is whole from its first
  moment. It holds a token that the job carries: a job whose token no longer holds the lock does
  not train.
- NAME.job: the launcher's: the engine, job id, submitit folder and task of the token's job.
- NAME.state: the job's: how many times it started (requeues = starts - 1), where, its process.
"""
import json
import os
import socket
import time
import uuid
from pathlib import Path

from ..files import alive, write_json


def folder(root) -> Path:
    return Path(root) / "jobs" / "runs"


def read(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class Record:
    def __init__(self, root, name: str):
        self.name = name
        base = folder(root)
        self.lock, self.job_path, self.state_path = (base / f"{name}.{kind}" for kind in ("lock", "job", "state"))

    def take(self, engine: str) -> str | None:
        """Take the lock for a new job of `engine`: its token, or None if it is held."""
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        claim = {"token": token, "engine": engine, "host": socket.gethostname(), "pid": os.getpid(),
                 "time": time.time()}
        tmp = self.lock.with_name(f".{self.lock.name}.{token}")
        tmp.write_text(json.dumps(claim))
        try:
            os.link(tmp, self.lock)
            return token
        except FileExistsError:
            return None
        except OSError:  # NFS: the reply to a link that succeeded can be lost; the link count tells
            return token if tmp.stat().st_nlink == 2 else None
        finally:
            tmp.unlink()

    def claim(self) -> dict | None:
        return read(self.lock)

    def holds(self, token: str) -> bool:
        return (self.claim() or {}).get("token") == token

    def release(self, token: str | None = None):
        """Drop the lock (only if it is still `token`'s, when given)."""
        if token is None or self.holds(token):
            self.lock.unlink(missing_ok=True)

    def set_job(self, token: str, engine: str, job_id: str, submitit_folder, task: int = 0):
        write_json(self.job_path, {"token": token, "engine": engine, "job_id": str(job_id),
                                   "folder": str(submitit_folder), "task": task})

    def job(self) -> dict | None:
        """The last job submitted for this run (kept after it ended, for its log)."""
        return read(self.job_path)

    def started(self, token: str, job_id: str):
        """Called by the job each time it starts: a requeued job starts again under the same token."""
        state = self.state()
        starts = state["starts"] + 1 if state and state.get("token") == token else 1
        write_json(self.state_path, {"token": token, "job_id": str(job_id), "starts": starts,
                                     "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})

    def state(self) -> dict | None:
        return read(self.state_path)

    def requeues(self) -> int:
        """How many times the last job submitted for this run was requeued."""
        state, job = self.state(), self.job()
        return state["starts"] - 1 if state and job and state["token"] == job["token"] else 0


def launcher_alive(claim: dict) -> bool:
    """Whether the launcher that took a lock may still submit its job: its process is alive (a
    launcher on another host is taken to be)."""
    return claim["host"] != socket.gethostname() or alive(claim["pid"])
