"""Time every spec through the Flax adapter against JAX's own initializer, on 4096x4096 float32.

Run in the jax env: ``python benchmarks/bench_flax.py [--repeats 7] [--size 4096]``.

Both sides are jitted the way Flax runs them inside a jitted ``init``:
``jax.jit(lambda key: init(key, shape, jnp.float32))``, compiled by a warm-up call; each row is
the median of ``--repeats`` calls (``block_until_ready``), adapter and native calls alternating
so that a machine slowing down slows both alike. The native call is the one
``multiinit.explain`` names for the spec; where JAX has no initializer for the law, the line a
JAX user writes instead (``jax.random.uniform(key, shape, dtype, low, high)``, ``jnp.eye``),
and for the seed chapter's law (mixture and custom) the chapter's JAX ``my_init``. A last
column times the adapter called eagerly (``init(key, shape)`` outside ``jit``, its cached
compiled kernel) against the same jitted native call: the cost of not jitting.
Dirac fills a (1, size, size) conv kernel (it needs 3-5 dimensions): the same number of values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import multiinit as mi  # noqa: E402
from common import CHAPTER_LAW as _CHAPTER_LAW  # noqa: E402
from common import SPECS  # noqa: E402
from multiinit import flax as mif  # noqa: E402,F401  (the adapter)


def my_init(key, shape, dtype=jnp.float32):
    """d2l's JAX my_init, verbatim."""
    data = jax.random.uniform(key, shape, dtype, minval=-10, maxval=10)
    return data * (jnp.abs(data) >= 5)




def native_for(spec: mi.Spec, shape: tuple[int, ...]):
    """``(label, init)`` of JAX's own equivalent (or the idiom a JAX user writes), or ``(None, None)``."""
    if isinstance(spec, _CHAPTER_LAW):
        return "my_init (d2l, JAX)", my_init
    if isinstance(spec, mi.spec.Uniform):
        return "jax.random.uniform(k, s, d, low, high)", (
            lambda k, s, d: jax.random.uniform(k, s, d, spec.low, spec.high))
    if isinstance(spec, mi.spec.Normal):
        return "mean + std * jax.random.normal(k, s, d)", (
            lambda k, s, d: spec.mean + spec.std * jax.random.normal(k, s, d))
    if isinstance(spec, mi.spec.Eye):
        return "jnp.eye(*s, dtype=d)", lambda k, s, d: jnp.eye(*s, dtype=d)
    code = mi.explain(spec, shape, "flax").native["flax"]
    if code is None:
        return None, None
    # The text comes from multiinit.explain, not from a user.
    return code.replace("jax.nn.initializers.", ""), eval(code, {"jax": jax})


def _once(fn, key) -> float:
    start = time.perf_counter()
    fn(key).block_until_ready()
    return time.perf_counter() - start


def timed(fns: list, repeats: int) -> list[float]:
    """Median seconds of each ``fn(key)`` after a warm-up (compiling) call, taking turns."""
    keys = [jax.random.key(i) for i in range(repeats + 1)]
    for fn in fns:
        _once(fn, keys[0])
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        for i, fn in enumerate(fns):
            times[i].append(_once(fn, keys[r + 1]))
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {args.size}x{args.size} float32, "
          f"jitted, median of {args.repeats} after a compiling warm-up\n")
    header = (f"{'spec':<58} {'native':<42} {'adapter ms':>10} {'native ms':>9} {'ratio':>6} "
              f"{'eager ms':>9} {'eager ratio':>11}")
    print(header)
    print("-" * len(header))
    for spec in SPECS:
        shape = (1, args.size, args.size) if isinstance(spec, mi.spec.Dirac) else (args.size, args.size)
        init = mi.compile(spec, "flax")
        adapter = jax.jit(lambda key, init=init: init(key, shape, jnp.float32))

        def eager(key, init=init):
            return init(key, shape, jnp.float32)

        label, native_init = native_for(spec, shape)
        if native_init is None:
            ours, ours_eager = timed([adapter, eager], args.repeats)
            print(f"{spec!r:<58.58} {'no native equivalent':<42} {ours * 1e3:>10.1f} {'-':>9} {'-':>6} "
                  f"{ours_eager * 1e3:>9.1f} {'-':>11}")
            continue
        native = jax.jit(lambda key, f=native_init: f(key, shape, jnp.float32))
        ours, theirs, ours_eager = timed([adapter, native, eager], args.repeats)
        print(f"{spec!r:<58.58} {label:<42.42} {ours * 1e3:>10.1f} {theirs * 1e3:>9.1f} "
              f"{ours / theirs:>6.2f} {ours_eager * 1e3:>9.1f} {ours_eager / theirs:>11.2f}")


if __name__ == "__main__":
    main()
