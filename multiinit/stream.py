"""The stream rule: how a seed becomes a parameter's values, computable per shard.

A parameter's values depend only on its *key* (the user's seed and the parameter's position
``order`` in the model), its spec, its logical shape, its dtype -- and, outside portable mode, the
backend and device type. Never on how the parameter is sharded: any shard of it can be computed
alone, with no communication, and gathering the shards gives exactly the unsharded values.

**Tiles.** The logical ``(out, in, *spatial)`` tensor is cut into a grid of tiles along its first
two logical axes (a tile spans every trailing axis); a 1-D tensor along its only axis. How many
tiles depends on the logical shape alone (``tiling``): as many as keep each tile at least
``MIN_TILE`` elements, at most ``MAX_SPLIT`` per axis (``MAX_SPLIT_1D`` for 1-D), a power of two
each, so the shards of dims divisible by ``MAX_SPLIT * world size`` hold whole tiles. Tiles are
numbered row-major over the grid.

**Elementwise laws** (constant, uniform, normal, the truncated family, variance scaling and its
named forms, custom functions built with ``elementwise=True``, mixtures of these) draw every tile
from its own stream; a shard draws only the tiles it overlaps. **Whole-tensor laws** (orthogonal,
sparse, eye, dirac, other custom functions, a mixture with such a component) draw the whole
logical tensor from the parameter's own stream; a shard computes it and keeps its part (eye and
dirac, being deterministic, are computed per shard directly by the adapters).

**Portable mode** (the NumPy reference, identical numbers in every framework): the parameter's own
stream is ``numpy.random.default_rng(SeedSequence([seed, order]))``; tile ``t`` of a tensor of
more than one tile draws from ``default_rng(SeedSequence([seed, order], spawn_key=(t,)))`` (NumPy's
own mechanism for independent child streams); a tensor of one tile uses the parameter's stream, so
small tensors keep the values they always had. Within a tile, the law is the reference's
(``multiinit.reference``), with the fans of the whole tensor.

**Native streams** are each adapter's, under the same tiling where the framework's generator is
sequential (torch: one generator per tile, seeded with ``tile_seed``); JAX's partitionable threefry
is already independent of sharding, so the Flax adapter draws whole tensors.

>>> t = tiling((4096, 4096))
>>> len(t), t.tile_shape(0)
(256, (256, 256))
>>> [tile.index for tile in t.tiles(box=(slice(0, 256), slice(0, 4096)))][:3]
[0, 1, 2]
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import numpy as np

from .spec import (
    Constant,
    Custom,
    Mixture,
    Normal,
    Spec,
    TruncatedNormal,
    Uniform,
    WithAxes,
)

__all__ = [
    "MIN_TILE",
    "MAX_SPLIT",
    "MAX_SPLIT_1D",
    "TILES_PER_PARAM",
    "Tile",
    "Tiling",
    "tiling",
    "meet",
    "shift",
    "is_elementwise",
    "seed_base",
    "tile_seed",
    "parameter_rng",
    "tile_rng",
    "draw",
    "run_parallel",
    "overlapped",
    "threads",
]

_T = TypeVar("_T")

#: A tile holds at least this many elements (unless the tensor itself is smaller): the fixed cost
#: of a tile (a generator, a call) stays near 1% of drawing it.
MIN_TILE = 1 << 16
#: At most this many tiles along each of the first two logical axes of an N-D tensor (N >= 2).
MAX_SPLIT = 16
#: At most this many tiles along a 1-D tensor.
MAX_SPLIT_1D = 256
#: No tensor has more tiles than this; ``tile_seed`` gives every parameter this many seeds.
TILES_PER_PARAM = MAX_SPLIT * MAX_SPLIT

Box = tuple[slice, ...]


@dataclass(frozen=True)
class Tile:
    """One tile: its number in the grid and the logical slices it covers (one per axis)."""

    index: int
    box: Box

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.box)


@dataclass(frozen=True)
class Tiling:
    """The tile grid of a logical shape: ``steps[a]`` elements per tile along axis ``a``
    (axes 0 and 1 at most), ``counts[a]`` tiles along it."""

    shape: tuple[int, ...]
    steps: tuple[int, ...]
    counts: tuple[int, ...]

    def __len__(self) -> int:
        return math.prod(self.counts) if math.prod(self.shape) else 0

    def tile_shape(self, index: int) -> tuple[int, ...]:
        """The shape of tile ``index``."""
        return self.tile(index).shape

    def tile(self, index: int) -> Tile:
        """Tile number ``index`` (row-major over the grid)."""
        coords = []
        for count in reversed(self.counts):
            index, c = divmod(index, count) if count else (index, 0)
            coords.append(c)
        coords.reverse()
        return self._tile(tuple(coords))

    def _tile(self, coords: tuple[int, ...]) -> Tile:
        index = 0
        box = []
        for axis, (c, step, count) in enumerate(zip(coords, self.steps, self.counts, strict=True)):
            index = index * count + c
            box.append(slice(c * step, min((c + 1) * step, self.shape[axis])))
        box.extend(slice(0, d) for d in self.shape[len(self.steps) :])
        return Tile(index, tuple(box))

    def tiles(self, box: Sequence[slice] | None = None) -> Iterator[Tile]:
        """The tiles that overlap ``box`` (logical slices with unit step; default: all)."""
        if not len(self):
            return
        box = _full_box(self.shape, box)
        ranges = []
        for axis, (step, count) in enumerate(zip(self.steps, self.counts, strict=True)):
            s = box[axis]
            if s.stop <= s.start:
                return
            ranges.append(range(s.start // step, min(count, -(-s.stop // step))))
        for axis in range(len(self.steps), len(self.shape)):
            if box[axis].stop <= box[axis].start:
                return
        for coords in _product(ranges):
            yield self._tile(coords)


def meet(a: Sequence[slice], b: Sequence[slice]) -> Box:
    """The box where boxes ``a`` and ``b`` (unit-step slices, one per axis) overlap.

    >>> meet((slice(0, 4), slice(2, 6)), (slice(1, 8), slice(0, 3)))
    (slice(1, 4, None), slice(2, 3, None))
    """
    return tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b, strict=True))


def shift(box: Sequence[slice], origin: Sequence[slice]) -> Box:
    """``box`` in the coordinates of an array that holds the box ``origin`` (which contains it).

    >>> shift((slice(3, 5), slice(0, 2)), (slice(2, 9), slice(0, 4)))
    (slice(1, 3, None), slice(0, 2, None))
    """
    return tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, origin, strict=True))


def _product(ranges: Sequence[range]) -> Iterator[tuple[int, ...]]:
    if not ranges:
        yield ()
        return
    for first in ranges[0]:
        for rest in _product(ranges[1:]):
            yield (first, *rest)


def _full_box(shape: tuple[int, ...], box: Sequence[slice] | None) -> Box:
    if box is None:
        return tuple(slice(0, d) for d in shape)
    box = tuple(box)
    if len(box) != len(shape):
        raise ValueError(f"box {box} does not have one slice per axis of shape {shape}")
    out = []
    for s, d in zip(box, shape, strict=True):
        start, stop, step = s.indices(d)
        if step != 1:
            raise ValueError(f"box {box} has a slice with step {step}; tiles take unit steps")
        out.append(slice(start, max(start, stop)))
    return tuple(out)


def _split(size: int, limit: int, fits: Callable[[int], bool]) -> int:
    parts = 1
    while parts < limit and parts * 2 <= size and fits(parts * 2):
        parts *= 2
    return parts


def tiling(shape: Sequence[int]) -> Tiling:
    """The tile grid of a logical ``shape`` (a function of the shape alone).

    >>> tiling((8, 4)).counts, tiling((300_000,)).counts, tiling((4096, 11008)).steps
    ((1, 1), (4,), (256, 688))
    """
    shape = tuple(int(d) for d in shape)
    numel = math.prod(shape)
    if len(shape) == 0:
        return Tiling(shape, (), ())
    if len(shape) == 1:
        parts = _split(shape[0], MAX_SPLIT_1D, lambda p: numel // p >= MIN_TILE)
        step = -(-shape[0] // parts) if shape[0] else 1
        return Tiling(shape, (step,), (-(-shape[0] // step) if shape[0] else 0,))
    rows, cols = shape[0], shape[1]
    # The same number of parts along both axes (fewer where an axis is shorter), doubled while
    # every tile keeps MIN_TILE elements.
    parts = 1
    while parts < MAX_SPLIT and numel // ((2 * parts) ** 2) >= MIN_TILE:
        parts *= 2
    steps = (-(-rows // min(parts, rows)) if rows else 1, -(-cols // min(parts, cols)) if cols else 1)
    counts = (-(-rows // steps[0]) if rows else 0, -(-cols // steps[1]) if cols else 0)
    return Tiling(shape, steps, counts)


def is_elementwise(spec: Spec) -> bool:
    """True when ``spec``'s law draws each element independently (so tiles can draw it apart).

    >>> from multiinit import he_normal, orthogonal
    >>> is_elementwise(he_normal()), is_elementwise(orthogonal())
    (True, False)
    """
    if isinstance(spec, (Constant, Uniform, Normal, TruncatedNormal)):
        return True
    if isinstance(spec, Mixture):
        return all(is_elementwise(s) for w, s in spec.components if w > 0)
    if isinstance(spec, WithAxes):  # only says where the fans come from
        return is_elementwise(spec.spec)
    if isinstance(spec, Custom):
        return spec.elementwise  # the user's word (custom(..., elementwise=True))
    return spec.as_variance_scaling() is not None


# --------------------------------------------------------------------------- seeds


def seed_base(seed: int) -> int:
    """A 32-bit number derived from the user's seed; the first of its parameters' tile seeds.

    >>> seed_base(0) == seed_base(0) != seed_base(1)
    True
    """
    return int(np.random.SeedSequence([int(seed)]).generate_state(1)[0])


def tile_seed(base: int, order: int, tile: int) -> int:
    """The 32-bit generator seed of ``tile`` of the parameter at ``order``, for a native
    sequential generator (torch's CPU generator keeps 32 bits of its seed). Consecutive per
    parameter, so within one model and seed no two tiles share a seed (for fewer than 2**24
    parameters). A whole-tensor law uses its parameter's tile-0 seed.

    >>> tile_seed(10, 0, 1), tile_seed(10, 1, 0)
    (11, 266)
    """
    return (int(base) + int(order) * TILES_PER_PARAM + int(tile)) % (1 << 32)


def parameter_rng(key: Sequence[int]) -> np.random.Generator:
    """The portable stream of a parameter (``key`` is ``(seed, order)``; any tuple of ints >= 0).

    >>> parameter_rng((0, 3)).random() == np.random.default_rng(np.random.SeedSequence([0, 3])).random()
    True
    """
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def tile_rng(key: Sequence[int], tile: int) -> np.random.Generator:
    """The portable stream of tile ``tile`` of a tensor of more than one tile: the ``tile``-th
    child that ``SeedSequence(key).spawn`` gives.

    >>> child = np.random.SeedSequence([0, 3]).spawn(2)[1]
    >>> tile_rng((0, 3), 1).random() == np.random.default_rng(child).random()
    True
    """
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key], spawn_key=(int(tile),)))


# --------------------------------------------------------------------------- threads

_POOL: ThreadPoolExecutor | None = None
_CPUS = os.cpu_count() or 1  # os.cpu_count() costs microseconds, and the count does not change
_POOL_LOCK = threading.Lock()


def threads() -> int:
    """How many threads draw tiles: ``MULTIINIT_THREADS`` if set, else the CPU count (max 8).

    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"MULTIINIT_THREADS": "3"}):
    ...     threads()
    3
    """
    raw = os.environ.get("MULTIINIT_THREADS")
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            pass
    return max(1, min(8, _CPUS))


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(threads(), thread_name_prefix="multiinit")
        return _POOL


def _inline() -> bool:
    # A pool thread never waits on the pool it runs on (a deadlock once every thread waits).
    return threads() == 1 or threading.current_thread().name.startswith("multiinit")


def run_parallel(jobs: Iterable[Callable[[], Any]]) -> None:
    """Run ``jobs`` on the shared pool (inline when there is one job or one thread); the first
    exception (in the order of ``jobs``) is raised after every job has ended, so no job still
    writes when the caller handles it.

    >>> done: list[int] = []
    >>> run_parallel([(lambda i=i: done.append(i)) for i in range(5)])
    >>> sorted(done)
    [0, 1, 2, 3, 4]
    """
    jobs = list(jobs)
    if len(jobs) <= 1 or _inline():
        for job in jobs:
            job()
        return
    # One worker per thread takes jobs until none is left. A future per job would cost each
    # job a queue hand-off and a thread wake-up: 256 tiles of a 4096x4096 user law spent
    # 10-20 ms of about 120 on them.
    waiting = deque(enumerate(jobs))  # popleft is atomic: no lock between the workers
    errors: dict[int, BaseException] = {}

    def worker() -> None:
        while True:
            try:
                index, job = waiting.popleft()
            except IndexError:
                return
            try:
                job()
            except BaseException as e:  # noqa: BLE001 - raised below, once every job has ended
                errors[index] = e

    for running in [_pool().submit(worker) for _ in range(min(threads(), len(jobs)))]:
        running.result()  # a worker keeps its jobs' exceptions: this only waits for it
    if errors:
        raise errors[min(errors)]


def overlapped(steps: Iterable[tuple[Callable[[], Any], Callable[[], _T]]]) -> list[_T]:
    """Run each step's first function on the calling thread, in order, and its second on the
    pool as soon as the first has returned, so that the second function of one step runs while
    the first of the next does (a serial producer, e.g. a generator's draw, and a consumer of
    each part it produced); the second functions' results, in order. Inline (first, second,
    first, ...) with one thread or on a pool thread. Any exception is raised after every
    started job has ended.

    >>> parts: list[list[int]] = []
    >>> overlapped(((lambda i=i: parts.append([i])), (lambda i=i: sum(parts[i]))) for i in range(3))
    [0, 1, 2]
    """
    if _inline():
        results = []
        for first, second in steps:
            first()
            results.append(second())
        return results
    futures: list[Future[_T]] = []
    try:
        for first, second in steps:
            first()
            futures.append(_pool().submit(second))
    finally:
        wait(futures)
    return [future.result() for future in futures]


# --------------------------------------------------------------------------- the portable draw


@overload
def draw(
    spec: Spec,
    shape: Sequence[int],
    key: Sequence[int],
    *,
    dtype: Any = ...,
    fans: tuple[int, int] | None = ...,
    box: Sequence[slice] | None = ...,
    write: None = ...,
    path: str | None = ...,
) -> np.ndarray: ...
@overload
def draw(
    spec: Spec,
    shape: Sequence[int],
    key: Sequence[int],
    *,
    dtype: Any = ...,
    fans: tuple[int, int] | None = ...,
    box: Sequence[slice] | None = ...,
    write: Callable[[Box, np.ndarray], None],
    path: str | None = ...,
) -> None: ...
@overload
def draw(
    spec: Spec,
    shape: Sequence[int],
    key: Sequence[int],
    *,
    dtype: Any = ...,
    fans: tuple[int, int] | None = ...,
    box: Sequence[slice] | None = ...,
    write: Callable[[Box, np.ndarray], None] | None = ...,
    path: str | None = ...,
) -> np.ndarray | None: ...
def draw(
    spec: Spec,
    shape: Sequence[int],
    key: Sequence[int],
    *,
    dtype: Any = "float32",
    fans: tuple[int, int] | None = None,
    box: Sequence[slice] | None = None,
    write: Callable[[Box, np.ndarray], None] | None = None,
    path: str | None = None,
) -> np.ndarray | None:
    """The portable values of the logical region ``box`` (default: all) of a parameter.

    With ``write=None`` returns the region as a NumPy array. Otherwise calls
    ``write(region_box, values)`` for pieces of the region, from several threads at once
    (``region_box`` is in the logical coordinates of the whole tensor), and returns None: an
    adapter writes each piece straight into its destination, holding one tile at a time.
    The shape and the spec must already have been checked (``reference.check_shape``).

    >>> from multiinit import normal
    >>> a = draw(normal(), (600, 600), key=(0, 3))
    >>> bool((a[:300] == draw(normal(), (600, 600), key=(0, 3), box=(slice(0, 300), slice(0, 600)))).all())
    True
    """
    from .reference import _draw_checked, fans_for

    shape = tuple(int(d) for d in shape)
    dtype = np.dtype(dtype)
    if spec.uses_fans:
        fans = fans_for(spec, shape, fans)
    region = _full_box(shape, box)
    grid = tiling(shape)
    out = None
    if write is None:
        out = np.empty(tuple(s.stop - s.start for s in region), dtype=np.dtype(dtype))

        def write(target: Box, values: np.ndarray) -> None:
            out[shift(target, region)] = values

    if len(grid) == 0:
        return out
    if len(grid) == 1 or not is_elementwise(spec):
        whole = _draw_checked(spec, parameter_rng(key), shape, fans, dtype, path)
        write(region, whole[region])
        return out

    def job(tile: Tile) -> Callable[[], None]:
        def run() -> None:
            origin = tuple(b.start for b in tile.box)
            values = _draw_checked(spec, tile_rng(key, tile.index), tile.shape, fans, dtype, path, origin)
            part = meet(tile.box, region)
            write(part, values[shift(part, tile.box)])

        return run

    run_parallel(job(tile) for tile in grid.tiles(region))
    return out
