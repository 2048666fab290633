"""Property-based tests of ``mi.apply`` on Flax (issue 15.4): random small linen variable trees
and nnx modules, random rule sets and exactly one injected fault -- a rule that selects
nothing, a spec that does not fit its parameter, a user law that raises or lies (wrong shape,
NaN, inf, strings), a leaf that cannot be written (a deleted array, an integer dtype, a float16
leaf a bounded law overflows, a sharding that does not fit, an abstract parameter no rule
fills) -- raise a ``MultiinitError`` and leave every leaf and variable identical (the same
objects, the same values, nothing deleted), with or without ``donate=True``. Without the
fault the same rules succeed, twice the same.

Profiles: ``HYPOTHESIS_PROFILE=ci`` (the default: derandomized, 200 examples, no deadline)
or ``long`` (fresh random examples, many more).
"""

from __future__ import annotations

import os
from collections import Counter

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings, strategies as st
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import multiinit as mi
from multiinit import flax as mif

# The suite's profiles live in tests/conftest.py ("ci": derandomized, 200 examples; "long").
if not settings.default.derandomize and os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
    settings.register_profile(
        "multiinit-ci", derandomize=True, database=None, max_examples=200, deadline=None, print_blob=False
    )
    settings.load_profile("multiinit-ci")


# --------------------------------------------------------------------------- models

_KINDS = ("dense", "conv", "convt", "general", "layernorm", "batchnorm", "embed")
_LINEN = {
    "dense": "Dense",
    "conv": "Conv",
    "convt": "ConvTranspose",
    "general": "DenseGeneral",
    "layernorm": "LayerNorm",
    "batchnorm": "BatchNorm",
    "embed": "Embed",
}

layer_lists = st.lists(
    st.tuples(st.sampled_from(_KINDS), st.integers(2, 4), st.integers(2, 4), st.booleans()),
    min_size=1,
    max_size=4,
)


def linen_tree(layers: list) -> dict:
    """The variables tree Flax's ``init`` gives a linen model of ``layers`` (names and shapes as
    Flax makes them: ``test_the_linen_builder_is_what_flax_init_gives`` checks it), filled
    with NumPy values."""
    rng = np.random.default_rng(0)
    params, batch_stats = {}, {}
    counts: Counter = Counter()
    for kind, a, b, bias in layers:
        name = f"{_LINEN[kind]}_{counts[kind]}"
        counts[kind] += 1
        shapes = {
            "dense": {"kernel": (a, b)},
            "conv": {"kernel": (3, a, b)},
            "convt": {"kernel": (3, a, b)},
            "general": {"kernel": (a, 2, b)},
            "layernorm": {"scale": (a,), "bias": (a,)},
            "batchnorm": {"scale": (a,), "bias": (a,)},
            "embed": {"embedding": (a + 3, b)},
        }[kind]
        if bias and kind in ("dense", "conv", "convt", "general"):
            shapes["bias"] = (2, b) if kind == "general" else (b,)
        params[name] = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}
        if kind == "batchnorm":
            batch_stats[name] = {
                "mean": jnp.asarray(rng.standard_normal(a), jnp.float32),
                "var": jnp.asarray(rng.uniform(0.5, 1.5, a), jnp.float32),
            }
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


class _Linen(nn.Module):
    layers: tuple

    @nn.compact
    def __call__(self, *inputs):
        outs = []
        for (kind, a, b, bias), x in zip(self.layers, inputs, strict=True):
            layer = {
                "dense": lambda: nn.Dense(b, use_bias=bias),
                "conv": lambda: nn.Conv(b, (3,), use_bias=bias),
                "convt": lambda: nn.ConvTranspose(b, (3,), use_bias=bias),
                "general": lambda: nn.DenseGeneral((2, b), use_bias=bias),
                "layernorm": nn.LayerNorm,
                "batchnorm": lambda: nn.BatchNorm(use_running_average=True),
                "embed": lambda: nn.Embed(a + 3, b),
            }[kind]()
            outs.append(layer(x))
        return outs


def _inputs(layers: list) -> list:
    return [
        jnp.zeros((1,), jnp.int32)
        if kind == "embed"
        else jnp.ones((1, 5, a) if kind in ("conv", "convt") else (1, a))
        for kind, a, _, _ in layers
    ]


def test_the_linen_builder_is_what_flax_init_gives() -> None:
    layers = [
        ("dense", 2, 3, True),
        ("conv", 3, 4, False),
        ("convt", 2, 2, True),
        ("general", 4, 3, True),
        ("layernorm", 3, 2, True),
        ("batchnorm", 4, 2, False),
        ("embed", 2, 4, True),
        ("dense", 4, 2, False),
        ("conv", 2, 2, True),
        ("convt", 3, 3, False),
        ("general", 2, 2, False),
    ]
    flax_tree = jax.eval_shape(_Linen(tuple(layers)).init, jax.random.key(0), *_inputs(layers))

    def shapes(tree):
        return {
            jax.tree_util.keystr(p): (leaf.shape, leaf.dtype)
            for p, leaf in jax.tree_util.tree_leaves_with_path(tree)
        }

    assert shapes(linen_tree(layers)) == shapes(flax_tree)


class _Tied(nnx.Module):
    def __init__(self, body: nnx.Module) -> None:
        self.body = body
        self.again = body.layers[0]  # the first layer under a second path


_BUILT: dict = {}


def nnx_model(layers: list, tied: bool) -> nnx.Module:
    """An nnx model of ``layers`` (a fresh copy of one built once: building runs Flax's
    initializers, copying does not). ``nnx.clone`` shares the arrays, which a donating apply
    would delete: the copy gets its own."""
    key = (tuple(layers), tied)
    if key not in _BUILT:
        _BUILT[key] = _build(layers, tied)
    model = nnx.clone(_BUILT[key])
    for _, variable in nnx.iter_graph(model):
        if isinstance(variable, (nnx.Param, nnx.BatchStat)):
            variable.set_value(jnp.copy(variable.get_value()))
    return model


def _build(layers: list, tied: bool) -> nnx.Module:
    # Flax's random initializers compile a few programs per new shape; zeros and a NumPy fill
    # build the same module faster.
    rngs = nnx.Rngs(0)
    zero = nnx.initializers.zeros_init()
    made = []
    for kind, a, b, bias in layers:
        made.append(
            {
                "dense": lambda: nnx.Linear(a, b, use_bias=bias, kernel_init=zero, rngs=rngs),
                "conv": lambda: nnx.Conv(a, b, (3,), use_bias=bias, kernel_init=zero, rngs=rngs),
                "convt": lambda: nnx.ConvTranspose(a, b, (3,), use_bias=bias, kernel_init=zero, rngs=rngs),
                "general": lambda: nnx.LinearGeneral(a, (2, b), use_bias=bias, kernel_init=zero, rngs=rngs),
                "layernorm": lambda: nnx.LayerNorm(a, rngs=rngs),
                "batchnorm": lambda: nnx.BatchNorm(a, rngs=rngs),
                "embed": lambda: nnx.Embed(a + 3, b, embedding_init=zero, rngs=rngs),
            }[kind]()
        )
    body = nnx.Sequential(*made)
    rng = np.random.default_rng(0)
    for _, variable in nnx.iter_graph(body):
        if isinstance(variable, (nnx.Param, nnx.BatchStat)):
            variable.set_value(jnp.asarray(rng.standard_normal(variable.get_value().shape), jnp.float32))
    return _Tied(body) if tied else body


# --------------------------------------------------------------------------- specs that fit


def _fitting(param) -> list:
    specs = [
        mi.zeros(),
        mi.constant(0.3),
        mi.uniform(-1, 1),
        mi.normal(std=0.5),
        mi.truncated_normal(),
        mi.mixture([(0.5, mi.zeros()), (0.5, mi.normal())]),
        mi.custom(_good, name="t.fprops.good"),
    ]
    shape = param.logical_shape
    if len(shape) >= 2 or param.fans is not None:
        specs += [mi.he_normal(), mi.xavier_uniform(), mi.variance_scaling(1 / 3, "fan_in", "uniform")]
    if len(shape) >= 2:
        specs.append(mi.orthogonal())
    if len(shape) == 2:
        specs += [mi.eye(), mi.sparse(0.5)]
    if len(shape) in (3, 4, 5):
        specs.append(mi.dirac())
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
_LEAVES = ("deleted", "integer", "float16 overflow", "sharding", "abstract")
FAULTS = ("no match", "misfit", *(f"law {k}" for k in _LIARS), *(f"leaf {k}" for k in _LEAVES))


# --------------------------------------------------------------------------- snapshots


def _linen_snapshot(tree) -> list:
    out = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        deleted = isinstance(leaf, jax.Array) and leaf.is_deleted()
        values = None if deleted or isinstance(leaf, jax.ShapeDtypeStruct) else np.array(leaf)
        out.append((jax.tree_util.keystr(path), id(leaf), deleted, values))
    return out


def _nnx_snapshot(model) -> list:
    out = []
    for path, v in nnx.iter_graph(model):
        if isinstance(v, nnx.Variable):
            value = v.get_value()
            deleted = isinstance(value, jax.Array) and value.is_deleted()
            values = None if deleted or not isinstance(value, (jax.Array, np.ndarray)) else np.array(value)
            out.append((path, id(v), id(value), deleted, values))
    return out


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x[:-1] == y[:-1]
        and ((x[-1] is None) == (y[-1] is None))
        and (x[-1] is None or (x[-1].dtype == y[-1].dtype and np.array_equal(x[-1], y[-1], equal_nan=True)))
        for x, y in zip(a, b, strict=True)
    )


# --------------------------------------------------------------------------- cases


@st.composite
def cases(draw, framework: str):
    layers = draw(layer_lists)
    model = linen_tree(layers) if framework == "linen" else nnx_model(layers, draw(st.booleans()))
    params = mif.params_of(model)
    chosen = draw(
        st.lists(st.sampled_from(range(len(params))), min_size=1, max_size=len(params), unique=True)
    )
    rules = []
    for i in chosen:
        param = params[i]
        rules.append((draw(st.sampled_from(param.paths)), draw(st.sampled_from(_fitting(param)))))
    if draw(st.booleans()):
        broad = draw(
            st.sampled_from(
                [
                    mi.select(role="bias", optional=True),
                    mi.select(kind="norm", optional=True),
                    mi.select(path="*/bias", optional=True),
                ]
            )
        )
        rules.append((broad, mi.zeros()))
    fault = draw(st.sampled_from(FAULTS))
    target = params[draw(st.sampled_from(chosen))]
    return (
        model,
        params,
        rules,
        fault,
        target,
        draw(st.integers(0, 2**40)),
        draw(st.booleans()),
        draw(st.booleans()),
    )


def _replace(model, target, make) -> None:
    """Put ``make(old_value)`` where ``target`` lives (every path of it)."""
    slot = target.handle
    if slot.variable is not None:
        slot.variable.set_value(make(slot.variable.get_value()))
        return
    new = make(slot.value)
    for path in slot.paths:
        node = model
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = new


def _deleted(old):
    new = jnp.array(old)
    new.delete()
    return new


def _inject(model, params, rules, fault, target):
    """The rules (and the model) with ``fault`` in them, the ``apply`` options it needs, and
    the text the error must hold."""
    rules = list(rules)
    if fault == "no match":
        rules.insert(len(rules) // 2, ("nowhere/*", mi.zeros()))
        return rules, {}, "nowhere"
    if fault == "misfit":
        rules.insert(0, (target.path, _misfit(target)))
        return rules, {}, target.path
    if fault.startswith("law "):
        name = fault[4:].replace(" ", "_")
        rules.insert(0, (target.path, mi.custom(_LIARS[fault[4:]], name=f"t.fprops.{name}")))
        return rules, {}, f"t.fprops.{name}"
    leaf = fault[5:]
    rules.insert(0, (target.path, mi.normal()))
    if leaf == "deleted":
        _replace(model, target, _deleted)
    elif leaf == "integer":
        _replace(model, target, lambda old: jnp.ones(old.shape, jnp.int32))
    elif leaf == "float16 overflow":
        _replace(model, target, lambda old: jnp.asarray(old, jnp.float16))
        rules[0] = (target.path, mi.uniform(-1e6, 1e6))
    elif leaf == "sharding":
        mesh = Mesh(np.array(jax.devices()[:1]), ("x",))
        return rules, {"shardings": NamedSharding(mesh, P(*[None] * 6))}, "cannot be sharded"
    elif leaf == "abstract":
        if not isinstance(model, dict):  # an nnx module: a variable holding a ShapeDtypeStruct
            _replace(model, target, lambda old: jax.ShapeDtypeStruct(old.shape, old.dtype))
        else:
            _replace(model, target, lambda old: jax.ShapeDtypeStruct(old.shape, old.dtype))
        rules[0] = (target.path, None)  # the rule leaves it alone: nothing would fill it
        return rules, {}, target.path
    return rules, {}, target.path


@pytest.mark.parametrize("framework", ["linen", "nnx"])
@given(data=st.data())
def test_one_fault_leaves_every_leaf_and_variable_identical(framework: str, data) -> None:
    model, params, rules, fault, target, seed, portable, donate = data.draw(cases(framework))
    rules, options, text = _inject(model, params, rules, fault, target)
    snapshot = _linen_snapshot if framework == "linen" else _nnx_snapshot
    before = snapshot(model)
    with pytest.raises(mi.MultiinitError) as info:
        mi.apply(model, rules, seed=seed, portable=portable, donate=donate, **options)
    assert text in str(info.value), f"{fault}: {info.value}"
    assert _same(snapshot(model), before), fault


@pytest.mark.parametrize("framework", ["linen", "nnx"])
@settings(max_examples=max(10, settings.default.max_examples // 8))
@given(data=st.data())
def test_without_the_fault_the_same_rules_succeed(framework: str, data) -> None:
    model, _, rules, _, _, seed, portable, donate = data.draw(cases(framework))
    first = mi.apply(model, rules, seed=seed, portable=portable, donate=donate)
    values = [
        np.array(v) for v in jax.tree.leaves(first if framework == "linen" else nnx.state(first, nnx.Param))
    ]
    again = mi.apply(first, rules, seed=seed, portable=portable, donate=donate)
    assert all(
        np.array_equal(a, np.array(b), equal_nan=True)
        for a, b in zip(
            values,
            jax.tree.leaves(again if framework == "linen" else nnx.state(again, nnx.Param)),
            strict=True,
        )
    )
