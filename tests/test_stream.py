"""The stream rule (multiinit.stream): tiles depend on the logical shape alone, any region of a
parameter can be drawn alone and equals the same region of the whole draw, and threads change
nothing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import multiinit as mi
from multiinit import stream
from multiinit.reference import sample
from multiinit.rules import portable_rng

MIXTURE = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])
ELEMENTWISE = [
    mi.normal(std=0.02),
    mi.uniform(-1, 1),
    mi.he_normal(),
    mi.truncated_normal(std=2.0),
    mi.xavier_uniform(),
    mi.constant(3.0),
    MIXTURE,
]
WHOLE = [mi.orthogonal(), mi.sparse(0.3), mi.eye()]


@pytest.mark.parametrize(
    "shape",
    [
        (),
        (1,),
        (7,),
        (300_000,),
        (5, 3),
        (1024, 1024),
        (4096, 4096),
        (64, 32, 3, 3),
        (11008, 4096),
        (1, 1_000_000),
        (3, 0),
    ],
)
def test_tiles_cover_the_tensor_exactly_once(shape) -> None:
    grid = stream.tiling(shape)
    seen = np.zeros(shape, dtype=np.int64)
    tiles = list(grid.tiles())
    assert len(tiles) == len(grid) <= stream.TILES_PER_PARAM
    assert [t.index for t in tiles] == list(range(len(grid)))
    for tile in tiles:
        seen[tile.box] += 1
        assert grid.tile(tile.index) == tile
    assert (seen == 1).all()
    numel = math.prod(shape)
    if len(grid) > 1:
        # Every tile but the ragged ones at the end of an axis holds at least MIN_TILE elements.
        assert math.prod(grid.tile_shape(0)) >= stream.MIN_TILE
    elif numel:
        assert len(grid) == 1


def test_the_grid_depends_on_the_shape_alone_and_splits_big_tensors_evenly() -> None:
    assert stream.tiling((4096, 4096)).counts == (16, 16)
    assert stream.tiling((4096, 4096)).steps == (256, 256)
    # Shards of dims divisible by 16 * world size hold whole tiles (FSDP Shard(0), TP Shard(1)).
    grid = stream.tiling((11008, 4096))
    for world in (2, 4, 8):
        rows = 11008 // world
        assert rows % grid.steps[0] == 0 and (4096 // world) % grid.steps[1] == 0
    assert stream.tiling((8, 4)).counts == (1, 1)


@pytest.mark.parametrize("spec", ELEMENTWISE + WHOLE, ids=str)
def test_any_region_drawn_alone_equals_that_region_of_the_whole(spec) -> None:
    shape = (1000, 700) if not isinstance(spec, mi.spec.Eye) else (700, 700)
    whole = sample(spec, shape, seed=(11, 4))
    rng = np.random.default_rng(0)
    for _ in range(6):
        r0, r1 = sorted(rng.integers(0, shape[0] + 1, 2))
        c0, c1 = sorted(rng.integers(0, shape[1] + 1, 2))
        box = (slice(int(r0), int(r1)), slice(int(c0), int(c1)))
        part = stream.draw(spec, shape, (11, 4), box=box, fans=None)
        assert np.array_equal(part, whole[box]), box


def test_a_write_callback_receives_disjoint_pieces_that_rebuild_the_region() -> None:
    shape, box = (2048, 1536), (slice(100, 1900), slice(0, 1536))
    pieces = []
    stream.draw(mi.he_normal(), shape, (2, 9), box=box, write=lambda b, v: pieces.append((b, v.copy())))
    rebuilt = np.full(shape, np.nan, dtype=np.float32)
    for b, v in pieces:
        assert np.isnan(rebuilt[b]).all()  # no element written twice
        rebuilt[b] = v
    assert np.array_equal(rebuilt[box], sample(mi.he_normal(), shape, seed=(2, 9))[box])
    assert len(pieces) > 1


def test_threads_change_nothing(monkeypatch) -> None:
    many = sample(MIXTURE, (1500, 1500), seed=(5, 0))
    monkeypatch.setenv("MULTIINIT_THREADS", "1")
    assert np.array_equal(many, sample(MIXTURE, (1500, 1500), seed=(5, 0)))


def test_a_one_tile_tensor_draws_from_the_parameter_stream_itself() -> None:
    # Small tensors keep the values portable mode always gave them.
    for spec in (mi.normal(), mi.he_uniform(), MIXTURE):
        assert np.array_equal(
            sample(spec, (64, 32), seed=(3, 4)), sample(spec, (64, 32), seed=portable_rng(3, 4))
        )
    assert np.array_equal(
        sample(mi.normal(), (5,), seed=3), sample(mi.normal(), (5,), seed=np.random.default_rng(3))
    )


def test_tiles_of_a_big_tensor_are_independent_streams() -> None:
    spec = mi.normal()
    shape = (1024, 1024)
    x = sample(spec, shape, seed=(0, 0), dtype="float64")
    grid = stream.tiling(shape)
    tiles = [x[t.box].ravel() for t in grid.tiles()]
    # No two tiles repeat each other: the correlation of any two is ~N(0, 1/n) with n = 65536,
    # so |r| < 5/sqrt(n) ~= 0.02 for all 120 pairs except with probability ~1e-4 (Bonferroni).
    for a, b in itertools.combinations(tiles, 2):
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(a.size)
    whole = x.ravel()
    assert abs(whole.mean()) < 5 / math.sqrt(whole.size) and abs(whole.std() - 1) < 0.01


def test_stream_keys_and_tile_seeds() -> None:
    assert stream.tile_seed(0, 0, 0) == 0 and stream.tile_seed(2**32 - 1, 0, 1) == 0
    seeds = {stream.tile_seed(stream.seed_base(7), order, t) for order in range(100) for t in range(256)}
    assert len(seeds) == 100 * 256
    with pytest.raises(mi.SpecError, match="seed="):
        sample(mi.normal(), (3,), seed=(1, -2))
    with pytest.raises(mi.SpecError, match="seed="):
        sample(mi.normal(), (3,), seed=())


def test_elementwise_laws_are_told_apart_from_whole_tensor_laws() -> None:
    for spec in ELEMENTWISE:
        assert stream.is_elementwise(spec), spec
    for spec in [
        *WHOLE,
        mi.dirac(),
        mi.custom(lambda r, s, d: r.random(s), name="tests.stream.u"),
        mi.mixture([(0.5, mi.orthogonal()), (0.5, mi.zeros())]),
    ]:
        assert not stream.is_elementwise(spec), spec


# --------------------------------------------------------------------------- overlapped


@pytest.mark.parametrize("threads", ["1", "2"])
def test_overlapped_runs_each_consumer_after_its_producer_and_keeps_the_order(threads, monkeypatch) -> None:
    monkeypatch.setenv("MULTIINIT_THREADS", threads)
    produced: list[int] = []

    def produce(i: int):
        return lambda: produced.append(i)

    def consume(i: int):
        # The producer of step i has run when its consumer starts (later ones may have, too).
        return lambda: (i, i in produced)

    got = stream.overlapped((produce(i), consume(i)) for i in range(20))
    assert got == [(i, True) for i in range(20)]
    assert produced == list(range(20))


def test_overlapped_raises_only_after_every_started_consumer_has_ended(monkeypatch) -> None:
    monkeypatch.setenv("MULTIINIT_THREADS", "2")
    import threading
    import time

    ended: list[int] = []
    lock = threading.Lock()

    def consume(i: int):
        def run() -> int:
            time.sleep(0.01)
            with lock:
                ended.append(i)
            return i

        return run

    def produce(i: int):
        def run() -> None:
            if i == 3:
                raise KeyError("producer 3")

        return run

    with pytest.raises(KeyError, match="producer 3"):
        stream.overlapped((produce(i), consume(i)) for i in range(6))
    assert sorted(ended) == [0, 1, 2]  # the three started ones finished; none started after


# --------------------------------------------------------------------------- run_parallel


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_run_parallel_runs_every_job_once_on_the_pool(threads, monkeypatch) -> None:
    monkeypatch.setenv("MULTIINIT_THREADS", threads)
    import threading
    from collections import Counter

    ran: Counter[int] = Counter()
    where: set[str] = set()
    lock = threading.Lock()

    def job(i: int):
        def run() -> None:
            with lock:
                ran[i] += 1
                where.add(threading.current_thread().name)

        return run

    stream.run_parallel(job(i) for i in range(300))
    assert ran == Counter(range(300))
    if threads == "1":
        assert where == {threading.current_thread().name}
    else:
        assert all(name.startswith("multiinit") for name in where)


def test_run_parallel_raises_the_first_jobs_error_once_every_job_has_ended(monkeypatch) -> None:
    monkeypatch.setenv("MULTIINIT_THREADS", "2")
    import threading
    import time

    ended: list[int] = []
    lock = threading.Lock()

    def job(i: int):
        def run() -> None:
            # Job 2 fails last in time, job 7 first: the error raised is still job 2's.
            time.sleep(0.05 if i == 2 else 0.001)
            with lock:
                ended.append(i)
            if i in (2, 7):
                raise KeyError(f"job {i}")

        return run

    with pytest.raises(KeyError, match="job 2"):
        stream.run_parallel(job(i) for i in range(12))
    assert sorted(ended) == list(range(12))  # a failure stops no other job
