"""keras_default on attention: MultiHeadAttention's projection kernels get Keras' own default
(glorot_uniform with the fans Keras gives an EinsumDense kernel), biases zeros.

Two-sample KS (level 1e-6) against Keras' own construction of the same layer: the query kernel
(64, 4, 32) holds 8,192 values; reading it as (spatial, in, out) -- the bug this guards against --
changes the bound by a factor ~2.8, which gives D > 0.3 and p far below 1e-6."""

from __future__ import annotations

import keras
import numpy as np

import multiinit as mi
from multiinit import stats


def _layer(seed: int) -> keras.layers.MultiHeadAttention:
    keras.utils.set_random_seed(seed)
    layer = keras.layers.MultiHeadAttention(num_heads=4, key_dim=32)
    x = np.zeros((1, 3, 64), dtype="float32")
    layer(x, x)
    return layer


def test_keras_default_reaches_attention_kernels_with_keras_fans() -> None:
    own = keras.ops.convert_to_numpy(_layer(0).query_dense.kernel)
    layer = _layer(1)
    for v in layer.weights:
        v.assign(np.full(v.shape, 7.0, dtype=v.dtype))
    mi.apply(layer, mi.presets.keras_default, seed=3)
    got = keras.ops.convert_to_numpy(layer.query_dense.kernel)
    assert got.shape == (64, 4, 32)
    assert stats.check_same(got, own, alpha=1e-6).passed
    for v in layer.weights:
        assert not np.any(keras.ops.convert_to_numpy(v) == 7.0), v.path
