"""Resumable checkpoints (model, optimizer, iteration and RNG states), written atomically."""
from pathlib import Path

import torch

from ..errors import UserError


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
