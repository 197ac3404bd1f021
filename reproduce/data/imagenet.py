"""ILSVRC2012 from an ImageFolder tree (<root>/train/<wnid>/*.JPEG, <root>/val/<wnid>/*.JPEG).

Table 5's two augmentations, each as the implementation behind its rows did it:
- "scale", [1]'s (the paper: "the same data augmentation as in [1]"): shorter side uniform in
  [256, 480], a random 224 crop of the image or its mirror, and AlexNet's PCA colour noise (std 0.1);
  no colour jitter.
- "scale + aspect ratio" (the † row, fb.resnet.torch datasets/imagenet.lua): RandomSizedCrop, then
  ColorJitter 0.4, PCA lighting 0.1 and a flip.
Both resize bicubically and normalise with fb.resnet.torch's mean/std per channel (transforms.lua,
imagenet.lua; [1] subtracted the per-pixel mean: README, Faithfulness). Tests: 224 from 256, 320 from 320.
"""
import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from ..errors import UserError, did_you_mean
from ..config.layout import check_imagenet_root as check_root, layout_error

# fb.resnet.torch datasets/imagenet.lua ("computed from random subset of ImageNet training images").
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009),
          (-0.5808, -0.0045, -0.8140),
          (-0.5836, -0.6948, 0.4203))
BICUBIC = v2.InterpolationMode.BICUBIC  # transforms.lua's Scale and RandomSizedCrop resize bicubically


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


def _finish(*colour):
    """PIL image to a normalised float tensor, with the colour augmentation (if any) in between."""
    return [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), *colour, v2.Normalize(MEAN, STD)]


def train_transform(augmentation, size=224):
    """Table 5's training crops; `size` < 224 shrinks every length in proportion (quick runs only)."""
    f = size / 224
    if augmentation == "scale":  # [1] Sec. 3.4: shorter side uniform in [256, 480], a 224 crop, [21]'s colour
        crop = [v2.RandomResize(round(256 * f), round(480 * f) + 1, interpolation=BICUBIC), v2.RandomCrop(size)]
        colour = [Lighting(0.1)]
    else:  # "scale_aspect": transforms.lua RandomSizedCrop, 8%-100% of the area, aspect ratio 3/4-4/3
        crop = [v2.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation=BICUBIC)]
        # imagenet.lua: ColorJitter 0.4 (brightness, contrast, saturation in random order, as here), Lighting 0.1
        colour = [v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4), Lighting(0.1)]
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


def loaders(root, augmentation, batch_size, workers, distributed=False, seed=0, size=None, limit=(None, None),
            eval_batch_size=None):
    """(train loader, {"center224": loader, "center320": loader}) for this process.

    The train order is a function of (seed, epoch) alone: a DistributedSampler (one replica when not
    distributed) whose set_epoch must be called each epoch. Distributed, the val set is split into
    disjoint strided shards, so error counts summed over processes are exact. `size` (default 224)
    scales all crops for quick runs; `limit` = (train images, val images) keeps that many, evenly spread.
    """
    if augmentation not in AUGMENTATIONS:
        hint = did_you_mean(augmentation, AUGMENTATIONS)
        raise UserError(f"unknown ImageNet augmentation '{augmentation}'{hint}; allowed: {', '.join(AUGMENTATIONS)}")
    root, size = check_root(root), size or 224
    train, val = _folder(root, "train", train_transform(augmentation, size)), _folder(root, "val", None)
    if train.class_to_idx != val.class_to_idx:  # else val labels would mean other classes
        raise UserError(layout_error(root, "has different class folders in train/ and val/"))
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
    options = dict(batch_size=batch_size, num_workers=workers, pin_memory=torch.cuda.is_available(),
                   persistent_workers=workers > 0)
    train = _spread(train, limit[0])
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    generator = torch.Generator().manual_seed(seed)  # the workers' augmentation seeds
    train_loader = DataLoader(train, sampler=sampler, generator=generator, **options)
    evals = {}
    for crop in EVAL_CROPS:
        view = copy.copy(val)  # the same file list (scanned once), another transform
        view.transform = eval_transform(crop, size)
        view = _spread(view, limit[1])
        # The whole val set, in batches that do not depend on the number of processes: rank 0 alone
        # evaluates (loop.evaluate), and `reproduce evaluate` in one process gets the same numbers.
        evals[crop] = DataLoader(view, shuffle=False, **{**options, "batch_size": eval_batch_size or batch_size})
    return train_loader, evals


def top_k_errors(logits, targets, ks=(1, 5)):
    """Number of samples whose target is not among the k highest logits, one count per k (a tensor)."""
    top = logits.topk(max(ks), dim=1).indices
    hit = top == targets[:, None]
    return torch.stack([(~hit[:, :k].any(dim=1)).sum() for k in ks])
