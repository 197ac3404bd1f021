"""Where each run stands, from its records, its job's log and the engine: what `launch` prints while it
waits and `launch --status` prints later.

Live states: queued (locked, waiting for a GPU or for submission), then its job's state as the engine
reports it (pending, running, ...: Slurm's, from squeue). Ended: finished / failed (recorded in runs/:
the run's own status; failed is a diverged run), error (the job ended without recording the run: its
last error line), lost (the lock is held but its job is gone: killed, or its node failed; `launch`
submits it again). And not submitted.
"""
import re
from collections import Counter
from pathlib import Path

from submitit.core.utils import JobPaths

from . import local
from .records import Record, launcher_alive

PROGRESS = re.compile(r"(\d+)/(\d+) \[[^\]]*?([\d.]+)(it/s|s/it)")


def log_path(job: dict) -> Path:
    return JobPaths(job["folder"], job["job_id"], job["task"]).stderr


def tail(path: Path, size: int = 16384) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def progress(text: str) -> str:
    """'1200/64000 at 8.4 it/s' from the last progress-bar line of a job's log."""
    for part in reversed(re.split(r"[\r\n]", text)):
        m = PROGRESS.search(part)
        if m:
            return f"{m[1]}/{m[2]} at {m[3]} {m[4]}"
    return ""


def last_error(text: str) -> str:
    """The last line of a job's log that is not a progress bar or submitit's own bookkeeping."""
    lines = [line.strip() for line in re.split(r"[\r\n]", text)]
    lines = [line for line in lines if line and not PROGRESS.search(line) and not line.startswith("submitit ")]
    return lines[-1][:200] if lines else "no error message in its log"


class Tracker:
    """The state of runs. `alive(job, claim)` is the engine's word on a job; given None, each record's
    own engine is asked (`squeue` once per look for Slurm)."""

    def __init__(self, root, slurm_queue=None, grace: int = 1):
        """`grace`: how many looks in a row a Slurm job must be missing from the queue to count as ended
        (on a shared filesystem, what a job wrote as it ended can take a moment to show)."""
        self.root, self.slurm_queue, self.grace = Path(root), slurm_queue, grace
        self._queue, self.missing = None, Counter()

    def refresh(self):
        """Ask the engines again at the next look (once per look, however many runs)."""
        self._queue = None

    def slurm_state(self, job_id: str):
        if self._queue is None:
            self._queue = self.slurm_queue() if self.slurm_queue else {}
            self.missing.update(self.missing.keys() - self._queue.keys())  # one more look without them
        state = self._queue.get(job_id)
        if state:
            self.missing.pop(job_id, None)
            return state.lower()
        self.missing.setdefault(job_id, 1)
        return "completing" if self.missing[job_id] < self.grace else None

    def job_state(self, job: dict, claim: dict):
        """The live state of a recorded job, or None once it has ended."""
        if job["engine"] == "slurm":
            return self.slurm_state(job["job_id"])
        return "running" if local.job_alive(job, claim) else None

    def row(self, run) -> dict:
        record = Record(self.root, run.name)
        claim, job = record.claim(), record.job()
        row = {"run": run.label, "job": "", "state": "not submitted", "live": False, "progress": "",
               "requeues": record.requeues(), "note": ""}
        if job:
            row["job"] = f"{job['engine']} {job['job_id']}"
        if claim:
            current = job is not None and job["token"] == claim["token"]
            live = self.job_state(job, claim) if current else ("queued" if launcher_alive(claim) else None)
            if live:
                text = tail(log_path(job)) if current else ""
                return {**row, "job": row["job"] if current else "", "state": live, "live": True,
                        "progress": progress(text), "requeues": row["requeues"] if current else 0}
        metrics = run.recorded(self.root)
        if metrics:
            failed = f"diverged at iteration {metrics.get('failed_at')}" if metrics["status"] == "failed" else ""
            return {**row, "state": metrics["status"], "note": failed}
        if claim:
            return {**row, "state": "lost", "token": claim["token"],
                    "note": "its lock is held but its job is gone; launch submits it again"}
        if job:
            return {**row, "state": "error", "note": last_error(tail(log_path(job)))}
        return row


def table(rows: list) -> list:
    """Rows as aligned lines, a header first and a count of states last."""
    keys = ["run", "job", "state", "progress", "requeues", "note"]
    cells = [[str(r[k]) if r[k] or k != "requeues" else "" for k in keys] for r in rows]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
    counts = Counter(r["state"] for r in rows)
    lines.append(", ".join(f"{n} {state}" for state, n in counts.most_common()))
    return lines
