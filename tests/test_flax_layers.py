"""The Flax walkers and the layer registry (issue 18), Flax's multi-axis kernels (issue 14.2)
and tied parameters (issue 15.3): ``mi.plan`` on linen trees and nnx modules flags layers
multiinit does not know and uses the ones registered by class; DenseGeneral, LinearGeneral
and attention kernels get exactly the fans Flax's own ``kernel_init`` is handed; tied
parameters are selectable by any of their paths."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import multiinit as mi
from multiinit import flax as mif

KEY = jax.random.key(0)


# --------------------------------------------------------------------------- unknown and registered layers


class Mystery(nn.Module):
    """A user's linen layer: a kernel stored (out, in), which the default layout misreads."""

    features: int

    @nn.compact
    def __call__(self, x):
        w = self.param("kernel", nn.initializers.lecun_normal(), (self.features, x.shape[-1]))
        return x @ w.T + self.param("offset", nn.initializers.zeros, (self.features,))


class Model(nn.Module):
    @nn.compact
    def __call__(self, x):
        return Mystery(48)(nn.Dense(16)(x))


def test_plan_on_a_linen_tree_flags_an_unknown_layer() -> None:
    tree = jax.eval_shape(Model().init, KEY, jnp.ones((1, 8)))
    plan = mi.plan(tree, {"kernel": mi.he_normal(), "bias": mi.zeros(), "offset": mi.zeros()})
    rows = {row.path: row for row in plan}
    dense, mystery = rows["params/Dense_0/kernel"], rows["params/Mystery_0/kernel"]
    assert (dense.kind, dense.known, dense.fans, dense.guessed) == ("dense", True, (8, 16), False)
    # (48, 16) read as Flax's (in, out): 48 -> 16, and flagged as a guess
    assert (mystery.kind, mystery.known, mystery.fans, mystery.guessed) == ("dense", False, (48, 16), True)
    assert plan.guesses == [mystery]
    assert "register_layer" in str(plan)


@pytest.mark.parametrize("by", ["class", "name"])
def test_a_linen_layer_registered_by_class_or_name_gets_its_kind_and_layout(by: str) -> None:
    tree = jax.eval_shape(Model().init, KEY, jnp.ones((1, 8)))
    target = Mystery if by == "class" else f"{Mystery.__module__}.{Mystery.__qualname__}"
    with mi.layers.isolated():
        mi.register_layer(target, kind="dense", layout={"kernel": "out,in"})
        plan = mi.plan(tree, {"kernel": mi.he_uniform(), "offset": mi.zeros()})
        rows = {row.path: row for row in plan}
        mystery = rows["params/Mystery_0/kernel"]
        assert (mystery.kind, mystery.known, mystery.fans, mystery.guessed) == (
            "dense",
            True,
            (16, 48),
            False,
        )
        assert rows["params/Mystery_0/offset"].fans == (16, 48)  # a bias: its kernel's fans
        new = mi.apply(tree, {"kernel": mi.he_uniform(), "bias": mi.zeros(), "offset": mi.zeros()}, seed=0)
        bound = math.sqrt(6 / 16)
        assert 0.97 * bound < float(np.abs(np.asarray(new["params"]["Mystery_0"]["kernel"])).max()) < bound
    assert mi.plan(tree, {"kernel": mi.he_uniform()}).guesses  # forgotten when the block ends


class Gate(nnx.Module):
    """A user's nnx layer: per-head weights (heads, in, out)."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.w = nnx.Param(jax.random.normal(rngs.params(), (4, 16, 8)))
        self.b = nnx.Param(jnp.zeros((4, 8)))


class Tower(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.gate = Gate(rngs)
        self.head = nnx.Linear(8, 2, rngs=rngs)


def test_an_nnx_layer_registered_by_class() -> None:
    model = Tower(nnx.Rngs(0))
    plan = mi.plan(model, {"w": mi.glorot_uniform(), "kernel": mi.glorot_uniform()})
    rows = {row.path: row for row in plan}
    assert (rows["gate/w"].kind, rows["gate/w"].known, rows["gate/w"].guessed) == ("unknown", False, True)
    with mi.layers.isolated():
        mi.register_layer(
            Gate, kind="dense", layout={"w": "batch,in,out", "b": "batch,out"}, fans_from={"b": "w"}
        )
        rows = {row.path: row for row in mi.plan(model, {"w": mi.glorot_uniform(), "b": mi.he_uniform()})}
        assert (rows["gate/w"].kind, rows["gate/w"].known, rows["gate/w"].fans) == ("dense", True, (16, 8))
        assert (rows["gate/b"].fans, rows["gate/b"].guessed) == ((16, 8), False)
        mi.apply(model, {Gate: mi.glorot_uniform(), "kernel": mi.zeros()}, seed=0)
        bound = math.sqrt(6 / 24)
        assert 0.95 * bound < float(np.abs(np.asarray(model.gate.w.get_value())).max()) < bound
        assert float(np.abs(np.asarray(model.gate.b.get_value())).max()) < bound  # fans of w, not of (4, 8)
        assert mi.plan(model, {mi.select(kind="dense", role="w"): mi.zeros()})[0].rule == 0


# ---------------------------------------------------------------- multi-axis kernels: Flax's own fans


def recording(store: dict, name: str):
    """A kernel_init that records the shape Flax hands it (and draws zeros)."""

    def init(key, shape, dtype=jnp.float32):
        store[name] = tuple(int(d) for d in shape)
        store.setdefault(f"{name} calls", set()).add(store[name])
        return jnp.zeros(shape, dtype)

    return init


def flax_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """The fans jax.nn.initializers.variance_scaling computes for ``shape`` (in_axis=-2, out_axis=-1)."""
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def linen_cases(seen: dict):
    class Blocks(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = nn.DenseGeneral((4, 6), kernel_init=recording(seen, "DenseGeneral_0"))(x)
            y = nn.DenseGeneral(5, axis=(-2, -1), kernel_init=recording(seen, "DenseGeneral_1"))(y)
            z = nn.DenseGeneral(
                (3, 2),
                axis=-1,
                batch_dims=(0,),
                kernel_init=recording(seen, "DenseGeneral_2"),
                use_bias=False,
            )(x)
            a = nn.MultiHeadDotProductAttention(
                num_heads=4, qkv_features=32, out_features=12, kernel_init=recording(seen, "attention")
            )(x[None])
            return y, z, a

    return Blocks(), (jnp.ones((2, 16)),)


def test_linen_general_and_attention_kernels_get_the_fans_flax_hands_their_init() -> None:
    seen: dict = {}
    model, inputs = linen_cases(seen)
    tree = model.init(KEY, *inputs)  # runs the recording initializers
    assert seen["DenseGeneral_0"] == (16, 24) and seen["DenseGeneral_1"] == (24, 5)
    assert seen["DenseGeneral_2"] == (2 * 16, 6)  # Flax counts batch dims as in
    told = mif.modules(model, *inputs)
    for layers in (None, told):
        params = {p.path: p for p in mif.params_of(tree, layers=layers)}
        for name in ("DenseGeneral_0", "DenseGeneral_1"):
            p = params[f"params/{name}/kernel"]
            assert (p.kind, p.known, p.view.fans) == ("dense", True, flax_fans(seen[name])), (name, layers)
            assert params[f"params/{name}/bias"].fans == flax_fans(seen[name])
        for proj in ("query", "key", "value"):
            p = params[f"params/MultiHeadDotProductAttention_0/{proj}/kernel"]
            assert p.view.native_shape == (16, 4, 8)
            assert (p.kind, p.known, p.view.fans) == ("attention", True, (16, 32)), (proj, layers)
            assert params[f"params/MultiHeadDotProductAttention_0/{proj}/bias"].fans == (16, 32)
        out = params["params/MultiHeadDotProductAttention_0/out/kernel"]
        assert out.view.native_shape == (4, 8, 12) and (out.kind, out.view.fans) == ("attention", (32, 12))
    # batch dims need the instance (the tree alone cannot tell them from in axes)
    p = {q.path: q for q in mif.params_of(tree, layers=told)}["params/DenseGeneral_2/kernel"]
    assert p.view.fans == flax_fans(seen["DenseGeneral_2"])
    # what Flax hands the attention's kernel_init: (16, 32) for query/key/value, (32, 12) for out
    assert seen["attention calls"] == {(16, 32), (32, 12)}


def test_nnx_general_and_attention_kernels_get_the_fans_flax_hands_their_init() -> None:
    seen: dict = {}

    class Blocks(nnx.Module):
        def __init__(self, rngs):
            self.general = nnx.LinearGeneral(
                (2, 8), (3, 5), axis=(-2, -1), rngs=rngs, kernel_init=recording(seen, "general")
            )
            self.batched = nnx.LinearGeneral(
                8, (3, 5), batch_axis={0: 4}, rngs=rngs, kernel_init=recording(seen, "batched")
            )
            self.attention = nnx.MultiHeadAttention(
                4, 16, 32, out_features=12, rngs=rngs, decode=False, kernel_init=recording(seen, "attention")
            )

    model = Blocks(nnx.Rngs(0))
    params = {p.path: p for p in mif.params_of(model)}
    assert params["general/kernel"].view.fans == flax_fans(seen["general"]) == (16, 15)
    assert params["general/bias"].view.logical_shape == (15,) and params["general/bias"].fans == (16, 15)
    assert params["batched/kernel"].view.fans == flax_fans(seen["batched"]) == (32, 15)
    for proj in ("query", "key", "value"):
        p = params[f"attention/{proj}/kernel"]
        assert (p.kind, p.known, p.view.fans) == ("attention", True, (16, 32))
    out = params["attention/out/kernel"]
    assert (out.kind, out.view.fans) == ("attention", (32, 12)) and seen["attention"] == (32, 12)
    # one law everywhere: glorot on the query kernel is bounded by sqrt(6 / (16 + 32)), as
    # Keras' EinsumDense (dim, heads, head_dim) query kernel of the same layer
    mi.apply(model, {"attention": mi.glorot_uniform(), "*": mi.zeros()}, seed=0)
    bound = math.sqrt(6 / (16 + 32))
    assert 0.97 * bound < float(np.abs(np.asarray(model.attention.query.kernel.get_value())).max()) < bound


def test_an_attention_block_of_another_name_is_a_guess() -> None:
    class Encoder(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.MultiHeadDotProductAttention(num_heads=2, name="attn")(x)

    tree = jax.eval_shape(Encoder().init, KEY, jnp.ones((1, 3, 8)))
    params = {p.path: p for p in mif.params_of(tree)}
    query = params["params/attn/query/kernel"]
    assert (query.kind, query.known, query.view.fans) == ("attention", False, (8, 8))
    known = {p.path: p for p in mif.params_of(tree, layers=mif.modules(Encoder(), jnp.ones((1, 3, 8))))}
    assert (known["params/attn/query/kernel"].kind, known["params/attn/query/kernel"].known) == (
        "attention",
        True,
    )


# --------------------------------------------------------------------------- tied parameters


class Tied(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(10, 4, rngs=rngs)
        self.body = nnx.Linear(4, 4, rngs=rngs)
        self.again = self.body  # the same module under a second name
        self.head = nnx.Linear(4, 4, use_bias=False, rngs=rngs)
        self.head.kernel = self.body.kernel  # one variable in two modules


def test_tied_nnx_parameters_are_one_parameter_selectable_by_any_path() -> None:
    model = Tied(nnx.Rngs(0))
    params = mif.params_of(model)
    assert [(p.path, p.aliases) for p in params] == [
        ("embed/embedding", ()),
        ("body/kernel", ("again/kernel", "head/kernel")),
        ("body/bias", ("again/bias",)),
    ]
    for path in ("body/kernel", "again/kernel", "head/kernel"):
        mi.apply(model, {path: mi.constant(3), "*": mi.zeros()}, seed=0)
        assert model.head.kernel is model.body.kernel
        np.testing.assert_array_equal(np.asarray(model.head.kernel.get_value()), 3.0)
        np.testing.assert_array_equal(np.asarray(model.again.bias.get_value()), 0.0)
    plan = mi.plan(model, {"head/kernel": mi.he_normal()})
    assert [row.rule for row in plan] == [None, 0, None]


def test_one_array_at_two_paths_of_a_linen_tree_is_tied() -> None:
    shared = jnp.ones((4, 4))
    tree = {"params": {"Dense_0": {"kernel": shared}, "Dense_1": {"kernel": shared, "bias": jnp.ones(4)}}}
    params = mif.params_of(tree)
    assert [(p.path, p.aliases) for p in params] == [
        ("params/Dense_0/kernel", ("params/Dense_1/kernel",)),
        ("params/Dense_1/bias", ()),
    ]
    new = mi.apply(tree, {"params/Dense_1/kernel": mi.he_normal(), "bias": mi.zeros()}, seed=0, donate=True)
    assert new["params"]["Dense_0"]["kernel"] is new["params"]["Dense_1"]["kernel"]
    assert shared.is_deleted()
