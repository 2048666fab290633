"""Elementwise user laws (``mi.custom(fn, elementwise=True)``) in the Keras adapter: one call per
tile of the stream rule, each tile landing at its place in Keras' ``(*spatial, in, out)`` layout.

Covered: one-tile tensors (the numbers of a non-elementwise law), several tiles through the
compiled form (Dense and Conv2D kernels; float16, float32, float64), portable and native
``mi.apply``, all or nothing when one tile fails, and the flag surviving Keras serialization.

Expected values never come from the adapter: every call of the law is recorded (its shape, its
dtype, the array it returned, the spawn key of its generator), Keras kernels are transposed to
the logical ``(out, in, *spatial)`` view by hand, and the tile boxes (a 2x2 grid, the first half
rounded up) are written out here. Runs on every Keras backend (tensorflow, jax, torch envs).
"""

from __future__ import annotations

import json
import threading
import warnings
from typing import NamedTuple

import keras
import numpy as np
import pytest

import multiinit as mi
import multiinit.keras as mik
from multiinit import stream

L = keras.layers


def gauss(rng, shape, dtype) -> np.ndarray:
    """The law under test: iid N(0, 1), drawn in float64 (the fence casts to ``dtype``)."""
    return rng.standard_normal(shape)


class Call(NamedTuple):
    """One call of a recorded law: what it was asked, which generator it got, what it returned."""

    shape: tuple[int, ...]
    dtype: np.dtype
    values: np.ndarray
    spawn_key: tuple[int, ...]  # () for a parameter's own stream, (t,) for tile t
    entropy: object  # the seed the generator's SeedSequence was made from


class Recorder:
    """``gauss``, keeping every call (calls may come from several threads: ``list.append`` is
    atomic)."""

    def __init__(self, name: str, elementwise: bool = True) -> None:
        self.calls: list[Call] = []
        self.spec = mi.custom(self, name=name, elementwise=elementwise)

    def __call__(self, rng, shape, dtype) -> np.ndarray:
        values = gauss(rng, shape, dtype)
        seq = rng.bit_generator.seed_seq
        entropy = seq.entropy if isinstance(seq.entropy, int) else tuple(seq.entropy)
        self.calls.append(Call(tuple(shape), np.dtype(dtype), values, tuple(seq.spawn_key), entropy))
        return values


def numpy_of(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def logical(native: np.ndarray) -> np.ndarray:
    """A Keras kernel ``(*spatial, in, out)`` as ``(out, in, *spatial)``; a vector as it is."""
    n = native.ndim
    return native if n < 2 else native.transpose(n - 1, n - 2, *range(n - 2))


def quarters(shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """The four tiles of the logical shapes used here, row-major: rows and columns cut in two,
    the first half rounded up; a tile spans every trailing axis."""
    rows, cols = shape[:2]
    r, c = -(-rows // 2), -(-cols // 2)
    rest = tuple(slice(0, d) for d in shape[2:])
    return [
        (slice(r0, r1), slice(c0, c1), *rest)
        for r0, r1 in ((0, r), (r, rows))
        for c0, c1 in ((0, c), (c, cols))
    ]


def box_shape(box: tuple[slice, ...]) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in box)


def assert_tiled(values: np.ndarray, calls: list[Call], boxes, dtype: str) -> None:
    """The law was called once per box: tile t (row-major) with the box's shape and ``dtype``
    and the generator spawned as child (t,) of the parameter's stream, and ``values`` (logical)
    holds that call's result at box t, cast to ``dtype`` (and to the dtype the backend stores)."""
    by_tile = {call.spawn_key: call for call in calls}
    assert len(calls) == len(boxes) and sorted(by_tile) == [(t,) for t in range(len(boxes))]
    assert len({call.entropy for call in calls}) == 1  # children of one stream
    for t, box in enumerate(boxes):
        call = by_tile[(t,)]
        assert call.shape == box_shape(box) and call.dtype == np.dtype(dtype)
        expected = call.values.astype(dtype).astype(values.dtype)
        assert np.array_equal(values[box], expected), f"tile {t} is not at {box}"


def stored(dtype: str) -> str:
    """The dtype the backend makes tensors of ``dtype`` in (JAX without x64: float64 is float32)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # JAX warns that it truncates float64
        return keras.backend.standardize_dtype(keras.ops.zeros((1,), dtype=dtype).dtype)


def wide(name: str, inputs: int = 530) -> keras.Model:
    """A Dense kernel of logical shape (515, inputs): four tiles; its bias (515,) one."""
    return keras.Sequential([keras.Input((inputs,)), L.Dense(515, name="wide")], name=name)


def snapshot(model) -> dict[str, np.ndarray]:
    return {v.path: numpy_of(v.value) for v in model.weights}


def assert_unchanged(model, before: dict[str, np.ndarray]) -> None:
    after = snapshot(model)
    assert after.keys() == before.keys()
    changed = [path for path in before if not np.array_equal(before[path], after[path])]
    assert not changed, f"changed although apply failed: {changed}"


def test_the_boxes_written_here_are_the_stream_rules() -> None:
    # The tiling is tested elsewhere; this only guards the hand-written boxes of this file.
    for shape in ((515, 530), (256, 128, 3, 3), (515, 531)):
        assert [t.box for t in stream.tiling(shape).tiles()] == quarters(shape)
    for shape in ((64, 32), (16, 8, 3, 3), (515,)):
        assert len(stream.tiling(shape)) == 1


# --------------------------------------------------------------------------- one tile


@pytest.mark.parametrize("native_shape", [(32, 64), (3, 3, 8, 16), (515,)])
def test_a_one_tile_tensor_gets_the_numbers_of_a_whole_tensor_law(native_shape) -> None:
    tiled = Recorder("tests.keras.tiles.one_tile")
    whole = mi.custom(gauss, name="tests.keras.tiles.one_tile_whole")
    # Fresh initializers with one seed, each called once (an int seed advances per call).
    got = numpy_of(mi.compile(tiled.spec, "keras", seed=7)(native_shape, dtype="float32"))
    assert np.array_equal(got, numpy_of(mi.compile(whole, "keras", seed=7)(native_shape, dtype="float32")))
    namespaced = mik.custom(gauss, name="tests.keras.tiles.one_tile_ns", elementwise=True, seed=7)
    assert namespaced.spec.elementwise
    assert np.array_equal(got, numpy_of(namespaced(native_shape, dtype="float32")))
    # One call, for the whole logical tensor, whose result is the kernel in Keras' layout.
    [call] = tiled.calls
    assert call.shape == logical(np.empty(native_shape)).shape and call.dtype == np.float32
    assert call.spawn_key == ()  # the parameter's own stream, not a tile's
    assert np.array_equal(logical(got), call.values.astype(np.float32))


# --------------------------------------------------------------------------- several tiles, compiled


@pytest.mark.parametrize(
    "native_shape, dtype",
    [
        ((530, 515), "float32"),  # Dense(515) on 530 inputs: logical (515, 530)
        ((3, 3, 128, 256), "float32"),  # Conv2D(256, 3) on 128 channels: logical (256, 128, 3, 3)
        ((530, 515), "float16"),
        ((3, 3, 128, 256), "float64"),
    ],
)
def test_the_compiled_form_places_each_tile_in_keras_layout(native_shape, dtype) -> None:
    law = Recorder(f"tests.keras.tiles.compiled_{len(native_shape)}d_{dtype}")
    init = mi.compile(law.spec, "keras", seed=3)
    drawn = init(native_shape, dtype=dtype)
    got = numpy_of(drawn)
    assert got.shape == native_shape
    assert keras.backend.standardize_dtype(drawn.dtype) == stored(dtype)
    view = logical(got)
    assert_tiled(view, law.calls, quarters(view.shape), dtype)
    # The same seed in a fresh initializer replays the tiles; the next call of one instance does not.
    law.calls.clear()
    again = numpy_of(mi.compile(law.spec, "keras", seed=3)(native_shape, dtype=dtype))
    assert np.array_equal(got, again)
    assert len(law.calls) == 4
    following = numpy_of(init(native_shape, dtype=dtype))
    assert not np.array_equal(got, following)


def test_a_dense_layer_built_with_the_initializer_holds_the_tiles() -> None:
    law = Recorder("tests.keras.tiles.layer")
    layer = L.Dense(515, kernel_initializer=mi.compile(law.spec, "keras", seed=1), name="layer")
    layer.build((None, 530))
    assert_tiled(numpy_of(layer.kernel.value).T, law.calls, quarters((515, 530)), "float32")


# --------------------------------------------------------------------------- mi.apply


def test_portable_apply_draws_tile_t_from_the_spawned_stream() -> None:
    seed = 11
    law = Recorder("tests.keras.tiles.portable")
    model = wide("port")
    mi.apply(model, {"kernel": law.spec, "bias": law.spec}, seed=seed, portable=True)
    kernel = numpy_of(model.get_layer("wide").kernel.value).T  # (in, out) -> logical (515, 530)
    bias = numpy_of(model.get_layer("wide").bias.value)
    # Once per tile of the kernel, once for the bias.
    assert sorted(call.shape for call in law.calls) == sorted(
        [box_shape(b) for b in quarters((515, 530))] + [(515,)]
    )
    # Kernel at order 0, bias at order 1 (weights before biases, as tests/test_keras_apply.py).
    expected = np.empty((515, 530), dtype=np.float32)
    for t, box in enumerate(quarters((515, 530))):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0], spawn_key=(t,)))
        expected[box] = gauss(rng, box_shape(box), np.float32)
    assert np.array_equal(kernel, expected)
    assert np.array_equal(kernel, mi.reference.sample(law.spec, (515, 530), seed=(seed, 0)))
    # A one-tile bias draws from the parameter's own stream.
    own = gauss(np.random.default_rng(np.random.SeedSequence([seed, 1])), (515,), np.float32)
    assert np.array_equal(bias, own.astype(np.float32))


def test_native_apply_calls_the_law_once_per_tile_and_follows_the_seed() -> None:
    law = Recorder("tests.keras.tiles.native")
    kernels = []
    for seed in (3, 3, 4):
        model = wide("nat")
        law.calls.clear()
        mi.apply(model, {"kernel": law.spec}, seed=seed)
        kernels.append(numpy_of(model.get_layer("wide").kernel.value).T)
        assert_tiled(kernels[-1], law.calls, quarters((515, 530)), "float32")
    assert np.array_equal(kernels[0], kernels[1])
    assert not np.array_equal(kernels[0], kernels[2])


# --------------------------------------------------------------------------- reshaped layouts


def test_an_attention_kernel_holds_the_tiles_in_its_heads_layout() -> None:
    # A query kernel is (in, heads, head_dim): logical (heads * head_dim, in), not a transpose
    # of it, so its tiles cannot be written through a view; they must still land at their
    # place (this once assigned the logical array itself and failed on the shape).
    law = Recorder("tests.keras.tiles.attention")
    inputs = keras.Input((4, 530))
    attention = L.MultiHeadAttention(num_heads=5, key_dim=103, name="mha")
    model = keras.Model(inputs, attention(inputs, inputs), name="attn")
    mi.apply(model, [("*query/kernel", law.spec), ("*", None)], seed=5)
    native = numpy_of(attention.query_dense.kernel.value)
    assert native.shape == (530, 5, 103)
    assert_tiled(native.reshape(530, 515).T, law.calls, quarters((515, 530)), "float32")


# --------------------------------------------------------------------------- all or nothing

# A (515, 531) kernel's tiles have four different shapes; (257, 265) is the last, at (258, 266).
_LAST_TILE = (257, 265)


def nan_in_the_last_tile(rng, shape, dtype) -> np.ndarray:
    values = rng.standard_normal(shape)
    if tuple(shape) == _LAST_TILE:
        values[1, 2] = np.nan  # (259, 268) in the whole kernel
    return values


def raises_in_the_last_tile(rng, shape, dtype) -> np.ndarray:
    if tuple(shape) == _LAST_TILE:
        raise RuntimeError("the last tile failed")
    return rng.standard_normal(shape)


def aon() -> keras.Model:
    return keras.Sequential(
        [keras.Input((531,)), L.Dense(515, name="wide"), L.Dense(3, name="head")], name="aon"
    )


@pytest.mark.parametrize("portable", [False, True])
def test_a_nan_in_one_tile_names_the_tile_and_changes_nothing(portable) -> None:
    bad = mi.custom(nan_in_the_last_tile, name="tests.keras.tiles.nan", elementwise=True)
    model = aon()
    before = snapshot(model)
    rules = [("*wide/kernel", bad), ("kernel", mi.normal()), ("bias", mi.ones())]
    with pytest.raises(mi.LawError) as caught:
        mi.apply(model, rules, seed=0, portable=portable)
    message = str(caught.value)
    assert "'tests.keras.tiles.nan'" in message and "'aon/wide/kernel'" in message
    assert "for the tile at (258, 266) of shape (257, 265)" in message
    assert "(the first at index (259, 268))" in message
    assert_unchanged(model, before)


def test_an_exception_in_one_tile_changes_nothing() -> None:
    bad = mi.custom(raises_in_the_last_tile, name="tests.keras.tiles.raises", elementwise=True)
    model = aon()
    before = snapshot(model)
    with pytest.raises(mi.LawError, match="the last tile failed") as caught:
        mi.apply(model, [("*wide/kernel", bad), ("bias", mi.ones())], seed=0)
    message = str(caught.value)
    assert "'tests.keras.tiles.raises'" in message and "'aon/wide/kernel'" in message
    assert "for the tile at (258, 266) of shape (257, 265)" in message
    causes, cause = [], caught.value.__cause__
    while cause is not None:  # the user's exception is chained, not lost
        causes.append(cause)
        cause = cause.__cause__
    assert any(type(c) is RuntimeError and str(c) == "the last tile failed" for c in causes)
    assert_unchanged(model, before)


def test_the_compiled_form_raises_for_a_bad_tile_too() -> None:
    counter = {"calls": 0}
    lock = threading.Lock()

    def counted(rng, shape, dtype):
        with lock:
            counter["calls"] += 1
        return nan_in_the_last_tile(rng, shape, dtype)

    bad = mi.custom(counted, name="tests.keras.tiles.compiled_nan", elementwise=True)
    with pytest.raises(mi.LawError) as caught:
        mi.compile(bad, "keras", seed=0)((531, 515), dtype="float32")  # logical (515, 531)
    message = str(caught.value)
    assert "'tests.keras.tiles.compiled_nan'" in message
    assert "for the tile at (258, 266) of shape (257, 265)" in message
    assert "(the first at index (259, 268))" in message
    assert counter["calls"] == 4  # every tile ran before the error was raised
    raising = mi.custom(raises_in_the_last_tile, name="tests.keras.tiles.compiled_raises", elementwise=True)
    with pytest.raises(mi.LawError, match="the last tile failed"):
        mi.compile(raising, "keras", seed=0)((531, 515), dtype="float32")


# --------------------------------------------------------------------------- serialization


def test_keras_serialization_keeps_elementwise() -> None:
    law = Recorder("tests.keras.tiles.serialized")
    init = mi.compile(law.spec, "keras", seed=21)
    serialized = json.loads(json.dumps(keras.initializers.serialize(init)))
    assert serialized["config"]["spec"] == {
        "kind": "custom",
        "name": "tests.keras.tiles.serialized",
        "elementwise": True,
    }
    expected = numpy_of(init((530, 515), dtype="float32"))  # call 0 of the original
    for restored in (
        keras.initializers.deserialize(serialized),
        keras.initializers.get(serialized),
        mik.MultiinitInitializer.from_config(json.loads(json.dumps(init.get_config()))),
        init.clone(),
    ):
        assert isinstance(restored, mik.MultiinitInitializer)
        assert restored.spec == law.spec and restored.spec.elementwise is True and restored.seed == 21
        law.calls.clear()
        got = numpy_of(restored((530, 515), dtype="float32"))  # call 0 again: the same tiles
        assert np.array_equal(got, expected)
        assert_tiled(got.T, law.calls, quarters((515, 530)), "float32")
    # Without the flag the config has no key, and the law is called once for the whole tensor.
    whole = Recorder("tests.keras.tiles.serialized_plain", elementwise=False)
    serialized = keras.initializers.serialize(mi.compile(whole.spec, "keras", seed=21))
    assert serialized["config"]["spec"] == {"kind": "custom", "name": "tests.keras.tiles.serialized_plain"}
    restored = keras.initializers.deserialize(serialized)
    assert restored.spec.elementwise is False
    restored((530, 515), dtype="float32")
    assert [(call.shape, call.spawn_key) for call in whole.calls] == [((515, 530), ())]


def test_a_cloned_model_keeps_the_elementwise_initializer() -> None:
    law = Recorder("tests.keras.tiles.cloned")
    model = keras.Sequential(
        [
            keras.Input((530,)),
            L.Dense(515, kernel_initializer=mi.compile(law.spec, "keras", seed=2), name="d"),
        ]
    )
    law.calls.clear()
    clone = keras.models.clone_model(model)
    restored = clone.get_layer("d").kernel_initializer
    assert restored.spec.elementwise is True and restored is not model.get_layer("d").kernel_initializer
    kernel = numpy_of(clone.get_layer("d").kernel.value)
    assert_tiled(kernel.T, law.calls, quarters((515, 530)), "float32")
    # A fresh instance from the config, at its call 0: the original layer's kernel again.
    assert np.array_equal(kernel, numpy_of(model.get_layer("d").kernel.value))
