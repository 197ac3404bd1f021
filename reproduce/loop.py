"""The training loop: a network, the paper's protocol and a seed in; curves, final errors and weights out.

Resumable: a checkpoint (model, optimizer, iteration, RNG states; the data order is a function of
seed and iteration) is written atomically every `checkpoint_every` iterations, so a killed run
started again ends with exactly the metrics of an uninterrupted one. The last one, at the end of
the run, stays: started again, a finished run writes its outputs from it without training. A run
whose training loss becomes NaN/inf stops, is recorded as `failed` with the iteration, and exits 0.
"""
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from . import checkpoint
from .config import RunConfig, Speed
from .data.sources import make_source
from .errors import UserError
from .files import load_json, write_json
from .logs import Curves
from .models import build_model, describe


def lr_at(it: int, p: dict, milestones) -> float:
    """Paper appendix: 0.1, ÷10 at each milestone; a 0.01 warm-up for the first 400 iterations (CIFAR)."""
    if it < p.get("warmup_iterations", 0):
        return p["warmup_lr"]
    return p["lr"] * 0.1 ** sum(it >= m for m in milestones)


def make_optimizer(model, p: dict):
    """SGD; fb.resnet.torch `train.lua` decays every parameter, BN too (`weight_decay_bn: false` exempts
    BN and biases)."""
    decay = [q for n, q in model.named_parameters() if p["weight_decay_bn"] or q.ndim > 1]
    rest = [q for n, q in model.named_parameters() if not (p["weight_decay_bn"] or q.ndim > 1)]
    groups = [{"params": decay, "weight_decay": p["weight_decay"]}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=p["lr"], momentum=p["momentum"], nesterov=p["nesterov"])


def compiled(net, setting):
    """speed.compile: False (eager), True (torch.compile's default mode) or the name of a mode."""
    return torch.compile(net, mode=None if setting is True else setting) if setting else net


def setup_device(speed: Speed):
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    want = speed.device
    if want == "cuda" and not torch.cuda.is_available():
        raise UserError("speed.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")  # BN stays per process, as per GPU in the paper
    return device, rank, world


def train(cfg: RunConfig, seed: int, speed: Speed, out: Path, checkpoint_dir: Path = Path("checkpoints"),
          curves_dir: Path | None = None) -> dict:
    """One run: metrics.json and model.pt into `out`, DVCLive curves into `curves_dir` (default out/curves)."""
    out, digest = Path(out), cfg.digest(seed)
    done = out / "metrics.json"
    if done.exists() and load_json(done).get("digest") == digest:
        print(f"{out}: finished already; nothing to do")
        return load_json(done)
    device, rank, world = setup_device(speed)
    p = cfg.protocol
    torch.manual_seed(seed)
    fmt = torch.channels_last if speed.channels_last else torch.contiguous_format
    model = build_model(**cfg.model).to(device, memory_format=fmt)
    opt = make_optimizer(model, p)
    source = make_source(cfg, seed, device, rank, world, fmt)
    ckpt_path = checkpoint_dir / f"{cfg.experiment}-seed{seed}-{digest}.pt"
    state, start, elapsed, last, history = checkpoint.load(ckpt_path, digest), 0, 0.0, {}, []
    status, failed_at = "finished", None
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"])
        start, elapsed, last, history = state["iteration"], state["elapsed"], state["last"], state["curves"]
        status, failed_at = state.get("status", status), state.get("failed_at")
        if status == "failed":
            start = source.iterations  # recorded as failed: never trained again
        if rank == 0:
            print(f"{out}: resuming from iteration {start} ({ckpt_path})")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = compiled(net, speed.compile)
    autocast = torch.autocast(device.type, torch.bfloat16) if cfg.precision == "bf16" else nullcontext()
    curves = Curves(Path(curves_dir or out / "curves"), history) if rank == 0 else None
    total, every = source.iterations, p["log_every"]
    losses = torch.zeros(every, device=device)  # per-iteration values stay on the device until a log point
    wrong = torch.zeros(every, device=device)
    bar = tqdm(total=total, initial=start, desc=f"{cfg.experiment} seed {seed}", disable=rank != 0,
               dynamic_ncols=True, unit="it")
    t0 = time.time() - elapsed

    def save_state(iteration, **extra):
        checkpoint.save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                    "rng": checkpoint.rng_state(), "iteration": iteration,
                                    "elapsed": time.time() - t0, "digest": digest, "last": last,
                                    "curves": curves.history, "config": cfg.model_dump(), "seed": seed, **extra})
    model.train()
    for it, (x, y) in zip(range(start, total), source.batches(start)):
        lr = lr_at(it, p, source.milestones)
        for group in opt.param_groups:
            group["lr"] = lr
        with autocast:
            logits = net(x)
            loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[it % every] = loss.detach()
        wrong[it % every] = (logits.argmax(1) != y).sum()
        bar.update()
        if (it + 1) % every and it + 1 != total:
            continue
        n = it % every + 1
        if world > 1:  # global-batch values, and a NaN on any process stops every process at once
            dist.all_reduce(losses)
            dist.all_reduce(wrong)
            losses /= world
        window = losses[:n].tolist()
        if not all(map(math.isfinite, window)):
            status, failed_at = "failed", it + 1 - n + next(i for i, v in enumerate(window) if not math.isfinite(v))
            break
        last.update({"train/loss": sum(window) / n, "train/error": 100.0 * wrong[:n].sum().item() / (n * len(y) * world)})
        bar.set_postfix(loss=f"{last['train/loss']:.3f}", lr=f"{lr:g}")
        if curves:
            curves.log(it + 1, {"train/loss": last["train/loss"], "train/error": last["train/error"], "lr": lr})
        if (it + 1) % p["eval_every"] == 0 or it + 1 == total:
            test = evaluate(model, source, autocast, rank, world)
            last.update(test)
            if curves:
                curves.log(it + 1, test)
            model.train()
        if rank == 0 and ((it + 1) % p["checkpoint_every"] == 0 or it + 1 == total):
            save_state(it + 1)
    bar.close()
    if rank != 0:
        return {}
    if status == "failed" and start < total:  # failed in this call: its state says so from now on
        save_state(total, status=status, failed_at=failed_at)
    metrics = {"status": status, "failed_at": failed_at, "experiment": cfg.experiment, "seed": seed,
               "profile": cfg.profile, "digest": digest, "iterations": total, "precision": cfg.precision,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "processes": world, "wall_s": time.time() - t0}
    size = describe(**cfg.model)
    metrics.update(params=size["params"], multiply_adds=size["multiply_adds"])
    if status == "finished":
        metrics.update({k.replace("/", "_"): v for k, v in last.items()})
    checkpoint.save(out / "model.pt", {"model": model.state_dict(), "config": cfg.model_dump(),
                                       "seed": seed, "status": status})
    write_json(done, metrics)
    print(f"{out}: {status}" + (f" at iteration {failed_at} (non-finite loss)" if failed_at else
                               f", {', '.join(f'{k} {v:.2f}%' for k, v in last.items() if 'error' in k)}"))
    return metrics


@torch.no_grad()
def evaluate(model, source, autocast, rank, world) -> dict:
    """Test errors of the final network (the paper reports the final error, not the best)."""
    result = {}
    if rank == 0:
        model.eval()
        with autocast:
            result = source.evaluate(model)
    if world > 1:
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    return result
