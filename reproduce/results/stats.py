"""How sure the seeds let us be: distribution-free intervals and tests (scipy.stats), nothing fitted.

- A cell's median over seeds gets the order-statistic interval [x_(k), x_(n+1-k)], which covers the
  population median with probability 1 - 2 P(Bin(n, 1/2) <= k-1) whatever the distribution: with 5
  seeds [min, max] covers 93.75%. It describes; it decides nothing (see `equivalence`).
- "A's error is below B's" is a one-sided Mann-Whitney U test over the seeds of A and B (exact, ties
  by exhaustive permutation): with 5 against 5, all of A below all of B gives p = 1/252, the smallest.
- A cell against the paper's number is two one-sided sign tests (TOST) with margin delta.
- A single run has no spread to test with: its noise is taken as the binomial sd of its own error on
  the images it was evaluated on (the seed-to-seed spread of a CIFAR error is about that: K. Jordan,
  ICLR 2024), and its tests are z-tests; each place that does so says so.
A diverged seed counts as an error worse than every finished one (+inf), as in the median.
"""
import math

import numpy as np
from scipy import stats

LEVEL = 0.05  # each one-sided test's level; a claim's contradictions share it (family-wise, judge.py)
COVERAGE = 0.9  # the narrowest order-statistic interval that still covers the median this often
PAPER_N = 5  # Table 4's mean ± std: the paper says only "median of 5 runs", so its runs are taken as 5
TEST_IMAGES = {"cifar10": 10_000, "cifar100": 10_000, "imagenet": 50_000}  # the paper's test sets
# The seed-to-seed sd of an error rate, from the paper's own spread where it gives one: Table 4's mean ± std
# of 5 runs (CIFAR-10 ±0.14 and ±0.20, pooled 0.17; CIFAR-100 ±0.22). ImageNet's rows are single runs: the
# binomial sd on 50,000 images of 21% top-1 (0.18) and of 5.5% top-5 (0.10). The equivalence margin is
# DELTA_SDS of them (README).
SEED_SD = {"cifar10": 0.17, "cifar100": 0.22, "imagenet": 0.18, "imagenet top-5": 0.10}
DELTA_SDS = 2.5


def seed_sd(dataset: str, key: str = "") -> float:
    """The seed-to-seed sd of the metric `key` (a metrics.json key) on `dataset`, in points."""
    return SEED_SD["imagenet top-5" if dataset == "imagenet" and "top5" in key else dataset]


def delta(dataset: str, key: str = "") -> float:
    """The equivalence margin of an error rate on `dataset`, in points."""
    return DELTA_SDS * seed_sd(dataset, key)


def off_test_set(images, dataset: str) -> str:
    """Why errors measured on `images` images are not a measurement on the paper's test set of
    `dataset`, or "" when they are."""
    if images != images:
        return "test-set size not recorded (a run from before it was)"
    full = TEST_IMAGES[dataset]
    return "" if images == full else f"evaluated on {images:,.0f} test images, not the paper's {full:,}"


def _scalar(x):
    """A 0-d result as a float; results over a simulation's rows stay arrays."""
    return float(x) if np.ndim(x) == 0 else x


def binomial_sd(error_pct, images):
    """Sd in points of an error rate measured on `images` images, Agresti–Coull ((errors + 2) of
    images + 4): an error of 0 on 500 images keeps the noise of 0.28 points, not none. A diverged run
    (non-finite) is given the widest, at 50%."""
    e, n = np.asarray(error_pct, float), np.asarray(images, float)
    p = (np.where(np.isfinite(e), e / 100, 0.5) * n + 2) / (n + 4)
    return _scalar(100 * np.sqrt(p * (1 - p) / (n + 4)))


def median_interval(values, coverage=COVERAGE) -> tuple[float, float, float]:
    """(low, high, coverage) of the order-statistic interval for the median of `values`: the narrowest
    [x_(k), x_(n+1-k)] covering at least `coverage`, or [min, max] (with its own coverage) when no
    interval reaches it. Fewer than 2 values: no interval (nan, nan, 0). NaN (not measured) is left out."""
    x = sorted(v for v in values if not math.isnan(v))
    n = len(x)
    if n < 2:
        return math.nan, math.nan, 0.0
    covers = {k: 1 - 2 * stats.binom.cdf(k - 1, n, 0.5) for k in range(1, n // 2 + 1)}
    k = max((k for k, c in covers.items() if c >= coverage), default=1)
    return float(x[k - 1]), float(x[n - k]), float(covers[k])


def _z_below(x, y, sd):
    """P-value that x is below y when their difference is normal with this sd (a tie: 0.5; a diverged
    run, +inf, is worse than any finite one)."""
    x, y, sd = np.broadcast_arrays(*(np.asarray(v, float) for v in (x, y, sd)))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = stats.norm.sf((y - x) / sd)
    certain = np.isinf(x) | np.isinf(y) | (sd == 0)
    p = np.where(certain, np.where(x < y, 0.0, 1.0), p)
    return _scalar(np.where(x == y, 0.5, p))


def below(x, y, sd=None):
    """One-sided p-value that the values `x` tend to be below `y` (Mann-Whitney U over the last axis).
    Exact: without ties from U's distribution; with ties (seeds that all diverged, equal errors) from
    every split of the pooled values (exhaustive up to 10^5 splits, seeded beyond), never the normal
    approximation, which is far off for 5 seeds. One run against one (ImageNet): a z-test of their
    difference with `sd` (the two runs' binomial sds combined), else 0.5 at best. nan when either side
    is empty. Rows of 2-d inputs are independent simulated studies (continuous noise: no ties)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not x.shape[-1] or not y.shape[-1]:
        return math.nan
    if x.shape[-1] == y.shape[-1] == 1 and sd is not None:
        return _z_below(x[..., 0], y[..., 0], sd)
    if x.ndim > 1:
        return stats.mannwhitneyu(x, y, alternative="less", method="exact", axis=-1).pvalue
    tied = len(set(x) | set(y)) < len(x) + len(y)
    if tied and min(len(x), len(y)) == 1:  # scipy's permutation test wants two values a side
        return _singleton_below(x, y)
    method = stats.PermutationMethod(n_resamples=10**5, rng=0) if tied else "exact"
    return float(stats.mannwhitneyu(x, y, alternative="less", method=method).pvalue)


def _singleton_below(x, y) -> float:
    """Mann-Whitney's permutation p-value when one side is a single value: each pooled value in turn as
    that side, the share of them whose U (ties counted 1/2) is at most the observed one."""
    pooled = np.concatenate([x, y])
    ranks = stats.rankdata(pooled)  # midranks: U of a value = its rank - 1 against the others
    if len(x) == 1:
        return float(np.mean(ranks <= ranks[0]))
    return float(np.mean(ranks >= ranks[len(x)]))  # x is the many: x below y <=> y's value ranks high


def median_above(values, bound, sd):
    """One-sided p-value that the median of `values` (the last axis) is above `bound`: the exact sign
    test over seeds (a seed at the bound counts against), or for a single run a z-test with `sd`."""
    v = np.asarray(values, float)
    if not v.shape[-1]:
        return math.nan
    if v.shape[-1] == 1:
        return _z_below(bound, v[..., 0], sd)
    above = (v > np.expand_dims(np.asarray(bound, float), -1)).sum(-1)
    return _scalar(stats.binom.sf(above - 1, v.shape[-1], 0.5))


def median_below(values, bound, sd):
    return median_above(-np.asarray(values, float), -np.asarray(bound, float), sd)


def equivalence(values, target, delta, sd):
    """(p equivalent, p different) of our seeds' median against a fixed number `target` with margin
    `delta`. Equivalent: both one-sided tests reject a median at or beyond target ± delta (TOST; the
    larger p). Different: one of them shows the median beyond target ± delta (the smaller p). With 5
    seeds each side's p is at least 1/32: equivalent means every seed within target ± delta."""
    p_eq = np.maximum(median_above(values, target - delta, sd), median_below(values, target + delta, sd))
    p_diff = np.minimum(median_above(values, target + delta, sd), median_below(values, target - delta, sd))
    return _scalar(p_eq), _scalar(p_diff)


def against_paper(mean, std, n, paper_mean, paper_std, paper_n=PAPER_N) -> float:
    """Two-sided p-value of Welch's t-test of our mean ± std over n seeds against the paper's."""
    if n < 2 or any(map(math.isnan, (mean, std, paper_mean, paper_std))):
        return math.nan
    return float(stats.ttest_ind_from_stats(mean, std, n, paper_mean, paper_std, paper_n, equal_var=False).pvalue)
