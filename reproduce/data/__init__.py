"""Data: CIFAR-10/100 (downloaded, converted once, augmented on the device) and ImageNet (ImageFolder)."""
from .augment import CifarStream, eval_batches
from .cifar import MEAN_STD, load, prepare

__all__ = ["CifarStream", "MEAN_STD", "load", "prepare", "eval_batches"]
