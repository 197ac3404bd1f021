"""How much memory a run needs, known before it trains: a network's activations saved for backward are
counted on shapes alone (the meta device), to which come the weights' state, backward's gradients, the
CIFAR set kept on the device and what CUDA itself takes; a run that cannot fit its GPU (or its share of
one, when launch packs several runs on it) is refused with the fix."""
import functools

import torch

from ..data.augment import PAD_PER_PIXEL
from ..errors import UserError

HEADROOM = 0.9  # of a GPU's memory a run may plan on (the allocator's fragmentation)
CUDA_CONTEXT = 2**29  # a process's CUDA context with cuBLAS and cuDNN loaded: ~0.5 GiB (torch 2.x, H100)
CUDNN_WORKSPACE = 2**29  # the most cudnn.benchmark's chosen convolution algorithms are allowed to ask for
CIFAR_IMAGES = (50000, 10000)  # training and test images kept on the device (data/augment.py, evaluate)
ELEMENT = {"bf16": 2, "fp64": 8}  # bytes of an image element (and of fp64's weights); otherwise fp32's 4


@functools.lru_cache(maxsize=None)
def saved_bytes(spec: tuple, size: int) -> tuple[int, int]:
    """(all, largest): bytes of the activations one training image keeps for backward (fp32) at `size` x
    `size`, the storages autograd saves in a forward pass of shapes only, each counted once, parameters not."""
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
    return sum(saved.values()), max(saved.values())


def activation_bytes(spec: tuple, size: int) -> int:
    return saved_bytes(spec, size)[0]


def run_bytes(model: dict, batch: int, size: int, precision: str) -> int:
    """A network's training memory for `batch` images: activations (halved under bf16 autocast, whose
    convolutions save bf16 inputs), backward's peak of gradients (the largest activation's gradient and
    its input's, at once), and fp32 weights, gradients and momentum."""
    spec = tuple(sorted(model.items()))
    saved, largest = saved_bytes(spec, size)
    activations = (saved + 2 * largest) * batch * (0.5 if precision == "bf16" else 1)
    return int(activations + 3 * param_count(spec) * (8 if precision == "fp64" else 4))


def data_bytes(dataset: str, size: int, precision: str) -> int:
    """The CIFAR set as training keeps it on the device: each training image padded and flipped
    (CifarStream), each test image once; ImageNet's batches come from a DataLoader instead."""
    if dataset == "imagenet":
        return 0
    train, test = CIFAR_IMAGES
    side = size + 2 * max(1, round(size * PAD_PER_PIXEL))
    return (train * 2 * side * side + test * size * size) * 3 * ELEMENT.get(precision, 4)


def process_bytes(model: dict, batch: int, size: int, precision: str) -> int:
    """All a training process takes on its GPU: the network's memory, the data, cuDNN's workspaces, CUDA."""
    return (run_bytes(model, batch, size, precision) + data_bytes(model["dataset"], size, precision)
            + CUDNN_WORKSPACE + CUDA_CONTEXT)


@functools.lru_cache(maxsize=None)
def param_count(spec: tuple) -> int:
    """Parameters of the network of `spec` (counted on the meta device)."""
    from ..models import build_model

    with torch.device("meta"):
        return sum(p.numel() for p in build_model(**dict(spec)).parameters())


def input_size(cfg) -> int:
    return cfg.data.get("size") or (224 if cfg.model["dataset"] == "imagenet" else 32)


def available_bytes(device: torch.device, sharing: int = 1) -> int:
    """What one of `sharing` runs on this GPU may plan on: its share of the whole, and no more than is
    free now (another program's memory, or a sibling's already taken), this process's context counted."""
    free, total = torch.cuda.mem_get_info(device)
    return int(HEADROOM * min(free + CUDA_CONTEXT, total / sharing))


def check_fits(cfg, device: torch.device, world: int, sharing: int = 1):
    """On a GPU: refuse, before training, a run whose estimate exceeds what it may plan on, naming the
    fixes (activation checkpointing, more processes, fewer runs on a GPU)."""
    if device.type != "cuda":
        return
    size, batch = input_size(cfg), cfg.protocol["batch_size"] // world
    need = process_bytes(cfg.model, batch, size, cfg.precision)
    have = available_bytes(device, sharing)
    if need <= have:
        return
    whole = process_bytes(cfg.model, batch, size, cfg.precision) <= available_bytes(device)
    fixes = [f"launch.runs_per_gpu: {sharing - 1} or fewer (it shares the GPU among {sharing} runs)"] \
        if sharing > 1 and whole else []
    lighter = process_bytes({**cfg.model, "activation_checkpointing": True}, batch, size, cfg.precision)
    if not cfg.model.get("activation_checkpointing"):
        fixes.append(f"activation_checkpointing: true on the experiment (about {lighter / 2**30:.0f} GiB)")
    more = next((n for n in (2, 4, 8, 16, 32) if n > world and cfg.protocol["batch_size"] % n == 0 and
                 process_bytes(cfg.model, cfg.protocol["batch_size"] // n, size, cfg.precision) <= have), None)
    if more:
        fixes.append(f"{more} processes (torchrun --nproc-per-node {more}: {cfg.protocol['batch_size'] // more} "
                     "images each)")
    share = f" for each of the {sharing} runs sharing it" if sharing > 1 else ""
    raise UserError(f"{cfg.experiment} needs about {need / 2**30:.1f} GiB per process ({batch} images at "
                    f"{cfg.precision}) but {torch.cuda.get_device_name(device)} has {have / 2**30:.1f} GiB{share} "
                    f"to plan on ({HEADROOM:.0%} of what is free); "
                    + ("train it with " + " or ".join(fixes) if fixes else "no fix is known: use a larger GPU"))
