"""Tables and figures shared by the notebooks: the paper's numbers beside ours, training curves, provenance.

Every `show_*`/`plot_*` function displays its output (or a line saying there is nothing to show yet) so
a notebook cell is one call; nothing here crashes on experiments that have not run.
"""
import json
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

from .aggregate import FAIL_ERROR_PCT, TOLERANCE_PP, cell_experiments, collect, results
from .claims import claims
from .stats import LEVEL, PAPER_N
from .config import Params, load_params
from .paper import FAIL, KEYS, metric_key, paper_numbers, paper_value

sns.set_theme(style="whitegrid")  # one look for every notebook
STATUS_COLOURS = {"reproduced": "#c8e6c9", "not_reproduced": "#ffcdd2", "not reproduced": "#ffcdd2",
                  "fail": "#ffe0b2", "inconclusive": "#fff9c4", "not_run": "#eeeeee", "not run": "#eeeeee"}


@dataclass
class Study:
    params: Params
    runs: pd.DataFrame  # aggregate.collect: one row per run directory
    results: pd.DataFrame  # aggregate.results: one row per cell
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


def show_rule():
    display(Markdown(
        f"**Claims.** Each claim is a set of comparisons (\"A's error is below B's\"), each a one-sided "
        f"Mann–Whitney U test over seeds (exact; with 5 against 5 seeds the smallest p is 1/252). A claim is "
        f"**reproduced** when every comparison is significant at {LEVEL:g} (an intersection–union test, so "
        f"the claim holds at {LEVEL:g} as a whole), **inconclusive** when every median goes the paper's way "
        "but some comparison is not significant (ImageNet's single runs can never be), **not reproduced** "
        "when a median goes the other way.\n\n"
        f"**Cells.** A cell is **reproduced** when our median over seeds is within max({TOLERANCE_PP} points, "
        "the seeds' standard deviation) of the paper's number. Beside it: the distribution-free interval for "
        "the median (order statistics; with 5 seeds [min, max], which covers the median with probability "
        "94%) and whether the paper's number lies inside it; where the paper prints mean ± std (Table 4), "
        f"Welch's test of our mean against it, assuming the paper's {PAPER_N} runs. Where the paper says "
        f"**fail**, a cell is reproduced when every network of it failed to train: at least half its seeds "
        f"diverged (non-finite loss) or its median error is ≥ {FAIL_ERROR_PCT:g}%. Status **fail** marks a "
        "cell whose number the paper gives but where at least half our seeds diverged; **not_run**, one with "
        "no finished run yet; each says why. A diverged seed ranks worse than every finished one in medians, "
        "intervals and tests; mean ± std are over finished seeds. Each row's command reproduces it alone."))


def show_claims(study: Study):
    table = claims(study.runs, study.paper).rename(columns={"max_p": "largest p"})
    display(table.style.hide(axis="index").map(_colour, subset=["status"]).format({"largest p": "{:.3g}"})
            .set_properties(subset=["evidence"], **{"font-size": "0.85em"}))


def table_view(study: Study, table: str) -> pd.DataFrame:
    """The paper's table, in its order, side by side with ours; literature rows (Tables 4, 5) as context."""
    ours = study.results[study.results.table == table]
    printed = study.paper[study.paper.table == table]
    cells = printed.merge(ours.drop(columns="paper"), on=KEYS, how="left") if len(printed) else \
        ours.assign(literature=False, paper_mean=float("nan"), paper_std=float("nan"))
    view = pd.DataFrame({
        "row": cells.row, "column": cells.column, "metric": cells.metric, "recipe": cells.recipe, "paper": cells.paper,
        "paper mean ± std": [f"{m:.2f} ± {s:.2f}" if m == m else ""
                             for m, s in zip(cells.paper_mean, cells.paper_std)],
        "ours (median)": cells["median"].map(_pct),
        "interval (coverage)": [f"[{_pct(lo)}, {_pct(hi)}] ({c:.0%})" if c == c and c > 0 else ""
                                for lo, hi, c in zip(cells.ci_low, cells.ci_high, cells.ci_coverage)],
        "paper inside": cells.paper_in_ci.map({True: "yes", False: "no"}).fillna(""),
        "mean ± std": [f"{m:.2f} ± {s:.2f}" if s == s else _pct(m) for m, s in zip(cells["mean"], cells["std"])],
        "p vs paper": cells.p_vs_paper.map(lambda p: "" if p != p else f"{p:.3g}"),
        "seeds": cells.runs.astype("Int64"), "diverged": cells.failed.astype("Int64"),
        "median − paper": [_pct(m - paper_value(p)) if p not in ("", FAIL) else "" for m, p in
                           zip(cells["median"], cells.paper)],
        "status": cells.status.where(~cells.literature.astype(bool), "literature"),
        "reason": cells.reason.fillna(""),
        "compute": [f"{h:.2g} {_unit(hw)}" if h == h and h > 0 else "" for h, hw in zip(cells.compute_hours, cells.hardware)],
        "command": cells.command.fillna("")})
    # Columns the same in every row (Table 4's "paper mean ± std" is empty elsewhere) say nothing.
    same = ("column", "metric", "paper mean ± std", "p vs paper", "reason", "compute", "paper inside")
    return view.drop(columns=[c for c in same if view[c].nunique() < 2])


def show_table(study: Study, table: str):
    view = table_view(study, table)
    display(view.style.hide(axis="index").map(_colour, subset=["status"]).format(na_rep="")
            .set_properties(subset=[c for c in ("reason", "command") if c in view], **{"font-size": "0.8em"}))
    if view.status.isin(["not_run", "literature"]).all():
        display(Markdown(f"*{table}: not run yet — no finished or diverged run of its experiments.*"))
    else:
        plot_vs_paper(study, table)


def plot_vs_paper(study: Study, table: str):
    """Each cell: our seeds (grey dots), our median (circle) and the paper's number (cross)."""
    cells = cell_experiments(study.results[study.results.table == table], study.paper)
    runs = study.runs[study.runs.current & (study.runs.status == "finished")]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(cells) + 1.2))
    labels = []
    for y, cell in enumerate(cells.itertuples(index=False)):
        mine = runs.loc[runs.experiment.isin(cell.experiment.split()), metric_key(cell.metric, cell.column)]
        ax.scatter(mine.astype(float), [y] * len(mine), color="0.55", s=16, label="ours (each seed)")
        ax.scatter([cell.median], [y], color="C0", s=80, label="ours (median)")
        if cell.paper not in ("", FAIL):
            ax.scatter([paper_value(cell.paper)], [y], color="C3", marker="X", s=90, label="paper")
        shown = [cell.row] + [x for x in (cell.column, cell.metric) if x not in ("error (%)", "test_error")]
        labels.append(" / ".join(shown) + (" (paper: fail)" if cell.paper == FAIL else "")
                      + (f" ({cell.failed} of {cell.runs} diverged)" if cell.failed else ""))
    if (cells.paper == FAIL).any():
        ax.axvline(FAIL_ERROR_PCT, color="0.3", ls=":", label=f"fail: error ≥ {FAIL_ERROR_PCT:g}%")
    ax.set_yticks(range(len(cells)), labels)
    ax.invert_yaxis()  # the paper's row order, top to bottom
    ax.set(xlabel="test error (%)", title=f"{table}: ours" + (" vs the paper" if (cells.paper != "").any() else ""))
    handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
    ax.legend(handles.values(), handles.keys(), fontsize="small", loc="best")
    _show(fig)


def curves(study: Study, experiments, names=("train/loss", "test/error")) -> pd.DataFrame:
    """Logged curves (DVCLive TSVs) of the current runs: experiment, seed, step, curve, value."""
    frames = []
    runs = study.runs[study.runs.current & study.runs.experiment.isin(list(experiments))]
    for experiment, seed in runs[["experiment", "seed"]].itertuples(index=False):
        for name in names:
            tsv = study.curves_dir / experiment / f"seed{seed}" / "plots" / "metrics" / f"{name}.tsv"
            if tsv.exists():
                df = pd.read_csv(tsv, sep="\t")
                frames.append(pd.DataFrame({"experiment": experiment, "seed": seed, "step": df["step"],
                                            "curve": name, "value": df[tsv.stem]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["experiment", "seed", "step", "curve", "value"])


def plot_pairs(study: Study, pairs, names=("train/loss", "test/error"), title=""):
    """One row of panels per (baseline, variant) pair, one column per curve: median over seeds, band
    min–max (the paper's Figs. 1, 3 and 6 overlay training loss and test error per pair)."""
    data = curves(study, {e for pair in pairs for e in pair}, names)
    pairs = [p for p in pairs if data.experiment.isin(p).any()]
    if not pairs:
        display(Markdown(f"*{title or 'Curves'}: no logged curves yet.*"))
        return
    fig, axes = plt.subplots(len(pairs), len(names), figsize=(5 * len(names), 3.2 * len(pairs)), squeeze=False)
    for row, pair in zip(axes, pairs):
        for ax, name in zip(row, names):
            part = data[data.experiment.isin(pair) & (data.curve == name)]
            if not part.empty:
                sns.lineplot(part, x="step", y="value", hue="experiment", hue_order=list(pair),
                             estimator="median", errorbar=("pi", 100), ax=ax)
            ax.set(xlabel="iteration", ylabel=name + (" (%)" if "error" in name or "top" in name else ""))
    fig.suptitle(title)
    fig.tight_layout()
    _show(fig)


def show_custom(study: Study):
    custom = study.results[study.results.table == "custom"]
    if custom.empty:
        display(Markdown("*No custom experiments: add them under `custom:` in params.yaml.*"))
        return
    show_table(study, "custom")
    plot_pairs(study, [tuple(custom.row.unique())], title="Custom experiments")


def compute_used(study: Study) -> pd.DataFrame:
    """Device-hours (wall time × processes) of the current runs per table; a run shared by tables counts
    in each, the total counts it once."""
    runs = study.runs[study.runs.current & study.runs.status.isin(["finished", "failed"])]
    runs = runs.assign(hours=runs.wall_s.astype(float) * runs.processes.astype(float) / 3600)
    rows = []
    for table, cells in cell_experiments(study.results, study.paper).groupby("table", sort=False):
        mine = runs[runs.experiment.isin({e for names in cells.experiment for e in names.split()})]
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


def show_bench(path):
    """A benchmark section, only if `path` (records: case, project_img_s, reference_img_s, ratio, device,
    precision) exists."""
    path = Path(path)
    if not path.exists():
        return
    bench = pd.DataFrame(json.loads(path.read_text()))
    display(Markdown("## Benchmark: training speed against the reference implementation"),
            bench.style.hide(axis="index").format(precision=2))
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(bench) + 1.5))
    sns.barplot(bench, x="ratio", y="case", hue="precision", ax=ax)
    ax.axvline(1, color="0.3", ls="--")
    ax.set(xlabel="project img/s ÷ reference img/s\n(ResNet-1001 memory: peak without ÷ with checkpointing)", ylabel="")
    _show(fig)


def _unit(hardware) -> str:
    """CPU-hours or GPU-hours, from the `hardware` a cell's runs used."""
    kinds = {"CPU" if h.startswith("CPU") else "GPU" for h in str(hardware).split(", ") if h}
    return "/".join(sorted(kinds)) + "-hours" if kinds else "hours"


def _pct(x) -> str:
    return "" if x != x else f"{x:.2f}"  # x != x: NaN


def _colour(status) -> str:
    return f"background-color: {STATUS_COLOURS[status]}" if status in STATUS_COLOURS else ""


def _show(fig):
    display(fig)
    plt.close(fig)  # displayed once, not again by the inline backend at the end of the cell


def _git(root, *args) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
