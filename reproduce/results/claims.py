"""The paper's four claims, each judged from our runs with a rank test per comparison.

A claim is a set of comparisons "A's error is below B's" (or, for depth, "ResNet-1001's gain is above a
shallower net's gain"). Each is a one-sided Mann–Whitney U test over seeds (`stats.below`); a diverged
seed counts as worse than every finished one. A claim is
- **reproduced** when every comparison is significant at `stats.LEVEL` (an intersection–union test: the
  claim as a whole then holds at that level too, no multiplicity correction needed);
- **not reproduced** when a comparison's medians go the wrong way;
- **inconclusive** when every median goes the paper's way but some comparison is not significant (e.g.
  ImageNet's single runs: 1 against 1 seed gives p = 0.5 at best);
- **not run** when nothing could be compared. Comparisons with a network not run are left out and named.
"""
import math

import numpy as np
import pandas as pd

from .aggregate import seed_errors
from .stats import LEVEL, below

UNITS = ["original", "bn_after_add", "relu_before_add", "relu_only_preact"]  # Table 2's other unit orders
# Table 3's (original, pre-activation) pairs on each dataset; the last, ResNet-1001, is the deepest.
DEPTH_PAIRS = {
    "CIFAR-10": [("r110_1layer_original", "r110_1layer_full_preact"), ("r110_original", "r110_full_preact"),
                 ("r164_original", "r164_full_preact"), ("r1001_original", "r1001_full_preact")],
    "CIFAR-100": [("c100_r164_original", "c100_r164_full_preact"),
                  ("c100_r1001_original", "c100_r1001_full_preact")],
}
IMAGENET_KEY = "test_top1_center320"  # Table 5 compares top-1 error on the 320x320 crop
COLUMNS = ["claim", "status", "comparisons", "significant", "max_p", "evidence"]


def compare(low_name, low, high_name, high, unit="%") -> dict:
    """Is `low` (values over seeds) below `high`? Medians, one-sided p and the line the report shows."""
    a, b = float(np.median(low)), float(np.median(high))
    p = below(low, high)
    return {"right": a < b, "p": p,
            "text": f"{low_name} {_shown(a, unit)} < {high_name} {_shown(b, unit)} (p = {p:.3g}, {len(low)} vs "
                    f"{len(high)} seeds)"}


def beats(runs, winner, losers, key="test_error"):
    """Comparisons "winner's error is below each loser's", and the names that have not run."""
    best = seed_errors(runs, [winner], key)
    others = {name: seed_errors(runs, [name], key) for name in losers}
    if best.empty:
        return [], [winner]
    return [compare(winner, best, n, v) for n, v in others.items() if len(v)], [n for n, v in others.items()
                                                                               if v.empty]


def identity_shortcut(runs, paper):
    cells = paper[(paper.table == "Table 1") & ~paper.literature].experiment.str.split().explode()
    return beats(runs, "r110_original", [e for e in cells if e != "r110_original"])


def full_preactivation(runs, paper):
    done, missing = [], []
    for d in (110, 164):
        c, m = beats(runs, f"r{d}_full_preact", [f"r{d}_{u}" for u in UNITS])
        done, missing = done + c, missing + m
    return done, missing


def gains(runs, original, preact) -> pd.Series:
    """Per seed, original − pre-activation error (seeds both ran; a seed where both diverged is dropped,
    one where only one diverged is a gain of ±inf). Seeds are paired by number: the networks are trained
    independently, so the pairing is arbitrary but fixed."""
    return (seed_errors(runs, [original], "test_error") - seed_errors(runs, [preact], "test_error")).dropna()


def gains_with_depth(runs, paper):
    """On each dataset, ResNet-1001's gain from pre-activation (per seed) is above each shallower net's."""
    done, missing = [], []
    for pairs in DEPTH_PAIRS.values():
        (_, deep_pre), named = pairs[-1], {pre.removesuffix("_full_preact"): gains(runs, o, pre)
                                                   for o, pre in pairs}
        deepest = deep_pre.removesuffix("_full_preact")
        missing += [n for n, g in named.items() if g.empty]
        if named[deepest].empty:
            continue
        done += [compare(f"{n} gain", g, f"{deepest} gain", named[deepest], unit="pp") for n, g in named.items()
                 if n != deepest and len(g)]
    return done, missing


def imagenet_200(runs, paper):
    return beats(runs, "in_r200_full_preact", ["in_r152_original", "in_r152_full_preact", "in_r200_original"],
                 IMAGENET_KEY)


CLAIMS = [
    ("The identity shortcut beats every shortcut modification of Table 1 (scaling, gating, 1x1 conv, "
     "dropout) on CIFAR-10 ResNet-110", identity_shortcut),
    ("Full pre-activation beats the other orders of BN, ReLU and addition (Table 2) on ResNet-110 and "
     "ResNet-164", full_preactivation),
    ("The gain of pre-activation grows with depth: ResNet-1001 gains most (Table 3)", gains_with_depth),
    ("On ImageNet, pre-activation ResNet-200 beats both ResNet-152s and the original ResNet-200 "
     "(top-1, 320x320 crop, Table 5)", imagenet_200),
]


def status_of(comparisons) -> str:
    if not comparisons:
        return "not run"
    if not all(c["right"] for c in comparisons):
        return "not reproduced"
    return "reproduced" if all(c["p"] <= LEVEL for c in comparisons) else "inconclusive"


def claims(runs: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: its status, how many comparisons ran and were significant, the largest p, and
    each comparison (medians and p) as evidence."""
    rows = []
    for claim, check in CLAIMS:
        done, missing = check(runs, paper)
        evidence = "; ".join(c["text"] for c in done) + (f"; not run: {', '.join(missing)}" if missing else "")
        rows.append({"claim": claim, "status": status_of(done), "comparisons": len(done),
                     "significant": sum(c["p"] <= LEVEL for c in done),
                     "max_p": max((c["p"] for c in done), default=math.nan), "evidence": evidence.strip("; ")})
    return pd.DataFrame(rows, columns=COLUMNS)


def _shown(value, unit) -> str:
    if math.isinf(value):
        return "diverged" if unit == "%" else ("original diverged" if value > 0 else "pre-act diverged")
    return f"{value:.2f}%" if unit == "%" else f"{value:+.2f} pp"
