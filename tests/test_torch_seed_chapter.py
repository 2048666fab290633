"""The seed chapter (d2l, "Parameter Initialization", PyTorch) as multiinit lines.

The chapter's net is ``nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(1))``; the
same lazy architecture is built wider here (256 and 128 units on 128 features) so that every
weight has 32,768 values to check statistically. Each example is written both as a rule set
for ``mi.apply`` and as the chapter's own ``net.apply(fn)`` with compiled specs inside ``fn``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import multiinit as mi
from multiinit import stats, torch as mit

D2L_LAW = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])


def d2l_my_init(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The chapter's my_init in NumPy: U(-10, 10), then zero where |w| < 5."""
    w = rng.uniform(-10, 10, shape)
    return w * (np.abs(w) >= 5)


MY_INIT = mi.custom(d2l_my_init, name="torch.seed_chapter.my_init")


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(128))
    net(torch.rand(2, 128))  # materializes the lazy layers: they become nn.Linear
    assert type(net[0]) is nn.Linear and type(net[2]) is nn.Linear
    return net


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _passes(x: np.ndarray, spec: mi.Spec) -> None:
    verdict = stats.check(x, spec)
    assert verdict.passed, f"{spec!r}: {verdict}"


def _linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if type(m) is nn.Linear]


# --------------------------------------------------------------------------- 1: normal, zero bias


def _init_normal(module: nn.Module) -> None:
    if type(module) == nn.Linear:  # noqa: E721 - the chapter's own test
        mit.normal_(module.weight, mean=0, std=0.01)
        mit.zeros_(module.bias)


@pytest.mark.parametrize("how", ["rules", "net.apply"])
def test_normal_weights_and_zero_biases(how) -> None:
    net = _net()
    if how == "rules":
        mi.apply(net, [("bias", mi.zeros()), (nn.Linear, mi.normal(mean=0, std=0.01))], seed=0)
    else:
        net.apply(_init_normal)
    for layer in _linears(net):
        _passes(_np(layer.weight), mi.normal(0, 0.01))
        assert np.array_equal(_np(layer.bias), np.zeros(layer.out_features, dtype=np.float32))


# --------------------------------------------------------------------------- 2: constant


@pytest.mark.parametrize("how", ["rules", "net.apply"])
def test_constant_weights(how) -> None:
    net = _net()
    if how == "rules":
        mi.apply(net, {"weight": mi.constant(1), "bias": mi.zeros()})
    else:
        one_, zero_ = mit.constant(1), mit.zeros()

        def init_constant(module: nn.Module) -> None:
            if type(module) == nn.Linear:  # noqa: E721
                one_(module.weight)
                zero_(module.bias)

        net.apply(init_constant)
    assert net[0].weight.detach().eq(1).all() and net[2].weight.detach().eq(1).all()
    assert net[0].bias.detach().eq(0).all() and net[2].bias.detach().eq(0).all()


# --------------------------------------------------------------------------- 3: xavier here, 42 there


@pytest.mark.parametrize("how", ["rules", "net.apply"])
def test_xavier_on_the_first_layer_and_42_on_the_last(how) -> None:
    net = _net()
    biases = [_np(net[0].bias).copy(), _np(net[2].bias).copy()]
    if how == "rules":
        mi.apply(net, {"0.weight": mi.xavier_uniform(), "2.weight": mi.constant(42)}, seed=0)
    else:
        xavier_, fortytwo_ = mit.xavier_uniform(), mit.constant(42)

        def init_xavier(module: nn.Module) -> None:
            if type(module) == nn.Linear:  # noqa: E721
                xavier_(module.weight)

        def init_42(module: nn.Module) -> None:
            if type(module) == nn.Linear:  # noqa: E721
                fortytwo_(module.weight)

        net[0].apply(init_xavier)
        net[2].apply(init_42)
    w0 = _np(net[0].weight)
    _passes(w0, mi.xavier_uniform())
    assert np.abs(w0).max() <= math.sqrt(6 / (128 + 256))  # hand-computed bound of Linear(128, 256)
    assert (_np(net[2].weight) == 42).all()
    # The chapter's rules touch only weights: the biases keep torch's defaults.
    assert np.array_equal(_np(net[0].bias), biases[0]) and np.array_equal(_np(net[2].bias), biases[1])


# --------------------------------------------------------------------------- 4: the custom law


def _torch_my_init(module: nn.Module) -> None:
    """The chapter's own my_init, verbatim in torch."""
    if type(module) == nn.Linear:  # noqa: E721
        nn.init.uniform_(module.weight, -10, 10)
        module.weight.data *= module.weight.data.abs() >= 5


@pytest.mark.parametrize("spec", [D2L_LAW, MY_INIT], ids=["mixture", "custom my_init"])
@pytest.mark.parametrize("how", ["rules", "net.apply"])
def test_the_custom_law_is_u5_10_zero_u_minus10_minus5(spec, how) -> None:
    net = _net()
    if how == "rules":
        mi.apply(net, {"weight": spec}, seed=0)
    else:
        fill_ = mi.compile(spec, "torch")
        net.apply(lambda m: fill_(m.weight) if type(m) == nn.Linear else None)  # noqa: E721
    torch.manual_seed(1)
    chapter = _net(seed=1)
    chapter.apply(_torch_my_init)
    for ours, theirs in zip(_linears(net), _linears(chapter), strict=True):
        x = _np(ours.weight)
        # The analytic law: atom 1/2 at 0, 1/4 on each of U(5, 10) and U(-10, -5) ...
        _passes(x, D2L_LAW)
        # ... and the chapter's own torch code draws the same law.
        check = stats.check_same(x, _np(theirs.weight))
        assert check.passed, str(check)
