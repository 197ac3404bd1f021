"""The paper's numbers: every cell of Tables 1–5 and Section 5's ResNet-101 pair, as printed.

`paper_numbers.csv` holds one row per cell: `table,row,column,metric` name it, `dataset` is its data set
(whose test set sets the noise of an error rate), `paper` is the printed
number (or `fail`), `experiment` the params.yaml experiment producing it (one each: Table 1's row "init
b_g = 0 to -5" is six networks, so six rows here, each judged on its own), `literature` marks numbers
quoted from other work (kept for context, never compared), `paper_mean`/`paper_std` Table 4's "mean±std"
of 5 runs.
"""
from importlib import resources

import pandas as pd

FAIL = "fail"  # the paper's word for a network that did not converge to a good solution
KEYS = ["table", "row", "column", "metric"]


def paper_numbers() -> pd.DataFrame:
    with resources.files(__package__).joinpath("paper_numbers.csv").open(encoding="utf-8") as f:
        return pd.read_csv(f, dtype={c: str for c in KEYS + ["dataset", "paper", "experiment"]}, keep_default_na=False,
                           na_values={"paper_mean": [""], "paper_std": [""]},
                           true_values=["true"], false_values=["false"])


def paper_value(paper: str) -> float:
    """The printed number as a float; NaN for `fail`."""
    return float("nan") if paper == FAIL else float(paper)


def metric_key(metric: str, column: str) -> str:
    """The metrics.json key of a cell: CIFAR `test_error`; ImageNet top-1/5 at the column's test crop."""
    if metric == "test_error":
        return metric
    return f"test_{metric}_center{column.split('x')[0]}"


def dataset_metrics(dataset: str) -> list[tuple[str, str]]:
    """(metric, column) pairs reported for a network trained on `dataset`, as the paper's tables name them."""
    if dataset == "imagenet":
        return [(m, f"{c}x{c}") for c in (224, 320) for m in ("top1", "top5")]
    return [("test_error", "error (%)")]


def paper_errors(paper: pd.DataFrame) -> dict:
    """{(experiment, metrics.json key): the paper's number} of every numeric, non-literature cell."""
    cells = paper[~paper.literature & (paper.paper != FAIL)]
    return {(c.experiment, metric_key(c.metric, c.column)): float(c.paper) for c in cells.itertuples()}
