"""Resumable checkpoints (model, optimizer, iteration and RNG states), written atomically; and the
weights of a finished run, loaded safely."""
import hashlib
from pathlib import Path

import torch

from .errors import UserError
from .files import atomic_write


def save(path, state: dict):
    """torch.save through a file object: the bytes don't depend on the temporary file's name (a path
    would name the zip's records after it), so DVC sees the same hash for the same content."""
    def write(tmp):
        with open(tmp, "wb") as f:
            torch.save(state, f)
    atomic_write(path, write)


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


def load_weights(source) -> dict:
    """A finished run's model.pt ({"model": state dict, "config": its RunConfig, "seed", "status"}) from
    a path or a URL. weights_only: a file from elsewhere can't run code as it loads."""
    source = str(source)
    what = "a model.pt written by a finished run (runs/EXPERIMENT/seedSEED/model.pt)"
    try:
        if "://" in source:  # cached under the URL's hash: every run's file is called model.pt
            name = hashlib.sha256(source.encode()).hexdigest()[:16] + "-model.pt"
            state = torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=True, file_name=name)
        else:
            state = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{source}: no such file; expected {what}") from None
    except OSError as e:  # a folder, no permission, a URL that doesn't answer
        raise UserError(f"cannot read {source}: {e}; expected {what}") from None
    except Exception as e:  # not a torch file, or one holding more than tensors and plain values
        raise UserError(f"{source} is not {what} ({type(e).__name__})") from None
    if not isinstance(state, dict) or not {"model", "config", "status"} <= state.keys():
        raise UserError(f"{source} is not {what}: it lacks the model/config/status entries")
    if state["status"] != "finished":
        raise UserError(f"{source} holds the weights of a {state['status']} run; only a finished run's load")
    return state
