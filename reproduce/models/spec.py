"""The model spec: which network to build, checked before anything is built."""
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import UserError, explain

# ImageNet bottleneck networks: units per stage (fb.resnet.torch `models/preresnet.lua`).
IMAGENET_STAGES = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
# CIFAR: weight layers per unit; depth = 3 stages * n units * layers + conv1 + classifier.
CIFAR_LAYERS = {"basic": 2, "bottleneck": 3, "single": 1}
PAPER_DEPTHS = (20, 32, 44, 56, 110, 164, 1001, 1202)
# Which extra keys each shortcut takes, with their defaults (the paper's Table 1 settings).
SHORTCUT_PARAMS = {
    "identity": {},
    "conv1x1": {},
    "scaling": {"shortcut_scale": 0.5, "residual_scale": 1.0},
    "exclusive_gating": {"gate_bias": -6.0},
    "shortcut_only_gating": {"gate_bias": -6.0},
    "dropout": {"dropout_p": 0.5},
}


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Literal["cifar10", "cifar100", "imagenet"]
    depth: int = Field(gt=0, description="CIFAR: 6n+2 basic, 9n+2 bottleneck, 3n+2 single; ImageNet: 50, 101, 152, 200")
    block: Optional[Literal["basic", "bottleneck", "single"]] = None
    unit: Literal["original", "bn_after_add", "relu_before_add", "relu_only_preact", "full_preact"] = "full_preact"
    shortcut: Literal[tuple(SHORTCUT_PARAMS)] = "identity"
    shortcut_scale: Optional[float] = Field(None, description="scaling: λ on the shortcut (0.5)")
    residual_scale: Optional[float] = Field(None, description="scaling: scale of F (1.0)")
    gate_bias: Optional[float] = Field(None, description="gating: initial gate bias b_g (-6)")
    dropout_p: Optional[float] = Field(None, ge=0, lt=1, description="dropout: drop probability (0.5)")
    # Which conv of a bottleneck carries a stage's stride: the first 1x1 (resnet-pre-act.lua on CIFAR;
    # [1]'s released Caffe models on ImageNet, e.g. res3a_branch2a) or the 3x3 (fb.resnet.torch
    # models/preresnet.lua and resnet.lua, the later "ResNet v1.5"). Bottleneck networks only.
    stride_on: Optional[Literal["1x1", "3x3"]] = Field(None, description="bottleneck: conv with the stride (1x1)")
    # ImageNet's stem max-pool, 3x3 stride 2 either way: "caffe" as [1]'s prototxts (pool1: no padding,
    # Caffe's ceil rounding), "torch" as fb.resnet.torch (padding 1, floor): the same 56x56 output from
    # 224, the windows a pixel apart. ImageNet only.
    pool1: Optional[Literal["caffe", "torch"]] = Field(None, description="ImageNet stem max-pool (torch)")
    activation_checkpointing: bool = Field(False, description="recompute units in backward: less memory, more time")

    @model_validator(mode="after")
    def _check(self):
        if self.dataset == "imagenet":
            if self.block not in (None, "bottleneck"):
                raise ValueError(f"block: ImageNet networks are bottleneck networks (got '{self.block}')")
            self.block = "bottleneck"
            if self.depth not in IMAGENET_STAGES:
                raise ValueError(f"depth: {self.depth} is not an ImageNet depth; allowed: "
                                 + ", ".join(map(str, IMAGENET_STAGES)))
        else:
            if self.block is None:
                raise ValueError("missing required key 'block' for CIFAR: basic, bottleneck or single")
            k = 3 * CIFAR_LAYERS[self.block]
            if (self.depth - 2) % k or self.depth < k + 2:
                examples = ", ".join(str(d) for d in range(k + 2, 1203, k) if d in PAPER_DEPTHS) or k + 2
                raise ValueError(f"depth: {self.depth} is not {k}n+2 for block '{self.block}' "
                                 f"(e.g. {examples})")
        if self.pool1 is not None and self.dataset != "imagenet":
            raise ValueError(f"pool1: only ImageNet networks have a stem max-pool (dataset '{self.dataset}')")
        if self.stride_on is not None and self.block != "bottleneck":
            raise ValueError(f"stride_on: only bottleneck units have a 1x1 and a 3x3 conv (block '{self.block}')")
        allowed = SHORTCUT_PARAMS[self.shortcut]
        for key in ("shortcut_scale", "residual_scale", "gate_bias", "dropout_p"):
            if getattr(self, key) is None:
                setattr(self, key, allowed.get(key))
            elif key not in allowed:
                takes = ", ".join(allowed) or "no parameters"
                raise ValueError(f"{key}: shortcut '{self.shortcut}' has no {key} (it takes {takes})")
        return self

    @property
    def stride(self) -> Optional[str]:
        """The conv carrying a bottleneck stage's stride: stride_on, else the first 1x1 (resnet-pre-act.lua, [1])."""
        return (self.stride_on or "1x1") if self.block == "bottleneck" else None

    @property
    def stem_pool(self) -> Optional[str]:
        """ImageNet's stem max-pool: pool1, else fb.resnet.torch's (padding 1)."""
        return (self.pool1 or "torch") if self.dataset == "imagenet" else None

    @property
    def classes(self) -> int:
        return {"cifar10": 10, "cifar100": 100, "imagenet": 1000}[self.dataset]

    @property
    def input_size(self) -> int:
        return 224 if self.dataset == "imagenet" else 32


def parse_spec(spec: dict) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return spec
    try:
        return ModelSpec(**spec)
    except ValidationError as e:
        raise explain(e, ModelSpec, "model spec") from None
    except TypeError as e:
        raise UserError(f"invalid model spec: {e}") from None
