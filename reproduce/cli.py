"""`python -m reproduce <command>`: one subcommand per job; bad input ends in one line on stderr, exit 2."""
import argparse
import importlib
import json
import sys
import typing

from .errors import UserError
from .models import ModelSpec

# name: (module with add_arguments(parser) and run(args), one-line help). Modules are imported only
# for the command that runs, so quick stages don't pay for torch.
COMMANDS = {
    "validate": ("reproduce.config.validate", "check params.yaml and write each experiment's resolved config"),
    "download": ("reproduce.data.download", "download, verify and convert CIFAR-10/100 (smoke: a stand-in)"),
    "train": ("reproduce.training.train", "train one run: one experiment, one seed"),
    "aggregate": ("reproduce.results.aggregate", "collect every run into reports/results.csv beside the paper's numbers"),
    "power": ("reproduce.results.power", "how often each verdict comes out in simulated studies (the README's error rates)"),
    "report": ("reproduce.report.render", "execute notebooks/report.ipynb and render reports/report.html (offline)"),
    "evaluate": ("reproduce.weights.evaluate", "a finished run's weights on the test set again, beside its recorded errors"),
    "artifacts": ("reproduce.weights.artifacts", "write dvc.yaml's `artifacts:` (each experiment's runs) from params.yaml"),
    "describe": ("reproduce.cli", "parameter count and multiply-adds of one network"),
    "plan": ("reproduce.cost.plan", "every run of the current params, its cost and the time it would take"),
    "bench": ("reproduce.cost.bench", "the default training path against common public CIFAR code, side by side"),
    "gpu-check": ("reproduce.cost.gpucheck", "on a CUDA machine: GPU-only tests, GPU speed, two GPUs against one"),
    "launch": ("reproduce.launch.launch", "every unfinished run a job (this machine's GPUs or Slurm), then one dvc repro"),
}


def add_arguments(parser):
    """`describe`: an experiment of params.yaml, or --key value for every model-spec key (pydantic checks
    and converts the values)."""
    parser.add_argument("--experiment", help="an experiment of params.yaml: its network, recipe and protocol")
    parser.add_argument("--params", default="params.yaml", help="params file for --experiment (default: params.yaml)")
    for name, field in ModelSpec.model_fields.items():
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        choices = [a for arg in typing.get_args(field.annotation) for a in typing.get_args(arg) or [arg]]
        shown = " | ".join(c for c in choices if isinstance(c, str)) or (field.description or "")
        default = "required" if field.is_required() else f"default: {field.default}"
        parser.add_argument(*flags, dest=name, metavar="VALUE", help=f"{shown} ({default})".strip())
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args):
    from .models import describe

    spec = {k: getattr(args, k) for k in ModelSpec.model_fields if getattr(args, k, None) is not None}
    if args.experiment:
        info = experiment_info(args.params, args.experiment, spec)
    else:
        info = describe(**spec)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        print(f"{key:>24}  {shown}")


def experiment_info(params_path, experiment, spec) -> dict:
    """What `describe --experiment` shows: the network as its run builds it, with its recipe and protocol."""
    from .config import load_params, run_config
    from .models import describe
    from .training.schedule import epoch_batches, schedule

    if spec:
        raise UserError(f"--experiment takes its network from params.yaml; drop --{', --'.join(spec)}")
    cfg = run_config(load_params(params_path), experiment)
    p = cfg.protocol
    images = 1_281_167 if cfg.model["dataset"] == "imagenet" else 50_000
    iterations = schedule(p, epoch_batches(images, p["batch_size"], p["batches"]))[0] if cfg.profile == "paper" else None
    return {"experiment": experiment, "recipe": cfg.recipe, **describe(**cfg.model),
            **{k: p[k] for k in ("batch_size", "bn_batch", "sgd", "batches", "bn_stats", "bn_stats_images") if k in p},
            **({"iterations": iterations} if iterations else {}), "precision": cfg.precision}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="reproduce", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    for name, (module, help) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(module=module)
        if argv[:1] == [name]:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    try:
        importlib.import_module(args.module).run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
