"""What `launch` sends: every run of the current params that the pipeline would train and has not
finished, one per (experiment, seed), grouped into jobs by the GPUs each needs."""
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Params, not_run_reason, run_config
from ..config.schema import Launch


@dataclass(frozen=True)
class Run:
    experiment: str
    seed: int
    digest: str  # of the run's resolved config: a job refuses to train a run whose params changed since
    imagenet: bool
    batch_size: int
    bn_batch: int
    data: str | None  # a CIFAR run's data file (data/cifar10.pt), which the download stage writes

    @property
    def name(self) -> str:
        """As the run's checkpoint is named: checkpoints/NAME.pt."""
        return f"{self.experiment}-seed{self.seed}-{self.digest}"

    @property
    def label(self) -> str:
        return f"{self.experiment} seed {self.seed}"

    def out(self, root) -> Path:
        return Path(root) / "runs" / self.experiment / f"seed{self.seed}"

    def curves(self, root) -> Path:
        return Path(root) / "curves" / self.experiment / f"seed{self.seed}"

    def recorded(self, root):
        """The run's metrics.json if it ended (finished or failed) with these params, else None."""
        path = self.out(root) / "metrics.json"
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        ended = metrics.get("digest") == self.digest and metrics.get("status") in ("finished", "failed")
        return metrics if ended else None


@dataclass
class JobSpec:
    """One submitit job: one run on one process per GPU (DDP when more than one), or a pack of runs
    sharing one GPU, one process each (`runs_per_gpu`)."""

    runs: list
    gpus: int  # 0: on the CPU
    pack: bool = False
    tokens: dict = field(default_factory=dict)  # each run's lock token, once taken

    @property
    def tasks(self) -> int:
        return len(self.runs) if self.pack else max(self.gpus, 1)

    @property
    def ddp(self) -> bool:
        return not self.pack and self.gpus > 1

    @property
    def label(self) -> str:
        return ", ".join(r.label for r in self.runs)


def study(params: Params):
    """Every run the pipeline's training stages record, as Run, with why it would not train (or None)."""
    for name in params.all_experiments():
        cfg = run_config(params, name)
        for seed in params.seeds_of(name):
            yield Run(name, seed, cfg.digest(seed), cfg.model["dataset"] == "imagenet", cfg.protocol["batch_size"],
                      cfg.protocol["bn_batch"], cfg.data.get("path")), not_run_reason(params, cfg, seed)


def pending(params: Params, root) -> tuple[list, dict]:
    """The runs to train, and how many of the others are finished, failed or not run."""
    todo, others = [], {"finished": 0, "failed": 0, "not run": 0}
    for run, reason in study(params):
        metrics = None if reason else run.recorded(root)
        if reason or metrics:
            others["not run" if reason else metrics["status"]] += 1
        else:
            todo.append(run)
    return todo, others


def group(runs: list, launch: Launch, gpus_here: bool = True) -> list:
    """Jobs for `runs`: ImageNet runs on `imagenet_gpus` GPUs each, CIFAR runs on `cifar_gpus` each or
    packed `runs_per_gpu` to a GPU; on the CPU (`gpus_here` false, or 0 GPUs asked) one process a run."""
    jobs, packs = [], []
    for run in runs:
        gpus = (launch.imagenet_gpus if run.imagenet else launch.cifar_gpus) if gpus_here else 0
        if gpus == 1 and not run.imagenet and launch.runs_per_gpu > 1:
            if not packs or len(packs[-1].runs) == launch.runs_per_gpu:
                packs.append(JobSpec([], 1, pack=True))
            packs[-1].runs.append(run)
        else:
            jobs.append(JobSpec([run], gpus))
    return packs + jobs
