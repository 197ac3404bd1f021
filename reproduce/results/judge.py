"""How a claim of claims.py is judged from our runs, by tests that noise cannot flatter.

Each comparison is a pair of one-sided tests at LEVEL (stats.py): its p the paper's way and its q the
other way. `below`: Mann–Whitney over seeds (one run against one: a z-test, each run's noise the
binomial sd of its own error on the images it was measured on; a loss has no such noise: decides
nothing); against a number quoted from other work, the sign test (one run: the z-test), and only on
the test set that number was measured on. `close`: TOST with δ of the data set (stats.delta).
`not_below`: A + δ against B, one-sided. A comparison
- *supports* the claim when p ≤ LEVEL;
- *contradicts* it when its q, adjusted for the claim's m comparisons, is ≤ LEVEL: Westfall–Young's
  min-p where every comparison is a rank test (the joint permutation null of the claim's networks,
  which keeps shared controls' dependence), else Holm's step-down; so a claim is contradicted at most
  LEVEL of the time when no network differs, whatever its m;
- *decides nothing* otherwise (a tie never counts), and always when a side has fewer seeds than the
  profile trains ("too few seeds (k of 5)": one rule whatever the count, never a weaker test).
A claim is **reproduced** when every comparison ran and supports it (an intersection–union test: no
correction is needed), **contradicted** when one contradicts it, **partly tested** when some did not
run, **inconclusive** otherwise, **not run** when none ran.
"""
import math
from functools import lru_cache

import numpy as np
import pandas as pd

from .claims import CLAIMS, Compare
from .runs import evidence
from .stats import LEVEL, below, binomial_sd, delta, median_above, median_below, off_test_set

COLUMNS = ["claim", "where", "quote", "status", "comparisons", "ran", "supporting", "contradicting", "max_p",
           "evidence"]
NULL_DRAWS = 20_000  # joint permutations of the Westfall–Young null (its rate's Monte Carlo sd: 0.15 points)


def datasets(paper: pd.DataFrame) -> dict:
    """{experiment: its data set} of every experiment with a cell in the paper."""
    return dict(zip(paper.experiment, paper.dataset))


def evidence_of(runs: pd.DataFrame) -> dict:
    """{(experiment, key): (errors over seeds, images, seeds planned)} for every side of every claim."""
    keys = {(e, c.key) for claim in CLAIMS for c in claim.comparisons for e in (c.a, c.b)[:1 if c.value else 2]}
    found = {ek: evidence(runs, *ek) for ek in keys}
    return {ek: (np.asarray(v, float), images, planned) for ek, (v, images, planned) in found.items() if len(v)}


def noise(sides, key: str):
    """The noise sd of one run against one (or against a number): the binomial sds of each side's error
    on its own images, combined; None for a loss, or a run that did not record its images."""
    if "loss" in key or any(images != images for _, (_, images, _) in sides):
        return None
    return np.sqrt(sum(binomial_sd(np.median(v, -1), images) ** 2 for _, (v, images, _) in sides))


def pvalues(c: Compare, a, b, sd, margin: float):
    """(p the paper's way, q the other way) of comparison `c` between sides a and b (seeds on the last
    axis; b None against `c.value`); `sd`: the noise of one run against one."""
    if c.value is not None:
        return median_below(a, c.value, sd), median_above(a, c.value, sd)
    if c.kind == "below":
        return below(a, b, sd), below(b, a, sd)
    if c.kind == "not_below":
        return below(b - margin, a, sd), below(a + margin, b, sd)
    return (np.maximum(below(a, b + margin, sd), below(b, a + margin, sd)),
            np.minimum(below(a + margin, b, sd), below(b + margin, a, sd)))


def _rank_test(c: Compare, a, b) -> bool:
    return c.kind == "below" and c.value is None and a.shape[-1] > 1 and b.shape[-1] > 1


@lru_cache(maxsize=None)
def _null_min_q(structure: tuple) -> np.ndarray:
    """Sorted min-q over the claim's comparisons when all its networks' seeds are exchangeable (rank
    tests' p-values depend on ranks only, so any continuous draw serves); `structure`: ((a, n_a, b, n_b),)."""
    rng = np.random.default_rng(0)
    sizes = {name: n for a, na, b, nb in structure for name, n in ((a, na), (b, nb))}
    draws = {name: rng.random((NULL_DRAWS, n)) for name, n in sizes.items()}
    qs = np.stack([below(draws[b], draws[a]) for a, _, b, _ in structure], -1)
    return np.sort(qs.min(-1))


def adjusted(q: np.ndarray, structure: tuple | None) -> np.ndarray:
    """Each comparison's q adjusted for the family (the last axis): Westfall–Young single-step min-p
    given the `structure` of an all-rank-test claim, else Holm's step-down."""
    if structure is not None:  # (count + 1) / (draws + 1), never below q itself: Monte Carlo cannot flatter
        null = _null_min_q(structure)
        return np.maximum(q, (np.searchsorted(null, q * (1 + 1e-9), side="right") + 1) / (len(null) + 1))
    m = q.shape[-1]
    order = np.argsort(q, -1)
    ranked = np.take_along_axis(q, order, -1)
    steps = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked), -1)
    out = np.empty_like(steps)
    np.put_along_axis(out, order, steps, -1)
    return out


def compare(c: Compare, found: dict, dataset: dict) -> dict:
    """One comparison's p and q (arrays over a simulation's studies, or scalars), or why it did not
    run; `why`: why it cannot decide though it ran."""
    sides = [(c.a, found.get((c.a, c.key)))] + ([] if c.value is not None else [(c.b, found.get((c.b, c.key)))])
    missing = [name for name, side in sides if side is None]
    if missing:
        return {"c": c, "outcome": "not run", "why": "not run: " + " and ".join(missing)}
    few = [f"{name} {v.shape[-1]} of {planned}" for name, (v, _, planned) in sides if v.shape[-1] < planned]
    single = all(v.shape[-1] == 1 for _, (v, _, _) in sides)  # only then is the noise assumed, not seen
    unrecorded = [name for name, (_, images, _) in sides if images != images]
    a, images = sides[0][1][:2]
    b = sides[1][1][0] if len(sides) == 2 else None
    p, q = pvalues(c, a, b, noise(sides, c.key), delta(dataset[c.a], c.key))
    if few:
        why = f"too few seeds ({', '.join(few)})"
    elif single and unrecorded and "loss" not in c.key:
        why = f"{' and '.join(unrecorded)}: images not recorded (a run from before they were)"
    elif c.value is not None and off_test_set(images, dataset[c.a]):  # the quoted number: the full test set
        why = f"{c.a} {off_test_set(images, dataset[c.a])}"
    else:
        why = ""
    return {"c": c, "a": a, "b": b, "p": p, "q": q, "why": why}


def family(claim, found: dict, dataset: dict) -> list[dict]:
    """Every comparison of `claim` (`compare`) with its q adjusted for the comparisons that can decide,
    and its outcome."""
    judged = [compare(c, found, dataset) for c in claim.comparisons]
    tested = [j for j in judged if "p" in j and not j["why"]]
    if tested:
        rank = all(_rank_test(j["c"], j["a"], j["b"]) for j in tested)
        structure = tuple((j["c"].a, j["a"].shape[-1], j["c"].b, j["b"].shape[-1]) for j in tested) if rank else None
        q_adj = adjusted(np.stack([np.asarray(j["q"], float) for j in tested], -1), structure)
        for i, j in enumerate(tested):
            j["q_adj"] = q_adj[..., i]
    for j in judged:
        if "p" in j:
            p, contra = np.asarray(j["p"]), np.asarray(j.get("q_adj", 1.0)) <= LEVEL
            j["outcome"] = np.full(p.shape, "decides nothing") if j["why"] else \
                np.select([p <= LEVEL, contra], ["supports", "contradicts"], "decides nothing")
    return judged


def status_of(outcomes):
    """A claim's status from its comparisons' outcomes (the last axis; "not run" for one that did not run)."""
    o = np.asarray(outcomes)
    ran = o != "not run"
    status = np.select([~ran.any(-1), (o == "contradicts").any(-1), ~ran.all(-1), (o == "supports").all(-1)],
                       ["not run", "contradicted", "partly tested", "reproduced"], "inconclusive")
    return str(status) if status.ndim == 0 else status


def _text(j: dict) -> str:
    c = j["c"]
    if j["outcome"] == "not run":
        return j["why"]
    a, b = _shown(j["a"], c.key), _shown(j["b"], c.key) if c.value is None else f"{c.value:.2f}%"
    what = {"below": f"{c.a} {a} < {c.b} {b}", "close": f"|{c.a} {a} − {c.b} {b}| < δ",
            "not_below": f"{c.a} {a} not below {c.b} {b} by more than δ"}[c.kind]
    n = f"{j['a'].shape[-1]} vs {'—' if c.value is not None else j['b'].shape[-1]} runs"
    said = f"{j['why']}: decides nothing" if j["why"] else str(j["outcome"])
    adj = f", adjusted {float(j['q_adj']):.3g}" if "q_adj" in j else ""
    return f"{what} ({c.key}): p = {float(j['p']):.3g} (the other way {float(j['q']):.3g}{adj}), {n}: {said}"


def claims(runs: pd.DataFrame, paper: pd.DataFrame, found: dict | None = None) -> pd.DataFrame:
    """One row per claim: its words, status, comparisons run, supporting and contradicting, the largest p
    the paper's way, and each comparison as evidence. `found`: `evidence_of(runs)`, if at hand."""
    found = evidence_of(runs) if found is None else found
    dataset = datasets(paper)
    rows = []
    for claim in CLAIMS:
        judged = family(claim, found, dataset)
        ran = [j for j in judged if j["outcome"] != "not run"]
        rows.append({"claim": claim.name, "where": claim.where, "quote": claim.quote,
                     "status": status_of([str(j["outcome"]) for j in judged]),
                     "comparisons": len(judged), "ran": len(ran),
                     "supporting": sum(j["outcome"] == "supports" for j in ran),
                     "contradicting": sum(j["outcome"] == "contradicts" for j in ran),
                     "max_p": max((float(j["p"]) for j in ran), default=math.nan),
                     "evidence": "; ".join(_text(j) for j in judged)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _shown(values, key: str) -> str:
    """A side's median, as the report prints it."""
    m = float(np.median(values))
    if math.isinf(m):
        return "diverged"
    return f"{m:.3f}" if "loss" in key else f"{m:.2f}%"
