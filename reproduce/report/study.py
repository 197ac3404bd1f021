"""The study as the notebooks see it: params, runs and results loaded once, the banner, the provenance.

Every `show_*`/`plot_*` function of this package displays its output (or a line saying there is nothing
to show yet) so a notebook cell is one call; nothing here crashes on experiments that have not run.
"""
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import HTML, Markdown, display

from ..config import Params, load_params
from ..results.cells import results
from ..results.runs import collect
from ..results.paper import paper_numbers

sns.set_theme(style="whitegrid")  # one look for every notebook


@dataclass
class Study:
    params: Params
    runs: pd.DataFrame  # results.runs.collect: one row per run directory
    results: pd.DataFrame  # results.cells.results: one row per cell
    paper: pd.DataFrame
    runs_dir: Path
    params_file: Path
    root: Path
    curves_dir: Path


def repo_root(start=None) -> Path:
    """The first directory upwards from `start` (default: the working directory) holding dvc.yaml, so a
    notebook finds the pipeline's outputs whether it runs from the repo root or from notebooks/."""
    here = Path(start or Path.cwd()).resolve()
    return next((p for p in (here, *here.parents) if (p / "dvc.yaml").exists()), here)


def load_study(runs_dir="runs", params_path="params.yaml", curves_dir="curves") -> Study:
    """Paths relative to the repo root (absolute ones are kept)."""
    root = repo_root()
    params, paper = load_params(root / params_path), paper_numbers()
    runs = collect(root / runs_dir, params)
    return Study(params, runs, results(runs, paper, params), paper, root / runs_dir, root / params_path, root,
                 root / curves_dir)


def show_banner(study: Study):
    stale = int((~study.runs.current).sum())
    if study.params.profile == "smoke":
        s = study.params.smoke
        display(HTML(
            '<div style="border:3px solid #c62828;background:#ffebee;padding:1em;font-size:1.2em">'
            "<b>SMOKE PROFILE — these numbers mean nothing.</b> Smoke runs train shrunken networks (depth "
            + ", ".join(f"{d} for {block} units" for block, d in s.depth.items())
            + f", ImageNet {s.imagenet_depth}) for {s.iterations} iterations on {s.train_images} training "
            + ("images of scikit-learn's digits standing in for CIFAR" if s.data == "digits" else "CIFAR images")
            + ", only to check that the pipeline works end to end. "
            "Statuses below compare them with the paper anyway, mechanically.</div>"))
    if stale:
        display(Markdown(f"*{stale} run directories belong to other params or another profile; they are "
                         "listed in runs.csv but not counted.*"))


def compute_used(study: Study) -> pd.DataFrame:
    """Device-hours (wall time × processes) of the current runs per table; a run shared by tables counts
    in each, the total counts it once."""
    runs = study.runs[study.runs.current & study.runs.status.isin(["finished", "failed"])]
    runs = runs.assign(hours=runs.wall_s.astype(float) * runs.processes.astype(float) / 3600)
    rows = []
    for table, cells in study.results.groupby("table", sort=False):
        mine = runs[runs.experiment.isin(set(cells.experiment))]
        rows.append({"table": table, "runs": len(mine), "device-hours": mine.hours.sum()})
    rows.append({"table": "total (each run once)", "runs": len(runs), "device-hours": runs.hours.sum()})
    return pd.DataFrame(rows)


def show_provenance(study: Study):
    runs = study.runs[study.runs.current]
    trained = runs[runs.status.isin(["finished", "failed"])]
    devices = trained.astype({"processes": int}).groupby(["device", "processes", "precision"]).size()
    commit, changes = _git(study.root, "rev-parse", "HEAD"), _git(study.root, "status", "--porcelain")
    display(Markdown(
        f"- **Profile:** `{study.params.profile}`, seeds {study.params.run_seeds()}\n"
        f"- **Runs:** {', '.join(f'{n} {s}' for s, n in runs.status.value_counts().items()) or 'none yet'}\n"
        f"- **Software:** Python {platform.python_version()}, torch {version('torch')}, "
        f"pandas {pd.__version__} ({platform.platform()})\n"
        f"- **Git commit:** `{commit or 'unknown (not a git checkout)'}`"
        + (" (with uncommitted changes)" if changes else "") + "\n"
        f"- **This report made on:** {platform.machine()}, {os.cpu_count()} CPUs"))
    if len(devices):
        devices = devices.rename("runs").reset_index()
        display(Markdown("**Hardware the runs used:**"), devices.style.hide(axis="index"))
    display(Markdown("**Compute used:**"), compute_used(study).style.hide(axis="index").format(precision=3))
    display(Markdown(f"**Params** ({study.params_file.name}):\n\n```yaml\n{study.params_file.read_text()}```"))


def show_figure(fig):
    display(fig)
    plt.close(fig)  # displayed once, not again by the inline backend at the end of the cell


def _git(root, *args) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
