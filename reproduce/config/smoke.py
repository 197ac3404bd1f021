"""The smoke profile: the study's every stage at tiny depth, length and data, minutes on a 2-core CPU."""
from .schema import Smoke


def smoke(s: Smoke, model: dict, protocol: dict, data: dict, imagenet: bool, block: str):
    """Shrink a run to the smoke profile: depth, length, batch and data; the BN groups per batch stay."""
    groups = protocol["batch_size"] // protocol["bn_batch"]
    batch = min(protocol["batch_size"], s.batch_size)
    model["depth"] = s.imagenet_depth if imagenet else s.depth[block]
    protocol.update(batch_size=batch, bn_batch=max(1, batch // groups), eval_batch_size=s.test_images,
                    bn_stats_images=min(protocol["bn_stats_images"], s.train_images))
    if imagenet:
        protocol.update(epochs=2, milestones=[1], workers=0, log_every=1, eval_every=1, checkpoint_every=1)
        data.update(size=s.imagenet_size)
    else:
        log = max(1, s.iterations // 30)
        every = max(log, round(s.iterations / s.evaluations / log) * log)
        protocol.pop("epochs", None)
        protocol.update(iterations=s.iterations, milestones=[s.iterations // 2, s.iterations * 3 // 4],
                        warmup_iterations=min(protocol["warmup_iterations"], s.iterations // 30),
                        log_every=log, eval_every=every, checkpoint_every=every)
    data.update(train_images=s.train_images, test_images=s.test_images)
