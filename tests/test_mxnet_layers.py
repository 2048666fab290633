"""Layers multiinit does not know, on Gluon (issue 18 for MXNet): a user block registered by class
gets its kind, its layout's fans and its bias's fans in mi.apply, mi.select, the presets and
mi.plan, at once and through deferred initialization; before it is registered, mi.plan flags its
parameters that a fan-based law would fill; a spec that states its fan axes reads them off the
stored shape."""

from __future__ import annotations

import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon
from mxnet.gluon import nn

import multiinit as mi
from multiinit import stats
from multiinit.mxnet import params_of


class InOutDense(gluon.HybridBlock):
    """A dense layer that stores its weight (in, out), as GPT-2's Conv1D does."""

    def __init__(self, units: int, in_units: int = 0, **kwargs):
        super().__init__(**kwargs)
        self._units = units
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(in_units, units), allow_deferred_init=True)
            self.bias = self.params.get("bias", shape=(units,), init="zeros")

    def infer_shape(self, x, *args):
        # MXNet cannot infer a dot's right operand from its output: say it (deferred init).
        self.weight.shape = (x.shape[-1], self._units)

    def hybrid_forward(self, F, x, weight, bias):
        return F.broadcast_add(F.dot(x, weight), bias)


@pytest.fixture
def registry():
    with mi.layers.isolated():
        yield


def block(in_units: int = 128, deferred: bool = False):
    net = nn.Sequential()
    net.add(
        InOutDense(512, in_units=0 if deferred else in_units), nn.Dense(10, in_units=0 if deferred else 512)
    )
    net.initialize()
    return net


def value(net, path: str) -> np.ndarray:
    return dict(net._collect_params_with_prefix())[path].data().asnumpy()


def test_an_unknown_block_is_flagged_in_the_plan_before_it_is_registered(registry) -> None:
    net = block()
    rules = {"0.weight": mi.kaiming_uniform(a=math.sqrt(5)), "0.bias": mi.zeros(), "1.weight": mi.he_normal()}
    plan = mi.plan(net, rules)
    rows = {row.path: row for row in plan}
    assert rows["0.weight"].kind == "unknown" and not rows["0.weight"].known and rows["0.weight"].guessed
    assert not rows["0.bias"].guessed  # zeros use no fans: nothing is guessed
    assert rows["1.weight"].known and not rows["1.weight"].guessed
    assert [row.path for row in plan.guesses] == ["0.weight"]
    # Read as a plain (out, in) weight, (128, 512) gives fan_in 512: the wrong law, flagged.
    assert rows["0.weight"].fans == (512, 128)


def test_a_block_registered_by_class_gets_its_kind_and_fans(registry) -> None:
    mi.register_layer(InOutDense, kind="dense", layout={"weight": "in,out"}, fans_from="weight")
    net = block()
    params = {p.path: p for p in params_of(net)}
    assert params["0.weight"].kind == "dense" and params["0.weight"].known
    assert params["0.weight"].view.logical_shape == (512, 128) and params["0.weight"].view.fans == (128, 512)
    assert params["0.bias"].fans == (128, 512)  # from the weight its registration names
    plan = mi.plan(net, {"0.weight": mi.he_uniform()})
    assert not plan.guesses and {row.path: row for row in plan}["0.weight"].fans == (128, 512)
    # kaiming_uniform(a=sqrt(5)) on 128 -> 512: U(+-1/sqrt(128)), not 1/sqrt(512) (n = 65,536).
    mi.apply(
        net,
        {
            "0.weight": mi.kaiming_uniform(a=math.sqrt(5)),
            "0.bias": mi.variance_scaling(1 / 3, "fan_in", "uniform"),
        },
        seed=0,
    )
    bound = 1 / math.sqrt(128)
    for path in ("0.weight", "0.bias"):
        verdict = stats.check(value(net, path), mi.uniform(-bound, bound), reference_seed=None)
        assert verdict.passed, f"{path}: {verdict}"


def test_kind_selectors_and_presets_reach_a_registered_block(registry) -> None:
    unknown = block()
    before = value(unknown, "0.weight").copy()
    mi.apply(unknown, [(mi.select(kind="dense", role="weight", optional=True), mi.ones())])
    np.testing.assert_array_equal(value(unknown, "0.weight"), before)  # not a dense layer yet
    mi.register_layer(InOutDense, kind="dense", layout={"weight": "in,out"}, fans_from="weight")
    net = block()
    mi.apply(net, [(mi.select(kind="dense"), mi.constant(0.5))])
    assert (value(net, "0.weight") == 0.5).all() and (value(net, "0.bias") == 0.5).all()
    mi.apply(net, mi.presets.torch_default, seed=1)
    bound = 1 / math.sqrt(128)
    assert 0.95 * bound < np.abs(value(net, "0.weight")).max() <= bound


def test_a_registered_block_with_deferred_shapes_gets_the_same_values(registry) -> None:
    mi.register_layer(InOutDense, kind="dense", layout={"weight": "in,out"}, fans_from="weight")
    rules = {
        "0.weight": mi.he_normal(),
        "0.bias": mi.variance_scaling(1 / 3, "fan_in", "uniform"),
        "1.weight": mi.orthogonal(),
    }
    x = mx.nd.ones((2, 128))
    deferred = block(deferred=True)
    mi.apply(deferred, rules, seed=3)
    deferred(x)
    eager = block()
    mi.apply(eager, rules, seed=3)
    for path in ("0.weight", "0.bias", "1.weight", "1.bias"):
        np.testing.assert_array_equal(value(deferred, path), value(eager, path), err_msg=path)


def test_a_spec_with_fan_axes_reads_them_off_the_stored_shape() -> None:
    # Without registering the block: the spec says which stored axis is in (0) and out (1).
    spec = mi.with_axes(mi.he_uniform(), in_axis=0, out_axis=1)
    net = block()
    mi.apply(net, {"0.weight": spec}, seed=0)
    bound = math.sqrt(6 / 128)
    verdict = stats.check(value(net, "0.weight"), mi.uniform(-bound, bound), reference_seed=None)
    assert verdict.passed, str(verdict)
    # The compiled initializer reads them off the array it fills.
    arr = mx.nd.zeros((128, 512))
    mi.compile(spec, "mxnet", seed=0)(mx.init.InitDesc("w_weight"), arr)
    verdict = stats.check(arr.asnumpy(), mi.uniform(-bound, bound), reference_seed=None)
    assert verdict.passed, str(verdict)
