"""benchmarks/compare_laws.py: the cross-framework table reads the benchmarks' --times files
and flags each cell without a native call beyond 1.5x the fastest framework."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compare_laws.py"


def _module():
    spec = importlib.util.spec_from_file_location("compare_laws", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(tmp_path, name, size, specs):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"framework": name, "size": size, "specs": specs}))
    return str(path)


def test_cells_without_a_native_call_are_compared_with_the_fastest_framework(tmp_path, capsys) -> None:
    a = _write(
        tmp_path,
        "fast",
        64,
        {"sparse()": {"ms": 100.0, "native_ms": 50.0}, "eye()": {"ms": 10.0, "native_ms": 10.0}},
    )
    b = _write(
        tmp_path,
        "slow",
        64,
        {"sparse()": {"ms": 160.0, "native_ms": None}, "eye()": {"ms": 14.0, "native_ms": None}},
    )
    _module().main([a, b])
    out = capsys.readouterr().out
    assert "*160.0 (1.60x)" in out and "*14.0 (1.40x)" in out
    beyond = out.split("beyond 1.5x the fastest framework:")[1]
    assert "slow: 160.0 ms, 1.60x fast's 100.0 ms" in beyond and "eye()" not in beyond
    _module().main([a, b, "--markdown"])
    table = capsys.readouterr().out
    assert "| `sparse()` | 2.00 | no native (160 ms; 1.60x the fastest) |" in table


def test_files_of_different_sizes_are_refused(tmp_path) -> None:
    a = _write(tmp_path, "a", 64, {})
    b = _write(tmp_path, "b", 128, {})
    with pytest.raises(SystemExit, match=r"different sizes: \[64, 128\]"):
        _module().main([a, b])
