"""How much memory a run needs, known before it trains: a network's activations saved for backward are
counted on shapes alone (the meta device), and a run that cannot fit its GPU is refused with the fix."""
import functools

import torch

from ..errors import UserError

HEADROOM = 0.9  # of a GPU's memory a run may plan on (the allocator's fragmentation, cuDNN's workspaces)


@functools.lru_cache(maxsize=None)
def activation_bytes(spec: tuple, size: int) -> int:
    """Bytes of activations one training image keeps for backward (fp32), at `size` x `size`: the
    storages autograd saves in a forward pass of shapes only, each counted once, parameters not."""
    from ..models import build_model

    with torch.device("meta"):
        model = build_model(**dict(spec)).train()
        x = torch.zeros(1, 3, size, size)
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in params:
            saved[storage._cdata] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(saved.values())


def run_bytes(model: dict, batch: int, size: int, precision: str) -> int:
    """A process's training memory for `batch` images: activations (halved under bf16 autocast, whose
    convolutions save bf16 inputs), and fp32 weights, gradients and momentum."""
    spec = tuple(sorted(model.items()))
    activations = activation_bytes(spec, size) * batch * (0.5 if precision == "bf16" else 1)
    params = param_count(spec)
    return int(activations + 3 * 4 * params * (2 if precision == "fp64" else 1))


@functools.lru_cache(maxsize=None)
def param_count(spec: tuple) -> int:
    """Parameters of the network of `spec` (counted on the meta device)."""
    from ..models import build_model

    with torch.device("meta"):
        return sum(p.numel() for p in build_model(**dict(spec)).parameters())


def input_size(cfg) -> int:
    return cfg.data.get("size") or (224 if cfg.model["dataset"] == "imagenet" else 32)


def check_fits(cfg, device: torch.device, world: int):
    """On a GPU: refuse, before training, a run whose estimate exceeds HEADROOM of the device's memory,
    naming the fixes (activation checkpointing, or more processes)."""
    if device.type != "cuda":
        return
    batch = cfg.protocol["batch_size"] // world
    need = run_bytes(cfg.model, batch, input_size(cfg), cfg.precision)
    have = torch.cuda.mem_get_info(device)[1]
    if need <= HEADROOM * have:
        return
    lighter = run_bytes({**cfg.model, "activation_checkpointing": True}, batch, input_size(cfg), cfg.precision)
    fixes = [] if cfg.model.get("activation_checkpointing") else \
        [f"activation_checkpointing: true on the experiment (about {lighter / 2**30:.0f} GiB)"]
    more = next((n for n in (2, 4, 8, 16, 32) if n > world and cfg.protocol["batch_size"] % n == 0 and
                 run_bytes(cfg.model, cfg.protocol["batch_size"] // n, input_size(cfg), cfg.precision)
                 <= HEADROOM * have), None)
    if more:
        fixes.append(f"{more} processes (torchrun --nproc-per-node {more}: {cfg.protocol['batch_size'] // more} "
                     "images each)")
    raise UserError(f"{cfg.experiment} needs about {need / 2**30:.0f} GiB per process ({batch} images at "
                    f"{cfg.precision}) but {torch.cuda.get_device_name(device)} has {have / 2**30:.0f} GiB; "
                    + ("train it with " + " or ".join(fixes) if fixes else "no fix is known: use a larger GPU"))
