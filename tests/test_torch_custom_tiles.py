"""``mi.custom(fn, elementwise=True)`` in the torch adapter: on a tensor of one tile of the
stream rule it draws exactly what ``elementwise=False`` draws; on a tensor of several tiles the
compiled filler (``mi.compile(spec, "torch")`` and the ``multiinit.torch`` namespace) calls the
law once per tile, each with its own generator, and the tensor holds each tile's result at the
tile's box, in float16/float32/float64 and, rounded by torch, bfloat16; ``mi.apply`` does the
same in native and portable mode (portable: the reference's numbers, recomputed here by hand,
transposed convs in their stored layout); and a failure in one tile changes nothing, neither
the tensor of a compiled call nor any parameter of a model. (DTensor shards:
tests/test_torch_sharded.py.)"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import multiinit as mi
import multiinit.torch as mit
from multiinit import reference

# Both multi-tile shapes have 4 to 15 times MIN_TILE (65536) elements: a 2x2 grid.
DENSE = (515, 530)  # nn.Linear(530, 515).weight: rows 258 + 257, cols 265 + 265
CONV = (128, 256, 3, 3)  # rows 64 + 64, cols 128 + 128, each tile spans the kernel


def _uniform(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    return rng.uniform(-1, 1, shape).astype(dtype)


def _boxes(shape) -> list[tuple[slice, ...]]:
    """The tile boxes of a 2x2 grid by hand, row-major: each axis halved, the first half
    rounded up; trailing axes whole."""
    rows, cols, *rest = shape
    r, c = -(-rows // 2), -(-cols // 2)
    trailing = tuple(slice(0, d) for d in rest)
    return [
        (slice(r0, r1), slice(c0, c1), *trailing)
        for r0, r1 in ((0, r), (r, rows))
        for c0, c1 in ((0, c), (c, cols))
    ]


def _size(box) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in box)


@dataclass(frozen=True)
class Call:
    tile: tuple[int, ...]  # the spawn key of the generator the law got: (t,) for tile t
    entropy: tuple[int, ...]  # the stream key it was spawned from
    shape: tuple[int, ...]
    dtype: np.dtype
    values: np.ndarray


class Recorder:
    """A user law that keeps every call (from any thread: list.append is atomic): which
    generator it got, the shape and dtype asked for, and a copy of what it returned."""

    def __init__(self, fn=_uniform) -> None:
        self.fn = fn
        self.calls: list[Call] = []

    def __call__(self, rng: np.random.Generator, shape, dtype) -> np.ndarray:
        seq = rng.bit_generator.seed_seq
        values = self.fn(rng, shape, dtype)
        entropy = tuple(int(k) for k in np.atleast_1d(seq.entropy))
        self.calls.append(Call(tuple(seq.spawn_key), entropy, tuple(shape), np.dtype(dtype), values.copy()))
        return values


def _placed(recorder: Recorder, shape, dtype) -> np.ndarray:
    """The recorded results at their hand-computed boxes, after checking that the law was
    called once per tile, with the tile's shape and its own fresh generator of one key."""
    boxes = _boxes(shape)
    calls = {c.tile: c for c in recorder.calls}
    assert len(recorder.calls) == len(boxes) == 4
    assert sorted(calls) == [(t,) for t in range(len(boxes))]
    assert len({c.entropy for c in recorder.calls}) == 1  # one stream key for the tensor
    out = np.full(shape, np.nan, dtype=dtype)
    for t, box in enumerate(boxes):
        call = calls[(t,)]
        assert call.shape == _size(box), t
        # A fresh generator of the stream rule for tile t gives what the law got.
        rng = np.random.default_rng(np.random.SeedSequence(list(call.entropy), spawn_key=(t,)))
        assert np.array_equal(recorder.fn(rng, call.shape, call.dtype), call.values), t
        out[box] = call.values
    return out


def _own_tiles(fn, key, shape, dtype=np.float32) -> np.ndarray:
    """Portable values by the stream rule, by hand: tile t from SeedSequence(key, spawn_key=(t,))."""
    out = np.empty(shape, dtype=dtype)
    for t, box in enumerate(_boxes(shape)):
        rng = np.random.default_rng(np.random.SeedSequence(list(key), spawn_key=(t,)))
        out[box] = fn(rng, _size(box), np.dtype(dtype))
    return out


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- one tile


@pytest.mark.parametrize("shape", [(64, 32), (16, 8, 3, 3), (1000,), (256, 256)])
def test_one_tile_elementwise_draws_the_numbers_of_a_whole_tensor_law(shape) -> None:
    # (256, 256) is exactly MIN_TILE elements: still one tile.
    recorder = Recorder()
    whole = torch.zeros(shape)
    tiled = torch.zeros(shape)
    mi.compile(mi.custom(_uniform, name="torch.tiles.whole"), "torch")(whole, generator=_gen(5))
    mi.compile(mi.custom(recorder, name="torch.tiles.one", elementwise=True), "torch")(
        tiled, generator=_gen(5)
    )
    assert torch.equal(whole, tiled)
    assert float(tiled.abs().min()) > 0  # the law wrote every element
    # One call, for the whole tensor, with the parameter's own (unspawned) generator.
    assert [(c.tile, c.shape) for c in recorder.calls] == [((), tuple(shape))]
    assert np.array_equal(tiled.numpy(), recorder.calls[0].values)
    # The namespace's filler is the same law.
    named = torch.zeros(shape)
    mit.custom(_uniform, name="torch.tiles.one_ns", elementwise=True)(named, generator=_gen(5))
    assert torch.equal(named, whole)


# --------------------------------------------------------------------------- several tiles, compiled


@pytest.mark.parametrize(
    "shape, dtype",
    [(DENSE, torch.float32), (CONV, torch.float32), (DENSE, torch.float64), (DENSE, torch.float16)],
)
def test_a_compiled_call_draws_each_tile_once_at_its_box(shape, dtype) -> None:
    recorder = Recorder()
    fill_ = mi.compile(mi.custom(recorder, name="torch.tiles.compiled", elementwise=True), "torch")
    tensor = torch.empty(shape, dtype=dtype)
    assert fill_(tensor, generator=_gen(1)) is tensor
    numpy_dtype = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}[dtype]
    assert {c.dtype for c in recorder.calls} == {np.dtype(numpy_dtype)}  # the tensor's own dtype
    expected = _placed(recorder, shape, numpy_dtype)
    assert tensor.dtype == dtype and bool(torch.isfinite(tensor).all())
    assert np.array_equal(tensor.numpy(), expected)  # torch layout = logical
    # The generator makes it reproducible; another seed draws other numbers.
    again, other = torch.empty(shape, dtype=dtype), torch.empty(shape, dtype=dtype)
    fill_(again, generator=_gen(1))
    fill_(other, generator=_gen(2))
    assert torch.equal(again, tensor) and not torch.equal(other, tensor)


def test_bfloat16_gets_the_float32_tiles_rounded_by_torch() -> None:
    # NumPy has no bfloat16: the law draws float32 tiles, torch rounds them once.
    recorder = Recorder()
    tensor = torch.empty(DENSE, dtype=torch.bfloat16)
    mi.compile(mi.custom(recorder, name="torch.tiles.bf16", elementwise=True), "torch")(
        tensor, generator=_gen(3)
    )
    assert {c.dtype for c in recorder.calls} == {np.dtype(np.float32)}
    expected = torch.from_numpy(_placed(recorder, DENSE, np.float32)).to(torch.bfloat16)
    assert tensor.dtype == torch.bfloat16 and bool(torch.isfinite(tensor).all())
    assert torch.equal(tensor, expected)


def test_the_torch_namespace_builds_an_elementwise_filler() -> None:
    recorder = Recorder()
    fill_ = mit.custom(recorder, name="torch.tiles.ns", elementwise=True)
    assert isinstance(fill_, mit.TorchInitializer)
    assert fill_.spec == mi.custom(recorder, name="torch.tiles.ns", elementwise=True)
    tensor = torch.empty(DENSE)
    assert fill_(tensor, generator=_gen(4)) is tensor
    assert np.array_equal(tensor.numpy(), _placed(recorder, DENSE, np.float32))

    # The decorator form too, and it is the compiled form of the same spec.
    @mit.custom(name="torch.tiles.ns_decorated", elementwise=True)
    def decorated(rng, shape, dtype):
        return _uniform(rng, shape, dtype)

    assert decorated.spec.elementwise
    by_compile = torch.empty(DENSE)
    mi.compile(decorated.spec, "torch")(by_compile, generator=_gen(4))
    assert torch.equal(decorated(torch.empty(DENSE), generator=_gen(4)), by_compile)


# --------------------------------------------------------------------------- one tile fails


class FailsOnce:
    """A law that fails in ONE tile: NaN in tile 2 (by its generator's spawn key), a wrong
    shape in tile 3, or an exception on its third call (a counter under a lock: tiles run on
    several threads)."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, rng, shape, dtype):
        with self.lock:
            self.count += 1
            count = self.count
        tile = rng.bit_generator.seed_seq.spawn_key
        values = _uniform(rng, shape, dtype)
        if self.how == "nan" and tile == (2,):
            values[1, 2] = np.nan
        if self.how == "shape" and tile == (3,):
            return values[:-1]
        if self.how == "raise" and count == 3:
            raise RuntimeError("the third tile's call failed")
        return values


# What each failure's message says beyond the law's name (and the path, in mi.apply).
FAILURES = {
    # Tile 2 starts at (258, 0); (1, 2) in it is (259, 2) in the whole tensor.
    "nan": (
        mi.LawError,
        r"1 NaN values for the tile at \(258, 0\) of shape \(257, 265\) \(the first at index \(259, 2\)\)",
    ),
    # Tile 3 starts at (258, 265).
    "shape": (mi.LawShapeError, r"shape \(256, 265\) for the tile at \(258, 265\) of shape \(257, 265\)"),
    "raise": (
        mi.LawError,
        r"RuntimeError: the third tile's call failed \(for the tile at \(\d+, \d+\) of shape \(\d+, 265\)\)",
    ),
}


@pytest.mark.parametrize("how", sorted(FAILURES))
def test_a_failing_tile_leaves_the_tensor_of_a_compiled_call_as_it_was(how) -> None:
    error, message = FAILURES[how]
    name = f"torch.tiles.fails_{how}"
    fill_ = mi.compile(mi.custom(FailsOnce(how), name=name, elementwise=True), "torch")
    tensor = torch.full(DENSE, 7.0)
    with pytest.raises(error, match=rf"'{re.escape(name)}'.*{message}"):
        fill_(tensor, generator=_gen(0))
    assert bool((tensor == 7.0).all())  # not one tile written


def _chain() -> nn.Module:
    # 2.weight is the multi-tile one; 0.weight and the biases come before and after it.
    return nn.Sequential(nn.Linear(64, 530), nn.ReLU(), nn.Linear(530, 515))


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("how", sorted(FAILURES))
def test_apply_is_all_or_nothing_when_one_tile_fails(how, portable) -> None:
    error, message = FAILURES[how]
    name = f"torch.tiles.apply_fails_{how}"
    net = _chain()
    before = _snapshot(net)
    law = mi.custom(FailsOnce(how), name=name, elementwise=True)
    rules = {"0.weight": mi.normal(), "2.weight": law, "bias": mi.uniform(-1, 1)}
    with pytest.raises(error, match=rf"'{re.escape(name)}'.*'2\.weight'.*{message}"):
        mi.apply(net, rules, seed=3, portable=portable)
    after = _snapshot(net)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    # Control: the same rules with a law that does not fail change every parameter.
    rules["2.weight"] = mi.custom(_uniform, name=f"{name}_control", elementwise=True)
    mi.apply(net, rules, seed=3, portable=portable)
    assert all(not torch.equal(v, before[k]) for k, v in net.state_dict().items())


# --------------------------------------------------------------------------- mi.apply


def _tiled_net() -> nn.Module:
    # A dense weight and a transposed conv, stored (in, out, k, k) = logical (out, in, k, k)
    # swapped: both of 2x2 tiles.
    return nn.Sequential(nn.Linear(530, 515), nn.ReLU(), nn.ConvTranspose2d(256, 128, 3))


def test_native_apply_draws_each_tile_once_and_reproduces_its_seed() -> None:
    dense, conv = Recorder(), Recorder()
    rules = {
        "0.weight": mi.custom(dense, name="torch.tiles.native_dense", elementwise=True),
        "2.weight": mi.custom(conv, name="torch.tiles.native_conv", elementwise=True),
        "bias": mi.zeros(),
    }
    net = mi.apply(_tiled_net(), rules, seed=4)
    assert np.array_equal(net[0].weight.detach().numpy(), _placed(dense, DENSE, np.float32))
    logical = net[2].weight.detach().numpy().transpose(1, 0, 2, 3)  # (in, out, k, k) -> (out, in, k, k)
    assert np.array_equal(logical, _placed(conv, CONV, np.float32))
    assert {dense.calls[0].entropy} != {conv.calls[0].entropy}  # each parameter its own key
    # Same seed, same numbers; another seed, others.
    dense.calls.clear(), conv.calls.clear()
    same = mi.apply(_tiled_net(), rules, seed=4)
    assert len(dense.calls) == len(conv.calls) == 4  # once per tile again
    other = mi.apply(_tiled_net(), rules, seed=5)
    for a, b, c in zip(net.parameters(), same.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)
        assert a.dim() == 1 or not torch.equal(a, c)  # the biases are zeros


def test_portable_apply_writes_the_reference_tiles_in_torch_layout() -> None:
    seed = 11
    law = mi.custom(_uniform, name="torch.tiles.portable", elementwise=True)
    net = _tiled_net()
    # Weights before biases, layer order (as tests/test_torch_apply.py states it).
    assert [(p.path, p.order) for p in mit.params_of(net)] == [
        ("0.weight", 0),
        ("0.bias", 1),
        ("2.weight", 2),
        ("2.bias", 3),
    ]
    mi.apply(net, {"weight": law, "bias": mi.zeros()}, seed=seed, portable=True)
    got = {
        "0.weight": (net[0].weight.detach().numpy(), DENSE, 0),
        "2.weight": (net[2].weight.detach().numpy().transpose(1, 0, 2, 3), CONV, 2),
    }
    for path, (logical, shape, order) in got.items():
        assert logical.shape == shape, path
        assert np.array_equal(logical, _own_tiles(_uniform, (seed, order), shape)), path
        assert np.array_equal(logical, reference.sample(law, shape, seed=(seed, order))), path
    assert float(net[0].bias.detach().abs().max()) == 0 == float(net[2].bias.detach().abs().max())
