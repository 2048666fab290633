"""Backend selection for the test run.

``MULTIINIT_BACKENDS`` (set per tox env, e.g. ``torch,numpy``) names the backends under test.
A backend's own test files are named ``test_<backend>_*.py``; they are collected only when
that backend is requested, and then a framework that cannot be imported is a collection
error, never a skip. Unset, the variable means numpy plus every framework installed here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

ADAPTER_BACKENDS = ("torch", "keras", "flax", "mxnet")
_FRAMEWORK = {"torch": "torch", "keras": "keras", "flax": "flax", "mxnet": "mxnet"}


def requested_backends() -> list[str]:
    """The backends this run must test, from MULTIINIT_BACKENDS."""
    raw = os.environ.get("MULTIINIT_BACKENDS")
    if raw is None:
        found = [b for b in ADAPTER_BACKENDS if importlib.util.find_spec(_FRAMEWORK[b]) is not None]
        return ["numpy", *found]
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in ("numpy", *ADAPTER_BACKENDS)]
    if unknown:
        raise pytest.UsageError(f"MULTIINIT_BACKENDS names unknown backends {unknown}")
    return names


REQUESTED = requested_backends()
_OWN_FILE = re.compile(r"^test_(torch|keras|flax|mxnet)_\w*\.py$")


#: Files that test the adapters in general: nothing to collect when no adapter is requested.
_ADAPTER_FILES = {"test_native_equivalents.py", "test_presets.py"}


def pytest_ignore_collect(collection_path, config):
    match = _OWN_FILE.match(collection_path.name)
    if match and match.group(1) not in REQUESTED:
        return True
    if collection_path.name in _ADAPTER_FILES and not set(REQUESTED) & set(ADAPTER_BACKENDS):
        return True
    return None


def pytest_report_header(config):
    return f"multiinit backends under test: {', '.join(REQUESTED)}"


@pytest.fixture(scope="session")
def requested() -> list[str]:
    return list(REQUESTED)


# Hypothesis profiles for the property tests (tests/test_properties.py), chosen by the env var
# HYPOTHESIS_PROFILE: "ci" (the default) is derandomized, a few hundred examples per test, no
# deadline (timings are never asserted) and no example database written into the tree; "long"
# draws fresh random examples, many more of them, and prints a blob to replay a failure.
# Without hypothesis installed the property tests fail on their own import, loudly.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:
    pass
else:
    _hypothesis_settings.register_profile(
        "ci", derandomize=True, database=None, max_examples=200, deadline=None, print_blob=False
    )
    _hypothesis_settings.register_profile(
        "long", derandomize=False, database=None, max_examples=5000, deadline=None, print_blob=True
    )
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# Results that travel: cells recorded during the run, written per backend at the end, so the
# report can put the separate environments side by side.
_RESULTS: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)


def result_label(backend: str) -> str:
    """The name a backend's results are recorded under: Keras is labelled by the backend it runs
    on (``keras`` on TensorFlow, ``keras-jax``, ``keras-torch``), so the report tells them apart."""
    if backend != "keras":
        return backend
    import keras

    running = keras.backend.backend()
    return "keras" if running == "tensorflow" else f"keras-{running}"


def record_result(kind: str, backend: str, record: dict[str, Any]) -> None:
    """Keep one result record of ``kind`` (e.g. "matrix") for ``backend`` (under its label)."""
    label = result_label(backend)
    if record.get("backend") == backend:
        record = {**record, "backend": label}
    _RESULTS[(kind, label)].append(record)


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("MULTIINIT_RESULTS")
    if not target or not _RESULTS:
        return
    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    for (kind, backend), records in _RESULTS.items():
        path = folder / f"{kind}-{backend}.json"
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps({"kind": kind, "backend": backend, "records": records}, indent=1))
        os.replace(temporary, path)  # atomic: envs running in parallel never read half a file
