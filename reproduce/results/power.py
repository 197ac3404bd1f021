"""`python -m reproduce power`: how often each verdict comes out when the paper is right, and when it is not.

Simulated studies, each the paper's protocol in seeds (5 per CIFAR network, 1 per ImageNet network),
judged by the report's own rules (claims.py, cells.py):
- **paper right**: every network's true error is the paper's number (a `fail` network: chance-level
  error, 90% ± noise), seeds drawn around it with a normal noise of `noise` points;
- **no effect**: every network of a data set and metric has the same true error (the median of the
  paper's numbers there): each `below` or `gain` claim is then false, and `close` claims true.
The README's tables are this command's output (`--studies 1000 --noise 0.2`).
"""
import numpy as np
import pandas as pd

from ..errors import UserError
from .cells import FAIL_ERROR_PCT, status_of as cell_status, tests
from .claims import CLAIMS, outcome, pvalues, side, status_of
from .paper import FAIL, metric_key, paper_errors, paper_numbers, paper_value

CLAIM_STATUSES = ["reproduced", "inconclusive", "contradicted"]
CELL_STATUSES = ["reproduced", "inconclusive", "different"]
CHANCE_PCT = 90.0  # a network that fails to train: chance-level error on CIFAR-10 (above FAIL_ERROR_PCT)


def truths(paper: pd.DataFrame, scenario: str) -> dict:
    """{(experiment, metrics key): (true error, seeds)} of every network with a cell in the paper."""
    cells = paper[~paper.literature]
    truth = {}
    for c in cells.itertuples():
        value = CHANCE_PCT if c.paper == FAIL else paper_value(c.paper)
        truth[c.experiment, metric_key(c.metric, c.column)] = (value, 1 if c.dataset == "imagenet" else 5, c.dataset)
    if scenario == "no effect":
        groups = {}
        for (e, k), (v, n, d) in truth.items():
            groups.setdefault((k, d), []).append(v)
        truth = {(e, k): (float(np.median(groups[k, d])), n, d) for (e, k), (v, n, d) in truth.items()}
    assert CHANCE_PCT > FAIL_ERROR_PCT
    return truth


def simulate(studies: int, noise: float, scenario: str = "paper right", seed: int = 0):
    """(claim statuses, cell statuses), one row per simulated study, one column per claim or cell: the
    report's own tests, run on all studies at once (seeds on the last axis)."""
    paper, rng = paper_numbers(), np.random.default_rng(seed)
    truth = truths(paper, scenario)
    errors = {key: rng.normal(v, noise, (studies, n)) for key, (v, n, _) in truth.items()}
    printed = paper_errors(paper)
    claim_statuses = {}
    for claim in CLAIMS:
        outcomes = []
        for c in claim.comparisons:
            (a, sa), (b, sb) = side(errors, c.a, c.kind, c.key), side(errors, c.b, c.kind, c.key)
            p, q, _ = pvalues(c, a, b, np.hypot(sa, sb), printed)
            outcomes.append(outcome(p, q))
        claim_statuses[claim.name] = status_of(np.stack(outcomes, axis=-1))
    cells = paper[~paper.literature]
    cell_statuses = {f"{c.table}: {c.row} / {c.column} {c.metric}": cell_status(**{
        k: v for k, v in tests(c.paper, errors[c.experiment, metric_key(c.metric, c.column)], c.dataset).items()
        if k.startswith("p_")}) for c in cells.itertuples()}
    return pd.DataFrame(claim_statuses), pd.DataFrame(cell_statuses)


def rates(statuses: pd.DataFrame, names) -> pd.DataFrame:
    """Per column, the share of studies with each status in `names`."""
    return pd.DataFrame({s: (statuses == s).mean() for s in names})


def table(shares: pd.DataFrame) -> str:
    """A Markdown table of shares, as the README shows them."""
    lines = ["| claim | " + " | ".join(shares.columns) + " |", "|---" * (len(shares.columns) + 1) + "|"]
    return "\n".join(lines + [f"| {name} | " + " | ".join(f"{v:.1%}" for v in row) + " |"
                               for name, row in zip(shares.index, shares.to_numpy())])


def add_arguments(parser):
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per scenario (default 1000)")
    parser.add_argument("--noise", type=float, default=0.2, help="seed-to-seed sd in points (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)


def run(args):
    if args.studies < 1 or args.noise <= 0:
        raise UserError(f"--studies must be at least 1 and --noise above 0 (got {args.studies}, {args.noise})")
    from tqdm import tqdm

    for scenario in tqdm(("paper right", "no effect"), desc="scenarios", disable=None):
        claim_statuses, cell_statuses = simulate(args.studies, args.noise, scenario, args.seed)
        print(f"\n{scenario}: {args.studies} studies, seed noise {args.noise} points\n")
        print(table(rates(claim_statuses, CLAIM_STATUSES)))
        if scenario == "paper right":
            cells = rates(cell_statuses, CELL_STATUSES)
            print(f"\ncells ({len(cells)}): reproduced {cells.reproduced.min():.1%}–{cells.reproduced.max():.1%} "
                  f"(median {cells.reproduced.median():.1%}), different at most {cells.different.max():.1%}")
