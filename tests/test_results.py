"""Intervals, rank tests and the verdicts built on them, on constructed run tables."""
import math

import pandas as pd
import pytest

from reproduce.results import aggregate
from reproduce.results.aggregate import results
from reproduce.results.claims import claims
from reproduce.results.paper import paper_numbers
from reproduce.results.stats import LEVEL, against_paper, below, median_interval


def runs_of(errors: dict) -> pd.DataFrame:
    """Current runs: {experiment: [error per seed, None for a diverged seed]}."""
    rows = [{"experiment": e, "seed": s, "current": True, "status": "finished" if v is not None else "failed",
             "failed_at": None if v is not None else 7, "test_error": v, "wall_s": 1800.0, "processes": 1,
             "device": "cpu"}
            for e, values in errors.items() for s, v in enumerate(values)]
    return pd.DataFrame(rows).reindex(columns=aggregate.RUN_COLUMNS).assign(current=True)


def test_median_interval_is_the_order_statistics_with_their_coverage():
    assert median_interval([6.5, 6.1, 6.9, 6.3, 6.4]) == (6.1, 6.9, 0.9375)  # 5 seeds: [min, max], 1 - 2/32
    low, high, coverage = median_interval(list(range(10)))
    assert (low, high) == (1, 8) and coverage == pytest.approx(1 - 2 * 11 / 1024)  # [x_(2), x_(9)]
    assert median_interval([1.0, 2.0, 3.0]) == (1.0, 3.0, 0.75)  # fewer seeds than 0.9 allows: its own coverage
    assert math.isnan(median_interval([4.0])[0])


def test_rank_test_smallest_p_and_overlap():
    assert below([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(1 / 252)  # all 5 below all 5
    assert below([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert below([6.1, 6.4, 6.5, 6.7, 6.9], [6.3, 6.6, 6.8, 7.0, 7.2]) > LEVEL  # overlapping seeds
    assert below([1, 2, 3, 4, math.inf], [6, 7, 8, 9, math.inf]) == pytest.approx(13 / 252)  # ties: exact splits
    assert below([6.0], [7.0]) == 0.5  # one run each, as on ImageNet: never significant


def test_welch_against_the_papers_mean_and_std():
    assert against_paper(4.62, 0.20, 5, 4.62, 0.20) == pytest.approx(1.0)
    assert against_paper(5.62, 0.20, 5, 4.62, 0.20) < 1e-4
    assert math.isnan(against_paper(5.0, math.nan, 1, 4.62, 0.2))


def test_claim_status_follows_the_p_values():
    base = [6.5, 6.6, 6.7, 6.8, 6.9]
    variants = [e for e in paper_numbers().query("table == 'Table 1' and not literature").experiment.str.split().sum()
                if e != "r110_original"]
    clear = runs_of({"r110_original": base, **{e: [v + 1 for v in base] for e in variants}})
    overlap = runs_of({"r110_original": base, **{e: [v + 0.15 for v in base] for e in variants}})
    wrong = runs_of({"r110_original": base, **{e: [v - 1 for v in base] for e in variants}})
    judged = [claims(r, paper_numbers()).iloc[0] for r in (clear, overlap, wrong)]
    assert [j.status for j in judged] == ["reproduced", "inconclusive", "not reproduced"]
    assert judged[0].max_p == pytest.approx(1 / 252) and judged[0].comparisons == len(variants)
    assert judged[1].max_p > LEVEL and "p = " in judged[1].evidence


def test_fail_and_not_run_cells_name_their_reason():
    runs = runs_of({"r110_full_preact": [6.0, None, None], "r110_original": [6.6, 6.7]})
    table = results(runs, paper_numbers()).set_index(["table", "row", "column"])
    failed = table.loc["Table 2", "full pre-activation", "ResNet-110"]
    assert failed.status == "fail" and failed.reason == "2 of 3 seeds diverged (non-finite training loss, first at iteration 7)"
    assert failed.command == "dvc repro train@r110_full_preact aggregate" and failed.hardware == "CPU ×1"
    assert failed.compute_hours == pytest.approx(1.5)
    missing = table.loc["Table 2", "full pre-activation", "ResNet-164"]
    assert missing.status == "not_run" and "r164_full_preact" in missing.reason
    done = table.loc["Table 1", "original [1]", "error (%)"]
    assert done.paper_in_ci and (done.ci_low, done.ci_high) == (6.6, 6.7) and done.ci_coverage == 0.5
