"""Property-based tests of ``mi.apply`` on Keras models (issue 15.3/15.4): random small models
(with tied variables), random rule sets selecting each parameter by any of its paths, and exactly
one injected fault -- a rule that selects nothing, a spec that does not fit its parameter, a user
law that raises or lies (wrong shape, NaN, inf, strings), a variable that cannot take the law
(an integer or complex variable under a random law), a call inside a ``keras.StatelessScope`` --
raise a ``MultiinitError`` and leave every variable (parameters, statistics, seed states)
bit-identical. Without the fault the same rules succeed, and the same seed gives the same values.

Models are built once per architecture and reused (few widths, so the architectures repeat):
a faulty apply must not change them, which each example checks against a snapshot taken just
before it. Profiles: ``HYPOTHESIS_PROFILE=ci``
(the default: derandomized, 200 examples, no deadline) or ``long``.
"""

from __future__ import annotations

import contextlib
import os

import keras
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import multiinit as mi
import multiinit.keras as mik

# The suite's profiles live in tests/conftest.py; never random in CI (see test_torch_properties).
if not settings.default.derandomize and os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
    settings.register_profile(
        "multiinit-ci", derandomize=True, database=None, max_examples=200, deadline=None, print_blob=False
    )
    settings.load_profile("multiinit-ci")

L = keras.layers
BACKEND = keras.backend.backend()
#: Keras on torch cannot hold a trainable integer variable; complex works everywhere.
ODD_DTYPES = ("complex64",) + (("int32",) if BACKEND != "torch" else ())


# --------------------------------------------------------------------------- models


class TiedHead(L.Layer):
    """Holds the embedding's table a second time: one variable, two paths."""

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def build(self, input_shape):
        self.table = self.embedding.embeddings

    def call(self, x):
        return keras.ops.matmul(x, keras.ops.transpose(self.table))


class Odd(L.Layer):
    """A layer with a kernel and a variable of a non-float dtype."""

    def __init__(self, dtype_name: str, **kwargs):
        super().__init__(**kwargs)
        self.dtype_name = dtype_name

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), 3), name="kernel")
        self.count = self.add_weight(shape=(3,), dtype=self.dtype_name, initializer="zeros", name="count")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel)


def _block(kind: str, width: int, index: int):
    name = f"{kind}{index}"
    if kind == "dense":
        return L.Dense(width, name=name)
    if kind == "conv":
        return L.Conv1D(width, 3, padding="same", name=name)
    if kind == "depthwise":
        return L.DepthwiseConv1D(3, depth_multiplier=2, padding="same", name=name)
    if kind == "convt":
        return L.Conv1DTranspose(width, 3, padding="same", name=name)
    if kind == "batchnorm":
        return L.BatchNormalization(name=name)
    if kind == "layernorm":
        return L.LayerNormalization(name=name)
    if kind == "dropout":
        return L.Dropout(0.1, seed=index, name=name)
    raise AssertionError(kind)


_KINDS = ("dense", "conv", "depthwise", "convt", "batchnorm", "layernorm", "dropout")
architectures = st.tuples(
    st.lists(st.tuples(st.sampled_from(_KINDS), st.sampled_from((2, 4))), min_size=1, max_size=3).map(tuple),
    st.booleans(),  # a tied embedding and head
    st.sampled_from((None, "attention", *ODD_DTYPES)),  # an extra layer
)
_MODELS: dict = {}


def _model(architecture) -> keras.Model:
    """A functional model for ``architecture`` (built once; faults leave it unchanged)."""
    if architecture in _MODELS:
        return _MODELS[architecture]
    blocks, tied, extra = architecture
    keras.utils.set_random_seed(0)
    features = keras.Input((5, 4), name="x")
    x = features
    for index, (kind, width) in enumerate(blocks):
        x = _block(kind, width, index)(x)
    outputs = [L.Dense(2, name="out")(x)]
    inputs = [features]
    if tied:
        tokens = keras.Input((3,), dtype="int32", name="tokens")
        embedding = L.Embedding(7, 4, name="emb")
        outputs.append(TiedHead(embedding, name="head")(embedding(tokens)))
        inputs.append(tokens)
    if extra == "attention":
        outputs.append(L.MultiHeadAttention(2, 3, name="mha")(features, features))
    elif extra is not None:
        outputs.append(Odd(extra, name="odd")(features))
    model = keras.Model(inputs, outputs, name="m")
    # Statistics away from their defaults, so a reset would show.
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.moving_mean.assign(keras.ops.full(layer.moving_mean.shape, 0.5))
            layer.moving_variance.assign(keras.ops.full(layer.moving_variance.shape, 1.5))
    _MODELS[architecture] = model
    return model


def _snapshot(model) -> list:
    return [(v.path, id(v), np.array(keras.ops.convert_to_numpy(v.value))) for v in model.variables]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x[:2] == y[:2] and x[2].dtype == y[2].dtype and np.array_equal(x[2], y[2], equal_nan=True)
        for x, y in zip(a, b, strict=True)
    )


# --------------------------------------------------------------------------- specs


def _is_float(param) -> bool:
    return param.dtype in ("float16", "bfloat16", "float32", "float64")


def _fitting(param) -> list:
    """Specs that can fill ``param``."""
    if not _is_float(param):
        return [mi.zeros(), mi.constant(2)]
    specs = [
        mi.zeros(),
        mi.constant(0.3),
        mi.uniform(-1, 1),
        mi.normal(std=0.5),
        mi.truncated_normal(),
        mi.mixture([(0.5, mi.zeros()), (0.5, mi.normal())]),
        mi.custom(_good, name="t.kprops.good"),
    ]
    shape = param.logical_shape
    if len(shape) - param.view.batch >= 2 or param.fans is not None:
        specs += [mi.he_normal(), mi.glorot_uniform(), mi.variance_scaling(1 / 3, "fan_in", "uniform")]
    if len(shape) >= 2:
        specs.append(mi.orthogonal())
    if len(shape) == 2:
        specs += [mi.eye(), mi.sparse(0.5)]
    return specs


def _misfit(param):
    return mi.eye() if len(param.logical_shape) != 2 else mi.dirac()


def _good(rng, shape, dtype):
    return rng.uniform(-1, 1, shape).astype(dtype)


def _raises(rng, shape, dtype):
    raise ZeroDivisionError("the law divided by zero")


def _wrong_shape(rng, shape, dtype):
    return np.zeros((*shape, 2), dtype=dtype)


def _nan(rng, shape, dtype):
    out = rng.uniform(-1, 1, shape).astype(dtype)
    out.reshape(-1)[-1] = np.nan
    return out


def _inf(rng, shape, dtype):
    return np.full(shape, np.inf, dtype=dtype)


def _strings(rng, shape, dtype):
    return np.full(shape, "1.0")


_LIARS = {"raises": _raises, "wrong shape": _wrong_shape, "nan": _nan, "inf": _inf, "strings": _strings}
FAULTS = ("no match", "misfit", "stateless scope", "odd dtype", *(f"law {k}" for k in _LIARS))


@st.composite
def cases(draw):
    architecture = draw(architectures)
    model = _model(architecture)
    params = mik.params_of(model)
    chosen = draw(
        st.lists(st.sampled_from(range(len(params))), min_size=1, max_size=len(params), unique=True)
    )
    rules = []
    for i in chosen:
        param = params[i]
        rules.append((draw(st.sampled_from(param.paths)), draw(st.sampled_from(_fitting(param)))))
    if draw(st.booleans()):  # a broad rule after the specific ones (first match wins)
        broad = draw(
            st.sampled_from(
                [
                    mi.select(role="bias", optional=True),
                    mi.select(kind="norm", optional=True),
                    mi.select(kind="attention", optional=True),
                    mi.select(path="*/bias", optional=True),
                ]
            )
        )
        rules.append((broad, mi.zeros()))
    faults = [f for f in FAULTS if f != "odd dtype" or any(not _is_float(p) for p in params)]
    fault = draw(st.sampled_from(faults))
    floats = [params[i] for i in chosen if _is_float(params[i])] or [p for p in params if _is_float(p)]
    target = draw(st.sampled_from(floats))
    seed = draw(st.integers(0, 2**31))
    portable = draw(st.booleans())
    return model, params, rules, fault, target, seed, portable


def _inject(params, rules, fault, target):
    """The rules with ``fault`` in them, and the text the error must hold."""
    rules = list(rules)
    if fault == "no match":
        rules.insert(len(rules) // 2, ("nowhere/*", mi.zeros()))
        return rules, "nowhere"
    if fault == "misfit":
        rules.insert(0, (target.paths[-1], _misfit(target)))
        return rules, target.path
    if fault == "odd dtype":
        odd = next(p for p in params if not _is_float(p))
        rules.insert(0, (odd.paths[-1], mi.normal()))
        return rules, odd.path
    if fault == "stateless scope":
        return rules, "StatelessScope"
    name = fault[4:].replace(" ", "_")
    law = mi.custom(_LIARS[fault[4:]], name=f"t.kprops.{name}")
    rules.insert(0, (target.paths[-1], law if name != "nan" else mi.mixture([(0.5, law), (0.5, mi.zeros())])))
    return rules, f"t.kprops.{name}"


@given(cases())
def test_one_fault_leaves_every_variable_bit_identical(case) -> None:
    model, params, rules, fault, target, seed, portable = case
    rules, text = _inject(params, rules, fault, target)
    before = _snapshot(model)
    with (
        pytest.raises(mi.MultiinitError) as info,
        keras.StatelessScope() if fault == "stateless scope" else contextlib.nullcontext(),
    ):
        mi.apply(model, rules, seed=seed, portable=portable)
    assert text in str(info.value), f"{fault}: {info.value}"
    assert _same(_snapshot(model), before), fault


@settings(max_examples=max(20, settings.default.max_examples // 4))
@given(cases())
def test_without_the_fault_the_same_rules_succeed(case) -> None:
    model, _, rules, _, _, seed, portable = case
    mi.apply(model, rules, seed=seed, portable=portable)
    first = _snapshot(model)
    mi.apply(model, rules, seed=seed, portable=portable)  # the same seed, the same values
    assert _same(_snapshot(model), first)
