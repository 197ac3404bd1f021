"""A run's length and learning rate: the paper's appendix, and fb.resnet.torch's epochs for the † rows."""
import math


def epoch_batches(images: int, batch_size: int, batches: str = "per_epoch") -> float:
    """Batches in an epoch of `images`: ceil(images / batch), the last one smaller, one epoch at a time
    (fb.resnet.torch dataloader.lua `DataLoader:size()`); images / batch when batches run across epoch
    ends (Caffe's data layer: data/order.py)."""
    return math.ceil(images / batch_size) if batches == "per_epoch" else images / batch_size


def schedule(protocol: dict, per_epoch: float) -> tuple[int, list[int]]:
    """(iterations, lr milestones in iterations) of a run whose epochs are `per_epoch` batches. A
    schedule in epochs steps the lr once that many epochs are done (train.lua: `epoch >= 81`, epochs
    counted from 1; across epoch ends, at the first iteration that completes them); otherwise both are
    given in iterations."""
    if protocol.get("epochs"):
        return math.ceil(protocol["epochs"] * per_epoch), [math.ceil(m * per_epoch) for m in protocol["milestones"]]
    return protocol["iterations"], list(protocol["milestones"])


def lr_at(it: int, p: dict, milestones) -> float:
    """Paper appendix: 0.1, ÷10 at each milestone; a 0.01 warm-up for the first 400 iterations (CIFAR)."""
    if it < p.get("warmup_iterations", 0):
        return p["warmup_lr"]
    return p["lr"] * 0.1 ** sum(it >= m for m in milestones)
