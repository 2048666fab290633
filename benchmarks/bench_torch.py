"""Time every spec through the torch adapter against torch's own call, on a 4096x4096 float32.

Run in the torch env: ``python benchmarks/bench_torch.py [--repeats 7] [--size 4096] [--threads N]
[--chapter-rounds N]``
(``--threads`` defaults to torch's own default, one per core, as a user's program gets).
The adapter is called as users call it, ``mi.compile(spec, "torch")(w)``; the native call is
the one ``multiinit.explain`` names for the spec (``torch.nn.init.*``), or, for the seed
chapter's custom law, the chapter's own ``my_init`` (``uniform_(-10, 10)`` then zero where
``|w| < 5``). Both draw from torch's global RNG into the same preallocated tensor. Adapter and
native calls alternate (the order flipping each round) so that load from other processes
hits both alike; each row is the fastest of ``--repeats`` rounds after one warm-up call each
(3 rounds when one call takes over a second): on a machine shared with other work the
minimum is the stable estimate of a call's own cost (as ``timeit`` advises), where medians of
two identical calls still differ by 10%. Dirac fills a (size, size, 1) conv kernel (it
needs 3-5 dimensions): the same number of values. Two more tables follow: the truncated family
against ``normal_`` with the same std (the cost of the truncation itself), and ``custom(my_init)``
against the same NumPy function called by hand and copied in (the cost of the fence and seeding).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import multiinit as mi

from common import (
    CHAPTER_LAW as _CHAPTER_LAW,
    SPECS,
    add_rounds_option,
    add_times_option,
    d2l_my_init,
    memory_line,
    print_chapter_rounds,
    write_times,
)


def d2l_torch_my_init(w: torch.Tensor) -> None:
    """The chapter's own torch code, verbatim but for the module test."""
    torch.nn.init.uniform_(w, -10, 10)
    w.data *= w.data.abs() >= 5


def native_for(spec: mi.Spec, shape: tuple[int, ...]):
    """``(label, fill(w))`` of torch's own equivalent, or ``(None, None)``."""
    if isinstance(spec, _CHAPTER_LAW):
        return "my_init (d2l, torch)", d2l_torch_my_init
    code = mi.explain(spec, shape, "torch").native["torch"]
    if code is None:
        return None, None
    # The text comes from multiinit.explain, not from a user.
    compiled = compile(code, "<explain>", "eval")
    return code.replace("torch.nn.init.", ""), lambda w: eval(compiled, {"torch": torch, "w": w})


def _once(fill, w: torch.Tensor) -> float:
    start = time.perf_counter()
    fill(w)
    float(w.reshape(-1)[-1])  # the draw has finished
    return time.perf_counter() - start


def timed_pair(ours, theirs, w: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Fastest seconds of the adapter's and of the native call, interleaved."""
    warm = _once(ours, w) + _once(theirs, w)
    rounds = 3 if warm > 2.0 else repeats
    a, b = [], []
    for i in range(rounds):
        if i % 2:
            b.append(_once(theirs, w))
            a.append(_once(ours, w))
        else:
            a.append(_once(ours, w))
            b.append(_once(theirs, w))
    return min(a), min(b)


def truncated_against_normal(size: int, repeats: int) -> None:
    """The truncated family against ``normal_`` with the same std on the same tensor: what the
    truncation itself costs (torch has no native truncated normal but the slow trunc_normal_)."""
    print("\ntruncated normals against normal_(w, 0, sigma) on the same tensor")
    w = torch.empty(size, size)
    fans = mi.compute_fans((size, size))
    for spec in (
        mi.he_normal(),
        mi.glorot_normal(),
        mi.lecun_normal(),
        mi.truncated_normal(std=0.02),
        mi.variance_scaling(0.5, "fan_avg", "truncated_normal"),
    ):
        scaled = spec.as_variance_scaling()
        sigma = scaled.law(*fans)[1] if scaled is not None else spec.std
        a, b = timed_pair(
            mi.compile(spec, "torch"), lambda t, s=sigma: torch.nn.init.normal_(t, 0.0, s), w, repeats
        )
        print(f"  {spec!r:<60.60} {a * 1e3:8.1f} ms vs {b * 1e3:8.1f} ms   ratio {a / b:5.2f}")


def custom_against_numpy(size: int, repeats: int) -> None:
    """``custom(fn)`` against the same NumPy function called by hand and copied into the
    tensor: what multiinit adds around a user's law (seeding, the fence, the copy)."""
    print("\ncustom(my_init) against the same NumPy my_init called by hand")
    w = torch.empty(size, size)
    rng = np.random.default_rng(0)

    def by_hand(t: torch.Tensor) -> None:
        t.copy_(torch.from_numpy(d2l_my_init(rng, tuple(t.shape), np.float32).astype(np.float32)))

    a, b = timed_pair(mi.compile(mi.custom(d2l_my_init, name="bench.my_init"), "torch"), by_hand, w, repeats)
    print(f"  {'custom(my_init)':<60} {a * 1e3:8.1f} ms vs {b * 1e3:8.1f} ms   ratio {a / b:5.2f}")


def noise_floor(size: int, repeats: int) -> None:
    """The ratio of a native call timed against itself the same way: how far from 1.00 a row
    above may land with no overhead at all."""
    print("\nnoise floor: each native call timed against itself, as the rows above are")
    w = torch.empty(size, size)
    for label, native in (
        ("zeros_(w)", torch.nn.init.zeros_),
        ("uniform_(w)", torch.nn.init.uniform_),
        ("normal_(w)", torch.nn.init.normal_),
    ):
        a, b = timed_pair(native, native, w, repeats)
        print(f"  {label:<14} {a * 1e3:8.1f} ms vs {b * 1e3:8.1f} ms   ratio {a / b:5.2f}")


def per_call_overhead(calls: int = 20000) -> None:
    """The adapter's fixed cost per call (argument and shape checks, dispatch), measured on a
    16x16 tensor where the draw itself costs almost nothing."""
    print(f"\nfixed cost per call on a 16x16 tensor (fastest of 5 runs of {calls} calls)")
    w = torch.empty(16, 16)
    for spec in (mi.uniform(-0.5, 0.25), mi.xavier_uniform(), mi.kaiming_normal(), mi.he_normal()):
        ours = mi.compile(spec, "torch")
        _, theirs = native_for(spec, (16, 16))
        results = []
        for fill in (ours, theirs):
            runs = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(calls):
                    fill(w)
                runs.append((time.perf_counter() - start) / calls)
            results.append(min(runs))
        print(
            f"  {spec!r:<40} adapter {results[0] * 1e6:6.1f} us, native {results[1] * 1e6:6.1f} us, "
            f"difference {(results[0] - results[1]) * 1e6:+6.1f} us"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    add_times_option(parser)
    add_rounds_option(parser)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); {args.size}x{args.size} float32, "
        f"fastest of {args.repeats} interleaved rounds after a warm-up; {memory_line()}\n"
    )
    header = f"{'spec':<62} {'native':<52} {'adapter ms':>10} {'native ms':>10} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    rows: dict[str, tuple[float, float | None]] = {}
    for spec in SPECS:
        shape = (args.size, args.size, 1) if isinstance(spec, mi.spec.Dirac) else (args.size, args.size)
        w = torch.empty(shape)
        ours = mi.compile(spec, "torch")
        label, native = native_for(spec, shape)
        if native is None:
            _once(ours, w)
            t = min(_once(ours, w) for _ in range(args.repeats))
            rows[repr(spec)] = (t, None)
            print(f"{spec!r:<62.62} {'no native equivalent':<52} {t * 1e3:>10.1f} {'-':>10} {'-':>6}")
            continue
        a, b = timed_pair(ours, native, w, args.repeats)
        rows[repr(spec)] = (a, b)
        print(f"{spec!r:<62.62} {label:<52.52} {a * 1e3:>10.1f} {b * 1e3:>10.1f} {a / b:>6.2f}")
    write_times(args.times, f"torch {args.threads}T", args.size, rows)
    truncated_against_normal(args.size, args.repeats)
    custom_against_numpy(args.size, args.repeats)
    noise_floor(args.size, args.repeats)
    per_call_overhead()
    w = torch.empty(args.size, args.size)

    def ratio(spec: mi.Spec) -> float:
        a, b = timed_pair(mi.compile(spec, "torch"), d2l_torch_my_init, w, args.repeats)
        return a / b

    print_chapter_rounds(args.chapter_rounds, ratio)


if __name__ == "__main__":
    main()
