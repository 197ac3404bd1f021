"""Stage `aggregate`: from run directories to `reports/runs.csv` (one row per run) and `reports/results.csv`
(one row per cell of the paper, side by side with our median over seeds and its verdict)."""
from pathlib import Path

import pandas as pd

from ..config import load_params
from ..files import atomic_write
from .cells import results
from .paper import paper_numbers
from .runs import collect


def write_csv(df: pd.DataFrame, path: Path):
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, float_format="%.4f"))


def add_arguments(parser):
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--runs", default="runs", help="run directories RUNS/EXPERIMENT/seedSEED (default: runs)")
    parser.add_argument("--out", default="reports", help="where results.csv and runs.csv go (default: reports)")


def run(args):
    params = load_params(args.params)
    runs = collect(args.runs, params)
    table = results(runs, paper_numbers(), params)
    write_csv(runs, Path(args.out) / "runs.csv")
    write_csv(table, Path(args.out) / "results.csv")
    counts = table.status.replace("", "custom").value_counts()
    print(f"{args.out}/results.csv ({params.profile} profile): "
          + ", ".join(f"{n} {status}" for status, n in counts.items()))
