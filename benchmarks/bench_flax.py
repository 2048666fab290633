"""Time every spec through the Flax adapter against JAX's own initializer, on 4096x4096 float32.

Run in the jax env: ``python benchmarks/bench_flax.py [--repeats 7] [--size 4096] [--chapter-rounds N]``.

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

Then the ratios issue 17 sets targets for, each against the draw it must be measured with:
the truncated family and sparse against ``jax.random.normal`` with the same std (what the
truncation or the zero rows cost on top of JAX's own normal draw), ``custom(my_init)`` against
the same NumPy ``my_init`` called by hand and put into a JAX array (what multiinit adds around
a user's law: seeding, the fence, the layout), and the drop-in
(``multiinit.flax.initializers``) against ``jax.nn.initializers`` call by call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp

import multiinit as mi
from multiinit import flax as mif  # noqa: F401  (the adapter)
from multiinit.flax import initializers as dropin

from common import (
    CHAPTER_LAW as _CHAPTER_LAW,
    SPECS,
    add_rounds_option,
    add_times_option,
    d2l_my_init,
    print_chapter_rounds,
    write_times,
)


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
            lambda k, s, d: jax.random.uniform(k, s, d, spec.low, spec.high)
        )
    if isinstance(spec, mi.spec.Normal):
        return "mean + std * jax.random.normal(k, s, d)", (
            lambda k, s, d: spec.mean + spec.std * jax.random.normal(k, s, d)
        )
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


def _row(label: str, native_label: str, ours: float, theirs: float) -> None:
    print(
        f"  {label:<56.56} {native_label:<40.40} {ours * 1e3:>9.1f} {theirs * 1e3:>9.1f} "
        f"{ours / theirs:>6.2f}"
    )


def against_normal(size: int, repeats: int) -> None:
    """The truncated family and sparse against ``jax.random.normal`` with the same std."""
    print("\ntruncated normals and sparse against jax.random.normal with the same std (jitted)")
    shape = (size, size)
    for spec in [
        s
        for s in SPECS
        if isinstance(s, (mi.spec.TruncatedNormal, mi.spec.Sparse))
        or (
            s.as_variance_scaling() is not None and s.as_variance_scaling().distribution == "truncated_normal"
        )
    ]:
        if isinstance(spec, (mi.spec.TruncatedNormal, mi.spec.Sparse)):
            std = spec.std
        else:
            std = spec.as_variance_scaling().law(size, size)[1]
        init = mi.compile(spec, "flax")
        ours = jax.jit(lambda key, init=init: init(key, shape, jnp.float32))
        normal = jax.jit(lambda key, std=std: std * jax.random.normal(key, shape, jnp.float32))
        a, b = timed([ours, normal], repeats)
        _row(repr(spec), "std * jax.random.normal(k, s)", a, b)


def custom_against_numpy(size: int, repeats: int) -> None:
    """``custom(my_init)`` against the same NumPy function called by hand, seeded the same
    way, put into a JAX array: what multiinit adds around the user's own law."""
    import numpy as np

    print("\ncustom(my_init) against the same NumPy my_init called by hand (eager and jitted)")
    shape = (size, size)
    init = mi.compile(mi.custom(d2l_my_init, name="bench.my_init"), "flax")

    def by_hand(key):
        words = np.asarray(jax.random.key_data(key)).ravel()
        rng = np.random.default_rng(np.random.SeedSequence([int(w) for w in words]))
        return jnp.asarray(np.asarray(d2l_my_init(rng, shape, np.float32), dtype=np.float32))

    eager = lambda key: init(key, shape, jnp.float32)  # noqa: E731
    jitted = jax.jit(eager)
    a, b, c = timed([eager, jitted, by_hand], repeats)
    _row("custom(my_init), eager", "my_init by hand + jnp.asarray", a, c)
    _row("custom(my_init), jitted", "my_init by hand + jnp.asarray", b, c)


def dropin_against_jax(size: int, repeats: int) -> None:
    """The drop-in against ``jax.nn.initializers``, both jitted: the same JAX primitives, so
    the ratio is the noise floor (and any overhead of the drop-in)."""
    print("\nmultiinit.flax.initializers against jax.nn.initializers (jitted)")
    shape = (size, size)
    for name, args in (
        ("glorot_uniform", ()),
        ("he_normal", ()),
        ("normal", (0.02,)),
        ("uniform", (0.5,)),
        ("truncated_normal", (0.02,)),
        ("orthogonal", ()),
    ):
        ours_init, native_init = getattr(dropin, name)(*args), getattr(jax.nn.initializers, name)(*args)
        ours = jax.jit(lambda key, f=ours_init: f(key, shape, jnp.float32))
        native = jax.jit(lambda key, f=native_init: f(key, shape, jnp.float32))
        a, b = timed([ours, native], repeats)
        _row(f"init.{name}{args}", f"jax.nn.initializers.{name}{args}", a, b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=4096)
    add_times_option(parser)
    add_rounds_option(parser)
    args = parser.parse_args()
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}; {args.size}x{args.size} float32, "
        f"jitted, median of {args.repeats} after a compiling warm-up\n"
    )
    header = (
        f"{'spec':<58} {'native':<42} {'adapter ms':>10} {'native ms':>9} {'ratio':>6} "
        f"{'eager ms':>9} {'eager ratio':>11}"
    )
    print(header)
    print("-" * len(header))
    rows: dict[str, tuple[float, float | None]] = {}
    for spec in SPECS:
        shape = (1, args.size, args.size) if isinstance(spec, mi.spec.Dirac) else (args.size, args.size)
        init = mi.compile(spec, "flax")
        adapter = jax.jit(lambda key, init=init, shape=shape: init(key, shape, jnp.float32))

        def eager(key, init=init, shape=shape):
            return init(key, shape, jnp.float32)

        label, native_init = native_for(spec, shape)
        if native_init is None:
            ours, ours_eager = timed([adapter, eager], args.repeats)
            rows[repr(spec)] = (ours, None)
            print(
                f"{spec!r:<58.58} {'no native equivalent':<42} {ours * 1e3:>10.1f} {'-':>9} {'-':>6} "
                f"{ours_eager * 1e3:>9.1f} {'-':>11}"
            )
            continue
        native = jax.jit(lambda key, f=native_init, shape=shape: f(key, shape, jnp.float32))
        ours, theirs, ours_eager = timed([adapter, native, eager], args.repeats)
        rows[repr(spec)] = (ours, theirs)
        print(
            f"{spec!r:<58.58} {label:<42.42} {ours * 1e3:>10.1f} {theirs * 1e3:>9.1f} "
            f"{ours / theirs:>6.2f} {ours_eager * 1e3:>9.1f} {ours_eager / theirs:>11.2f}"
        )
    write_times(args.times, "flax-jit", args.size, rows)
    against_normal(args.size, args.repeats)
    custom_against_numpy(args.size, args.repeats)
    dropin_against_jax(args.size, args.repeats)
    shape = (args.size, args.size)
    native = jax.jit(lambda key: my_init(key, shape, jnp.float32))

    def ratio(spec: mi.Spec) -> float:
        init = mi.compile(spec, "flax")
        ours, theirs = timed([jax.jit(lambda key: init(key, shape, jnp.float32)), native], args.repeats)
        return ours / theirs

    print_chapter_rounds(args.chapter_rounds, ratio)


if __name__ == "__main__":
    main()
