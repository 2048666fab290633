"""The TensorFlow examples of d2l's "Parameter Initialization", natively and through multiinit.

Each example is built as the chapter writes it (tf.keras, tf initializers, a MyInit subclass),
then through multiinit twice: with compiled initializers in the layer constructor, and with
mi.apply on the built net. The chapter's nets are 4 wide; the statistical checks use the same
nets 256 wide on 128 features (32,768 kernel values) and compare each multiinit draw with the
analytic law and with the native TensorFlow draw (two-sample KS, level 1e-6).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

import multiinit as mi
from multiinit import keras as mik, stats

from matrix import seed_chapter_my_init

MIXTURE = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])
MY_INIT = mi.custom(seed_chapter_my_init, name="tests.keras.chapter_my_init")


class MyInit(tf.keras.initializers.Initializer):
    """The chapter's custom initializer, verbatim."""

    def __call__(self, shape, dtype=None):
        data = tf.random.uniform(shape, -10, 10, dtype=dtype)
        factor = tf.abs(data) >= 5
        factor = tf.cast(factor, tf.float32)
        return data * factor


def chapter_net(width: int = 4, features: int = 4, first=None, first_bias=None, second=None):
    """The chapter's net: Flatten, Dense(width, relu), Dense(1), with optional initializers."""
    first_kwargs = {}
    if first is not None:
        first_kwargs["kernel_initializer"] = first
    if first_bias is not None:
        first_kwargs["bias_initializer"] = first_bias
    second_kwargs = {} if second is None else {"kernel_initializer": second}
    net = tf.keras.models.Sequential(
        [
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(width, activation=tf.nn.relu, **first_kwargs),
            tf.keras.layers.Dense(1, **second_kwargs),
        ]
    )
    X = tf.random.uniform((2, features))
    assert tuple(net(X).shape) == (2, 1)
    return net


def kernel(net, index: int = 1) -> np.ndarray:
    return net.layers[index].weights[0].numpy()


def bias(net, index: int = 1) -> np.ndarray:
    return net.layers[index].weights[1].numpy()


def rules_for(net, first=None, first_bias=None, second=None) -> list:
    """The same choices as mi.apply rules, selecting the chapter's layers by their paths."""
    rules = []
    if first is not None:
        rules.append((net.layers[1].weights[0].path, first))
    if first_bias is not None:
        rules.append((net.layers[1].weights[1].path, first_bias))
    if second is not None:
        rules.append((net.layers[2].weights[0].path, second))
    return rules


def assert_law(values: np.ndarray, spec: mi.Spec, native: np.ndarray) -> None:
    verdict = stats.check(values.T, spec, reference_seed=99)  # Keras (in, out) -> logical
    assert verdict.passed, f"{spec!r}: {verdict}"
    same = stats.check_same(values, native)
    assert same.passed, f"{spec!r} vs the native TensorFlow draw: {same}"


# --------------------------------------------------------------------------- normal + zeros


def test_normal_kernels_and_zero_biases() -> None:
    native = chapter_net(
        first=tf.random_normal_initializer(mean=0, stddev=0.01), first_bias=tf.zeros_initializer()
    )
    ours = chapter_net(first=mik.normal(mean=0, std=0.01, seed=0), first_bias=mik.zeros())
    assert kernel(ours).shape == kernel(native).shape == (4, 4)
    assert (bias(ours) == 0).all() and (bias(native) == 0).all()

    wide_native = chapter_net(
        256, 128, first=tf.random_normal_initializer(mean=0, stddev=0.01), first_bias=tf.zeros_initializer()
    )
    wide = chapter_net(256, 128, first=mik.normal(mean=0, std=0.01, seed=0), first_bias=mik.zeros())
    assert_law(kernel(wide), mi.normal(0, 0.01), kernel(wide_native))
    applied = chapter_net(256, 128)
    mi.apply(applied, rules_for(applied, first=mi.normal(0, 0.01), first_bias=mi.zeros()), seed=0)
    assert_law(kernel(applied), mi.normal(0, 0.01), kernel(wide_native))
    assert (bias(applied) == 0).all()


# --------------------------------------------------------------------------- constant


def test_constant_one() -> None:
    native = chapter_net(first=tf.keras.initializers.Constant(1), first_bias=tf.zeros_initializer())
    ours = chapter_net(first=mik.constant(1), first_bias=mik.zeros())
    applied = chapter_net()
    mi.apply(applied, rules_for(applied, first=mi.ones(), first_bias=mi.zeros()))
    for net in (ours, applied):
        assert np.array_equal(kernel(net), kernel(native)) and (kernel(net) == 1).all()
        assert np.array_equal(bias(net), bias(native))


# --------------------------------------------------------------------------- glorot, then 42


def test_glorot_uniform_on_one_layer_and_42_on_the_next() -> None:
    native = chapter_net(
        first=tf.keras.initializers.GlorotUniform(), second=tf.keras.initializers.Constant(42)
    )
    ours = chapter_net(first=mik.glorot_uniform(), second=mik.constant(42))
    applied = chapter_net()
    mi.apply(applied, rules_for(applied, first=mi.glorot_uniform(), second=mi.constant(42)))
    for net in (native, ours, applied):
        assert np.abs(kernel(net)).max() <= math.sqrt(6 / (4 + 4))  # by hand: fans 4 and 4
        assert (kernel(net, 2) == 42).all() and kernel(net, 2).shape == (4, 1)

    wide_native = chapter_net(256, 128, first=tf.keras.initializers.GlorotUniform(seed=1))
    wide = chapter_net(256, 128, first=mik.glorot_uniform(seed=1))
    assert np.abs(kernel(wide)).max() <= math.sqrt(6 / (128 + 256))
    assert_law(kernel(wide), mi.glorot_uniform(), kernel(wide_native))
    wide_applied = chapter_net(256, 128)
    mi.apply(wide_applied, rules_for(wide_applied, first=mi.glorot_uniform(), second=mi.constant(42)), seed=1)
    assert_law(kernel(wide_applied), mi.glorot_uniform(), kernel(wide_native))


# --------------------------------------------------------------------------- the custom law


@pytest.mark.parametrize("spec", [MY_INIT, MIXTURE], ids=["custom", "mixture"])
def test_the_chapters_custom_initializer(spec) -> None:
    # U(-10, 10) zeroed where |w| < 5 is the mixture 1/4 U[5, 10) + 1/2 {0} + 1/4 U[-10, -5).
    native = chapter_net(256, 128, first=MyInit())
    assert stats.check(kernel(native).T, MIXTURE, reference_seed=None).passed  # the claim itself
    ours = chapter_net(256, 128, first=spec.to("keras", seed=2))
    assert_law(kernel(ours), MIXTURE, kernel(native))
    applied = chapter_net(256, 128)
    mi.apply(applied, rules_for(applied, first=spec), seed=2)
    assert_law(kernel(applied), MIXTURE, kernel(native))
    small = chapter_net(first=spec.to("keras", seed=3))
    values = kernel(small)
    assert ((values == 0) | ((np.abs(values) >= 5) & (np.abs(values) <= 10))).all()
