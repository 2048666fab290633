"""Property-based fault injection for mi.apply on Gluon blocks (issue 15.4 for MXNet): random small
blocks, random valid rule sets, and exactly one injected fault -- a rule that selects nothing, a
shape the law cannot fill, a user law that raises or lies (wrong shape, NaN, infinity, text), or
a parameter that cannot be set (never initialized, read-only, an integer dtype for a random law)
-- always give the fault's multiinit error, naming its culprit, and leave every array of the
block bit-identical. The same rules without the fault fill the block.

Profiles come from tests/conftest.py (``HYPOTHESIS_PROFILE``: derandomized "ci" by default, "long"
for many fresh examples); this file asks for at least 300 examples.
"""

from __future__ import annotations

import math
import re

import mxnet as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from mxnet import gluon
from mxnet.gluon import nn

import multiinit as mi
from multiinit.errors import LawError
from multiinit.mxnet import params_of

EXAMPLES = max(300, settings.default.max_examples)


class Table(gluon.Block):
    """A user block holding an integer lookup table next to a float scale."""

    def __init__(self, rows: int, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.table = self.params.get("table", shape=(rows, 3), dtype="int32", init=mx.init.Zero())
            self.scale = self.params.get("scale", shape=(rows,))


def _layer(kind: str, a: int, b: int):
    if kind == "dense":
        return nn.Dense(a, in_units=b)
    if kind == "conv":
        return nn.Conv2D(a, 3, in_channels=b)
    if kind == "conv_transpose":
        return nn.Conv2DTranspose(2 * a, 3, in_channels=2 * b, groups=2)
    if kind == "embedding":
        return nn.Embedding(a, b)
    if kind == "batchnorm":
        return nn.BatchNorm(in_channels=a)
    if kind == "layernorm":
        return nn.LayerNorm(in_channels=a)
    return Table(a)


LAYERS = st.lists(
    st.tuples(
        st.sampled_from(["dense", "conv", "conv_transpose", "embedding", "batchnorm", "layernorm", "table"]),
        st.integers(1, 9),
        st.integers(1, 9),
    ),
    min_size=1,
    max_size=5,
)

#: Laws any float parameter of any shape can take (no fans, no dimension requirement).
ANY_SHAPE = [
    mi.normal(0.1, 0.5),
    mi.uniform(-2, 3),
    mi.constant(1.5),
    mi.zeros(),
    mi.truncated_normal(std=0.2),
    mi.trunc_normal(std=0.02),
    mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
    mi.custom(lambda rng, shape, dtype: rng.random(shape), name="fuzz.fine"),
]
#: Laws for a parameter of two or more dimensions.
MATRIX = [mi.xavier_uniform(), mi.he_normal(), mi.orthogonal(), mi.kaiming_uniform(a=math.sqrt(5))]


def build(layers) -> nn.Sequential:
    net = nn.Sequential()
    net.add(*(_layer(*layer) for layer in layers))
    net.initialize()
    rng = np.random.default_rng(len(layers))
    for block in net._children.values():
        if isinstance(block, nn.BatchNorm):  # running statistics that differ from their init
            for name in ("running_mean", "running_var"):
                p = getattr(block, name)
                p.set_data(mx.nd.array(rng.uniform(0.5, 2.0, p.shape)))
    return net


def snapshot(net) -> dict[str, list[bytes]]:
    return {
        path: [a.asnumpy().tobytes() for a in p._data]
        for path, p in net._collect_params_with_prefix().items()
        if p._data is not None
    }


def _lies(kind: str):
    def law(rng, shape, dtype):
        if kind == "raises":
            raise RuntimeError("fuzz law broke")
        if kind == "shape":
            return np.zeros((*shape, 2))
        if kind == "nan":
            out = rng.random(shape)
            out.reshape(-1)[-1] = np.nan
            return out
        if kind == "inf":
            return np.full(shape, -np.inf)
        return np.full(shape, "w")

    return mi.custom(law, name=f"fuzz.{kind}")


FAULTS = [
    "no match",
    "misfit",
    "raises",
    "shape",
    "nan",
    "inf",
    "text",
    "read-only",
    "never initialized",
    "integer dtype",
]


@st.composite
def cases(draw):
    layers = draw(LAYERS)
    net = build(layers)
    params = params_of(net)
    floats = [p for p in params if p.dtype == "float32"]
    rules = []
    for p in draw(st.lists(st.sampled_from(floats), max_size=6, unique_by=lambda p: p.path)):
        pool = ANY_SHAPE + (MATRIX if len(p.logical_shape) >= 2 else [])
        rules.append((p.path, draw(st.sampled_from(pool))))
    if any(p.role == "bias" for p in params) and draw(st.booleans()):
        rules.append(("*.bias", mi.normal(std=0.3)))
    fault = draw(st.sampled_from(FAULTS))
    tables = [p for p in params if p.dtype == "int32"]
    if fault == "integer dtype" and not tables:
        fault = "raises"
    target = draw(st.sampled_from(tables if fault == "integer dtype" else floats))
    seed = draw(st.integers(0, 2**31 - 1))
    portable = draw(st.booleans())
    return net, layers, rules, fault, target, seed, portable


def _inject(net, rules, fault: str, target):
    """The rules with ``fault`` put first (it wins its parameter), and the block damaged if the
    fault is a parameter's; returns (rules, error class, the culprit the message must name)."""
    path = target.path
    if fault == "no match":
        return [("nothing.here", mi.ones()), *rules], mi.RuleError, "nothing.here"
    if fault == "misfit":
        spec = mi.eye() if len(target.logical_shape) != 2 else mi.dirac()
        if len(target.logical_shape) == 1 and target.fans is None:
            spec = mi.xavier_uniform()  # a norm's vector has no weight to take fans from
        return [(path, spec), *rules], mi.ShapeError, path
    if fault in ("raises", "shape", "nan", "inf", "text"):
        return [(path, _lies(fault)), *rules], LawError, path
    if fault == "integer dtype":
        return (
            [(path, mi.he_uniform() if len(target.logical_shape) >= 2 else mi.normal()), *rules],
            mi.SpecError,
            path,
        )
    if fault == "read-only":
        target.handle._data[0].writable = False
        return [(path, mi.ones()), *rules], mi.RuleError, path
    # never initialized: a layer added after initialize() has no arrays.
    net.add(nn.Dense(3, in_units=2))
    late = f"{len(net._children) - 1}.weight"
    return [(late, mi.normal()), *rules], mi.RuleError, late


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_one_fault_leaves_every_array_bit_identical(case) -> None:
    net, layers, rules, fault, target, seed, portable = case
    faulty, error, culprit = _inject(net, rules, fault, target)
    before = snapshot(net)
    with pytest.raises(error, match=re.escape(repr(culprit))):
        mi.apply(net, faulty, seed=seed, portable=portable)
    assert snapshot(net) == before
    # Without the fault the same rules fill a fresh copy of the block: the error was the fault's.
    if rules:
        mi.apply(build(layers), rules, seed=seed, portable=portable)
