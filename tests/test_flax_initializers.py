"""The Flax/JAX initializers: ``mi.compile(spec, "flax")`` and ``from multiinit import flax``.

Every spec is drawn through the public initializer in Flax's (*spatial, in, out) layout,
viewed in logical layout and checked with ``multiinit.stats`` (analytic law and an
independent reference draw, each check at level 1e-6), in float32, bfloat16, float16 and
float64; jit against eager, keys, the native ``jax.nn.initializers`` where the law is the
same, bounds that hold in every dtype, custom NumPy functions under jit, and errors.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

import multiinit as mi
from multiinit import flax as mif, stats
from multiinit.fans import SPATIAL_IN_OUT, LogicalView
from multiinit.reference import check_shape

from matrix import SPECS, seed_chapter_my_init

KEY = jax.random.key(7)
CONV = (3, 3, 32, 64)  # flax kernel 3x3, 32 -> 64: logical (64, 32, 3, 3), n = 18,432
DENSE = (128, 256)  # flax Dense kernel in=128, out=256: logical (256, 128), n = 32,768


def native_shape(spec: mi.Spec) -> tuple[int, ...]:
    """The conv shape, or the dense one for specs that refuse 4-D (eye, sparse)."""
    for shape in (CONV, DENSE):
        try:
            check_shape(spec, LogicalView.of(shape, SPATIAL_IN_OUT).logical_shape)
            return shape
        except mi.ShapeError:
            continue
    raise AssertionError(f"no shape for {spec!r}")


def logical(x) -> np.ndarray:
    x = np.asarray(x)
    return LogicalView.of(x.shape, SPATIAL_IN_OUT).to_logical(x)


# --------------------------------------------------------------------------- every spec


@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_every_spec_draws_its_law_and_is_keyed(spec) -> None:
    shape = native_shape(spec)
    init = mi.compile(spec, "flax")
    eager = init(KEY, shape)
    assert eager.shape == shape and eager.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(init(KEY, shape)), np.asarray(eager))
    if spec.random:
        other = init(jax.random.key(8), shape)
        assert not np.array_equal(np.asarray(other), np.asarray(eager)), "another key must give other values"
    verdict = stats.check(logical(eager), spec)
    assert verdict.passed, f"{spec!r} on flax {shape}: {verdict}"


# One spec per code path: constant, uniform, normal, truncated (erf and tail inverse), the
# variance-scaling laws, and every structural spec.
PATHS = [
    mi.constant(42),
    mi.uniform(-0.5, 0.25),
    mi.normal(0.5, 0.01),
    mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5),
    mi.trunc_normal(std=0.02),
    mi.xavier_uniform(gain=2.0),
    mi.kaiming_normal(mode="fan_out", nonlinearity="relu"),
    mi.he_normal(),
    mi.orthogonal(gain=2.0),
    mi.eye(),
    mi.dirac(groups=2),
    mi.sparse(0.3, std=0.01),
    mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
    mi.custom(seed_chapter_my_init, name="flax_tests.my_init"),
]


HALF = [(spec, "bfloat16") for spec in PATHS] + [
    (spec, "float16")
    for spec in (PATHS[1], PATHS[3], PATHS[7], PATHS[-1])  # uniform, truncated, he, custom
]


@pytest.mark.parametrize("spec, dtype", HALF, ids=[f"{s!r}-{d}" for s, d in HALF])
def test_half_precisions_are_the_float32_law_rounded_once(spec, dtype) -> None:
    """A half-precision draw is the float32 draw of the same key rounded to nearest, except
    where rounding would cross a bound (then it is the nearest value inside) or, for a custom
    function asked for float16, NumPy rounded from float64 directly. Where the dtype resolves
    the law (std >= 20 steps), the law itself is checked too."""
    shape = native_shape(spec)
    init = mi.compile(spec, "flax")
    x = init(KEY, shape, jnp.dtype(dtype))
    assert x.dtype == jnp.dtype(dtype)
    half = np.asarray(x).astype(np.float64)
    rounded = np.asarray(init(KEY, shape)).astype(jnp.dtype(dtype)).astype(np.float64)
    differ = half != rounded
    eps = float(ml_dtypes.finfo(jnp.dtype(dtype)).eps)
    # Only values within half a step of a bound move (a few per thousand in bfloat16 on [5, 10)).
    assert differ.mean() <= 1e-2, f"{differ.sum()} values are not the float32 draw rounded"
    assert (np.abs(half - rounded)[differ] <= eps * np.abs(rounded[differ])).all()
    if half.std() >= 20 * eps * np.abs(half).max():
        verdict = stats.check(logical(x), spec)  # in its own dtype: the tolerances follow its eps
        assert verdict.passed, f"{spec!r} in {dtype}: {verdict}"


@pytest.mark.parametrize("spec", PATHS, ids=repr)
def test_jit_gives_the_eager_values(spec) -> None:
    """One spec per code path (the others differ from these only in their numbers)."""
    shape = native_shape(spec)
    init = mi.compile(spec, "flax")
    jitted = jax.jit(lambda key: init(key, shape))(KEY)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(init(KEY, shape)))


#: float64 has its own code (52-bit uniforms, the tail inverse CDF in float64): one spec per path.
WIDE = [
    mi.uniform(-0.5, 0.25),
    mi.normal(0.5, 0.01),
    mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5),
    mi.trunc_normal(std=0.02),
    mi.he_normal(),
    mi.orthogonal(gain=2.0),
    PATHS[-2],
    PATHS[-1],
]


@pytest.mark.parametrize("spec", WIDE, ids=repr)
def test_float64_with_x64_draws_the_law_in_float64(spec) -> None:
    shape = native_shape(spec)
    init = mi.compile(spec, "flax")
    with jax.enable_x64(True):
        x = init(KEY, shape, jnp.float64)
        assert x.dtype == jnp.float64
        if isinstance(spec, mi.spec.Normal):
            np.testing.assert_array_equal(
                np.asarray(jax.jit(lambda k: init(k, shape, jnp.float64))(KEY)), np.asarray(x)
            )
    verdict = stats.check(logical(x), spec)
    assert verdict.passed, f"{spec!r} in float64: {verdict}"


def test_float64_without_x64_is_what_jax_gives() -> None:
    with pytest.warns(UserWarning, match="float64"):
        native = jax.nn.initializers.normal(0.1)(KEY, (4, 3), jnp.float64)
    ours = mif.normal(std=0.1)(KEY, (4, 3), jnp.float64)
    assert ours.dtype == native.dtype == jnp.float32


def test_other_dtypes_are_refused() -> None:
    with pytest.raises(
        mi.SpecError, match=r"dtype=int32 is not allowed for normal\(\).*bfloat16, float16, float32, float64"
    ):
        mif.normal()(KEY, (2, 2), jnp.int32)
    with pytest.raises(TypeError, match=r"dtype='foo' is not allowed"):  # a SpecError and JAX's TypeError
        mif.zeros()(KEY, (2, 2), "foo")
    with pytest.raises(mi.SpecError, match=r"int8 cannot hold 2.5 exactly"):
        mif.constant(2.5)(KEY, (2, 2), jnp.int8)
    with pytest.raises(mi.SpecError, match=r"uint8 cannot hold 300"):
        mif.constant(300)(KEY, (2, 2), jnp.uint8)
    with pytest.raises(mi.SpecError, match=r"dtype=bool is not allowed for mixture"):
        mif.mixture([(0.5, mi.zeros()), (0.5, mi.ones())])(KEY, (2, 2), jnp.bool_)


# --------------------------------------------------------------------------- the bugs of issue 14


def test_an_initializer_is_jittable_itself_with_a_static_shape() -> None:
    """Failed on main: "cannot create weak reference to 'Initializer' object" (jax.jit keeps
    a weak reference to what it wraps); a jax.nn.initializers function jits fine."""
    for init in (
        mi.compile(mi.xavier_uniform(), "flax"),
        mif.custom(seed_chapter_my_init, name="flax_tests.my_init"),
    ):
        jitted = jax.jit(init, static_argnums=(1,))
        np.testing.assert_array_equal(np.asarray(jitted(KEY, (4, 8))), np.asarray(init(KEY, (4, 8))))


@pytest.mark.parametrize(
    "init, shape",
    [
        (mif.orthogonal(gain=2.0), (3, 3, 4, 8)),
        (mif.orthogonal(), (16, 4)),
        (mif.dirac(groups=2), (3, 3, 2, 4)),
        (mif.dirac(), (3, 4, 4)),
        (mif.sparse(0.3), (40, 6)),
        (mif.eye(), (3, 5)),
        (mif.mixture([(0.3, mi.orthogonal()), (0.7, mi.normal())]), (8, 8)),
    ],
    ids=repr,
)
def test_no_implicit_rank_promotion(init, shape) -> None:
    """Failed on main for orthogonal, dirac and sparse: code that sets
    jax_numpy_rank_promotion="raise" could not use them (nnx.Linear(kernel_init=mif.orthogonal())
    broke there)."""
    expected = np.asarray(init(KEY, shape))
    previous = jax.config.jax_numpy_rank_promotion
    jax.config.update("jax_numpy_rank_promotion", "raise")
    try:
        x = init(KEY, shape)  # the cached kernels are traced again: the flag is part of the trace context
        jitted = jax.jit(lambda k: init(k, shape))(KEY)
        linear = nnx.Linear(4, 8, kernel_init=mif.orthogonal(), rngs=nnx.Rngs(0))
    finally:
        jax.config.update("jax_numpy_rank_promotion", previous)
    np.testing.assert_array_equal(np.asarray(x), expected)
    np.testing.assert_array_equal(np.asarray(jitted), expected)
    assert linear.kernel.get_value().shape == (4, 8)


@pytest.mark.parametrize("dtype", ["int32", "int8", "uint8", "int16", "bool"])
def test_constants_eye_and_dirac_fill_integer_and_bool_arrays(dtype) -> None:
    """Failed on main: mif.zeros() and mif.constant() refused int32 (the Keras adapter fills
    integer variables)."""
    dtype = jnp.dtype(dtype)
    assert mif.zeros()(KEY, (2, 3), dtype).dtype == dtype
    np.testing.assert_array_equal(np.asarray(mif.zeros()(KEY, (2, 3), dtype)), np.zeros((2, 3), dtype))
    np.testing.assert_array_equal(np.asarray(mif.ones()(KEY, (4,), dtype)), np.ones(4, dtype))
    if dtype != np.bool_:
        np.testing.assert_array_equal(np.asarray(mif.constant(7)(KEY, (2,), dtype)), [7, 7])
    np.testing.assert_array_equal(np.asarray(mif.eye()(KEY, (3, 2), dtype)), np.eye(2, 3, dtype=dtype).T)
    dirac = np.asarray(mif.dirac()(KEY, (3, 2, 2), dtype))
    assert dirac.dtype == dtype and dirac.sum() == 2 and dirac[1, 0, 0] == dirac[1, 1, 1] == 1


# --------------------------------------------------------------------------- complex dtypes


def _complex_parts(x) -> tuple[np.ndarray, np.ndarray]:
    x = logical(x)
    return x.real.astype(np.float64), x.imag.astype(np.float64)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_dtypes_follow_jaxs_convention(dtype) -> None:
    """JAX's convention: E|z - mean|**2 is the real law's variance. A normal is circular (each
    part N(mean_part, std**2/2)); variance scaling is JAX's disk, circular normal and complex
    truncated normal, whose squared modulus has a law we know in closed form (uniform on
    [0, 2 var) for the disk; an exponential cut at 4 and rescaled for the truncated normal).
    Each check: KS at level 1e-6 on 18,432 to 32,768 values."""
    from scipy import stats as scipy_stats

    with jax.enable_x64(dtype == "complex128"):
        dtype = jnp.dtype(dtype)
        # normal(0.5, 2): real part N(0.5, 2), imaginary part N(0, 2) (the mean is real).
        re, im = _complex_parts(mif.normal(0.5, 2.0)(KEY, DENSE, dtype))
        for part, mean in ((re, 0.5), (im, 0.0)):
            assert (
                scipy_stats.kstest(part.ravel(), scipy_stats.norm(mean, math.sqrt(2.0)).cdf).pvalue
                > stats.ALPHA
            )
        fan = 3 * 3 * 32  # he on the conv kernel: fan_in, variance 2 / fan
        variance = 2.0 / fan
        re, im = _complex_parts(mif.he_uniform()(KEY, CONV, dtype))
        r2 = (re**2 + im**2).ravel()
        assert scipy_stats.kstest(r2, scipy_stats.uniform(0, 2 * variance).cdf).pvalue > stats.ALPHA
        re, im = _complex_parts(mif.he_normal()(KEY, CONV, dtype))
        # |z|**2 of the cut circular normal, rescaled: 0.9531... ** 2 * |z|**2 / variance is Exp(1) cut at 4.
        t = (re**2 + im**2).ravel() * 0.95311164380491208**2 / variance
        cut = scipy_stats.truncexpon(b=4.0)
        assert t.max() <= 4.0 * (1 + 1e-5) and scipy_stats.kstest(t, cut.cdf).pvalue > stats.ALPHA
        re, im = _complex_parts(mif.xavier_normal(gain=2.0)(KEY, CONV, dtype))
        sd = 2.0 * math.sqrt(2.0 / (fan + 64 * 9)) / math.sqrt(2.0)  # each part: half the variance
        for part in (re, im):
            assert scipy_stats.kstest(part.ravel(), scipy_stats.norm(0, sd).cdf).pvalue > stats.ALPHA
        w = mif.orthogonal(gain=2.0)(KEY, (3, 3, 4, 8), dtype)  # logical (8, 36): unitary rows, times 2
        flat = logical(w).reshape(8, -1)
        np.testing.assert_allclose(flat @ flat.conj().T, 4 * np.eye(8), atol=1e-4)
        assert np.abs(np.asarray(w).imag).max() > 0.1
        s = logical(mif.sparse(0.25)(KEY, (40, 6), dtype))
        assert ((s == 0).sum(axis=0) == 2).all() and np.abs(s.imag).max() > 0
        np.testing.assert_array_equal(np.asarray(mif.constant(3)(KEY, (2,), dtype)), [3 + 0j, 3 + 0j])


def test_complex_draws_are_jaxs_numbers() -> None:
    native = [
        (mi.he_normal(), jax.nn.initializers.he_normal()),
        (mi.glorot_uniform(), jax.nn.initializers.glorot_uniform()),
        (mi.lecun_normal(), jax.nn.initializers.lecun_normal()),
        (mi.normal(std=0.3), jax.nn.initializers.normal(0.3)),
        (mi.orthogonal(), jax.nn.initializers.orthogonal()),
    ]
    for spec, init in native:
        ours = mi.compile(spec, "flax")(KEY, CONV, jnp.complex64)
        theirs = jax.jit(lambda k, init=init: init(k, CONV, jnp.complex64))(KEY)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=repr(spec))


@pytest.mark.parametrize(
    "spec",
    [mi.uniform(-1, 1), mi.truncated_normal(), mi.trunc_normal(std=0.02), PATHS[-2], PATHS[-1]],
    ids=repr,
)
def test_laws_without_a_complex_form_in_jax_are_refused(spec) -> None:
    with pytest.raises(mi.SpecError, match=r"dtype=complex64 is not allowed for .*: "):
        mi.compile(spec, "flax")(KEY, (4, 4), jnp.complex64)


# --------------------------------------------------------------------------- with_axes


def test_with_axes_specs_take_their_fans_from_the_shape_received() -> None:
    """JAX's in_axis/out_axis/batch_axis on the array as stored: an attention query kernel
    (features 32, heads 8, head_dim 16) has fan_in 32, fan_out 128 (not 8 * 32 and 16 * 32)."""
    spec = mi.with_axes(mi.he_uniform(), in_axis=0, out_axis=(1, 2))
    x = np.asarray(mi.compile(spec, "flax")(KEY, (32, 8, 16)))
    bound = math.sqrt(6 / 32)  # he_uniform: sqrt(3 * 2 / fan_in), by hand
    assert 0.99 * bound < np.abs(x).max() < bound
    theirs = jax.nn.initializers.he_uniform(in_axis=0, out_axis=(1, 2))(KEY, (32, 8, 16))
    np.testing.assert_array_equal(x, np.asarray(theirs))  # JAX's numbers too
    stacked = mi.with_axes(mi.glorot_normal(), in_axis=-2, out_axis=-1, batch_axis=0)
    y = np.asarray(mif.compile(stacked)(KEY, (6, 64, 96)))
    sigma = math.sqrt(2 / (64 + 96)) / 0.87962566103423978
    assert np.abs(y).max() <= 2 * sigma and np.abs(y).max() > 1.9 * sigma
    with pytest.raises(mi.ShapeError):
        mi.compile(spec, "flax")(KEY, (32, 8))  # out_axis (1, 2) does not fit 2-D


# --------------------------------------------------------------------------- the fence


def _lying(kind):
    def law(rng, shape, dtype):
        if kind == "raise":
            raise RuntimeError("the law broke")
        if kind == "shape":
            return np.zeros((1, *shape))
        if kind == "nan":
            x = np.ones(shape)
            x.flat[3] = np.nan
            return x
        return np.full(shape, "x")  # strings: not numbers

    return mi.custom(law, name=f"flax_tests.lying_{kind}")


@pytest.mark.parametrize("kind", ["raise", "shape", "nan", "dtype"])
def test_custom_laws_are_fenced_eagerly_and_under_jit(kind) -> None:
    """A failing or lying user law is a LawError naming the law; under jit the JAX runtime
    error that reaches the caller still names it (and the LawError)."""
    spec = _lying(kind)
    init = mi.compile(spec, "flax")
    with pytest.raises(mi.LawError, match=rf"custom law 'flax_tests.lying_{kind}'") as caught:
        init(KEY, (3, 4))
    if kind == "raise":
        assert isinstance(caught.value.__cause__, RuntimeError)
    if kind == "shape":
        assert isinstance(caught.value, mi.ShapeError)
    with pytest.raises(Exception, match=rf"Law(Shape)?Error: custom law 'flax_tests.lying_{kind}'"):
        jax.block_until_ready(jax.jit(lambda k: init(k, (3, 4)))(KEY))
    mixture = mi.compile(mi.mixture([(0.5, spec), (0.5, mi.zeros())]), "flax")
    with pytest.raises(mi.LawError, match=rf"custom law 'flax_tests.lying_{kind}'"):
        mixture(KEY, (3, 4))


def test_the_fence_names_the_parameter_path_at_model_level() -> None:
    from multiinit.flax.draw import _draw

    view = LogicalView.of((3, 4), SPATIAL_IN_OUT)
    with pytest.raises(mi.LawError, match=r"custom law 'flax_tests.lying_nan' at 'layer/kernel'"):
        _draw(_lying("nan"), KEY, view, None, np.dtype("float32"), path="layer/kernel")


# --------------------------------------------------------------------------- the native calls


NATIVE = [
    (mi.zeros(), jax.nn.initializers.zeros),
    (mi.constant(42), jax.nn.initializers.constant(42)),
    (mi.uniform(0, 0.3), jax.nn.initializers.uniform(0.3)),
    (mi.normal(std=0.01), jax.nn.initializers.normal(0.01)),
    (mi.truncated_normal(std=0.02), jax.nn.initializers.truncated_normal(0.02)),
    (
        mi.truncated_normal(std=0.5, low=-1.0, high=3.0),
        jax.nn.initializers.truncated_normal(0.5, lower=-1.0, upper=3.0),
    ),
    (mi.glorot_uniform(), jax.nn.initializers.glorot_uniform()),
    (mi.glorot_normal(), jax.nn.initializers.glorot_normal()),
    (mi.he_uniform(), jax.nn.initializers.he_uniform()),
    (mi.he_normal(), jax.nn.initializers.he_normal()),
    (mi.lecun_uniform(), jax.nn.initializers.lecun_uniform()),
    (mi.lecun_normal(), jax.nn.initializers.lecun_normal()),
    (mi.xavier_normal(gain=2.0), jax.nn.initializers.variance_scaling(4.0, "fan_avg", "normal")),
    (mi.kaiming_uniform(a=math.sqrt(5)), jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")),
    (
        mi.variance_scaling(0.5, "fan_out", "truncated_normal"),
        jax.nn.initializers.variance_scaling(0.5, "fan_out", "truncated_normal"),
    ),
    (
        mi.variance_scaling(2.0, "fan_geo_avg", "untruncated_normal"),
        jax.nn.initializers.variance_scaling(2.0, "fan_geo_avg", "normal"),
    ),
    (mi.orthogonal(gain=2.0), jax.nn.initializers.orthogonal(2.0)),
    (
        mi.truncated_normal(std=0.3, low=0.5, high=1.5),
        jax.nn.initializers.truncated_normal(0.3, lower=0.5, upper=1.5),
    ),
]


@pytest.mark.parametrize("spec, native", NATIVE, ids=[repr(s) for s, _ in NATIVE])
def test_same_key_same_values_as_jax_nn_initializers(spec, native) -> None:
    """Where the law is JAX's, the draw is JAX's: with the same key, bit for bit the values of
    JAX's initializer under jax.jit (JAX's primitives, in its order, with its scalars), eager
    or jitted here, in float32 and float64."""
    for dtype in ("float32", "float64"):
        with jax.enable_x64(dtype == "float64"):
            ours = mi.compile(spec, "flax")
            theirs = np.asarray(jax.jit(lambda k: native(k, CONV, jnp.dtype(dtype)))(KEY))
            np.testing.assert_array_equal(np.asarray(ours(KEY, CONV, jnp.dtype(dtype))), theirs)
            np.testing.assert_array_equal(
                np.asarray(jax.jit(lambda k: ours(k, CONV, jnp.dtype(dtype)))(KEY)), theirs
            )


def test_uniform_is_low_high_not_jax_zero_scale() -> None:
    x = np.asarray(mif.uniform(-0.5, 0.25)(KEY, (256, 256)))
    jax_style = np.asarray(jax.nn.initializers.uniform(0.25)(KEY, (256, 256)))
    assert x.min() < -0.49 and x.max() < 0.25 and jax_style.min() >= 0.0
    assert stats.check(x, mi.uniform(-0.5, 0.25)).passed


# --------------------------------------------------------------------------- bounds


def test_uniform_never_reaches_high_in_bfloat16() -> None:
    x = np.asarray(mif.uniform(0.0, 1.0)(KEY, (512, 512), jnp.bfloat16)).astype(np.float64)
    # bfloat16 steps by 2**-8 below 1: a quarter-million draws round onto 1.0 unless kept below.
    assert x.max() == 1 - 2.0**-8
    assert x.min() >= 0.0


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_truncated_normal_never_leaves_its_bounds(dtype) -> None:
    spec = mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5)
    x = np.asarray(mi.compile(spec, "flax")(KEY, (512, 512), jnp.dtype(dtype))).astype(np.float64)
    # bounds [0.08, 0.15]: hand-computed; neither is representable in bfloat16.
    assert x.min() >= 0.08 and x.max() <= 0.15
    assert x.min() < 0.0802 and x.max() > 0.149


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_truncated_variance_scaling_stays_within_two_sigma(dtype) -> None:
    x = np.asarray(mif.he_normal()(KEY, (3, 3, 64, 128), jnp.dtype(dtype))).astype(np.float64)
    sigma = math.sqrt(2 / 576) / 0.87962566103423978  # fan_in = 3*3*64, by hand
    assert np.abs(x).max() <= 2 * sigma
    assert np.abs(x).max() > 1.99 * sigma


@pytest.mark.parametrize(
    "spec",
    [
        mi.truncated_normal(low=3.0, high=5.0),
        mi.truncated_normal(mean=1.0, std=2.0, low=-6.0, high=-4.5),
        mi.truncated_normal(low=-1.0, high=30.0),
    ],
    ids=repr,
)
def test_truncated_normal_far_in_a_tail(spec) -> None:
    """Bounds beyond 4 std use the inverse CDF in the lower tail (JAX's erf sampler loses
    its resolution there)."""
    x = mi.compile(spec, "flax")(KEY, (128, 128))
    verdict = stats.check(np.asarray(x), spec)
    assert verdict.passed, str(verdict)


# --------------------------------------------------------------------------- fans


def test_fans_are_computed_on_the_logical_view() -> None:
    # A Dense kernel in=64, out=512 is torch's Linear(64, 512): fan_in 64.
    x = np.asarray(mif.kaiming_uniform()(KEY, (64, 512)))
    bound = math.sqrt(6 / 64)  # gain sqrt(2) * sqrt(3 / 64), by hand
    assert 0.99 * bound < np.abs(x).max() < bound
    assert stats.check(logical(x), mi.kaiming_uniform()).passed
    # A 3x3 conv 64 -> 128: fan_in 576 in every framework.
    w = np.asarray(mif.he_uniform()(KEY, (3, 3, 64, 128)))
    bound = math.sqrt(6 / 576)
    assert 0.99 * bound < np.abs(w).max() < bound


def test_fans_option_gives_a_bias_its_kernels_fans() -> None:
    torch_bias = mi.variance_scaling(1 / 3, "fan_in", "uniform")
    with pytest.raises(mi.ShapeError, match="fewer than 2 dimensions"):
        mi.compile(torch_bias, "flax")(KEY, (8,))
    x = np.asarray(mi.compile(torch_bias, "flax", fans=(4, 8))(KEY, (20000,)))
    assert 0.499 < np.abs(x).max() < 0.5  # U(+-1/sqrt(4)), torch's Linear(4, 8) bias
    assert stats.check(x, torch_bias, fans=(4, 8)).passed
    with pytest.raises(mi.SpecError, match=r"fans=\(4,\) is not allowed"):
        mi.compile(torch_bias, "flax", fans=(4,))


def test_structural_specs_in_flax_layout() -> None:
    eye = np.asarray(mif.eye()(KEY, (3, 5)))  # Dense in=3, out=5: logical (5, 3)
    np.testing.assert_array_equal(eye, np.eye(5, 3).T)
    dirac = np.asarray(mif.dirac()(KEY, (3, 3, 2, 2)))  # conv 3x3, 2 -> 2
    expected = np.zeros((3, 3, 2, 2))
    expected[1, 1, 0, 0] = expected[1, 1, 1, 1] = 1.0  # centre k//2 = 1, by hand
    np.testing.assert_array_equal(dirac, expected)
    even = np.asarray(mif.dirac()(KEY, (4, 1, 1)))  # k = 4: torch's centre is index 2
    np.testing.assert_array_equal(even[:, 0, 0], [0, 0, 1, 0])
    w = np.asarray(mif.orthogonal(gain=2.0)(KEY, (3, 3, 4, 8)))  # logical (8, 36): rows orthogonal
    flat = logical(w).reshape(8, -1)
    np.testing.assert_allclose(flat @ flat.T, 4 * np.eye(8), atol=1e-5)
    s = np.asarray(mif.sparse(0.25)(KEY, (40, 6)))  # logical (6, 40): ceil(0.25 * 6) = 2 zeros per column
    assert ((logical(s) == 0).sum(axis=0) == 2).all()


def test_sparse_zero_rows_are_a_uniformly_random_k_subset_of_each_column() -> None:
    """The partial Fisher-Yates shuffle behind sparse: exactly k rows per column, and every
    k-subset equally likely. 3 rows of 7 give C(7, 3) = 35 subsets; over 70,000 columns each
    is expected 2,000 times, and a chi-square test at level 1e-6 (34 degrees of freedom)
    detects a 2% bias in one subset's share."""
    from itertools import combinations

    from scipy import stats as scipy_stats

    from multiinit.flax.draw import _k_rows_per_column

    for k in (0, 1, 7):  # the edges: nothing, one, every row
        mask = np.asarray(_k_rows_per_column(jax.random.key(k), (7, 50), k))
        assert (mask.sum(axis=0) == k).all()
    mask = np.asarray(_k_rows_per_column(jax.random.key(3), (7, 70_000), 3))
    assert (mask.sum(axis=0) == 3).all()
    index = {subset: i for i, subset in enumerate(combinations(range(7), 3))}
    rows = [tuple(np.flatnonzero(column)) for column in mask.T]
    counts = np.bincount([index[r] for r in rows], minlength=35)
    assert scipy_stats.chisquare(counts).pvalue > stats.ALPHA, counts


def test_empty_shapes_give_empty_arrays() -> None:
    assert mif.xavier_uniform()(KEY, (0, 4)).shape == (0, 4)
    assert mif.normal()(KEY, (0,)).shape == (0,)


# --------------------------------------------------------------------------- custom functions


def test_custom_gets_the_logical_shape_and_is_rearranged_to_flax() -> None:
    seen = []

    def ramp(rng, shape, dtype):
        seen.append((shape, np.dtype(dtype)))
        return np.arange(math.prod(shape), dtype=np.float64).reshape(shape)

    init = mif.custom(ramp, name="flax_tests.ramp")
    x = np.asarray(init(KEY, (3, 3, 4, 8)))
    assert seen[-1] == ((8, 4, 3, 3), np.dtype("float32"))
    np.testing.assert_array_equal(x, np.arange(288.0).reshape(8, 4, 3, 3).transpose(2, 3, 1, 0))
    init(KEY, (2, 2), jnp.bfloat16)
    assert seen[-1][1] == np.dtype("float32")  # NumPy's random functions know no bfloat16
    init(KEY, (2, 2), jnp.float16)
    assert seen[-1][1] == np.dtype("float16")


def test_custom_is_keyed_and_works_under_jit_and_vmap() -> None:
    init = mif.custom(seed_chapter_my_init, name="flax_tests.my_init")
    a = np.asarray(init(KEY, (64, 32)))
    np.testing.assert_array_equal(np.asarray(init(KEY, (64, 32))), a)
    assert not np.array_equal(np.asarray(init(jax.random.key(8), (64, 32))), a)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda k: init(k, (64, 32)))(KEY)), a)
    raw = jax.random.PRNGKey(7)  # the raw uint32 key of the same seed: the same words, same values
    np.testing.assert_array_equal(np.asarray(init(raw, (64, 32))), a)
    keys = jax.random.split(KEY, 3)
    batched = np.asarray(jax.vmap(lambda k: init(k, (64, 32)))(keys))
    for i in range(3):
        np.testing.assert_array_equal(batched[i], np.asarray(init(keys[i], (64, 32))))


def test_custom_in_a_flax_layer_under_jitted_init() -> None:
    init = mif.custom(seed_chapter_my_init, name="flax_tests.my_init")
    layer = nn.Dense(64, kernel_init=init)
    params = jax.jit(layer.init)(KEY, jnp.ones((1, 32)))["params"]
    w = np.asarray(params["kernel"])
    assert w.shape == (32, 64) and ((w == 0) | (np.abs(w) >= 5)).all() and (w != 0).any()


def test_custom_errors_eagerly_and_under_jit() -> None:
    wrong = mif.custom(lambda rng, shape, dtype: np.zeros((1,)), name="flax_tests.wrong_shape")
    with pytest.raises(mi.ShapeError, match=r"returned an array of shape \(1,\) for shape \(4, 3\)"):
        wrong(KEY, (3, 4))

    def broken(rng, shape, dtype):
        raise ValueError("my_init cannot do this")

    failing = mif.custom(broken, name="flax_tests.broken")
    with pytest.raises(
        mi.LawError, match=r"custom law 'flax_tests\.broken' raised ValueError: my_init cannot do this"
    ):
        failing(KEY, (3, 4))
    with pytest.raises(Exception, match="my_init cannot do this"):
        jax.block_until_ready(jax.jit(lambda k: failing(k, (3, 4)))(KEY))


# --------------------------------------------------------------------------- the namespace


def test_the_flax_namespace_returns_native_initializers() -> None:
    for name in mi.CONSTRUCTORS:
        assert callable(getattr(mif, name)), name
    assert mif.xavier_uniform(gain=2.0) == mi.compile(mi.xavier_uniform(gain=2.0), "flax")
    assert mi.xavier_uniform(gain=2.0).to("flax") == mi.compile(mi.xavier_uniform(gain=2.0), "jax")
    assert isinstance(mif.zeros(), mif.Initializer)
    assert mif.calculate_gain("relu") == math.sqrt(2)
    assert mif.LAYOUT == SPATIAL_IN_OUT

    @mif.custom(name="flax_tests.decorated")
    def decorated(rng, shape, dtype):
        return np.full(shape, 3.0)

    assert isinstance(decorated, mif.Initializer)
    np.testing.assert_array_equal(np.asarray(decorated(KEY, (2,))), [3.0, 3.0])
    assert hash(mif.normal(std=0.01)) == hash(mif.normal(std=0.01))


def test_a_jitted_flax_init_gives_the_eager_params() -> None:
    layer = nn.Conv(16, (3, 3), kernel_init=mif.he_normal(), bias_init=mif.normal(0.1, 0.5))
    x = jnp.ones((1, 8, 8, 4))
    eager, jitted = layer.init(KEY, x)["params"], jax.jit(layer.init)(KEY, x)["params"]
    for leaf in ("kernel", "bias"):
        np.testing.assert_array_equal(np.asarray(jitted[leaf]), np.asarray(eager[leaf]))


def test_initializers_plug_into_linen_and_nnx() -> None:
    layer = nn.Dense(8, kernel_init=mif.orthogonal(), bias_init=mif.constant(0.5))
    params = layer.init(KEY, jnp.ones((1, 4)))["params"]
    w = np.asarray(params["kernel"])  # (4, 8): logical (8, 4), so its 4 columns are orthonormal
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(params["bias"]), np.full(8, 0.5))
    linear = nnx.Linear(4, 8, kernel_init=mif.orthogonal(), bias_init=mif.constant(0.5), rngs=nnx.Rngs(0))
    w = np.asarray(linear.kernel.get_value())
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(linear.bias.get_value()), np.full(8, 0.5))
    abstract = jax.eval_shape(
        lambda: nn.Dense(8, kernel_init=mif.custom(seed_chapter_my_init, name="flax_tests.my_init")).init(
            KEY, jnp.ones((1, 4))
        )
    )
    assert abstract["params"]["kernel"].shape == (4, 8)


def test_errors_name_what_was_given() -> None:
    with pytest.raises(mi.SpecError, match=r"spec='normal' is not allowed"):
        mif.compile("normal")
    with pytest.raises(mi.SpecError, match=r"key=0 is not allowed; key must be a JAX PRNG key"):
        mif.normal()(0, (2, 2))
    with pytest.raises(mi.ShapeError, match=r"shape=\(2, -1\) is not allowed"):
        mif.normal()(KEY, (2, -1))
    with pytest.raises(
        mi.ShapeError,
        match=r"eye\(\) cannot fill a tensor of shape \(4, 2, 3\).*flax array of shape \(3, 2, 4\)",
    ):
        mif.eye()(KEY, (3, 2, 4))
    with pytest.raises(mi.ShapeError, match="fewer than 2 dimensions"):
        mif.glorot_uniform()(KEY, (5,))
