"""The smoke profile's stand-in for CIFAR: scikit-learn's real 8x8 handwritten digits, no download.

CIFAR can't be fetched on a machine without network; the smoke profile runs the whole pipeline on
these instead, says so in every output, and its numbers mean nothing for the paper. They keep their
own 8x8 pixels: the CIFAR networks take any size (global pooling), and 16x fewer pixels than 32x32
let a smoke run learn in seconds on a CPU.
"""
import torch
from sklearn.datasets import load_digits

from ..files import save_torch

TEST_IMAGES = 500


def digits_as_cifar(stand_in_for: str) -> dict:
    """1,797 digits as uint8 [N, 3, 8, 8] RGB in the converted-CIFAR layout (first 1,297 train, 500 test)."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] * (255 / 16)  # 0–16 grey levels → 0–255
    x = x.round().to(torch.uint8).expand(-1, 3, -1, -1)
    y = torch.tensor(digits.target, dtype=torch.int64)
    n = len(y) - TEST_IMAGES
    return dict(train_x=x[:n].contiguous(), train_y=y[:n], test_x=x[n:].contiguous(), test_y=y[n:],
                classes=[str(d) for d in range(10)], name=stand_in_for,
                source_md5=f"sklearn-digits (smoke stand-in for {stand_in_for})")


def write(stand_in_for: str, out_path):
    data = digits_as_cifar(stand_in_for)
    save_torch(out_path, data)
    return data
