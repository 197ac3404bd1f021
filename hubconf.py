"""torch.hub entry point: the paper's networks, with the weights of a run of this study if you like.

    import torch
    # a pre-activation ResNet-164 for CIFAR-10, freshly initialised (He normal, fan-out)
    net = torch.hub.load("OWNER/REPO", "preact_resnet", depth=164, dataset="cifar10")
    # a finished run's weights (a path or an http(s) URL of its model.pt), checked against the spec
    net = torch.hub.load(".", "preact_resnet", source="local", depth=110, dataset="cifar10",
                         unit="original", weights="runs/r110_original/seed0/model.pt")
    logits = net(images)  # images normalised per channel as reproduce/data/augment.py does

Spec keys are those of params.yaml's experiments (reproduce/models/spec.py): dataset, depth, block,
unit, shortcut (+ shortcut_scale, residual_scale, gate_bias, dropout_p), stride_on, pool1.
"""
dependencies = ["torch", "pydantic"]  # pydantic checks the spec (reproduce/models/spec.py)

# The paper's CIFAR depths and their units: ResNet-20..110 and 1202 basic (two 3x3), 164 and 1001
# bottleneck (appendix; resnet-pre-act.lua). Table 3's "110 (1layer)" needs block="single".
PAPER_BLOCKS = {20: "basic", 32: "basic", 44: "basic", 56: "basic", 110: "basic", 1202: "basic",
                164: "bottleneck", 1001: "bottleneck"}


def preact_resnet(depth, dataset, unit="full_preact", block=None, weights=None, **spec):
    """ResNet-`depth` for `dataset` (cifar10, cifar100, imagenet) with `unit` (Fig. 4; default the full
    pre-activation unit), in eval mode. `weights`: a path or URL of a model.pt a run of this study wrote;
    its network must be the one asked for, else UserError names the keys that differ."""
    from reproduce.weights.load import load_weights
    from reproduce.errors import UserError
    from reproduce.models import build_model, parse_spec

    if block is None and dataset != "imagenet":  # ImageNet networks are bottleneck networks (spec.py)
        if depth not in PAPER_BLOCKS:
            raise UserError(f"depth {depth} is not one of the paper's CIFAR depths ({', '.join(map(str, PAPER_BLOCKS))}): "
                            "pass block='basic' (6n+2), 'bottleneck' (9n+2) or 'single' (3n+2)")
        block = PAPER_BLOCKS[depth]
    asked = parse_spec({"dataset": dataset, "depth": depth, "unit": unit, "block": block, **spec})
    model = build_model(**asked.model_dump())
    if weights is not None:
        state = load_weights(weights)
        want, have = computed(asked), computed(parse_spec(state["config"].get("model", {})))
        differ = [key for key in want if want[key] != have[key]]
        if differ:
            shown = ", ".join(f"{k}: asked {want[k]!r}, weights {have[k]!r}" for k in differ)
            raise UserError(f"{weights} holds another network ({shown}); ask for the network it holds")
        model.load_state_dict(state["model"])
    return model.eval()


def computed(spec) -> dict:
    """What of a spec decides the network's function: not the memory knob, and a bottleneck's stride
    and ImageNet's stem pool where they land (unset: the 1x1, fb.resnet.torch's pool)."""
    return {**spec.model_dump(exclude={"stride_on", "pool1", "activation_checkpointing"}), "stride_on": spec.stride,
            "pool1": spec.stem_pool}
