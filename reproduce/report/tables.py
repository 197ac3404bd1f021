"""The paper's tables beside ours, the claims and the rules that decide them, one cell per row."""
import math

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from ..results.cells import FAIL_ERROR_PCT
from ..results.judge import claims
from ..results.paper import FAIL, KEYS, metric_key, paper_value
from ..results.stats import DELTA_SDS, LEVEL, PAPER_N, SEED_SD
from .curves import plot_pairs
from .study import Study, show_figure

STATUS_COLOURS = {"reproduced": "#c8e6c9", "different": "#ffcdd2", "contradicted": "#ffcdd2",
                  "inconclusive": "#fff9c4", "partly tested": "#fff3e0", "not_run": "#eeeeee", "not run": "#eeeeee"}


def show_rule():
    sd = ", ".join(f"{d} {v:g}" for d, v in SEED_SD.items())
    display(Markdown(
        "**Claims.** Each claim is the paper's own sentence (quoted) and the comparisons that sentence makes: "
        "*A below B* (one-sided Mann–Whitney U over seeds, exact; 5 against 5 seeds gives p ≥ 1/252; a fixed "
        f"number quoted from other work: the sign test), *A close to B* (TOST with δ = {DELTA_SDS:g} seed sds "
        f"of the data set: {sd} points), *A not below B by more than δ* (the paper's \"the gain is not big\"), "
        "on test errors or, for the training claims, on the runs' training error and loss (final, or over the "
        "first eighth of training for \"at the beginning\"). A comparison **supports** the claim when its "
        f"test is significant at {LEVEL:g} the paper's way; it **contradicts** it when the same test the other "
        "way is significant after adjusting for the claim's comparisons (Westfall–Young's min-p over a joint "
        "permutation of the claim's networks, or Holm's step-down where a family mixes tests), so a claim is "
        f"contradicted at most {LEVEL:g} of the time when no network differs; otherwise it decides nothing — a "
        "tie never counts, nor a side with fewer seeds than the profile trains. A claim is **reproduced** when "
        "every comparison ran and supports it (an intersection–union test), **contradicted** when one "
        "contradicts it, **partly tested** when some have not run, **inconclusive** otherwise. One run against "
        "one (ImageNet) is a z-test, each run's noise the binomial sd of its own error on the images it was "
        "measured on (Agresti–Coull: 0 errors still count as noise).\n\n"
        f"**Cells.** Our seeds against the paper's number p: **reproduced** when equivalent within δ = "
        f"{DELTA_SDS:g} seed sds (two one-sided sign tests at {LEVEL:g}: with 5 seeds, every seed inside "
        "p ± δ), **different** when a sign test shows the median beyond p ± δ, **inconclusive** when neither, "
        "and always when the runs were evaluated on another test set than the paper's or fewer seeds finished "
        "than the profile trains (the reason says which). Where the paper "
        f"says **fail**, the same tests against {FAIL_ERROR_PCT:g}% error: reproduced when shown above it. "
        "A single run gets its binomial sd as its noise (its reason says so). Every run is tested twice, with "
        "BN's moving averages and with statistics averaged over training images after training ([1]'s "
        "practice); the recipe's `bn_stats` names the headline one, and the table shows both medians and "
        "their difference. Beside each verdict: our "
        "median, its distribution-free interval (with 5 seeds [min, max], 94% coverage), whether the "
        "paper's number lies inside it — a description, not a test: the paper's own median of 5 falls "
        "outside our [min, max] one time in six when both come from one distribution — and the plain "
        f"difference; where the paper prints mean ± std (Table 4), Welch's test against it (the paper's "
        f"{PAPER_N} runs assumed). A diverged seed counts as +∞. The README states how often each verdict "
        "comes out when the paper is right and when nothing differs (`python -m reproduce power`)."))


def show_claims(study: Study):
    table = claims(study.runs, study.paper)
    table = table.assign(ran=[f"{r} of {n}" for r, n in zip(table.ran, table.comparisons)]).drop(columns="comparisons")
    table = table.rename(columns={"max_p": "largest p", "ran": "comparisons run"})
    display(table.style.hide(axis="index").map(_colour, subset=["status"]).format({"largest p": "{:.3g}"}, na_rep="")
            .set_properties(subset=["evidence", "quote"], **{"font-size": "0.85em"}))


def table_view(study: Study, table: str) -> pd.DataFrame:
    """The paper's table, in its order, side by side with ours; literature rows (Tables 4, 5) as context."""
    ours = study.results[study.results.table == table]
    printed = study.paper[study.paper.table == table]
    cells = printed.merge(ours.drop(columns=["paper", "experiment"]), on=KEYS, how="left") if len(printed) else \
        ours.assign(literature=False, paper_mean=float("nan"), paper_std=float("nan"))
    view = pd.DataFrame({
        "row": cells.row, "column": cells.column, "metric": cells.metric, "recipe": cells.recipe, "paper": cells.paper,
        "paper mean ± std": [f"{m:.2f} ± {s:.2f}" if m == m else ""
                             for m, s in zip(cells.paper_mean, cells.paper_std)],
        "ours (median)": cells["median"].map(_pct),
        "interval (coverage)": [f"[{_pct(lo)}, {_pct(hi)}] ({c:.0%})" if c == c and c > 0 else ""
                                for lo, hi, c in zip(cells.ci_low, cells.ci_high, cells.ci_coverage)],
        "paper inside": cells.paper_in_ci.map({True: "yes", False: "no"}).fillna(""),
        "median − paper": [_pct(m - paper_value(p)) if p not in ("", FAIL) else "" for m, p in
                           zip(cells["median"], cells.paper)],
        "δ": cells.delta.map(_pct),
        "p equivalent": cells.p_equivalent.map(_p), "p different": cells.p_different.map(_p),
        "BN moving / after-training (Δ)": [f"{_pct(m)} / {_pct(q)} ({d:+.2f})" if d == d else ""
                                           for m, q, d in zip(cells.median_moving, cells.median_precise,
                                                              cells.bn_stats_difference)],
        "mean ± std": [f"{m:.2f} ± {s:.2f}" if s == s else _pct(m) for m, s in zip(cells["mean"], cells["std"])],
        "p vs paper": cells.p_vs_paper.map(_p),
        "seeds": cells.runs.astype("Int64"), "diverged": cells.failed.astype("Int64"),
        "status": cells.status.where(~cells.literature.astype(bool), "literature"),
        "reason": cells.reason.fillna(""),
        "compute": [f"{h:.2g} {_unit(hw)}" if h == h and h > 0 else "" for h, hw in zip(cells.compute_hours, cells.hardware)],
        "command": cells.command.fillna("")})
    # Columns the same in every row (Table 4's "paper mean ± std" is empty elsewhere) say nothing.
    same = ("column", "metric", "paper mean ± std", "p vs paper", "reason", "compute", "paper inside",
            "BN moving / after-training (Δ)")
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
    cells = study.results[study.results.table == table]
    runs = study.runs[study.runs.current & (study.runs.status == "finished")]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(cells) + 1.2))
    labels = []
    for y, cell in enumerate(cells.itertuples(index=False)):
        mine = runs.loc[runs.experiment == cell.experiment, metric_key(cell.metric, cell.column)]
        ax.scatter(mine.astype(float), [y] * len(mine), color="0.55", s=16, label="ours (each seed)")
        if math.isfinite(cell.median):  # not when half the seeds diverged
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
    if x != x:  # NaN
        return ""
    return "∞" if x == float("inf") else "−∞" if x == float("-inf") else f"{x:.2f}"


def _p(p) -> str:
    return "" if p != p else f"{p:.3g}"


def _colour(status) -> str:
    return f"background-color: {STATUS_COLOURS[status]}" if status in STATUS_COLOURS else ""
