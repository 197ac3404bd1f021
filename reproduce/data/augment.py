"""CIFAR batches without a DataLoader: the training set sits normalised on the device, a batch is a gather.

fb.resnet.torch datasets/cifar10.lua trains on ColorNormalize, HorizontalFlip(0.5), RandomCrop(32, 4)
(transforms.lua: zero padding after normalisation, so padded pixels equal the mean). Every image is
kept padded, as is and mirrored, channels last; any crop row of any image is then W contiguous pixels
of that one tensor, and a whole augmented batch is one `index_select` of B x H rows: no Python loop, no
per-image work, no per-value index arithmetic.

The data order is stateless: batch `it` depends only on (seed, it) (data/order.py), so a run resumes
exactly from an iteration number; so do its flips and crops, drawn from (seed, it).
"""
import torch
import torch.nn.functional as F

from ..errors import UserError, did_you_mean
from .cifar import MEAN_STD
from .order import Order, seed_for, share

PAD_PER_PIXEL = 4 / 32  # RandomCrop(32, 4): fb.resnet.torch datasets/cifar10.lua (1 pixel for 8x8 digits)


def normalize(x, name, dtype=torch.float32):
    """uint8 [N, 3, H, W] on the 0-255 scale to (x - mean) / std per channel (fb.resnet.torch constants)."""
    if name not in MEAN_STD:  # (not torchvision's names: importing it costs a training process seconds)
        raise UserError(f"unknown dataset '{name}'{did_you_mean(name, MEAN_STD)}; allowed: {', '.join(MEAN_STD)}")
    mean, std = (torch.tensor(v, device=x.device).view(1, 3, 1, 1) for v in MEAN_STD[name])
    return x.to(torch.float32, copy=True).sub_(mean).div_(std).to(dtype)  # in place on one fresh copy


class CifarStream:
    """Augmented training batches: `batch(it)` is batch number `it` of an endless, exactly repeatable stream."""

    def __init__(self, x, y, name, batch_size, seed=0, device="cpu", dtype=torch.float32,
                 memory_format=torch.contiguous_format, batches="continuous"):
        x = normalize(x.to(device), name, dtype)  # once: the hot loop only gathers
        _, c, h, w = x.shape
        self.pad = pad = max(1, round(w * PAD_PER_PIXEL))
        padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # [N, H+2p, W+2p, C]
        both = torch.stack([padded, padded.flip(2)], dim=1).contiguous()  # fb.resnet.torch flips, then crops
        flat = both.view(-1)
        # rows[r]: the W pixels starting at pixel r of `both`, a view; a crop is H of them, a row apart.
        self.rows = flat.as_strided((flat.numel() // c - w + 1, w * c), (c, 1))
        self.side, self.shape = w + 2 * pad, (h, w, c)
        self.row_step = self.side * torch.arange(h, device=device)  # a crop's rows from its first pixel
        self.y = y.to(device)
        self.order = Order(len(y), batch_size, seed, batches)
        self.n, self.batch_size, self.seed = len(y), batch_size, seed
        self.device, self.memory_format = torch.device(device), memory_format

    def size(self, it) -> int:
        return self.order.size(it)

    def draws(self, it):
        """Flip flags and crop offsets of batch `it`, from a CPU generator seeded by (seed, it) alone."""
        generator = torch.Generator().manual_seed(seed_for("augment", self.seed, it))
        flip = torch.rand(self.batch_size, generator=generator) < 0.5
        dy, dx = torch.randint(0, 2 * self.pad + 1, (2, self.batch_size), generator=generator)
        return flip, dy, dx

    def batch(self, it, rank=0, world=1):
        """(images, labels) of batch `it`, or of process `rank`'s consecutive share of it when `world`
        processes train; the same (seed, it) gives the same bits whatever came before."""
        idx, _ = self.order.indices(it)
        mine = share(len(idx), rank, world)
        idx, flip, dy, dx = (t[:len(idx)][mine] for t in (idx, *self.draws(it)))
        corner = ((idx * 2 + flip.long()) * self.side + dy) * self.side + dx  # each crop's first pixel
        idx, corner = to_device(torch.stack([idx, corner]), self.device)
        h, w, c = self.shape
        rows = (corner[:, None] + self.row_step).flatten()
        x = self.rows.index_select(0, rows).view(-1, h, w, c).permute(0, 3, 1, 2)  # NCHW, channels-last memory
        return x.contiguous(memory_format=self.memory_format), self.y[idx]


def to_device(t, device):
    """A host tensor on `device`. To a GPU from pinned memory without blocking: a copy from pageable
    memory makes the host wait until the GPU has run everything queued, once a step in the hot loop."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


def eval_batches(x, y, name, batch_size=1000, device="cpu", dtype=torch.float32,
                 memory_format=torch.contiguous_format):
    """Normalised, unaugmented (images, labels) batches of a test set, in order."""
    x, y = x.to(device), y.to(device)
    for i in range(0, len(y), batch_size):
        images = normalize(x[i:i + batch_size], name, dtype)
        yield images.contiguous(memory_format=memory_format), y[i:i + batch_size]
