"""The Keras draw paths added for speed and for the user-law fence: each draws its law exactly.

Statistical checks use multiinit.stats at level 1e-6 on 10k-65k values; expected values are
computed by hand or by NumPy from the same input, never by the code under test.
"""

from __future__ import annotations

import doctest
import math

import keras
import numpy as np
import pytest

import multiinit as mi
from multiinit import stats
from multiinit.fans import SPATIAL_IN_OUT, LogicalView
from multiinit.keras import compiled as keras_compiled, draw as keras_draw
from multiinit.keras.draw import _draw


def values(initializer, shape, dtype="float32") -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(initializer(shape, dtype=dtype)))


def logical(native: np.ndarray) -> np.ndarray:
    return LogicalView.of(native.shape, SPATIAL_IN_OUT).to_logical(native)


# --------------------------------------------------------------------------- constants


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, -1.0, 42.0, 0.5])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64", "int32"])
def test_a_constant_is_its_value_bit_for_bit(value, dtype) -> None:
    # zeros and ones take their own ops, the rest full: each must be the value, -0.0 with its sign,
    # also after a +0.0 went through TensorFlow's cache of converted scalars (where 0.0 == -0.0).
    keras.ops.full((2,), 0.0, dtype=dtype)
    out = keras.ops.convert_to_numpy(_draw(mi.constant(value), LogicalView((3, 5)), None, dtype, 0))
    held = keras.ops.convert_to_numpy(keras.ops.convert_to_tensor(np.zeros(1), dtype=dtype)).dtype
    # held: what the backend makes of dtype (JAX without x64 holds float64 as float32).
    assert out.dtype == held and out.shape == (3, 5)
    expected = np.full((3, 5), value, dtype=np.float64)
    assert np.array_equal(out.astype(np.float64), expected.astype(out.dtype).astype(np.float64))
    if dtype != "int32":
        assert np.all(np.signbit(out.astype(np.float64)) == (math.copysign(1.0, value) < 0))


# --------------------------------------------------------------------------- the user-law fence


def _raising(rng, shape, dtype):
    raise RuntimeError("the user's own bug")


@pytest.mark.parametrize(
    "fn, error, text",
    [
        (_raising, mi.LawError, "raised RuntimeError: the user's own bug"),
        (lambda rng, shape, dtype: np.zeros(3), mi.LawShapeError, r"shape \(3,\) for shape \(16, 8\)"),
        (lambda rng, shape, dtype: np.full(shape, np.nan), mi.LawError, "NaN"),
        (lambda rng, shape, dtype: np.full(shape, np.inf), mi.LawError, "infinite"),
        (lambda rng, shape, dtype: np.full(shape, "x"), mi.LawError, "dtype"),
        (lambda rng, shape, dtype: "not an array", mi.LawError, "shape|cannot read"),
    ],
)
def test_a_failing_or_lying_user_law_is_a_law_error_naming_it(fn, error, text) -> None:
    law = mi.custom(fn, name="tests.keras.fenced")
    with pytest.raises(error, match=text) as caught:
        mi.compile(law, "keras", seed=0)((8, 16))
    assert "custom law 'tests.keras.fenced'" in str(caught.value)
    if fn is _raising:
        assert isinstance(caught.value.__cause__, RuntimeError)


def test_the_fence_names_the_parameter_path_and_holds_inside_a_mixture() -> None:
    law = mi.custom(lambda rng, shape, dtype: np.full(shape, np.nan), name="tests.keras.nan_law")
    view = LogicalView.of((8, 16), SPATIAL_IN_OUT)
    with pytest.raises(mi.LawError, match=r"custom law 'tests\.keras\.nan_law' at 'dense/kernel'"):
        _draw(law, view, None, "float32", 0, path="dense/kernel")
    mixed = mi.mixture([(0.5, law), (0.5, mi.zeros())])
    with pytest.raises(mi.LawError, match=r"tests\.keras\.nan_law"):
        mi.compile(mixed, "keras", seed=0)((8, 16))


def test_values_too_large_for_half_precision_are_refused() -> None:
    big = mi.custom(lambda rng, shape, dtype: np.full(shape, 1e6), name="tests.keras.big")
    with pytest.raises(mi.LawError, match="too large for float16"):
        mi.compile(big, "keras", seed=0)((4, 4), dtype="float16")
    assert values(mi.compile(big, "keras", seed=0), (4, 4)).max() == 1e6


def test_the_user_law_is_asked_for_the_dtype_it_fills() -> None:
    seen = []

    def spy(rng, shape, dtype):
        seen.append(np.dtype(dtype).name)
        return np.zeros(shape)

    law = mi.custom(spy, name="tests.keras.dtype_spy")
    for dtype in ("float16", "float32", "float64", "bfloat16"):
        out = mi.compile(law, "keras", seed=0)((3, 2), dtype=dtype)
        holds = keras.backend.standardize_dtype(keras.ops.zeros((1,), dtype=dtype).dtype) == dtype
        assert keras.backend.standardize_dtype(out.dtype) == (dtype if holds else "float32")
    assert seen == ["float16", "float32", "float64", "float32"]  # bfloat16: asked for float32


@pytest.mark.parametrize(
    "view",
    [
        LogicalView.of((24, 40), SPATIAL_IN_OUT),  # dense: a transpose
        LogicalView.of((700, 530), SPATIAL_IN_OUT),  # big enough for the copy to use every thread
        LogicalView.of((3, 3, 8, 20), SPATIAL_IN_OUT),  # conv: rows move to the last axis
        LogicalView.of((5, 7, 3), SPATIAL_IN_OUT),  # conv1d
        LogicalView((37,)),  # a bias: no rearrangement
        LogicalView((6, 9)),  # identity view (an embedding)
        LogicalView((3, 3, 4, 2), axes=(2, 3, 0, 1), logical_shape=(8, 1, 3, 3)),  # depthwise: not plain
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("threads", ["1", "3"])
def test_a_user_law_lands_in_keras_layout_element_for_element(view, dtype, threads, monkeypatch) -> None:
    # The logical array numbers its elements (float64, below 2048: exact in float16); the
    # native tensor must hold each where the view says, cast in the same copy (NumPy's own
    # to_native of the same array is the expectation).
    monkeypatch.setenv("MULTIINIT_THREADS", threads)

    def numbered(shape):
        return (np.arange(math.prod(shape), dtype=np.float64) % 2039).reshape(shape)

    law = mi.custom(lambda rng, shape, dtype: numbered(shape), name="tests.keras.numbered")
    out = np.asarray(keras.ops.convert_to_numpy(_draw(law, view, None, dtype, 0)))
    expected = view.to_native(numbered(view.logical_shape)).astype(dtype)
    assert out.shape == view.native_shape and out.dtype == np.dtype(dtype) and np.array_equal(out, expected)


@pytest.mark.parametrize(
    "native_shape, groups",
    [
        ((3, 8, 8), 1),  # conv1d (k, in, out)
        ((3, 5, 4, 6), 2),  # conv2d, more outputs than inputs per group, a kernel not square
        ((5, 3, 6, 4), 2),  # fewer
        ((1, 3, 5, 2, 9), 3),  # conv3d
        ((1, 40, 40), 1),
        ((24, 40), None),  # eye on a dense kernel (in, out)
        ((40, 24), None),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int32"])
def test_eye_and_dirac_land_where_the_reference_puts_them(native_shape, groups, dtype) -> None:
    # The expectation is the NumPy reference's law on the logical shape, laid out by the
    # view: the host path (bfloat16: the backend ops) must put every 1 there.
    view = LogicalView.of(native_shape, SPATIAL_IN_OUT)
    spec = mi.eye() if groups is None else mi.dirac(groups=groups)
    expected = view.to_native(mi.reference.sample(spec, view.logical_shape, dtype="float64"))
    out = _draw(spec, view, None, dtype, 0)
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    got = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")))
    assert got.shape == native_shape and np.array_equal(got, expected)
    assert (keras_draw._written_on_host(spec, view, dtype) is None) == (dtype == "bfloat16")


def test_host_buffers_handed_to_tensorflow_are_aligned() -> None:
    # TensorFlow takes a host buffer without a copy only when it is 64-byte aligned (it aborts
    # the process on less): every buffer the draw builds is.
    for shape in [(1,), (3,), (5, 7), (129, 3), (2, 3, 4, 5)]:
        buffer = keras_draw._aligned_empty(shape, np.dtype(np.float32))
        assert buffer.ctypes.data % 64 == 0 and buffer.shape == shape and buffer.flags.c_contiguous


if keras.backend.backend() == "tensorflow":  # the inversion's TF-only path

    @pytest.mark.parametrize("seed", [0, 7, "generator", None])
    @pytest.mark.parametrize("low, high", [(-2.0, 2.0), (0.5, 2.5)])
    def test_the_inversions_uniform_is_keras_uniform_bit_for_bit(seed, low, high) -> None:
        # _inverted_on_tf maps TF's uniform bits onto [2 Phi(a) - 1, 2 Phi(b) - 1] in NumPy
        # (one buffer instead of two fresh TF tensors): the numbers keras.random.uniform gives.
        a, b = (-high, -low) if low > 0 else (low, high)
        lo, hi = 2.0 * keras_draw._phi(a) - 1.0, 2.0 * keras_draw._phi(b) - 1.0

        def seeded():
            if seed == "generator":
                return keras.random.SeedGenerator(3)
            if seed is None:
                keras.utils.set_random_seed(11)
            return seed

        shape = (300, 70)
        expected = np.asarray(keras.random.uniform(shape, lo, hi, dtype="float32", seed=seeded()))
        start = np.float32(lo)
        width = np.float32(np.float32(hi) - start)
        # In parts, as the inversion draws it: each part starts its counter on (Philox: four
        # values per step), the last one short (21000 = 5 * 4096 + 520).
        part = keras_draw._unit_uniform(seeded())
        parts = [np.asarray(part(first, min(4096, 21000 - first))) for first in range(0, 21000, 4096)]
        bits = np.concatenate(parts)
        got = bits.reshape(shape) * width + start
        assert got.dtype == np.float32 and np.array_equal(got, expected)
        assert np.array_equal(np.asarray(part(4096, 4)), bits[4096:4100])  # a part drawn again

    @pytest.mark.parametrize("threads", ["1", "2"])
    @pytest.mark.parametrize("chunk", [None, 1 << 17])
    @pytest.mark.parametrize(
        "mean, std, low, high", [(0.0, 0.02, -2.0, 2.0), (0.1, 0.02, -1.0, 2.5), (-1.0, 3.0, 0.5, 2.9)]
    )
    def test_the_inversion_gives_the_numbers_of_its_whole_array_form(
        mean, std, low, high, chunk, threads, monkeypatch
    ) -> None:
        # _inverted_on_tf draws in chunks (the default: one here; 2**17 values: five, the last
        # one short) and maps in blocks on every thread (host.affine); the expectation is the
        # same float32 operations on whole arrays: keras.random.uniform, TF's erfinv, the
        # affine map and the clip. 600k values (not a multiple of 4): several blocks and spans.
        monkeypatch.setenv("MULTIINIT_THREADS", threads)
        if chunk is not None:
            monkeypatch.setattr(keras_draw, "_UNIFORM_CHUNK", chunk)
        flip = low > 0
        a, b = (-high, -low) if flip else (low, high)
        shape = (1199, 501)
        u = np.asarray(
            keras.random.uniform(
                shape, 2.0 * keras_draw._phi(a) - 1.0, 2.0 * keras_draw._phi(b) - 1.0, dtype="float32", seed=5
            )
        )
        e = np.asarray(keras.ops.erfinv(u))
        scale = np.float32(-std * math.sqrt(2) if flip else std * math.sqrt(2))
        floor, ceiling = keras_draw._inside(mean + low * std, mean + high * std, "float32", open_high=False)
        expected = np.clip(e * scale + np.float32(mean), np.float32(floor), np.float32(ceiling))
        got = np.asarray(keras_draw._inverted_on_tf(shape, mean, std, low, high, 5))
        assert got.dtype == np.float32 and np.array_equal(got, expected)
        assert np.float32(floor) <= got.min() < got.max() <= np.float32(ceiling)

    @pytest.mark.parametrize("seed", [3, "generator"])
    @pytest.mark.parametrize("chunk", [None, 1 << 17])
    @pytest.mark.parametrize("low, high", [(-0.5, 0.25), (-0.1, 0.1), (5.0, 10.0)])
    def test_the_uniform_on_tf_is_keras_uniform_clipped_bit_for_bit(
        low, high, chunk, seed, monkeypatch
    ) -> None:
        # _uniform maps TF's uniform bits itself, clipping in the same pass where the largest
        # value could round onto the open bound (the last two bounds here): the numbers are
        # keras.random.uniform's, then the clip to the bounds rounded inward.
        if chunk is not None:
            monkeypatch.setattr(keras_draw, "_UNIFORM_CHUNK", chunk)
        shape = (1199, 501)
        expected = np.asarray(
            keras.random.uniform(
                shape,
                low,
                high,
                dtype="float32",
                seed=keras.random.SeedGenerator(3) if seed == "generator" else seed,
            )
        )
        floor, ceiling = keras_draw._inside(low, high, "float32", open_high=True)
        clips = (low, high) != (-0.5, 0.25)
        if clips:
            expected = np.clip(expected, np.float32(floor), np.float32(ceiling))
        got = np.asarray(
            keras_draw._uniform(
                shape, low, high, "float32", keras.random.SeedGenerator(3) if seed == "generator" else seed
            )
        )
        assert got.dtype == np.float32 and np.array_equal(got, expected)
        assert np.float32(floor) <= got.min() and got.max() <= np.float32(ceiling) < np.float32(high)

    GRAPH_SPECS = [
        mi.glorot_uniform(),  # Keras' own default, drawn on the host when eager
        mi.he_uniform(),  # a clip in the same pass
        mi.uniform(5, 10),
        mi.he_normal(),  # the inversion, on the host when eager
        mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5),
        mi.truncated_normal(std=1.0, low=-0.5, high=0.5),
        mi.normal(0.0, 1.0),
        mi.eye(),
        mi.sparse(0.1),  # argpartition on the host when eager, top_k in the graph
        mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
        mi.orthogonal(),
        mi.custom(lambda rng, shape, dtype: rng.standard_normal(shape), name="tests.keras.graph_normal"),
    ]

    @pytest.mark.parametrize("spec", [*GRAPH_SPECS, mi.truncated_normal(low=-2.0, high=4.0)], ids=repr)
    def test_a_layer_built_inside_a_tf_function_draws_in_its_graph(spec) -> None:
        # Nothing may reach the host inside a tf.function: each host path has a graph twin.
        # They give the eager numbers, except rejection (bounds beyond 3 std), which the
        # graph draws by inversion: the same law, checked.
        import tensorflow as tf

        def built(in_graph: bool) -> np.ndarray:
            layer = keras.layers.Dense(128, kernel_initializer=mi.compile(spec, "keras", seed=3))
            if in_graph:
                tf.function(lambda x: layer(x))(tf.ones((2, 128)))
            else:
                layer.build((None, 128))
            return np.asarray(layer.kernel)

        graph, eager = built(True), built(False)
        if spec in GRAPH_SPECS:
            assert np.array_equal(graph, eager)
        else:
            lo, hi = spec.bounds
            assert lo <= graph.min() and graph.max() <= hi
            assert stats.check(graph, spec, reference_seed=4).passed


# --------------------------------------------------------------------------- with_axes


def test_a_with_axes_spec_takes_its_fans_from_the_keras_shape() -> None:
    # Keras' MultiHeadAttention query kernel (dim 32, heads 8, head_dim 16): fan_in 32.
    spec = mi.with_axes(mi.lecun_normal(), in_axis=0, out_axis=(1, 2))
    x = values(mi.compile(spec, "keras", seed=4), (32, 8, 16))
    verdict = stats.check(x, mi.lecun_normal(), fans=(32, 128), reference_seed=8)
    assert verdict.passed, str(verdict)
    assert abs(x.std() - math.sqrt(1 / 32)) < 0.02 * math.sqrt(1 / 32)  # 0.177, not 0.0625 (fan_in 256)


def test_with_axes_batch_axes_and_mixtures_inside() -> None:
    spec = mi.with_axes(
        mi.mixture([(0.5, mi.he_uniform()), (0.5, mi.zeros())]), in_axis=-2, out_axis=-1, batch_axis=0
    )
    x = values(mi.compile(spec, "keras", seed=1), (4, 64, 256))  # 4 experts, each 64 -> 256
    bound = math.sqrt(6 / 64)
    assert np.abs(x).max() <= bound and np.abs(x).max() > 0.99 * bound
    assert abs((x == 0).mean() - 0.5) < 0.01


def test_axes_that_do_not_fit_the_shape_raise_shape_error() -> None:
    spec = mi.with_axes(mi.he_normal(), in_axis=0, out_axis=3)
    with pytest.raises(mi.ShapeError):
        mi.compile(spec, "keras")((4, 5))


# --------------------------------------------------------------------------- mixtures


@pytest.mark.parametrize(
    "spec",
    [
        mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),  # one word
        mi.mixture([(0.3, mi.uniform(-1, 2)), (0.7, mi.constant(0.5))]),  # two words
        mi.mixture([(0.125, mi.uniform(0, 1)), (0.375, mi.uniform(-3, -2)), (0.5, mi.uniform(7, 8.5))]),
        mi.mixture([(0.1, mi.constant(1.0)), (0.2, mi.constant(2.0)), (0.7, mi.uniform(0.25, 0.5))]),
        mi.mixture([(1.0, mi.uniform(-2, 3))]),
        mi.mixture(
            [(0.25, mi.uniform(0, 2)), (0.5, mi.constant(5.0)), (0.25, mi.uniform(6, 8))]
        ),  # a hull off 0
    ],
)
def test_mixtures_of_uniforms_and_constants_draw_their_law(spec) -> None:
    x = values(mi.compile(spec, "keras", seed=6), (160, 200))
    verdict = stats.check(logical(x), spec, reference_seed=9)
    assert verdict.passed, f"{spec!r}: {verdict}"


@pytest.mark.parametrize(
    "spec, plan",
    [
        (mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]), "hull"),
        (mi.mixture([(0.25, mi.uniform(0, 2)), (0.5, mi.constant(5.0)), (0.25, mi.uniform(6, 8))]), "hull"),
        (mi.mixture([(1.0, mi.uniform(-2, 3))]), "hull"),
        (
            mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -4))]),
            "bits",
        ),  # densities
        (mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.ones()), (0.25, mi.uniform(-10, -5))]), "hull"),
        (
            mi.mixture([(0.3, mi.uniform(5, 10)), (0.4, mi.zeros()), (0.3, mi.uniform(-10, -5))]),
            "bits",
        ),  # gap mass
        (
            mi.mixture(
                [
                    (0.25, mi.uniform(0, 2)),
                    (0.25, mi.constant(5.0)),
                    (0.25, mi.uniform(4, 6)),
                    (0.125, mi.constant(-1.0)),
                    (0.125, mi.uniform(7, 8)),
                ]
            ),
            "bits",
        ),  # 26 bits needed
    ],
)
def test_which_mixtures_are_one_uniform_over_their_hull(spec, plan) -> None:
    # One density and constants of exactly the gaps' mass (any value) make the hull plan.
    assert ("hull" if keras_draw._bits_plan(spec)[0] == "hull" else "bits") == plan


def test_a_uniform_component_keeps_the_backends_float32_resolution() -> None:
    # U(5, 10) of the chapter: 2**23 values per component, as keras.random.uniform(5, 10)
    # has; a choice carved out of the same 23 bits would leave 2**21.
    spec = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])
    x = values(mi.compile(spec, "keras", seed=2), (2048, 2048))
    upper = np.sort(x[x >= 5])
    gaps = np.diff(np.unique(upper))
    assert gaps.min() <= 5 * 2.0**-23 * 1.01  # neighbouring values one float32 step of the law apart
    assert np.unique(upper).size > 0.9 * upper.size  # ~1M draws from 2**23 values: few repeats


@pytest.mark.parametrize(
    "spec", [mi.uniform(1000.0, 1000.5), mi.mixture([(0.5, mi.uniform(1000.0, 1000.5)), (0.5, mi.zeros())])]
)
def test_rounding_never_reaches_a_uniforms_excluded_high(spec, monkeypatch) -> None:
    # In float32, 1000 + 0.5 * (1 - 2**-23) rounds to 1000.5; the largest u the backends give
    # must still land below it. Rigged draws put every u on the largest bit pattern.
    def top_uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        u = keras.ops.full(shape, float(np.float32(1) - np.float32(2**-24)), dtype="float32")
        return u * (maxval - minval) + minval

    def top_randint(shape, minval, maxval, dtype="int32", seed=None):
        return keras.ops.full(shape, (1 << 23) - 1, dtype="int32")  # mantissa all ones, piece 0

    monkeypatch.setattr(keras.random, "uniform", top_uniform)
    monkeypatch.setattr(keras.random, "randint", top_randint)
    x = values(mi.compile(spec, "keras", seed=0), (4, 4))
    assert (x < 1000.5).all() and (x >= 1000.0).all(), x.max()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(
    "spec", [mi.uniform(5, 10), mi.mixture([(0.5, mi.uniform(5, 10)), (0.5, mi.zeros())])]
)
def test_half_precision_uniforms_stay_below_high(spec, dtype) -> None:
    x = keras.ops.convert_to_numpy(
        keras.ops.cast(mi.compile(spec, "keras", seed=3)((300, 300), dtype=dtype), "float64")
    )
    assert x.max() < 10 and x[x != 0].min() >= 5


# --------------------------------------------------------------------------- sparse


@pytest.mark.parametrize(
    "view, per_column_axis",
    [
        (
            LogicalView.of((6, 10), SPATIAL_IN_OUT),
            1,
        ),  # Keras (in=6, out=10): a logical column is a native row
        (LogicalView((10, 6)), 0),  # identity view: columns are native columns
    ],
)
def test_sparse_zeros_fall_in_every_logical_column(view, per_column_axis) -> None:
    x = np.asarray(keras.ops.convert_to_numpy(_draw(mi.sparse(0.3), view, None, "float32", 5)))
    assert x.shape == view.native_shape
    assert ((x == 0).sum(axis=per_column_axis) == 3).all()  # ceil(0.3 * 10) per logical column


def test_sparse_zero_rows_are_a_uniform_choice() -> None:
    # Over 2000 columns of 10 rows with 3 zeros each, every row is zero in 30% of them.
    x = values(mi.compile(mi.sparse(0.3), "keras", seed=8), (2000, 10))  # logical (10, 2000)
    rate = (x == 0).mean(axis=0)
    assert np.abs(rate - 0.3).max() < 5.3 * math.sqrt(0.3 * 0.7 / 2000)


# --------------------------------------------------------------------------- docstrings


@pytest.mark.parametrize("module", [keras_draw, keras_compiled], ids=["draw", "compiled"])
def test_docstring_examples(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


def test_complex_dtypes_are_a_clear_error_for_random_laws() -> None:
    for spec in (mi.normal(), mi.he_uniform(), mi.orthogonal(), MY_LAW):
        with pytest.raises(mi.SpecError, match="dtype='complex64' is not allowed"):
            mi.compile(spec, "keras", seed=0)((4, 4), dtype="complex64")
    # Deterministic laws fill what Keras' Zeros and Identity fill.
    filled = mi.compile(mi.eye(), "keras")((3, 3), dtype="complex64")
    assert keras.backend.standardize_dtype(filled.dtype) == "complex64"


MY_LAW = mi.custom(lambda rng, shape, dtype: rng.uniform(-1, 1, shape), name="tests.keras.draw.my_law")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_a_far_tail_without_float64_is_drawn_on_the_host_unquantized(dtype, monkeypatch) -> None:
    # As on JAX without x64: no float64 to invert the far tail in, so the reference's sampler
    # runs on the host, seeded by the call (an int seed: the same values again).
    monkeypatch.setattr(keras_draw, "_holds", lambda d: d != "float64")
    spec = mi.truncated_normal(mean=-1.0, std=0.5, low=4.0, high=6.0)
    init = mi.compile(spec, "keras", seed=5)
    x = values(init, (200, 200), dtype=dtype)
    lo, hi = spec.bounds
    assert x.min() >= lo and x.max() <= hi
    if dtype == "float32":
        assert np.unique(x).size > 0.95 * x.size
        assert stats.check(x, spec, reference_seed=4).passed
        again = mi.compile(spec, "keras", seed=5)
        assert np.array_equal(values(again, (200, 200)), x)


def test_the_top_word_of_a_hull_off_zero_stays_below_its_high(monkeypatch) -> None:
    # U(0, 2) + 1/2 at 5 + U(6, 8): the hull [0, 8) in steps of 2**-22, finer than float32's
    # 2**-21 below 8, so the top word rounds to 8 itself; the plan clamps the hull's top.
    spec = mi.mixture([(0.25, mi.uniform(0, 2)), (0.5, mi.constant(5.0)), (0.25, mi.uniform(6, 8))])
    monkeypatch.setattr(
        keras.random,
        "randint",
        lambda shape, minval, maxval, dtype="int32", seed=None: keras.ops.full(shape, maxval - 1, dtype),
    )
    x = values(mi.compile(spec, "keras", seed=0), (3, 3))
    assert (x < 8).all() and (x >= 7.999).all(), x.max()
