"""SGD with momentum in the form of each implementation behind the paper's numbers (`sgd` of a recipe).

With weight decay λ folded into the gradient, g = ∇L + λw:
- `caffe`, Caffe's SGDSolver (sgd_solver.cpp ComputeUpdateValue, Regularize): v ← μv + lr·g, w ← w − v.
  The learning rate enters the velocity, so a change of lr (the warm-up's end at iteration 400, each
  ÷10 step) takes effect over the following ~1/(1−μ) iterations.
- `torch`, torch.optim.SGD's momentum (dampening 0): v ← μv + g (v = g at the first step), w ← w − lr·v:
  a change of lr scales the whole velocity at once. (Torch7's optim.sgd with its default dampening,
  which equals the momentum, would give v ← μv + (1 − μ)g; no recipe uses that form.)
- `nesterov`, the same with Nesterov's step (fb.resnet.torch train.lua: nesterov = true, dampening 0):
  w ← w − lr·(g + μv).
The three agree while the lr is constant (v_caffe = lr·v_torch). torch.optim.SGD has no Caffe form,
hence this class; it keeps torch.optim's interface (param_groups with "lr", zero_grad, step, state_dict).
"""
import torch

from ..models.shortcuts import Gate

FORMS = ("caffe", "torch", "nesterov")


class SGD:
    def __init__(self, groups: list[dict], lr: float, momentum: float, form: str):
        if form not in FORMS:
            raise ValueError(f"sgd form '{form}': expected one of {', '.join(FORMS)}")
        self.param_groups = [{"lr": lr, "weight_decay": 0.0, **g, "params": list(g["params"])} for g in groups]
        self.momentum, self.form = momentum, form
        self.velocity: dict[int, torch.Tensor] = {}  # by the parameter's position in param_groups

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self, set_to_none: bool = True):
        for p in self._params():
            p.grad = None

    @torch.no_grad()
    def step(self):
        index = 0
        for group in self.param_groups:
            params = group["params"]
            ids = range(index, index + len(params))
            index += len(params)
            live = [(i, p) for i, p in zip(ids, params) if p.grad is not None]
            if not live:
                continue
            ids, params = zip(*live)
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            self._update(list(ids), list(params), grads, group["lr"])

    def _update(self, ids, params, grads, lr):
        mu, new = self.momentum, [i for i in ids if i not in self.velocity]
        if self.form == "caffe":
            for i, g in zip(ids, grads):
                if i in new:
                    self.velocity[i] = torch.zeros_like(g)
            v = [self.velocity[i] for i in ids]
            torch._foreach_mul_(v, mu)
            torch._foreach_add_(v, grads, alpha=lr)
            torch._foreach_sub_(params, v)
            return
        for i, g in zip(ids, grads):
            if i in new:  # Torch7 and torch.optim start the velocity at the first gradient
                self.velocity[i] = g.detach().clone()
        old = [self.velocity[i] for i in ids if i not in new]
        if old:
            torch._foreach_mul_(old, mu)
            torch._foreach_add_(old, [g for i, g in zip(ids, grads) if i not in new])
        v = [self.velocity[i] for i in ids]
        direction = torch._foreach_add(grads, v, alpha=mu) if self.form == "nesterov" else v
        torch._foreach_add_(params, direction, alpha=-lr)

    def state_dict(self) -> dict:
        return {"form": self.form, "momentum": self.momentum, "velocity": dict(self.velocity),
                "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]}

    def load_state_dict(self, state: dict):
        if state["form"] != self.form:
            raise ValueError(f"optimizer state of form '{state['form']}', this optimizer is '{self.form}'")
        device = self._params()[0].device
        self.velocity = {i: v.to(device) for i, v in state["velocity"].items()}
        for group, saved in zip(self.param_groups, state["param_groups"]):
            group.update(saved)


def make_optimizer(model, p: dict) -> SGD:
    """SGD with momentum in the recipe's form (`sgd`: Caffe's, Torch's or Torch's Nesterov: SGD above).
    Weight decay on every parameter as train.lua, except BN's gamma/beta when `weight_decay_bn` is false
    and the gates' b_g unless `weight_decay_gate_bias`."""
    exempt = {id(m.conv.bias) for m in model.modules() if isinstance(m, Gate)} \
        if not p["weight_decay_gate_bias"] else set()
    if not p["weight_decay_bn"]:
        exempt |= {id(q) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for q in m.parameters()}
    groups = [{"name": "decayed", "weight_decay": p["weight_decay"],
               "params": [q for q in model.parameters() if id(q) not in exempt]},
              {"name": "not decayed", "weight_decay": 0.0, "params": [q for q in model.parameters() if id(q) in exempt]}]
    return SGD([g for g in groups if g["params"]], lr=p["lr"], momentum=p["momentum"], form=p["sgd"])
