"""A run's final evaluation, once at the end of training: its test errors with BN's moving averages and
with BN statistics averaged over training images after training ([1]'s practice), and what it records.

Both are measured on every run; the recipe's `bn_stats` names the one its headline errors (`test_error`,
`test_top1_center320`, ...) report, and the other stays beside them (`test_error_moving`,
`test_error_precise`), so the effect of the choice is measured on every row rather than argued.
"""
import torch

from ..models.batchnorm import bn_buffers, precise_statistics

VARIANTS = ("moving", "precise")


@torch.no_grad()
def evaluate(model, source, autocast) -> dict:
    """Test errors of the network as it is, every process evaluating its share (the paper reports the
    final error, not the best)."""
    mode = model.training
    model.eval()
    try:
        with autocast:
            return source.evaluate(model)
    finally:
        model.train(mode)


def both_statistics(model, source, autocast, world: int, moving_errors: dict, start: int, images: int):
    """({"moving": errors, "precise": errors}, {"moving": BN buffers, "precise": BN buffers}). The
    after-training statistics average `images` training images, augmented as for training, from the
    batches that would follow iteration `start` (so they are a function of the seed: a resumed run gets
    the same); the network keeps its moving averages."""
    moving = bn_buffers(model)
    precise_statistics(model, source.bn_batches(start, images), world, autocast)
    errors = {"moving": moving_errors, "precise": evaluate(model, source, autocast)}
    buffers = {"moving": moving, "precise": bn_buffers(model)}
    model.load_state_dict(moving, strict=False)
    return errors, buffers


def metric_names(values: dict) -> dict:
    """Curve names ("test/error") as metrics.json keys ("test_error")."""
    return {k.replace("/", "_"): v for k, v in values.items()}


def recorded_errors(final: dict, headline: str) -> dict:
    """The metrics.json entries of a final evaluation: every error with each statistics' suffix, and the
    headline ones (the recipe's `bn_stats`) unsuffixed."""
    found = {}
    for variant, errors in final.items():
        found.update({f"{k}_{variant}": v for k, v in metric_names(errors).items()})
    return {**found, **metric_names(final[headline])}


def early_training(history, total: int, batch_size: int) -> dict:
    """Sec. 4's "at the beginning of training" made concrete: the mean training loss and error over the
    points logged in the first eighth of training (8k of the paper's 64k iterations, inside the first
    learning rate, where Figs. 1 and 6 show the curves apart), and the images those steps saw."""
    points = [(step, v) for step, v in history if "train/loss" in v and step <= total // 8]
    if not points:
        return {}
    return {"train_loss_early": sum(v["train/loss"] for _, v in points) / len(points),
            "train_error_early": sum(v["train/error"] for _, v in points) / len(points),
            "train_images_early": points[-1][0] * batch_size}


def weights_state(model, buffers: dict, headline: str) -> dict:
    """The network's state dict with the headline BN statistics (what torch.hub users get), and both."""
    state = {**model.state_dict(), **buffers[headline]}
    return {"model": state, "bn_buffers": buffers, "bn_stats": headline}
