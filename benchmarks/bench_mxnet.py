"""Time every spec through the MXNet adapter against MXNet's own initializer, on 4096x4096; and,
with ``--apply``, ``mi.apply`` on a stack of Dense layers against MXNet's own re-initialization.

Run from the repository root in the mxnet env: ``python benchmarks/bench_mxnet.py [--repeats 5]
[--size 4096] [--apply] [--layers 4] [--chapter-rounds N]`` (with ``PYTHONPATH=.`` when the env
holds an installed copy of multiinit rather than this checkout).

Spec rows time ``initializer(InitDesc("bench_weight"), array)`` followed by ``mx.nd.waitall()``
(MXNet runs asynchronously) on a float32 legacy NDArray. Adapter and native calls alternate, the
order flipping each round, so that load from other processes hits both alike; each time is the
fastest of ``--repeats`` rounds after one warm-up call each (2 rounds when a call takes over two
seconds): on a shared machine the minimum is the stable estimate of a call's own cost. The
specs are the ones every adapter benchmark times (``common.SPECS``), then MXNet's own symmetric
forms (``Uniform(scale)``, ``Normal(sigma)``). The native call is the one ``multiinit.explain``
names for the spec; the seed chapter's law (mixture, custom) is timed against the chapter's own
``MyInit``; the truncated family against MXNet's own normal draw of the same sigma (MXNet has no
truncated normal: issue 17 asks for at most 1.2x its normal); orthogonal and sparse have no
MXNet equivalent (compare with ``bench_torch.py``'s ``orthogonal_`` and ``sparse_`` rows).
``seeded`` times the adapter with ``seed=0``.

``--apply`` runs each case in a fresh process (peak RSS is per process) on ``--layers``
``Dense(size, in_units=size)`` layers: building the block and ``initialize()`` are not timed;
the timed part is the re-initialization, as users write it: ``collect_params(".*weight")
.initialize(mx.init.Normal(0.02), force_reinit=True)`` (and ``Zero()`` for the biases) against
``mi.apply(net, {"weight": mi.normal(std=0.02), "bias": mi.zeros()}, seed=0)``, native and
``portable=True``; and MXNet's deferred initialization (a block built without ``in_units``,
``initialize(init)``, one forward pass) against the same with ``mi.apply`` between
``initialize()`` and the forward pass. Peak RSS is the process's, the model included; the
last column is the peak's growth from the start of the timed step, over the parameters' bytes
(for a deferred model, whose arrays do not exist before the step, the parameters plus
everything the step held with them -- MXNet's gradient buffers included, as large as the
parameters, unless ``grad_req='null'``; for a built one, the step's temporaries alone).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import warnings

warnings.simplefilter("ignore")  # mxnet 1.9 on Python 3.11 warns about distutils on import

import mxnet as mx  # noqa: E402

import multiinit as mi  # noqa: E402
from multiinit import mxnet as mim  # noqa: E402

from common import (  # noqa: E402
    CHAPTER_LAW,
    SPECS as COMMON_SPECS,
    add_rounds_option,
    add_times_option,
    print_chapter_rounds,
    write_times,
)


class D2lMyInit(mx.init.Initializer):
    """The seed chapter's ``MyInit`` (MXNet tab), on legacy NDArrays: U(-10, 10), zeroed where |w| < 5."""

    def _init_weight(self, name: str, data: mx.nd.NDArray) -> None:
        data[:] = mx.nd.random.uniform(-10, 10, data.shape)
        data *= data.abs() >= 5


#: Every adapter's rows, then the symmetric uniform and zero-mean normal MXNet has natively.
SPECS = [*COMMON_SPECS, mi.uniform(-0.07, 0.07), mi.normal(std=0.01)]


def _truncated_sigma(spec: mi.Spec, shape: tuple[int, ...]) -> float | None:
    """The sigma of the normal a truncated-family spec cuts, or None for other specs."""
    if isinstance(spec, mi.spec.TruncatedNormal):
        return spec.std
    scaling = spec.as_variance_scaling()
    if scaling is not None:
        distribution, number = scaling.law(*mi.compute_fans(shape))
        if distribution == "truncated_normal":
            return number
    return None


def native_of(spec: mi.Spec, shape: tuple[int, ...]) -> tuple[str, mx.init.Initializer | None]:
    """The native call's text and initializer for ``spec``, or ("no native equivalent", None)."""
    if isinstance(spec, CHAPTER_LAW):
        return "MyInit (d2l, MXNet)", D2lMyInit()
    code = mi.explain(spec, shape, "mxnet").native["mxnet"]
    if code is not None:
        return code, eval(code, {"mx": mx})  # code written by multiinit.explain
    sigma = _truncated_sigma(spec, shape)
    if sigma is not None:
        return f"mx.init.Normal({sigma:.4g}) (no truncated normal in MXNet)", mx.init.Normal(sigma)
    return "no native equivalent", None


def _once(init, arr) -> float:
    start = time.perf_counter()
    init(mx.init.InitDesc("bench_weight"), arr)
    mx.nd.waitall()
    return time.perf_counter() - start


def timed(inits: list, shape: tuple[int, ...], repeats: int) -> list[float]:
    """Fastest seconds of each initializer filling a float32 array of ``shape``, interleaved."""
    arr = mx.nd.zeros(shape, dtype="float32")
    mx.nd.waitall()
    warm = sum(_once(init, arr) for init in inits)
    rounds = 2 if warm > 2.0 * len(inits) else repeats
    best = [math.inf] * len(inits)
    for r in range(rounds):
        order = list(range(len(inits)))
        if r % 2:
            order.reverse()
        for i in order:
            best[i] = min(best[i], _once(inits[i], arr))
    return best


def specs_table(size: int, repeats: int, times_path: str | None = None) -> None:
    """Print the table: adapter, seeded adapter and native times, and adapter/native (and
    write the adapter's times to ``times_path``, for ``compare_laws.py``)."""
    mx.random.seed(0)
    print(
        f"mxnet {mx.__version__}, float32 {size}x{size}, "
        f"fastest of {repeats} interleaved rounds after a warm-up\n"
    )
    header = f"{'spec':<50} {'adapter ms':>10} {'seeded ms':>9} {'native ms':>9} {'ratio':>6}  native call"
    print(header)
    print("-" * len(header))
    rows: dict[str, tuple[float, float | None]] = {}
    for spec in SPECS:
        # Dirac needs a conv kernel: (size, size, 1) holds the same number of values.
        shape = (size, size, 1) if isinstance(spec, mi.spec.Dirac) else (size, size)
        code, native_init = native_of(spec, shape)
        inits = [mim.Multiinit(spec), mim.Multiinit(spec, seed=0)]
        if native_init is not None:
            inits.append(native_init)
        times = timed(inits, shape, repeats)
        rows[repr(spec)] = (times[0], times[2] if native_init is not None else None)
        native, ratio = "", ""
        if native_init is not None:
            native, ratio = f"{times[2] * 1e3:9.1f}", f"{times[0] / times[2]:6.2f}"
        print(
            f"{str(spec)[:50]:<50} {times[0] * 1e3:10.1f} {times[1] * 1e3:9.1f} "
            f"{native:>9} {ratio:>6}  {code}",
            flush=True,
        )
    write_times(times_path, "mxnet", size, rows)


# --------------------------------------------------------------------------- model level

_CASE = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import mxnet as mx
from mxnet.gluon import nn
import multiinit as mi
case, layers, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deferred = case.startswith("deferred")
net = nn.Sequential()
net.add(*(nn.Dense(size) if deferred else nn.Dense(size, in_units=size) for _ in range(layers)))
rules = {"weight": mi.normal(std=0.02), "bias": mi.zeros()}
x = mx.nd.ones((1, size))
if case.endswith("no grad"):  # MXNet allocates a gradient buffer per parameter at init
    net.collect_params().setattr("grad_req", "null")
if not deferred:
    net.initialize()
    mx.nd.waitall()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # a deferred model holds no array yet
start = time.perf_counter()
if case == "native":
    net.collect_params(".*weight").initialize(mx.init.Normal(0.02), force_reinit=True)
    net.collect_params(".*bias").initialize(mx.init.Zero(), force_reinit=True)
elif case in ("apply", "portable"):
    mi.apply(net, rules, seed=0, portable=case == "portable")
elif case == "deferred native":
    net.initialize(mx.init.Normal(0.02))
    net(x)
else:
    net.initialize()
    mi.apply(net, rules, seed=0)
    net(x)
mx.nd.waitall()
seconds = time.perf_counter() - start
assert abs(float(net[layers - 1].weight.data()[0].asnumpy().std()) - 0.02) < 0.002
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "above_mb": peak - base}))
"""


def apply_table(size: int, layers: int, repeats: int) -> None:
    """Print model-level times and peak RSS, each case in fresh processes (fastest of ``repeats``)."""
    params = layers * (size * size + size)
    print(
        f"\nmi.apply on {layers} x Dense({size}, in_units={size}): {params / 1e6:.0f}M parameters, "
        f"{params * 4 / 2**20:.0f} MB of float32; fastest of {repeats} fresh processes\n"
    )
    header = f"{'case':<44} {'seconds':>8} {'ratio':>6} {'peak RSS MB':>12} {'above start / params':>21}"
    print(header)
    print("-" * len(header))
    results = {}
    cases = [
        ("native", "native re-init (collect_params.initialize)", None),
        ("apply", "mi.apply(seed=0)", "native"),
        ("portable", "mi.apply(seed=0, portable=True)", "native"),
        ("deferred native", "deferred: initialize(Normal) + forward", None),
        ("deferred apply", "deferred: initialize + mi.apply + forward", "deferred native"),
        ("deferred apply no grad", "the same, grad_req='null' (no gradients)", "deferred native"),
    ]
    for case, label, against in cases:
        runs = []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-c", _CASE, case, str(layers), str(size)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = min(runs, key=lambda r: r["seconds"])
        results[case] = best
        ratio = f"{best['seconds'] / results[against]['seconds']:6.2f}" if against else ""
        above = max(r["above_mb"] for r in runs) * 2**20 / (params * 4)
        print(
            f"{label:<44} {best['seconds']:8.2f} {ratio:>6} {max(r['peak_mb'] for r in runs):12.0f} "
            f"{above:21.2f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--apply", action="store_true", help="also time mi.apply on a stack of Dense layers")
    parser.add_argument(
        "--layers", type=int, default=4, help="Dense layers for --apply (18 is about 300M parameters)"
    )
    add_times_option(parser)
    add_rounds_option(parser)
    args = parser.parse_args(argv)
    specs_table(args.size, args.repeats, args.times)
    if args.apply:
        apply_table(args.size, args.layers, max(1, min(args.repeats, 3)))
    shape = (args.size, args.size)

    def ratio(spec: mi.Spec) -> float:
        ours, theirs = timed([mim.Multiinit(spec), D2lMyInit()], shape, args.repeats)
        return ours / theirs

    print_chapter_rounds(args.chapter_rounds, ratio)


if __name__ == "__main__":
    main()
