"""Big models in Flax (issue 12): ``mi.apply`` in one pass through a ``rules.Writer`` -- every
fault found before anything is produced leaves every leaf and variable identical and the input
usable; abstract trees (``jax.eval_shape``, ``nnx.eval_shape``, ``nnx.split``) are drawn
directly, with the right law; donation gives up the input buffers; the keys are
``fold_in(key(seed), order)``; user laws are fenced, also under ``jax.jit``."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import multiinit as mi
from multiinit import stats

KEY = jax.random.key(0)
X = jnp.ones((2, 16))


class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(64)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dense(32)(x)
        return nn.LayerNorm()(x)


RULES = {"kernel": mi.he_normal(), "bias": mi.zeros(), "scale": mi.ones()}


def concrete() -> dict:
    """Net's variables, filled by NumPy (no init to compile): shapes from eval_shape."""
    rng = np.random.default_rng(0)
    return jax.tree.map(
        lambda s: jnp.asarray(rng.standard_normal(s.shape), s.dtype), jax.eval_shape(Net().init, KEY, X)
    )


def snapshot(tree) -> list[tuple[str, int, object]]:
    """Every leaf: its path, its object, and its values (None for a ShapeDtypeStruct)."""
    out = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        values = (
            np.array(leaf) if isinstance(leaf, (jax.Array, np.ndarray)) and not leaf.is_deleted() else None
        )
        out.append((jax.tree_util.keystr(path), id(leaf), values))
    return out


def assert_unchanged(tree, before) -> None:
    after = snapshot(tree)
    assert [(p, i) for p, i, _ in after] == [(p, i) for p, i, _ in before]
    for (path, _, a), (_, _, b) in zip(after, before, strict=True):
        assert (a is None) == (b is None), path
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=path)
    assert not any(isinstance(leaf, jax.Array) and leaf.is_deleted() for leaf in jax.tree.leaves(tree))


def raises(rng, shape, dtype):
    raise ZeroDivisionError("the law divided by zero")


def nan_law(rng, shape, dtype):
    return np.full(shape, np.nan, dtype)


def wrong_shape(rng, shape, dtype):
    return np.zeros((*shape, 2), dtype)


# --------------------------------------------------------------------------- all or nothing


@pytest.mark.parametrize("donate", [False, True], ids=["new tree", "donate"])
def test_every_fault_is_found_before_anything_is_produced(donate: bool) -> None:
    variables = concrete()
    before = snapshot(variables)
    faults = [
        (
            {"kernel": mi.he_normal(), "nowhere/*": mi.zeros()},
            mi.RuleError,
            "'nowhere/\\*'.* matches no parameter",
        ),
        (
            {"params/Dense_1/bias": mi.eye(), **RULES},
            mi.ShapeError,
            "eye\\(\\) cannot fill 'params/Dense_1/bias'",
        ),
        (
            {"params/Dense_1/kernel": mi.custom(raises, name="t.big.raises"), **RULES},
            mi.LawError,
            "custom law 't.big.raises' at 'params/Dense_1/kernel' raised ZeroDivisionError",
        ),
        (
            {"params/Dense_0/bias": mi.custom(nan_law, name="t.big.nan"), **RULES},
            mi.LawError,
            "'t.big.nan' at 'params/Dense_0/bias' returned 64 NaN",
        ),
        (
            {"params/Dense_0/kernel": mi.custom(wrong_shape, name="t.big.shape"), **RULES},
            mi.LawShapeError,
            "'t.big.shape' at 'params/Dense_0/kernel' returned an array of shape",
        ),
        (
            {
                "params/Dense_0/kernel": mi.mixture(
                    [(0.5, mi.zeros()), (0.5, mi.custom(raises, name="t.big.mix"))]
                ),
                **RULES,
            },
            mi.LawError,
            "'t.big.mix' at 'params/Dense_0/kernel'",
        ),
    ]
    for rules, error, text in faults:
        for portable in (False, True):
            with pytest.raises(error, match=text):
                mi.apply(variables, rules, seed=0, portable=portable, donate=donate)
            assert_unchanged(variables, before)


def test_unwritable_leaves_are_refused_before_any_draw() -> None:
    variables = concrete()
    variables["params"]["Dense_0"]["bias"] = jnp.arange(64, dtype=jnp.int32)
    before = snapshot(variables)
    with pytest.raises(
        mi.ShapeError, match=r"he_normal.*cannot fill 'params/Dense_0/bias' of dtype int32.*bfloat16"
    ):
        mi.apply(
            variables, {"params/Dense_0/bias": mi.he_normal(), "kernel": mi.he_normal()}, seed=0, donate=True
        )
    assert_unchanged(variables, before)
    half = jax.tree.map(lambda a: a.astype(jnp.float16), concrete())
    before = snapshot(half)
    with pytest.raises(mi.SpecError, match=r"uniform.*'params/Dense_1/kernel'.*float16"):
        mi.apply(
            half, {"params/Dense_1/kernel": mi.uniform(-1e6, 1e6), "kernel": mi.zeros()}, seed=0, donate=True
        )
    assert_unchanged(half, before)
    gone = concrete()
    gone["params"]["Dense_1"]["kernel"].delete()
    before = snapshot(gone)
    with pytest.raises(mi.ShapeError, match=r"'params/Dense_1/kernel'.*deleted or donated.*returned"):
        mi.apply(gone, RULES, seed=0, donate=True)
    assert not gone["params"]["Dense_0"]["kernel"].is_deleted()
    assert [(p, i) for p, i, _ in snapshot(gone)] == [(p, i) for p, i, _ in before]
    bad = concrete()
    bad["params"]["Dense_1"]["kernel"] = type(
        "Fake", (), {"shape": (64, 32), "dtype": np.dtype(np.float32)}
    )()
    with pytest.raises(mi.ShapeError, match="'params/Dense_1/kernel': it is a Fake"):
        mi.apply(bad, RULES, seed=0)


def test_an_nnx_variable_of_another_trace_is_refused_and_nothing_is_set() -> None:
    model = nnx.Linear(4, 8, rngs=nnx.Rngs(0))
    before = (model.kernel.get_value(), model.bias.get_value())

    @jax.jit
    def inside(x):
        mi.apply(model, {"kernel": mi.ones(), "bias": mi.zeros()}, seed=0)
        return x

    with pytest.raises(
        mi.ShapeError, match=r"'kernel' \(Linear\): the nnx variable cannot be set here.*nnx\.jit"
    ):
        inside(jnp.ones(()))
    assert model.kernel.get_value() is before[0] and model.bias.get_value() is before[1]

    @nnx.jit
    def with_nnx(m):
        mi.apply(m, {"kernel": mi.ones(), "bias": mi.zeros()}, seed=0)

    with_nnx(model)
    np.testing.assert_array_equal(np.asarray(model.kernel.get_value()), 1.0)


# --------------------------------------------------------------------------- donation


def test_donation_gives_up_each_drawn_input_array() -> None:
    variables = concrete()
    kept = mi.apply(variables, RULES, seed=5)
    drawn = [
        variables["params"]["Dense_0"]["kernel"],
        variables["params"]["Dense_1"]["bias"],
        variables["params"]["LayerNorm_0"]["scale"],
    ]
    stats_mean = variables["batch_stats"]["BatchNorm_0"]["mean"]
    new = mi.apply(variables, RULES, seed=5, donate=True)
    assert all(leaf.is_deleted() for leaf in drawn)
    assert not stats_mean.is_deleted() and new["batch_stats"]["BatchNorm_0"]["mean"] is stats_mean
    for (path, a), (_, b) in zip(
        jax.tree_util.tree_leaves_with_path(new), jax.tree_util.tree_leaves_with_path(kept), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
    with pytest.raises(mi.RuleError, match="donate='yes' is not allowed"):
        mi.apply(new, RULES, seed=5, donate="yes")


def test_donation_on_nnx_and_portable_mode() -> None:
    model = nnx.Sequential(nnx.Linear(8, 16, rngs=nnx.Rngs(0)), nnx.Linear(16, 4, rngs=nnx.Rngs(1)))
    old = model.layers[0].kernel.get_value()
    twin = nnx.Sequential(nnx.Linear(8, 16, rngs=nnx.Rngs(0)), nnx.Linear(16, 4, rngs=nnx.Rngs(1)))
    mi.apply(
        model, {"kernel": mi.xavier_uniform(), "bias": mi.uniform(-1, 1)}, seed=9, portable=True, donate=True
    )
    mi.apply(twin, {"kernel": mi.xavier_uniform(), "bias": mi.uniform(-1, 1)}, seed=9, portable=True)
    assert old.is_deleted()
    np.testing.assert_array_equal(
        np.asarray(model.layers[2 - 1].kernel.get_value()), np.asarray(twin.layers[1].kernel.get_value())
    )


# --------------------------------------------------------------------------- abstract trees


def test_an_abstract_linen_tree_is_drawn_directly_with_the_right_law() -> None:
    abstract = jax.eval_shape(Net().init, KEY, X)
    assert isinstance(abstract["params"]["Dense_0"]["kernel"], jax.ShapeDtypeStruct)
    new = mi.apply(abstract, RULES, seed=3)
    np.testing.assert_array_equal(np.asarray(new["batch_stats"]["BatchNorm_0"]["mean"]), 0.0)  # flax's values
    np.testing.assert_array_equal(np.asarray(new["batch_stats"]["BatchNorm_0"]["var"]), 1.0)
    same = mi.apply(concrete(), RULES, seed=3)  # the same values as a concrete tree of the same shapes
    for leaf in ("Dense_0", "Dense_1"):
        np.testing.assert_array_equal(
            np.asarray(new["params"][leaf]["kernel"]), np.asarray(same["params"][leaf]["kernel"])
        )
    kernel = np.asarray(new["params"]["Dense_0"]["kernel"])  # flax (16, 64): logical (64, 16), fan_in 16
    verdict = stats.check(kernel.T, mi.he_normal())
    assert verdict.passed, str(verdict)
    out = Net().apply(new, X, train=True, mutable=["batch_stats"])  # a working model
    assert np.isfinite(np.asarray(out[0])).all()


def test_abstract_leaves_nothing_fills_are_refused() -> None:
    abstract = jax.eval_shape(Net().init, KEY, X)
    with pytest.raises(
        mi.RuleError,
        match=r"abstract parameters 'params/BatchNorm_0/scale', 'params/BatchNorm_0/bias', "
        r"'params/LayerNorm_0/scale', 'params/LayerNorm_0/bias' .*not initialized",
    ):
        mi.apply(abstract, {"kernel": mi.he_normal(), "params/Dense_*/bias": mi.zeros()}, seed=0)
    extra = dict(abstract, cache={"index": jax.ShapeDtypeStruct((), jnp.int32)})
    with pytest.raises(mi.RuleError, match=r"abstract leaves 'cache/index' .*only the model knows"):
        mi.apply(extra, RULES, seed=0)


class Model(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(100, 32, rngs=rngs)
        self.up = nnx.Linear(32, 128, rngs=rngs)
        self.norm = nnx.BatchNorm(128, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.down = nnx.Linear(128, 32, rngs=rngs)

    def __call__(self, ids):
        return self.down(self.drop(self.norm(self.up(self.embed(ids)))))


NNX_RULES = {
    "embedding": mi.normal(std=0.02),
    "kernel": mi.kaiming_uniform(a=5**0.5),
    "bias": mi.zeros(),
    "scale": mi.ones(),
}


def test_nnx_eval_shape_then_apply_materializes_the_module() -> None:
    model = nnx.eval_shape(lambda: Model(nnx.Rngs(0)))
    assert isinstance(model.up.kernel.get_value(), jax.ShapeDtypeStruct)
    mi.apply(model, NNX_RULES, seed=1)
    up = np.asarray(model.up.kernel.get_value())
    verdict = stats.check(up.T, mi.kaiming_uniform(a=5**0.5))  # logical (128, 32): torch's Linear(32, 128)
    assert verdict.passed, str(verdict)
    np.testing.assert_array_equal(np.asarray(model.norm.var.get_value()), 1.0)
    assert model.drop.rngs.count.get_value() == 0
    model.train()
    first = model(jnp.arange(4))  # dropout draws from the materialized RNG state
    assert np.isfinite(np.asarray(first)).all() and int(model.drop.rngs.count.get_value()) == 1
    again = nnx.eval_shape(lambda: Model(nnx.Rngs(0)))
    mi.apply(again, NNX_RULES, seed=1)
    for (path, a), (_, b) in zip(nnx.iter_graph(model), nnx.iter_graph(again), strict=True):
        if isinstance(a, nnx.Param):
            np.testing.assert_array_equal(
                np.asarray(a.get_value()), np.asarray(b.get_value()), err_msg=str(path)
            )
    with pytest.raises(mi.RuleError, match=r"abstract parameters 'embed/embedding'"):
        mi.apply(
            nnx.eval_shape(lambda: Model(nnx.Rngs(0))),
            {"kernel": mi.zeros(), "bias": mi.zeros(), "scale": mi.ones()},
            seed=0,
        )


def test_nnx_split_state_is_drawn_as_a_tree_and_merged() -> None:
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Model(nnx.Rngs(0))))
    new = mi.apply(state, NNX_RULES, seed=1)
    assert isinstance(new, nnx.State) and isinstance(state["up"]["kernel"].get_value(), jax.ShapeDtypeStruct)
    model = nnx.merge(graphdef, new)
    reference = nnx.eval_shape(lambda: Model(nnx.Rngs(0)))
    mi.apply(reference, NNX_RULES, seed=1)
    for (path, a), (_, b) in zip(nnx.iter_graph(model), nnx.iter_graph(reference), strict=True):
        if isinstance(a, nnx.Param):
            np.testing.assert_array_equal(
                np.asarray(a.get_value()), np.asarray(b.get_value()), err_msg=str(path)
            )
    np.testing.assert_array_equal(np.asarray(model.norm.mean.get_value()), 0.0)


# --------------------------------------------------------------------------- keys


def test_the_native_stream_is_fold_in_of_the_seed_key_and_the_order() -> None:
    tree = {
        "params": {
            "a": {"kernel": jax.ShapeDtypeStruct((8, 64), jnp.float32)},
            "b": {"kernel": jax.ShapeDtypeStruct((64, 8), jnp.float32)},
        }
    }
    new = mi.apply(tree, {"params/a/kernel": mi.normal(), "params/b/kernel": mi.uniform(-1, 1)}, seed=7)
    with jax.threefry_partitionable(True):
        a = jax.random.normal(jax.random.fold_in(jax.random.key(7), 0), (8, 64))
        b = jax.random.uniform(jax.random.fold_in(jax.random.key(7), 1), (64, 8), minval=-1, maxval=1)
    np.testing.assert_array_equal(np.asarray(new["params"]["a"]["kernel"]), np.asarray(a))
    np.testing.assert_array_equal(np.asarray(new["params"]["b"]["kernel"]), np.asarray(b))
    with jax.threefry_partitionable(False):  # the process's setting does not matter
        again = mi.apply(tree, {"params/a/kernel": mi.normal(), "params/b/kernel": mi.uniform(-1, 1)}, seed=7)
    np.testing.assert_array_equal(np.asarray(again["params"]["a"]["kernel"]), np.asarray(a))
    seeds = [0, 2**32, 2**40 + 5, 5, 2**64 + 1]
    draws = [
        np.asarray(mi.apply(tree, {"kernel": mi.normal()}, seed=s)["params"]["a"]["kernel"]) for s in seeds
    ]
    assert all(not np.array_equal(draws[i], draws[j]) for i in range(len(seeds)) for j in range(i))


def test_apply_under_jit_gives_the_eager_values_and_fences_user_laws() -> None:
    variables = concrete()
    for portable in (False, True):
        eager = mi.apply(variables, RULES, seed=2, portable=portable)
        jitted = jax.jit(lambda v, p=portable: mi.apply(v, RULES, seed=2, portable=p))(variables)
        for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    law = mi.custom(raises, name="t.big.jitted")
    for portable in (False, True):
        with pytest.raises(Exception, match=r"custom law 't.big.jitted' at 'params/Dense_1/kernel' raised"):
            jax.jit(
                lambda v, p=portable: mi.apply(v, {"params/Dense_1/kernel": law, **RULES}, seed=2, portable=p)
            )(variables)


def test_options_other_backends_do_not_take_are_refused_by_name() -> None:
    variables = concrete()
    with pytest.raises(mi.SpecError, match=r"device='cpu' is not allowed for a flax model.*takes no device="):
        mi.apply(variables, RULES, seed=0, device="cpu")
    with pytest.raises(
        mi.SpecError, match=r"donated=True is not allowed for a flax model.*donate=, shardings="
    ):
        mi.apply(variables, RULES, seed=0, donated=True)
