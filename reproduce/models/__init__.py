"""Every network of the paper from one spec: `build_model(dataset=..., depth=..., block=..., unit=..., shortcut=...)`."""
import torch
from torch.utils.flop_counter import FlopCounterMode

from .resnet import ResNet, build_model
from .spec import SHORTCUT_PARAMS, ModelSpec, parse_spec
from .units import UNITS


def describe(**spec) -> dict:
    """Parameter count and multiply-adds of one forward pass at the dataset's input size (32 or 224)."""
    spec = parse_spec(spec)
    with torch.device("meta"):  # shapes only: a 1001-layer net is described without computing it
        model = build_model(**spec.model_dump()).eval()
        x = torch.zeros(1, 3, spec.input_size, spec.input_size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return {
        **spec.model_dump(exclude_none=True),
        "input_size": spec.input_size,
        "params": sum(p.numel() for p in model.parameters()),
        "multiply_adds": counter.get_total_flops() // 2,  # the counter reports 2 FLOPs per multiply-add
        "residual_units": len(model.units()),
    }


__all__ = ["ModelSpec", "ResNet", "SHORTCUT_PARAMS", "UNITS", "build_model", "describe", "parse_spec"]
