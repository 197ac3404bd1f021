"""Training curves (DVCLive's TSVs) and the benchmark, as figures."""
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from .study import Study, show_figure


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
    show_figure(fig)


def show_bench(path):
    """A benchmark section, only if `path` (records: case, project_img_s, reference_img_s, ratio, device,
    precision) exists."""
    path = Path(path)
    if not path.exists():
        return
    bench = pd.DataFrame(json.loads(path.read_text()))
    # A timed ratio's interval (bench: the order-statistic interval of per-round ratios), if recorded.
    bounds = [iv if isinstance(iv, list) else [r, r] for iv, r in zip(bench.get("interval", [None] * len(bench)),
                                                                    bench["ratio"])]
    low, high = (pd.Series(b, index=bench.index) for b in zip(*bounds))
    display(Markdown("## Benchmark: training speed against the reference implementation"),
            bench.assign(**{k: bench[k].map(_interval) for k in ("interval", "time_interval") if k in bench})
            .style.hide(axis="index").format(precision=2))
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(bench) + 1.5))
    sns.barplot(bench, x="ratio", y="case", hue="precision", dodge=False, ax=ax)
    ax.errorbar(bench["ratio"], range(len(bench)), xerr=[bench["ratio"] - low, high - bench["ratio"]], fmt="none",
                color="0.1", capsize=3)
    ax.axvline(1, color="0.3", ls="--")
    ax.set_xscale("log")  # the data pipeline's ~35x beside training's ~1x
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1))
    ax.set(xlabel="project img/s ÷ reference img/s, bars: the rounds' interval\n(ResNet-1001 memory: peak without ÷ with checkpointing)", ylabel="")
    show_figure(fig)


def _interval(value) -> str:
    return f"[{value[0]:.2f}, {value[1]:.2f}]" if isinstance(value, list) else ""
