"""What the training loop sees of a data set: batches by iteration, the schedule's length, evaluation.

CIFAR lives on the training device and is augmented there a whole batch at a time; batch `it` is a
pure function of (seed, it), so resuming needs only the iteration number. ImageNet is read from
disk by DataLoader workers; the order within an epoch is a function of (seed, epoch).
"""
import torch

from . import cifar
from .augment import CifarStream, eval_batches
from ..errors import UserError


class CifarSource:
    def __init__(self, cfg, seed, device, rank, world, memory_format):
        p, d = cfg.protocol, cfg.data
        if p["batch_size"] % world:
            raise UserError(f"batch_size {p['batch_size']} does not split over {world} processes")
        data = cifar.load(d["path"])
        n_train, n_test = d.get("train_images"), d.get("test_images")
        self.name = cfg.model["dataset"]
        self.test_x, self.test_y = data["test_x"][:n_test], data["test_y"][:n_test]
        # Under bf16 autocast the first conv casts its input to bf16: storing the images in bf16 gives
        # the same bits at half the memory and memory traffic.
        self.dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
        self.stream = CifarStream(data["train_x"][:n_train], data["train_y"][:n_train], self.name,
                                  batch_size=p["batch_size"], seed=seed, device=device, dtype=self.dtype,
                                  memory_format=memory_format)
        self.device, self.memory_format, self.eval_batch = device, memory_format, p["eval_batch_size"]
        self.iterations, self.milestones = p["iterations"], p["milestones"]
        self.share = slice(rank * p["batch_size"] // world, (rank + 1) * p["batch_size"] // world)

    def batches(self, start: int):
        for it in range(start, self.iterations):
            yield self.stream.batch(it, self.share)  # each process trains on its part of the global batch

    def evaluate(self, model) -> dict:
        wrong = torch.zeros((), device=self.device)
        for x, y in eval_batches(self.test_x, self.test_y, self.name, self.eval_batch, self.device, self.dtype,
                                 self.memory_format):
            wrong += (model(x).argmax(1) != y).sum()
        return {"test/error": 100.0 * wrong.item() / len(self.test_y)}


class ImageNetSource:
    def __init__(self, cfg, seed, device, rank, world, memory_format):
        p, d = cfg.protocol, cfg.data
        if not d.get("root"):
            raise UserError("data.imagenet.root is not set in params.yaml: ImageNet runs need ILSVRC2012 "
                            "in ImageFolder layout (it cannot be downloaded automatically)")
        from . import imagenet  # torchvision: imported only for ImageNet runs

        self.top_k_errors = imagenet.top_k_errors
        self.train, self.evals = imagenet.loaders(
            d["root"], d["augmentation"], batch_size=p["batch_size"] // world, workers=p["workers"],
            distributed=world > 1, seed=seed, size=d.get("size"),
            limit=(d.get("train_images"), d.get("test_images")))
        self.per_epoch = len(self.train)
        self.iterations = p["epochs"] * self.per_epoch
        self.milestones = [m * self.per_epoch for m in p["milestones"]]  # epochs → iterations
        self.device, self.memory_format = device, memory_format

    def _to_device(self, x, y):
        return (x.to(self.device, non_blocking=True, memory_format=self.memory_format),
                y.to(self.device, non_blocking=True))

    def batches(self, start: int):
        epoch, skip = divmod(start, self.per_epoch)
        while True:
            self.train.sampler.set_epoch(epoch)
            for i, (x, y) in enumerate(self.train):
                if i >= skip:  # resuming mid-epoch: the same order, past what was already trained on
                    yield self._to_device(x, y)
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


def make_source(cfg, seed, device, rank, world, memory_format):
    cls = ImageNetSource if cfg.model["dataset"] == "imagenet" else CifarSource
    return cls(cfg, seed, device, rank, world, memory_format)
