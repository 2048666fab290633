"""Big Keras models (issue 12 for Keras): one-pass apply through a Writer, every fault found before
the first write (every variable left identical), and Keras' deferred initialization -- a model
built inside ``keras.StatelessScope(initialize_variables=False)`` gets each variable's value once.

Runs on every Keras backend (tensorflow, jax, torch envs); the faults that only one backend has
(a torch inference tensor, a JAX trace) are defined only where that backend runs.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import multiinit as mi
import multiinit.keras as mik
from multiinit.keras import sharded

L = keras.layers
BACKEND = keras.backend.backend()


def snapshot(model) -> dict[str, object]:
    """Every variable of the model (parameters, statistics, seed states): its value, or None
    while it is deferred."""
    out = {}
    for v in model.variables:
        out[v.path + f"#{id(v)}"] = (
            None if sharded.is_deferred(v) else np.array(keras.ops.convert_to_numpy(v.value))
        )
    return out


def assert_identical(model, before) -> None:
    after = snapshot(model)
    assert after.keys() == before.keys()
    for key, old in before.items():
        new = after[key]
        assert (old is None) == (new is None), f"{key}: deferred state changed"
        if old is not None:
            assert old.dtype == new.dtype and np.array_equal(old, new, equal_nan=True), f"{key} changed"


def model(name: str = "big") -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            L.Conv2D(4, 3, name="conv"),
            L.BatchNormalization(name="bn"),
            L.Dropout(0.2, seed=1, name="drop"),
            L.Flatten(),
            L.Dense(5, name="hidden"),
            L.Dense(2, name="out"),
        ],
        name=name,
    )


RULES = [("kernel", mi.he_normal()), ("bias", mi.uniform(-0.1, 0.1)), ("gamma", mi.constant(0.5))]


def raises(rng, shape, dtype):
    raise ZeroDivisionError("the law divided by zero")


def wrong_shape(rng, shape, dtype):
    return np.zeros((*shape, 2), dtype=dtype)


def nan(rng, shape, dtype):
    out = rng.uniform(-1, 1, shape).astype(dtype)
    out.reshape(-1)[-1] = np.nan
    return out


def strings(rng, shape, dtype):
    return np.full(shape, "1.0")


LIARS = {"raises": raises, "wrong shape": wrong_shape, "nan": nan, "strings": strings}


# --------------------------------------------------------------------------- faults found first


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("liar", sorted(LIARS))
def test_a_user_law_that_fails_or_lies_changes_nothing(liar, portable) -> None:
    net = model()
    before = snapshot(net)
    law = mi.custom(LIARS[liar], name=f"tests.keras_big.{liar.replace(' ', '_')}")
    # The liar fills the last variable, after every other one was planned; inside a mixture
    # too. User laws are drawn before the first write: nothing is written.
    spec = law if liar in ("raises", "nan") else mi.mixture([(0.5, law), (0.5, mi.zeros())])
    rules = [("big/out/bias", spec), *RULES]
    with pytest.raises(mi.LawError) as info:
        mi.apply(net, rules, seed=0, portable=portable)
    assert "big/out/bias" in str(info.value) and f"tests.keras_big.{liar.replace(' ', '_')}" in str(
        info.value
    )
    assert_identical(net, before)


# Keras on torch cannot make a trainable integer variable (torch refuses requires_grad there).
NON_FLOAT = ["complex64"] + (["int32"] if BACKEND != "torch" else [])


@pytest.mark.parametrize("dtype", NON_FLOAT)
def test_a_random_law_on_a_non_float_variable_is_refused_before_anything_is_written(dtype) -> None:
    class Counter(L.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(3, 4), initializer="glorot_uniform", name="kernel")
            self.count = self.add_weight(shape=(4,), dtype=dtype, initializer="zeros", name="count")

        def call(self, x):
            return x

    layer = Counter(name="counter")
    layer.build((None, 3))
    before = snapshot(layer)
    with pytest.raises(mi.SpecError, match=f"'counter/count'.*dtype='{dtype}'"):
        mi.apply(layer, [("kernel", mi.ones()), ("count", mi.normal())], seed=0)
    assert_identical(layer, before)
    mi.apply(layer, [("kernel", mi.ones()), ("count", mi.constant(7))])  # a constant fills an int
    assert (np.asarray(layer.count.numpy()) == 7).all()


def test_inside_a_stateless_scope_nothing_is_assigned_nor_recorded() -> None:
    # There assign would only record the value in the scope: mi.apply refuses, and the scope
    # holds no update either.
    net = model()
    before = snapshot(net)
    with keras.StatelessScope() as scope, pytest.raises(mi.ShapeError, match="StatelessScope"):
        mi.apply(net, RULES, seed=0)
    assert all(scope.get_current_value(v) is None for v in net.variables)
    assert_identical(net, before)


def test_a_rule_misfit_and_an_unmatched_rule_change_nothing() -> None:
    net = model()
    before = snapshot(net)
    with pytest.raises(mi.ShapeError, match="'big/conv/kernel'"):
        mi.apply(net, [*RULES[1:], ("kernel", mi.eye())], seed=0)
    with pytest.raises(mi.RuleError, match="nowhere"):
        mi.apply(net, [*RULES, ("nowhere/*", mi.zeros())], seed=0)
    assert_identical(net, before)


def test_constraints_and_frozen_layers_refuse_nothing() -> None:
    # Keras applies constraints after optimizer steps only (its initializers are never
    # constrained), and a frozen layer's variables are still assignable.
    net = keras.Sequential([keras.Input((4,)), L.Dense(64, kernel_constraint="non_neg", name="c")])
    net.get_layer("c").trainable = False
    mi.apply(net, {"kernel": mi.normal(), "bias": mi.constant(1)}, seed=0)
    kernel = np.asarray(net.get_layer("c").kernel.numpy())
    assert (kernel < 0).any() and (np.asarray(net.get_layer("c").bias.numpy()) == 1).all()


def test_float8_statistics_are_not_parameters() -> None:
    # A float8 layer's scales and amax histories are trainable variables that Keras overwrites
    # with a computed value (overwrite_with_gradient): statistics, not weights.
    layer = L.Dense(8, name="f8")
    layer.build((None, 16))
    layer.quantize("float8")
    assert [p.path for p in mik.params_of(layer)] == ["f8/kernel", "f8/bias"]
    mi.apply(layer, {"kernel": mi.zeros(), "bias": mi.zeros()})
    scale = next(v for v in layer.variables if v.name == "kernel_scale")
    assert float(keras.ops.convert_to_numpy(scale.value)) == 1.0


if BACKEND == "torch":

    def test_a_torch_inference_tensor_is_refused_before_anything_is_written() -> None:
        import torch

        net = model()
        with torch.inference_mode():
            late = L.Dense(3, name="late")
            late.build((None, 2))
        wrapper = keras.Sequential([keras.Input((2,)), late], name="wrap")
        before, before_late = snapshot(net), snapshot(wrapper)
        with pytest.raises(mi.ShapeError, match=r"'late/kernel'.*inference"):
            mi.apply(wrapper, {"kernel": mi.normal(), "bias": mi.zeros()}, seed=0)
        assert_identical(wrapper, before_late)
        with torch.inference_mode():  # where torch allows it, it is written
            mi.apply(wrapper, {"kernel": mi.ones(), "bias": mi.zeros()})
        assert (np.asarray(late.kernel.numpy()) == 1).all()
        assert_identical(net, before)


if BACKEND == "jax":

    def test_inside_a_jax_trace_nothing_is_written() -> None:
        import jax

        net = model()
        before = snapshot(net)

        def traced():
            mi.apply(net, RULES, seed=0)
            return 0

        with pytest.raises(mi.ShapeError, match="trace"):
            jax.jit(traced)()
        assert_identical(net, before)


# --------------------------------------------------------------------------- one pass


def test_each_variable_is_drawn_and_assigned_once(monkeypatch) -> None:
    # The writer draws a variable's value right before assigning it: assigns interleave with
    # draws (one variable's temporary at a time), and every selected variable is assigned once.
    net = model()
    events = []
    real_draw = mik.model._draw

    def draw(spec, view, fans, dtype, seed):
        events.append(("draw", view.native_shape))
        return real_draw(spec, view, fans, dtype, seed)

    real_write = sharded.write

    def write(variable, value):
        events.append(("write", tuple(variable.shape)))
        return real_write(variable, value)

    monkeypatch.setattr(mik.model, "_draw", draw)
    monkeypatch.setattr(sharded, "write", write)
    monkeypatch.setattr(sharded, "_JITTED", type(sharded._JITTED)())  # JAX: every draw traced anew
    mi.apply(net, [("kernel", mi.he_normal()), ("bias", mi.normal())], seed=0)
    kinds = [kind for kind, _ in events]
    assert kinds == ["draw", "write"] * 6
    assert [shape for _, shape in events[1::2]] == [
        tuple(p.handle.shape) for p in mik.params_of(net) if p.role in ("kernel", "bias")
    ]


# --------------------------------------------------------------------------- deferred initialization


def deferred(make):
    with keras.StatelessScope(initialize_variables=False):
        return make()


def functional() -> keras.Model:
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Dropout(0.2, seed=1, name="drop")(x)
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(2, name="out")(x), name="fn")


def subclassed_sequential() -> keras.Model:
    net = keras.Sequential(
        [L.Dense(8, name="a"), L.LayerNormalization(name="ln"), L.Dense(3, name="b")], name="seq"
    )
    net.build((None, 5))
    return net


@pytest.mark.parametrize("make", [functional, subclassed_sequential])
@pytest.mark.parametrize("portable", [False, True])
def test_a_deferred_model_gets_the_values_of_the_built_one(make, portable) -> None:
    rules = [("kernel", mi.he_uniform()), ("bias", mi.normal(std=0.1))]
    eager = mi.apply(make(), rules, seed=3, portable=portable)
    lazy = deferred(make)
    assert all(sharded.is_deferred(v) for v in lazy.variables)  # no value, no memory yet
    assert mi.apply(lazy, rules, seed=3, portable=portable) is lazy
    assert not any(sharded.is_deferred(v) for v in lazy.variables)
    for a, b in zip(eager.variables, lazy.variables, strict=True):
        va, vb = keras.ops.convert_to_numpy(a.value), keras.ops.convert_to_numpy(b.value)
        if "seed_generator" in a.path:
            continue  # Dropout's state: Keras' own initializer, not a rule's
        assert np.array_equal(va, vb), a.path
    x = np.ones((2, *lazy.input_shape[1:]), np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(lazy(x)), keras.ops.convert_to_numpy(eager(x)), rtol=1e-6, atol=1e-6
    )


def test_deferred_variables_no_rule_selects_get_their_own_initializers_once() -> None:
    from keras.src.backend.common import global_state

    lazy = deferred(functional)
    mi.apply(lazy, {"out/kernel": mi.ones()}, seed=0)
    bn = lazy.get_layer("bn")
    assert (np.asarray(bn.moving_variance.numpy()) == 1).all() and (np.asarray(bn.gamma.numpy()) == 1).all()
    assert (np.asarray(lazy.get_layer("out").kernel.numpy()) == 1).all()
    pending = global_state.get_global_attribute("uninitialized_variables") or []
    assert not {id(v) for v in lazy.variables} & {id(v) for v in pending}
    with keras.StatelessScope():  # its exit initializes pending variables: ours are not pending
        pass
    assert (np.asarray(lazy.get_layer("out").kernel.numpy()) == 1).all()


@pytest.mark.parametrize("fault", ["no match", "misfit", "law"])
def test_a_fault_leaves_a_deferred_model_deferred(fault) -> None:
    from keras.src.backend.common import global_state

    lazy = deferred(functional)
    rules = [("kernel", mi.he_normal()), ("bias", mi.zeros())]
    if fault == "no match":
        rules.append(("nowhere", mi.zeros()))
    elif fault == "misfit":
        rules.insert(0, ("conv/kernel", mi.eye()))
    else:
        rules.insert(0, ("out/bias", mi.custom(raises, name="tests.keras_big.raises")))
    with pytest.raises(mi.MultiinitError):
        mi.apply(lazy, rules, seed=0)
    assert all(sharded.is_deferred(v) for v in lazy.variables)
    pending = {id(v) for v in global_state.get_global_attribute("uninitialized_variables") or []}
    assert {id(v) for v in lazy.variables} <= pending  # Keras still initializes them later
    mi.apply(lazy, {"kernel": mi.he_normal(), "bias": mi.zeros()}, seed=0)  # and a good call works
    assert not any(sharded.is_deferred(v) for v in lazy.variables)


def test_an_unbuilt_model_says_how_to_build_it_without_drawing_twice() -> None:
    with pytest.raises(mi.RuleError, match="StatelessScope\\(initialize_variables=False\\)"):
        mi.apply(keras.Sequential([L.Dense(3)]), {"kernel": mi.zeros()})


def test_host_copied_makes_a_tensor_that_does_not_share_the_host_buffer() -> None:
    from multiinit.keras import draw

    host = draw._aligned_empty((64, 64), np.dtype("float32"))
    host[...] = 1.0
    adopted = draw._from_host(host, "float32")
    with draw.host_copied():
        copied = draw._from_host(host, "float32")
    assert draw._ADOPT.get()  # the context has ended
    host[...] = 2.0
    # Only TensorFlow's assign adopts a value's buffer, so only there does the switch copy
    # (JAX on the CPU may alias an aligned host buffer either way).
    if keras.backend.backend() == "tensorflow":
        assert (keras.ops.convert_to_numpy(copied) == 1.0).all()
        assert (keras.ops.convert_to_numpy(adopted) == 2.0).all()  # the aligned buffer, as it is


@pytest.mark.parametrize("portable", [False, True])
def test_values_for_built_variables_are_copied_and_deferred_ones_adopt_theirs(portable, monkeypatch) -> None:
    # A built variable's assign would adopt a host buffer and free its own into TensorFlow's
    # allocator, which keeps it: the model's size again in memory (docs/benchmarks.md).
    from multiinit.keras import draw

    seen: list[bool] = []
    real = draw._from_host

    def spy(array, dtype):
        seen.append(draw._ADOPT.get())
        return real(array, dtype)

    monkeypatch.setattr(draw, "_from_host", spy)
    # A user law is prepared before any write; portable mode draws the normal in fill.
    law = mi.custom(lambda rng, shape, dtype: rng.random(shape), name="tests.host")
    rules = {"kernel": law, "bias": mi.normal()}
    mi.apply(functional(), rules, seed=0, portable=portable)
    built = list(seen)
    seen.clear()
    mi.apply(deferred(functional), rules, seed=0, portable=portable)
    assert built and not any(built)
    assert seen and all(seen)
