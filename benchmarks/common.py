"""The specs every adapter benchmark times, so that their tables line up row by row.

The benchmarks run as scripts (``python benchmarks/bench_<backend>.py``), which puts this
folder on ``sys.path``: ``from common import SPECS``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

import multiinit as mi


def d2l_my_init(rng: np.random.Generator, shape: tuple[int, ...], dtype: object) -> np.ndarray:
    """The seed chapter's my_init law in NumPy: U(-10, 10), zeroed where |w| < 5."""
    w = rng.uniform(-10, 10, shape)
    return w * (np.abs(w) >= 5)


def d2l_my_init_in_dtype(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The same law written as the chapter's framework versions are: drawn in the dtype asked
    for (float32 here, where ``d2l_my_init`` draws float64), in place. NumPy draws float32 and
    float64 only: a float16 tensor gets float32 values, which multiinit rounds."""
    w = rng.random(shape, dtype=np.float64 if dtype == np.float64 else np.float32)
    w *= 20
    w -= 10
    w *= np.abs(w) >= 5
    return w


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
    mi.variance_scaling(0.5, "fan_avg", "truncated_normal"),
    mi.orthogonal(),
    mi.eye(),
    mi.dirac(),
    mi.sparse(0.1),
    mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
    mi.custom(d2l_my_init, name="bench.my_init"),
    mi.custom(d2l_my_init_in_dtype, name="bench.my_init_in_dtype"),
    mi.custom(d2l_my_init, name="bench.my_init_tiles", elementwise=True),
]

#: The seed chapter's law, as a mixture and as a custom function (called whole, or tile by tile
#: with ``elementwise=True``): timed against the chapter's own native code.
CHAPTER_LAW = (mi.spec.Mixture, mi.spec.Custom)


#: The seed chapter's rows of ``SPECS``, for ``--chapter-rounds``.
CHAPTER_SPECS = [spec for spec in SPECS if isinstance(spec, CHAPTER_LAW)]


def add_rounds_option(parser: argparse.ArgumentParser) -> None:
    """``--chapter-rounds N``: the seed chapter's rows again, N rounds of interleaved pairs."""
    parser.add_argument(
        "--chapter-rounds",
        type=int,
        default=0,
        metavar="N",
        help="then time each of the seed chapter's rows against the chapter's own my_init in N more "
        "rounds (each the script's usual interleaved pair) and print each row's min, median and max ratio",
    )


def print_chapter_rounds(rounds: int, ratio: Callable[[mi.Spec], float]) -> None:
    """Print, for each of ``CHAPTER_SPECS``, the min, median and max of ``ratio(spec)`` (one
    interleaved pair of the adapter and the chapter's own ``my_init``) over ``rounds`` rounds,
    the rows taking turns within each round: one run's figure moves from run to run, and the
    issue's goals (``mixture`` 1.2x, ``custom`` 1.5x) are about every run."""
    if rounds <= 0:
        return
    print(f"\nthe seed chapter's rows in {rounds} rounds against the chapter's own my_init")
    ratios: dict[str, list[float]] = {repr(spec): [] for spec in CHAPTER_SPECS}
    for _ in range(rounds):
        for spec in CHAPTER_SPECS:
            ratios[repr(spec)].append(ratio(spec))
    for name, values in ratios.items():
        within = "  ".join(f"at most {goal}: {sum(v <= goal for v in values)}" for goal in (1.2, 1.5))
        print(
            f"  {name:<60.60} min {min(values):5.2f}  median {statistics.median(values):5.2f}  "
            f"max {max(values):5.2f}  {within} of {len(values)}"
        )


def add_times_option(parser: argparse.ArgumentParser) -> None:
    """``--times FILE``: the per-spec table's adapter times as JSON, for ``compare_laws.py``."""
    parser.add_argument(
        "--times",
        metavar="FILE",
        help="also write each spec's adapter time and if it has a native call (JSON, for compare_laws.py)",
    )


def write_times(
    path: str | None, framework: str, size: int, rows: dict[str, tuple[float, float | None]]
) -> None:
    """Write ``rows`` (``repr(spec)`` -> (adapter seconds, native seconds or None)) to ``path``."""
    if path is None:
        return
    specs = {
        name: {"ms": round(ours * 1e3, 2), "native_ms": None if theirs is None else round(theirs * 1e3, 2)}
        for name, (ours, theirs) in rows.items()
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"framework": framework, "size": size, "specs": specs}, f, indent=1)


def memory_line() -> str:
    """The memory facts that move these figures between machines of the same kind, for the
    head of a benchmark's output. A fresh page costs a fault and its zeroing: about 1.4 us per
    4 KB page on the project's VM (2 us on a just-booted one, whose host has not yet backed the
    guest's memory), so a call that writes 64 MB into new 4 KB pages pays 20-30 ms that one
    writing into 2 MB pages does not. NumPy asks for huge pages for big arrays; TensorFlow's
    allocator does not, and with transparent huge pages on ``madvise`` (not ``always``) only
    the former gets them."""
    try:
        modes = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().split()
        thp = next((m.strip("[]") for m in modes if m.startswith("[")), "unknown")
    except OSError:
        thp = "unknown"
    try:
        up = f"{float(Path('/proc/uptime').read_text().split()[0]) / 60:.0f} min"
    except (OSError, ValueError, IndexError):
        up = "unknown"
    return f"transparent huge pages: {thp}; machine up {up}"


def faults_per_call(call: Callable[[], object], calls: int = 3) -> float:
    """Minor page faults (fresh pages touched) per ``call()``, after one warm-up call."""
    call()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        call()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls
