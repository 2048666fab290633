"""``multiinit report`` on results written by the real matrix (numpy cells), with a backend
missing and with a cell that disagrees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from multiinit import report

from matrix import SPECS, Cell, run_cell

SUBSET = [s for s in SPECS if s.kind in ("he_normal", "eye", "mixture", "orthogonal", "sparse")]


@pytest.fixture(scope="module")
def numpy_records() -> list[dict]:
    return [run_cell(Cell("numpy", spec, case)) for spec in SUBSET for case in ("dense", "conv")]


def write(folder: Path, backend: str, records: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    renamed = [dict(r, backend=backend) for r in records]
    (folder / f"matrix-{backend}.json").write_text(
        json.dumps({"kind": "matrix", "backend": backend, "records": renamed})
    )


def test_a_full_report_prints_writes_and_draws(tmp_path, numpy_records, capsys) -> None:
    write(tmp_path, "numpy", numpy_records)
    write(tmp_path, "torch", numpy_records)
    status = report.main(["report", "--results", str(tmp_path), "--backends", "numpy,torch"])
    out = capsys.readouterr().out
    assert status == 0
    header = out.splitlines()[0].split()
    assert header == ["spec", "shape", "analytic", "std", "numpy", "torch"]
    he = next(line for line in out.splitlines() if line.startswith("he_normal()") and " dense " in line)
    assert he.count("ok std 0.12") == 2 and " 0.125 " in he  # analytic sqrt(2/128) beside each
    assert "ShapeError" in next(
        line for line in out.splitlines() if line.startswith("eye()") and " conv " in line
    )
    assert "20/20 cells agree" in out
    folder = tmp_path / "report"
    markdown = (folder / "report.md").read_text()
    assert "| [he_normal()](he_normal_" in markdown and "✅ std 0.12" in markdown
    summary = json.loads((folder / "report.json").read_text())
    assert summary["failures"] == 0 and summary["backends"] == ["numpy", "torch"]
    pictures = sorted(p.name for p in folder.glob("*.png"))
    assert len(pictures) == len(SUBSET) and all(p.stat().st_size > 5000 for p in folder.glob("*.png"))


def test_a_missing_backend_is_named_and_fails(tmp_path, numpy_records, capsys) -> None:
    write(tmp_path, "numpy", numpy_records)
    status = report.main(["report", "--results", str(tmp_path), "--backends", "numpy,keras", "--no-pictures"])
    err = capsys.readouterr().err
    assert status == 1
    assert "no results for backend 'keras'" in err and "tox -e tensorflow" in err


def test_a_disagreeing_cell_fails_and_names_backend_spec_statistic_and_values(
    tmp_path, numpy_records, capsys
) -> None:
    broken = json.loads(json.dumps(numpy_records))
    cell = next(r for r in broken if r["spec"] == "he_normal()" and r["case"] == "dense")
    cell["verdict"] = "fail"
    check = next(c for c in cell["checks"] if c["name"] == "variance")
    check.update(value=0.0312, passed=False)
    write(tmp_path, "numpy", numpy_records)
    write(tmp_path, "mxnet", broken)
    status = report.main(["report", "--results", str(tmp_path), "--backends", "numpy,mxnet", "--no-pictures"])
    captured = capsys.readouterr()
    assert status == 1
    assert "FAIL std" in captured.out
    line = next(x for x in captured.err.splitlines() if x.startswith("DISAGREES"))
    assert (
        "backend mxnet" in line
        and "spec he_normal()" in line
        and "variance: got 0.0312, expected 0.015625" in line
    )


def test_the_console_script_is_installed_and_refuses_unknown_backends(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "multiinit.report",
            "report",
            "--backends",
            "caffe",
            "--results",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "caffe" in result.stderr and "allowed: numpy, torch" in result.stderr


def write_portable(folder: Path, backend: str, shift: float = 0.0) -> None:
    from test_portable import SEED, TOLERANCE, reference_output

    records = []
    for model in ("mlp", "cnn"):
        expected = reference_output(model)
        records.append(
            {
                "backend": backend,
                "model": model,
                "seed": SEED,
                "rules": [],
                "output": (expected + shift).tolist(),
                "reference": expected.tolist(),
                "tolerance": TOLERANCE,
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"portable-{backend}.json").write_text(json.dumps({"records": records}))


def test_portable_outputs_are_compared_across_frameworks(tmp_path, numpy_records, capsys) -> None:
    for backend in ("numpy", "torch", "keras"):
        write(tmp_path, backend, numpy_records)
    write_portable(tmp_path, "torch")
    write_portable(tmp_path, "keras", shift=3e-7)  # float32 rounding: agrees
    args = [
        "report",
        "--results",
        str(tmp_path),
        "--backends",
        "numpy,torch,keras",
        "--no-pictures",
        "--require-portable",
    ]
    assert report.main(args) == 0
    out = capsys.readouterr().out
    mlp = next(line for line in out.splitlines() if line.startswith("mlp "))
    assert mlp.split()[1:] == ["5x1", "ok", "0.0e+00", "ok", "3.0e-07", "3.0e-07"]
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["portable"]["failures"] == 0 and summary["portable"]["backends"] == ["torch", "keras"]
    assert "## Portable mode" in (tmp_path / "report" / "report.md").read_text()

    write_portable(tmp_path, "keras", shift=1e-3)  # another stream or layout: differs
    assert report.main(args) == 1
    captured = capsys.readouterr()
    assert "DIFFERS 1.0e-03" in captured.out
    assert "PORTABLE DIFFERS: backend keras, model mlp" in captured.err
    assert "model cnn: torch and keras outputs differ by up to 0.001" in captured.err


def test_missing_portable_results_fail_only_when_required(tmp_path, numpy_records, capsys) -> None:
    for backend in ("numpy", "torch", "keras"):
        write(tmp_path, backend, numpy_records)
    base = ["report", "--results", str(tmp_path), "--backends", "numpy,torch,keras", "--no-pictures"]
    assert report.main(base) == 0  # none written: nothing to compare
    write_portable(tmp_path, "torch")
    assert report.main([*base, "--require-portable"]) == 1
    assert "no portable results for backend 'keras'" in capsys.readouterr().err
