"""A finished run's weights (its model.pt), from a path or a URL, loaded without running any code in them."""
import hashlib

import torch

from ..errors import UserError


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
