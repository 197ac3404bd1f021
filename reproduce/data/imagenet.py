"""ILSVRC2012 from an ImageFolder tree (<root>/train/<wnid>/*.JPEG, <root>/val/<wnid>/*.JPEG).

Table 5's two augmentations, each as the implementation behind its rows did it:
- "scale", [1]'s (the paper: "the same data augmentation as in [1]"): shorter side uniform in
  [256, 480], a random 224 crop of the image or its mirror, and AlexNet's PCA colour noise (std 0.1);
  no colour jitter.
- "scale + aspect ratio" (the † row, fb.resnet.torch datasets/imagenet.lua): transforms.lua's
  RandomSizedCrop (`FbSizedCrop`), ColorJitter 0.4 (`FbColorJitter`), PCA lighting 0.1 and a flip.
Both resize bicubically and normalise with fb.resnet.torch's mean/std per channel (transforms.lua,
imagenet.lua; [1] subtracted the per-pixel mean: README, Faithfulness). Tests: 224 from 256, 320 from 320.

Batches follow data/order.py (the recipe's `batches`, each process its consecutive share of a global
batch) from any iteration on, so a resumed run reads only what it has not trained on; each image's
augmentation is drawn from (seed, epoch, image), whatever process or DataLoader worker reads it, so
a resumed run sees the same crops and colours as an uninterrupted one.
"""
import copy
import math

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from ..config.layout import check_imagenet_root as check_root, layout_error
from ..errors import UserError, did_you_mean
from .order import Order, seed_for

# fb.resnet.torch datasets/imagenet.lua ("computed from random subset of ImageNet training images").
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009),
          (-0.5808, -0.0045, -0.8140),
          (-0.5836, -0.6948, 0.4203))
BICUBIC = v2.InterpolationMode.BICUBIC  # transforms.lua's Scale and RandomSizedCrop resize bicubically
BICUBIC_PIL = 3  # PIL.Image.Resampling.BICUBIC


class Lighting(nn.Module):
    """AlexNet-style PCA colour noise on a [0, 1] RGB tensor (fb.resnet.torch transforms.lua Lighting)."""

    def __init__(self, alphastd=0.1, eigval=EIGVAL, eigvec=EIGVEC):
        super().__init__()
        self.alphastd = alphastd
        self.register_buffer("eigval", torch.tensor(eigval))
        self.register_buffer("eigvec", torch.tensor(eigvec))

    def forward(self, img):
        alpha = torch.randn(3) * self.alphastd
        rgb = self.eigvec @ (alpha * self.eigval)  # one offset per channel, the same for every pixel
        return img + rgb.view(3, 1, 1).to(img.dtype)


class FbSizedCrop(nn.Module):
    """fb.resnet.torch transforms.lua RandomSizedCrop(size), as written: area 8%-100% of the image, r uniform
    in [3/4, 4/3], w = round(sqrt(area) r) and h = round(sqrt(area) / r) (so w/h = r², not r), swapped
    half the time; up to 10 attempts, then Scale(size) + CenterCrop(size); bicubic."""

    def __init__(self, size):
        super().__init__()
        self.size = size

    @staticmethod
    def draw(width, height):
        """One attempt's (w, h) from the torch RNG, before the check that it fits."""
        area = torch.empty(()).uniform_(0.08, 1.0).item() * width * height
        ratio = torch.empty(()).uniform_(3 / 4, 4 / 3).item()
        w, h = math.floor(math.sqrt(area) * ratio + 0.5), math.floor(math.sqrt(area) / ratio + 0.5)  # Lua's round
        return (h, w) if torch.rand(()).item() < 0.5 else (w, h)

    def forward(self, img):
        width, height = img.size
        for _ in range(10):
            w, h = self.draw(width, height)
            if h <= height and w <= width:
                y1 = math.floor(torch.empty(()).uniform_(0, height - h + 0.99).item())
                x1 = math.floor(torch.empty(()).uniform_(0, width - w + 0.99).item())
                return img.crop((x1, y1, x1 + w, y1 + h)).resize((self.size, self.size), BICUBIC_PIL)
        scaled = v2.functional.resize(img, self.size, interpolation=BICUBIC)  # shorter side to `size`
        x1, y1 = math.ceil((scaled.size[0] - self.size) / 2), math.ceil((scaled.size[1] - self.size) / 2)
        return scaled.crop((x1, y1, x1 + self.size, y1 + self.size))


class FbColorJitter(nn.Module):
    """fb.resnet.torch transforms.lua ColorJitter: brightness, contrast and saturation in a random order,
    each a blend α·img + (1 − α)·other with α uniform in [1 − v, 1 + v] (other: black, the grey image's
    mean, the grey image; grey = 0.299 R + 0.587 G + 0.114 B), on a [0, 1] tensor, never clamped."""

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4):
        super().__init__()
        self.amounts = (brightness, contrast, saturation)

    def forward(self, img):
        for i in torch.randperm(3).tolist():
            alpha = 1.0 + torch.empty(()).uniform_(-self.amounts[i], self.amounts[i]).item()
            grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
            other = (torch.zeros_like(img), grey.mean().expand_as(img), grey.expand_as(img))[i]
            img = alpha * img + (1 - alpha) * other
        return img


def _finish(*colour):
    """PIL image to a normalised float tensor, with the colour augmentation (if any) in between."""
    return [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), *colour, v2.Normalize(MEAN, STD)]


def train_transform(augmentation, size=224):
    """Table 5's training crops; `size` < 224 shrinks every length in proportion (quick runs only)."""
    f = size / 224
    if augmentation == "scale":  # [1] Sec. 3.4: shorter side uniform in [256, 480], a 224 crop, [21]'s colour
        crop = [v2.RandomResize(round(256 * f), round(480 * f) + 1, interpolation=BICUBIC), v2.RandomCrop(size)]
        colour = [Lighting(0.1)]
    else:  # "scale_aspect": imagenet.lua: RandomSizedCrop, ColorJitter 0.4, Lighting 0.1, (normalise,) flip
        crop = [FbSizedCrop(size)]
        colour = [FbColorJitter(0.4, 0.4, 0.4), Lighting(0.1)]
    return v2.Compose([*crop, v2.RandomHorizontalFlip(), *_finish(*colour)])


def eval_transform(crop, size=224):
    """Table 5's test crops: 224 from shorter side 256 ("center224"), 320 from 320 ("center320")."""
    f = size / 224
    side, out = {"center224": (256, 224), "center320": (320, 320)}[crop]
    return v2.Compose([v2.Resize(round(side * f), interpolation=BICUBIC), v2.CenterCrop(round(out * f)),
                       *_finish()])


AUGMENTATIONS = ("scale", "scale_aspect")
EVAL_CROPS = ("center224", "center320")


def _folder(root, split, transform):
    try:
        return ImageFolder(root / split, transform=transform)
    except FileNotFoundError as e:  # no class folders, or no images in them
        raise UserError(layout_error(root, f"has no images in {split}/ ({e})")) from None


def _spread(dataset, n):
    """n images evenly spread over the (class-sorted) dataset, so every part of it is represented."""
    if n is None or n >= len(dataset):
        return dataset
    return Subset(dataset, torch.linspace(0, len(dataset) - 1, n).round().long().tolist())


class Seeded(Dataset):
    """Items keyed by (epoch, index): the index's image, augmented with the torch RNG seeded from (seed,
    epoch, index); the caller's RNG is left as it was (a worker-less loader runs in the training process)."""

    def __init__(self, dataset, seed):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for("imagenet", self.seed, epoch, index))
            return self.dataset[index]


class Batches(Sampler):
    """From iteration `start` on (for `count` batches, or for ever), this process's (epoch, index) keys of
    each global batch of `order`."""

    def __init__(self, order: Order, start=0, rank=0, world=1, count=None):
        self.order, self.start, self.rank, self.world, self.count = order, start, rank, world, count

    def __iter__(self):
        it = self.start
        while self.count is None or it < self.start + self.count:
            indices, epochs = self.order.indices(it, self.rank, self.world)
            yield list(zip(epochs.tolist(), indices.tolist()))
            it += 1

    def __len__(self):
        if self.count is None:
            raise TypeError("an endless stream of batches has no length")
        return self.count


class ImageNet:
    """ILSVRC2012 read as Table 5's rows read it. `size` (default 224) scales every crop for quick runs;
    `limit` = (train images, val images) keeps that many, evenly spread."""

    def __init__(self, root, augmentation, seed=0, size=None, limit=(None, None)):
        if augmentation not in AUGMENTATIONS:
            hint = did_you_mean(augmentation, AUGMENTATIONS)
            raise UserError(f"unknown ImageNet augmentation '{augmentation}'{hint}; allowed: {', '.join(AUGMENTATIONS)}")
        root, size = check_root(root), size or 224
        train, val = _folder(root, "train", train_transform(augmentation, size)), _folder(root, "val", None)
        if train.class_to_idx != val.class_to_idx:  # else val labels would mean other classes
            raise UserError(layout_error(root, "has different class folders in train/ and val/"))
        self.train = Seeded(_spread(train, limit[0]), seed)
        self.val = {}
        for crop in EVAL_CROPS:
            view = copy.copy(val)  # the same file list (scanned once), another transform
            view.transform = eval_transform(crop, size)
            self.val[crop] = _spread(view, limit[1])

    def train_loader(self, order: Order, start=0, rank=0, world=1, workers=0, count=None) -> DataLoader:
        """(images, labels) of this process's share of every batch of `order` from iteration `start`."""
        return DataLoader(self.train, batch_sampler=Batches(order, start, rank, world, count), num_workers=workers,
                          pin_memory=torch.cuda.is_available())

    def eval_loader(self, crop, rank=0, world=1, batch_size=200, workers=0) -> DataLoader:
        """Every world-th validation image from `rank` on, in order: the processes' shares are disjoint and
        cover the set, so their error counts add up to the whole set's."""
        view = self.val[crop]
        return DataLoader(Subset(view, range(rank, len(view), world)), batch_size=batch_size, shuffle=False,
                          num_workers=workers, pin_memory=torch.cuda.is_available())


def top_k_errors(logits, targets, ks=(1, 5)):
    """Number of samples whose target is not among the k highest logits, one count per k (a tensor)."""
    top = logits.topk(max(ks), dim=1).indices
    hit = top == targets[:, None]
    return torch.stack([(~hit[:, :k].any(dim=1)).sum() for k in ks])
