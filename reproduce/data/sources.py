"""What the training loop sees of a data set: batches by iteration, how many make an epoch, evaluation.

A batch comes as (images, labels, global batch size): this process's share and the number of images
all processes train on together (smaller for an epoch's last batch), so the loss is the mean over the
whole batch whatever the layout. CIFAR lives on the training device and is augmented there a whole
batch at a time; batch `it` is a pure function of (seed, it), so resuming needs only the iteration
number. ImageNet is read from disk by DataLoader workers; the order within an epoch is a function of
(seed, epoch). The loop derives the run's length from the batches per epoch (training/schedule.py)
and gives the images' dtype and the DataLoader's workers from the speed knobs.
"""
import itertools

import torch

from . import cifar
from .augment import CifarStream, eval_batches
from ..errors import UserError


class CifarSource:
    def __init__(self, cfg, seed, device, rank, world, memory_format, dtype, workers=0):
        p, d = cfg.protocol, cfg.data
        if p["batch_size"] % world:
            raise UserError(f"batch_size {p['batch_size']} does not split over {world} processes")
        data = cifar.load(d["path"])
        n_train, n_test = d.get("train_images"), d.get("test_images")
        self.name = cfg.model["dataset"]
        self.test_x, self.test_y = data["test_x"][:n_test], data["test_y"][:n_test]
        self.dtype = dtype
        self.stream = CifarStream(data["train_x"][:n_train], data["train_y"][:n_train], self.name,
                                  batch_size=p["batch_size"], seed=seed, device=device, dtype=self.dtype,
                                  memory_format=memory_format, batches=p["batches"])
        self.device, self.memory_format, self.eval_batch = device, memory_format, p["eval_batch_size"]
        self.per_epoch = -(-self.stream.n // p["batch_size"])
        self.rank, self.world = rank, world

    def batches(self, start: int):
        for it in itertools.count(start):
            x, y = self.stream.batch(it, self.rank, self.world)  # this process's part of the global batch
            yield x, y, self.stream.size(it)

    def evaluate(self, model) -> dict:
        wrong = torch.zeros((), device=self.device)
        for x, y in eval_batches(self.test_x, self.test_y, self.name, self.eval_batch, self.device, self.dtype,
                                 self.memory_format):
            wrong += (model(x).argmax(1) != y).sum()
        return {"test/error": 100.0 * wrong.item() / len(self.test_y)}


class ImageNetSource:
    def __init__(self, cfg, seed, device, rank, world, memory_format, dtype, workers=0):
        p, d = cfg.protocol, cfg.data
        if not d.get("root"):
            raise UserError("data.imagenet.root is not set in params.yaml: ImageNet runs need ILSVRC2012 "
                            "in ImageFolder layout (it cannot be downloaded automatically)")
        from . import imagenet  # torchvision: imported only for ImageNet runs

        self.top_k_errors = imagenet.top_k_errors
        self.train, self.evals = imagenet.loaders(
            d["root"], d["augmentation"], batch_size=p["batch_size"] // world, workers=workers,
            distributed=world > 1, seed=seed, size=d.get("size"),
            limit=(d.get("train_images"), d.get("test_images")), eval_batch_size=p["bn_batch"])
        # Per process, DistributedSampler pads the epoch to equal shares: batches per epoch are the same
        # on every process, and each process's last one is as small on all.
        self.per_epoch = len(self.train)
        self.device, self.memory_format, self.world, self.dtype = device, memory_format, world, dtype

    def _to_device(self, x, y):
        return (x.to(self.device, self.dtype, non_blocking=True, memory_format=self.memory_format),
                y.to(self.device, non_blocking=True))

    def batches(self, start: int):
        epoch, skip = divmod(start, self.per_epoch)
        while True:
            self.train.sampler.set_epoch(epoch)
            for i, (x, y) in enumerate(self.train):
                if i >= skip:  # resuming mid-epoch: the same order, past what was already trained on
                    yield *self._to_device(x, y), len(y) * self.world
            epoch, skip = epoch + 1, 0

    def evaluate(self, model) -> dict:
        result = {}
        for crop, loader in self.evals.items():
            wrong, n = torch.zeros(2, device=self.device), 0
            for x, y in loader:
                x, y = self._to_device(x, y)
                wrong += self.top_k_errors(model(x), y, ks=(1, 5)).to(self.device)
                n += len(y)
            result[f"test/top1_{crop}"], result[f"test/top5_{crop}"] = (100.0 * wrong / n).tolist()
        return result


def make_source(cfg, seed, device, rank, world, memory_format, dtype, workers=0):
    """The run's data, this process's part of it, its images in `dtype`; ImageNet read by `workers` processes."""
    cls = ImageNetSource if cfg.model["dataset"] == "imagenet" else CifarSource
    return cls(cfg, seed, device, rank, world, memory_format, dtype, workers)
