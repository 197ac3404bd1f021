"""A run's length and learning rate: the paper's appendix, and fb.resnet.torch's epochs for the † rows."""
import math


def epoch_batches(images: int, batch_size: int) -> int:
    """Batches in an epoch of `images`: ceil(images / batch), the last one smaller (fb.resnet.torch
    dataloader.lua `DataLoader:size()`)."""
    return math.ceil(images / batch_size)


def schedule(protocol: dict, per_epoch: int) -> tuple[int, list[int]]:
    """(iterations, lr milestones in iterations) of a run whose epochs are `per_epoch` batches. A
    schedule in epochs steps the lr once that many epochs are done (train.lua: `epoch >= 81`, epochs
    counted from 1); otherwise both are given in iterations."""
    if protocol.get("epochs"):
        return protocol["epochs"] * per_epoch, [m * per_epoch for m in protocol["milestones"]]
    return protocol["iterations"], list(protocol["milestones"])


def lr_at(it: int, p: dict, milestones) -> float:
    """Paper appendix: 0.1, ÷10 at each milestone; a 0.01 warm-up for the first 400 iterations (CIFAR)."""
    if it < p.get("warmup_iterations", 0):
        return p["warmup_lr"]
    return p["lr"] * 0.1 ** sum(it >= m for m in milestones)
