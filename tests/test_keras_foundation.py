"""The neutral fans equal Keras' own on Keras' (*spatial, in, out) layout, where Keras is right."""

from __future__ import annotations

import pytest
from keras.src.initializers.random_initializers import compute_fans as keras_fans

import multiinit as mi
from multiinit.fans import SPATIAL_IN_OUT


@pytest.mark.parametrize("shape", [(400, 300), (3, 3, 64, 128), (5, 4, 16), (3, 3, 3, 2, 8)])
def test_fans_equal_keras(shape) -> None:
    assert mi.compute_fans(shape, SPATIAL_IN_OUT) == tuple(int(f) for f in keras_fans(shape))


def test_keras_invents_fans_for_a_bias_where_we_refuse() -> None:
    assert tuple(keras_fans((7,))) == (7, 7)
    with pytest.raises(mi.ShapeError):
        mi.compute_fans((7,), SPATIAL_IN_OUT)
