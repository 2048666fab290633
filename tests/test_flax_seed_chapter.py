"""The seed chapter (d2l "Parameter Initialization", JAX tab) written with multiinit.

The chapter's network is ``nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(1)])`` on X of
shape (2, 4): its kernels hold 32 and 8 values, too few to test a law, so each example is
initialized with 500 keys at once (``jax.vmap`` over ``net.init``) and the pooled values are
checked with ``multiinit.stats`` (level 1e-6 per check). Where the chapter's own JAX
initializer has the same law, the same keys must give the chapter's own numbers.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import multiinit as mi
from multiinit import flax as mif, stats

X = jax.random.uniform(jax.random.key(1), (2, 4))
KEYS = jax.random.split(jax.random.key(0), 500)

#: The chapter's custom law as a mixture: U(-10, 10) zeroed where |w| < 5.
MY_INIT_LAW = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])


def my_init(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The chapter's ``my_init``, as a NumPy law for ``mi.custom``."""
    data = rng.uniform(-10, 10, shape)
    return data * (np.abs(data) >= 5)


def chapter_my_init(key, shape, dtype=jnp.float32):
    """The chapter's own JAX ``my_init``, verbatim."""
    data = jax.random.uniform(key, shape, minval=-10, maxval=10)
    return data * (jnp.abs(data) >= 5)


def chapter_net(kernel_init, bias_init, second_kernel=None, second_bias=None) -> nn.Module:
    return nn.Sequential(
        [
            nn.Dense(8, kernel_init=kernel_init, bias_init=bias_init),
            nn.relu,
            nn.Dense(1, kernel_init=second_kernel or kernel_init, bias_init=second_bias or bias_init),
        ]
    )


def init_many(net: nn.Module) -> dict:
    """The chapter's params for 500 keys: every leaf gets a leading axis of 500."""
    return jax.vmap(lambda key: net.init(key, X))(KEYS)["params"]


def test_normal_kernels_and_zero_biases() -> None:
    params = init_many(chapter_net(mif.normal(std=0.01), mif.zeros()))
    for layer in ("layers_0", "layers_2"):
        kernel = np.asarray(params[layer]["kernel"]).ravel()
        verdict = stats.check(kernel, mi.normal(std=0.01))
        assert verdict.passed, f"{layer}: {verdict}"
        np.testing.assert_array_equal(np.asarray(params[layer]["bias"]), 0.0)
    native = init_many(chapter_net(nn.initializers.normal(0.01), nn.initializers.zeros))
    np.testing.assert_allclose(
        np.asarray(params["layers_0"]["kernel"]),
        np.asarray(native["layers_0"]["kernel"]),
        rtol=2.5e-7,
        atol=0,
    )


def test_constant_one() -> None:
    params = chapter_net(mif.constant(1), mif.zeros()).init(jax.random.key(0), X)["params"]
    native = chapter_net(nn.initializers.constant(1), nn.initializers.zeros).init(jax.random.key(0), X)[
        "params"
    ]
    for layer in ("layers_0", "layers_2"):
        np.testing.assert_array_equal(np.asarray(params[layer]["kernel"]), 1.0)
        np.testing.assert_array_equal(np.asarray(params[layer]["bias"]), 0.0)
        np.testing.assert_array_equal(
            np.asarray(params[layer]["kernel"]), np.asarray(native[layer]["kernel"])
        )


def test_xavier_on_the_first_layer_and_42_on_the_next() -> None:
    net = chapter_net(mif.xavier_uniform(), mif.zeros(), second_kernel=mif.constant(42))
    params = init_many(net)
    np.testing.assert_array_equal(np.asarray(params["layers_2"]["kernel"]), 42.0)
    first = np.asarray(params["layers_0"]["kernel"])
    bound = math.sqrt(6 / (4 + 8))  # Dense(8) fed 4 features: torch's Linear(4, 8), by hand
    assert 0.99 * bound < np.abs(first).max() < bound
    verdict = stats.check(first.ravel(), mi.xavier_uniform(), fans=(4, 8))
    assert verdict.passed, str(verdict)
    native = init_many(
        chapter_net(
            nn.initializers.xavier_uniform(),
            nn.initializers.zeros,
            second_kernel=nn.initializers.constant(42),
        )
    )
    np.testing.assert_allclose(first, np.asarray(native["layers_0"]["kernel"]), rtol=2.5e-7, atol=0)


def test_my_init_as_a_custom_numpy_function_and_as_a_mixture() -> None:
    custom = mi.custom(my_init, name="seed_chapter.my_init")
    pooled = {}
    for name, init in (
        ("custom", mif.compile(custom)),
        ("mixture", mif.compile(MY_INIT_LAW)),
        ("chapter", chapter_my_init),
    ):
        params = init_many(nn.Sequential([nn.Dense(8, kernel_init=init), nn.relu, nn.Dense(1)]))
        pooled[name] = np.asarray(params["layers_0"]["kernel"]).ravel()
    # The custom function is checked against the mixture's analytic law (an independent
    # statement of the same law), and against its own reference draw.
    for name in ("custom", "mixture", "chapter"):
        verdict = stats.check(pooled[name], MY_INIT_LAW)
        assert verdict.passed, f"{name}: {verdict}"
    assert stats.check(pooled["custom"], custom).passed
    assert stats.check_same(pooled["custom"], pooled["chapter"]).passed
    assert stats.check_same(pooled["mixture"], pooled["chapter"]).passed


# --------------------------------------------------------------------------- the same, by rules

WIDE_X = jax.random.uniform(jax.random.key(2), (2, 64))


def wide_params() -> dict:
    """The chapter's architecture, wide enough for a law check: kernels (64, 256), (256, 64)."""
    return nn.Sequential([nn.Dense(256), nn.relu, nn.Dense(64)]).init(jax.random.key(3), WIDE_X)


def test_the_chapter_by_rules() -> None:
    params = wide_params()
    new = mi.apply(params, {"kernel": mi.normal(std=0.01), "bias": mi.zeros()}, seed=0)["params"]
    for layer in ("layers_0", "layers_2"):
        assert stats.check(np.asarray(new[layer]["kernel"]).ravel(), mi.normal(std=0.01)).passed
        np.testing.assert_array_equal(np.asarray(new[layer]["bias"]), 0.0)

    rules = {
        "params/layers_0/kernel": mi.xavier_uniform(),
        "params/layers_2/kernel": mi.constant(42),
        "bias": mi.zeros(),
    }
    new = mi.apply(params, rules, seed=0)["params"]
    np.testing.assert_array_equal(np.asarray(new["layers_2"]["kernel"]), 42.0)
    verdict = stats.check(np.asarray(new["layers_0"]["kernel"]).T, mi.xavier_uniform())  # logical (256, 64)
    assert verdict.passed, str(verdict)

    new = mi.apply(params, {"kernel": mi.custom(my_init, name="seed_chapter.my_init")}, seed=0)["params"]
    verdict = stats.check(np.asarray(new["layers_0"]["kernel"]).ravel(), MY_INIT_LAW)
    assert verdict.passed, str(verdict)
