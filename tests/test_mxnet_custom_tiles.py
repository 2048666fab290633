"""``custom(fn, elementwise=True)`` in the MXNet adapter: a user law drawn tile by tile.

What is checked here, against expectations built by hand (the tile boxes are written out, the
portable numbers recomputed from NumPy's ``SeedSequence``; ``reference.sample`` only as a second
check): a one-tile tensor keeps the numbers of ``elementwise=False`` (compiled form, namespace,
Gluon ``net.initialize``); a tensor of several tiles calls the law once per tile and holds
exactly the arrays it returned, each at its tile's box (compiled form in both array modes and
two dtypes, ``net.initialize`` on a Dense and a Conv2D); tile t of a seeded native draw comes
from child t of the documented key ``(derive_seed(seed, k),)``; ``mi.apply`` in portable mode
(also on a channels-last conv, whose weight MXNet stores ``(out, kh, kw, in)``) and in native
mode; a NaN or an exception in ONE tile is a ``LawError`` and ``mi.apply`` writes nothing.
"""

from __future__ import annotations

import re

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import multiinit as mi
from multiinit import mxnet as mim, reference, stream
from multiinit.mxnet import params_of

from test_mxnet_initializer import mode  # noqa: F401 - the nd / np array-mode fixture

InitDesc = mx.init.InitDesc

SEED = 11

# The stream rule's 2x2 grids, written out by hand (row-major tile order):
# (515, 530) = 265_950 elements >= 4 * 65536 -> rows 258 + 257, columns 265 + 265;
# (99, 301, 3, 3) = 268_191 elements -> rows 50 + 49, columns 151 + 150, every kh, kw.
DENSE = (515, 530)
DENSE_BOXES = [
    (slice(0, 258), slice(0, 265)),
    (slice(0, 258), slice(265, 530)),
    (slice(258, 515), slice(0, 265)),
    (slice(258, 515), slice(265, 530)),
]
CONV = (99, 301, 3, 3)
_K = (slice(0, 3), slice(0, 3))
CONV_BOXES = [
    (slice(0, 50), slice(0, 151), *_K),
    (slice(0, 50), slice(151, 301), *_K),
    (slice(50, 99), slice(0, 151), *_K),
    (slice(50, 99), slice(151, 301), *_K),
]
BOXES = {DENSE: DENSE_BOXES, CONV: CONV_BOXES}


def _shape(box) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in box)


def gauss(rng, shape, dtype):
    """The law under test: float64 on purpose, so the cast to the parameter's dtype is seen."""
    return rng.standard_normal(shape) * 0.5 + 0.25


class Recorder:
    """``gauss``, recording every call's shape, dtype and returned array (called from the
    pool's threads: list.append is atomic)."""

    def __init__(self, law=gauss) -> None:
        self.law = law
        self.calls: list[tuple[tuple[int, ...], str, np.ndarray]] = []

    def __call__(self, rng, shape, dtype):
        values = self.law(rng, shape, dtype)
        self.calls.append((tuple(shape), np.dtype(dtype).name, values))
        return values


def assert_tiles_placed(logical: np.ndarray, calls, boxes, dtype) -> None:
    """``logical`` is exactly the recorded arrays, cast to ``dtype``, one at each box: every
    box matches exactly one recorded call of its shape, and every call is used once."""
    assert logical.dtype == np.dtype(dtype)
    assert sorted(shape for shape, _, _ in calls) == sorted(_shape(b) for b in boxes)
    unused = list(range(len(calls)))
    for box in boxes:
        found = [
            i
            for i in unused
            if calls[i][0] == _shape(box) and np.array_equal(logical[box], calls[i][2].astype(dtype))
        ]
        assert len(found) == 1, f"tile {box}: {len(found)} recorded calls match it"
        unused.remove(found[0])
    assert not unused


def by_hand(key: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """The stream rule from NumPy alone: tile t (row-major, boxes above) is ``gauss`` drawn
    from default_rng(SeedSequence(key, spawn_key=(t,))), cast once to float32."""
    out = np.empty(shape, np.float32)
    for t, box in enumerate(BOXES[shape]):
        rng = np.random.default_rng(np.random.SeedSequence(list(key), spawn_key=(t,)))
        out[box] = gauss(rng, _shape(box), np.dtype("float32")).astype(np.float32)
    return out


def derived(seed: int, k: int) -> int:
    """The documented native base of call/parameter k: SeedSequence([seed, k])'s first word."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def zeros(shape, dtype="float32"):
    """An array of the current mode's kind."""
    if mx.util.is_np_array():
        return mx.np.zeros(shape, dtype=dtype)
    return mx.nd.zeros(shape, dtype=dtype)


def fill(init, shape, dtype="float32") -> np.ndarray:
    arr = zeros(shape, dtype)
    init(InitDesc("layer_weight"), arr)
    return arr.asnumpy()


def test_the_hand_written_boxes_are_the_stream_rule_tiles() -> None:
    # The tiling itself is tested in test_stream.py; this only guards the constants above.
    for shape, boxes in BOXES.items():
        assert [t.box for t in stream.tiling(shape).tiles()] == boxes


# --------------------------------------------------------------------------- one tile


@pytest.mark.usefixtures("mode")
@pytest.mark.parametrize("shape", [(64, 32), (8, 16, 3, 3), (515,)])
def test_one_tile_elementwise_keeps_the_numbers_of_the_plain_law(shape) -> None:
    tiled, whole = Recorder(), Recorder()
    a = fill(mi.compile(mi.custom(tiled, name="test_mx_tiles.one", elementwise=True), "mxnet", seed=5), shape)
    b = fill(mim.custom(whole, name="test_mx_tiles.one_whole", seed=5), shape)
    np.testing.assert_array_equal(a, b)
    # One tile: one call, for the whole tensor, in the array's dtype.
    assert [c[:2] for c in tiled.calls] == [(shape, "float32")]
    assert [c[:2] for c in whole.calls] == [(shape, "float32")]


def test_several_tiles_are_not_the_numbers_of_one_call() -> None:
    # The contrast that keeps the test above from passing by accident: on (515, 530) the
    # elementwise law is called per tile and its numbers differ from the one-call law's.
    tiled, whole = Recorder(), Recorder()
    a = fill(mim.custom(tiled, name="test_mx_tiles.many", elementwise=True, seed=5), DENSE)
    b = fill(mim.custom(whole, name="test_mx_tiles.many_whole", seed=5), DENSE)
    assert len(tiled.calls) == 4 and [c[0] for c in whole.calls] == [DENSE]
    assert not np.array_equal(a, b)


def test_gluon_initialize_on_a_one_tile_dense_matches_the_plain_law() -> None:
    net = nn.Dense(32, in_units=64)
    net.initialize()
    weights = []
    for elementwise in (True, False):
        mx.random.seed(3)  # unseeded initializers draw their stream from MXNet's generator
        net.initialize(
            mim.custom(gauss, name="test_mx_tiles.gluon_one", elementwise=elementwise), force_reinit=True
        )
        weights.append(net.weight.data().asnumpy().copy())
    np.testing.assert_array_equal(weights[0], weights[1])


# --------------------------------------------------------------------------- several tiles


@pytest.mark.usefixtures("mode")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("shape", [DENSE, CONV])
def test_the_compiled_form_calls_the_law_per_tile_and_places_each_result(shape, dtype) -> None:
    law = Recorder()
    init = mi.compile(mi.custom(law, name="test_mx_tiles.compiled", elementwise=True), "mxnet", seed=2)
    native = fill(init, shape, dtype)
    # MXNet stores (out, in, kh, kw): the native array is the logical view.
    assert all(d == dtype for _, d, _ in law.calls)
    assert_tiles_placed(native, law.calls, BOXES[shape], dtype)


@pytest.mark.parametrize("shape", [DENSE, CONV])
def test_a_seeded_compiled_draw_gives_tile_t_its_own_stream(shape) -> None:
    # The placement check cannot tell apart two tiles of one shape (tiles 0 and 1 here);
    # the documented native stream can: call k of a seeded initializer has the key
    # (derive_seed(seed, k),), and tile t draws from that key's child t.
    init = mim.custom(gauss, name="test_mx_tiles.streams", elementwise=True, seed=2)
    first, second = fill(init, shape), fill(init, shape)
    np.testing.assert_array_equal(first, by_hand((derived(2, 0),), shape))
    np.testing.assert_array_equal(second, by_hand((derived(2, 1),), shape))


def _gluon_net(layout: str = "NCHW") -> nn.Sequential:
    net = nn.Sequential()
    net.add(nn.Dense(515, in_units=530), nn.Conv2D(99, 3, in_channels=301, layout=layout))
    net.initialize()
    return net


def test_gluon_initialize_with_the_namespace_law_tiles_dense_and_conv() -> None:
    net = _gluon_net()
    law = Recorder()
    net.initialize(mim.custom(law, name="test_mx_tiles.gluon", elementwise=True), force_reinit=True)
    dense, conv = net[0].weight.data().asnumpy(), net[1].weight.data().asnumpy()
    assert dense.shape == DENSE and conv.shape == CONV
    assert len(law.calls) == 8  # 4 tiles per weight; the biases keep their own "zeros"
    assert_tiles_placed(dense, [c for c in law.calls if len(c[0]) == 2], DENSE_BOXES, "float32")
    assert_tiles_placed(conv, [c for c in law.calls if len(c[0]) == 4], CONV_BOXES, "float32")
    assert not net[0].bias.data().asnumpy().any() and not net[1].bias.data().asnumpy().any()


# --------------------------------------------------------------------------- mi.apply

# 0.weight, 0.bias, 1.weight, 1.bias: layer order, a layer's weight before its bias (counted by
# hand, as test_mxnet_apply.py's EXPECTED does). The conv is channels-last: MXNet stores its
# weight (out, kh, kw, in), logical (out, in, kh, kw).
ORDER = {"0.weight": 0, "0.bias": 1, "1.weight": 2, "1.bias": 3}


def weights(net) -> dict[str, np.ndarray]:
    """The two weights' logical views, undone by hand from MXNet's storage."""
    conv = net[1].weight.data().asnumpy()
    assert conv.shape == (99, 3, 3, 301)
    return {"0.weight": net[0].weight.data().asnumpy(), "1.weight": np.moveaxis(conv, 3, 1)}


def snapshot(net) -> dict[str, np.ndarray]:
    return {path: p.data().asnumpy().copy() for path, p in net._collect_params_with_prefix().items()}


def test_the_orders_are_the_hand_counted_ones() -> None:
    assert {p.path: p.order for p in params_of(_gluon_net("NHWC"))} == ORDER


def test_portable_apply_is_the_stream_rule_recomputed_by_hand() -> None:
    net = _gluon_net("NHWC")
    law = Recorder()
    spec = mi.custom(law, name="test_mx_tiles.portable", elementwise=True)
    mi.apply(net, {"weight": spec, "bias": mi.constant(0.5)}, seed=SEED, portable=True)
    assert len(law.calls) == 8  # once per tile of each weight
    for path, shape in (("0.weight", DENSE), ("1.weight", CONV)):
        order = ORDER[path]
        # Tile t draws from default_rng(SeedSequence([seed, order], spawn_key=(t,))), cast once.
        expected = by_hand((SEED, order), shape)
        got = weights(net)[path]
        np.testing.assert_array_equal(got, expected, err_msg=path)
        # Second check: the documented portable value.
        np.testing.assert_array_equal(
            got,
            reference.sample(
                mi.custom(gauss, name="test_mx_tiles.ref", elementwise=True), shape, seed=(SEED, order)
            ),
        )
    assert (net[0].bias.data().asnumpy() == 0.5).all() and (net[1].bias.data().asnumpy() == 0.5).all()


def test_native_apply_is_reproducible_tiled_and_seed_dependent() -> None:
    runs = []
    for seed in (3, 3, 4):
        net = _gluon_net("NHWC")
        law = Recorder()
        mi.apply(net, {"weight": mi.custom(law, name="test_mx_tiles.native", elementwise=True)}, seed=seed)
        got = weights(net)
        # Once per tile of each weight, and each tile's array at its box in the logical view.
        assert len(law.calls) == 8
        assert_tiles_placed(got["0.weight"], [c for c in law.calls if len(c[0]) == 2], DENSE_BOXES, "float32")
        assert_tiles_placed(got["1.weight"], [c for c in law.calls if len(c[0]) == 4], CONV_BOXES, "float32")
        runs.append(got)
    for path in ORDER:
        if path.endswith("weight"):
            np.testing.assert_array_equal(runs[0][path], runs[1][path], err_msg=path)
            for box in BOXES[runs[0][path].shape]:  # every tile's stream depends on the seed
                assert not np.array_equal(runs[0][path][box], runs[2][path][box]), (path, box)


def test_native_apply_gives_tile_t_of_parameter_k_its_own_stream() -> None:
    # As above, for mi.apply: parameter k draws from the key (derive_seed(seed, k),).
    net = _gluon_net("NHWC")
    mi.apply(net, {"weight": mi.custom(gauss, name="test_mx_tiles.apply_streams", elementwise=True)}, seed=3)
    got = weights(net)
    for path, shape in (("0.weight", DENSE), ("1.weight", CONV)):
        np.testing.assert_array_equal(got[path], by_hand((derived(3, ORDER[path]),), shape), err_msg=path)


# --------------------------------------------------------------------------- all or nothing


def _nan_in_last_conv_tile(rng, shape, dtype):
    values = gauss(rng, shape, dtype)
    if shape == (49, 150, 3, 3):  # only the conv's last tile, which starts at (50, 151)
        values[1, 2, 0, 1] = np.nan
    return values


def _raise_in_last_conv_tile(rng, shape, dtype):
    if shape == (49, 150, 3, 3):
        raise ValueError("tile refused")
    return gauss(rng, shape, dtype)


NAN_MESSAGE = (
    "custom law 'test_mx_tiles.nan' at '1.weight' returned 1 NaN values for the tile at "
    "(50, 151, 0, 0) of shape (49, 150, 3, 3) (the first at index (51, 153, 0, 1))"
)


@pytest.mark.parametrize("portable", [False, True])
def test_a_nan_in_one_tile_fails_apply_and_writes_nothing(portable) -> None:
    net = _gluon_net("NHWC")
    before = snapshot(net)
    law = Recorder(_nan_in_last_conv_tile)
    rules = {
        "weight": mi.custom(law, name="test_mx_tiles.nan", elementwise=True),
        "bias": mi.constant(5.0),
    }
    with pytest.raises(mi.LawError, match=re.escape(NAN_MESSAGE)):
        mi.apply(net, rules, seed=SEED, portable=portable)
    # The dense weight (drawn first, all its tiles fine) and the biases were not written either.
    assert len(law.calls) == 8
    after = snapshot(net)
    assert after.keys() == before.keys()
    for path in before:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)


@pytest.mark.parametrize("portable", [False, True])
def test_an_exception_in_one_tile_fails_apply_and_writes_nothing(portable) -> None:
    net = _gluon_net("NHWC")
    before = snapshot(net)
    rules = {
        "weight": mi.custom(_raise_in_last_conv_tile, name="test_mx_tiles.raises", elementwise=True),
        "bias": mi.constant(5.0),
    }
    with pytest.raises(
        mi.LawError,
        match=re.escape(
            "custom law 'test_mx_tiles.raises' at '1.weight' raised ValueError: tile refused "
            "(for the tile at (50, 151, 0, 0) of shape (49, 150, 3, 3))"
        ),
    ) as info:
        mi.apply(net, rules, seed=SEED, portable=portable)
    assert isinstance(info.value.__cause__, ValueError)
    after = snapshot(net)
    for path in before:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)


@pytest.mark.usefixtures("mode")
def test_the_compiled_form_raises_for_one_bad_tile_and_leaves_the_array() -> None:
    arr = zeros(CONV) + 7.0
    init = mi.compile(
        mi.custom(_nan_in_last_conv_tile, name="test_mx_tiles.nan", elementwise=True), "mxnet", seed=0
    )
    with pytest.raises(mi.LawError, match=re.escape(NAN_MESSAGE.replace("'1.weight'", "'layer_weight'"))):
        init(InitDesc("layer_weight"), arr)
    assert (arr.asnumpy() == 7.0).all()  # drawn and checked before the array is touched
