"""Stand-ins for gpu-check's sections (test_cost.py), each ending as a section on a GPU can: figures
kept first, then a segfault, an out-of-memory error, or a hang with a process of its own started."""
import os
import signal
import subprocess
import time


def fine(left, kept):
    kept["img_s"] = 1.0
    return {"passed": True}


def crash(left, kept):
    kept["rates"] = [1.0]
    os.kill(os.getpid(), signal.SIGSEGV)


def out_of_memory(left, kept):
    import torch

    kept["rates"] = [2.0]
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def hang(left, kept):
    kept["pid"] = subprocess.Popen(["sleep", "600"]).pid  # as pytest's `train` runs or packing's workers
    time.sleep(600)
