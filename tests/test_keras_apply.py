"""mi.apply on built Keras models and layers: paths, selectors, logical views, bias fans, order,
portable mode, seeds, and all or nothing.

Expected layouts are written out by hand (numpy transposes), not taken from the adapter.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import multiinit as mi
import multiinit.keras as mik
from multiinit import stats
from multiinit.rules import portable_rng

L = keras.layers


def value(variable) -> np.ndarray:
    return np.asarray(variable.numpy())


def snapshot(model) -> dict[str, np.ndarray]:
    return {v.path: value(v) for v in model.weights}


def assert_unchanged(model, before: dict[str, np.ndarray]) -> None:
    after = snapshot(model)
    assert after.keys() == before.keys()
    changed = [path for path in before if not np.array_equal(before[path], after[path])]
    assert not changed, f"changed although apply failed: {changed}"


def mlp(name: str = "net") -> keras.Model:
    return keras.Sequential([keras.Input((6,)), L.Dense(5, name="hidden"), L.Dense(2, name="out")], name=name)


def convnet() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(4, 3, name="conv"),
            L.BatchNormalization(name="bn"),
            L.Dropout(0.1, name="drop"),
            L.Conv2DTranspose(6, 3, name="up"),
            L.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
            L.Flatten(name="flat"),
            L.Dense(3, name="head"),
        ],
        name="cnn",
    )


# --------------------------------------------------------------------------- paths and order


def test_paths_are_keras_variable_paths() -> None:
    assert [p.path for p in mik.params_of(mlp())] == [
        "net/hidden/kernel",
        "net/hidden/bias",
        "net/out/kernel",
        "net/out/bias",
    ]
    inputs = keras.Input((6,))
    outputs = L.Dense(2, name="b")(L.Dense(5, name="a")(inputs))
    functional = keras.Model(inputs, outputs, name="f")
    assert [p.path for p in mik.params_of(functional)] == ["a/kernel", "a/bias", "b/kernel", "b/bias"]
    inner = mlp("inner")
    nested_in = keras.Input((6,))
    nested = keras.Model(nested_in, L.Dense(1, name="top")(inner(nested_in)), name="outer")
    assert [p.path for p in mik.params_of(nested)] == [
        "inner/hidden/kernel",
        "inner/hidden/bias",
        "inner/out/kernel",
        "inner/out/bias",
        "top/kernel",
        "top/bias",
    ]


def test_order_counts_learnable_parameters_weight_before_bias() -> None:
    model = convnet()
    model.get_layer("bn").trainable = False  # frozen weights are still parameters
    params = mik.params_of(model)
    assert [(p.path, p.order) for p in params] == [
        ("cnn/conv/kernel", 0),
        ("cnn/conv/bias", 1),
        ("cnn/bn/gamma", 2),
        ("cnn/bn/beta", 3),
        ("cnn/up/kernel", 4),
        ("cnn/up/bias", 5),
        ("cnn/dw/kernel", 6),
        ("cnn/dw/bias", 7),
        ("cnn/head/kernel", 8),
        ("cnn/head/bias", 9),
    ]  # no moving mean/variance, no dropout seed state
    assert [p.kind for p in params[::2]] == ["conv", "norm", "conv_transpose", "depthwise_conv", "dense"]


def test_a_shared_layer_appears_once() -> None:
    shared = L.Dense(6, name="shared")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, shared(shared(inputs)))
    assert [p.path for p in mik.params_of(model)] == ["shared/kernel", "shared/bias"]


# --------------------------------------------------------------------------- selectors


def test_globs_roles_types_and_kinds_select_first_match_wins() -> None:
    net = mlp()
    before = snapshot(net)
    mi.apply(net, [("net/hidden/*", mi.constant(1)), ("weight", mi.constant(2)), ("bias", None)])
    after = snapshot(net)
    assert (after["net/hidden/kernel"] == 1).all() and (after["net/hidden/bias"] == 1).all()
    assert (after["net/out/kernel"] == 2).all()
    assert np.array_equal(after["net/out/bias"], before["net/out/bias"])  # None: left alone

    model = convnet()
    mi.apply(
        model,
        [
            (L.Conv2D, mi.constant(3)),
            ((L.Conv2DTranspose, L.DepthwiseConv2D), mi.constant(4)),
            ("dense", mi.constant(5)),
            ("kernel", mi.zeros()),
        ],
    )
    got = snapshot(model)
    assert (got["cnn/conv/kernel"] == 3).all() and (got["cnn/conv/bias"] == 3).all()
    assert (got["cnn/up/kernel"] == 4).all() and (got["cnn/dw/bias"] == 4).all()
    assert (got["cnn/head/kernel"] == 5).all()
    mi.apply(model, {mi.select(kind="conv_transpose", role="bias"): mi.constant(6), "gamma": mi.constant(7)})
    got = snapshot(model)
    assert (got["cnn/up/bias"] == 6).all() and (got["cnn/bn/gamma"] == 7).all()
    assert (got["cnn/up/kernel"] == 4).all()


def test_a_selector_that_matches_nothing_names_the_closest_paths_and_changes_nothing() -> None:
    net = mlp()
    before = snapshot(net)
    with pytest.raises(mi.RuleError, match="'net/hidden/kernel'"):
        mi.apply(net, [("kernel", mi.zeros()), ("net/hiden/kernel", mi.ones())], seed=0)
    assert_unchanged(net, before)


def test_a_shape_error_anywhere_changes_nothing() -> None:
    model = convnet()
    before = snapshot(model)
    with pytest.raises(mi.ShapeError, match="'cnn/conv/kernel'"):
        mi.apply(model, [("bias", mi.zeros()), ("kernel", mi.eye())], seed=0)
    assert_unchanged(model, before)
    with pytest.raises(mi.ShapeError, match="'cnn/bn/gamma'"):  # a norm layer has no kernel fans
        mi.apply(model, [("kernel", mi.he_normal()), ("gamma", mi.glorot_uniform())], seed=0)
    assert_unchanged(model, before)


def test_a_custom_function_that_raises_changes_nothing() -> None:
    def broken(rng, shape, dtype):
        raise RuntimeError("user law failed")

    model = convnet()
    before = snapshot(model)
    with pytest.raises(mi.LawError, match="user law failed"):
        mi.apply(
            model, [("kernel", mi.normal()), ("cnn/head/bias", mi.custom(broken, name="tests.keras.broken"))]
        )
    assert_unchanged(model, before)


def test_models_that_cannot_be_initialized_say_why() -> None:
    unbuilt = keras.Sequential([L.Dense(3)])
    with pytest.raises(mi.RuleError, match="not built"):
        mi.apply(unbuilt, {"kernel": mi.zeros()})
    with pytest.raises(mi.UnknownBackend, match="not a Keras Model or Layer"):
        mi.apply(keras.optimizers.SGD(), {"kernel": mi.zeros()})
    with pytest.raises(mi.RuleError, match="seed="):
        mi.apply(mlp(), {"kernel": mi.zeros()}, seed=-1)


def test_a_built_layer_alone_and_the_model_is_returned() -> None:
    layer = L.Dense(4, name="solo")
    layer.build((None, 3))
    assert mi.apply(layer, {"weight": mi.ones(), "bias": mi.constant(-1)}) is layer
    assert (value(layer.kernel) == 1).all() and (value(layer.bias) == -1).all()


def test_recurrent_layers_keep_their_own_role_names() -> None:
    lstm = L.LSTM(8, name="lstm")
    lstm.build((None, 5, 3))
    params = {p.path: p for p in mik.params_of(lstm)}
    assert set(params) == {"lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel", "lstm/lstm_cell/bias"}
    assert params["lstm/lstm_cell/bias"].fans == (3, 32)  # the cell's kernel (3, 4*8)
    mi.apply(lstm, {"weight": mi.zeros(), "recurrent_kernel": mi.orthogonal()})
    assert (value(lstm.cell.kernel) == 0).all()
    recurrent = value(lstm.cell.recurrent_kernel)  # (8, 32): logical (32, 8), orthonormal columns
    assert np.allclose(recurrent @ recurrent.T, np.eye(8), atol=1e-5)


# --------------------------------------------------------------------------- logical views


def _bound(scale: float, fan: float) -> float:
    return math.sqrt(3 * scale / fan)


def test_transposed_conv_fans_are_logical_where_keras_uses_its_storage_order() -> None:
    # 64 -> 128 channels, 3x3: Keras stores (3, 3, 128, 64) and says fan_in = 128 * 9.
    ours = keras.Sequential([keras.Input((4, 4, 64)), L.Conv2DTranspose(128, 3, name="up")])
    mi.apply(ours, {"kernel": mi.he_uniform()}, seed=0)
    kernel = value(ours.get_layer("up").kernel)
    logical = kernel.transpose(2, 3, 0, 1)  # (out=128, in=64, 3, 3), by hand
    assert np.abs(kernel).max() <= _bound(2, 576) and np.abs(kernel).max() > 0.999 * _bound(2, 576)
    verdict = stats.check(logical, mi.he_uniform(), reference_seed=7)
    assert verdict.passed, str(verdict)
    theirs = keras.Sequential(
        [
            keras.Input((4, 4, 64)),
            L.Conv2DTranspose(128, 3, kernel_initializer=keras.initializers.HeUniform(seed=0)),
        ]
    )
    assert np.abs(value(theirs.layers[0].kernel)).max() <= _bound(2, 1152)


def test_depthwise_conv_fans_are_logical_where_keras_counts_every_channel() -> None:
    # 256 channels x multiplier 8, 3x3: logical (2048, 1, 3, 3), fan_in 9; Keras says 256 * 9.
    ours = keras.Sequential([keras.Input((5, 5, 256)), L.DepthwiseConv2D(3, depth_multiplier=8, name="dw")])
    mi.apply(ours, {"kernel": mi.he_uniform()}, seed=0)
    kernel = value(ours.get_layer("dw").kernel)  # (3, 3, 256, 8)
    logical = kernel.transpose(2, 3, 0, 1).reshape(2048, 1, 3, 3)  # channel c*8 + j, by hand
    assert np.abs(kernel).max() <= _bound(2, 9) and np.abs(kernel).max() > 0.999 * _bound(2, 9)
    verdict = stats.check(logical, mi.he_uniform(), reference_seed=7)
    assert verdict.passed, str(verdict)
    theirs = keras.Sequential(
        [
            keras.Input((5, 5, 256)),
            L.DepthwiseConv2D(
                3, depth_multiplier=8, depthwise_initializer=keras.initializers.HeUniform(seed=0)
            ),
        ]
    )
    assert np.abs(value(theirs.layers[0].kernel)).max() <= _bound(2, 256 * 9)


def test_separable_conv_has_a_depthwise_and_a_pointwise_view() -> None:
    model = keras.Sequential(
        [keras.Input((5, 5, 16)), L.SeparableConv2D(32, 3, depth_multiplier=4, name="sep")]
    )
    params = {p.role: p for p in mik.params_of(model)}
    assert params["depthwise_kernel"].view.logical_shape == (64, 1, 3, 3)
    assert params["depthwise_kernel"].kind == "depthwise_conv"
    assert params["pointwise_kernel"].view.logical_shape == (32, 64, 1, 1)
    assert params["bias"].fans == (64, 32)  # the pointwise kernel's


def test_embeddings_are_already_logical() -> None:
    model = keras.Sequential([keras.Input((3,), dtype="int32"), L.Embedding(1000, 32, name="emb")])
    mi.apply(model, {"embeddings": mi.lecun_uniform()}, seed=0)
    table = value(model.get_layer("emb").embeddings)  # (num=1000, dim=32): fan_in 32 as in torch
    assert np.abs(table).max() <= _bound(1, 32) and np.abs(table).max() > 0.999 * _bound(1, 32)
    assert stats.check(table, mi.lecun_uniform(), reference_seed=7).passed


@pytest.mark.parametrize(
    "make, groups",
    [
        (lambda: L.Conv2D(8, 3, padding="same"), 1),
        (lambda: L.Conv2DTranspose(8, 3, padding="same"), 1),
        (lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), 4),
    ],
)
def test_dirac_makes_each_conv_pass_its_input_through(make, groups) -> None:
    # 4 input channels. Conv and transposed conv (out 8): output channel d < 4 copies input d,
    # the others are 0. Depthwise with multiplier 2 and groups=4: output channel 2c copies input c.
    layer = make()
    model = keras.Sequential([keras.Input((6, 6, 4)), layer])
    mi.apply(model, {"kernel": mi.dirac(groups=groups), "bias": mi.zeros()})
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype(np.float32)
    y = np.asarray(keras.ops.convert_to_numpy(model(x)))
    if groups == 1:
        expected = np.concatenate([x, np.zeros_like(x)], axis=-1)
    else:
        expected = np.zeros((2, 6, 6, 8), np.float32)
        expected[..., 0::2] = x
    np.testing.assert_allclose(y, expected, atol=1e-6)


# --------------------------------------------------------------------------- bias fans


def without_embeddings(preset):
    """A preset's rules minus the embedding rule: mi.apply refuses a rule that selects nothing
    (see the report: presets on models without an embedding)."""
    return [(selector, spec) for selector, spec in preset if "embedding" not in selector.kind]


def test_torch_default_bias_uses_its_layers_kernel_fans() -> None:
    dense = keras.Sequential([keras.Input((16,)), L.Dense(16384, name="wide")])
    mi.apply(dense, without_embeddings(mi.presets.torch_default), seed=0)
    bias = value(dense.get_layer("wide").bias)
    assert np.abs(bias).max() <= 0.25 and np.abs(bias).max() > 0.249  # U(+-1/sqrt(16)), by hand
    spec = mi.variance_scaling(1 / 3, "fan_in", "uniform")
    verdict = stats.check(bias, spec, fans=(16, 16384), reference_seed=7)
    assert verdict.passed, str(verdict)
    conv = keras.Sequential([keras.Input((4, 4, 2)), L.Conv2D(2048, 3, name="conv")])
    mi.apply(conv, without_embeddings(mi.presets.torch_default), seed=0)
    conv_bias = value(conv.get_layer("conv").bias)
    limit = 1 / math.sqrt(18)  # fan_in of the weight: 2 channels * 3 * 3
    assert np.abs(conv_bias).max() <= limit and np.abs(conv_bias).max() > 0.99 * limit


def test_keras_default_preset_draws_what_keras_draws() -> None:
    ours = keras.Sequential([keras.Input((128,)), L.Dense(256, bias_initializer="ones")])
    mi.apply(ours, without_embeddings(mi.presets.keras_default), seed=0)
    theirs = keras.Sequential([keras.Input((128,)), L.Dense(256)])
    assert stats.check_same(value(ours.layers[0].kernel), value(theirs.layers[0].kernel)).passed
    assert (value(ours.layers[0].bias) == 0).all()


# --------------------------------------------------------------------------- seeds and portable mode


def test_an_explicit_seed_reproduces_and_every_parameter_has_its_own_stream() -> None:
    def build() -> keras.Model:
        return keras.Sequential(
            [keras.Input((32,)), L.Dense(32, name="a"), L.Dense(32, name="b")], name="twin"
        )

    first, second, other = build(), build(), build()
    rules = {"kernel": mi.he_normal(), "bias": mi.uniform(-1, 1)}
    mi.apply(first, rules, seed=3)
    mi.apply(second, rules, seed=3)
    mi.apply(other, rules, seed=4)
    a, b, c = snapshot(first), snapshot(second), snapshot(other)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["twin/a/kernel"], c["twin/a/kernel"])
    assert not np.array_equal(a["twin/a/kernel"], a["twin/b/kernel"])


def test_seed_none_follows_keras_set_random_seed() -> None:
    results = []
    for _ in range(2):
        net = mlp()
        keras.utils.set_random_seed(11)
        mi.apply(
            net,
            {
                "kernel": mi.normal(),
                "bias": mi.custom(
                    lambda rng, shape, dtype: rng.normal(size=shape), name="tests.keras.seeded_bias"
                ),
            },
        )
        results.append(snapshot(net))
    assert all(np.array_equal(results[0][k], results[1][k]) for k in results[0])


def test_portable_mode_writes_the_reference_numbers_in_keras_layout() -> None:
    model = keras.Sequential(
        [
            keras.Input((6, 6, 4)),
            L.Conv2D(5, 3, name="conv"),
            L.Conv2DTranspose(6, 3, name="up"),
            L.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
            L.Flatten(),
            L.Dense(7, name="head"),
        ],
        name="port",
    )
    spec = mi.mixture([(0.5, mi.he_uniform()), (0.5, mi.normal())])
    bias_spec = mi.variance_scaling(1 / 3, "fan_in", "uniform")
    mi.apply(model, {"kernel": spec, "bias": bias_spec}, seed=5, portable=True)
    got = snapshot(model)

    def reference(spec, shape, order, fans=None):
        return mi.reference.sample(spec, shape, seed=portable_rng(5, order), fans=fans)

    # Logical shapes and their Keras layouts, written out by hand.
    conv = reference(spec, (5, 4, 3, 3), 0)
    assert np.array_equal(got["port/conv/kernel"], conv.transpose(2, 3, 1, 0))
    assert np.array_equal(got["port/conv/bias"], reference(bias_spec, (5,), 1, fans=(36, 45)))
    up = reference(spec, (6, 5, 3, 3), 2)  # (out=6, in=5): Keras stores (3, 3, out, in)
    assert np.array_equal(got["port/up/kernel"], up.transpose(2, 3, 0, 1))
    assert np.array_equal(got["port/up/bias"], reference(bias_spec, (6,), 3, fans=(45, 54)))
    dw = reference(spec, (12, 1, 3, 3), 4)  # channel c*2 + j: Keras stores (3, 3, c, j)
    assert np.array_equal(got["port/dw/kernel"], dw.reshape(6, 2, 3, 3).transpose(2, 3, 0, 1))
    assert np.array_equal(got["port/dw/bias"], reference(bias_spec, (12,), 5, fans=(9, 108)))
    head = reference(spec, (7, 4 * 4 * 12), 6)
    assert np.array_equal(got["port/head/kernel"], head.T)


def test_portable_mode_lands_each_tile_of_a_big_kernel_in_keras_layout() -> None:
    # (600, 700) logical kernels are four tiles of the stream rule: they are written straight
    # into Keras' (in, out) buffer, in float32 and in a dtype the reference does not draw.
    model = keras.Sequential(
        [
            keras.Input((700,)),
            L.Dense(600, name="a"),
            L.Dense(700, name="b"),
            L.Dense(600, name="c", dtype="bfloat16"),
        ],
        name="big",
    )
    spec = mi.normal(std=0.5)
    mi.apply(model, {"kernel": spec, "bias": mi.zeros()}, seed=7, portable=True)
    got = snapshot(model)
    for name, order, shape in (("a", 0, (600, 700)), ("b", 2, (700, 600)), ("c", 4, (600, 700))):
        want = mi.reference.sample(spec, shape, seed=(7, order)).astype(np.float32).T
        if name == "c":
            want = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(want, "bfloat16")), np.float32)
        assert np.array_equal(np.asarray(got[f"big/{name}/kernel"], np.float32), want), name


def test_a_float64_layer_is_drawn_in_float64() -> None:
    model = keras.Sequential([keras.Input((64,)), L.Dense(128, dtype="float64", name="wide")])
    mi.apply(model, {"kernel": mi.truncated_normal(std=0.1, low=-1, high=3)}, seed=0)
    kernel = model.get_layer("wide").kernel
    assert keras.backend.standardize_dtype(kernel.dtype) == "float64"
    x = value(kernel)
    assert x.min() >= -0.1 and x.max() <= 0.3
    assert stats.check(x.T, mi.truncated_normal(std=0.1, low=-1, high=3), reference_seed=7).passed
