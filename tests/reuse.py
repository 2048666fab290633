"""When ``tox -e report`` may reuse a backend env's results instead of running its matrix again.

``tox`` runs every backend env's whole suite, the matrix and the portable proof included, and each
env writes its cells into ``results/``. The report env then asks each backend env for the matrix
and the portable proof again (``--reuse-results``): run on its own, it must produce them; run
after the backend envs, the cells are already there, from the same code in the same env. Running
them a second time cost CI about 14 minutes.

An env's session leaves a stamp (``results/session-<env>.json``): a fingerprint of what ran and
the outcome of every test. A later ``--reuse-results`` session of the same env runs nothing only
if the fingerprint is the same and every test it collected passed (or was skipped) in the stamped
session, and the result files that session wrote are still there. Anything else (an edited file,
another package version, another ``KERAS_BACKEND``, a partial or failed run) runs the tests.

Why the stamped files are the current ones: a result file is named by its label (``matrix-numpy``
is written by five envs), so it may have been overwritten since. Whoever wrote it last left its
own stamp; if that stamp is current and complete the file is current and complete, and if not,
that env runs again here and writes the file again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Environment variables that change what a test run draws or which tests it collects.
_VARIABLE_PREFIXES = ("MULTIINIT_", "KERAS_", "JAX_", "XLA_", "TF_", "TORCH_", "MXNET_", "HYPOTHESIS_")
#: Where the results go is not what they are.
_IGNORED_VARIABLES = {"MULTIINIT_RESULTS"}
#: An outcome that a rerun with the same fingerprint would repeat, and that the report accepts.
_REUSABLE = {"passed", "skipped"}


def env_name(environ: Mapping[str, str] = os.environ) -> str:
    """The name the stamp is kept under: tox's env name, else ``default``."""
    return environ.get("TOX_ENV_NAME") or "default"


def stamp_path(results: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """The stamp of this env's last session in ``results``."""
    return results / f"session-{env_name(environ)}.json"


def _files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def fingerprint(
    roots: Iterable[Path],
    environ: Mapping[str, str] = os.environ,
    packages: Iterable[str] | None = None,
) -> str:
    """A digest of what a test run depends on: every file under ``roots`` (the imported package,
    the tests, the pytest configuration), the installed packages and their versions, the Python
    version, and the environment variables that select backends or change a framework."""
    digest = hashlib.sha256()
    for root in roots:
        for path in _files(root) if root.is_dir() else [root]:
            # Named from the root's parent: an installed package and its source tree agree.
            digest.update(f"{path.relative_to(root.parent)}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    if packages is None:
        packages = (f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    for line in sorted(packages):
        digest.update(f"{line}\n".encode())
    digest.update(sys.version.encode())
    for name in sorted(environ):
        if name.startswith(_VARIABLE_PREFIXES) and name not in _IGNORED_VARIABLES:
            digest.update(f"{name}={environ[name]}\n".encode())
    return digest.hexdigest()


def final_outcomes(reports: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """Each test's outcome over its phases, from ``(nodeid, when, outcome)`` triples: failed if
    any phase failed, skipped if any was skipped, passed if its call passed."""
    outcomes: dict[str, str] = {}
    for nodeid, when, outcome in reports:
        previous = outcomes.get(nodeid)
        if outcome == "failed" or previous == "failed":
            outcomes[nodeid] = "failed"
        elif outcome == "skipped":
            outcomes[nodeid] = "skipped"
        elif when == "call" and previous != "skipped":
            outcomes[nodeid] = "passed"
    return outcomes


def reusable(stamp: Mapping[str, Any] | None, current: str, collected: Iterable[str], results: Path) -> bool:
    """Whether the stamped session already ran every one of ``collected`` to a reusable outcome
    with the ``current`` fingerprint, and its result files are all still in ``results``."""
    if not stamp or stamp.get("fingerprint") != current:
        return False
    outcomes = stamp.get("outcomes", {})
    wanted = list(collected)
    if not wanted or any(outcomes.get(nodeid) not in _REUSABLE for nodeid in wanted):
        return False
    return all((results / name).is_file() for name in stamp.get("written", []))


def read_stamp(path: Path) -> dict[str, Any] | None:
    """The stamp at ``path``, or None when there is none or it cannot be read."""
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def write_stamp(path: Path, current: str, outcomes: Mapping[str, str], written: Iterable[str]) -> None:
    """Record this session (atomically: envs may run in parallel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"fingerprint": current, "written": sorted(written), "outcomes": dict(sorted(outcomes.items()))}
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(body, indent=0))
    os.replace(temporary, path)
