"""Time every spec through the MXNet adapter against MXNet's own initializer, on 4096x4096.

Run: ``python benchmarks/bench_mxnet.py [--repeats 5] [--size 4096]`` in the mxnet env. Each
row times ``initializer(InitDesc("bench_weight"), array)`` followed by ``mx.nd.waitall()`` (MXNet
runs asynchronously) on a float32 legacy NDArray, median of several repeats after one warm-up.
The specs are the ones every adapter benchmark times (``common.SPECS``), then MXNet's own
symmetric forms (``Uniform(scale)``, ``Normal(sigma)``). The native call is the one
``multiinit.explain`` names for the spec; the seed chapter's law (mixture, custom) is timed
against the chapter's own ``MyInit``; where MXNet has no equivalent law the row says so.
``seeded`` times the adapter with ``seed=0`` (it reseeds the global generator and resumes the
user's stream around the draw).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

warnings.simplefilter("ignore")  # mxnet 1.9 on Python 3.11 warns about distutils on import

import mxnet as mx  # noqa: E402
from common import CHAPTER_LAW  # noqa: E402
from common import SPECS as COMMON_SPECS  # noqa: E402

import multiinit as mi  # noqa: E402
from multiinit import mxnet as mim  # noqa: E402


class D2lMyInit(mx.init.Initializer):
    """The seed chapter's ``MyInit`` (MXNet tab), on legacy NDArrays: U(-10, 10), zeroed where |w| < 5."""

    def _init_weight(self, name: str, data: mx.nd.NDArray) -> None:
        data[:] = mx.nd.random.uniform(-10, 10, data.shape)
        data *= data.abs() >= 5


#: Every adapter's rows, then the symmetric uniform and zero-mean normal MXNet has natively.
SPECS = [*COMMON_SPECS, mi.uniform(-0.07, 0.07), mi.normal(std=0.01)]


def native_of(spec: mi.Spec, shape: tuple[int, ...]) -> tuple[str, mx.init.Initializer | None]:
    """The native call's text and initializer for ``spec``, or ("no native equivalent", None)."""
    if isinstance(spec, CHAPTER_LAW):
        return "MyInit (d2l, MXNet)", D2lMyInit()
    code = mi.explain(spec, shape, "mxnet").native["mxnet"]
    if code is None:
        return "no native equivalent", None
    return code, eval(code, {"mx": mx})  # code written by multiinit.explain


def timed(init, shape: tuple[int, ...], repeats: int) -> float:
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
    mx.random.seed(0)
    print(f"mxnet {mx.__version__}, float32 {args.size}x{args.size}, median of {args.repeats} after a warm-up\n")
    header = f"{'spec':<50} {'adapter ms':>10} {'seeded ms':>9} {'native ms':>9} {'ratio':>6}  native call"
    print(header)
    print("-" * len(header))
    for spec in SPECS:
        # Dirac needs a conv kernel: (size, size, 1) holds the same number of values.
        shape = (args.size, args.size, 1) if isinstance(spec, mi.spec.Dirac) else (args.size, args.size)
        # Orthogonal factorizes the whole matrix: fewer repeats keep the run short.
        repeats = 2 if isinstance(spec, mi.spec.Orthogonal) else args.repeats
        ours = timed(mim.Multiinit(spec), shape, repeats)
        seeded = timed(mim.Multiinit(spec, seed=0), shape, repeats)
        code, native_init = native_of(spec, shape)
        if native_init is None:
            native, ratio = "", ""
        else:
            seconds = timed(native_init, shape, repeats)
            native, ratio = f"{seconds * 1e3:9.1f}", f"{ours / seconds:6.2f}"
        print(f"{str(spec)[:50]:<50} {ours * 1e3:10.1f} {seeded * 1e3:9.1f} {native:>9} {ratio:>6}  {code}",
              flush=True)


if __name__ == "__main__":
    main()
