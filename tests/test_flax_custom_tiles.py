"""``mi.custom(fn, elementwise=True)`` in the Flax adapter: a law drawn tile by tile.

On a tensor of one tile of the stream rule, an elementwise law gets the generator a
whole-tensor law gets, so it gives the same numbers; on a tensor of several tiles it is called
once per tile with the tile's own generator (``SeedSequence(key, spawn_key=(t,))``), and the
tiles land at their logical boxes of the Flax array, eagerly, under ``jax.jit``, under
``jax.vmap``, in bfloat16. ``mi.apply``: portable values (linen and nnx alike), native values
from the parameter's key, under ``jax.jit`` too; a failing tile is a ``LawError`` that names
the tile and changes nothing; a kernel sharded over 8 simulated CPU devices holds exactly the
unsharded values (in a subprocess with 8 devices, as ``test_flax_sharded.py`` does).

Expected values are recomputed here from NumPy generators and tile boxes worked out by hand
(a 2x2 grid: rows split at ceil(rows / 2), columns at ceil(cols / 2), tiles numbered
row-major); ``reference.sample`` is only a second check.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from simulated_devices import rerun

import multiinit as mi
from multiinit.reference import sample

KEY = jax.random.key(7)
WORDS = [0, 7]  # the raw threefry words of jax.random.key(7): what seeds the law's generator
DEVICES = 8
IN_PROCESS = jax.device_count() >= DEVICES


def draw(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """The law itself: each element on its own, so elementwise=True is an honest promise."""
    return rng.uniform(-1.0, 1.0, shape).astype(dtype)


@dataclass(frozen=True)
class Call:
    spawn_key: tuple[int, ...]  # () for a whole-tensor generator, (t,) for tile t
    entropy: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    values: np.ndarray


class Recorder:
    """A law that records every call (it may be called from several threads at once)."""

    def __init__(self, bad_tile: int | None = None) -> None:
        self.calls: list[Call] = []
        self.bad_tile = bad_tile

    def __call__(self, rng, shape, dtype):
        values = draw(rng, shape, dtype)
        seq = rng.bit_generator.seed_seq
        if seq.spawn_key == (self.bad_tile,):
            values[5, 7] = np.nan  # one bad element in one tile only
        self.calls.append(
            Call(tuple(seq.spawn_key), tuple(seq.entropy), tuple(shape), np.dtype(dtype), values.copy())
        )
        return values


def law(recorder: Recorder, name: str, elementwise: bool = True) -> mi.Spec:
    return mi.custom(recorder, name=f"tests.flax_custom_tiles.{name}", elementwise=elementwise)


def boxes(shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """The 4 tile boxes of a logical shape cut 2x2 (by hand), in row-major tile order."""
    r, c = -(-shape[0] // 2), -(-shape[1] // 2)
    rest = tuple(slice(0, d) for d in shape[2:])
    rows, cols = (slice(0, r), slice(r, shape[0])), (slice(0, c), slice(c, shape[1]))
    return [(i, j, *rest) for i in rows for j in cols]


def box_shape(box: tuple[slice, ...]) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in box)


def by_hand(key, shape, dtype=np.float32) -> np.ndarray:
    """The logical values of a multi-tile tensor: tile t from its own generator, at its box."""
    out = np.empty(shape, dtype)
    for t, box in enumerate(boxes(shape)):
        rng = np.random.default_rng(np.random.SeedSequence([int(k) for k in key], spawn_key=(t,)))
        out[box] = draw(rng, box_shape(box), dtype)
    return out


def assert_tiles(recorder: Recorder, logical: np.ndarray, key, dtype=np.float32) -> None:
    """The law was called once per tile, with the tile's shape and generator, and the logical
    array is exactly what each call returned, at the tile's box."""
    expected = boxes(logical.shape)
    calls = sorted(recorder.calls, key=lambda c: c.spawn_key)
    assert [c.spawn_key for c in calls] == [(t,) for t in range(len(expected))]
    for call, box in zip(calls, expected, strict=True):
        assert call.shape == box_shape(box) and call.dtype == np.dtype(dtype)
        assert call.entropy == tuple(int(k) for k in key)
        np.testing.assert_array_equal(logical[box], call.values.astype(logical.dtype))


# --------------------------------------------------------------------------- the compiled form


@pytest.mark.parametrize("native", [(32, 64), (3, 3, 16, 32)], ids=["dense", "conv"])
def test_one_tile_elementwise_gives_the_whole_tensor_numbers(native) -> None:
    logical = (native[-1], native[-2], *native[:-2])  # (out, in, *k): 2048 and 4608 elements
    to_logical = (len(native) - 1, len(native) - 2, *range(len(native) - 2))
    whole, tiled = Recorder(), Recorder()
    a = mi.compile(law(whole, "one_whole", elementwise=False), "flax")(KEY, native)
    b = mi.compile(law(tiled, "one_tiled"), "flax")(KEY, native)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # one call each, from the parameter's own generator (no spawn key), for the whole tensor
    assert [(c.spawn_key, c.entropy, c.shape) for c in tiled.calls] == [((), tuple(WORDS), logical)]
    expected = draw(np.random.default_rng(np.random.SeedSequence(WORDS)), logical, np.float32)
    np.testing.assert_array_equal(np.asarray(b).transpose(to_logical), expected)
    jitted = jax.jit(mi.compile(law(tiled, "one_tiled"), "flax"), static_argnums=(1,))(KEY, native)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(b))


def test_multi_tile_dense_kernel_eager_and_jitted() -> None:
    recorder = Recorder()
    init = mi.compile(law(recorder, "dense"), "flax")
    kernel = init(KEY, (530, 515))  # Dense(515) on 530 inputs: (in, out), logical (515, 530)
    assert kernel.shape == (530, 515) and kernel.dtype == jnp.float32
    logical = np.asarray(kernel).T
    assert_tiles(recorder, logical, WORDS)
    np.testing.assert_array_equal(logical, by_hand(WORDS, (515, 530)))
    # Under jit the law runs through a host callback: the same tiles, the same values.
    recorder.calls.clear()
    jitted = jax.jit(init, static_argnums=(1,))(KEY, (530, 515))
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(kernel))
    assert_tiles(recorder, np.asarray(jitted).T, WORDS)
    # another key, other tiles
    other = np.asarray(init(jax.random.key(8), (530, 515))).T
    np.testing.assert_array_equal(other, by_hand([0, 8], (515, 530)))
    assert not np.array_equal(other, logical)


def test_multi_tile_conv_kernel_tiles_span_the_spatial_axes() -> None:
    recorder = Recorder()
    kernel = mi.compile(law(recorder, "conv"), "flax")(KEY, (3, 3, 256, 128))
    logical = np.asarray(kernel).transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
    assert logical.shape == (128, 256, 3, 3)
    assert_tiles(recorder, logical, WORDS)  # tiles of (64, 128, 3, 3)
    np.testing.assert_array_equal(logical, by_hand(WORDS, (128, 256, 3, 3)))


def test_bfloat16_asks_the_law_for_float32_and_rounds_each_tile() -> None:
    recorder = Recorder()
    kernel = mi.compile(law(recorder, "bf16"), "flax")(KEY, (530, 515), jnp.bfloat16)
    assert kernel.dtype == jnp.bfloat16
    logical = np.asarray(kernel).T
    assert_tiles(recorder, logical, WORDS, dtype=np.float32)  # NumPy draws no bfloat16
    np.testing.assert_array_equal(logical, by_hand(WORDS, (515, 530)).astype(jnp.bfloat16))


def test_vmap_draws_each_key_tile_by_tile() -> None:
    recorder = Recorder()
    init = mi.compile(law(recorder, "vmap"), "flax")
    keys = jnp.stack([jax.random.key(7), jax.random.key(9)])
    both = np.asarray(jax.vmap(lambda k: init(k, (530, 515)))(keys))
    assert len(recorder.calls) == 8  # 4 tiles per key
    np.testing.assert_array_equal(both[0].T, by_hand([0, 7], (515, 530)))
    np.testing.assert_array_equal(both[1].T, by_hand([0, 9], (515, 530)))


def test_a_failing_tile_fails_the_compiled_call_eager_and_jitted() -> None:
    init = mi.compile(law(Recorder(bad_tile=3), "compiled_nan"), "flax")
    # tile 3 is the bottom-right one, at (258, 265) of shape (257, 265); (5, 7) in it
    message = (
        r"'tests.flax_custom_tiles.compiled_nan'.*tile at \(258, 265\) of shape \(257, 265\).*\(263, 272\)"
    )
    with pytest.raises(mi.LawError, match=message):
        init(KEY, (530, 515))
    # under jit JAX's runtime error carries the LawError's text
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"LawError: custom law " + message):
        jax.block_until_ready(jax.jit(init, static_argnums=(1,))(KEY, (530, 515)))


# --------------------------------------------------------------------------- mi.apply


def linen_variables() -> dict:
    # Dense(530) on 3 inputs, then Dense(515) on 530: kernels (3, 530) and (530, 515)
    return nn.Sequential([nn.Dense(530), nn.Dense(515)]).init(KEY, jnp.ones((1, 3)))


def nnx_model() -> nnx.Sequential:
    rngs = nnx.Rngs(0)
    return nnx.Sequential(nnx.Linear(3, 530, rngs=rngs), nnx.Linear(530, 515, rngs=rngs))


def snapshot(tree) -> list[tuple[str, np.ndarray]]:
    return [
        (jax.tree_util.keystr(p), np.array(leaf)) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)
    ]


def assert_same(a, b) -> None:
    assert [p for p, _ in a] == [p for p, _ in b]
    for (path, x), (_, y) in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y, err_msg=path)


def test_portable_apply_linen_and_nnx_hold_the_tiles_by_hand() -> None:
    recorder = Recorder()
    spec = law(recorder, "portable")
    rules = [("kernel", spec), ("bias", mi.zeros())]
    new = mi.apply(linen_variables(), rules, seed=5, portable=True)["params"]
    # order (definition order, weights before biases): layers_0 kernel 0, bias 1, layers_1 kernel 2
    big = np.asarray(new["layers_1"]["kernel"]).T
    # one call for the small kernel (one tile: the parameter's own stream), one per tile of the big one
    assert sorted((c.spawn_key, c.entropy) for c in recorder.calls) == [
        ((), (5, 0)),
        ((0,), (5, 2)),
        ((1,), (5, 2)),
        ((2,), (5, 2)),
        ((3,), (5, 2)),
    ]
    np.testing.assert_array_equal(big, by_hand([5, 2], (515, 530)))
    np.testing.assert_array_equal(big, sample(spec, (515, 530), seed=(5, 2)))
    small = np.asarray(new["layers_0"]["kernel"]).T  # logical (530, 3)
    np.testing.assert_array_equal(
        small, draw(np.random.default_rng(np.random.SeedSequence([5, 0])), (530, 3), "f4")
    )
    model = nnx_model()
    mi.apply(model, rules, seed=5, portable=True)
    for i in (0, 1):
        np.testing.assert_array_equal(
            np.asarray(model.layers[i].kernel.get_value()), np.asarray(new[f"layers_{i}"]["kernel"])
        )


def test_native_apply_draws_each_tile_from_the_parameters_key() -> None:
    variables = linen_variables()
    recorder = Recorder()
    rules = [("params/layers_1/kernel", law(recorder, "native"))]
    first = np.asarray(mi.apply(variables, rules, seed=3)["params"]["layers_1"]["kernel"]).T
    # the parameter at order 2 draws from fold_in(key(3), 2) (multiinit/flax/sharded.py); its
    # raw words seed the tiles' generators
    words = np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.key(3), 2))).tolist()
    assert_tiles(recorder, first, words)
    np.testing.assert_array_equal(first, by_hand(words, (515, 530)))
    recorder.calls.clear()
    again = np.asarray(mi.apply(variables, rules, seed=3)["params"]["layers_1"]["kernel"]).T
    np.testing.assert_array_equal(again, first)
    assert len(recorder.calls) == 4
    other = np.asarray(mi.apply(variables, rules, seed=4)["params"]["layers_1"]["kernel"]).T
    assert not np.array_equal(other, first)
    # mi.apply inside jax.jit: the law runs in a host callback, with the same numbers
    jitted = jax.jit(lambda v: mi.apply(v, rules, seed=3))(variables)
    np.testing.assert_array_equal(np.asarray(jitted["params"]["layers_1"]["kernel"]).T, first)


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_a_failing_tile_changes_no_parameter(portable: bool) -> None:
    rules = [
        ("params/layers_0/kernel", law(Recorder(), "fine")),  # a user law that succeeds
        ("params/layers_0/bias", mi.ones()),
        ("params/layers_1/kernel", law(Recorder(bad_tile=3), "bad")),
        ("bias", mi.zeros()),
    ]
    message = (
        r"'tests.flax_custom_tiles.bad' at '{}'.*tile at \(258, 265\) of shape \(257, 265\) "
        r"\(the first at index \(263, 272\)\)"
    )
    variables = linen_variables()
    before = snapshot(variables)
    with pytest.raises(mi.LawError, match=message.format("params/layers_1/kernel")):
        mi.apply(variables, rules, seed=3, portable=portable)
    assert_same(snapshot(variables), before)
    model = nnx_model()
    before = snapshot(nnx.state(model))
    nnx_rules = [(path.removeprefix("params/").replace("layers_", "layers/"), spec) for path, spec in rules]
    with pytest.raises(mi.LawError, match=message.format("layers/1/kernel")):
        mi.apply(model, nnx_rules, seed=3, portable=portable)
    assert_same(snapshot(nnx.state(model)), before)


# --------------------------------------------------------------------------- sharded (8 devices)


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_sharded_kernels_gather_the_unsharded_values(portable: bool) -> None:
    assert jax.device_count() >= DEVICES
    mesh = Mesh(np.array(jax.devices()[:DEVICES]).reshape(2, 4), ("data", "model"))
    # Dense(1024) on 512 inputs, then Dense(515): kernels (512, 1024) and (1024, 515), each of
    # 4 tiles; shards (256, 256) and (128, 515) that cut across the tiles' logical boxes
    variables = nn.Sequential([nn.Dense(1024), nn.Dense(515)]).init(KEY, jnp.ones((1, 512)))
    shardings = {
        "params": {
            "layers_0": {"kernel": NamedSharding(mesh, P("data", "model")), "bias": NamedSharding(mesh, P())},
            "layers_1": {
                "kernel": NamedSharding(mesh, P(("data", "model"), None)),
                "bias": NamedSharding(mesh, P()),
            },
        }
    }
    placed = jax.device_put(variables, shardings)
    lock = threading.Lock()
    shapes: list[tuple[int, ...]] = []

    def counted(rng, shape, dtype):
        with lock:
            shapes.append(tuple(shape))
        return draw(rng, shape, dtype)

    rules = [("kernel", mi.custom(counted, name="tests.flax_custom_tiles.sharded", elementwise=True))]
    sharded = mi.apply(placed, rules, seed=11, portable=portable)["params"]
    # every call drew one tile, never the whole kernel
    assert shapes and all(s in {(512, 256), (258, 512), (257, 512)} for s in shapes)
    whole = mi.apply(variables, rules, seed=11, portable=portable)["params"]
    for name in ("layers_0", "layers_1"):
        array, expected = sharded[name]["kernel"], shardings["params"][name]["kernel"]
        assert array.sharding == expected
        assert all(s.data.shape == expected.shard_shape(array.shape) for s in array.addressable_shards)
        np.testing.assert_array_equal(np.asarray(array), np.asarray(whole[name]["kernel"]), err_msg=name)
    if portable:  # and the unsharded values are the tiles by hand
        np.testing.assert_array_equal(
            np.asarray(whole["layers_0"]["kernel"]).T, by_hand([11, 0], (1024, 512))
        )
        np.testing.assert_array_equal(
            np.asarray(whole["layers_1"]["kernel"]).T, by_hand([11, 2], (515, 1024))
        )


if not IN_PROCESS:
    # Simulated devices need XLA_FLAGS before JAX is imported: the sharded test runs in a fresh
    # process that has 8 (as tests/test_flax_sharded.py does), and this test fails when it fails.
    del test_sharded_kernels_gather_the_unsharded_values

    def test_sharded_kernels_in_a_process_with_8_simulated_devices() -> None:
        assert "2 passed" in rerun(__file__, DEVICES, "-k", "sharded_kernels_gather", timeout=600)
