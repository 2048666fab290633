"""Each law's time across the frameworks: where a framework has no native call, against the fastest.

Each adapter benchmark runs in its own env and can write its per-spec times
(``--times FILE``); this script reads those files (no framework is imported) and prints, per
spec, every framework's adapter time, the fastest, and for each cell without a native call
(marked ``*``) its time over the fastest framework's. Issue 17 asks those cells to be within
1.5x, or the README to say why not; the cells beyond are listed last. ``--markdown`` prints
the per-spec table of docs/benchmarks.md instead (adapter / native, or the adapter's own time
and its ratio to the fastest framework where there is no native call).

    python benchmarks/bench_torch.py --threads 2 --times /tmp/torch.json    # torch env
    python benchmarks/bench_keras.py --times /tmp/keras.json                # tensorflow env
    python benchmarks/bench_flax.py --times /tmp/flax.json                  # jax env
    python benchmarks/bench_mxnet.py --times /tmp/mxnet.json                # mxnet env
    python benchmarks/compare_laws.py /tmp/torch.json /tmp/keras.json /tmp/flax.json /tmp/mxnet.json

The files must come from one quiet machine, at the same ``--size``. Caveat: torch's and MXNet's
calls fill a tensor allocated once, Keras' and JAX's return a new one (their first touch of
fresh pages counts: ~1 ms per MB on this machine), so the fastest of a cheap law (zeros, eye)
is usually torch's.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

#: A cell without a native call beyond this many times the fastest framework needs a reason.
LIMIT = 1.5


def _load(paths: list[str]) -> tuple[list[dict[str, Any]], int]:
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    sizes = {run["size"] for run in runs}
    if len(sizes) != 1:
        raise SystemExit(f"the files were written at different sizes: {sorted(sizes)}")
    return runs, sizes.pop()


def _markdown(runs: list[dict[str, Any]], specs: list[str]) -> None:
    print("| spec | " + " | ".join(run["framework"] for run in runs) + " |")
    print("|---" * (len(runs) + 1) + "|")
    for spec in specs:
        cells = [run["specs"][spec] for run in runs]
        best = min(cell["ms"] for cell in cells)
        shown = []
        for cell in cells:
            if cell["native_ms"] is None:
                shown.append(f"no native ({cell['ms']:.0f} ms; {cell['ms'] / best:.2f}x the fastest)")
            else:
                shown.append(f"{cell['ms'] / cell['native_ms']:.2f}")
        print(f"| `{spec}` | " + " | ".join(shown) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("files", nargs="+", metavar="FILE", help="--times files of the adapter benchmarks")
    parser.add_argument("--markdown", action="store_true", help="print docs/benchmarks.md's per-spec table")
    args = parser.parse_args(argv)
    runs, size = _load(args.files)
    names = [run["framework"] for run in runs]
    specs = [s for s in runs[0]["specs"] if all(s in run["specs"] for run in runs)]
    if args.markdown:
        _markdown(runs, specs)
        return
    print(f"{size}^2 float32; ms of the adapter; * = no native call in that framework\n")
    header = f"{'spec':<60} " + " ".join(f"{n[:16]:>16}" for n in names) + f" {'fastest':>12}"
    print(header)
    print("-" * len(header))
    beyond = []
    for spec in specs:
        cells = [run["specs"][spec] for run in runs]
        fastest = min(range(len(runs)), key=lambda i: cells[i]["ms"])
        best = cells[fastest]["ms"]
        shown = []
        for name, cell in zip(names, cells, strict=True):
            text = f"{cell['ms']:.1f}"
            if cell["native_ms"] is None:
                ratio = cell["ms"] / best
                text = f"*{text} ({ratio:.2f}x)"
                if ratio > LIMIT:
                    beyond.append((spec, name, cell["ms"], names[fastest], best, ratio))
            shown.append(f"{text:>16}")
        print(f"{spec[:60]:<60} " + " ".join(shown) + f" {names[fastest][:12]:>12}")
    print(f"\ncells without a native call beyond {LIMIT}x the fastest framework:")
    for spec, name, ms, fastest_name, best, ratio in beyond:
        print(f"  {spec[:60]:<60} {name}: {ms:.1f} ms, {ratio:.2f}x {fastest_name}'s {best:.1f} ms")
    if not beyond:
        print("  none")


if __name__ == "__main__":
    main()
