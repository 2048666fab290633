"""mi.apply on Gluon blocks: structured paths, roles, layer types and kinds; logical views of
transposed and channels-last convs; a bias gets its weight's fans; seeds and portable mode;
all or nothing; tied parameters (deferred shapes: test_mxnet_onepass.py)."""

from __future__ import annotations

import math

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import multiinit as mi
from multiinit import stats
from multiinit.errors import LawError
from multiinit.mxnet import params_of
from multiinit.rules import portable_rng

from test_mxnet_initializer import mode  # noqa: F401 - the nd / np array-mode fixture


def build() -> nn.Sequential:
    net = nn.Sequential()
    net.add(
        nn.Dense(16, in_units=8),  # 0
        nn.Conv2D(6, 3, in_channels=4, groups=2),  # 1: weight (6, 2, 3, 3)
        nn.BatchNorm(in_channels=6),  # 2
        nn.Conv2DTranspose(10, 3, in_channels=6, groups=2),  # 3: weight (in 6, out/g 5, 3, 3)
        nn.Embedding(5, 3),  # 4
        nn.Conv2D(8, 3, in_channels=4, layout="NHWC"),  # 5: weight (out 8, 3, 3, in 4)
        nn.Conv2D(6, 3, in_channels=6, groups=6),  # 6: depthwise, weight (6, 1, 3, 3)
    )
    net.initialize()
    return net


# path, kind, logical shape, fans used by a fan-based spec: all counted by hand.
EXPECTED = [
    ("0.weight", "dense", (16, 8), (8, 16)),
    ("0.bias", "dense", (16,), (8, 16)),
    ("1.weight", "conv", (6, 2, 3, 3), (18, 54)),
    ("1.bias", "conv", (6,), (18, 54)),
    ("2.gamma", "norm", (6,), None),
    ("2.beta", "norm", (6,), None),
    ("3.weight", "conv_transpose", (10, 3, 3, 3), (27, 90)),  # out 10, in/g 3: not MXNet's (45, 54)
    ("3.bias", "conv_transpose", (10,), (27, 90)),
    ("4.weight", "embedding", (5, 3), (3, 5)),
    ("5.weight", "conv", (8, 4, 3, 3), (36, 72)),
    ("5.bias", "conv", (8,), (36, 72)),
    ("6.weight", "depthwise_conv", (6, 1, 3, 3), (9, 54)),
    ("6.bias", "depthwise_conv", (6,), (9, 54)),
]


def snapshot(net) -> dict[str, np.ndarray]:
    """Every parameter's values (running statistics included), by structured path."""
    return {path: p.data().asnumpy().copy() for path, p in net._collect_params_with_prefix().items()}


def value(net, path: str) -> np.ndarray:
    return dict(net._collect_params_with_prefix())[path].data().asnumpy()


def test_params_are_listed_with_structured_paths_in_definition_order() -> None:
    params = params_of(build())
    got = [
        (
            p.path,
            p.kind,
            p.logical_shape,
            p.fans if p.fans is not None else (p.view.fans if len(p.logical_shape) >= 2 else None),
        )
        for p in params
    ]
    assert got == EXPECTED
    assert [p.order for p in params] == list(range(len(EXPECTED)))  # running stats excluded
    assert [p.role for p in params][:6] == ["weight", "bias", "weight", "bias", "gamma", "beta"]


def _hand_native(path: str, logical: np.ndarray) -> np.ndarray:
    """Logical (out, in/g, *k) -> MXNet's storage for the odd layouts, written out by hand."""
    if path == "3.weight":  # (g*out/g, in/g, k, k) -> (g*in/g, out/g, k, k), g = 2
        out = np.empty((6, 5, 3, 3), logical.dtype)
        for g in range(2):
            for o in range(5):
                for i in range(3):
                    out[g * 3 + i, o] = logical[g * 5 + o, i]
        return out
    if path == "5.weight":  # (out, in, kh, kw) -> (out, kh, kw, in)
        return np.moveaxis(logical, 1, 3)
    return logical


def _hand_logical(path: str, native: np.ndarray) -> np.ndarray:
    """The inverse of ``_hand_native``, also written out by hand."""
    if path == "3.weight":
        logical = np.empty((10, 3, 3, 3), native.dtype)
        for g in range(2):
            for o in range(5):
                for i in range(3):
                    logical[g * 5 + o, i] = native[g * 3 + i, o]
        return logical
    if path == "5.weight":
        return np.moveaxis(native, 3, 1)
    return native


def test_portable_mode_writes_the_reference_draw_in_mxnet_layout() -> None:
    net = build()
    rules = {
        "weight": mi.xavier_uniform(),
        "bias": mi.variance_scaling(1 / 3, "fan_in", "uniform"),
        "gamma": mi.normal(1.0, 0.1),
        "beta": mi.uniform(-1, 1),
    }
    mi.apply(net, rules, seed=7, portable=True)
    for order, (path, _, logical_shape, fans) in enumerate(EXPECTED):
        role = path.split(".")[1]
        spec = rules[role]
        logical = mi.reference.sample(spec, logical_shape, seed=portable_rng(7, order), fans=fans)
        np.testing.assert_array_equal(value(net, path), _hand_native(path, logical), err_msg=path)


@pytest.mark.usefixtures("mode")
def test_a_bias_gets_its_weight_fans_so_torch_default_is_reproduced() -> None:
    net = nn.Sequential()
    net.add(nn.Dense(4096, in_units=25), nn.Embedding(10, 4))  # the preset also has an embedding rule
    net.initialize()
    mi.apply(net, mi.presets.torch_default, seed=0)
    # torch's Linear(25, 4096): weight and bias both U(-1/5, 1/5), by hand.
    for path in ("0.weight", "0.bias"):
        verdict = stats.check(value(net, path), mi.uniform(-0.2, 0.2), reference_seed=None)
        assert verdict.passed, f"{path}: {verdict}"


def test_a_transposed_conv_gets_the_fans_of_its_logical_view() -> None:
    net = nn.Sequential()
    net.add(nn.Conv2DTranspose(64, 3, in_channels=32, groups=2))  # native (32, 32, 3, 3)
    net.initialize()
    mi.apply(net, {"weight": mi.he_uniform()}, seed=1)
    # logical (64, 16, 3, 3): fan_in 16*9 = 144; MXNet's own Xavier would say 32*9 = 288.
    bound = math.sqrt(6 / 144)
    verdict = stats.check(value(net, "0.weight"), mi.uniform(-bound, bound), reference_seed=None)
    assert verdict.passed, str(verdict)


@pytest.mark.parametrize("path", ["3.weight", "5.weight"])
def test_structural_specs_are_drawn_on_the_logical_view(path) -> None:
    net = build()
    mi.apply(net, {path: mi.orthogonal(gain=2.0)}, seed=2)
    native = value(net, path)
    # Undo the storage by hand, then the logical (out, in*k*k) rows must be orthogonal.
    logical = _hand_logical(path, native)
    flat = logical.reshape(logical.shape[0], -1).astype(np.float64)
    np.testing.assert_allclose(flat @ flat.T, 4.0 * np.eye(flat.shape[0]), atol=1e-4)


# --------------------------------------------------------------------------- selectors


def test_selectors_by_path_glob_role_layer_type_and_kind() -> None:
    net = build()
    before = snapshot(net)
    mi.apply(
        net,
        [
            ("0.weight", mi.constant(1)),
            ("*.bias", mi.constant(2)),
            ("gamma", mi.constant(3)),
            (nn.Conv2DTranspose, mi.constant(4)),
            ("embedding", mi.constant(5)),
            (mi.select(kind="depthwise_conv"), mi.constant(6)),
            (nn.Dense, mi.constant(9)),  # matches 0.weight and 0.bias, both taken by earlier rules
        ],
    )
    expected = {
        "0.weight": 1,
        "0.bias": 2,
        "1.bias": 2,
        "2.gamma": 3,
        "3.weight": 4,
        "3.bias": 2,
        "4.weight": 5,
        "5.bias": 2,
        "6.weight": 6,
        "6.bias": 2,
    }
    for path, number in expected.items():
        assert (value(net, path) == number).all(), path
    after = snapshot(net)
    untouched = ["1.weight", "2.beta", "2.running_mean", "2.running_var", "5.weight"]
    for name in untouched:
        assert np.array_equal(after[name], before[name]), name


def test_none_leaves_selected_parameters_alone() -> None:
    net = build()
    bias = value(net, "0.bias").copy()
    mi.apply(net, [("bias", None), (nn.Dense, mi.constant(7))])
    assert (value(net, "0.weight") == 7).all()
    np.testing.assert_array_equal(value(net, "0.bias"), bias)


def test_neutral_selectors_for_dense_and_conv_weights() -> None:
    net = build()
    mi.apply(net, [(mi.select(kind=("dense", "conv"), role="weight"), mi.constant(8))])
    for path in ("0.weight", "1.weight", "5.weight"):
        assert (value(net, path) == 8).all(), path
    assert not (value(net, "6.weight") == 8).all()  # depthwise is its own kind


# --------------------------------------------------------------------------- all or nothing


@pytest.mark.parametrize("case", ["no match", "shape", "eye on conv", "custom raises"])
def test_any_error_leaves_the_block_exactly_as_it_was(case) -> None:
    def broken(rng, shape, dtype):
        raise RuntimeError("law broke")

    rules, error, match = {
        "no match": (
            {"weight": mi.zeros(), "7.weight": mi.ones()},
            mi.RuleError,
            "'7.weight'.*closest paths",
        ),
        "shape": (
            {"weight": mi.zeros(), "gamma": mi.xavier_uniform()},
            mi.ShapeError,
            "'2.gamma' of shape \\(6,\\)",
        ),
        "eye on conv": ({"bias": mi.ones(), "1.weight": mi.eye()}, mi.ShapeError, "'1.weight'"),
        # The failing law is the last parameter's: user laws are drawn before any write.
        "custom raises": (
            {"weight": mi.zeros(), "6.bias": mi.custom(broken, name="apply.broken")},
            LawError,
            "custom law 'apply.broken' at '6.bias' raised RuntimeError: law broke",
        ),
    }[case]
    net = build()
    before = snapshot(net)
    with pytest.raises(error, match=match):
        mi.apply(net, rules, seed=0)
    after = snapshot(net)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_an_uninitialized_block_is_refused_by_name() -> None:
    net = nn.Sequential()
    net.add(nn.Dense(4, in_units=3))
    with pytest.raises(
        mi.RuleError,
        match=r"'0\.weight' \(dense\d+_weight\): it is not initialized.*"
        r"block\.initialize\(\)",
    ):
        mi.apply(net, {"weight": mi.ones()})


# --------------------------------------------------------------------------- seeds, modes, ties


def test_a_seed_reproduces_the_whole_block_whatever_the_global_seed() -> None:
    rules = {"weight": mi.he_normal(), "bias": mi.normal(), "gamma": mi.uniform(0.5, 1.5)}
    mx.random.seed(1)
    a = snapshot(mi.apply(build(), rules, seed=3))
    mx.random.seed(2)
    b = snapshot(mi.apply(build(), rules, seed=3))
    c = snapshot(mi.apply(build(), rules, seed=4))
    for path in a:
        np.testing.assert_array_equal(a[path], b[path], err_msg=path)
    assert not np.array_equal(a["0.weight"], c["0.weight"])
    mx.random.seed(5)
    d = snapshot(mi.apply(build(), rules))
    mx.random.seed(5)
    e = snapshot(mi.apply(build(), rules))
    for path in d:
        np.testing.assert_array_equal(d[path], e[path], err_msg=path)


def test_numpy_mode_blocks_are_filled_with_numpy_arrays(mode) -> None:  # noqa: F811 - the fixture imported above
    net = nn.Sequential()
    net.add(nn.Dense(256, in_units=128))
    net.initialize()
    mi.apply(net, {"weight": mi.lecun_normal(), "bias": mi.ones()}, seed=0)
    weight = net[0].weight.data()
    assert isinstance(weight, mx.np.ndarray if mode == "np" else mx.nd.NDArray)
    verdict = stats.check(weight.asnumpy(), mi.lecun_normal())
    assert verdict.passed, str(verdict)
    assert (net[0].bias.data().asnumpy() == 1).all()


def test_tied_parameters_appear_once() -> None:
    # d2l's shared layer, MXNet tab.
    net = nn.Sequential()
    shared = nn.Dense(8, in_units=8, activation="relu")
    net.add(
        nn.Dense(8, in_units=4, activation="relu"),
        shared,
        nn.Dense(8, in_units=8, activation="relu", params=shared.params),
        nn.Dense(10, in_units=8),
    )
    net.initialize()
    params = params_of(net)
    assert [p.path for p in params] == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    mi.apply(net, {"weight": mi.constant(2)}, seed=0)
    assert net[2].weight is net[1].weight and (net[2].weight.data().asnumpy() == 2).all()
    # Any of its paths selects a tied parameter (its other paths are aliases).
    assert params[2].aliases == ("2.weight",) and params[3].aliases == ("2.bias",)
    mi.apply(net, {"2.weight": mi.constant(3), "2.*": mi.constant(4)})
    assert (net[1].weight.data().asnumpy() == 3).all() and (net[1].bias.data().asnumpy() == 4).all()
    assert (net[0].weight.data().asnumpy() == 2).all()


def test_a_hybridized_block_computes_with_the_new_values() -> None:
    net = nn.HybridSequential()
    net.add(nn.Dense(3, in_units=4))
    net.initialize()
    net.hybridize()
    x = mx.nd.ones((1, 4))
    net(x)
    mi.apply(net, {"weight": mi.constant(0.5), "bias": mi.constant(1.0)})
    np.testing.assert_allclose(net(x).asnumpy(), np.full((1, 3), 3.0))


def test_the_backend_is_detected_from_the_block_and_other_objects_are_refused() -> None:
    net = build()
    assert mi.detect(net) == "mxnet"
    with pytest.raises(mi.UnknownBackend, match="not an MXNet Gluon Block"):
        params_of(net.collect_params())


def test_recurrent_layers_are_known_and_their_biases_pair_with_their_weights() -> None:
    from mxnet.gluon import rnn

    net = nn.Sequential()
    net.add(rnn.LSTM(8, input_size=4), nn.Dense(3, in_units=8))
    net.initialize()
    params = {p.path: p for p in params_of(net)}
    # Counted by hand: l0_i2h_weight (32, 4) and l0_h2h_weight (32, 8), four gates of 8.
    assert params["0.l0_i2h_bias"].fans == (4, 32) and params["0.l0_h2h_bias"].fans == (8, 32)
    assert {params[p].kind for p in params if p.startswith("0.")} == {"recurrent"} and params[
        "0.l0_i2h_weight"
    ].known
    mi.apply(net, [(mi.select(kind="recurrent"), mi.constant(0.5))])
    assert (net[0].l0_h2h_weight.data().asnumpy() == 0.5).all() and not (value(net, "1.weight") == 0.5).any()


def test_a_deferred_recurrent_layer_gets_its_rules_at_the_first_forward() -> None:
    from mxnet.gluon import rnn

    rules = {"*weight": mi.orthogonal(), "*bias": mi.variance_scaling(1 / 3, "fan_in", "uniform")}
    x = mx.nd.ones((5, 2, 6))  # (time, batch, features)

    def lstm():
        layer = rnn.LSTM(16)
        layer.initialize()
        return layer

    deferred = lstm()
    mi.apply(deferred, rules, seed=2)
    deferred(x)
    eager = lstm()
    eager(x)
    mi.apply(eager, rules, seed=2)
    for name in ("l0_i2h_weight", "l0_h2h_weight", "l0_i2h_bias", "l0_h2h_bias"):
        np.testing.assert_array_equal(
            getattr(deferred, name).data().asnumpy(), getattr(eager, name).data().asnumpy(), err_msg=name
        )
    bound = 1 / math.sqrt(6)  # l0_i2h_bias takes l0_i2h_weight's fan_in, 6 once known
    assert 0.7 * bound < np.abs(deferred.l0_i2h_bias.data().asnumpy()).max() <= bound  # 0.7**64 < 1e-9
