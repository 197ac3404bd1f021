"""params.yaml: its schema (checked before anything trains) and the resolution of one run's config."""
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal, Optional

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, field_validator,
                      model_validator, AfterValidator)

from .errors import UserError, did_you_mean, explain
from .models.spec import CIFAR_LAYERS, ModelSpec


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Optim(Strict):
    """SGD as in the paper's appendix; `nesterov` and `weight_decay_bn` from fb.resnet.torch `train.lua`."""

    batch_size: PositiveInt
    lr: PositiveFloat
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(1e-4, ge=0)
    weight_decay_bn: bool = True
    eval_batch_size: PositiveInt = 1000
    log_every: PositiveInt = 100  # iterations between training-loss/error points (one host sync each)
    checkpoint_every: PositiveInt = 1000  # a multiple of log_every

    @model_validator(mode="after")
    def _aligned(self):
        if self.checkpoint_every % self.log_every:
            raise ValueError(f"checkpoint_every ({self.checkpoint_every}) must be a multiple of "
                             f"log_every ({self.log_every})")
        return self


class CifarProtocol(Optim):
    iterations: PositiveInt = 64000
    milestones: list[PositiveInt] = [32000, 48000]  # lr ÷ 10 at each
    warmup_lr: float = Field(0.01, ge=0)  # paper appendix: 0.01 for the first 400 iterations
    warmup_iterations: int = Field(400, ge=0)
    eval_every: PositiveInt = 2000


class ImageNetProtocol(Optim):
    epochs: PositiveInt = 90  # fb.resnet.torch `opts.lua` default for ImageNet
    milestones: list[PositiveInt] = [30, 60]  # epochs
    workers: int = Field(8, ge=0)
    eval_every: PositiveInt = 5000


class Speed(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 autocast; fp32 for strict fidelity
    channels_last: bool = True
    # true: torch.compile's default mode; "reduce-overhead" adds CUDA graphs (GPU; a CPU ignores them)
    compile: Literal[False, True, "reduce-overhead", "max-autotune"] = False


class Experiment(ModelSpec):
    """A network (ModelSpec keys) plus what one experiment changes about its dataset's protocol."""

    protocol: dict = {}  # e.g. Table 4's ResNet-1001†: batch 64 for 200 epochs
    augmentation: Literal["scale", "scale_aspect"] = "scale"  # ImageNet only (Table 5)


class Smoke(Strict):
    """The `smoke` profile: the same DAG, small enough to finish in minutes on a 2-core CPU."""

    data: Literal["digits", "cifar"] = "digits"  # digits: scikit-learn's, standing in for CIFAR (no download)
    iterations: PositiveInt = 30
    depth: dict[str, PositiveInt] = {"basic": 8, "bottleneck": 11, "single": 5}
    imagenet_depth: Literal[50, 101, 152, 200] = 50
    batch_size: PositiveInt = 32
    train_images: PositiveInt = 512
    test_images: PositiveInt = 256
    imagenet_size: PositiveInt = 64  # ImageNet crops in smoke runs (the paper: 224 train, 320 test)
    seeds: list[int] = [0]


class Dataset(Strict):
    md5: str


class ImageNetData(Strict):
    root: Optional[str] = None  # ILSVRC2012 train/ and val/ in ImageFolder layout; unset: Table 5 not run


class Data(Strict):
    raw: str = "data/raw"
    cifar10: Dataset
    cifar100: Dataset
    imagenet: ImageNetData = ImageNetData()


def _name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.]*", name):
        raise ValueError(f"experiment name '{name}': use letters, digits, '_' and '.' only "
                         "(it names a DVC stage, train@NAME, and directories)")
    return name


ExperimentName = Annotated[str, AfterValidator(_name)]


class Params(Strict):
    profile: Literal["paper", "smoke"] = "paper"
    seeds: list[int] = Field(min_length=1)
    data: Data
    cifar: CifarProtocol
    imagenet: ImageNetProtocol
    speed: Speed = Speed()
    smoke: Smoke = Smoke()
    experiments: dict[ExperimentName, Experiment]
    custom: dict[ExperimentName, Experiment] = {}

    @field_validator("seeds")
    @classmethod
    def _unique(cls, seeds):
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct (got {seeds})")
        return seeds

    @model_validator(mode="after")
    def _protocol_overrides(self):
        for section in ("experiments", "custom"):
            for name, exp in getattr(self, section).items():
                base = self.imagenet if exp.dataset == "imagenet" else self.cifar
                try:
                    type(base)(**{**base.model_dump(), **exp.protocol})
                except ValidationError as e:
                    raise ValueError(f"{section}.{name}.protocol: " + str(explain(e, type(base)))) from None
        return self

    def all_experiments(self) -> dict[str, Experiment]:
        clash = set(self.experiments) & set(self.custom)
        if clash:
            raise UserError(f"custom experiment names clash with the study's: {', '.join(sorted(clash))}")
        return {**self.experiments, **self.custom}

    def run_seeds(self) -> list[int]:
        return self.smoke.seeds if self.profile == "smoke" else self.seeds


def load_params(path="params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys to values at the top level")
    try:
        return Params(**raw)
    except ValidationError as e:
        raise explain(e, Params, str(path)) from None


class RunConfig(Strict):
    """Everything that determines a run's result but its seed; its hash guards checkpoints against reuse."""

    experiment: str
    profile: str
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
    model = exp.model_dump(include=set(ModelSpec.model_fields), exclude_none=True)
    model.pop("activation_checkpointing", None)  # a memory knob, not part of what the network computes
    if exp.activation_checkpointing:
        model["activation_checkpointing"] = True
    imagenet = exp.dataset == "imagenet"
    protocol = {**(params.imagenet if imagenet else params.cifar).model_dump(), **exp.protocol}
    data = {"augmentation": exp.augmentation, "root": params.data.imagenet.root} if imagenet \
        else {"path": f"data/{exp.dataset}.pt"}
    if params.profile == "smoke":
        s = params.smoke
        model["depth"] = s.imagenet_depth if imagenet else s.depth[exp.block]
        protocol.update(batch_size=min(protocol["batch_size"], s.batch_size), log_every=5,
                        checkpoint_every=10, eval_every=s.iterations, eval_batch_size=s.test_images)
        if imagenet:
            protocol.update(epochs=2, milestones=[1], workers=0)
            data.update(size=s.imagenet_size)
        else:
            protocol.update(iterations=s.iterations, milestones=[s.iterations // 2], warmup_iterations=3)
        data.update(train_images=s.train_images, test_images=s.test_images)
    return RunConfig(experiment=experiment, profile=params.profile, model=model, protocol=protocol,
                     data=data, precision=params.speed.precision)


def not_run_reason(params: Params, cfg: RunConfig, seed: int) -> Optional[str]:
    """Why a run of the pipeline's matrix is recorded without training, if it is."""
    if params.profile == "smoke" and seed not in params.smoke.seeds:
        return f"the smoke profile trains seeds {params.smoke.seeds} only"
    if cfg.model["dataset"] == "imagenet" and not params.data.imagenet.root:
        return "not run: set data.imagenet.root"
    return None


def write_configs(params: Params, folder: Path):
    """One resolved config per experiment, with the seeds its stage records and those it trains: a
    training stage depends on its own file only, so editing one experiment reruns its runs and nothing
    else."""
    from .files import write_json

    folder = Path(folder)
    names = params.all_experiments()
    for name in names:
        cfg = run_config(params, name)
        trained = [seed for seed in params.seeds if not not_run_reason(params, cfg, seed)]
        write_json(folder / f"{name}.json", {**cfg.model_dump(), "seeds": params.seeds, "trained_seeds": trained})
    for stale in folder.glob("*.json"):
        if stale.stem not in names:
            stale.unlink()


def add_arguments(parser):
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--out", default="runs/_configs", help="where the resolved configs go")


def run(args):
    """Stage `validate`: check every key of params.yaml, then write each experiment's resolved config."""
    params = load_params(args.params)
    write_configs(params, args.out)
    runs = len(params.all_experiments()) * len(params.seeds)
    print(f"{args.params}: valid; profile {params.profile}, {len(params.all_experiments())} experiments, "
          f"{runs} runs" + (" (SMOKE: tiny networks on a stand-in dataset)" if params.profile == "smoke" else ""))
