"""The training loop: a network, the paper's protocol and a seed in; curves, final errors and weights out.

Resumable: a checkpoint (model, optimizer, iteration, RNG states; the data order is a function of
seed and iteration) is written atomically every `checkpoint_every` iterations, so a killed run
started again ends with exactly the metrics of an uninterrupted one. The last one, at the end of
the run, stays: started again, a finished run writes its outputs from it without training. A run
whose training loss becomes NaN/inf stops, is recorded as `failed` with the iteration, and exits 0.
"""
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from . import checkpoint, final, speed as knobs
from ..config import RunConfig, Speed
from ..data.order import seed_for
from ..data.sources import make_source
from ..files import load_json, save_torch, sha256, write_json
from ..logs import Curves
from ..models import build_model
from ..models.batchnorm import group_batch_norm
from .memory import check_fits
from .optim import make_optimizer
from .schedule import lr_at, schedule


def network(model_spec: dict, p: dict, precision: str, device, memory_format, rank=0, world=1):
    """A run's network and optimizer: the network of `run_network`, and SGD over it."""
    model = run_network(model_spec, p, precision, device, memory_format, rank, world)
    return model, make_optimizer(model, p)


def run_network(model_spec: dict, p: dict, precision: str, device, memory_format, rank=0, world=1):
    """A run's network, built and initialised, on the device in the precision's dtype, with BN over the
    protocol's groups of `bn_batch` images (the paper's per-GPU batch); `evaluate` rebuilds it so."""
    model = build_model(**model_spec).to(device, knobs.PARAMETERS[precision], memory_format=memory_format)
    return group_batch_norm(model, p["batch_size"], p["bn_batch"], rank, world)


def train_step(net, opt, x, y, images: int, world: int, autocast):
    """One iteration on this process's share (x, y) of a global batch of `images`. The loss is the mean
    over the global batch: DDP averages the processes' gradients, so each process's sum is scaled by
    world / images (an uneven share, such as an epoch's short last batch, stays exact)."""
    with autocast:
        logits = net(x)
    loss = F.cross_entropy(knobs.at_least_fp32(logits), y, reduction="sum") * (world / images)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logits


def compiled(net, setting):
    """speed.compile: False (eager), True (torch.compile's default mode) or the name of a mode."""
    return torch.compile(net, mode=None if setting is True else setting) if setting else net


def first_step(net, eager, model, opt, x, y, images, world, autocast):
    """(network, step's outputs) of the first step of a compiled network, which compiles it; should
    compiling fail, the network's buffers (BN statistics) and the RNG are put back and the step is taken,
    and training goes on, with `eager`, after one line saying why."""
    buffers, rng = {k: v.clone() for k, v in model.state_dict().items()}, torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state() if x.is_cuda else None
    try:
        return net, train_step(net, opt, x, y, images, world, autocast)
    except Exception as e:  # Dynamo's, Inductor's or the compiler's: any of them means no compiled step
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        print(f"speed.compile: compiling failed ({type(e).__name__}: {reason}); training eagerly")
    model.load_state_dict(buffers)
    torch.random.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng)
    return eager, train_step(eager, opt, x, y, images, world, autocast)


def train(cfg: RunConfig, seed: int, speed: Speed, out: Path, checkpoint_dir: Path = Path("checkpoints"),
          curves_dir: Path | None = None, sharing: int = 1) -> dict:
    """One run: metrics.json and model.pt into `out`, DVCLive curves into `curves_dir` (default out/curves);
    `sharing`: the runs (this one included) that launch packed onto this process's GPU."""
    out, digest = Path(out), cfg.digest(seed)
    done = out / "metrics.json"
    if done.exists() and load_json(done).get("digest") == digest:
        print(f"{out}: finished already; nothing to do")
        return load_json(done)
    device, rank, world = knobs.setup_device(speed)
    p = cfg.protocol
    torch.manual_seed(seed)
    fmt = knobs.memory_format(speed.channels_last, device)
    check_fits(cfg, device, world, sharing)
    model, opt = network(cfg.model, p, cfg.precision, device, fmt, rank, world)
    if rank:  # every process its own random stream (dropout), rank 0 the one a single process has
        torch.manual_seed(seed_for("rank", seed, rank))
    source = make_source(cfg, seed, device, rank, world, fmt, knobs.images_dtype(cfg.precision),
                         knobs.workers(p.get("workers", 0)))
    total, milestones = schedule(p, source.per_epoch)
    ckpt_path = checkpoint_dir / f"{cfg.experiment}-seed{seed}-{digest}.pt"
    state, start, elapsed, last, history = checkpoint.load(ckpt_path, digest), 0, 0.0, {}, []
    status, failed_at, done_at_end = "finished", None, {}
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"], rank, device)
        start, elapsed, last, history = state["iteration"], state["elapsed"], state["last"], state["curves"]
        status, failed_at = state.get("status", status), state.get("failed_at")
        done_at_end = {k: state[k] for k in ("final", "bn_buffers") if k in state}
        if status == "failed":
            start = total  # recorded as failed: never trained again
        if rank == 0:
            print(f"{out}: resuming from iteration {start} ({ckpt_path})")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    eager, net = net, compiled(net, knobs.compile_mode(speed.compile, device, cfg))
    autocast = knobs.autocast(cfg.precision, device)
    curves = Curves(Path(curves_dir or out / "curves"), history) if rank == 0 else None
    every = p["log_every"]
    losses = torch.zeros(every, device=device, dtype=torch.float64)  # on the device until a log point
    wrong, seen = torch.zeros(every, device=device), 0
    bar = tqdm(total=total, initial=start, desc=f"{cfg.experiment} seed {seed}", disable=rank != 0,
               dynamic_ncols=True, unit="it")
    t0 = time.time() - elapsed

    def save_state(iteration, **extra):
        """The resumable state (every process takes part: the RNG states are gathered; rank 0 writes)."""
        rng = checkpoint.rng_states(device, world)
        if rank == 0:
            save_torch(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng,
                                   "iteration": iteration, "elapsed": time.time() - t0, "digest": digest,
                                   "last": last, "curves": curves.history, "config": cfg.model_dump(),
                                   "seed": seed, **done_at_end, **extra})
    model.train()
    for it, (x, y, images) in zip(range(start, total), source.batches(start)):
        lr = lr_at(it, p, milestones)
        for group in opt.param_groups:
            group["lr"] = lr
        if it == start and net is not eager:
            net, (loss, logits) = first_step(net, eager, model, opt, x, y, images, world, autocast)
        else:
            loss, logits = train_step(net, opt, x, y, images, world, autocast)
        losses[it % every] = loss
        wrong[it % every] = (logits.argmax(1) != y).sum()
        seen += images
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
        last.update({"train/loss": sum(window) / n, "train/error": 100.0 * wrong[:n].sum().item() / seen,
                     "train/images": seen})
        seen = 0
        bar.set_postfix(loss=f"{last['train/loss']:.3f}", lr=f"{lr:g}")
        if curves:
            curves.log(it + 1, {"train/loss": last["train/loss"], "train/error": last["train/error"], "lr": lr})
        if (it + 1) % p["eval_every"] == 0 or it + 1 == total:
            test = final.evaluate(model, source, autocast)
            last.update(test)
            if curves:
                curves.log(it + 1, test)
        if (it + 1) % p["checkpoint_every"] == 0 or it + 1 == total:
            save_state(it + 1)
    bar.close()
    if status == "failed" and start < total:  # failed in this call: its state says so from now on
        save_state(total, status=status, failed_at=failed_at)
    if status == "finished" and not done_at_end:  # once, after the last checkpoint: a kill here redoes only this
        moving = {k: v for k, v in last.items() if k.startswith("test/")}
        errors, buffers = final.both_statistics(model, source, autocast, world, moving, total, p["bn_stats_images"])
        done_at_end.update(final=errors, bn_buffers=buffers)
        save_state(total)
    if rank != 0:
        return {}
    headline = p.get("bn_stats", "moving")  # (runs from before both were recorded: moving)
    metrics = {"status": status, "failed_at": failed_at, "experiment": cfg.experiment, "seed": seed,
               "profile": cfg.profile, "recipe": cfg.recipe, "digest": digest, "iterations": total,
               "precision": cfg.precision,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "processes": world, "wall_s": time.time() - t0,
               # with the config in model.pt, what `evaluate` needs to redo the final evaluation
               "memory_format": "channels_last" if fmt == torch.channels_last else "contiguous"}
    metrics["params"] = sum(q.numel() for q in model.parameters())  # (multiply-adds: `describe`)
    if status == "finished":
        metrics.update(final.metric_names({k: v for k, v in last.items() if k.startswith("train/")}))
        metrics.update(final.early_training(curves.history, total, p["batch_size"]))
        metrics["test_images"] = source.test_images  # the noise of its errors (results/stats.py)
        metrics.update(final.recorded_errors(done_at_end["final"], headline))
    weights = final.weights_state(model, done_at_end["bn_buffers"], headline) if status == "finished" else \
        {"model": model.state_dict()}
    save_torch(out / "model.pt", {**weights, "config": cfg.model_dump(), "seed": seed, "status": status})
    metrics["weights_sha256"] = sha256(out / "model.pt")  # what a downloaded copy is checked against
    write_json(done, metrics)
    print(f"{out}: {status}" + (f" at iteration {failed_at} (non-finite loss)" if failed_at else
                               ", " + ", ".join(f"{k} {v:.2f}%" for k, v in metrics.items()
                                                if k.startswith("test_") and k != "test_images")))
    return metrics
