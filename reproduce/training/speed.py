"""The `speed:` knobs resolved for the device a run trains on. None of them changes the arithmetic but
`precision`, which is never chosen for the user; `auto` picks what `bench` measured to be faster there.

- precision: fp32 (the paper's), tf32, bf16 autocast, fp64 (see PARAMETERS).

- channels_last: yes on a GPU (NHWC is what cuDNN's tensor-core kernels take) and on a CPU with
  AVX-512; no on an AVX2-only CPU. bench's `train_resnet110_layout` case, fp32 ResNet-110 at batch 128
  on a 2-core Xeon with AMX: channels_last 1.07-1.25x NCHW (2026-12-01, -02); the same Xeon held to
  AVX2 code (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): NCHW 1.13x channels_last on 12-01,
  channels_last 1.10x on 12-02, i.e. within noise until measured on a real AVX2-only CPU (README).
  A 2-core AMD EPYC with AVX-512 (and bf16): channels_last 1.21-1.37x NCHW (12-02).
- compile: `reduce-overhead` (Inductor + CUDA graphs) for a paper-profile CIFAR run on a GPU, where
  eager ResNet-110 spends ~3x more host time launching its ~1,400 ops a step than the GPU computes
  (issue 27); off on a CPU (1–7% gained after ~100 s of compiling: bench), for ImageNet (its data
  loader, not the launches, bounds it) and for the smoke profile (minutes of compiling for seconds of
  training). The CIFAR step traces as one graph with static shapes (tests/test_step.py).
- threads: torch's own choice (every core) for one process; the cores shared out when several
  processes of one run share a machine (torchrun's LOCAL_WORLD_SIZE), unless OMP_NUM_THREADS says.
- ImageNet DataLoader workers: up to 8 per training process (fb.resnet.torch trains with 8–12
  threads), leaving a core to the process itself.
"""
import datetime
import os
from contextlib import nullcontext

import torch
import torch.distributed as dist

from ..errors import UserError

# precision: what the network's parameters are kept in, and what the images are fed as. bf16 is
# autocast (parameters fp32, convolutions bf16); fp64 is for checking that two layouts compute the same.
PARAMETERS = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.float32, "fp64": torch.float64}


def images_dtype(precision) -> torch.dtype:
    """bf16 images give the first conv the bits autocast would give it, at half the memory traffic."""
    return torch.bfloat16 if precision == "bf16" else PARAMETERS[precision]


def autocast(precision, device: torch.device):
    return torch.autocast(device.type, torch.bfloat16) if precision == "bf16" else nullcontext()


def at_least_fp32(t):
    """`t` in fp32 if it is in a narrower type (bf16 under autocast), else as it is (fp32, fp64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def channels_last(setting, device: torch.device) -> bool:
    if setting != "auto":
        return bool(setting)
    return device.type == "cuda" or torch.backends.cpu.get_cpu_capability() == "AVX512"


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs in hardware: on a CPU, AVX-512 BF16 or AMX (without them oneDNN emulates it,
    ~10x slower than fp32 on an AVX2-only CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return False
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def compile_mode(setting, device: torch.device, cfg):
    if setting != "auto":
        return setting
    cifar = cfg.model["dataset"] != "imagenet" and cfg.profile == "paper"
    return "reduce-overhead" if device.type == "cuda" and cifar else False


def memory_format(setting, device: torch.device):
    return torch.channels_last if channels_last(setting, device) else torch.contiguous_format


def set_threads(setting):
    """Set torch's intra-op threads for this process (`speed.threads`); returns the number in use."""
    if setting != "auto":
        torch.set_num_threads(setting)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, cores() // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    return torch.get_num_threads()


def workers(setting) -> int:
    if setting != "auto":
        return setting
    share = cores() // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(0, min(8, share - 1))


def cuda_settings(precision, deterministic=False):
    """cuDNN's and cuBLAS's settings for a run of `precision` (training's, and gpu-check's measurements)."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic)
    # ...without its NaN fill of every torch.empty (~6 kernels per BN layer): every op here writes
    # all of its output, so the fill changes no result
    torch.utils.deterministic.fill_uninitialized_memory = not deterministic
    # cuDNN convolutions default to TF32 (10-bit mantissa) on Ampere and later: fp32 means fp32.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"


def end_process_group():
    """Leave the process group setup_device joined (NCCL warns at exit about one never destroyed)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def setup_device(speed) -> tuple[torch.device, int, int]:
    """(device, rank, world) of this process, with the speed knobs applied: threads, cuDNN's settings
    (fp32 means no TF32; `deterministic`), and the process group when torchrun started several."""
    set_threads(speed.threads)
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    if speed.device == "cuda" and not torch.cuda.is_available():
        raise UserError("speed.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    cuda = speed.device == "cuda" or (speed.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        if speed.deterministic:  # cuBLAS needs its workspace fixed before its first call
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.set_device(device)
        cuda_settings(speed.precision, speed.deterministic)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo",
                                timeout=datetime.timedelta(minutes=speed.collective_timeout_min))
    return device, rank, world
