"""`tox -e report` reuses a backend env's results only when its own run already produced them with
the same code, packages and settings, and passed (tests/reuse.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import reuse

ROOT = Path(__file__).resolve().parents[1]


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("A = 1\n")
    (root / "sub" / "b.py").write_text("B = 2\n")
    return root


def test_the_fingerprint_follows_files_packages_and_settings(tmp_path):
    root = _tree(tmp_path)
    environ = {"MULTIINIT_BACKENDS": "torch,numpy", "KERAS_BACKEND": "jax", "HOME": "/a"}
    base = reuse.fingerprint([root], environ, packages=["torch==2.13.0"])
    assert reuse.fingerprint([root], environ, packages=["torch==2.13.0"]) == base
    # Where the results go and unrelated variables do not change what the tests draw.
    unrelated = {**environ, "HOME": "/b", "MULTIINIT_RESULTS": "/elsewhere"}
    assert reuse.fingerprint([root], unrelated, packages=["torch==2.13.0"]) == base
    assert reuse.fingerprint([root], {**environ, "KERAS_BACKEND": "torch"}, ["torch==2.13.0"]) != base
    assert reuse.fingerprint([root], {**environ, "XLA_FLAGS": "--x"}, ["torch==2.13.0"]) != base
    assert reuse.fingerprint([root], environ, packages=["torch==2.12.0"]) != base
    (root / "sub" / "b.py").write_text("B = 3\n")
    assert reuse.fingerprint([root], environ, packages=["torch==2.13.0"]) != base
    (root / "sub" / "b.py").write_text("B = 2\n")
    (root / "sub" / "c.py").write_text("")
    assert reuse.fingerprint([root], environ, packages=["torch==2.13.0"]) != base


def test_compiled_files_do_not_count(tmp_path):
    root = _tree(tmp_path)
    base = reuse.fingerprint([root], {}, packages=[])
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\x00")
    assert reuse.fingerprint([root], {}, packages=[]) == base


def test_a_test_outcome_is_its_worst_phase():
    reports = [
        ("t::ok", "setup", "passed"),
        ("t::ok", "call", "passed"),
        ("t::ok", "teardown", "passed"),
        ("t::teardown_fails", "setup", "passed"),
        ("t::teardown_fails", "call", "passed"),
        ("t::teardown_fails", "teardown", "failed"),
        ("t::skip", "setup", "skipped"),
        ("t::skip", "teardown", "passed"),
        ("t::no_call", "setup", "passed"),
    ]
    assert reuse.final_outcomes(reports) == {
        "t::ok": "passed",
        "t::teardown_fails": "failed",
        "t::skip": "skipped",
    }


def test_reuse_needs_the_same_fingerprint_every_test_passed_and_the_files(tmp_path):
    (tmp_path / "matrix-torch.json").write_text("{}")
    stamp = {
        "fingerprint": "f",
        "written": ["matrix-torch.json"],
        "outcomes": {"a": "passed", "b": "skipped"},
    }
    assert reuse.reusable(stamp, "f", ["a", "b"], tmp_path)
    assert reuse.reusable(stamp, "f", ["a"], tmp_path)
    assert not reuse.reusable(stamp, "g", ["a", "b"], tmp_path)
    assert not reuse.reusable(stamp, "f", ["a", "c"], tmp_path)  # never ran here
    assert not reuse.reusable(stamp, "f", [], tmp_path)
    assert not reuse.reusable(None, "f", ["a"], tmp_path)
    failed = {**stamp, "outcomes": {"a": "failed", "b": "passed"}}
    assert not reuse.reusable(failed, "f", ["a"], tmp_path)
    (tmp_path / "matrix-torch.json").unlink()
    assert not reuse.reusable(stamp, "f", ["a"], tmp_path)


def test_an_unreadable_stamp_is_none(tmp_path):
    assert reuse.read_stamp(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert reuse.read_stamp(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[]")
    assert reuse.read_stamp(tmp_path / "list.json") is None


def _pytest(results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "MULTIINIT_RESULTS": str(results), "TOX_ENV_NAME": "reuse-probe"}
    environ["MULTIINIT_BACKENDS"] = "numpy"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_matrix.py", *args]
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600)


def test_a_second_session_runs_nothing_only_after_a_full_passing_one(tmp_path):
    results = tmp_path / "results"
    select = ("-k", "zeros or he_normal")
    first = _pytest(results, *select, "--reuse-results")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ran none" not in first.stdout  # no stamp yet: the tests run
    stamp = json.loads((results / "session-reuse-probe.json").read_text())
    assert stamp["written"] == ["matrix-numpy.json"]
    ran = [nodeid for nodeid, outcome in stamp["outcomes"].items() if outcome == "passed"]
    assert ran and all("zeros" in n or "he_normal" in n for n in ran)

    again = _pytest(results, *select, "--reuse-results")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "multiinit: ran none of" in again.stdout
    assert " passed" not in again.stdout.splitlines()[-1]

    # More tests than the stamped session ran: they all run, and the stamp is the new session's.
    wider = _pytest(results, "-k", "zeros or he_normal or eye", "--reuse-results")
    assert wider.returncode == 0 and "ran none" not in wider.stdout
    assert any("eye" in n for n in json.loads((results / "session-reuse-probe.json").read_text())["outcomes"])

    # Without the option a session always runs.
    plain = _pytest(results, *select)
    assert plain.returncode == 0 and "ran none" not in plain.stdout and " passed" in plain.stdout

    # A result file gone since: run again.
    (results / "matrix-numpy.json").unlink()
    rerun = _pytest(results, *select, "--reuse-results")
    assert rerun.returncode == 0 and "ran none" not in rerun.stdout
    assert (results / "matrix-numpy.json").is_file()


def test_a_stamped_failure_runs_again(tmp_path):
    results = tmp_path / "results"
    first = _pytest(results, "-k", "zeros")
    assert first.returncode == 0, first.stdout + first.stderr
    path = results / "session-reuse-probe.json"
    stamp = json.loads(path.read_text())
    victim = next(iter(stamp["outcomes"]))
    stamp["outcomes"][victim] = "failed"
    path.write_text(json.dumps(stamp))
    again = _pytest(results, "-k", "zeros", "--reuse-results")
    assert again.returncode == 0 and "ran none" not in again.stdout
