"""The compiled MXNet initializer: laws in both array modes, MXNet's own numbers where MXNet has
the law, fans, names, seeds, dtypes and the laws MXNet lacks (truncated normal, orthogonal with
the QR sign fix). Statistical checks use multiinit.stats at its level ALPHA = 1e-6."""

from __future__ import annotations

import math
import re

import mxnet as mx
import numpy as np
import pytest
from scipy import stats as scipy_stats

import multiinit as mi
from multiinit import mxnet as mim, stats
from multiinit.errors import LawError
from multiinit.spec import CONSTRUCTORS

from matrix import SPECS

InitDesc = mx.init.InitDesc


@pytest.fixture(params=["nd", "np"])
def mode(request):
    """Legacy ``mx.nd`` arrays, or ``mx.np`` arrays after ``npx.set_np()`` (restored after)."""
    was = (mx.util.is_np_shape(), mx.util.is_np_array())
    if request.param == "np":
        mx.npx.set_np()
    try:
        yield request.param
    finally:
        mx.util.set_np(shape=was[0], array=was[1])


def zeros(shape, dtype="float32"):
    """An array of the current mode's kind."""
    if mx.util.is_np_array():
        return mx.np.zeros(shape, dtype=dtype)
    return mx.nd.zeros(shape, dtype=dtype)


def fill(init, shape, name="layer_weight", dtype="float32"):
    arr = zeros(shape, dtype)
    init(InitDesc(name), arr)
    return arr.asnumpy()


def test_mode_fixture_restores_legacy_mode(mode) -> None:
    assert isinstance(zeros((2,)), mx.np.ndarray if mode == "np" else mx.nd.NDArray)


def test_legacy_mode_is_back_after_numpy_mode_tests() -> None:
    assert not mx.util.is_np_array() and not mx.util.is_np_shape()


# --------------------------------------------------------------------------- laws


def _shape_for(spec: mi.Spec) -> tuple[int, ...]:
    return (64, 32, 3, 3) if isinstance(spec, mi.spec.Dirac) else (256, 128)


@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_every_spec_draws_its_law_in_numpy_mode(spec) -> None:
    # Legacy mode is the cross-backend matrix's (tests/test_matrix.py); this is the mx.np side.
    was = (mx.util.is_np_shape(), mx.util.is_np_array())
    mx.npx.set_np()
    try:
        arr = mx.np.zeros(_shape_for(spec))
        mi.compile(spec, "mxnet", seed=2)(InitDesc("layer_weight"), arr)
        assert isinstance(arr, mx.np.ndarray)
        x = arr.asnumpy()
    finally:
        mx.util.set_np(shape=was[0], array=was[1])
    verdict = stats.check(x, spec)
    assert verdict.passed, f"{spec!r} in numpy mode: {verdict}"


@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_every_spec_draws_its_law_from_mxnet_global_generator(mode, spec) -> None:
    # Unseeded, uniform, normal and the untruncated variance-scaling forms are MXNet's own
    # samplers (the seeded matrix draws them on the host): their law is checked here.
    mx.random.seed(2)
    x = fill(mim.Multiinit(spec), _shape_for(spec))
    verdict = stats.check(x, spec)
    assert verdict.passed, f"{spec!r} unseeded in {mode} mode: {verdict}"


# Where MXNet has the law, a multiinit initializer under the same global seed gives MXNet's
# numbers (up to float32 rounding of a scale such as gain**2).
NATIVE_PAIRS = [
    (mi.zeros(), mx.init.Zero(), (8, 5)),
    (mi.ones(), mx.init.One(), (8, 5)),
    (mi.constant(42), mx.init.Constant(42), (8, 5)),
    (mi.uniform(-0.07, 0.07), mx.init.Uniform(0.07), (300, 200)),
    (mi.normal(std=0.01), mx.init.Normal(0.01), (300, 200)),
    (mi.xavier_uniform(), mx.init.Xavier(), (64, 32, 3, 3)),
    (mi.xavier_normal(), mx.init.Xavier("gaussian", "avg", 1), (64, 32, 3, 3)),
    (mi.kaiming_normal(nonlinearity="relu"), mx.init.Xavier("gaussian", "in", 2), (64, 32, 3, 3)),
    (mi.he_uniform(), mx.init.Xavier("uniform", "in", 6), (300, 200)),
    (mi.lecun_uniform(), mx.init.Xavier("uniform", "in", 3), (300, 200)),
]


@pytest.mark.parametrize("spec, native, shape", NATIVE_PAIRS, ids=[repr(p[0]) for p in NATIVE_PAIRS])
def test_same_numbers_as_mxnet_own_initializer(mode, spec, native, shape) -> None:
    mx.random.seed(11)
    ours = fill(mim.Multiinit(spec), shape)
    mx.random.seed(11)
    theirs = fill(native, shape)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=0)


# --------------------------------------------------------------------------- fans and names


def test_fans_are_torch_fans_on_mxnet_layout() -> None:
    # (out 128, in 64, 3x3): fan_in 64*9 = 576, fan_out 128*9 = 1152, counted by hand.
    mx.random.seed(0)
    x = fill(mim.xavier_uniform(), (128, 64, 3, 3))
    bound = math.sqrt(6 / (576 + 1152))
    assert np.abs(x).max() <= bound * (1 + 1e-6)
    assert np.abs(x).max() >= bound * 0.99  # n = 73,728: the top 1% is empty with p < 1e-300
    verdict = stats.check(x, mi.uniform(-bound, bound), reference_seed=None)
    assert verdict.passed, str(verdict)
    # kaiming_normal(fan_out, relu): std sqrt(2 / 1152).
    y = fill(mim.kaiming_normal(mode="fan_out", nonlinearity="relu"), (128, 64, 3, 3))
    verdict = stats.check(y, mi.normal(0.0, math.sqrt(2 / 1152)), reference_seed=None)
    assert verdict.passed, str(verdict)


@pytest.mark.parametrize(
    "spec", [mi.xavier_uniform(), mi.he_normal(), mi.kaiming_uniform(), mi.variance_scaling()], ids=repr
)
@pytest.mark.parametrize("name", ["dense0_bias", "batchnorm0_gamma", "dense0_weight", "alpha"])
def test_fan_based_spec_on_a_vector_names_the_parameter(mode, spec, name) -> None:
    with pytest.raises(mi.ShapeError, match=f"'{name}' of shape \\(5,\\).*fewer than 2 dimensions"):
        fill(mim.Multiinit(spec), (5,), name=name)


def test_mxnet_own_xavier_silently_zeroes_a_bias_where_multiinit_refuses() -> None:
    # The trap the ShapeError guards against: outside Gluon, MXNet's Xavier "fills" a vector
    # named *_bias with zeros and raises nothing.
    arr = mx.nd.ones((5,))
    mx.init.Xavier()(InitDesc("dense0_bias"), arr)
    assert (arr.asnumpy() == 0).all()
    with pytest.raises(mi.ShapeError, match="dense0_bias"):
        mim.xavier_uniform()(InitDesc("dense0_bias"), mx.nd.ones((5,)))


@pytest.mark.parametrize("name", ["fc_bias", "bn_gamma", "bn_beta", "bn_moving_mean", "fc_min", "anything"])
def test_the_spec_fills_every_array_whatever_its_name(mode, name) -> None:
    # MXNet's Constant(3) would write 0 to a bias or beta and 1 to a gamma; a spec is one law.
    assert (fill(mim.constant(3), (4, 2), name=name) == 3).all()
    if name == "fc_bias":
        assert (fill(mx.init.Constant(3), (4, 2), name=name) == 0).all()


def test_a_plain_string_name_is_accepted_too() -> None:
    arr = mx.nd.zeros((3, 4))
    mim.constant(7)("legacy_bias", arr)
    assert (arr.asnumpy() == 7).all()


def test_other_shape_errors_name_the_parameter() -> None:
    with pytest.raises(mi.ShapeError, match="'conv0_weight' of shape \\(4, 2, 3, 3\\)"):
        fill(mim.eye(), (4, 2, 3, 3), name="conv0_weight")
    with pytest.raises(mi.ShapeError, match="'fc_weight' of shape \\(4, 2\\)"):
        fill(mim.dirac(), (4, 2), name="fc_weight")


# --------------------------------------------------------------------------- seeds


def test_a_seed_reproduces_and_advances_per_call() -> None:
    first = mi.compile(mi.normal(), "mxnet", seed=5)
    a1, a2 = fill(first, (50, 40)), fill(first, (50, 40))
    again = mi.compile(mi.normal(), "mxnet", seed=5)
    b1, b2 = fill(again, (50, 40)), fill(again, (50, 40))
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)  # two layers sharing one instance differ
    assert not np.array_equal(a1, fill(mi.compile(mi.normal(), "mxnet", seed=6), (50, 40)))
    np.testing.assert_array_equal(fill(first.reset(), (50, 40)), a1)


def test_a_seeded_draw_ignores_the_global_seed_and_leaves_the_user_stream_going() -> None:
    after = {}
    drawn = {}
    for user_seed in (1, 2, 1):
        mx.random.seed(user_seed)
        drawn[user_seed] = fill(mi.compile(mi.uniform(), "mxnet", seed=9), (20, 10))
        after.setdefault(user_seed, []).append(mx.nd.random.uniform(shape=(100,)).asnumpy())
    np.testing.assert_array_equal(drawn[1], drawn[2])
    # Not left at multiinit's seed: the user's next numbers still depend on the user's seed,
    np.testing.assert_array_equal(after[1][0], after[1][1])
    assert not np.array_equal(after[1][0], after[2][0])
    # and they are not the stream multiinit seeded.
    mx.random.seed(mi.rules.derive_seed(9, 0))
    _ = mx.nd.random.uniform(shape=(20, 10))
    assert not np.array_equal(after[1][0], mx.nd.random.uniform(shape=(100,)).asnumpy())


def test_a_deterministic_spec_never_touches_the_generator() -> None:
    mx.random.seed(4)
    fill(mi.compile(mi.constant(2), "mxnet", seed=1), (3, 3))
    fill(mi.compile(mi.eye(), "mxnet", seed=1), (3, 3))
    got = mx.nd.random.uniform(shape=(10,)).asnumpy()
    mx.random.seed(4)
    np.testing.assert_array_equal(got, mx.nd.random.uniform(shape=(10,)).asnumpy())


@pytest.mark.parametrize(
    "spec",
    [
        mi.normal(),
        mi.truncated_normal(),
        mi.orthogonal(),
        mi.sparse(0.5),
        mi.custom(lambda rng, shape, dtype: rng.random(shape), name="test_mx.rand"),
    ],
    ids=repr,
)
def test_unseeded_draws_follow_mxnet_global_seed(mode, spec) -> None:
    mx.random.seed(21)
    a = fill(mim.Multiinit(spec), (30, 20))
    mx.random.seed(21)
    b = fill(mim.Multiinit(spec), (30, 20))
    mx.random.seed(22)
    c = fill(mim.Multiinit(spec), (30, 20))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_a_bad_seed_is_refused(seed) -> None:
    with pytest.raises(mi.SpecError, match="seed="):
        mi.compile(mi.normal(), "mxnet", seed=seed)


# --------------------------------------------------------------------------- laws MXNet lacks


@pytest.mark.parametrize(
    "spec",
    [
        mi.truncated_normal(0.5, 2.0, low=-0.5, high=0.3),  # narrow window around the mean (float32)
        mi.truncated_normal(0.0, 1.0, low=-1.0, high=8.0),  # wide: float64
        mi.truncated_normal(0.0, 1.0, low=4.0, high=6.0),  # wholly in the upper tail
        mi.truncated_normal(1.0, 0.5, low=-9.0, high=-5.0),  # wholly in the lower tail
        mi.he_normal(),
    ],
    ids=repr,
)
def test_truncated_normals_follow_the_law_and_never_escape(mode, spec) -> None:
    mx.random.seed(3)
    x = fill(mim.Multiinit(spec), (250, 200))
    verdict = stats.check(x, spec)
    assert verdict.passed, str(verdict)
    if isinstance(spec, mi.spec.TruncatedNormal):
        lo, hi = (np.float32(b) for b in spec.bounds)
        assert x.min() >= lo and x.max() <= hi


def test_he_normal_is_truncated_and_variance_corrected() -> None:
    # Hand numbers for fan_in 200: std exactly sqrt(2/200) = 0.1; cut at 2 sigma, sigma = 0.1/0.8796.
    x = fill(mi.compile(mi.he_normal(), "mxnet", seed=0), (250, 200))
    sigma = 0.1 / 0.87962566103423978
    assert np.abs(x).max() <= 2 * sigma * (1 + 1e-6)
    verdict = stats.check_law(x, stats.Law(parts=[(1.0, scipy_stats.truncnorm(-2, 2, scale=sigma))]))
    assert all(c.passed for c in verdict), "; ".join(map(str, verdict))


def test_orthogonal_has_the_qr_sign_fix() -> None:
    # Haar-random 3x3: each entry is uniform on [-1, 1] (Archimedes). Without the sign fix,
    # LAPACK's Householder QR makes entry [0, 0] negative every time.
    init = mi.compile(mi.orthogonal(), "mxnet", seed=0)
    draws = np.stack([fill(init, (3, 3)) for _ in range(600)])
    for i, j in ((0, 0), (1, 1), (2, 0)):
        p = scipy_stats.kstest(draws[:, i, j], scipy_stats.uniform(-1, 2).cdf).pvalue
        assert p >= stats.ALPHA, f"entry [{i}, {j}] is not U(-1, 1): p = {p:.3g}"
    gram = np.einsum("nij,nkj->nik", draws, draws)
    assert np.abs(gram - np.eye(3)).max() < 1e-5


@pytest.mark.parametrize("shape", [(40, 30), (30, 40), (12, 5, 3, 3), (8, 4, 2)])
def test_orthogonal_is_orthogonal_on_tall_wide_and_conv_shapes(mode, shape) -> None:
    x = fill(mi.compile(mi.orthogonal(gain=1.5), "mxnet", seed=1), shape)
    flat = x.reshape(shape[0], -1).astype(np.float64)
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    np.testing.assert_allclose(gram, 1.5**2 * np.eye(gram.shape[0]), atol=1e-4)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    "spec",
    [
        mi.truncated_normal(std=0.5, low=-1.5, high=2.0),
        mi.uniform(-0.5, 0.25),
        mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
        mi.sparse(0.3, std=0.5),
    ],
    ids=repr,
)
@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_other_float_dtypes_keep_their_dtype_and_law(mode, dtype, spec) -> None:
    arr = zeros((200, 100), dtype)
    mi.compile(spec, "mxnet", seed=4)(InitDesc("w_weight"), arr)
    x = arr.asnumpy()
    assert x.dtype == np.dtype(dtype)
    verdict = stats.check(x, spec)
    assert verdict.passed, str(verdict)


def test_integer_arrays_take_deterministic_specs_only() -> None:
    arr = mx.nd.zeros((3, 3), dtype="int32")
    mim.eye()(InitDesc("w_weight"), arr)
    np.testing.assert_array_equal(arr.asnumpy(), np.eye(3, dtype=np.int32))
    with pytest.raises(mi.SpecError, match="dtype='int32' is not allowed"):
        mim.normal()(InitDesc("w_weight"), arr)


# --------------------------------------------------------------------------- custom laws


def test_a_custom_law_gets_a_reproducible_rng_and_its_errors_are_fenced() -> None:
    seen = []

    def law(rng, shape, dtype):
        seen.append((tuple(shape), np.dtype(dtype).name))
        return rng.standard_normal(shape)

    spec = mi.custom(law, name="test_mx.custom_rng")
    a = fill(mi.compile(spec, "mxnet", seed=3), (4, 6))
    b = fill(mi.compile(spec, "mxnet", seed=3), (4, 6))
    np.testing.assert_array_equal(a, b)
    assert seen == [((4, 6), "float32")] * 2

    def broken(rng, shape, dtype):
        raise RuntimeError("custom law broke")

    # User laws are fenced: a LawError naming the law and the array, the original chained.
    with pytest.raises(
        LawError,
        match=re.escape(
            "custom law 'test_mx.broken' at 'layer_weight' raised RuntimeError: custom law broke"
        ),
    ) as raised:
        fill(mim.custom(broken, name="test_mx.broken"), (4, 6))
    assert isinstance(raised.value.__cause__, RuntimeError)
    with pytest.raises(mi.ShapeError, match="exactly the shape"):
        fill(mim.custom(lambda rng, shape, dtype: np.zeros(3), name="test_mx.wrong_shape"), (4, 6))


# --------------------------------------------------------------------------- the namespace


def test_the_namespace_has_every_constructor_returning_a_registered_initializer() -> None:
    examples = {
        "constant": ((3.0,), {}),
        "sparse": ((0.2,), {}),
        "mixture": (([(1.0, mi.zeros())],), {}),
        "with_axes": ((mi.he_normal(),), {"in_axis": 1, "out_axis": 0}),
    }
    for name, constructor in CONSTRUCTORS.items():
        if name == "custom":
            continue
        args, kwargs = examples.get(name, ((), {}))
        made = getattr(mim, name)(*args, **kwargs)
        assert isinstance(made, mx.init.Initializer) and isinstance(made, mim.Multiinit), name
        assert made.spec == constructor(*args, **kwargs), name
    law = mim.custom(lambda rng, shape, dtype: rng.random(shape), name="test_mx.ns_custom")
    assert isinstance(law, mim.Multiinit) and law.spec.name == "test_mx.ns_custom"

    @mim.custom(name="test_mx.decorated")
    def decorated(rng, shape, dtype):
        return rng.random(shape)

    assert isinstance(decorated, mim.Multiinit)
    assert mim.calculate_gain("relu") == math.sqrt(2)
    # As Keras' do, every constructor takes the initializer's seed=.
    seeded = mim.normal(std=0.01, seed=0)
    assert seeded.seed == 0 and seeded.spec == mi.normal(std=0.01)
    assert fill(seeded, (64, 32)).tolist() == fill(mim.normal(std=0.01, seed=0), (64, 32)).tolist()

    @mim.custom(name="test_mx.decorated_seeded", seed=4)
    def decorated_seeded(rng, shape, dtype):
        return rng.random(shape)

    assert decorated_seeded.seed == 4
    with pytest.raises(mi.SpecError, match="seed=-1 is not allowed"):
        mim.he_normal(seed=-1)


def test_compile_and_to_agree_and_refuse_non_specs() -> None:
    spec = mi.kaiming_uniform(a=math.sqrt(5))
    assert mi.compile(spec, "mxnet") == spec.to("mxnet") == mim.kaiming_uniform(a=math.sqrt(5))
    assert mi.compile(spec, "mxnet", seed=1) != mi.compile(spec, "mxnet")
    with pytest.raises(mi.SpecError, match=r"spec=.*not allowed"):
        mim.compile("normal()")
    assert mim.Multiinit("normal(std=0.5)") == mim.Multiinit({"kind": "normal", "mean": 0.0, "std": 0.5})
    with pytest.raises(mi.SpecError, match="spec=42 is not allowed"):
        mim.Multiinit(42)


def test_the_adapter_docstring_examples_run() -> None:
    import doctest
    import importlib
    import pkgutil

    # The adapter is a package: its examples live in its files.
    files = [importlib.import_module(f"{mim.__name__}.{m.name}") for m in pkgutil.iter_modules(mim.__path__)]
    modules = [mim, *files]
    results = [doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False) for module in modules]
    attempted, failed = sum(r.attempted for r in results), sum(r.failed for r in results)
    assert attempted >= 10 and failed == 0, f"{failed} doctest example(s) failed"
