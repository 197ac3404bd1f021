"""The paper's tables beside ours, the claims and the rules that decide them, one cell per row."""
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from ..results.aggregate import FAIL_ERROR_PCT, TOLERANCE_PP, cell_experiments
from ..results.claims import claims
from ..results.paper import FAIL, KEYS, metric_key, paper_value
from ..results.stats import LEVEL, PAPER_N
from .curves import plot_pairs
from .study import Study, show_figure

STATUS_COLOURS = {"reproduced": "#c8e6c9", "not_reproduced": "#ffcdd2", "not reproduced": "#ffcdd2",
                  "fail": "#ffe0b2", "inconclusive": "#fff9c4", "not_run": "#eeeeee", "not run": "#eeeeee"}


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
    show_figure(fig)


def show_custom(study: Study):
    custom = study.results[study.results.table == "custom"]
    if custom.empty:
        display(Markdown("*No custom experiments: add them under `custom:` in params.yaml.*"))
        return
    show_table(study, "custom")
    plot_pairs(study, [tuple(custom.row.unique())], title="Custom experiments")


def _unit(hardware) -> str:
    """CPU-hours or GPU-hours, from the `hardware` a cell's runs used."""
    kinds = {"CPU" if h.startswith("CPU") else "GPU" for h in str(hardware).split(", ") if h}
    return "/".join(sorted(kinds)) + "-hours" if kinds else "hours"


def _pct(x) -> str:
    return "" if x != x else f"{x:.2f}"  # x != x: NaN


def _colour(status) -> str:
    return f"background-color: {STATUS_COLOURS[status]}" if status in STATUS_COLOURS else ""
