"""Time every spec through the Keras adapter against Keras' own initializer, on 4096x4096 float32.

Run in the tensorflow env: ``python benchmarks/bench_keras.py [--repeats 5] [--size 4096]
[--chapter-rounds N]``.
Each row is the median of ``--repeats`` calls after one warm-up call, each call followed by
reading one element back (so the draw has finished); adapter and native calls alternate. The
adapter is called as users call it, ``mi.compile(spec, "keras", seed=0)(shape, dtype="float32")``;
the native call is the one
``multiinit.explain`` names for the spec (Keras' stateless int-seeded initializer), or, for the
seed chapter's custom law, the chapter's TensorFlow ``MyInit`` subclass. Dirac fills a
(1, size, size) conv kernel (it needs 3-5 dimensions): the same number of values.

Four more tables follow: the truncated family against ``keras.random.normal`` with the same
mean and std (what the truncation itself costs; Keras' own ``TruncatedNormal`` cuts at 2 std
only), ``custom(my_init)`` against the same NumPy function called by hand and converted (what
multiinit adds around a user's law: seeding, the fence, the rearrangement into Keras' layout),
``custom(my_init, elementwise=True)`` and its parts done by hand on the same tiles against
``MyInit`` (the law's own work, then the copy into Keras' layout), and the
``keras.initializers`` drop-ins against Keras' own classes (the same calls: ~1.00).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import multiinit as mi
from multiinit import keras as mik  # noqa: F401  (registers the adapter)
from multiinit.keras import initializers as dropins

from common import (
    CHAPTER_LAW as _CHAPTER_LAW,
    SPECS,
    add_rounds_option,
    add_times_option,
    d2l_my_init,
    faults_per_call,
    memory_line,
    print_chapter_rounds,
    write_times,
)


class MyInit(tf.keras.initializers.Initializer):
    """d2l's TensorFlow MyInit, verbatim."""

    def __call__(self, shape, dtype=None):
        data = tf.random.uniform(shape, -10, 10, dtype=dtype)
        factor = tf.cast(tf.abs(data) >= 5, tf.float32)
        return data * factor


def _once(initializer, shape: tuple[int, ...]) -> float:
    corner = (0,) * len(shape)
    start = time.perf_counter()
    values = initializer(shape, dtype="float32")
    keras.ops.convert_to_numpy(values[corner])
    return time.perf_counter() - start


def timed(initializers: list, shape: tuple[int, ...], repeats: int) -> list[float]:
    """Median seconds of each ``initializer(shape, dtype="float32")``, after one warm-up call.

    The initializers take turns in every repeat, so a machine that slows down (other work on
    the same cores) slows all of them alike and the ratio stays fair.
    """
    for initializer in initializers:
        _once(initializer, shape)
    times: list[list[float]] = [[] for _ in initializers]
    for _ in range(repeats):
        for i, initializer in enumerate(initializers):
            times[i].append(_once(initializer, shape))
    return [statistics.median(t) for t in times]


def native_for(spec: mi.Spec, shape: tuple[int, ...]):
    """``(label, initializer)`` of Keras' own equivalent, or ``(None, None)``."""
    if isinstance(spec, _CHAPTER_LAW):
        return "MyInit (d2l, TensorFlow)", MyInit()
    code = mi.explain(spec, shape, "keras").native["keras"]
    if code is None:
        return None, None
    # The text comes from multiinit.explain, not from a user.
    return code.replace("keras.initializers.", ""), eval(code, {"keras": keras})


class _Normal:
    """``keras.random.normal`` with a fixed mean, std and seed, as an initializer."""

    def __init__(self, mean: float, std: float) -> None:
        self.mean, self.std = mean, std

    def __call__(self, shape, dtype=None):
        return keras.random.normal(shape, mean=self.mean, stddev=self.std, dtype=dtype, seed=0)


def truncated_against_normal(size: int, repeats: int) -> None:
    """The truncated family against the backend's own normal draw with the same mean and std."""
    print("\ntruncated normals against keras.random.normal(mean, std) on the same shape")
    fans = mi.compute_fans((size, size))
    for spec in (
        mi.he_normal(),
        mi.glorot_normal(),
        mi.truncated_normal(std=0.02),
        mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5),
        mi.trunc_normal(std=0.02),
    ):
        scaled = spec.as_variance_scaling()
        mean, std = (0.0, scaled.law(*fans)[1]) if scaled is not None else (spec.mean, spec.std)
        a, b = timed([mi.compile(spec, "keras", seed=0), _Normal(mean, std)], (size, size), repeats)
        print(f"  {spec!r:<60.60} {a * 1e3:8.1f} ms vs {b * 1e3:8.1f} ms   ratio {a / b:5.2f}")


def custom_against_numpy(size: int, repeats: int) -> None:
    """``custom(fn)`` against the same NumPy function called by hand on the logical shape,
    transposed into Keras' (in, out) layout and converted: what multiinit adds around a law."""
    print("\ncustom(my_init) against the same NumPy my_init called by hand")

    def by_hand(shape, dtype=None):
        logical = d2l_my_init(np.random.default_rng(0), tuple(reversed(shape)), np.float32).astype(np.float32)
        return keras.ops.transpose(keras.ops.convert_to_tensor(logical))

    a, b = timed(
        [mi.compile(mi.custom(d2l_my_init, name="bench.my_init"), "keras", seed=0), by_hand],
        (size, size),
        repeats,
    )
    print(f"  {'custom(my_init)':<60} {a * 1e3:8.1f} ms vs {b * 1e3:8.1f} ms   ratio {a / b:5.2f}")


def tiles_by_hand(size: int, repeats: int) -> None:
    """Where ``custom(my_init, elementwise=True)``'s time goes, each part against ``MyInit`` in
    the same run: the NumPy ``my_init`` called by hand on the same tiles, each with a generator
    made as multiinit makes one, on as many threads (a ``ThreadPoolExecutor``). First with its
    results dropped (the law's own work), then written into a buffer in Keras' (in, out) layout
    and converted (what a hand-written tiled law must also do)."""
    print("\ncustom(my_init, elementwise=True) and my_init by hand on the same tiles, against MyInit")
    shape = (size, size)
    tiles = list(mi.stream.tiling(shape).tiles())
    pool = ThreadPoolExecutor(mi.stream.threads())

    def rng(index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([0, 0], spawn_key=(index,)))

    def dropped(shape, dtype=None):
        list(pool.map(lambda t: d2l_my_init(rng(t.index), t.shape, np.float32), tiles))
        return keras.ops.zeros((1, 1))

    def written(shape, dtype=None):
        native = np.empty(shape, dtype=np.float32)  # (in, out); the law's tiles are (out, in)
        logical = native.T

        def one(t: mi.stream.Tile) -> None:
            logical[t.box] = d2l_my_init(rng(t.index), t.shape, np.float32)

        list(pool.map(one, tiles))
        return keras.ops.convert_to_tensor(native)

    law = mi.compile(mi.custom(d2l_my_init, name="bench.my_init_tiles", elementwise=True), "keras", seed=0)
    rows = [
        ("custom(my_init, elementwise=True)", law),
        ("my_init by hand on each tile, results dropped", dropped),
        ("the same, written into Keras' layout and converted", written),
    ]
    calls = [f for _, f in rows] + [MyInit()]
    times = timed(calls, shape, repeats)
    # Fresh pages are much of a call's cost on some machines (memory_line): say how many each took.
    faults = [faults_per_call(lambda f=f: _once(f, shape)) for f in calls]
    for (label, _), t, fault in zip(rows, times[:-1], faults[:-1], strict=True):
        print(
            f"  {label:<60} {t * 1e3:8.1f} ms vs {times[-1] * 1e3:8.1f} ms   ratio {t / times[-1]:5.2f}"
            f"   page faults/call {fault:7.0f} vs {faults[-1]:7.0f}"
        )
    pool.shutdown()


def dropins_against_keras(size: int, repeats: int) -> None:
    """``multiinit.keras.initializers`` against ``keras.initializers``, same class, same seed."""
    print("\nkeras.initializers drop-ins against Keras' own (same seed)")
    for name, kwargs in (
        ("GlorotUniform", {}),
        ("HeNormal", {}),
        ("RandomNormal", {"stddev": 0.02}),
        ("TruncatedNormal", {"stddev": 0.02}),
        ("Orthogonal", {}),
    ):
        a, b = timed(
            [getattr(dropins, name)(seed=0, **kwargs), getattr(keras.initializers, name)(seed=0, **kwargs)],
            (size, size),
            repeats,
        )
        print(f"  {name:<60} {a * 1e3:8.1f} ms vs {b * 1e3:8.1f} ms   ratio {a / b:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=4096)
    add_times_option(parser)
    add_rounds_option(parser)
    args = parser.parse_args()
    print(
        f"keras {keras.__version__}, backend {keras.backend.backend()}, tensorflow {tf.__version__}; "
        f"{args.size}x{args.size} float32, median of {args.repeats} after a warm-up; {memory_line()}\n"
    )
    header = f"{'spec':<62} {'native':<48} {'adapter ms':>10} {'native ms':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    rows: dict[str, tuple[float, float | None]] = {}
    for spec in SPECS:
        shape = (1, args.size, args.size) if isinstance(spec, mi.spec.Dirac) else (args.size, args.size)
        adapter = mi.compile(spec, "keras", seed=0)
        label, native = native_for(spec, shape)
        if native is None:
            (ours,) = timed([adapter], shape, args.repeats)
            rows[repr(spec)] = (ours, None)
            print(f"{spec!r:<62.62} {'no native equivalent':<48} {ours * 1e3:>10.1f} {'-':>10} {'-':>7}")
            continue
        ours, theirs = timed([adapter, native], shape, args.repeats)
        rows[repr(spec)] = (ours, theirs)
        print(
            f"{spec!r:<62.62} {label:<48.48} {ours * 1e3:>10.1f} {theirs * 1e3:>10.1f} {ours / theirs:>7.2f}"
        )
    write_times(args.times, f"keras-{keras.backend.backend()}", args.size, rows)
    truncated_against_normal(args.size, args.repeats)
    custom_against_numpy(args.size, args.repeats)
    tiles_by_hand(args.size, args.repeats)
    dropins_against_keras(args.size, args.repeats)
    shape = (args.size, args.size)

    def ratio(spec: mi.Spec) -> float:
        ours, theirs = timed([mi.compile(spec, "keras", seed=0), MyInit()], shape, args.repeats)
        return ours / theirs

    print_chapter_rounds(args.chapter_rounds, ratio)


if __name__ == "__main__":
    main()
