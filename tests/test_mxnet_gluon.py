"""Everywhere Gluon takes an initializer, with mx.nd and mx.np arrays, and the seed chapter's
MXNet examples (d2l "Parameter Initialization", MXNet tab) written with multiinit."""

from __future__ import annotations

import math

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import multiinit as mi
from multiinit import mxnet as mim, stats

from matrix import seed_chapter_my_init
from test_mxnet_initializer import mode  # noqa: F401 - the nd / np array-mode fixture


def array_type():
    return mx.np.ndarray if mx.util.is_np_array() else mx.nd.NDArray


def ones_input(shape):
    return mx.np.ones(shape) if mx.util.is_np_array() else mx.nd.ones(shape)


PATHS = ["net.initialize", "param.initialize", "weight_initializer", "collect_params"]


def initialized_dense(path: str, init, units: int = 256, in_units: int = 128):
    """A Dense layer whose weight was initialized with ``init`` through Gluon ``path``."""
    net = nn.Sequential()
    if path == "weight_initializer":
        net.add(nn.Dense(units, in_units=in_units, weight_initializer=init))
        net.initialize()
        return net[0]
    net.add(nn.Dense(units, in_units=in_units))
    net.initialize()
    if path == "net.initialize":
        net.initialize(init=init, force_reinit=True)
    elif path == "param.initialize":
        net[0].weight.initialize(init=init, force_reinit=True)
    else:
        net.collect_params(".*weight").initialize(init, force_reinit=True)
    return net[0]


@pytest.mark.usefixtures("mode")
@pytest.mark.parametrize("path", PATHS)
def test_every_gluon_path_draws_the_spec(path) -> None:
    spec = mi.he_normal()  # MXNet has no truncated normal: nothing native could pass this
    layer = initialized_dense(path, mi.compile(spec, "mxnet", seed=1))
    weight = layer.weight.data()
    assert isinstance(weight, array_type())
    verdict = stats.check(weight.asnumpy(), spec)
    assert verdict.passed, f"{path}: {verdict}"
    # The bias keeps its own initializer ("zeros"), as it does under mx.init.Xavier.
    assert (layer.bias.data().asnumpy() == 0).all()


@pytest.mark.usefixtures("mode")
@pytest.mark.parametrize("path", PATHS)
def test_every_gluon_path_gives_mxnet_numbers_for_a_law_mxnet_has(path) -> None:
    mx.random.seed(8)
    ours = initialized_dense(path, mim.xavier_uniform(), 20, 10).weight.data().asnumpy()
    mx.random.seed(8)
    theirs = initialized_dense(path, mx.init.Xavier(), 20, 10).weight.data().asnumpy()
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.usefixtures("mode")
def test_a_deferred_layer_is_filled_at_its_first_forward_with_the_fans_it_then_has() -> None:
    net = nn.Sequential()
    net.add(nn.Dense(300, weight_initializer=mim.xavier_uniform()))
    net.initialize()
    net(ones_input((2, 50)))
    w = net[0].weight.data().asnumpy()
    assert w.shape == (300, 50)
    bound = math.sqrt(6 / (50 + 300))  # by hand: fan_in 50, fan_out 300
    verdict = stats.check(w, mi.uniform(-bound, bound), reference_seed=None)
    assert verdict.passed, str(verdict)


@pytest.mark.usefixtures("mode")
def test_a_fan_based_spec_on_a_bias_raises_through_gluon_naming_it() -> None:
    layer = nn.Dense(4, in_units=3)
    layer.initialize()
    with pytest.raises(mi.ShapeError, match=f"'{layer.bias.name}' of shape \\(4,\\)"):
        layer.bias.initialize(init=mim.xavier_uniform(), force_reinit=True)
    bad = nn.Dense(4, in_units=3, bias_initializer=mim.he_normal())
    with pytest.raises(mi.ShapeError, match=f"'{bad.bias.name}'"):
        bad.initialize()
    # A law without fans fills a bias through the same path.
    fine = nn.Dense(4, in_units=3, bias_initializer=mim.constant(0.5))
    fine.initialize()
    assert (fine.bias.data().asnumpy() == 0.5).all()


@pytest.mark.usefixtures("mode")
def test_the_block_runs_forward_after_a_multiinit_initialization() -> None:
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=2, weight_initializer=mim.dirac()), nn.Dense(3, in_units=4 * 4 * 4))
    net.initialize(mim.ones())
    net.hybridize()
    out = net(ones_input((1, 2, 6, 6)))
    # dirac copies channel d to output d (< 2); outputs 2, 3 are 0; the dense sums 2*16 ones.
    np.testing.assert_allclose(out.asnumpy(), np.full((1, 3), 32.0))


# --------------------------------------------------------------------------- the seed chapter
# d2l, "Parameter Initialization", MXNet tab: npx.set_np(), then
#     net = nn.Sequential(); net.add(nn.Dense(8, activation='relu')); net.add(nn.Dense(1))


@pytest.fixture
def chapter_net():
    was = (mx.util.is_np_shape(), mx.util.is_np_array())
    mx.npx.set_np()
    try:
        net = nn.Sequential()
        net.add(nn.Dense(8, activation="relu"))
        net.add(nn.Dense(1))
        net.initialize()
        net(mx.np.random.uniform(size=(2, 4)))
        yield net
    finally:
        mx.util.set_np(shape=was[0], array=was[1])


def _values(net):
    return [p.data().asnumpy().copy() for p in net.collect_params().values()]


def test_chapter_normal_sigma_001_and_zero_bias(chapter_net) -> None:
    net = chapter_net
    mx.random.seed(1)
    net.initialize(init=mx.init.Normal(sigma=0.01), force_reinit=True)
    native = _values(net)
    mx.random.seed(1)
    net.initialize(init=mim.normal(std=0.01), force_reinit=True)
    for ours, theirs in zip(_values(net), native, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert (net[0].bias.data().asnumpy() == 0).all() and (net[1].bias.data().asnumpy() == 0).all()
    wide = initialized_dense("net.initialize", mim.normal(std=0.01))
    verdict = stats.check(wide.weight.data().asnumpy(), mi.normal(std=0.01))
    assert verdict.passed, str(verdict)


def test_chapter_constant_one(chapter_net) -> None:
    net = chapter_net
    net.initialize(init=mim.constant(1), force_reinit=True)
    assert (net[0].weight.data().asnumpy() == 1).all() and (net[1].weight.data().asnumpy() == 1).all()
    assert (net[0].bias.data().asnumpy() == 0).all()


def test_chapter_xavier_on_one_layer_and_42_on_the_next(chapter_net) -> None:
    net = chapter_net
    bias_before = net[0].bias.data().asnumpy().copy()
    mx.random.seed(2)
    net[0].weight.initialize(init=mim.xavier_uniform(), force_reinit=True)
    net[1].initialize(init=mim.constant(42), force_reinit=True)
    ours = net[0].weight.data().asnumpy().copy()
    assert (net[1].weight.data().asnumpy() == 42).all()
    assert (net[1].bias.data().asnumpy() == 0).all()  # its own "zeros" initializer, as in d2l
    np.testing.assert_array_equal(net[0].bias.data().asnumpy(), bias_before)
    mx.random.seed(2)
    net[0].weight.initialize(init=mx.init.Xavier(), force_reinit=True)
    np.testing.assert_array_equal(ours, net[0].weight.data().asnumpy())


class MyInit(mx.init.Initializer):
    """d2l's custom initializer, verbatim but for the print."""

    def _init_weight(self, name, data):
        data[:] = mx.np.random.uniform(-10, 10, data.shape)
        data *= mx.np.abs(data) >= 5


MY_INIT_LAW = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])


def test_chapter_my_init_as_a_custom_law_and_as_a_mixture(chapter_net) -> None:
    net = chapter_net
    net.initialize(mim.custom(seed_chapter_my_init, name="chapter.my_init"), force_reinit=True)
    small = net[0].weight.data().asnumpy()
    assert ((small == 0) | ((np.abs(small) >= 5) & (np.abs(small) <= 10))).all()
    mx.random.seed(6)
    native = initialized_dense("net.initialize", MyInit()).weight.data().asnumpy()
    # MXNet's own MyInit draws the mixture's law: the law written two ways is one law.
    assert all(c.passed for c in stats.check_law(native, stats.law(MY_INIT_LAW, native.shape)))
    for spec in (mi.custom(seed_chapter_my_init, name="chapter.my_init"), MY_INIT_LAW):
        ours = initialized_dense("net.initialize", mi.compile(spec, "mxnet", seed=3)).weight.data().asnumpy()
        verdict = stats.check(ours, MY_INIT_LAW)
        assert verdict.passed, f"{spec!r}: {verdict}"
        same = stats.check_same(ours, native)
        assert same.passed, f"{spec!r} against d2l's MyInit: {same}"
