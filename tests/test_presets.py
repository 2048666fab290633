"""Presets: each framework's default initialization, reproduced in every framework.

For every backend under test, every preset and every layer type (dense 400 -> 300, conv 16 -> 32
channels 3x3, embedding 1000 x 64), the layer is built natively, ``mi.apply(layer, preset,
seed=...)`` fills it, and its weight and bias (logical layout) are checked against the law
written out here from each framework's source -- not taken from ``multiinit.presets`` -- with
``multiinit.stats.check`` (analytic KS, moments, support, and a two-sample KS against the NumPy
reference; every check at level 1e-6). Where the backend is the preset's own framework, the
preset's values must also pass a two-sample KS (level 1e-6) against the framework's own
default initialization of the same layer.

Sample sizes: dense weights 120,000 values, conv weights 4,608, embeddings 64,000; biases 300
(dense) and 32 (conv) values, where the KS test is weaker but still rejects a wrong scale
(a factor-2 error in a uniform bound gives D = 0.5, p < 1e-6 at n = 32).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import multiinit as mi
from multiinit import stats

from conftest import REQUESTED

DENSE = (400, 300)  # in, out
CONV = (16, 32, 3)  # in channels, out channels, kernel size
EMBED = (1000, 64)  # rows, features
KINDS = ("dense", "conv", "embedding")
PRESETS = ("torch", "keras", "flax", "mxnet")
BACKENDS = [b for b in REQUESTED if b != "numpy"]
#: The framework each backend's own defaults come from.
OWN_PRESET = {"torch": "torch", "keras": "keras", "flax": "flax", "mxnet": "mxnet"}


def fans(kind: str) -> tuple[int, int]:
    if kind == "dense":
        return DENSE
    cin, cout, k = CONV
    return cin * k * k, cout * k * k


def expected_law(preset: str, kind: str, role: str) -> mi.Spec:
    """Each framework's default law, from its source (see framework-facts.md)."""
    if kind == "embedding":
        return {
            "torch": mi.normal(0.0, 1.0),  # nn.Embedding.reset_parameters: normal_
            "keras": mi.uniform(-0.05, 0.05),  # keras.layers.Embedding: "uniform" = RandomUniform()
            # flax.linen.Embed: variance_scaling(1, "fan_in", "normal", out_axis=0): fan_in = features
            "flax": mi.normal(0.0, math.sqrt(1.0 / EMBED[1])),
            "mxnet": mi.uniform(-0.07, 0.07),  # Block.initialize() default: Uniform(0.07)
        }[preset]
    fan_in, fan_out = fans(kind)
    if preset == "torch":  # kaiming_uniform_(a=sqrt(5)) and the bias bound 1/sqrt(fan_in)
        bound = 1.0 / math.sqrt(fan_in)
        return mi.uniform(-bound, bound)
    if role == "bias":
        return mi.zeros()
    if preset == "keras":  # GlorotUniform
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return mi.uniform(-bound, bound)
    if preset == "flax":  # lecun_normal: truncated at 2 std, std corrected by .87962566103423978
        return mi.truncated_normal(std=math.sqrt(1.0 / fan_in) / 0.87962566103423978, low=-2.0, high=2.0)
    return mi.uniform(-0.07, 0.07)


# --------------------------------------------------------------------------- layers, natively
# Each builder returns {"weight": logical array, "bias": logical array or absent} for a layer
# initialized by ``preset`` (a list of rules) or, with ``preset=None``, by its framework's default.


def torch_layer(kind: str, preset, seed: int) -> dict[str, np.ndarray]:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layer = {
        "dense": lambda: nn.Linear(*DENSE),
        "conv": lambda: nn.Conv2d(*CONV),
        "embedding": lambda: nn.Embedding(*EMBED),
    }[kind]()
    if preset is not None:
        mi.apply(layer, preset, seed=seed)
    return {name: p.detach().numpy().copy() for name, p in layer.named_parameters()}


def keras_layer(kind: str, preset, seed: int) -> dict[str, np.ndarray]:
    import keras

    keras.utils.set_random_seed(seed)
    if kind == "dense":
        model = keras.Sequential([keras.Input((DENSE[0],)), keras.layers.Dense(DENSE[1])])
    elif kind == "conv":
        model = keras.Sequential([keras.Input((8, 8, CONV[0])), keras.layers.Conv2D(CONV[1], CONV[2])])
    else:
        model = keras.Sequential([keras.Input((1,), dtype="int32"), keras.layers.Embedding(*EMBED)])
    if preset is not None:
        mi.apply(model, preset, seed=seed)
    layer = model.layers[0]
    if kind == "embedding":
        return {"weight": keras.ops.convert_to_numpy(layer.embeddings)}
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    # (in, out) -> (out, in); (kh, kw, in, out) -> (out, in, kh, kw)
    logical = kernel.T if kind == "dense" else kernel.transpose(3, 2, 0, 1)
    return {"weight": logical, "bias": keras.ops.convert_to_numpy(layer.bias)}


def flax_layer(kind: str, preset, seed: int) -> dict[str, np.ndarray]:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    layer, x = {
        "dense": (nn.Dense(DENSE[1]), jnp.ones((1, DENSE[0]))),
        "conv": (nn.Conv(CONV[1], (CONV[2], CONV[2])), jnp.ones((1, 8, 8, CONV[0]))),
        "embedding": (nn.Embed(*EMBED), jnp.zeros((1,), jnp.int32)),
    }[kind]
    variables = layer.init(jax.random.key(seed), x)
    if preset is not None:
        variables = mi.apply(variables, preset, seed=seed)
    params = {k: np.asarray(v) for k, v in variables["params"].items()}
    if kind == "embedding":
        return {"weight": params["embedding"]}
    kernel = params["kernel"]
    logical = kernel.T if kind == "dense" else kernel.transpose(3, 2, 0, 1)
    return {"weight": logical, "bias": params["bias"]}


def mxnet_layer(kind: str, preset, seed: int) -> dict[str, np.ndarray]:
    import mxnet as mx
    from mxnet.gluon import nn

    mx.random.seed(seed)
    layer = {
        "dense": lambda: nn.Dense(DENSE[1], in_units=DENSE[0]),
        "conv": lambda: nn.Conv2D(CONV[1], CONV[2], in_channels=CONV[0]),
        "embedding": lambda: nn.Embedding(*EMBED),
    }[kind]()
    layer.initialize()
    if preset is not None:
        mi.apply(layer, preset, seed=seed)
    return {name.rsplit("_", 1)[-1]: p.data().asnumpy() for name, p in layer.collect_params().items()}


BUILD = {"torch": torch_layer, "keras": keras_layer, "flax": flax_layer, "mxnet": mxnet_layer}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_preset_gives_its_frameworks_default_law(backend: str, preset: str, kind: str) -> None:
    got = BUILD[backend](kind, mi.presets.PRESETS[preset], seed=3)
    assert set(got) == ({"weight"} if kind == "embedding" else {"weight", "bias"}), set(got)
    for role, values in got.items():
        verdict = stats.check(values, expected_law(preset, kind, role), reference_seed=99)
        assert verdict.passed, f"{backend} {kind} {role} with {preset}_default: {verdict}"
    if OWN_PRESET[backend] == preset:
        native = BUILD[backend](kind, None, seed=4)
        for role, values in got.items():
            same = stats.check_same(values, native[role])
            assert same.passed, (
                f"{backend} {kind} {role}: {preset}_default differs from {backend}'s own default init: {same}"
            )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_preset_on_a_model_without_embeddings_leaves_other_parameters_alone(backend: str) -> None:
    # The dense layer has no embedding (the optional rule selects nothing): no error.
    got = BUILD[backend]("dense", mi.presets.keras_default, seed=5)
    assert np.array_equal(got["bias"], np.zeros(DENSE[1], dtype=got["bias"].dtype))
