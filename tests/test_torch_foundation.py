"""The neutral fans and gains equal torch's own, on torch's layout (the logical one)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import init

import multiinit as mi
from multiinit.fans import NONLINEARITIES

SHAPES = [(300, 400), (1, 1), (128, 64, 3, 3), (16, 4, 5), (8, 2, 3, 3, 3), (64, 1, 3, 3), (7, 0), (0, 5, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_equal_torch(shape) -> None:
    assert mi.compute_fans(shape) == init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("shape", [(), (5,)])
def test_fans_below_2d_fail_like_torch(shape) -> None:
    with pytest.raises(ValueError):
        init._calculate_fan_in_and_fan_out(torch.empty(shape))
    with pytest.raises(ValueError):
        mi.compute_fans(shape)


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("param", [None, 0, 0.2, 3])
def test_gains_equal_torch(nonlinearity, param) -> None:
    assert mi.calculate_gain(nonlinearity, param) == pytest.approx(
        init.calculate_gain(nonlinearity, param), rel=1e-15
    )


def test_torch_knows_no_nonlinearity_we_refuse() -> None:
    for name in ("gelu", "silu", "swish", "elu"):
        with pytest.raises(ValueError):
            init.calculate_gain(name)
        with pytest.raises(mi.SpecError):
            mi.calculate_gain(name)
