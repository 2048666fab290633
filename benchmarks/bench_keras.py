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
import math
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import multiinit as mi  # noqa: E402
from multiinit import keras as mik  # noqa: E402,F401  (registers the adapter)


def my_init(rng: np.random.Generator, shape: tuple[int, ...], dtype: object) -> np.ndarray:
    """d2l's MyInit law in NumPy: U(-10, 10), zeroed where |w| < 5."""
    w = rng.uniform(-10, 10, shape)
    return w * (np.abs(w) >= 5)


class MyInit(tf.keras.initializers.Initializer):
    """d2l's TensorFlow MyInit, verbatim."""

    def __call__(self, shape, dtype=None):
        data = tf.random.uniform(shape, -10, 10, dtype=dtype)
        factor = tf.cast(tf.abs(data) >= 5, tf.float32)
        return data * factor


SPECS = [
    mi.zeros(),
    mi.constant(42),
    mi.uniform(-0.5, 0.25),
    mi.normal(0.5, 0.01),
    mi.truncated_normal(std=0.02),
    mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5),
    mi.trunc_normal(std=0.02),
    mi.xavier_uniform(gain=mi.calculate_gain("relu")),
    mi.xavier_normal(gain=2.0),
    mi.kaiming_uniform(a=math.sqrt(5)),
    mi.kaiming_normal(mode="fan_out", nonlinearity="relu"),
    mi.glorot_uniform(),
    mi.glorot_normal(),
    mi.he_uniform(),
    mi.he_normal(),
    mi.lecun_uniform(),
    mi.lecun_normal(),
    mi.orthogonal(),
    mi.eye(),
    mi.dirac(),
    mi.sparse(0.1),
    mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
    mi.custom(my_init, name="bench.my_init"),
]
_CHAPTER_LAW = (mi.spec.Mixture, mi.spec.Custom)


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
