"""multiinit.host: the adapters' NumPy work on host memory gives what plain NumPy gives, on one
thread or several (the expectation is always NumPy's own one-line form of the same job)."""

from __future__ import annotations

import numpy as np
import pytest

from multiinit import host


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
@pytest.mark.parametrize("stripe", [1, 16, 1000])
@pytest.mark.parametrize(
    "source, target", [("float64", "float32"), ("float32", "float32"), ("float64", "float16")]
)
def test_copy_striped_equals_numpys_assignment(shape, axes, stripe, source, target, threads) -> None:
    logical = np.random.default_rng(1).uniform(-10, 10, shape).astype(source)
    moved = logical.transpose(axes)
    out = np.full(moved.shape, np.nan, dtype=target)
    host.copy_striped(out, moved, stripe)
    expected = np.empty(moved.shape, dtype=target)
    expected[...] = moved
    assert np.array_equal(out, expected)


def test_copy_striped_refuses_a_shape_mismatch_before_writing() -> None:
    out = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"out has shape \(3, 4\), source \(4, 3\)"):
        host.copy_striped(out, np.ones((4, 3)), 2)
    assert not out.any()
