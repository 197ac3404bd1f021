"""Resumable checkpoints (model, optimizer, iteration and RNG states), written atomically."""
from pathlib import Path

import torch

from ..errors import UserError


def rng_states(device: torch.device, world: int) -> list:
    """Every process's RNG states, by rank (the CPU generator and its own GPU's), gathered on rank 0
    (None elsewhere): each process resumes its own stream (dropout masks differ between processes)."""
    mine = {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    if world == 1:
        return [mine]
    import torch.distributed as dist

    found = [None] * world if dist.get_rank() == 0 else None
    dist.gather_object(mine, found, dst=0)
    return found


def set_rng_state(saved, rank: int, device: torch.device):
    """Restore this process's states from `rng_states`' list (a dict: a checkpoint of one process, whose
    "cuda" entry listed every visible GPU). A rank the checkpoint has no state for keeps its fresh one."""
    if isinstance(saved, dict):
        cuda = saved.get("cuda")
        saved = [{"torch": saved["torch"], "cuda": cuda[device.index or 0] if isinstance(cuda, list)
                  and device.type == "cuda" and len(cuda) > (device.index or 0) else None}]
    if rank >= len(saved):
        print(f"rank {rank}: the checkpoint holds the RNG states of {len(saved)} processes; this one starts afresh")
        return
    torch.set_rng_state(saved[rank]["torch"])
    if device.type == "cuda" and saved[rank].get("cuda") is not None:
        torch.cuda.set_rng_state(saved[rank]["cuda"], device)


def load(path, digest: str):
    """The checkpoint at `path` if there is one; refuses one written for another config."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a file we did not write atomically (copied in, truncated): say so
        raise UserError(f"checkpoint {path} is unreadable ({type(e).__name__}); delete it to start over") from None
    if state.get("digest") != digest:
        raise UserError(f"checkpoint {path} was written for a different run config "
                        f"(digest {state.get('digest')}, this run is {digest}); refusing to resume from it. "
                        f"Delete it, or use another --out/--checkpoint-dir.")
    return state
