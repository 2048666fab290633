"""Time every spec through the MXNet adapter against MXNet's own initializer, on 4096x4096.

Run: ``python benchmarks/bench_mxnet.py [--repeats 5] [--size 4096]`` in the mxnet env. Each
row times ``initializer(InitDesc("bench_weight"), array)`` followed by ``mx.nd.waitall()`` (MXNet
runs asynchronously) on a float32 legacy NDArray, median of several repeats after one warm-up.
The native call is the one ``multiinit.explain`` names for the spec; where MXNet has no
equivalent law the row says so. ``seeded`` times the adapter with ``seed=0`` (it reseeds the
global generator and resumes the user's stream around the draw).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import numpy as np

warnings.simplefilter("ignore")  # mxnet 1.9 on Python 3.11 warns about distutils on import

import mxnet as mx  # noqa: E402

import multiinit as mi  # noqa: E402
from multiinit import mxnet as mim  # noqa: E402


def my_init(rng: np.random.Generator, shape: tuple[int, ...], dtype: object) -> np.ndarray:
    """d2l's MyInit law: U(-10, 10), zeroed where |w| < 5."""
    w = rng.uniform(-10, 10, shape)
    return w * (np.abs(w) >= 5)


SPECS = [
    mi.zeros(),
    mi.constant(42),
    mi.uniform(-0.07, 0.07),
    mi.uniform(-0.5, 0.25),
    mi.normal(std=0.01),
    mi.normal(0.5, 0.01),
    mi.truncated_normal(std=0.02),
    mi.trunc_normal(std=0.02),
    mi.xavier_uniform(),
    mi.xavier_normal(gain=2.0),
    mi.kaiming_uniform(a=math.sqrt(5)),
    mi.kaiming_normal(mode="fan_out", nonlinearity="relu"),
    mi.he_uniform(),
    mi.he_normal(),
    mi.lecun_normal(),
    mi.orthogonal(),
    mi.eye(),
    mi.sparse(0.1),
    mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
    mi.custom(my_init, name="bench.my_init"),
]


def timed(init, shape: tuple[int, int], repeats: int) -> float:
    """Median seconds of ``init`` filling a float32 array of ``shape`` (after a warm-up)."""
    arr = mx.nd.zeros(shape, dtype="float32")
    mx.nd.waitall()
    runs = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        init(mx.init.InitDesc("bench_weight"), arr)
        mx.nd.waitall()
        if i:  # the first run warms up caches and MXNet's operator set-up
            runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> None:
    """Print the table: adapter, seeded adapter and native times, and adapter/native."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args(argv)
    shape = (args.size, args.size)
    mx.random.seed(0)
    print(f"mxnet {mx.__version__}, float32 {shape[0]}x{shape[1]}, median of {args.repeats} after a warm-up\n")
    header = f"{'spec':<50} {'adapter ms':>10} {'seeded ms':>9} {'native ms':>9} {'ratio':>6}  native call"
    print(header)
    print("-" * len(header))
    for spec in SPECS:
        # Orthogonal factorizes the whole matrix: fewer repeats keep the run short.
        repeats = 2 if isinstance(spec, mi.spec.Orthogonal) else args.repeats
        ours = timed(mim.Multiinit(spec), shape, repeats)
        seeded = timed(mim.Multiinit(spec, seed=0), shape, repeats)
        code = mi.explain(spec, shape, "mxnet").native["mxnet"]
        if code is None:
            native, ratio, code = "", "", "no native equivalent"
        else:
            seconds = timed(eval(code, {"mx": mx}), shape, repeats)  # code written by multiinit.explain
            native, ratio = f"{seconds * 1e3:9.1f}", f"{ours / seconds:6.2f}"
        print(f"{str(spec)[:50]:<50} {ours * 1e3:10.1f} {seeded * 1e3:9.1f} {native:>9} {ratio:>6}  {code}",
              flush=True)


if __name__ == "__main__":
    main()
