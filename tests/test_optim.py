"""The three forms of SGD with momentum: Torch's (= torch.optim.SGD), its Nesterov variant, and Caffe's."""
import copy

import pytest
import torch

from reproduce.training.optim import SGD

LRS = [0.01] * 3 + [0.1] * 4 + [0.01] * 3  # a warm-up's end and a ÷10 step
DECAY = 1e-2


def start():
    """Weights of a small least-squares problem, and the problem's data."""
    g = torch.Generator().manual_seed(0)
    w = [torch.randn(5, 3, generator=g), torch.randn(3, generator=g)]
    return [t.requires_grad_() for t in w], (torch.randn(16, 5, generator=g), torch.randn(16, 3, generator=g))


def loss(w, data):
    x, y = data
    return ((x @ w[0] + w[1] - y) ** 2).mean()


def ours(form):
    return lambda w: SGD([{"params": w, "weight_decay": DECAY}], lr=LRS[0], momentum=0.9, form=form)


def train(make, lrs=LRS, w=None, opt=None):
    fresh, data = start()
    w = w or fresh
    opt = opt or make(w)
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        loss(w, data).backward()
        opt.step()
    return w, opt


@pytest.mark.parametrize("form,nesterov", [("torch", False), ("nesterov", True)])
def test_the_torch_forms_are_torch_optim_sgd(form, nesterov):
    """Torch7's optim.sgd and torch.optim.SGD: v = μv + g (v = g at first), w -= lr·(v or g + μv)."""
    a, _ = train(ours(form))
    b, _ = train(lambda w: torch.optim.SGD(w, lr=LRS[0], momentum=0.9, nesterov=nesterov, weight_decay=DECAY))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


def test_caffe_and_torch_agree_while_the_lr_is_constant_and_differ_when_it_changes():
    a, _ = train(ours("caffe"), LRS[:3])
    b, _ = train(ours("torch"), LRS[:3])
    for x, y in zip(a, b):  # three steps at 0.01: v_caffe = lr·v_torch, the same weights
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    a, _ = train(ours("caffe"), LRS[:4])
    b, _ = train(ours("torch"), LRS[:4])
    assert not torch.allclose(a[0], b[0], rtol=1e-4)  # at 0.1, Torch's form applies it to the whole v


def test_caffe_form_by_hand():
    """Caffe's SGDSolver: v ← μv + lr·(∇L + λw), w ← w − v, with the lr of each step inside v."""
    got, _ = train(ours("caffe"))
    w, data = start()
    v = [torch.zeros_like(t) for t in w]
    for lr in LRS:
        grads = torch.autograd.grad(loss(w, data), w)
        with torch.no_grad():
            for i, (t, g) in enumerate(zip(w, grads)):
                v[i] = 0.9 * v[i] + lr * (g + DECAY * t)
                t -= v[i]
    for x, y in zip(got, w):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("form", ["caffe", "torch", "nesterov"])
def test_resuming_from_a_state_dict_is_exact(form):
    whole, _ = train(ours(form))
    half, opt = train(ours(form), LRS[:5])
    state = copy.deepcopy(opt.state_dict())  # as a checkpoint stores it
    w = [t.detach().clone().requires_grad_() for t in half]
    resumed = ours(form)(w)
    resumed.load_state_dict(state)
    w, _ = train(None, LRS[5:], w=w, opt=resumed)
    for x, y in zip(whole, w):
        assert torch.equal(x, y)


def test_an_unknown_form_is_refused():
    with pytest.raises(ValueError, match="caffe, torch, nesterov"):
        SGD([{"params": [torch.zeros(1, requires_grad=True)]}], lr=0.1, momentum=0.9, form="adam")
