"""Every run directory as one row of `reports/runs.csv`, and the final errors the verdicts are made of."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Params, run_config

HEADLINE_KEYS = ["test_error", "test_top1_center224", "test_top5_center224", "test_top1_center320",
                 "test_top5_center320"]
# Each with BN's moving averages and with the after-training statistics (training/final.py); the
# headline is the recipe's choice of the two.
METRIC_KEYS = HEADLINE_KEYS + [f"{k}_{v}" for v in ("moving", "precise") for k in HEADLINE_KEYS]
RUN_COLUMNS = ["experiment", "seed", "status", "current", "seeds_planned", "profile", "recipe", "custom", "dataset", "failed_at", "reason",
               "train_loss", "train_error", "train_images", "train_loss_early", "train_error_early", "train_images_early",
               *METRIC_KEYS, "test_images", "wall_s", "processes", "device", "precision",
               "iterations", "params", "memory_format", "weights_sha256", "digest", "command"]


def collect(runs_dir, params: Params) -> pd.DataFrame:
    """One row per run directory `runs_dir/<experiment>/seed<seed>/`. `current` marks runs of the
    present params.yaml (a seed it lists, the same config digest): a run left over from other params or
    another profile is listed but never counted. `seeds_planned`: how many seeds of its experiment the
    profile trains (the smoke profile: `smoke.seeds` only), started or not: fewer results are too few seeds."""
    experiments = params.all_experiments()
    rows = []
    for run in sorted(Path(runs_dir).glob("*/seed*")):
        match = re.fullmatch(r"seed(\d+)", run.name)
        if not (run.is_dir() and match):
            continue
        experiment, seed = run.parent.name, int(match.group(1))
        path = run / "metrics.json"
        metrics = json.loads(path.read_text()) if path.exists() else \
            {"status": "not_run", "reason": "no metrics.json: running or interrupted"}
        listed = experiment in experiments and seed in params.seeds_of(experiment)
        expected = run_config(params, experiment).digest(seed) if listed else None
        # A run still training has no metrics.json (no digest) yet: it counts as one of these params.
        if metrics.get("status") == "failed" and not metrics.get("reason"):
            metrics["reason"] = f"diverged: non-finite training loss at iteration {metrics.get('failed_at')}"
        rows.append({**metrics, "experiment": experiment, "seed": seed,
                     "command": f"python -m reproduce train --experiment {experiment} --seed {seed}",
                     "current": expected is not None and metrics.get("digest", expected) == expected,
                     "seeds_planned": len(params.planned_seeds(experiment)) if experiment in experiments else None,
                     "custom": experiment in params.custom,
                     "dataset": experiments[experiment].dataset if experiment in experiments else None})
    runs = pd.DataFrame(rows)
    extra = sorted(set(runs.columns) - set(RUN_COLUMNS))
    counts = {c: "Int64" for c in ("seed", "seeds_planned", "failed_at", "iterations", "processes", "params")}
    return runs.reindex(columns=RUN_COLUMNS + extra).astype({"current": bool, "custom": bool, **counts})


def seed_errors(runs: pd.DataFrame, experiments, key: str) -> pd.Series:
    """Final error of each current run of `experiments`, indexed by seed; +inf for a diverged run, which
    ranks worse than every finished one (in medians, intervals and rank tests alike). A finished run
    that did not record `key` (an older version, a metric it does not have) is left out: not run."""
    mine = runs[runs.current & runs.experiment.isin(list(experiments)) & runs.status.isin(["finished", "failed"])]
    errors = mine[key].astype(float).where(mine.status == "finished", np.inf)
    kept = errors.notna().to_numpy()
    return pd.Series(errors.to_numpy()[kept], index=mine.seed.to_numpy(dtype=int)[kept], dtype=float)


def evidence(runs: pd.DataFrame, name: str, key: str) -> tuple[pd.Series, int, int]:
    """(errors over seeds, the fewest images one was measured on, seeds planned) of one experiment's
    metric `key`. The images: `test_images` for a test error, `train_images` (`_early`) for a training
    error (the last log window's, or the first eighth's); NaN where the runs did not record it."""
    mine = runs[runs.current & (runs.experiment == name)]
    column = "test_images" if key.startswith("test_") else "train_images" + ("_early" if key.endswith("_early") else "")
    images = mine.loc[mine.status == "finished", column].astype(float) if column in mine else pd.Series(dtype=float)
    planned = mine.seeds_planned.dropna()
    return (seed_errors(runs, [name], key), images.min(skipna=False) if len(images) else np.nan,
            int(planned.max()) if len(planned) else 0)


def compute(runs: pd.DataFrame, names) -> dict:
    """Device-hours (wall time × processes) of the current runs of `names` and the hardware they ran on."""
    mine = runs[runs.current & runs.experiment.isin(names) & runs.status.isin(["finished", "failed"])]
    hours = (mine.wall_s.astype(float) * mine.processes.astype(float)).sum() / 3600
    used = mine.groupby(["device", "processes"]).size()
    return {"compute_hours": hours, "hardware": ", ".join(
        f"{'CPU' if device == 'cpu' else device} ×{int(n)}" for device, n in used.index)}
