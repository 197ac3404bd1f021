"""`python -m reproduce launch`: every run of params.yaml that has not finished becomes a job on submitit,
on this machine's GPUs (`--engine local`) or a Slurm cluster (`--engine slurm`); when every job has
ended, one `dvc repro` records them all without training anything (each stage takes its runs from
checkpoints/, where a finished run's last state stays).

    python -m reproduce launch                              # this machine: one job per GPU at a time
    python -m reproduce launch --engine slurm --dry-run     # the sbatch scripts and the jobs, nothing sent
    python -m reproduce launch --engine slurm --partition gpu --time 720
    python -m reproduce launch --status                     # where every run stands

Before submitting, the data files its runs train on and that are missing are written by dvc.yaml's own
stages (`dvc repro validate download@DATASET`), so that on a fresh clone `launch` is one command.

A run already submitted and still queued or running is never submitted again (a lock per run, safe
on a shared filesystem). Ctrl-C on Slurm leaves the jobs running: `launch` again waits for them.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from ..config import load_params
from ..config.schema import Launch, Slurm
from ..errors import UserError, explain
from . import local, slurm
from .job import Job
from .records import Record
from .runs import group, pending, study
from .status import Tracker, table

TOP = [k for k in Launch.model_fields if k not in ("engine", "slurm")]


def add_arguments(parser):
    parser.add_argument("--engine", help="local | slurm (default: params.yaml's launch.engine)")
    parser.add_argument("--gpus", help="local: GPU ids to hand out, e.g. 0,1 (default: every visible GPU)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="local without GPUs: jobs side by side on the CPU, its cores shared (default 1)")
    for name in TOP:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="N",
                            help=f"{Launch.model_fields[name].description} (launch.{name})")
    for name, field in Slurm.model_fields.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=f"slurm_{name}", metavar="VALUE",
                            help=f"slurm: {field.description or name} (launch.slurm.{name})")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs (and sbatch scripts); submit nothing")
    parser.add_argument("--status", action="store_true", help="print where every run stands, and exit")
    parser.add_argument("--no-wait", action="store_true", help="submit, then exit (`launch --status` follows them)")
    parser.add_argument("--no-repro", action="store_true", help="at the end, print the `dvc repro` instead of running it")
    parser.add_argument("--poll", type=float, default=None, help="seconds between looks (default: 2 local, 30 slurm)")


def settings(params, args) -> Launch:
    """params.yaml's `launch:` with the command line's values on top, checked as one."""
    merged = params.launch.model_dump()
    merged.update({k: getattr(args, k) for k in ["engine", *TOP] if getattr(args, k) is not None})
    merged["slurm"].update({k: getattr(args, f"slurm_{k}") for k in Slurm.model_fields
                            if getattr(args, f"slurm_{k}") is not None})
    try:
        return Launch(**merged)
    except ValidationError as e:
        raise UserError(f"launch settings (params.yaml's launch: and the command line): {explain(e, Launch)}") from None


def run(args):
    root = Path.cwd()
    params = load_params("params.yaml")
    launch = settings(params, args)
    tracker = Tracker(root, slurm.queue)
    if args.status:
        return print_status(params, tracker)
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1 (got {args.jobs})")
    if args.no_wait and launch.engine == "local":
        raise UserError("--no-wait needs --engine slurm: `launch` itself starts local jobs as GPUs come free")
    gpus = local.choose_gpus(args.gpus) if launch.engine == "local" else []
    if launch.engine == "slurm" and not args.dry_run:
        slurm.check_commands()
    todo, others = pending(params, root)
    fresh, watched, stale = [], [], {}
    for r in todo:  # a run of an earlier launch that is still queued or running is waited for, not sent
        row = tracker.row(r)
        if row["state"] == "lost":  # its job is gone: the lock is stale
            stale[r.name] = row["token"]
        (watched if row["live"] else fresh).append(r)
    jobs = group(fresh, launch, gpus_here=launch.engine == "slurm" or bool(gpus))
    check(jobs, launch, gpus)
    prepare(root, jobs, args.dry_run)
    print(f"{len(todo)} runs to train ({', '.join(f'{n} {k}' for k, n in others.items())}); "
          f"{len(watched)} already submitted, {len(fresh)} to submit as {len(jobs)} jobs ({launch.engine})")
    if args.dry_run:
        return print_plan(root, jobs, launch)
    for name, token in stale.items():
        Record(root, name).release(token)
    folder = root / "jobs" / "submitit"
    pool, sent, taken = submit(root, folder, jobs, launch, gpus, args.jobs)
    watched += sent + taken
    if args.no_wait:
        print("submitted; `python -m reproduce launch --status` shows where they stand")
        return
    tracker.grace = 2  # from now on a job missing from squeue once may just be ending
    rows = wait(tracker, watched, pool, launch.engine, args.poll or (2 if launch.engine == "local" else 30))
    record(root, rows, args.no_repro)


def dvc_repro(root, *stages) -> int:
    """`dvc repro STAGES` with the venv's dvc next to this Python (a venv not activated), else the one
    on PATH; this Python's folder first on PATH, so that the stages' `python` is the one running here."""
    here = Path(sys.executable)
    dvc = str(here.with_name("dvc")) if here.with_name("dvc").exists() else shutil.which("dvc") or "dvc"
    env = {**os.environ, "PATH": f"{here.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([dvc, "repro", *stages], cwd=root, env=env).returncode


def prepare(root, jobs, dry_run: bool):
    """Write the data files the jobs train on and that are missing, with the stages of dvc.yaml that
    write them (validate, then download@DATASET for those files only), as `dvc repro` would before
    training; DVC's own output is the progress. With --dry-run, say so and run nothing."""
    missing = sorted({r.data for j in jobs for r in j.runs if r.data and not (root / r.data).exists()})
    if not missing:
        return
    stages = ["validate", *(f"download@{Path(m).stem}" for m in missing)]
    if not (root / "dvc.yaml").exists():
        raise UserError(f"{', '.join(missing)} missing: the jobs train on it, and there is no dvc.yaml here "
                        "to write it")
    print(f"{', '.join(missing)} missing: the jobs train on it; "
          f"{'would write it with' if dry_run else 'writing it:'} dvc repro {' '.join(stages)}", flush=True)
    if dry_run:
        return
    failed = dvc_repro(root, *stages)
    if failed:
        raise UserError(f"`dvc repro {' '.join(stages)}` failed (exit {failed}; its output is above): "
                        "nothing submitted")


def check(jobs, launch: Launch, gpus: list):
    """Refuse, before anything is submitted, a job this machine cannot hold or a BN layout its
    processes cannot share."""
    from ..models.batchnorm import layout

    for job in jobs:
        key = "imagenet_gpus" if job.runs[0].imagenet else "cifar_gpus"
        if launch.engine == "local" and job.gpus > len(gpus):
            raise UserError(f"{job.label} needs {job.gpus} GPUs (launch.{key}) but this machine hands out "
                            f"{len(gpus)} ({', '.join(map(str, gpus))}): set --{key.replace('_', '-')} {len(gpus)}")
        if job.ddp:
            run = job.runs[0]
            try:
                layout(run.batch_size, run.bn_batch, job.tasks)
            except UserError as e:
                raise UserError(f"{run.label} on {job.tasks} GPUs (launch.{key}): {e}") from None


def submit(root, folder, jobs, launch: Launch, gpus: list, cpu_jobs: int):
    """Lock each run and submit its job; returns the local pool (None on Slurm), the runs sent and
    those another launcher took meanwhile (left to it, waited for)."""
    sent, taken = [], []
    for job in jobs:
        job.tokens = {r.name: Record(root, r.name).take(launch.engine) for r in job.runs}
        taken += [r for r in job.runs if not job.tokens[r.name]]
        job.runs = [r for r in job.runs if job.tokens[r.name]]
        sent += job.runs
    jobs = [j for j in jobs if j.runs]
    if launch.engine == "slurm":
        noted = set()
        try:
            for (gpus_per_job, tasks), same in slurm.shapes(jobs).items():
                fns = [Job(root, j.runs, j.tokens, j.ddp, launch.slurm.cpus_per_task) for j in same]
                for j, s in zip(same, slurm.submit(folder, launch.slurm, gpus_per_job, tasks, fns)):
                    note_job(root, j, "slurm", s.job_id, folder)
                    noted.add(id(j))
        except BaseException:  # nothing half-sent: the runs not submitted are free again
            for j in jobs:
                for r in j.runs if id(j) not in noted else ():
                    Record(root, r.name).release(j.tokens[r.name])
            raise
        return None, sent, taken
    from ..training.speed import cores

    pool = local.LocalPool(folder, gpus, cpu_jobs)
    # torch's threads per process: the cores shared among the processes running at once
    threads = max(1, cores() // (len(gpus) * launch.runs_per_gpu if gpus else cpu_jobs))
    for j in jobs:
        pool.add(j.label, Job(root, j.runs, j.tokens, j.ddp, threads), j.gpus, j.tasks,
                 on_start=lambda s, j=j: note_job(root, j, "local", s.job_id, folder))
    return pool, sent, taken


def note_job(root, job, engine, job_id, folder):
    for task, r in enumerate(job.runs):
        Record(root, r.name).set_job(job.tokens[r.name], engine, job_id, folder, 0 if job.ddp else task)


def wait(tracker: Tracker, runs: list, pool, engine: str, poll_s: float) -> list:
    """Until every run's job has ended: a line per change of state, a bar over runs, the table at the end."""
    seen = {}
    bar = tqdm(total=len(runs), desc="runs ended", unit="run", dynamic_ncols=True)
    try:
        while True:
            if pool:
                pool.step()
            tracker.refresh()
            rows = [tracker.row(r) for r in runs]
            for r in rows:
                if seen.get(r["run"]) != r["state"]:
                    seen[r["run"]] = r["state"]
                    tqdm.write(f"{r['run']}: {r['state']}" + "".join(f", {r[k]}" for k in ("job", "note") if r[k]))
            live = [r for r in rows if r["live"]]
            bar.n = len(rows) - len(live)
            running = [r for r in live if r["state"] == "running"]
            bar.set_postfix_str(f"{len(running)} running, {len(live) - len(running)} waiting"
                                + (f"; {running[0]['run']} {running[0]['progress']}" if running and running[0]["progress"] else ""))
            if not live and not (pool and (pool.running or pool.queue)):
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        bar.close()
        if engine == "slurm":
            print("\nThe jobs keep running on Slurm. `python -m reproduce launch --status` shows them; "
                  "`python -m reproduce launch --engine slurm` waits for them again (it submits nothing twice) "
                  "and records them.", file=sys.stderr)
        else:
            pool.stop()
            for r in runs:
                rec = Record(tracker.root, r.name)
                claim = rec.claim()
                if claim and claim.get("pid") == os.getpid():
                    rec.release(claim["token"])
            print("\nStopped the local jobs: their runs resume from their last checkpoint when you launch again.",
                  file=sys.stderr)
        raise
    bar.close()
    print("\n".join(table(rows)))
    return rows


def record(root, rows: list, no_repro: bool):
    """Every job has ended: one `dvc repro` records the finished runs (or says why it is not run)."""
    bad = [r for r in rows if r["state"] not in ("finished", "failed")]
    if bad:
        for r in bad:
            print(f"{r['run']}: {r['state']}: {r['note']}", file=sys.stderr)
        print(f"{len(bad)} runs did not finish: fix what their lines say and launch again (finished runs are "
              "kept), then `dvc repro`.", file=sys.stderr)
        sys.exit(1)
    if no_repro or not (root / "dvc.yaml").exists():
        print("Every job has ended. Record the runs (nothing trains): dvc repro")
        return
    print("Every job has ended; recording them: dvc repro", flush=True)
    failed = dvc_repro(root)
    if failed:
        sys.exit(failed)


def print_status(params, tracker: Tracker):
    rows, not_run = [], {}
    for run, reason in study(params):
        if reason:
            not_run[reason] = not_run.get(reason, 0) + 1
        else:
            rows.append(tracker.row(run))
    print("\n".join(table(rows)))
    for reason, n in not_run.items():
        print(f"{n} runs not run ({reason})")


def print_plan(root, jobs, launch: Launch):
    for i, job in enumerate(jobs):
        print(f"job {i}: {job.gpus or 'no'} GPU{'s' if job.gpus != 1 else ''}, {job.tasks} process"
              f"{'es' if job.tasks > 1 else ''}{' (DDP)' if job.ddp else ''}: {job.label}")
    if launch.engine == "slurm":
        folder = root / "jobs" / "submitit"
        for (gpus, tasks), same in slurm.shapes(jobs).items():
            print(f"\n# sbatch script of the array of {len(same)} job(s) on {gpus} GPU(s), {tasks} process(es):")
            print(slurm.script(folder, launch.slurm, gpus, tasks, len(same)))
    print("dry run: nothing submitted")
