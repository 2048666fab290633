"""Time every spec through the Keras adapter against Keras' own initializer, on 4096x4096 float32.

Run in the tensorflow env: ``python benchmarks/bench_keras.py [--repeats 5] [--size 4096]``.
Each row is the median of ``--repeats`` calls after one warm-up call, each call followed by
reading one element back (so the draw has finished); adapter and native calls alternate. The adapter is called as users call it,
``mi.compile(spec, "keras", seed=0)(shape, dtype="float32")``; the native call is the one
``multiinit.explain`` names for the spec (Keras' stateless int-seeded initializer), or, for the
seed chapter's custom law, the chapter's TensorFlow ``MyInit`` subclass. Dirac fills a
(1, size, size) conv kernel (it needs 3-5 dimensions): the same number of values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import multiinit as mi  # noqa: E402
from common import CHAPTER_LAW as _CHAPTER_LAW  # noqa: E402
from common import SPECS  # noqa: E402
from multiinit import keras as mik  # noqa: E402,F401  (registers the adapter)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, tensorflow {tf.__version__}; "
          f"{args.size}x{args.size} float32, median of {args.repeats} after a warm-up\n")
    header = f"{'spec':<62} {'native':<48} {'adapter ms':>10} {'native ms':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for spec in SPECS:
        shape = (1, args.size, args.size) if isinstance(spec, mi.spec.Dirac) else (args.size, args.size)
        adapter = mi.compile(spec, "keras", seed=0)
        label, native = native_for(spec, shape)
        if native is None:
            (ours,) = timed([adapter], shape, args.repeats)
            print(f"{spec!r:<62.62} {'no native equivalent':<48} {ours * 1e3:>10.1f} {'-':>10} {'-':>7}")
            continue
        ours, theirs = timed([adapter, native], shape, args.repeats)
        print(f"{spec!r:<62.62} {label:<48.48} {ours * 1e3:>10.1f} {theirs * 1e3:>10.1f} {ours / theirs:>7.2f}")


if __name__ == "__main__":
    main()
