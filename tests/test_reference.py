"""The NumPy reference: every law checked against SciPy distributions written out by hand here
(not taken from multiinit.stats), exact values for deterministic specs, shapes, seeds, dtypes.

Statistical thresholds: each KS test at level 1e-6 on n = 32,768 draws (critical D ~ 0.015)
and moments at z = 4.89 (two-sided 1e-6); fixed seeds, so a pass or fail is repeatable.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import multiinit as mi
from multiinit import stats as mistats
from multiinit.reference import check_shape, sample, truncated_standard_normal

ALPHA = 1e-6
Z = 4.89
SHAPE = (256, 128)  # fan_in 128, fan_out 256
FAN_IN, FAN_OUT = 128, 256
T2 = 0.87962566103423978  # std of N(0,1) cut at +-2 (Keras/JAX's constant)


def _relu_gain() -> float:
    return math.sqrt(2.0)


LAWS = [
    (mi.uniform(5, 10), stats.uniform(5, 5)),
    (mi.uniform(-3, -2.5), stats.uniform(-3, 0.5)),
    (mi.normal(1.5, 0.01), stats.norm(1.5, 0.01)),
    (mi.truncated_normal(0.1, 0.02, -1.5, 2.5), stats.truncnorm(-1.5, 2.5, loc=0.1, scale=0.02)),
    (mi.truncated_normal(std=3.0, low=1.0, high=4.0), stats.truncnorm(1.0, 4.0, scale=3.0)),
    (mi.truncated_normal(low=-6.0, high=-4.5), stats.truncnorm(-6.0, -4.5)),
    (mi.trunc_normal(0, 0.5, -1, 1), stats.truncnorm(-2, 2, scale=0.5)),
    (mi.xavier_uniform(gain=2.0), stats.uniform(-2 * math.sqrt(6 / 384), 4 * math.sqrt(6 / 384))),
    (mi.xavier_normal(gain=0.5), stats.norm(0, 0.5 * math.sqrt(2 / 384))),
    (mi.kaiming_uniform(a=math.sqrt(5)), stats.uniform(-1 / math.sqrt(128), 2 / math.sqrt(128))),
    (mi.kaiming_uniform(), stats.uniform(-math.sqrt(6 / 128), 2 * math.sqrt(6 / 128))),
    (mi.kaiming_normal(mode="fan_out", nonlinearity="relu"), stats.norm(0, _relu_gain() / math.sqrt(256))),
    (mi.kaiming_normal(nonlinearity="tanh"), stats.norm(0, 5 / 3 / math.sqrt(128))),
    (mi.glorot_uniform(), stats.uniform(-math.sqrt(6 / 384), 2 * math.sqrt(6 / 384))),
    (mi.glorot_normal(), stats.truncnorm(-2, 2, scale=math.sqrt(2 / 384) / T2)),
    (mi.he_uniform(), stats.uniform(-math.sqrt(6 / 128), 2 * math.sqrt(6 / 128))),
    (mi.he_normal(), stats.truncnorm(-2, 2, scale=math.sqrt(2 / 128) / T2)),
    (mi.lecun_uniform(), stats.uniform(-math.sqrt(3 / 128), 2 * math.sqrt(3 / 128))),
    (mi.lecun_normal(), stats.truncnorm(-2, 2, scale=math.sqrt(1 / 128) / T2)),
    (
        mi.variance_scaling(0.5, "fan_avg", "uniform"),
        stats.uniform(-math.sqrt(1.5 / 192), 2 * math.sqrt(1.5 / 192)),
    ),
    (mi.variance_scaling(3.0, "fan_out", "untruncated_normal"), stats.norm(0, math.sqrt(3 / 256))),
    (
        mi.variance_scaling(3.0, "fan_out", "truncated_normal"),
        stats.truncnorm(-2, 2, scale=math.sqrt(3 / 256) / T2),
    ),
]


@pytest.mark.parametrize("spec, dist", LAWS, ids=[repr(s) for s, _ in LAWS])
def test_random_specs_follow_their_analytic_law(spec: mi.Spec, dist) -> None:
    x = sample(spec, SHAPE, seed=11, dtype="float64").ravel()
    n = x.size
    assert stats.kstest(x, dist.cdf).pvalue >= ALPHA
    mean, var = float(dist.mean()), float(dist.var())
    assert abs(x.mean() - mean) <= Z * math.sqrt(var / n)
    mu4 = float(dist.expect(lambda t: (t - mean) ** 4))
    assert abs(x.var() - var) <= Z * math.sqrt((mu4 - var**2) / n)
    lo, hi = dist.support()
    assert x.min() >= lo and x.max() <= hi
    assert mistats.check(x.reshape(SHAPE), spec).passed


def test_truncated_variance_scaling_has_exactly_the_scaled_variance() -> None:
    # The point of Keras/JAX's 0.8796 correction: the truncated draw's variance is scale/fan.
    for spec, variance in ((mi.he_normal(), 2 / FAN_IN), (mi.glorot_normal(), 2 / (FAN_IN + FAN_OUT))):
        assert mistats.law(spec, SHAPE).variance == pytest.approx(variance, rel=1e-12)
    assert stats.truncnorm(-2, 2).std() == pytest.approx(T2, rel=1e-15)


def test_the_law_uses_logical_fans_on_conv_shapes() -> None:
    # (out=32, in=16, 3, 3): fan_in 144, fan_out 288.
    x = sample(mi.he_uniform(), (32, 16, 3, 3), seed=2, dtype="float64").ravel()
    bound = math.sqrt(6 / 144)
    assert stats.kstest(x, stats.uniform(-bound, 2 * bound).cdf).pvalue >= ALPHA
    x = sample(mi.xavier_normal(), (32, 16, 3, 3), seed=2, dtype="float64").ravel()
    assert stats.kstest(x, stats.norm(0, math.sqrt(2 / 432)).cdf).pvalue >= ALPHA


def test_fans_override_is_what_a_bias_uses() -> None:
    # torch's default bias: U(+-1/sqrt(fan_in of the weight)) = variance_scaling(1/3, fan_in, uniform).
    x = sample(
        mi.variance_scaling(1 / 3, "fan_in", "uniform"), (20000,), seed=3, fans=(16, 8), dtype="float64"
    )
    assert stats.kstest(x, stats.uniform(-0.25, 0.5).cdf).pvalue >= ALPHA
    with pytest.raises(mi.ShapeError):
        sample(mi.variance_scaling(1 / 3, "fan_in", "uniform"), (16,))


def test_truncated_normal_never_escapes_its_bounds() -> None:
    rng = np.random.default_rng(0)
    for low, high in ((-2, 2), (5, 6), (-9, -8.5), (-100, 100), (0, 1e-3), (-1e-9, 1e-9)):
        x = truncated_standard_normal(rng, low, high, (200_000,))
        assert x.min() >= low and x.max() <= high, (low, high)
    x = sample(mi.truncated_normal(mean=3, std=2, low=-1, high=0.5), (100_000,), seed=1, dtype="float32")
    assert x.min() >= np.float32(1.0) and x.max() <= np.float32(4.0)


def test_deep_tail_truncation_is_still_the_right_law() -> None:
    x = truncated_standard_normal(np.random.default_rng(4), 5.0, 6.0, (50_000,))
    assert stats.kstest(x, stats.truncnorm(5.0, 6.0).cdf).pvalue >= ALPHA


def test_constant_zeros_ones_are_exact() -> None:
    assert (sample(mi.zeros(), (3, 4)) == 0).all()
    assert (sample(mi.ones(), (3, 4)) == 1).all()
    assert (sample(mi.constant(42), (2, 3, 5)) == 42).all()


def test_eye_is_the_identity_and_only_2d() -> None:
    assert np.array_equal(sample(mi.eye(), (3, 5)), np.eye(3, 5))
    assert np.array_equal(sample(mi.eye(), (5, 3)), np.eye(5, 3))
    with pytest.raises(mi.ShapeError, match="only tensors with 2 dimensions"):
        sample(mi.eye(), (3, 3, 3))


def test_dirac_puts_ones_at_the_centre_k_over_2_per_group() -> None:
    w = sample(mi.dirac(groups=2), (4, 3, 4))  # 2 outputs per group, 3 inputs, kernel 4: centre 2
    expected = np.zeros((4, 3, 4), dtype=np.float32)
    expected[0, 0, 2] = expected[1, 1, 2] = 1  # group 0
    expected[2, 0, 2] = expected[3, 1, 2] = 1  # group 1
    assert np.array_equal(w, expected)
    w = sample(mi.dirac(), (2, 5, 3, 3))
    expected = np.zeros((2, 5, 3, 3), dtype=np.float32)
    expected[0, 0, 1, 1] = expected[1, 1, 1, 1] = 1
    assert np.array_equal(w, expected)


@pytest.mark.parametrize("shape", [(64, 64), (20, 50), (50, 20), (16, 4, 3, 3)])
def test_orthogonal_is_orthogonal_times_gain(shape) -> None:
    w = sample(mi.orthogonal(gain=2.0), shape, seed=5, dtype="float64")
    flat = w.reshape(shape[0], -1)
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    assert np.allclose(gram, 4.0 * np.eye(gram.shape[0]), atol=1e-10)


def test_orthogonal_sign_fix_makes_the_law_symmetric() -> None:
    # Without the QR sign fix, numpy's Householder QR gives q[0, 0] < 0 almost always.
    rng = np.random.default_rng(6)
    first = np.array([sample(mi.orthogonal(), (3, 3), seed=rng)[0, 0] for _ in range(4000)])
    positive = (first > 0).mean()
    assert abs(positive - 0.5) <= Z * math.sqrt(0.25 / first.size)
    # Haar measure: the first column is uniform on the sphere, so q[0, 0]^2 ~ Beta(1/2, 1).
    assert stats.kstest(first**2, stats.beta(0.5, 1.0).cdf).pvalue >= ALPHA


def test_sparse_has_exactly_ceil_sparsity_rows_zeros_per_column() -> None:
    w = sample(mi.sparse(0.3, std=0.02), (101, 64), seed=7, dtype="float64")
    zeros = (w == 0).sum(axis=0)
    assert (zeros == math.ceil(0.3 * 101)).all()
    nonzero = w[w != 0]
    assert stats.kstest(nonzero, stats.norm(0, 0.02).cdf).pvalue >= ALPHA
    # The zeros are at random rows: every row is hit about equally often over many columns.
    w = sample(mi.sparse(0.5), (4, 20000), seed=8)
    per_row = (w == 0).mean(axis=1)
    assert np.all(np.abs(per_row - 0.5) <= Z * math.sqrt(0.25 / 20000))


def test_seed_chapter_custom_law_as_a_mixture() -> None:
    spec = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])
    x = sample(spec, SHAPE, seed=9, dtype="float64").ravel()
    n = x.size
    for mask, p in ((x == 0, 0.5), ((x >= 5) & (x < 10), 0.25), ((x >= -10) & (x < -5), 0.25)):
        assert abs(mask.sum() - n * p) <= Z * math.sqrt(n * p * (1 - p))
    assert not ((x != 0) & (np.abs(x) < 5)).any()
    assert stats.kstest(x[x > 0], stats.uniform(5, 5).cdf).pvalue >= ALPHA
    assert stats.kstest(x[x < 0], stats.uniform(-10, 5).cdf).pvalue >= ALPHA


def test_seed_chapter_custom_law_as_a_custom_function_matches_the_mixture() -> None:
    def my_init(rng, shape, dtype):  # d2l's MyInit: U(-10, 10), then zero where |w| < 5
        w = rng.uniform(-10, 10, shape)
        return w * (np.abs(w) >= 5)

    spec = mi.custom(my_init, name="tests.my_init")
    x = sample(spec, SHAPE, seed=10, dtype="float64").ravel()
    mixture = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])
    assert mistats.check(x.reshape(SHAPE), mixture).passed


def test_mixture_components_see_the_tensor_fans() -> None:
    spec = mi.mixture([(0.5, mi.he_uniform()), (0.5, mi.constant(3))])
    x = sample(spec, SHAPE, seed=12, dtype="float64").ravel()
    bound = math.sqrt(6 / FAN_IN)
    rest = x[x != 3]
    assert stats.kstest(rest, stats.uniform(-bound, 2 * bound).cdf).pvalue >= ALPHA


def test_custom_gets_rng_logical_shape_and_dtype() -> None:
    seen = {}

    def law(rng, shape, dtype):
        seen.update(rng=rng, shape=shape, dtype=dtype)
        return np.zeros(shape)

    x = sample(mi.custom(law, name="tests.spy"), (8, 4, 3), seed=1, dtype="float16")
    assert isinstance(seen["rng"], np.random.Generator)
    assert seen["shape"] == (8, 4, 3) and seen["dtype"] == np.float16 and x.dtype == np.float16


def test_custom_returning_the_wrong_shape_or_type_is_an_error() -> None:
    bad_shape = mi.custom(lambda rng, shape, dtype: np.zeros(3), name="tests.bad_shape")
    with pytest.raises(mi.ShapeError, match="returned an array of shape"):
        sample(bad_shape, (2, 2))
    bad_type = mi.custom(lambda rng, shape, dtype: np.full(shape, "x"), name="tests.bad_type")
    with pytest.raises(mi.SpecError, match="must return numbers"):
        sample(bad_type, (2, 2))


def test_same_seed_same_values_other_seed_other_values() -> None:
    for spec in (
        mi.normal(),
        mi.orthogonal(),
        mi.sparse(0.2),
        mi.he_normal(),
        mi.mixture([(0.5, mi.zeros()), (0.5, mi.uniform())]),
    ):
        a, b = sample(spec, (16, 8), seed=3), sample(spec, (16, 8), seed=3)
        assert np.array_equal(a, b)
        assert not np.array_equal(a, sample(spec, (16, 8), seed=4))
    rng = np.random.default_rng(3)
    assert np.array_equal(
        sample(mi.normal(), (5,), seed=rng), np.random.default_rng(3).standard_normal(5).astype(np.float32)
    )


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", np.float32])
def test_dtypes(dtype) -> None:
    x = sample(mi.normal(), (4, 4), dtype=dtype)
    assert x.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["int32", "bfloat16", "complex64", object])
def test_bad_dtype_is_a_spec_error(dtype) -> None:
    with pytest.raises(mi.SpecError, match="dtype="):
        sample(mi.normal(), (2,), dtype=dtype)


def test_bad_shape_and_seed_are_errors() -> None:
    with pytest.raises(mi.ShapeError, match="shape="):
        sample(mi.normal(), (2, -1))
    with pytest.raises(mi.ShapeError, match="shape="):
        sample(mi.normal(), (2.0, 3))
    with pytest.raises(mi.SpecError, match="seed="):
        sample(mi.normal(), (2,), seed=-1)
    with pytest.raises(mi.SpecError, match="seed="):
        sample(mi.normal(), (2,), seed="0")
    with pytest.raises(mi.SpecError, match="spec="):
        sample("normal()", (2,))


def test_empty_tensors_are_filled_without_error() -> None:
    assert sample(mi.xavier_uniform(), (0, 4)).shape == (0, 4)
    assert sample(mi.orthogonal(), (0, 3)).shape == (0, 3)


SHAPE_ERRORS = [
    (mi.xavier_uniform(), (8,), "fewer than 2 dimensions"),
    (mi.he_normal(), (), "fewer than 2 dimensions"),
    (mi.kaiming_uniform(), (3,), "fewer than 2 dimensions"),
    (mi.orthogonal(), (5,), "2 or more dimensions"),
    (mi.eye(), (3, 3, 3), "only tensors with 2 dimensions"),
    (mi.dirac(), (3, 3), "3, 4, or 5 dimensions"),
    (mi.dirac(groups=3), (4, 2, 3), "divisible by groups=3"),
    (mi.sparse(0.1), (4, 4, 4), "only tensors with 2 dimensions"),
    (mi.mixture([(0.5, mi.eye()), (0.5, mi.zeros())]), (4,), "only tensors with 2 dimensions"),
]


@pytest.mark.parametrize("spec, shape, reason", SHAPE_ERRORS, ids=[repr(s) for s, _, _ in SHAPE_ERRORS])
def test_a_shape_a_spec_cannot_fill_is_a_shape_error_naming_the_path(spec, shape, reason) -> None:
    with pytest.raises(mi.ShapeError) as info:
        check_shape(spec, shape, path="layers.0.bias")
    message = str(info.value)
    assert "'layers.0.bias'" in message and str(tuple(shape)) in message and reason in message
    assert repr(spec) in message
    with pytest.raises(mi.ShapeError, match=reason.split(",")[0]):
        sample(spec, shape)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_rounding_never_takes_a_draw_out_of_its_support(dtype) -> None:
    # In float16, U[0, 1) drawn in float64 rounds to 1.0 for about 1 value in 4096: the
    # reference must still be half-open, and a truncated normal still inside its bounds.
    x = mi.reference.sample(mi.uniform(0.0, 1.0), (200_000,), seed=0, dtype=dtype)
    assert x.max() < 1.0 and x.min() >= 0.0
    lo, hi = -0.3, 0.3  # not representable in either dtype
    t = mi.reference.sample(mi.truncated_normal(std=1.0, low=lo, high=hi), (200_000,), seed=0, dtype=dtype)
    assert t.min() >= lo and t.max() <= hi
    g = mi.reference.sample(mi.he_uniform(), (300, 700), seed=0, dtype=dtype)
    assert np.abs(g).max() < np.sqrt(6 / 700)
