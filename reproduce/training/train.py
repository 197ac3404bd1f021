"""Stage: train one experiment of params.yaml, every seed, into runs/EXPERIMENT/seedSEED.

    python -m reproduce train --experiment r110_original              # every seed of params.yaml
    python -m reproduce train --experiment r110_original --seed 3     # one seed
    torchrun --nproc-per-node 8 -m reproduce train --experiment in_r200_full_preact   # DDP

Outputs, one folder each so that DVC can track them: runs/EXPERIMENT/seedSEED/ (metrics.json and
model.pt), curves/EXPERIMENT/seedSEED/ (DVCLive curves) and metrics/EXPERIMENT.json (every seed's
final errors, for `dvc exp show`). The last is written when the command covers every seed, as the
DVC stage does, or when --metrics names it: `--seed K` alone writes only its run's files, so runs of
one experiment trained side by side never overwrite each other's. A seed that is not to be trained (beyond the smoke profile's, or
ImageNet while data.imagenet.root is unset) is recorded as `not_run` with the reason, without torch.

Each run's last state stays in checkpoints/ after it finishes: DVC empties a stage's outputs before
running it again, and a killed stage, or one rerun because `seeds` grew, then takes its finished runs
from there instead of training them again.
"""
import statistics
import sys
import tempfile
from pathlib import Path

from ..config import load_params, not_run_reason, run_config
from ..errors import UserError
from ..files import write_json


def add_arguments(parser):
    parser.add_argument("--experiment", required=True, help="a name under `experiments:` or `custom:` in params.yaml")
    parser.add_argument("--seed", type=int, action="append",
                        help="train this seed only (repeatable; default: every seed of params.yaml)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--out", help="the experiment's run folders OUT/seedSEED (default: runs/EXPERIMENT)")
    parser.add_argument("--curves", help="DVCLive curves CURVES/seedSEED (default: curves/EXPERIMENT)")
    parser.add_argument("--metrics", help="every seed's final errors (default: metrics/EXPERIMENT.json, written "
                                          "when every seed is trained)")
    parser.add_argument("--checkpoint-dir", default="checkpoints",
                        help="where each run's resumable state is kept (default: checkpoints)")


def run(args):
    params = load_params(args.params)
    cfg = run_config(params, args.experiment)
    out = Path(args.out or f"runs/{args.experiment}")
    curves = Path(args.curves or f"curves/{args.experiment}")
    seeds = args.seed or params.seeds_of(args.experiment)
    results = {}
    for seed in seeds:
        run_dir, curve_dir = out / f"seed{seed}", curves / f"seed{seed}"
        for folder in (run_dir, curve_dir):
            writable(folder)
        reason = not_run_reason(params, cfg, seed)
        if reason:
            results[seed] = {"status": "not_run", "reason": reason, "experiment": cfg.experiment, "seed": seed,
                             "profile": cfg.profile, "recipe": cfg.recipe, "digest": cfg.digest(seed)}
            write_json(run_dir / "metrics.json", results[seed])
            print(f"{run_dir}: not run ({reason})")
            continue
        from .loop import train  # torch starts here, for runs that train

        results[seed] = train(cfg, seed, params.speed, run_dir, Path(args.checkpoint_dir), curve_dir)
    if "torch" in sys.modules:  # a run trained: leave its process group (torchrun's several processes)
        from .speed import end_process_group

        end_process_group()
    every_seed = set(seeds) == set(params.seeds_of(args.experiment))
    if results and all(results.values()) and (every_seed or args.metrics):  # {} on a DDP run's other processes
        write_json(Path(args.metrics or f"metrics/{args.experiment}.json"), summary(results))


def summary(results: dict) -> dict:
    """What `dvc exp show` shows of an experiment: each seed's status and final errors, and their median."""
    shown = {f"seed{seed}": {k: v for k, v in m.items() if k == "status" or "error" in k or "loss" in k}
             for seed, m in results.items()}
    errors = {}
    for m in results.values():
        for key, value in m.items():
            if key.startswith("test_") and "error" in key and m["status"] == "finished":
                errors.setdefault(key, []).append(value)
    return {**shown, "median": {key: statistics.median(values) for key, values in errors.items()}}


def writable(folder: Path):
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # a name of its own: a DDP run's processes probe at once
            pass
    except OSError as e:
        raise UserError(f"cannot write to {folder}: {e.strerror}") from None
