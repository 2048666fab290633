"""What the keras.initializers drop-in adds beyond Keras' own behaviour (which
test_keras_conformance.py holds it to): the spec table, the typed errors, exact truncation where
Keras' backend is not exact, and specs that explain and portable mode can use."""

from __future__ import annotations

import doctest
import math

import keras
import numpy as np
import pytest

import multiinit as mi
from multiinit import stats
from multiinit.fans import SPATIAL_IN_OUT, LogicalView
from multiinit.keras import initializers as MI

KI = keras.initializers


def values(initializer, shape, dtype="float32") -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(initializer(shape, dtype=dtype), "float64")))


def test_docstring_examples() -> None:
    result = doctest.testmod(MI, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 10 and result.failed == 0


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize(
    "name, args, kwargs, expected",
    [
        ("Zeros", (), {}, mi.zeros()),
        ("ones", (), {}, mi.ones()),
        ("Constant", (3,), {}, mi.constant(3.0)),
        ("Identity", (), {}, mi.eye()),
        ("Identity", (0.0,), {}, mi.zeros()),
        ("RandomNormal", (0.5, -0.01), {}, mi.normal(0.5, 0.01)),
        ("random_uniform", (-1, 1), {}, mi.uniform(-1, 1)),
        ("RandomUniform", (2, 2), {}, mi.constant(2.0)),
        ("TruncatedNormal", (), {"stddev": 0.02}, mi.truncated_normal(std=0.02)),
        ("TruncatedNormal", (1.0, 0.0), {}, mi.constant(1.0)),
        ("VarianceScaling", (2.0, "fan_out", "uniform"), {}, mi.variance_scaling(2.0, "fan_out", "uniform")),
        (
            "VarianceScaling",
            (),
            {"distribution": "Normal"},
            mi.variance_scaling(),
        ),  # Keras: "normal" is truncated
        (
            "VarianceScaling",
            (),
            {"input_axes": [0]},
            mi.variance_scaling(),
        ),  # one list alone: Keras ignores it
        ("GlorotNormal", (), {}, mi.glorot_normal()),
        (
            "he_uniform",
            (),
            {"input_axes": [0], "output_axes": [1, 2]},
            mi.with_axes(mi.he_uniform(), in_axis=(0,), out_axis=(1, 2)),
        ),
        ("Orthogonal", (), {"gain": -3}, mi.orthogonal(3.0)),
        ("OrthogonalInitializer", (0,), {}, mi.zeros()),
    ],
)
def test_spec_of_is_the_table_from_keras_names_to_specs(name, args, kwargs, expected) -> None:
    assert MI.spec_of(name, *args, **kwargs) == expected
    cls = getattr(MI, name)
    seeded = {"seed": 1} if issubclass(cls, KI.RandomNormal.__mro__[1]) else {}
    assert cls(*args, **kwargs, **seeded).spec == expected


def test_spec_of_refuses_what_keras_does_not_name_or_take() -> None:
    with pytest.raises(mi.SpecError, match="name='Glorot'"):
        MI.spec_of("Glorot")
    with pytest.raises(mi.SpecTypeError, match="spec_of"):
        MI.spec_of("Zeros", 1.0)
    with pytest.raises(mi.SpecTypeError, match="seed"):
        MI.spec_of("HeNormal", seed=1)  # the table takes Keras' arguments without the seed


def test_laws_without_a_neutral_constructor_are_named_custom_laws_with_keras_values() -> None:
    # Constant of an array, Identity(gain), STFT: custom laws whose NumPy values are Keras'.
    cases = [
        (MI.Constant(np.arange(4.0)), (3, 4)),
        (MI.Identity(2.5), (4, 6)),
        (MI.STFT("imag", "hamming", "spectrum", True), (16, 1, 9)),
    ]
    for init, shape in cases:
        assert isinstance(init.spec, mi.spec.Custom) and init.spec.name.startswith("keras.initializers.")
        view = LogicalView.of(shape, SPATIAL_IN_OUT)
        ours = mi.reference.sample(init.spec, view.logical_shape, seed=0, dtype="float64")
        np.testing.assert_allclose(view.to_native(ours), values(init, shape), rtol=1e-4, atol=1e-5)
    # Equal arguments make one law (the same registered name); other arguments another.
    assert MI.Identity(2.5).spec == MI.Identity(2.5).spec != MI.Identity(3.0).spec
    assert (
        MI.Constant([1.0, 2.0]).spec == MI.Constant(np.array([1.0, 2.0])).spec != MI.Constant([2.0, 1.0]).spec
    )


def test_a_dropins_spec_is_understood_by_explain_and_the_reference() -> None:
    init = MI.HeNormal(seed=1)
    explained = mi.explain(init.spec, (3, 3, 64, 128), "keras")
    assert explained.fans == (576, 1152) and "HeNormal" in explained.native["keras"]
    x = mi.reference.sample(init.spec, (128, 64, 3, 3), seed=(0, 1))
    assert stats.check(x, mi.he_normal(), reference_seed=2).passed


# --------------------------------------------------------------------------- errors


def test_dtype_errors_are_every_builtin_keras_backends_raise() -> None:
    with pytest.raises(
        MI.SpecDtypeError, match=r"dtype='complex64' is not allowed.*complex weights"
    ) as caught:
        MI.GlorotUniform(seed=0)((3, 3), dtype="complex64")
    for builtin in (TypeError, ValueError, NotImplementedError, mi.MultiinitError, mi.SpecError):
        assert isinstance(caught.value, builtin)
    with pytest.raises(mi.SpecTypeError, match="dtype='nope'"):
        MI.RandomNormal(seed=0)((3, 3), dtype="nope")


def test_keras_own_checks_are_multiinit_errors_of_keras_builtins() -> None:
    with pytest.raises(mi.SpecError, match="scale") as caught:
        MI.VarianceScaling(scale=-1)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(MI.SpecAttributeError):
        MI.VarianceScaling(distribution=None)
    with pytest.raises(mi.SpecError, match="side"):
        MI.STFT(side="left")
    with pytest.raises(mi.SpecError, match="seed"):
        MI.HeNormal(seed=1.5)
    with pytest.raises(mi.ShapeError, match="2-D"):
        MI.Identity()((3, 3, 3))
    with pytest.raises(IndexError) as caught:  # Keras' own IndexError, typed
        MI.VarianceScaling(input_axes=[5], output_axes=[1])((3, 4, 5))
    assert isinstance(caught.value, mi.ShapeError)


def test_a_backend_error_keeps_its_message_and_cause() -> None:
    with pytest.raises(mi.MultiinitError, match="Keras' own Constant raises") as caught:
        MI.Constant(np.arange(3.0))((2, 4))
    assert caught.value.__cause__ is not None


def test_a_tensor_identifier_refuses_another_shape() -> None:
    with pytest.raises(mi.ShapeError, match="Expected `shape` to be"):
        MI.get(keras.ops.ones((2, 3)))((3, 2))


# --------------------------------------------------------------------------- exact truncation


@pytest.fixture
def inexact_backend(monkeypatch):
    """As on Keras' torch backend, whose own truncated normal is not exact."""
    monkeypatch.setattr(MI, "_exact_truncation", lambda: False)


@pytest.mark.parametrize(
    "init, shape, spec, fans",
    [
        (MI.TruncatedNormal(0.1, 0.02, seed=4), (160, 200), mi.truncated_normal(0.1, 0.02), None),
        (MI.TruncatedNormal(0.0, -1.5, seed=4), (160, 200), mi.truncated_normal(0.0, 1.5), None),
        (MI.HeNormal(seed=4), (3, 3, 32, 64), mi.he_normal(), (288, 576)),
        (
            MI.VarianceScaling(3.0, "fan_avg", seed=4),
            (32000,),
            mi.variance_scaling(3.0, "fan_avg"),
            (32000, 32000),
        ),
        (
            MI.LecunNormal(seed=4, input_axes=[0], output_axes=[1, 2]),
            (32, 8, 128),
            mi.lecun_normal(),
            (32, 1024),
        ),
    ],
)
def test_where_keras_is_not_exact_the_dropin_draws_the_exact_truncated_law(
    inexact_backend, init, shape, spec, fans
) -> None:
    first, again = values(init, shape), values(init, shape)
    assert np.array_equal(first, again)  # Keras' rule: an int seed gives the same values every call
    x = first if len(shape) < 2 else LogicalView.of(shape, SPATIAL_IN_OUT).to_logical(first)
    verdict = stats.check(x, spec, fans=fans, reference_seed=3)
    assert verdict.passed, str(verdict)


def test_on_an_inexact_backend_a_seed_generator_still_advances(inexact_backend) -> None:
    init = MI.TruncatedNormal(seed=keras.random.SeedGenerator(3))
    a, b = values(init, (40, 30)), values(init, (40, 30))
    assert not np.array_equal(a, b) and np.abs(a).max() <= 0.1 and np.abs(b).max() <= 0.1


def test_where_keras_is_exact_the_dropin_is_keras_itself() -> None:
    pairs = [
        (MI.GlorotUniform(seed=5), KI.GlorotUniform(seed=5)),
        (MI.RandomNormal(seed=5), KI.RandomNormal(seed=5)),
    ]
    if MI._exact_truncation():  # TensorFlow and JAX; on torch the drop-in draws its own exact law
        pairs += [
            (MI.TruncatedNormal(0.1, 0.02, seed=5), KI.TruncatedNormal(0.1, 0.02, seed=5)),
            (MI.GlorotNormal(seed=5), KI.GlorotNormal(seed=5)),
        ]
    for dropin, native in pairs:
        assert np.array_equal(values(dropin, (30, 40)), values(native, (30, 40)))


# --------------------------------------------------------------------------- the keras namespace


def test_the_dropin_module_is_importable_from_the_namespace() -> None:
    from multiinit import keras as mik
    from multiinit.keras import initializers

    assert mik.initializers is initializers is MI
    assert keras.saving.get_registered_object("multiinit>HeNormal") is MI.HeNormal
    # The namespace's own constructors stay the neutral ones (an int seed advances).
    assert isinstance(mik.he_normal(seed=1), mik.MultiinitInitializer)
    assert math.isclose(MI.VarianceScaling().fans((7,))[0], 7)


def test_a_backend_error_of_several_builtins_is_each_of_them() -> None:
    class Both(ValueError, TypeError):
        pass

    class Lookup(KeyError):
        pass

    for error, builtins in (
        (Both("x"), (ValueError, TypeError)),
        (Lookup("k"), (KeyError, LookupError)),
        (RuntimeError("r"), (RuntimeError,)),
        (OSError("o"), ()),
    ):
        typed = MI._as_multiinit(error, "message")
        assert isinstance(typed, mi.MultiinitError) and all(isinstance(typed, b) for b in builtins), error


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_constant_minus_zero_fills_minus_zero_where_keras_may_not(dtype) -> None:
    # Keras' Constant casts the Python scalar, and TensorFlow's cache of converted scalars
    # takes -0.0 for 0.0: after Keras' own Constant(0.0) in float64, Keras' Constant(-0.0)
    # fills +0.0 on TensorFlow (docs/known-differences.md). The drop-in fills its spec's value.
    KI.Constant(0.0)((2,), dtype="float64")
    out = MI.Constant(-0.0)((3, 4), dtype=dtype)
    values = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")))
    assert values.shape == (3, 4) and np.all(values == 0) and np.all(np.signbit(values))
