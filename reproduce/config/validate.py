"""Stage `validate`: check every key of params.yaml, then write each experiment's resolved config."""
from pathlib import Path

from ..files import write_json
from .resolve import not_run_reason, run_config
from .schema import Params, load_params


def write_configs(params: Params, folder: Path):
    """One resolved config per experiment, with the seeds its stage records and those it trains: a
    training stage depends on its own file only, so editing one experiment reruns its runs and nothing
    else."""
    folder = Path(folder)
    names = params.all_experiments()
    for name in names:
        cfg, seeds = run_config(params, name), params.seeds_of(name)
        trained = [seed for seed in seeds if not not_run_reason(params, cfg, seed)]
        write_json(folder / f"{name}.json", {**cfg.model_dump(), "seeds": seeds, "trained_seeds": trained})
    for stale in folder.glob("*.json"):
        if stale.stem not in names:
            stale.unlink()


def add_arguments(parser):
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--out", default="runs/_configs", help="where the resolved configs go")


def run(args):
    params = load_params(args.params)
    write_configs(params, args.out)
    runs = sum(len(params.seeds_of(name)) for name in params.all_experiments())
    print(f"{args.params}: valid; profile {params.profile}, {len(params.all_experiments())} experiments, "
          f"{runs} runs" + (" (SMOKE: tiny networks on a stand-in dataset)" if params.profile == "smoke" else ""))
