"""How sure the seeds let us be: distribution-free intervals and rank tests (scipy.stats), nothing fitted.

- A cell's median over seeds gets the order-statistic interval [x_(k), x_(n+1-k)], which covers the
  population median with probability 1 - 2 P(Bin(n, 1/2) <= k-1) whatever the distribution: with 5
  seeds [min, max] covers 93.75%.
- A claim "A's error is below B's" is a one-sided Mann-Whitney U test over the seeds of A and B: with 5
  against 5, all of A below all of B gives p = 1/252, the smallest there is.
- A cell where the paper prints mean ± std of its runs (Table 4's ResNet-1001) also gets Welch's test
  of our mean against the paper's, with the paper's n assumed (PAPER_N).
A diverged seed counts as an error worse than every finished one (+inf), as in the median.
"""
import math

from scipy import stats

LEVEL = 0.05  # each comparison's level; a claim holds when every one of its comparisons is significant
COVERAGE = 0.9  # the narrowest order-statistic interval that still covers the median this often
PAPER_N = 5  # Table 4's mean ± std: the paper says only "median of 5 runs", so its runs are taken as 5


def median_interval(values, coverage=COVERAGE) -> tuple[float, float, float]:
    """(low, high, coverage) of the order-statistic interval for the median of `values`: the narrowest
    [x_(k), x_(n+1-k)] covering at least `coverage`, or [min, max] (with its own coverage) when no
    interval reaches it. Fewer than 2 values: no interval (nan, nan, 0)."""
    x, n = sorted(values), len(values)
    if n < 2:
        return math.nan, math.nan, 0.0
    covers = {k: 1 - 2 * stats.binom.cdf(k - 1, n, 0.5) for k in range(1, n // 2 + 1)}
    k = max((k for k, c in covers.items() if c >= coverage), default=1)
    return x[k - 1], x[n - k], float(covers[k])


def below(x, y) -> float:
    """One-sided p-value that the values `x` tend to be below `y` (Mann-Whitney U). Exact: without ties
    from U's distribution; with ties (seeds that all diverged, equal gains) from every split of the
    pooled values (a permutation test, exhaustive up to 10^5 splits, seeded beyond), never the normal
    approximation, which is far off for 5 seeds. nan when either side is empty."""
    x, y = list(x), list(y)
    if not x or not y:
        return math.nan
    tied = len(set(x + y)) < len(x + y) and min(len(x), len(y)) > 1
    method = stats.PermutationMethod(n_resamples=10**5, rng=0) if tied else "exact"
    return float(stats.mannwhitneyu(x, y, alternative="less", method=method).pvalue)


def against_paper(mean, std, n, paper_mean, paper_std, paper_n=PAPER_N) -> float:
    """Two-sided p-value of Welch's t-test of our mean ± std over n seeds against the paper's."""
    if n < 2 or any(map(math.isnan, (mean, std, paper_mean, paper_std))):
        return math.nan
    return float(stats.ttest_ind_from_stats(mean, std, n, paper_mean, paper_std, paper_n, equal_var=False).pvalue)
