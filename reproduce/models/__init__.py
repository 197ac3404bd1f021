"""Every network of the paper from one spec: `build_model(dataset=..., depth=..., block=..., unit=..., shortcut=...)`."""
import importlib

from .spec import SHORTCUT_PARAMS, ModelSpec, parse_spec

_LAZY = {"build_model": "resnet", "describe": "resnet", "ResNet": "resnet", "UNITS": "units"}


def __getattr__(name):
    """torch is imported on first use, so commands that only check params start in a blink."""
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


__all__ = ["ModelSpec", "SHORTCUT_PARAMS", "parse_spec", *_LAZY]
