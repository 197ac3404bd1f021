"""The report's opening: a reproducibility summary in the ML Reproducibility Challenge's form (scope,
methodology, results, what was easy and what was hard), generated from what the runs recorded plus a
short fixed text about this paper."""
import pandas as pd
from IPython.display import HTML, display

from ..results.judge import claims
from ..results.stats import DELTA_SDS, LEVEL
from .study import Study, compute_used

# What is true of this reproduction whatever the runs say (the README's Faithfulness section has the details).
EASY = ("The architectures: every network's parameter count equals the authors' code "
        "(resnet-1k-layers, fb.resnet.torch), and the paper's Figures 2 and 4 map one-to-one on unit classes. "
        "The CIFAR protocol is fully specified by the paper's appendix and [1].")
HARD = ("The paper's numbers come from two implementations (the authors' Caffe code for most rows, the "
        "released Torch code for the † rows), with different SGD forms, BN batch sizes, bottleneck strides "
        "and augmentations; each row here is trained with its own recipe. Details the paper leaves open "
        "(fan-out vs fan-in init, weight decay on BN, per-channel normalisation, best vs final epoch) are "
        "assumptions listed in the README. ImageNet needs days of 8 GPUs per network and single runs cannot "
        "decide the ImageNet claim at any usual level.")


def show_summary(study: Study):
    """Scope, methodology, results, easy and hard, as one block of HTML at the top of the report."""
    verdicts = claims(study.runs, study.paper)
    cells = study.results[study.results.table != "custom"]
    ran = cells[cells.status != "not_run"]
    recipes = {}
    for name, exp in study.params.experiments.items():
        recipes.setdefault(exp.recipe, []).append(name)
    runs = study.runs[study.runs.current & study.runs.status.isin(["finished", "failed"])]
    devices = sorted({f"{d} ×{int(p)} ({q})" for d, p, q in runs[["device", "processes", "precision"]].itertuples(
        index=False)})
    compute = compute_used(study)
    items = {
        "Scope": f"The paper's {len(verdicts)} claims, judged from {len(cells)} cells of its Tables 1–5 and "
                 f"Section 5 ({', '.join(f'{t}: {n}' for t, n in cells.groupby('table', sort=False).size().items())}).",
        "Methodology": (
            f"Profile <code>{study.params.profile}</code>. Every experiment is trained with the recipe of the "
            "implementation that produced its paper number: "
            + "; ".join(f"<code>{r}</code> for {len(n)} experiments" for r, n in recipes.items())
            + f". Seeds: CIFAR {study.params.run_seeds()}, ImageNet one run each (as the paper). Claims: one-sided "
            f"Mann–Whitney tests over seeds at {LEVEL:g}, the contradictions adjusted for each claim's comparisons "
            f"(Westfall–Young, Holm); cells: equivalence within {DELTA_SDS:g} seed sds of the paper's number (two "
            "one-sided sign tests), judged only on the paper's test sets with every seed the profile trains. "
            f"Hardware: {', '.join(devices) or 'nothing ran yet'}. "
            "Compute (device-hours): " + ", ".join(f"{t} {h:.2g} ({n} runs)" for t, n, h in
                                                   zip(compute.table, compute.runs, compute["device-hours"]))
            + "."),
        "Results": "<ul>" + "".join(
            f"<li><b>{c.status}</b> — {c.claim} ({c.ran} of {c.comparisons} comparisons ran: {c.supporting} "
            f"support it, {c.contradicting} contradict it" + (f"; largest p = {c.max_p:.3g}" if c.ran else "")
            + ")</li>" for c in verdicts.itertuples())
            + f"</ul>Cells: {len(ran)} of {len(cells)} ran; "
            + ", ".join(f"{n} {s}" for s, n in cells.status.value_counts().items()) + ".",
        "What was easy": f"{_easy(cells)} {EASY}",
        "What was hard": f"{_hard(cells, study)} {HARD}",
    }
    display(HTML('<div style="border:1px solid #999;padding:0.5em 1em;background:#fafafa">'
                 "<h2>Reproducibility summary</h2>"
                 + "".join(f"<p><b>{k}.</b> {v}</p>" for k, v in items.items()) + "</div>"))


def _easy(cells) -> str:
    done = [t for t, c in cells.groupby("table", sort=False) if (c.status != "not_run").any()
            and (c.status[c.status != "not_run"] == "reproduced").all()]
    return f"Every cell that ran reproduced in: {', '.join(done)}." if done else ""


def _hard(cells, study) -> str:
    off = cells[cells.status == "different"]
    parts = []
    if len(off):
        gap = (off["median"] - pd.to_numeric(off.paper, errors="coerce")).abs()
        worst = off.assign(gap=gap).sort_values("gap", ascending=False).head(3)
        parts.append(f"{len(off)} cells different from the paper's, furthest: " + "; ".join(
            f"{r.table} {r.row} ({r.column}): ours {r.median:.2f} vs {r.paper}" for r in worst.itertuples()) + ".")
    failed = cells[cells.status == "not_run"]
    for status, group in failed.groupby("status"):
        reasons = group.reason.value_counts()
        parts.append(f"{len(group)} cells {status}: " + "; ".join(f"{r} ({n})" for r, n in reasons.head(3).items())
                     + ("; …" if len(reasons) > 3 else "") + ".")
    diverged = int((study.runs.current & (study.runs.status == "failed")).sum())
    if diverged:
        parts.append(f"{diverged} runs diverged (non-finite loss).")
    return " ".join(parts)
