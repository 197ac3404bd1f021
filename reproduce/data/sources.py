"""What the training loop sees of a data set: batches by iteration, how many make an epoch, evaluation.

A batch comes as (images, labels, global batch size): this process's share and the number of images
all processes train on together (smaller for an epoch's last batch), so the loss is the mean over the
whole batch whatever the layout. Batch `it` is a pure function of (seed, it) (data/order.py), so
resuming needs only the iteration number: CIFAR lives on the training device and is augmented there a
whole batch at a time; ImageNet is read from disk by DataLoader workers from that iteration on. Each
process evaluates every world-th test image and the error counts are summed over the processes. The
loop derives the run's length from the batches per epoch (training/schedule.py) and gives the images'
dtype and the DataLoader's workers from the speed knobs.
"""
import itertools

import torch
import torch.distributed as dist

from . import cifar
from .augment import CifarStream, eval_batches
from .order import Order
from ..errors import UserError


def _summed(counts, world):
    """Error counts of this process's share of a test set, summed over the processes (one host sync)."""
    if world > 1:
        dist.all_reduce(counts)
    return counts.tolist()


def _batches_for(images: int, n: int, batch_size: int) -> int:
    """How many batches hold `images` training images (at most the training set)."""
    return -(-min(images, n) // batch_size)


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
        self.per_epoch, self.test_images = self.stream.order.per_epoch, len(self.test_y)
        self.rank, self.world = rank, world

    def batches(self, start: int):
        for it in itertools.count(start):
            x, y = self.stream.batch(it, self.rank, self.world)  # this process's part of the global batch
            yield x, y, self.stream.size(it)

    def bn_batches(self, start: int, images: int):
        """This process's shares of the training batches from `start` on, `images` images in all (at most
        the training set), augmented as for training: what BN's after-training statistics average."""
        for it in range(start, start + _batches_for(images, self.stream.n, self.stream.batch_size)):
            yield self.stream.batch(it, self.rank, self.world)[0]

    def evaluate(self, model) -> dict:
        wrong = torch.zeros((), device=self.device, dtype=torch.int64)
        share = slice(self.rank, None, self.world)
        for x, y in eval_batches(self.test_x[share], self.test_y[share], self.name, self.eval_batch, self.device,
                                 self.dtype, self.memory_format):
            wrong += (model(x).argmax(1) != y).sum()
        return {"test/error": 100.0 * _summed(wrong, self.world) / len(self.test_y)}


class ImageNetSource:
    def __init__(self, cfg, seed, device, rank, world, memory_format, dtype, workers=0):
        p, d = cfg.protocol, cfg.data
        if not d.get("root"):
            raise UserError("data.imagenet.root is not set in params.yaml: ImageNet runs need ILSVRC2012 "
                            "in ImageFolder layout (it cannot be downloaded automatically)")
        from . import imagenet  # torchvision: imported only for ImageNet runs

        self.top_k_errors = imagenet.top_k_errors
        self.data = imagenet.ImageNet(d["root"], d["augmentation"], seed, d.get("size"),
                                      (d.get("train_images"), d.get("test_images")))
        self.order = Order(len(self.data.train), p["batch_size"], seed, p.get("batches", "per_epoch"))
        self.per_epoch, self.test_images = self.order.per_epoch, len(self.data.val[imagenet.EVAL_CROPS[0]])
        self.device, self.memory_format, self.dtype = device, memory_format, dtype
        self.rank, self.world, self.workers, self.eval_batch = rank, world, workers, p["eval_batch_size"]

    def _to_device(self, x, y):
        return (x.to(self.device, self.dtype, non_blocking=True, memory_format=self.memory_format),
                y.to(self.device, non_blocking=True))

    def batches(self, start: int):
        loader = self.data.train_loader(self.order, start, self.rank, self.world, self.workers)
        for it, (x, y) in zip(itertools.count(start), loader):  # only images not trained on yet are read
            yield *self._to_device(x, y), self.order.size(it)

    def bn_batches(self, start: int, images: int):
        count = _batches_for(images, self.order.n, self.order.batch_size)
        for x, y in self.data.train_loader(self.order, start, self.rank, self.world, self.workers, count):
            yield self._to_device(x, y)[0]

    def evaluate(self, model) -> dict:
        result = {}
        for crop in self.data.val:
            wrong = torch.zeros(2, device=self.device, dtype=torch.int64)
            for x, y in self.data.eval_loader(crop, self.rank, self.world, self.eval_batch, self.workers):
                x, y = self._to_device(x, y)
                wrong += self.top_k_errors(model(x), y, ks=(1, 5)).to(self.device)
            top1, top5 = _summed(wrong, self.world)
            n = len(self.data.val[crop])
            result[f"test/top1_{crop}"], result[f"test/top5_{crop}"] = 100.0 * top1 / n, 100.0 * top5 / n
        return result


def make_source(cfg, seed, device, rank, world, memory_format, dtype, workers=0):
    """The run's data, this process's part of it, its images in `dtype`; ImageNet read by `workers` processes."""
    cls = ImageNetSource if cfg.model["dataset"] == "imagenet" else CifarSource
    return cls(cfg, seed, device, rank, world, memory_format, dtype, workers)
