"""Stage: train one run (one experiment of params.yaml, one seed) into runs/EXPERIMENT/seedSEED.

    python -m reproduce train --experiment r110_original --seed 0
    torchrun --nproc-per-node 8 -m reproduce train --experiment in_r200_full_preact --seed 0   # DDP

A run the pipeline's matrix holds but that is not to be trained (an ImageNet run while
data.imagenet.root is unset, a seed beyond the smoke profile's) is recorded as `not_run` with the
reason, without starting torch.
"""
from pathlib import Path

from .files import write_json
from .config import load_params, not_run_reason, run_config
from .errors import UserError


def add_arguments(parser):
    parser.add_argument("--experiment", required=True, help="a name under `experiments:` or `custom:` in params.yaml")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--out", help="run directory (default: runs/EXPERIMENT/seedSEED)")
    parser.add_argument("--checkpoint-dir", default="checkpoints",
                        help="where resumable state is kept while a run trains (default: checkpoints)")


def run(args):
    params = load_params(args.params)
    cfg = run_config(params, args.experiment)
    out = Path(args.out or f"runs/{args.experiment}/seed{args.seed}")
    writable(out)
    reason = not_run_reason(params, cfg, args.seed)
    if reason:
        for folder in ("weights", "live/plots/metrics"):  # the stage's outputs exist, empty
            (out / folder).mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", {"status": "not_run", "reason": reason, "experiment": cfg.experiment,
                                          "seed": args.seed, "profile": cfg.profile, "digest": cfg.digest(args.seed)})
        print(f"{out}: not run ({reason})")
        return
    from .loop import train  # torch starts here

    train(cfg, args.seed, params.speed, out, Path(args.checkpoint_dir))


def writable(folder: Path):
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to {folder}: {e.strerror}") from None
