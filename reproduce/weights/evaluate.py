"""`evaluate`: a finished run's weights on its dataset's test set again, beside the errors it recorded.

    python -m reproduce evaluate --run runs/r110_original/seed0
    python -m reproduce evaluate --weights downloaded/model.pt --out my-check.json

It redoes the run's final evaluation: the network of the config stored in model.pt, the test set as
the run's data source builds it (the protocol's eval batch size, the run's precision), in the memory
format the run recorded in metrics.json, on the kind of device it trained on, with each of the BN
statistics the run recorded (moving averages and after-training averages). On a CPU the errors must
equal the recorded ones bit for bit; on a GPU within two test images' worth (its kernels may round
otherwise from run to run). Exit status 1 when an error differs.
"""
import sys
from pathlib import Path

from ..errors import UserError
from ..files import load_json, sha256, write_json


def add_arguments(parser):
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="a finished run's folder: runs/EXPERIMENT/seedSEED")
    which.add_argument("--weights", help="a model.pt written by a run (its metrics.json, if beside it, is compared)")
    parser.add_argument("--out", help="where the errors go as JSON (default: reports/evaluations/EXPERIMENT-seedSEED.json)")


def run(args):
    weights = Path(args.weights) if args.weights else run_weights(Path(args.run))
    recorded_path = weights.parent / "metrics.json"
    recorded = load_json(recorded_path) if recorded_path.exists() else {}
    from .load import load_weights  # torch starts here

    state = load_weights(weights)
    cfg = config_of(state, weights)
    result = evaluate_weights(cfg, state, recorded)
    out = Path(args.out or f"reports/evaluations/{cfg.experiment}-seed{state['seed']}.json")
    digest = sha256(weights)
    tolerance = result["tolerance"]
    same = {key: key in recorded and abs(recorded[key] - value) <= tolerance for key, value in result["errors"].items()}
    print(f"{weights}: {cfg.experiment} seed {state['seed']} on {result['device']}"
          + (f" (equal within {tolerance:.3f} points)" if tolerance else " (equal: bit for bit)")
          + ("" if recorded else " (no metrics.json beside it: nothing to compare)"))
    for key, value in result["errors"].items():
        print(f"  {key:>20}  now {value:.4f}%  recorded " + (f"{recorded[key]:.4f}%" if key in recorded else "-")
              + ("  equal" if same[key] else "  DIFFERENT" if key in recorded else ""))
    if "weights_sha256" in recorded:
        print(f"  weights sha256 {'matches' if digest == recorded['weights_sha256'] else 'DIFFERS from'} metrics.json")
    write_json(out, {**result, "experiment": cfg.experiment, "seed": state["seed"], "weights": str(weights),
                     "weights_sha256": digest, "recorded": {k: recorded.get(k) for k in result["errors"]},
                     "equal": bool(recorded) and all(same.values())})
    print(f"wrote {out}")
    if recorded and not all(same.values()):
        sys.exit(1)


def run_weights(folder: Path) -> Path:
    """model.pt of the finished run in `folder`; what the folder is instead, if it is not one."""
    expected = "a finished run's folder, runs/EXPERIMENT/seedSEED (metrics.json and model.pt)"
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; expected {expected}")
    if not (folder / "metrics.json").exists():
        raise UserError(f"{folder} has no metrics.json: not a finished run (still training, or never "
                        f"trained); expected {expected}")
    metrics = load_json(folder / "metrics.json")
    if metrics.get("status") != "finished":
        why = f": {metrics['reason']}" if metrics.get("reason") else ""
        raise UserError(f"{folder} is a run with status '{metrics.get('status')}'{why}; expected {expected}")
    if not (folder / "model.pt").exists():
        raise UserError(f"{folder} has no model.pt; expected {expected}")
    return folder / "model.pt"


def config_of(state: dict, weights: Path):
    from pydantic import ValidationError

    from ..config import RunConfig

    try:
        return RunConfig(**state["config"])
    except (ValidationError, TypeError) as e:
        raise UserError(f"{weights}: its config is not a run's ({type(e).__name__}); expected a model.pt "
                        "written by `python -m reproduce train`") from None


def evaluate_weights(cfg, state: dict, recorded: dict) -> dict:
    """{"errors": the test errors of `state`'s network as metrics.json names them, with each BN statistics
    it holds (moving averages, after-training averages), "device": ..., "tolerance": in points}."""
    from ..config import Speed
    from ..data.sources import make_source
    from ..training import final, loop, speed as knobs

    # The recorded kind of device where this machine has one (a GPU's kernels round otherwise than a CPU's).
    device, _, _ = knobs.setup_device(Speed(device="cpu" if recorded.get("device", "cpu") == "cpu" else "auto",
                                            precision=cfg.precision))
    # A run from before metrics.json recorded its memory format had speed.channels_last's default.
    layout = {"channels_last": True, "contiguous": False}.get(recorded.get("memory_format"), "auto")
    fmt = knobs.memory_format(layout, device)
    model = loop.run_network(cfg.model, cfg.protocol, cfg.precision, device, fmt)
    model.load_state_dict(state["model"])
    source = make_source(cfg, state["seed"], device, 0, 1, fmt, knobs.images_dtype(cfg.precision))
    autocast = knobs.autocast(cfg.precision, device)
    if "bn_buffers" in state:  # both statistics, each loaded in turn
        found = {}
        for variant, buffers in state["bn_buffers"].items():
            model.load_state_dict(buffers, strict=False)
            found[variant] = final.evaluate(model, source, autocast)
        errors = final.recorded_errors(found, state["bn_stats"])
    else:  # a run from before both were recorded
        errors = final.metric_names(final.evaluate(model, source, autocast))
    import torch

    gpu = device.type == "cuda"
    # A CPU computes the same bits again; a GPU's kernels may round otherwise: two test images' worth.
    return {"errors": errors, "device": torch.cuda.get_device_name(device) if gpu else "cpu",
            "tolerance": 200.0 / source.test_images if gpu else 0.0}
