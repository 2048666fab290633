"""The version has one source: ``multiinit.__version__``, which the packaging metadata reads.

(The built wheel and sdist themselves are tested by tests/test_wheel.py, in ``tox -e package``.)
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import multiinit

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_metadata_has_the_version_of_the_code() -> None:
    # Every tox env installs multiinit from this tree: its metadata must carry __version__.
    assert importlib.metadata.version("multiinit") == multiinit.__version__


def test_pyproject_takes_the_version_from_the_code() -> None:
    project = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]$', project, re.MULTILINE), (
        "pyproject.toml must not repeat the version"
    )
    assert not re.search(r"^version\s*=\s*\"", project, re.MULTILINE)
    assert re.search(r'^version = \{ attr = "multiinit.__version__" \}$', project, re.MULTILINE)
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.dev\d+)?", multiinit.__version__)


def test_the_package_says_it_is_typed() -> None:
    assert (Path(multiinit.__file__).parent / "py.typed").is_file()
