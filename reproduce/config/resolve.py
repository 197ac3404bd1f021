"""One run's config, resolved from params.yaml: the network, the recipe's protocol, the data, the precision."""
import hashlib
import json
from typing import Optional

from ..errors import UserError, did_you_mean
from ..models.spec import ModelSpec
from .schema import Params, Strict
from .smoke import smoke


class RunConfig(Strict):
    """Everything that determines a run's result but its seed; its hash guards checkpoints against reuse."""

    experiment: str
    profile: str
    recipe: str
    model: dict
    protocol: dict
    data: dict
    precision: str  # the one speed knob that changes the arithmetic

    def digest(self, seed: int) -> str:
        text = json.dumps({**self.model_dump(), "seed": seed}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_config(params: Params, experiment: str) -> RunConfig:
    experiments = params.all_experiments()
    if experiment not in experiments:
        raise UserError(f"unknown experiment '{experiment}'{did_you_mean(experiment, experiments)}; "
                        f"defined: {', '.join(experiments)}")
    exp = experiments[experiment]
    imagenet = exp.dataset == "imagenet"
    model = exp.model_dump(include=set(ModelSpec.model_fields), exclude_none=True)
    model.pop("activation_checkpointing", None)  # a memory knob, not part of what the network computes
    if exp.activation_checkpointing:
        model["activation_checkpointing"] = True
    recipe = params.recipes[exp.recipe]
    if exp.block == "bottleneck" and not exp.stride_on:  # CIFAR: resnet-pre-act.lua's 1x1 in both recipes
        model["stride_on"] = recipe.imagenet_stride if imagenet else "1x1"
    if imagenet and not exp.pool1:
        model["pool1"] = recipe.imagenet_pool1
    protocol = params.protocol(exp)
    data = {"augmentation": exp.augmentation, "root": params.data.imagenet.root} if imagenet \
        else {"path": f"data/{exp.dataset}.pt"}
    if params.profile == "smoke":
        smoke(params.smoke, model, protocol, data, imagenet, exp.block)
    return RunConfig(experiment=experiment, profile=params.profile, recipe=exp.recipe, model=model,
                     protocol=protocol, data=data, precision=params.speed.precision)


def not_run_reason(params: Params, cfg: RunConfig, seed: int) -> Optional[str]:
    """Why a run of the pipeline's matrix is recorded without training, if it is."""
    if params.profile == "smoke" and seed not in params.smoke.seeds:
        return f"the smoke profile trains seeds {params.smoke.seeds} only"
    if cfg.model["dataset"] == "imagenet" and not params.data.imagenet.root:
        return "not run: set data.imagenet.root"
    return None
