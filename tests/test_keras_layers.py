"""Layers at model level (issues 14.2 and 18 for Keras): attention and einsum kernels get the fans
Keras' own initializers get, the layer registry, guessed kinds, tied variables, and the Keras
applications (ResNet50, MobileNetV2, EfficientNetB0, ConvNeXtTiny, DenseNet121) read right.

Expected fans and layouts are written out by hand from each layer's configuration (or asked of
Keras itself), never taken from the adapter.
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
    return np.asarray(keras.ops.convert_to_numpy(variable.value))


def attention(num_heads: int = 8, key_dim: int = 16, dim: int = 32, name: str = "mha", cls=None):
    cls = cls or L.MultiHeadAttention
    layer = cls(num_heads=num_heads, key_dim=key_dim, name=name)
    inputs = keras.Input((10, dim))
    return keras.Model(inputs, layer(inputs, inputs), name="att"), layer


# --------------------------------------------------------------------------- attention kernels


def test_the_attention_query_kernel_gets_keras_fans_not_the_spatial_reading() -> None:
    # The bug of issue 14: (32, 8, 16) read as (spatial, in, out) has fan_in 8 * 32 = 256 and
    # lecun std 0.0625; Keras says fan_in 32 (input_axes [0]), std 1/sqrt(32) = 0.177.
    model, mha = attention()
    params = {p.path: p for p in mik.params_of(model)}
    query = params["mha/query/kernel"]
    assert query.kind == "attention" and query.layer is mha and query.known
    assert query.view.logical_shape == (128, 32) and query.view.fans == (32, 128)
    assert params["mha/attention_output/kernel"].view.fans == (128, 32)  # (heads, key_dim, dim)
    assert params["mha/query/bias"].fans == (32, 128) and params["mha/attention_output/bias"].fans == (
        128,
        32,
    )
    mi.apply(
        model, {mi.select(kind="attention", role="kernel"): mi.lecun_normal(), "bias": mi.zeros()}, seed=0
    )
    kernel = value(mha.query_dense.kernel)
    assert abs(kernel.std() - 1 / math.sqrt(32)) < 0.01  # 4096 values: the std's own error is ~0.002
    logical = kernel.reshape(32, 128).T  # (heads * key_dim, dim), by hand
    verdict = stats.check(logical, mi.lecun_normal(), fans=(32, 128), reference_seed=7)
    assert verdict.passed, str(verdict)
    # Keras' own initializer on the same layer draws the same law.
    theirs = L.MultiHeadAttention(8, 16, kernel_initializer=keras.initializers.LecunNormal(seed=1))
    theirs.build((None, 10, 32), (None, 10, 32))
    assert stats.check_same(kernel, value(theirs.query_dense.kernel)).passed
    assert stats.check_same(value(mha.output_dense.kernel), value(theirs.output_dense.kernel)).passed


@pytest.mark.parametrize(
    "spec", [mi.glorot_uniform(), mi.he_normal(), mi.variance_scaling(2.0, "fan_out", "uniform")]
)
def test_one_spec_on_an_attention_layer_is_keras_own_law(spec) -> None:
    # Keras hands EinsumDense's input/output axes to a VarianceScaling initializer: the same
    # spec through mi.apply and through Keras' own initializer is one law, kernel by kernel.
    model, mha = attention(num_heads=4, key_dim=32, dim=64)
    mi.apply(model, {L.MultiHeadAttention: spec}, seed=3)
    form = spec.as_variance_scaling()
    native = keras.initializers.VarianceScaling(form.scale, form.mode, form.distribution, seed=2)
    theirs = L.MultiHeadAttention(4, 32, kernel_initializer=native)
    theirs.build((None, 10, 64), (None, 10, 64))
    for ours, keras_own in (
        (mha.query_dense, theirs.query_dense),
        (mha.value_dense, theirs.value_dense),
        (mha.output_dense, theirs.output_dense),
    ):
        check = stats.check_same(value(ours.kernel), value(keras_own.kernel))
        assert check.passed, (ours.name, check)


def test_grouped_query_attention_kernels_and_a_type_selector() -> None:
    gqa = L.GroupQueryAttention(head_dim=16, num_query_heads=8, num_key_value_heads=2, name="gqa")
    gqa.build((None, 10, 32), (None, 10, 32))
    params = {p.path: p for p in mik.params_of(gqa)}
    assert params["gqa/key/kernel"].view.fans == (32, 32)  # (dim, kv heads, head_dim): 32 -> 2 x 16
    assert params["gqa/attention_output/kernel"].view.fans == (128, 32)
    assert {p.kind for p in params.values()} == {"attention"}
    mi.apply(gqa, {L.GroupQueryAttention: mi.constant(0.25)})
    assert all((value(v) == 0.25).all() for v in gqa.trainable_variables)


@pytest.mark.parametrize(
    "equation, bias_axes, input_shape, output_shape",
    [
        ("ab,bc->ac", "c", (None, 12), 7),
        ("abc,cde->abde", "de", (None, 5, 12), (5, 3, 4)),
        ("abcd,cde->abe", "e", (None, 5, 3, 4), (5, 12)),
        ("abc,bcd->abd", "d", (None, 5, 12), (5, 6)),  # b shared by input and output: Keras says out
        ("...b,bc->...c", None, (None, 5, 12), 7),
        ("ab...,bc->ac...", "c", (None, 12, 5), (7, 5)),
    ],
)
def test_einsum_dense_fans_are_the_ones_keras_hands_its_initializer(
    equation, bias_axes, input_shape, output_shape
) -> None:
    from keras.src.initializers.random_initializers import compute_fans
    from keras.src.layers.core.einsum_dense import _analyze_einsum_string

    layer = L.EinsumDense(equation, output_shape, bias_axes=bias_axes, name="ed")
    layer.build(input_shape)
    kernel_shape, _, _, input_axes, output_axes = _analyze_einsum_string(
        equation, bias_axes, input_shape, layer.partial_output_shape
    )
    keras_fans = tuple(int(f) for f in compute_fans(kernel_shape, input_axes, output_axes))
    params = {p.role: p for p in mik.params_of(layer)}
    assert params["kernel"].kind == "dense"
    assert params["kernel"].view.fans == keras_fans
    if bias_axes:
        assert params["bias"].fans == keras_fans


def test_portable_attention_kernels_are_the_reference_in_keras_layout_as_flax_stores_them() -> None:
    # Flax's MultiHeadDotProductAttention holds kernels of the same shapes -- query (dim, heads,
    # head_dim), output (heads, head_dim, dim) -- and flattens them (in..., out...) for its
    # initializer: logical (heads*head_dim, dim) and (dim, heads*head_dim). The portable values
    # of the same spec are those reference draws, reshaped by hand here.
    model, mha = attention()
    spec = mi.he_uniform()
    mi.apply(
        model,
        {"kernel": spec, "bias": mi.variance_scaling(1 / 3, "fan_in", "uniform")},
        seed=11,
        portable=True,
    )
    order = {p.path: p.order for p in mik.params_of(model)}

    def reference(shape, path, s=spec, fans=None):
        return mi.reference.sample(s, shape, seed=portable_rng(11, order[path]), fans=fans)

    query = reference((128, 32), "mha/query/kernel")
    assert np.array_equal(value(mha.query_dense.kernel), query.T.reshape(32, 8, 16))
    out = reference((32, 128), "mha/attention_output/kernel")
    assert np.array_equal(value(mha.output_dense.kernel), out.T.reshape(8, 16, 32))
    bias = reference((128,), "mha/query/bias", mi.variance_scaling(1 / 3, "fan_in", "uniform"), (32, 128))
    assert np.array_equal(value(mha.query_dense.bias), bias.reshape(8, 16))


# --------------------------------------------------------------------------- the registry


class Projection(L.Layer):
    """A dense layer that stores its kernel torch's way, (out, in)."""

    def __init__(self, units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape) -> None:
        self.kernel = self.add_weight(shape=(self.units, input_shape[-1]), name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x):
        return keras.ops.matmul(x, keras.ops.transpose(self.kernel)) + self.bias


class Mystery(L.Layer):
    """A layer multiinit does not know, with a Keras-style 2-D kernel."""

    def build(self, input_shape) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], 16), name="kernel")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel)


def projection_model() -> keras.Model:
    return keras.Sequential(
        [keras.Input((64,)), Projection(256, name="proj"), L.Dense(4, name="head")], name="reg"
    )


def test_a_layer_registered_by_class_gets_its_kind_layout_and_bias_fans() -> None:
    with mi.layers.isolated():
        unknown = {p.path: p for p in mik.params_of(projection_model())}["reg/proj/kernel"]
        assert (unknown.kind, unknown.known) == ("dense", False)  # guessed from its 2-D kernel
        assert unknown.view.fans == (256, 64)  # Keras' (in, out) convention: wrong here

        mi.register_layer(Projection, kind="dense", layout={"kernel": "out,in"}, fans_from="kernel")
        model = projection_model()
        params = {p.path: p for p in mik.params_of(model)}
        w, b = params["reg/proj/kernel"], params["reg/proj/bias"]
        assert (w.kind, w.known, w.view.logical_shape, w.view.fans) == ("dense", True, (256, 64), (64, 256))
        assert b.fans == (64, 256) and b.kind == "dense"
        plan = mi.plan(model, mi.presets.keras_default)
        assert not plan.guesses and {row.path: row.rule for row in plan}["reg/proj/kernel"] is not None
        mi.apply(model, mi.presets.torch_default, seed=0)
        weight = value(model.get_layer("proj").kernel)  # stored (out, in): logical as it is
        verdict = stats.check(
            weight, mi.variance_scaling(1 / 3, "fan_in", "uniform"), fans=(64, 256), reference_seed=7
        )
        assert verdict.passed, str(verdict)
        assert np.abs(value(model.get_layer("proj").bias)).max() <= 1 / 8  # U(+-1/sqrt(64)), by hand


def test_a_guessed_kind_is_marked_and_plan_flags_its_fans() -> None:
    model = keras.Sequential([keras.Input((8,)), Mystery(name="mystery"), L.Dense(2, name="head")], name="g")
    params = {p.path: p for p in mik.params_of(model)}
    assert params["g/mystery/kernel"].kind == "dense" and params["g/mystery/kernel"].known is False
    assert params["g/head/kernel"].known is True
    plan = mi.plan(model, {"kernel": mi.he_normal(), "bias": mi.zeros()})
    assert [row.path for row in plan.guesses] == ["g/mystery/kernel"]
    assert "register_layer" in str(plan)
    # A registration by name (no import of the layer's module) makes it known.
    with mi.layers.isolated():
        mi.register_layer(mi.layers.qualified_name(Mystery), kind="dense")
        assert not mi.plan(model, {"kernel": mi.he_normal(), "bias": mi.zeros()}).guesses


def test_a_tied_variable_is_one_parameter_selectable_by_either_path() -> None:
    class TiedHead(L.Layer):
        def __init__(self, embedding, **kwargs):
            super().__init__(**kwargs)
            self.embedding = embedding

        def build(self, input_shape):
            self.table = self.embedding.embeddings  # the same variable, held a second time

        def call(self, x):
            return keras.ops.matmul(x, keras.ops.transpose(self.table))

    embedding = L.Embedding(10, 4, name="emb")
    inputs = keras.Input((3,), dtype="int32")
    model = keras.Model(inputs, TiedHead(embedding, name="head")(embedding(inputs)))
    params = mik.params_of(model)
    assert [(p.path, p.aliases) for p in params] == [("emb/embeddings", ("head/embeddings",))]
    mi.apply(model, {"head/embeddings": mi.constant(3)})
    assert (value(embedding.embeddings) == 3).all()
    mi.apply(model, {"head/*": mi.zeros()})
    assert (value(embedding.embeddings) == 0).all()


# --------------------------------------------------------------------------- Keras applications

APPLICATIONS = ["ResNet50", "MobileNetV2", "EfficientNetB0", "ConvNeXtTiny", "DenseNet121"]


@pytest.fixture(scope="module", params=APPLICATIONS)
def application(request):
    # Built the deferred way (no weight drawn by Keras: fast on every backend, and the big-model
    # idiom); small inputs, ten classes.
    with keras.StatelessScope(initialize_variables=False):
        model = getattr(keras.applications, request.param)(weights=None, input_shape=(32, 32, 3), classes=10)
    return model


def expected(layer) -> tuple[str, tuple[int, int]] | None:
    """(kind, fans) of a layer's kernel from its configuration, by hand; None for other layers."""
    if isinstance(layer, L.DepthwiseConv2D):
        k = math.prod(layer.kernel_size)  # logical (C * m, 1, *k): output c*m + j sees input c only
        return "depthwise_conv", (k, k * int(layer.input.shape[-1]) * layer.depth_multiplier)
    if isinstance(layer, L.Conv2D):
        channels = int(layer.input.shape[-1])
        k = math.prod(layer.kernel_size)
        kind = "depthwise_conv" if layer.groups == channels > 1 else "conv"
        return kind, (k * channels // layer.groups, k * layer.filters)
    if isinstance(layer, L.Dense):
        return "dense", (int(layer.input.shape[-1]), layer.units)
    return None


def test_applications_kinds_and_fans_are_read_right(application) -> None:
    params = {p.path: p for p in mik.params_of(application)}
    checked = 0
    for layer in application.layers:
        want = expected(layer)
        if want is None:
            continue
        kernel = params[layer.kernel.path]
        assert (kernel.kind, kernel.known, kernel.view.fans) == (want[0], True, want[1]), layer.name
        if getattr(layer, "bias", None) is not None:
            assert params[layer.bias.path].fans == want[1] and params[layer.bias.path].kind == want[0]
        checked += 1
    assert checked >= 10
    for p in params.values():
        if isinstance(p.layer, (L.BatchNormalization, L.LayerNormalization)):
            assert p.kind == "norm" and p.known
    # The only layer multiinit does not know here is ConvNeXt's LayerScale (a 1-D gamma).
    unknown = {type(p.layer).__name__ for p in params.values() if not p.known}
    assert unknown <= {"LayerScale"}


@pytest.mark.parametrize("preset", ["keras_default", "torch_default"])
def test_presets_reach_every_dense_and_conv_layer(application, preset) -> None:
    plan = {row.path: row for row in mi.plan(application, getattr(mi.presets, preset))}
    reached = 0
    for layer in application.layers:
        if expected(layer) is None:
            continue
        for variable in (layer.kernel, getattr(layer, "bias", None)):
            if variable is not None:
                row = plan[variable.path]
                assert row.rule is not None and row.spec is not None and row.problem is None, variable.path
                reached += 1
    assert reached >= 10


def test_applications_kernels_draw_the_law_with_their_fans(application) -> None:
    # The largest kernel of each kind present, drawn with he_normal (every other parameter
    # zeros); KS against the law with the fans written out by hand.
    largest: dict[str, tuple[int, object]] = {}
    for layer in application.layers:
        want = expected(layer)
        if want is not None:
            size = math.prod(layer.kernel.shape)
            if size > largest.get(want[0], (0, None))[0]:
                largest[want[0]] = (size, layer)
    rules = [(layer.kernel.path, mi.he_normal()) for _, layer in largest.values()] + [("*", mi.zeros())]
    mi.apply(application, rules, seed=0)
    for kind, (_, layer) in largest.items():
        kernel = value(layer.kernel)
        if kind == "dense":
            logical = kernel.T
        elif isinstance(layer, L.DepthwiseConv2D):
            logical = kernel.transpose(2, 3, 0, 1).reshape(-1, 1, *kernel.shape[:2])
        else:
            logical = kernel.transpose(3, 2, 0, 1)
        verdict = stats.check(logical, mi.he_normal(), fans=expected(layer)[1], reference_seed=7)
        assert verdict.passed, (layer.name, str(verdict))
    biases = [v for v in application.trainable_variables if v.name == "bias"]
    assert all((value(v) == 0).all() for v in biases)
