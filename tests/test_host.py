"""multiinit.host: the adapters' NumPy work on host memory gives what plain NumPy gives, on one
thread or several (the expectation is always NumPy's own one-line form of the same job)."""

from __future__ import annotations

import numpy as np
import pytest

import multiinit as mi
from multiinit import host
from multiinit.fans import OUT_IN, SPATIAL_IN_OUT, LogicalView
from multiinit.reference import sample


@pytest.fixture(params=["1", "2", "3"])
def threads(request, monkeypatch) -> int:
    monkeypatch.setenv("MULTIINIT_THREADS", request.param)
    return int(request.param)


# --------------------------------------------------------------------------- outside


@pytest.mark.parametrize("size", [0, 1, 7, host.BLOCK - 1, host.BLOCK + 3, 3 * host.BLOCK + 11])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_outside_finds_exactly_the_values_beyond_the_bounds_in_order(size, dtype, threads) -> None:
    x = np.random.default_rng(size).standard_normal(size).astype(dtype)
    x[: min(size, 3)] = [-2.0, 2.0, 0.0][: min(size, 3)]  # values on a bound are inside
    expected = np.flatnonzero((x < -2.0) | (x > 2.0))
    got = host.outside(x, -2.0, 2.0)
    assert got.dtype == np.intp and np.array_equal(got, expected)


# --------------------------------------------------------------------------- copy_striped


@pytest.mark.parametrize(
    "shape, axes",
    [
        ((700, 530), (1, 0)),  # a Keras dense kernel: large enough to split, width not a multiple of 16
        ((40, 20, 3, 3), (2, 3, 1, 0)),  # a conv kernel's (out, in, h, w) -> (h, w, in, out)
        ((5, 300, 90), (0, 2, 1)),
        ((1, 1), (1, 0)),
        ((0, 4), (1, 0)),
        ((300, 1), (1, 0)),
    ],
)
@pytest.mark.parametrize("stripe, rows", [(1, 1024), (16, 7), (None, 64), (None, 1024), (1000, 1)])
@pytest.mark.parametrize(
    "source, target", [("float64", "float32"), ("float32", "float32"), ("float64", "float16")]
)
def test_copy_striped_equals_numpys_assignment(shape, axes, stripe, rows, source, target, threads) -> None:
    logical = np.random.default_rng(1).uniform(-10, 10, shape).astype(source)
    moved = logical.transpose(axes)
    out = np.full(moved.shape, np.nan, dtype=target)
    host.copy_striped(out, moved, stripe, rows)
    expected = np.empty(moved.shape, dtype=target)
    expected[...] = moved
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("width", [8192, 4000])  # float64 rows 64 KB apart (stripe 8), and not
def test_copy_striped_by_default_covers_a_wide_logical_array(width, threads) -> None:
    logical = np.random.default_rng(2).uniform(-10, 10, (3 * 16 + 5, width))
    out = np.full((width, logical.shape[0]), np.nan, dtype=np.float32)
    host.copy_striped(out, logical.T)
    assert np.array_equal(out, logical.T.astype(np.float32))


def test_copy_striped_of_one_axis_and_of_a_scalar() -> None:
    out = np.zeros(70_000, dtype=np.float32)
    source = np.arange(70_000.0)[::-1]
    host.copy_striped(out, source, 16, 3)
    assert np.array_equal(out, source.astype(np.float32))
    scalar = np.zeros((), dtype=np.float32)
    host.copy_striped(scalar, np.array(2.5))
    assert scalar == 2.5


@pytest.mark.parametrize("stripe, rows", [(0, 4), (2, 0), (-1, 4)])
def test_copy_striped_refuses_an_empty_tile_before_writing(stripe, rows) -> None:
    out = np.zeros((3, 4))
    with pytest.raises(ValueError, match=rf"stripe and rows must be at least 1, got {stripe} and {rows}"):
        host.copy_striped(out, np.ones((4, 3)).T, stripe, rows)
    assert not out.any()


def test_copy_striped_refuses_a_shape_mismatch_before_writing() -> None:
    out = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"out has shape \(3, 4\), source \(4, 3\)"):
        host.copy_striped(out, np.ones((4, 3)), 2)
    assert not out.any()


# --------------------------------------------------------------------------- to_native


@pytest.mark.parametrize(
    "native_shape, layout",
    [
        ((530, 700), "in,out"),  # a Dense kernel: a transpose, tiled
        ((3, 3, 40, 20), SPATIAL_IN_OUT),  # a conv kernel (h, w, in, out)
        ((700, 530), OUT_IN),  # torch's own layout: rows stay rows
        ((530, 5, 103), "in,out,out"),  # an attention kernel's heads: a reshape
        ((0, 4), "in,out"),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
@pytest.mark.parametrize("given", [False, True])
def test_to_native_is_numpys_rearranged_cast(native_shape, layout, dtype, given, threads) -> None:
    view = LogicalView.of(native_shape, layout)
    logical = np.random.default_rng(3).uniform(-10, 10, view.logical_shape)
    expected = np.ascontiguousarray(view.to_native(logical)).astype(dtype)
    out = np.full(native_shape, np.nan, dtype=dtype) if given else None
    got = host.to_native(view, logical, dtype, out=out)
    assert got.flags.c_contiguous and got.dtype == np.dtype(dtype) and got.shape == native_shape
    assert np.array_equal(got, expected)
    assert out is None or got is out


# --------------------------------------------------------------------------- law_native


def _chapter_law(rng: np.random.Generator, shape: tuple[int, ...], dtype: object) -> np.ndarray:
    w = rng.uniform(-10, 10, shape)
    return w * (np.abs(w) >= 5)


@pytest.mark.parametrize(
    "native_shape, layout",
    [
        ((530, 700), "in,out"),  # a Dense kernel: the tiles through a transposed view
        ((3, 3, 40, 200), SPATIAL_IN_OUT),  # a conv kernel
        ((700, 530), OUT_IN),  # rows stay rows
        ((530, 5, 103), "in,out,out"),  # an attention kernel: no logical view, one rearranging copy
        ((40, 30), "in,out"),  # one tile
    ],
)
@pytest.mark.parametrize("elementwise", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_law_native_is_the_laws_logical_values_rearranged(
    native_shape, layout, elementwise, dtype, threads
) -> None:
    view = LogicalView.of(native_shape, layout)
    law = mi.custom(_chapter_law, name=f"test_host.chapter.{elementwise}", elementwise=elementwise)
    key = (5, 7)
    logical = mi.reference.law_values(law, key, view.logical_shape, "float64")
    expected = np.ascontiguousarray(view.to_native(logical)).astype(dtype)
    made: list[np.ndarray] = []

    def empty(shape: tuple[int, ...], d: np.dtype) -> np.ndarray:
        made.append(np.full(shape, np.nan, dtype=d))
        return made[-1]

    got = host.law_native(law, key, view, dtype, "layer.kernel", empty=empty)
    assert got.flags.c_contiguous and got.dtype == np.dtype(dtype) and got.shape == native_shape
    assert np.array_equal(got, expected)
    assert len(made) == 1 and got is made[0]  # one buffer, the caller's


@pytest.mark.parametrize("elementwise", [False, True])
def test_law_native_names_the_parameter_of_a_failing_law(elementwise) -> None:
    def bad(rng: np.random.Generator, shape: tuple[int, ...], dtype: object) -> np.ndarray:
        out = rng.uniform(-1, 1, shape)
        out[-1, -1] = np.inf
        return out

    law = mi.custom(bad, name="test_host.bad", elementwise=elementwise)
    with pytest.raises(mi.LawError, match=r"'test_host.bad' at 'layer.kernel'.*infinite"):
        host.law_native(law, (1,), LogicalView.of((530, 700), "in,out"), "float32", "layer.kernel")


# --------------------------------------------------------------------------- affine


@pytest.mark.parametrize("size", [0, 1, host.BLOCK - 1, 2 * host.BLOCK + 5, 5 * host.BLOCK + 1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("clipped", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
def test_affine_equals_numpys_whole_array_passes(size, dtype, clipped, in_place, threads) -> None:
    # Values whose products and sums round (and infinities, which the clip must catch), so a
    # block landing in the wrong place or a fused multiply-add would show.
    x = np.random.default_rng(size).standard_normal(size).astype(dtype) * 3
    if size > 2:
        x[[0, size // 2]] = [-np.inf, np.inf]
    scale, shift = np.dtype(dtype).type(0.02828427), np.dtype(dtype).type(0.1)
    bounds = (np.dtype(dtype).type(0.06), np.dtype(dtype).type(0.15)) if clipped else None
    expected = x * scale + shift
    if bounds is not None:
        expected = np.clip(expected, *bounds)
    out = x if in_place else np.full_like(x, np.nan)
    host.affine(out, x, scale, shift, bounds)
    assert np.array_equal(out, expected, equal_nan=True)


def test_affine_refuses_a_strided_out_or_a_size_mismatch_before_writing() -> None:
    out = np.zeros((4, 6))
    with pytest.raises(ValueError, match="C-contiguous and of one size; got sizes 12 and 12"):
        host.affine(out[:, ::2], np.ones(12), np.float64(2), np.float64(1))
    with pytest.raises(ValueError, match="got sizes 24 and 23"):
        host.affine(out, np.ones(23), np.float64(2), np.float64(1))
    assert not out.any()


# --------------------------------------------------------------------------- finite_cast, all_finite

SIZES = [0, 1, host.BLOCK - 1, 2 * host.BLOCK + 5, 5 * host.BLOCK + 1]


CASTS = [
    ("float64", "float32", None),
    ("float64", "float32", np.nan),
    ("float64", "float32", -np.inf),
    ("float64", "float32", 1e300),  # finite, too large for float32
    ("float64", "float16", 1e5),
    ("float32", "float16", np.nan),
    ("int64", "float32", np.iinfo(np.int64).max),  # float32 holds it
    ("int64", "float16", 70000),  # float16 does not
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("source, target, bad", CASTS)
@pytest.mark.parametrize("where", [0, -1, 0.6])
def test_finite_cast_equals_numpys_cast_and_check(size, source, target, bad, where, threads) -> None:
    x = np.random.default_rng(size).uniform(-100, 100, size).astype(source)
    if size and bad is not None:
        x[int(where * size) if isinstance(where, float) else where] = bad
    with np.errstate(over="ignore", invalid="ignore"):
        expected = np.asarray(x, dtype=target)
    out, finite = host.finite_cast(x, np.dtype(target))
    assert out.dtype == np.dtype(target) and out.shape == x.shape
    assert np.array_equal(out, expected, equal_nan=True)
    assert finite == bool(np.isfinite(expected).all())
    assert host.all_finite(out) == finite
    if size > 1 and bad is not None and not (source == "int64" and target == "float32"):
        assert not finite  # the planted value is caught wherever it sits


def test_finite_cast_returns_an_array_already_in_the_dtype_itself_and_reads_strided_ones() -> None:
    x = np.arange(12.0).reshape(3, 4)
    out, finite = host.finite_cast(x, np.dtype("float64"))
    assert out is x and finite
    strided = x.T  # not C-contiguous: NumPy's own cast, then the check
    out, finite = host.finite_cast(strided, np.dtype("float32"))
    assert np.array_equal(out, strided) and out.dtype == np.float32 and finite
    strided = strided.copy()
    strided[2, 1] = np.nan
    assert host.all_finite(strided.T) is False and host.all_finite(np.arange(5)) is True


# --------------------------------------------------------------------------- write_eye, write_dirac


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4), (1, 7)])
@pytest.mark.parametrize("transposed", [False, True])
def test_write_eye_is_the_references_eye_through_any_view(shape, transposed) -> None:
    # The expectation is the reference's law (NumPy's eye), written through a transposed view
    # of a native buffer as the adapters do.
    native = np.full(shape[::-1] if transposed else shape, 7, dtype=np.int32)
    host.write_eye(native.T if transposed else native)
    expected = sample(mi.eye(), shape, dtype="float64")
    assert np.array_equal(native.T if transposed else native, expected)


@pytest.mark.parametrize(
    "shape, groups",
    [((4, 4, 3), 1), ((6, 2, 3, 5), 2), ((4, 6, 5, 3), 2), ((9, 2, 1, 3, 5), 3), ((2, 3, 4), 1)],
)
@pytest.mark.parametrize("axes", ["logical", "reversed"])
def test_write_dirac_is_the_references_dirac_through_any_view(shape, groups, axes) -> None:
    # Keras' buffers are the logical array's axes reversed: a view of them must take the same
    # ones at the same logical places as the reference's loop puts them.
    order = tuple(range(len(shape)))[::-1] if axes == "reversed" else tuple(range(len(shape)))
    native = np.full(tuple(shape[a] for a in order), 5.0, dtype=np.float32)
    logical = native.transpose(np.argsort(order))
    assert logical.shape == shape
    host.write_dirac(logical, groups)
    assert np.array_equal(logical, sample(mi.dirac(groups=groups), shape, dtype="float64"))
