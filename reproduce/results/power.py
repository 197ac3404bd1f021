"""`python -m reproduce power`: how often each verdict comes out when the paper is right, and when it is not.

Simulated studies, each the paper's protocol in seeds (5 per CIFAR network, 1 per ImageNet network),
judged by the report's own code (judge.py, cells.py), each network's seeds normal around its true error
with the data set's seed sd (stats.SEED_SD; ImageNet top-5 its own) times `scale`:
- **paper right**: every network's true error is the paper's number (a `fail` network: chance-level
  error, 90%), and the printed number is itself a draw: the median of 5 runs (CIFAR) or one run
  (ImageNet) around it, so a faithful reproduction is judged against a number as noisy as the paper's.
  Training claims (no printed numbers) are not simulated here;
- **no effect**: every network of a data set and metric has the same true error (the median of the
  paper's numbers there; training metrics alike): each `below` claim is then false, `close` and
  `not_below` true.
The README's tables are this command's output (`--studies 2000`, at scale 1 and 1.5).
"""
import numpy as np
import pandas as pd

from ..errors import UserError
from .cells import FAIL_ERROR_PCT, status_of as cell_status, tests
from .claims import C10, CLAIMS, TOP1_320
from .judge import datasets, family, status_of
from .paper import FAIL, metric_key, paper_numbers, paper_value
from .stats import PAPER_N, SEED_SD, TEST_IMAGES, seed_sd

CLAIM_STATUSES = ["reproduced", "inconclusive", "contradicted"]
CELL_STATUSES = ["reproduced", "inconclusive", "different"]
CHANCE_PCT = 90.0  # a network that fails to train: chance-level error on CIFAR-10 (above FAIL_ERROR_PCT)


def truths(paper: pd.DataFrame, scenario: str) -> dict:
    """{(experiment, metrics key): (true error, seeds, data set)} of every network with a cell in the
    paper; with no effect, also every training metric a claim compares."""
    cells = paper[~paper.literature]
    truth = {}
    for c in cells.itertuples():
        value = CHANCE_PCT if c.paper == FAIL else paper_value(c.paper)
        truth[c.experiment, metric_key(c.metric, c.column)] = (value, 1 if c.dataset == "imagenet" else 5, c.dataset)
    if scenario == "no effect":
        groups = {}
        for (e, k), (v, n, d) in truth.items():
            groups.setdefault((k, d), []).append(v)
        level = {g: float(np.median(v)) for g, v in groups.items()}
        truth = {(e, k): (level[k, d], n, d) for (e, k), (v, n, d) in truth.items()}
        seeds = {e: (n, d) for (e, _), (_, n, d) in truth.items()}
        for c in (c for claim in CLAIMS for c in claim.comparisons):
            if c.value is not None:  # against a quoted number: ours at that number
                truth[c.a, c.key] = (c.value, *seeds[c.a])
            elif c.key.startswith("train_"):  # a training metric: the data set's test error, one for all
                for e in (c.a, c.b):
                    truth[e, c.key] = (level[C10 if seeds[e][1] != "imagenet" else TOP1_320, seeds[e][1]], *seeds[e])
    assert CHANCE_PCT > FAIL_ERROR_PCT
    return truth


def simulate(studies: int, scale: float = 1.0, scenario: str = "paper right", seed: int = 0):
    """(claim statuses, cell statuses), one row per simulated study, one column per claim or cell: the
    report's own tests, run on all studies at once (seeds on the last axis)."""
    paper, rng = paper_numbers(), np.random.default_rng(seed)
    truth = truths(paper, scenario)
    sd = {key: scale * seed_sd(d, key[1]) for key, (_, _, d) in truth.items()}
    errors = {key: rng.normal(v, sd[key], (studies, n)) for key, (v, n, _) in truth.items()}
    found = {key: (v, TEST_IMAGES[truth[key][2]], v.shape[-1]) for key, v in errors.items()}
    dataset = datasets(paper)
    claim_statuses = {claim.name: status_of(np.stack([np.broadcast_to(j["outcome"], (studies,))
                                                      for j in family(claim, found, dataset)], -1))
                      for claim in CLAIMS if scenario == "no effect" or not claim.training}
    cell_statuses = {}
    for c in paper[~paper.literature].itertuples():
        key = c.experiment, metric_key(c.metric, c.column)
        value, n, _ = truth[key]
        draws = (studies, PAPER_N if n > 1 else 1)  # the paper's own runs: a median of 5, or one run
        printed = None if c.paper == FAIL else np.median(rng.normal(value, sd[key], draws), -1)
        found_p = tests(c.paper, errors[key], c.dataset, TEST_IMAGES[c.dataset], printed, key[1])
        cell_statuses[f"{c.table}: {c.row} / {c.column} {c.metric}"] = cell_status(found_p["p_equivalent"],
                                                                                   found_p["p_different"])
    return pd.DataFrame(claim_statuses), pd.DataFrame(cell_statuses)


def rates(statuses: pd.DataFrame, names) -> pd.DataFrame:
    """Per column, the share of studies with each status in `names`."""
    return pd.DataFrame({s: (statuses == s).mean() for s in names})


def shares(right: pd.DataFrame, null: pd.DataFrame) -> pd.DataFrame:
    """Per claim: reproduced / inconclusive / contradicted when the paper is right, and reproduced /
    contradicted with no effect (NaN: a training claim, not simulated when the paper is right)."""
    found = rates(right, CLAIM_STATUSES).add_prefix("paper right: ").reindex(null.columns)
    return found.join(rates(null, ["reproduced", "contradicted"]).add_prefix("no effect: "))


def claim_table(studies: int, scale: float, seed: int = 0) -> pd.DataFrame:
    """`shares` of `studies` simulated studies a scenario."""
    return shares(simulate(studies, scale, "paper right", seed)[0], simulate(studies, scale, "no effect", seed)[0])


def table(shares: pd.DataFrame) -> str:
    """A Markdown table of shares, as the README shows them."""
    lines = ["| claim | " + " | ".join(shares.columns) + " |", "|---" * (len(shares.columns) + 1) + "|"]
    return "\n".join(lines + [f"| {name} | " + " | ".join("—" if v != v else f"{v:.1%}" for v in row) + " |"
                               for name, row in zip(shares.index, shares.to_numpy())])


def add_arguments(parser):
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per scenario (default 1000)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="seed noise as a multiple of each data set's seed sd (default 1; 1.5: the sensitivity line)")
    parser.add_argument("--seed", type=int, default=0)


def run(args):
    if args.studies < 1 or args.scale <= 0:
        raise UserError(f"--studies must be at least 1 and --scale above 0 (got {args.studies}, {args.scale})")
    print(f"{args.studies} studies a scenario, seed noise {args.scale:g} × "
          + ", ".join(f"{d} {v:g}" for d, v in SEED_SD.items()) + " points\n")
    right, cells = simulate(args.studies, args.scale, "paper right", args.seed)
    print(table(shares(right, simulate(args.studies, args.scale, "no effect", args.seed)[0])))
    cell_shares = rates(cells, CELL_STATUSES)
    imagenet = cell_shares.index.str.startswith(("Table 5", "Section 5"))
    for name, part in (("CIFAR", cell_shares[~imagenet]), ("ImageNet", cell_shares[imagenet])):
        print(f"\ncells, paper right, {name} ({len(part)}): reproduced {part.reproduced.min():.1%}–"
              f"{part.reproduced.max():.1%} (median {part.reproduced.median():.1%}), "
              f"different at most {part.different.max():.1%}")
