"""Portable mode proven on real models: one architecture built natively in each framework,
initialized with ``mi.apply(model, RULES, seed=SEED, portable=True)``, gives the outputs of the
same network computed in NumPy from the reference draws.

The models are the seed chapter's MLP (4 -> 8 -> ReLU -> 1) and a small CNN (3x3 conv from 2 to
4 channels, ReLU, flatten, dense -> 3). Keras and Flax convolutions are channels-last: their
CNN permutes to channels-first before flattening, because the order in which flatten lays out
(channel, row, column) decides which dense weight meets which activation; that is what a port
must keep, and the one thing portable mode cannot do for you.

Each env records its outputs (``$MULTIINIT_RESULTS/portable-<backend>.json``); ``multiinit
report`` puts the four side by side and fails unless they agree. Tolerance: the outputs are
float32 forward passes of float32 weights compared with a float64 forward pass of the same
weights; with at most 18 + 36 products per output of size O(1) the float32 error is below
1e-5, so ``rtol = atol = 1e-5`` (a wrong stream or a wrong layout changes outputs by O(0.1)).
"""

from __future__ import annotations

import numpy as np
import pytest

import multiinit as mi
from multiinit.fans import LogicalView
from multiinit.rules import Param, plan

from conftest import REQUESTED, record_result

SEED = 2024
#: The bias law depends on the weight's fan_in, so the bias checks fans across frameworks too.
RULES = [
    ("weight", mi.xavier_normal(gain=mi.calculate_gain("relu"))),
    ("bias", mi.variance_scaling(1 / 3, "fan_in", "uniform")),
]
TOLERANCE = 1e-5

X_MLP = np.random.default_rng(7).standard_normal((5, 4)).astype(np.float32)
X_CNN = np.random.default_rng(8).standard_normal((5, 2, 5, 5)).astype(np.float32)  # N, C, H, W

#: Logical (out, in, *k) shapes of each model's weights, in definition order.
LAYERS = {"mlp": [(8, 4), (1, 8)], "cnn": [(4, 2, 3, 3), (3, 36)]}

BACKENDS = [b for b in REQUESTED if b != "numpy"]


# --------------------------------------------------------------------------- NumPy, from the rules


def reference_weights(model: str) -> list[np.ndarray]:
    """The portable draws of ``model``'s parameters (weight, bias, weight, bias), logical layout."""
    params = []
    for shape in LAYERS[model]:
        weight = LogicalView(shape)
        params.append(Param(f"{len(params)}.weight", weight, "weight", None, order=len(params)))
        params.append(
            Param(
                f"{len(params) - 1}.bias",
                LogicalView(shape[:1]),
                "bias",
                None,
                fans=weight.fans,
                order=len(params),
            )
        )
    # Portable mode's contract: each parameter is reference.sample of its rule's spec, keyed by
    # (seed, its position in the model), its weight's fans for a bias.
    drawn = {
        p.path: mi.reference.sample(spec, p.logical_shape, seed=(SEED, p.order), dtype="float32", fans=p.fans)
        for p, spec in plan(params, RULES)
    }
    return [drawn[p.path].astype(np.float64) for p in params]


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid 2-D cross-correlation, N C H W with (out, in, kh, kw) weights (all four frameworks)."""
    kh, kw = w.shape[2:]
    h, wd = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    patches = np.stack([x[:, :, i : i + h, j : j + wd] for i in range(kh) for j in range(kw)], axis=-1)
    return np.einsum("nchwk,ock->nohw", patches, w.reshape(*w.shape[:2], -1)) + b[None, :, None, None]


def reference_output(model: str) -> np.ndarray:
    w0, b0, w1, b1 = reference_weights(model)
    if model == "mlp":
        return np.maximum(X_MLP @ w0.T + b0, 0) @ w1.T + b1
    hidden = np.maximum(_conv(X_CNN.astype(np.float64), w0, b0), 0).reshape(len(X_CNN), -1)
    return hidden @ w1.T + b1


# --------------------------------------------------------------------------- each framework, natively


def run_torch(model: str) -> np.ndarray:
    import torch
    from torch import nn

    if model == "mlp":
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        x = X_MLP
    else:
        net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3))
        x = X_CNN
    mi.apply(net, RULES, seed=SEED, portable=True)
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def run_keras(model: str) -> np.ndarray:
    import keras

    if model == "mlp":
        net = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
        )
        x = X_MLP
    else:
        net = keras.Sequential(
            [
                keras.Input((5, 5, 2)),
                keras.layers.Conv2D(4, 3, activation="relu"),
                keras.layers.Permute((3, 1, 2)),  # (H, W, C) -> (C, H, W): torch's flatten order
                keras.layers.Flatten(),
                keras.layers.Dense(3),
            ]
        )
        x = X_CNN.transpose(0, 2, 3, 1)
    mi.apply(net, RULES, seed=SEED, portable=True)
    return keras.ops.convert_to_numpy(net(x))


def run_flax(model: str) -> np.ndarray:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3), padding="VALID")(x))
            x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch's flatten order
            return nn.Dense(3)(x)

    if model == "mlp":
        net = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(1)])
        x = jnp.asarray(X_MLP)
    else:
        net = CNN()
        x = jnp.asarray(X_CNN.transpose(0, 2, 3, 1))
    variables = mi.apply(net.init(jax.random.key(0), x), RULES, seed=SEED, portable=True)
    return np.asarray(net.apply(variables, x))


def run_mxnet(model: str) -> np.ndarray:
    import mxnet as mx
    from mxnet.gluon import nn

    net = nn.Sequential()
    if model == "mlp":
        net.add(nn.Dense(8, in_units=4, activation="relu"), nn.Dense(1, in_units=8))
        x = X_MLP
    else:
        # Gluon's Dense flattens (N, C, H, W) in C order, as torch's Flatten.
        net.add(nn.Conv2D(4, 3, in_channels=2, activation="relu"), nn.Dense(3, in_units=36))
        x = X_CNN
    net.initialize()
    mi.apply(net, RULES, seed=SEED, portable=True)
    return net(mx.nd.array(x)).asnumpy()


RUN = {"torch": run_torch, "keras": run_keras, "flax": run_flax, "mxnet": run_mxnet}


def test_the_numpy_network_is_what_it_says() -> None:
    # The NumPy side is itself the claim everything is compared with: check its conv against a
    # direct loop, and that portable streams follow the order (a swap changes the output).
    w = np.arange(4 * 2 * 9, dtype=np.float64).reshape(4, 2, 3, 3) / 50
    b = np.array([0.1, -0.2, 0.3, 0.0])
    got = _conv(X_CNN.astype(np.float64), w, b)
    n, o, i, j = 3, 2, 1, 2
    direct = (X_CNN[n, :, i : i + 3, j : j + 3] * w[o]).sum() + b[o]
    assert np.isclose(got[n, o, i, j], direct)
    first, second = reference_weights("mlp")[0], reference_weights("cnn")[0]
    assert not np.allclose(first.ravel()[:8], second.ravel()[:8])
    assert reference_output("mlp").shape == (5, 1) and reference_output("cnn").shape == (5, 3)


# The core env has no framework: only the NumPy network's own test runs there (not an empty,
# skipped parametrization).
if BACKENDS:

    @pytest.mark.parametrize("model", ["mlp", "cnn"])
    @pytest.mark.parametrize("backend", BACKENDS)
    def test_portable_outputs_equal_the_reference_network(backend: str, model: str) -> None:
        output = np.asarray(RUN[backend](model), dtype=np.float64)
        expected = reference_output(model)
        record_result(
            "portable",
            backend,
            {
                "backend": backend,
                "model": model,
                "seed": SEED,
                "rules": [[s, str(p)] for s, p in RULES],
                "output": output.tolist(),
                "reference": expected.tolist(),
                "tolerance": TOLERANCE,
            },
        )
        np.testing.assert_allclose(
            output,
            expected,
            rtol=TOLERANCE,
            atol=TOLERANCE,
            err_msg=f"{backend} {model}: portable outputs differ from the reference network",
        )
