"""``multiinit report``: the cross-backend matrix put side by side, for a person.

Each tox env runs the matrix test and writes ``matrix-<backend>.json`` into a results folder;
this command gathers them, prints one table (rows: specs and shapes, columns: backends, each
cell the verdict and the key statistic with the analytic value beside it), writes the same as
Markdown and JSON, and draws one PNG per spec: every backend's histogram over the analytic
density. It exits non-zero when a cell disagrees or a backend's results are missing.

It also compares portable mode across frameworks: each env that ran ``tests/test_portable.py``
wrote ``portable-<backend>.json`` (the outputs of one architecture built natively in that
framework and initialized with ``portable=True``); the report puts the outputs side by side and
fails when two frameworks, or a framework and the NumPy network, disagree beyond the tolerance
the test states.

It reads JSON and imports no framework; SciPy and matplotlib (the ``report`` extra) are
imported only to draw, and tqdm (same extra) only to show a progress bar while drawing, when
stderr is a terminal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "main",
    "gather",
    "build_table",
    "render_text",
    "render_markdown",
    "compare_portable",
    "BACKEND_ORDER",
]

#: Keras is one adapter on three backends: ``keras`` (TensorFlow), ``keras-jax``, ``keras-torch``.
BACKEND_ORDER = ("numpy", "torch", "keras", "keras-jax", "keras-torch", "flax", "mxnet")
#: The tox env that produces each backend's results, for the "missing" message.
TOX_ENV = {
    "numpy": "core",
    "torch": "torch",
    "keras": "tensorflow",
    "keras-jax": "keras-jax",
    "keras-torch": "keras-torch",
    "flax": "jax",
    "mxnet": "mxnet",
}


def gather(
    folder: Path, backends: Sequence[str], kind: str = "matrix"
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """The records of each backend found in ``folder``, and the backends with none.

    >>> import json, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "matrix-torch.json").write_text(json.dumps({"records": [{"spec": "zeros()"}]}))
    >>> found, missing = gather(folder, ["torch", "keras"])
    >>> found["torch"], missing
    ([{'spec': 'zeros()'}], ['keras'])
    """
    found: dict[str, list[dict[str, Any]]] = {}
    missing = []
    for backend in backends:
        path = folder / f"{kind}-{backend}.json"
        if not path.is_file():
            missing.append(backend)
            continue
        found[backend] = json.loads(path.read_text())["records"]
    return found, missing


def _key_statistic(record: dict[str, Any]) -> tuple[str, str]:
    """(what the backend measured, the analytic value) for one cell."""
    if record.get("refused") is not None and not record.get("checks"):
        return ("ShapeError" if record["verdict"] == "pass" else record["refused"][:40], "ShapeError")
    checks = {c["name"]: c for c in record["checks"]}
    if "exact" in checks:
        mismatches = int(checks["exact"]["value"])
        return ("exact" if mismatches == 0 else f"{mismatches} differ", "exact")
    summary, analytic = record.get("summary", {}), record.get("analytic")
    if analytic is None:  # custom: no analytic law, compared with the reference draw
        ks = checks.get("ks vs reference")
        return (f"std {summary['std']:.4g}", f"ref p={ks['p']:.2g}" if ks else "-")
    return (f"std {summary['std']:.4g}", f"{analytic['std']:.4g}")


def build_table(found: dict[str, list[dict[str, Any]]], backends: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (spec, case): the law and, per backend, verdict and key statistic.

    >>> exact = {"spec": "zeros()", "case": "(2, 3)", "law": "0", "verdict": "pass",
    ...          "checks": [{"name": "exact", "value": 0}]}
    >>> [row] = build_table({"torch": [exact], "keras": [exact]}, ["torch", "keras"])
    >>> row["spec"], row["analytic"], row["cells"]["keras"]["measured"]
    ('zeros()', 'exact', 'exact')
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for backend in backends:
        for record in found.get(backend, []):
            key = (record["spec"], record["case"])
            row = rows.setdefault(
                key, {"spec": record["spec"], "case": record["case"], "law": record["law"], "cells": {}}
            )
            measured, analytic = _key_statistic(record)
            row["cells"][backend] = {
                "verdict": record["verdict"],
                "measured": measured,
                "analytic": analytic,
                "record": record,
            }
            if analytic not in ("ShapeError",):
                row["analytic"] = analytic
            row.setdefault("analytic", analytic)
    return list(rows.values())


def _cell_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "missing"
    mark = "ok" if cell["verdict"] == "pass" else "FAIL"
    return f"{mark} {cell['measured']}"


def render_text(rows: list[dict[str, Any]], backends: Sequence[str], width: int = 28) -> str:
    """The table for a terminal: spec | shape | analytic | one column per backend.

    >>> exact = {"spec": "zeros()", "case": "(2, 3)", "law": "0", "verdict": "pass",
    ...          "checks": [{"name": "exact", "value": 0}]}
    >>> print(render_text(build_table({"torch": [exact]}, ["torch"]), ["torch", "jax"]))
    spec     shape   analytic std  torch     jax
    -------  ------  ------------  --------  -------
    zeros()  (2, 3)  exact         ok exact  missing
    """
    header = ["spec", "shape", "analytic std", *backends]
    lines = [
        [r["spec"], r["case"], r["analytic"], *(_cell_text(r["cells"].get(b)) for b in backends)]
        for r in rows
    ]
    clipped = [[c if len(c) <= width else c[: width - 1] + "~" for c in line] for line in [header, *lines]]
    widths = [max(len(line[i]) for line in clipped) for i in range(len(header))]
    out = []
    for i, line in enumerate(clipped):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def render_markdown(rows: list[dict[str, Any]], backends: Sequence[str], pictures: dict[str, str]) -> str:
    """The same table as Markdown, with the law and a link to each spec's picture.

    >>> exact = {"spec": "zeros()", "case": "(2, 3)", "law": "0", "verdict": "pass",
    ...          "checks": [{"name": "exact", "value": 0}]}
    >>> rows = build_table({"torch": [exact]}, ["torch"])
    >>> print(render_markdown(rows, ["torch"], {"zeros()": "zeros.png"}))
    | spec | shape | law | analytic std | torch |
    |---|---|---|---|---|
    | [zeros()](zeros.png) | (2, 3) | 0 | exact | ✅ exact |
    """
    head = ["spec", "shape", "law", "analytic std", *backends]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        spec = r["spec"].replace("|", "\\|")
        if r["spec"] in pictures:
            spec = f"[{spec}]({pictures[r['spec']]})"
        cells = []
        for b in backends:
            cell = r["cells"].get(b)
            cells.append(
                "missing"
                if cell is None
                else ("✅ " if cell["verdict"] == "pass" else "❌ ") + cell["measured"]
            )
        out.append(
            "| " + " | ".join([spec, r["case"], r["law"].replace("|", "\\|"), r["analytic"], *cells]) + " |"
        )
    return "\n".join(out)


def _slug(text: str) -> str:
    import hashlib

    # Readable, and unique even when two long specs share their first 48 characters.
    readable = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:48]
    return f"{readable}_{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def _progress_bar(total: int) -> Any:
    """A progress bar over ``total`` pictures on stderr (tqdm), or None when stderr is not a
    terminal: logs and captured output get no carriage-return frames."""
    if total == 0 or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the report extra; the report is whole without it
        return None
    return tqdm(total=total, desc="pictures", unit="spec", file=sys.stderr, leave=True, dynamic_ncols=True)


def draw_pictures(rows: list[dict[str, Any]], backends: Sequence[str], folder: Path) -> dict[str, str]:
    """One PNG per spec: each backend's histogram over the analytic density, per shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .spec import from_dict
    from .stats import law as law_of

    by_spec: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_spec.setdefault(row["spec"], []).append(row)
    folder.mkdir(parents=True, exist_ok=True)
    pictures = {}
    bar = _progress_bar(len(by_spec))
    for spec_text, spec_rows in by_spec.items():
        if bar is not None:
            bar.set_postfix_str(spec_text[:40], refresh=False)
        fig, axes = plt.subplots(1, len(spec_rows), figsize=(6 * len(spec_rows), 3.6), squeeze=False)
        for ax, row in zip(axes[0], spec_rows, strict=True):
            some = next(iter(row["cells"].values()))["record"]
            ax.set_title(f"{row['case']} {tuple(some['logical_shape'])} (logical)", fontsize=9)
            drawn = False
            for backend in backends:
                cell = row["cells"].get(backend)
                hist = cell and cell["record"].get("histogram")
                if not hist:
                    continue
                counts, edges = np.asarray(hist["counts"], float), np.asarray(hist["edges"])
                density = counts / max(cell["record"]["n"], 1) / np.diff(edges)
                mark = "" if cell["verdict"] == "pass" else " FAIL"
                ax.stairs(density, edges, label=f"{backend}{mark}", linewidth=1.2)
                drawn = True
            if drawn:
                try:
                    the_law = law_of(from_dict(some["spec_dict"]), tuple(some["logical_shape"]))
                except Exception:  # noqa: BLE001 - a custom spec is not registered in this process
                    the_law = None
                if the_law is not None and the_law.parts:
                    xs = np.linspace(edges[0], edges[-1], 600)
                    pdf = sum(w * d.pdf(xs) for w, d in the_law.parts)
                    ax.plot(xs, pdf, "k--", linewidth=1, label="analytic")
                    top = float(np.max(pdf)) if np.max(pdf) > 0 else None
                    if top:
                        ax.set_ylim(0, 1.6 * top)
                    for value, mass in (the_law.atoms or {}).items():
                        ax.axvline(value, color="gray", linewidth=0.8)
                        ax.annotate(
                            f"P(x={value:g})={mass:.3g}",
                            (value, 1.45 * top if top else 1),
                            fontsize=7,
                            ha="center",
                        )
                ax.legend(fontsize=7)
            else:
                names, heights = [], []
                for backend in backends:
                    cell = row["cells"].get(backend)
                    if cell:
                        names.append(backend)
                        heights.append(1.0 if cell["verdict"] == "pass" else 0.0)
                ax.bar(names, heights, color=["tab:green" if h else "tab:red" for h in heights])
                ax.set_ylim(0, 1.2)
                ax.set_ylabel(
                    "agrees exactly" if "refused" not in some or not some.get("refused") else "refuses shape"
                )
            ax.tick_params(labelsize=7)
        fig.suptitle(spec_text, fontsize=10)
        fig.tight_layout()
        name = f"{_slug(spec_text)}.png"
        fig.savefig(folder / name, dpi=90)
        plt.close(fig)
        pictures[spec_text] = name
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return pictures


def _close(a: Sequence[float], b: Sequence[float], tolerance: float) -> tuple[bool, float]:
    """(``a`` equals ``b`` within ``|a - b| <= tol + tol * |b|``, the largest ``|a - b|``)."""
    if len(a) != len(b):
        return False, math.inf
    pairs = list(zip(a, b, strict=True))
    worst = max((abs(x - y) for x, y in pairs), default=0.0)
    return all(abs(x - y) <= tolerance * (1 + abs(y)) for x, y in pairs), worst


def _flat(values: Any) -> list[float]:
    if isinstance(values, (list, tuple)):
        return [v for item in values for v in _flat(item)]
    return [float(values)]


def compare_portable(found: dict[str, list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Per model: each backend's largest difference from the NumPy network and from the other
    backends; and the failure lines (empty when every framework gave the same outputs).

    >>> mlp = {"model": "mlp", "seed": 0, "rules": "he_normal", "tolerance": 1e-4, "reference": [[1.0, 2.0]]}
    >>> rows, failures = compare_portable(
    ...     {"torch": [{**mlp, "output": [[1.0, 2.0]]}], "jax": [{**mlp, "output": [[1.0, 2.5]]}]}
    ... )
    >>> rows[0]["shape"], rows[0]["across"], failures[0]
    ('1x2', 0.5, 'PORTABLE DIFFERS: backend jax, model mlp: outputs differ from the NumPy network by up to 0.5 (tolerance 0.0001)')
    """  # noqa: E501 - a doctest output line, as printed
    models: dict[str, dict[str, dict[str, Any]]] = {}
    for backend, records in found.items():
        for record in records:
            models.setdefault(record["model"], {})[backend] = record
    rows, failures = [], []
    for model, by_backend in models.items():
        first = next(iter(by_backend.values()))
        reference = _flat(first["reference"])
        tolerance = float(first["tolerance"])
        cells = {}
        for backend, record in by_backend.items():
            ok, worst = _close(_flat(record["output"]), reference, tolerance)
            cells[backend] = {"ok": ok, "vs_reference": worst}
            if not ok:
                failures.append(
                    f"PORTABLE DIFFERS: backend {backend}, model {model}: outputs differ from "
                    f"the NumPy network by up to {worst:.3g} (tolerance {tolerance:g})"
                )
        names = list(by_backend)
        across = 0.0
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                ok, worst = _close(_flat(by_backend[a]["output"]), _flat(by_backend[b]["output"]), tolerance)
                across = max(across, worst)
                if not ok:
                    failures.append(
                        f"PORTABLE DIFFERS: model {model}: {a} and {b} outputs differ by up to "
                        f"{worst:.3g} (tolerance {tolerance:g})"
                    )
        n_rows = len(first["output"])
        rows.append(
            {
                "model": model,
                "seed": first["seed"],
                "rules": first["rules"],
                "shape": f"{n_rows}x{len(_flat(first['output'])) // max(n_rows, 1)}",
                "first": reference[0],
                "cells": cells,
                "across": across,
            }
        )
    return rows, failures


def render_portable(rows: list[dict[str, Any]], backends: Sequence[str], markdown: bool = False) -> str:
    """The portable comparison as a text (or Markdown) table."""
    head = ["model", "outputs", *backends, "max |diff| between frameworks"]
    body = [
        [
            r["model"],
            r["shape"],
            *(
                ("ok" if r["cells"][b]["ok"] else "DIFFERS") + f" {r['cells'][b]['vs_reference']:.1e}"
                if b in r["cells"]
                else "missing"
                for b in backends
            ),
            f"{r['across']:.1e}",
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(str(x)) for x in column) for column in zip(head, *body, strict=True)]
    return "\n".join(
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in [head, *body]
    )


def _portable_section(
    results: Path, backends: Sequence[str], require: bool
) -> tuple[int, str, dict[str, Any]]:
    """Print the portable comparison; (status, Markdown, JSON summary)."""
    frameworks = [b for b in backends if b != "numpy"]
    found, missing = gather(results, frameworks, kind="portable")
    if not found and not require:
        return 0, "", {}
    status = 0
    for backend in missing:
        print(
            f"multiinit report: no portable results for backend {backend!r} in {results} "
            f"(run: tox -e {TOX_ENV[backend]} -- tests/test_portable.py, or tox -e report)",
            file=sys.stderr,
        )
        status = 1
    rows, failures = compare_portable(found)
    shown = [b for b in frameworks if b in found]
    if rows:
        print(
            f"\nportable mode: one architecture per row built natively in each framework, "
            f"mi.apply(..., seed={rows[0]['seed']}, portable=True);\neach cell: largest |output - "
            f"NumPy network output|"
        )
        print(render_portable(rows, shown))
    if failures:
        print("\n".join(failures), file=sys.stderr)
        status = 1
    markdown = (
        (
            "\n\n## Portable mode\n\nEach cell: the largest difference between the framework's "
            "outputs and the NumPy network's.\n\n" + render_portable(rows, shown, markdown=True)
        )
        if rows
        else ""
    )
    return status, markdown, {"backends": shown, "missing": missing, "rows": rows, "failures": len(failures)}


def report(
    results: Path, out: Path, backends: Sequence[str], pictures: bool = True, require_portable: bool = False
) -> int:
    """Gather, print, write; returns the exit status (0 only when every cell agrees)."""
    found, missing = gather(results, backends)
    status = 0
    for backend in missing:
        print(
            f"multiinit report: no results for backend {backend!r} in {results} "
            f"(run: tox -e {TOX_ENV[backend]} -- tests/test_matrix.py, or tox -e report)",
            file=sys.stderr,
        )
        status = 1
    rows = build_table(found, backends)
    shown = [b for b in backends if b in found]
    print(render_text(rows, shown))
    portable_status, portable_markdown, portable_summary = _portable_section(
        results, backends, require_portable
    )
    failures = [(b, c["record"]) for r in rows for b, c in r["cells"].items() if c["verdict"] != "pass"]
    out.mkdir(parents=True, exist_ok=True)
    names = draw_pictures(rows, shown, out) if pictures and rows else {}
    (out / "report.md").write_text(
        "# multiinit cross-backend report\n\n"
        + render_markdown(rows, shown, names)
        + ("\n\nMissing backends: " + ", ".join(missing) + "\n" if missing else "\n")
        + portable_markdown
    )
    versions = {b: found[b][0]["versions"] for b in shown if found[b]}
    summary = {
        "backends": shown,
        "missing": missing,
        "versions": versions,
        "rows": [
            {
                "spec": r["spec"],
                "case": r["case"],
                "law": r["law"],
                "analytic": r["analytic"],
                "cells": {
                    b: {"verdict": c["verdict"], "measured": c["measured"]} for b, c in r["cells"].items()
                },
            }
            for r in rows
        ],
        "failures": len(failures),
        "portable": portable_summary,
    }
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    cells = sum(len(r["cells"]) for r in rows)
    print(
        f"\n{cells - len(failures)}/{cells} cells agree across {', '.join(shown) or 'no backend'}; "
        f"wrote {out / 'report.md'}, {out / 'report.json'} and {len(names)} pictures"
    )
    if failures:
        from_matrix = _failure_lines(failures)
        print("\n".join(from_matrix), file=sys.stderr)
        status = 1
    return status or portable_status


def _failure_lines(failures: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines = []
    for backend, record in failures:
        failed = [c for c in record.get("checks", []) if not c["passed"]]
        detail = "; ".join(
            f"{c['name']}: got {c['value']:.6g}, expected {c['expected']:.6g}"
            + (f" (p={c['p']:.3g})" if c["p"] is not None else "")
            for c in failed
        ) or record.get("refused", "")
        lines.append(f"DISAGREES: backend {backend}, spec {record['spec']}, {record['case']}: {detail}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``multiinit`` command.

    >>> main(["--help"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(prog="multiinit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="gather every backend's matrix results into one table and pictures")
    rep.add_argument(
        "--results",
        type=Path,
        default=Path(os.environ.get("MULTIINIT_RESULTS", "results")),
        help="folder holding matrix-<backend>.json (default: $MULTIINIT_RESULTS or ./results)",
    )
    rep.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write report.md, report.json and PNGs (default: <results>/report)",
    )
    rep.add_argument(
        "--backends",
        default=",".join(BACKEND_ORDER),
        help=f"comma-separated backends expected (default: {','.join(BACKEND_ORDER)})",
    )
    rep.add_argument("--no-pictures", action="store_true", help="skip the PNGs (no matplotlib needed)")
    rep.add_argument(
        "--require-portable",
        action="store_true",
        help="fail unless every framework backend wrote portable-<backend>.json "
        "(without it, portable results are compared when there are any)",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKEND_ORDER]
    if unknown:
        parser.error(f"--backends={args.backends!r}: {unknown} unknown; allowed: {', '.join(BACKEND_ORDER)}")
    out = args.out or args.results / "report"
    return report(
        args.results, out, backends, pictures=not args.no_pictures, require_portable=args.require_portable
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
