"""The neutral fans equal JAX's own on Flax's (*spatial, in, out) layout."""

from __future__ import annotations

import pytest
from jax._src.nn.initializers import _compute_fans

import multiinit as mi
from multiinit.fans import SPATIAL_IN_OUT


@pytest.mark.parametrize("shape", [(400, 300), (3, 3, 64, 128), (5, 4, 16), (3, 3, 3, 2, 8), (3, 3, 1, 64)])
def test_fans_equal_jax(shape) -> None:
    fan_in, fan_out = _compute_fans(shape, in_axis=-2, out_axis=-1)
    assert mi.compute_fans(shape, SPATIAL_IN_OUT) == (int(fan_in), int(fan_out))
