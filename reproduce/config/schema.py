"""params.yaml's schema: every key, its type and what is allowed, checked before anything trains."""
import re
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError,
                      field_validator, model_validator)

from ..errors import UserError, did_you_mean, explain
from ..models.spec import ModelSpec
from .layout import check_imagenet_root


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Optim(Strict):
    """SGD as in the paper's appendix; what the two recipes do differently comes from `Recipe`."""

    batch_size: PositiveInt
    # Training BN normalises over groups of this many images of the batch, as over each GPU's share in
    # the paper ("128 on 2 GPUs (64 each)", "256 on 8 GPUs (32 each)"): models/batchnorm.py.
    bn_batch: PositiveInt
    lr: PositiveFloat
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    weight_decay_bn: bool = True  # BN's gamma/beta decay too (fb.resnet.torch decays every parameter)
    # Table 1's gates: b_g's initial value is the variable studied; decay would pull it toward 0
    # (by ~e^-3.2 over 32k iterations at lr 0.1), so b_g is not decayed (the gate's conv weights are).
    weight_decay_gate_bias: bool = False
    eval_batch_size: PositiveInt = 1000
    # BN's after-training statistics (`bn_stats: precise`, training/loop.py): averaged over this many
    # training images, as they are augmented for training, in the BN groups training uses.
    bn_stats_images: PositiveInt = 50000
    log_every: PositiveInt = 100  # iterations between training-loss/error points (one host sync each)
    eval_every: PositiveInt  # a multiple of log_every
    checkpoint_every: PositiveInt = 1000  # a multiple of log_every

    @model_validator(mode="after")
    def _aligned(self):
        for key in ("eval_every", "checkpoint_every"):  # both are acted on at log points only
            if getattr(self, key) % self.log_every:
                raise ValueError(f"{key} ({getattr(self, key)}) must be a multiple of log_every ({self.log_every})")
        if self.batch_size % self.bn_batch:
            raise ValueError(f"bn_batch ({self.bn_batch}) must divide batch_size ({self.batch_size}): BN groups "
                             "are equal shares of the batch, as the paper's GPUs had")
        return self


class CifarProtocol(Optim):
    iterations: PositiveInt = 64000
    # When set, the run lasts `epochs` epochs of ceil(training images / batch_size) batches (fb.resnet.torch
    # dataloader.lua) instead of `iterations`, and `milestones` count epochs (train.lua): `schedule`.
    epochs: Optional[PositiveInt] = None
    milestones: list[PositiveInt] = [32000, 48000]  # lr ÷ 10 once this many iterations (or epochs) are done
    warmup_lr: float = Field(0.01, ge=0)  # paper appendix: 0.01 for the first 400 iterations
    warmup_iterations: int = Field(400, ge=0)
    eval_every: PositiveInt = 2000


class ImageNetProtocol(Optim):
    epochs: PositiveInt = 90  # fb.resnet.torch `opts.lua` default for ImageNet
    milestones: list[PositiveInt] = [30, 60]  # epochs
    workers: Union[Literal["auto"], Annotated[int, Field(ge=0)]] = "auto"  # DataLoader processes per training process
    eval_every: PositiveInt = 5000


class Recipe(Strict):
    """What the two implementations behind the paper's numbers do differently (params.yaml `recipes:`)."""

    sgd: Literal["caffe", "torch", "nesterov"]  # the momentum update's form (training/optim.py)
    batches: Literal["continuous", "per_epoch"]  # across epoch ends (Caffe) or one epoch at a time (data/order.py)
    imagenet_stride: Literal["1x1", "3x3"]  # stride_on of ImageNet bottlenecks
    imagenet_pool1: Literal["caffe", "torch"]  # ImageNet's stem max-pool (models/spec.py `pool1`)
    # The test error reported: BN's moving averages, or statistics averaged over training images after
    # training (both are recorded for every run)
    bn_stats: Literal["moving", "precise"]


class Speed(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # fp32 as the paper trained (a GPU's TF32 convolutions off); tf32 and bf16 autocast are opt-in speed
    # knobs; fp64 checks that two hardware layouts compute the same (tests)
    precision: Literal["fp32", "tf32", "bf16", "fp64"] = "fp32"
    channels_last: Union[Literal["auto"], bool] = "auto"
    # true: torch.compile's default mode; "reduce-overhead" adds CUDA graphs (GPU; a CPU ignores them)
    compile: Literal["auto", False, True, "reduce-overhead", "max-autotune"] = "auto"
    threads: Union[Literal["auto"], PositiveInt] = "auto"  # torch's intra-op threads
    # GPU: cuDNN's deterministic algorithms, no autotuning, deterministic torch ops: a resumed run ends
    # bit for bit as an uninterrupted one (slower); a CPU is deterministic anyway
    deterministic: bool = False
    collective_timeout_min: PositiveInt = 30  # a process waits this long for the others (NCCL's default: 10)


class Slurm(Strict):
    """`launch --engine slurm`: what each job asks Slurm for (sbatch's options of the same names)."""

    partition: Optional[str] = Field(None, description="partition (default: the cluster's)")
    account: Optional[str] = None
    qos: Optional[str] = None
    time: PositiveInt = Field(1440, description="minutes per job; at the limit it is requeued and resumes")
    cpus_per_task: PositiveInt = Field(8, description="CPUs per process (one process per GPU)")
    mem_gb: Optional[PositiveFloat] = Field(None, description="memory per node (default: the partition's)")
    constraint: Optional[str] = Field(None, description="node features, e.g. h100")
    signal_delay_s: PositiveInt = Field(120, description="USR2 this long before the time limit: the job requeues itself")
    max_requeues: Annotated[int, Field(ge=0)] = Field(10, description="requeues after time limits (preemptions: no limit)")
    array_parallelism: PositiveInt = Field(64, description="jobs of one array running at once")

    @model_validator(mode="after")
    def _signal_before_the_limit(self):
        if self.signal_delay_s >= 60 * self.time:
            raise ValueError(f"signal_delay_s ({self.signal_delay_s}) must be shorter than the time limit "
                             f"({self.time} min = {60 * self.time} s)")
        return self


class Launch(Strict):
    """`python -m reproduce launch`: every run a job of its own (not part of any run's config)."""

    engine: Literal["local", "slurm"] = "local"
    cifar_gpus: Annotated[int, Field(ge=0)] = Field(1, description="GPUs (DDP processes) per CIFAR run; 0: CPU")
    imagenet_gpus: Annotated[int, Field(ge=0)] = Field(8, description="GPUs per ImageNet run (the paper: 8); 0: CPU")
    runs_per_gpu: PositiveInt = Field(1, description="CIFAR runs sharing one GPU, a process each")
    slurm: Slurm = Slurm()

    @model_validator(mode="after")
    def _packs_of_one_gpu(self):
        if self.runs_per_gpu > 1 and self.cifar_gpus != 1:
            raise ValueError(f"runs_per_gpu ({self.runs_per_gpu}) shares one GPU among runs: it needs "
                             f"cifar_gpus 1 (got {self.cifar_gpus})")
        return self


class Experiment(ModelSpec):
    """A network (ModelSpec keys), the recipe it is trained with and what it changes about its protocol."""

    recipe: str = "paper"  # a name under `recipes:`
    seeds: Optional[list[int]] = None  # default: the top-level `seeds`
    protocol: dict = {}  # e.g. Table 4's ResNet-1001†: batch 64 for 200 epochs
    augmentation: Literal["scale", "scale_aspect"] = "scale"  # ImageNet only (Table 5)


class Smoke(Strict):
    """The `smoke` profile: the same DAG, small enough to finish in minutes on a 2-core CPU."""

    data: Literal["digits", "cifar"] = "digits"  # digits: scikit-learn's, standing in for CIFAR (no download)
    iterations: PositiveInt = 200
    evaluations: PositiveInt = 5  # test-error points on each run's curves
    depth: dict[str, PositiveInt] = {"basic": 8, "bottleneck": 11, "single": 5}
    imagenet_depth: Literal[50, 101, 152, 200] = 50
    batch_size: PositiveInt = 32
    train_images: PositiveInt = 2000  # at most; the digits have 1,297 training and 500 test images
    test_images: PositiveInt = 500
    imagenet_size: PositiveInt = 64  # ImageNet crops in smoke runs (the paper: 224 train, 320 test)
    seeds: list[int] = [0]


class Dataset(Strict):
    md5: str


class ImageNetData(Strict):
    root: Optional[str] = None  # ILSVRC2012 train/ and val/ in ImageFolder layout; unset: Table 5 not run

    @field_validator("root")
    @classmethod
    def _exists(cls, root):
        if root is not None:
            check_imagenet_root(root)  # the ImageNet stage's own error, before anything trains
        return root


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


def _distinct(seeds):
    if seeds is not None and len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct (got {seeds})")
    return seeds


class FromRecipe(Strict):
    """What a run's protocol takes from its recipe."""

    sgd: Literal["caffe", "torch", "nesterov"]
    batches: Literal["continuous", "per_epoch"]
    bn_stats: Literal["moving", "precise"]


class CifarRun(CifarProtocol, FromRecipe):
    """One CIFAR run's protocol: the `cifar:` section, its recipe's choices and the experiment's own."""


class ImageNetRun(ImageNetProtocol, FromRecipe):
    """One ImageNet run's protocol: the `imagenet:` section, its recipe's choices and the experiment's own."""


class Params(Strict):
    profile: Literal["paper", "smoke"] = "paper"
    seeds: Annotated[list[int], AfterValidator(_distinct)] = Field(min_length=1)
    data: Data
    cifar: CifarProtocol
    imagenet: ImageNetProtocol
    recipes: dict[str, Recipe]
    speed: Speed = Speed()
    smoke: Smoke = Smoke()
    launch: Launch = Launch()
    experiments: dict[ExperimentName, Experiment]
    custom: dict[ExperimentName, Experiment] = {}

    @model_validator(mode="after")
    def _experiments(self):
        for section in ("experiments", "custom"):
            for name, exp in getattr(self, section).items():
                where = f"{section}.{name}"
                if exp.recipe not in self.recipes:
                    raise ValueError(f"{where}.recipe: unknown recipe '{exp.recipe}'"
                                     f"{did_you_mean(exp.recipe, self.recipes)}; defined: {', '.join(self.recipes)}")
                _distinct(exp.seeds)
                resolved = ImageNetRun if exp.dataset == "imagenet" else CifarRun
                try:
                    resolved(**self.protocol(exp))
                except ValidationError as e:
                    raise ValueError(f"{where}.protocol: " + str(explain(e, resolved))) from None
        return self

    def protocol(self, exp: Experiment) -> dict:
        """The dataset's protocol, then what the experiment's recipe sets, then the experiment's own keys."""
        recipe = self.recipes[exp.recipe].model_dump(include=set(FromRecipe.model_fields))
        if exp.dataset == "imagenet":
            return {**self.imagenet.model_dump(), **recipe, **exp.protocol}
        p = {**self.cifar.model_dump(), **recipe, **exp.protocol}
        if p.get("epochs"):  # a schedule in epochs replaces the iterations (CifarProtocol.epochs)
            p.pop("iterations")
        return p

    def all_experiments(self) -> dict[str, Experiment]:
        clash = set(self.experiments) & set(self.custom)
        if clash:
            raise UserError(f"custom experiment names clash with the study's: {', '.join(sorted(clash))}")
        return {**self.experiments, **self.custom}

    def seeds_of(self, name: str) -> list[int]:
        """The seeds an experiment records: its own `seeds`, else the study's."""
        return self.all_experiments()[name].seeds or self.seeds

    def planned_seeds(self, name: str) -> list[int]:
        """The seeds of an experiment this profile trains (the smoke profile: those in `smoke.seeds`)."""
        seeds = self.seeds_of(name)
        return [s for s in seeds if s in self.smoke.seeds] if self.profile == "smoke" else seeds

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
