"""mi.explain: fans, law numbers and native equivalents (the native calls themselves are run
in each framework's env by test_native_equivalents.py)."""

from __future__ import annotations

import math

import pytest

import multiinit as mi


def test_the_issue_example_xavier_normal_in_three_frameworks() -> None:
    g = 1.5
    e = mi.explain(mi.xavier_normal(gain=g), (300, 400), "torch")
    assert e.fans == (400, 300) and e.logical_shape == (300, 400)
    assert e.native["torch"] == "torch.nn.init.xavier_normal_(w, gain=1.5)"
    assert e.native["mxnet"] == 'mx.init.Xavier(rnd_type="gaussian", factor_type="avg", magnitude=2.25)'
    assert e.native["keras"] == (
        'keras.initializers.VarianceScaling(scale=2.25, mode="fan_avg", distribution="untruncated_normal")'
    )
    assert e.native["flax"] == 'jax.nn.initializers.variance_scaling(2.25, "fan_avg", "normal")'
    assert f"N(0, {g * math.sqrt(2 / 700):.6g}^2), untruncated" in e.law


def test_fans_are_read_in_the_backend_layout() -> None:
    assert mi.explain(mi.he_uniform(), (3, 3, 64, 128), "keras").fans == (576, 1152)
    assert mi.explain(mi.he_uniform(), (3, 3, 64, 128), "jax").logical_shape == (128, 64, 3, 3)
    assert mi.explain(mi.he_uniform(), (128, 64, 3, 3), "mxnet").fans == (576, 1152)


def test_truncated_variance_scaling_gets_shape_specific_torch_numbers() -> None:
    e = mi.explain(mi.he_normal(), (256, 128), "torch")
    sigma = math.sqrt(2 / 128) / 0.87962566103423978
    assert (
        e.native["torch"]
        == f"torch.nn.init.trunc_normal_(w, std={sigma:.6g}, a={-2 * sigma:.6g}, b={2 * sigma:.6g})"
    )
    assert e.native["mxnet"] is None and "no truncated normal" in e.why_not["mxnet"]
    assert f"std {math.sqrt(2 / 128):.6g}" in e.law


def test_traps_have_no_native_equivalent_with_the_reason() -> None:
    e = mi.explain(mi.uniform(-1, 1), (4, 4), "torch")
    assert e.native["flax"] is None and "U[0, scale)" in e.why_not["flax"]
    assert (
        mi.explain(mi.uniform(0, 2), (4, 4), "torch").native["flax"] == "jax.nn.initializers.uniform(scale=2)"
    )
    assert mi.explain(mi.truncated_normal(low=-3, high=3), (4, 4), "torch").native["keras"] is None
    e = mi.explain(mi.dirac(), (4, 4, 3, 3), "torch")
    assert e.native["torch"] == "torch.nn.init.dirac_(w, groups=1)" and "(k-1)//2" in e.why_not["flax"]
    e = mi.explain(mi.orthogonal(), (4, 4), "torch")
    assert e.native["mxnet"] is None and "QR sign fix" in e.why_not["mxnet"]


def test_str_lists_every_framework() -> None:
    text = str(mi.explain(mi.mixture([(0.5, mi.zeros()), (0.5, mi.ones())]), (2, 2), "torch"))
    assert (
        text.splitlines()[0] == "mixture([(0.5, zeros()), (0.5, ones())]) on a torch weight of shape (2, 2)"
    )
    for framework in ("torch:", "keras:", "flax:", "mxnet:"):
        assert f"  {framework}" in text and "no native equivalent" in text


def test_explain_errors() -> None:
    with pytest.raises(mi.ShapeError, match="fewer than 2 dimensions"):
        mi.explain(mi.xavier_uniform(), (8,), "torch")
    with pytest.raises(mi.UnknownBackend):
        mi.explain(mi.zeros(), (2, 2), "caffe")
    with pytest.raises(mi.SpecError, match="spec='zeros\\(\\)'"):
        mi.explain("zeros()", (2, 2), "torch")
