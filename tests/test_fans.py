"""Logical layout and fans, checked against values worked out by hand (torch's own
``_calculate_fan_in_and_fan_out`` is compared in the torch env, test_torch_foundation.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import multiinit as mi
from multiinit.fans import (
    OUT_IN,
    SPATIAL_IN_OUT,
    LogicalView,
    compute_fans,
    from_logical_shape,
    to_logical_shape,
)


@pytest.mark.parametrize(
    "shape, layout, fans",
    [
        ((300, 400), OUT_IN, (400, 300)),  # torch Linear(400, 300)
        ((400, 300), SPATIAL_IN_OUT, (400, 300)),  # Keras Dense(300) fed 400 features
        ((128, 64, 3, 3), OUT_IN, (576, 1152)),
        ((3, 3, 64, 128), SPATIAL_IN_OUT, (576, 1152)),
        ((16, 4, 5), OUT_IN, (20, 80)),  # conv1d
        ((5, 4, 16), SPATIAL_IN_OUT, (20, 80)),
        ((8, 2, 3, 3, 3), OUT_IN, (54, 216)),  # conv3d
        ((3, 3, 3, 2, 8), SPATIAL_IN_OUT, (54, 216)),
        ((64, 1, 3, 3), OUT_IN, (9, 576)),  # depthwise, torch layout
    ],
)
def test_fans_on_the_logical_view(shape, layout, fans) -> None:
    assert compute_fans(shape, layout) == fans


@pytest.mark.parametrize("shape", [(), (7,)])
def test_fans_below_two_dimensions_are_a_shape_error(shape) -> None:
    with pytest.raises(mi.ShapeError, match="fewer than 2 dimensions"):
        compute_fans(shape)


def test_bad_layout_is_a_spec_error() -> None:
    with pytest.raises(mi.SpecError, match="layout='nhwc'"):
        compute_fans((3, 3), "nhwc")


def test_logical_shape_round_trip() -> None:
    for shape in [(4, 8), (3, 3, 64, 128), (5, 2, 7), (2, 3, 4, 5, 6), (9,), ()]:
        assert from_logical_shape(to_logical_shape(shape, SPATIAL_IN_OUT), SPATIAL_IN_OUT) == shape
        assert to_logical_shape(shape, OUT_IN) == shape


def test_logical_view_transposes_arrays_both_ways() -> None:
    native = np.arange(3 * 3 * 4 * 5).reshape(3, 3, 4, 5)  # keras (kh, kw, in, out)
    view = LogicalView.of(native.shape, SPATIAL_IN_OUT)
    logical = view.to_logical(native)
    assert logical.shape == (5, 4, 3, 3)
    assert logical[2, 1, 0, 2] == native[0, 2, 1, 2]  # (out, in, kh, kw) <- (kh, kw, in, out)
    assert np.array_equal(view.to_native(logical), native)
    assert view.is_plain and view.fans == (36, 45)


def test_logical_view_of_a_keras_depthwise_kernel_is_a_reshape() -> None:
    # Keras DepthwiseConv2D: (kh, kw, C, m); output channel c*m + j. Logical (C*m, 1, kh, kw).
    kh, kw, channels, mult = 3, 3, 4, 2
    native = np.arange(kh * kw * channels * mult).reshape(kh, kw, channels, mult)
    view = LogicalView(native.shape, axes=(3, 2, 0, 1), pre_shape=(kh, kw, 1, channels * mult))
    logical = view.to_logical(native)
    assert logical.shape == (8, 1, 3, 3) and view.fans == (9, 72)
    assert logical[2 * mult + 1, 0, 1, 2] == native[1, 2, 2, 1]
    assert np.array_equal(view.to_native(logical), native)
    assert not view.is_plain


def test_logical_view_rejects_inconsistent_shapes() -> None:
    with pytest.raises(mi.ShapeError):
        LogicalView((2, 3), pre_shape=(7,))
    with pytest.raises(mi.ShapeError):
        LogicalView((2, 3), axes=(0, 0))
    with pytest.raises(mi.ShapeError):
        LogicalView((2, 3), logical_shape=(5,))


def test_calculate_gain_table() -> None:
    for name in (
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "sigmoid",
    ):
        assert mi.calculate_gain(name) == 1
    assert mi.calculate_gain("tanh") == 5 / 3
    assert mi.calculate_gain("relu") == math.sqrt(2)
    assert mi.calculate_gain("selu") == 3 / 4
    assert mi.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01**2))
    assert mi.calculate_gain("leaky_relu", 0) == math.sqrt(2)
    assert mi.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert mi.calculate_gain("relu", "ignored") == math.sqrt(2)  # torch ignores param here too
    with pytest.raises(mi.SpecError, match="param=True"):
        mi.calculate_gain("leaky_relu", True)
