"""The built distributions, as a user gets them (``tox -e package``).

That env builds the sdist and the wheel into ``$MULTIINIT_DIST`` and checks their metadata with
``twine check --strict``; this file then checks what they hold, installs the wheel alone into a
fresh virtualenv (its one dependency, numpy, comes from the index) and runs it there: building
and drawing every spec imports no framework (and no SciPy), ``multiinit --help`` works, and the
installed metadata carries ``multiinit.__version__``.

Without ``$MULTIINIT_DIST`` (every other env) there is nothing to collect here.
"""

from __future__ import annotations

import ast
import email
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = os.environ.get("MULTIINIT_DIST")
#: The roots of every framework an adapter wraps: none may be imported by ``import multiinit``.
FRAMEWORK_ROOTS = ("torch", "tensorflow", "keras", "jax", "jaxlib", "flax", "mxnet")


def source_version() -> str:
    """``__version__`` as the source assigns it (read, not imported: multiinit is not installed here)."""
    tree = ast.parse((ROOT / "multiinit" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__version__"]:
            return ast.literal_eval(node.value)
    raise AssertionError("multiinit/__init__.py assigns no __version__")


def source_files() -> set[str]:
    """Every module and marker of the package in this tree, as paths inside a wheel."""
    package = ROOT / "multiinit"
    return {
        f"multiinit/{p.relative_to(package).as_posix()}"
        for p in package.rglob("*")
        if p.is_file() and p.suffix in (".py", ".typed") and "__pycache__" not in p.parts
    }


# Builds every spec of the contract, round-trips and draws it, runs the command, and says which
# modules got imported. Run by the fresh virtualenv's interpreter, outside this tree.
CHECK = f"""
import importlib.metadata, json, sys
import numpy as np
import multiinit as mi
args = {{"constant": (1.0,), "sparse": (0.1,), "mixture": ([(0.5, mi.zeros()), (0.5, mi.ones())],),
        "custom": (lambda rng, shape, dtype: rng.random(shape),), "with_axes": (mi.glorot_uniform(),)}}
kwargs = {{"custom": {{"name": "wheel.law"}}, "with_axes": {{"in_axis": 1, "out_axis": 0}}}}
built = []
for name, constructor in mi.CONSTRUCTORS.items():
    spec = constructor(*args.get(name, ()), **kwargs.get(name, {{}}))
    assert mi.parse(str(spec)) == spec and mi.from_dict(spec.to_dict()) == spec
    spec.sample((3, 4, 3) if spec.kind == "dirac" else (4, 3), seed=0)
    built.append(name)
print(json.dumps({{
    "file": mi.__file__,
    "version": mi.__version__,
    "metadata": importlib.metadata.version("multiinit"),
    "built": sorted(built),
    "constructors": sorted(mi.CONSTRUCTORS),
    "imported": sorted(
        {{m.split(".")[0] for m in sys.modules}} & set({FRAMEWORK_ROOTS!r} + ("scipy", "matplotlib", "tqdm"))
    ),
}}))
"""


if DIST:

    def one(pattern: str) -> Path:
        found = sorted(Path(DIST).glob(pattern))
        assert len(found) == 1, f"expected one {pattern} in {DIST}, found {[p.name for p in found]}"
        return found[0]

    def test_the_wheel_holds_every_module_and_the_typed_marker() -> None:
        wheel = one("multiinit-*.whl")
        assert wheel.name.startswith(f"multiinit-{source_version()}-py3-none-any")
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            metadata = email.message_from_bytes(
                archive.read(f"multiinit-{source_version()}.dist-info/METADATA")
            )
        package = {n for n in names if n.startswith("multiinit/")}
        assert "multiinit/py.typed" in package
        # Every subpackage (the adapters are becoming packages) and module, and nothing else.
        assert package == source_files(), (
            f"missing: {sorted(source_files() - package)}, extra: {sorted(package - source_files())}"
        )
        assert metadata["Version"] == source_version()
        requires = metadata.get_all("Requires-Dist")
        assert [r for r in requires if "extra ==" not in r] == ["numpy>=1.21"], requires
        assert {"torch", "tensorflow", "jax", "mxnet", "report"} <= set(metadata.get_all("Provides-Extra"))

    def test_the_sdist_holds_the_sources_and_the_typed_marker() -> None:
        sdist = one("multiinit-*.tar.gz")
        top = f"multiinit-{source_version()}"
        with tarfile.open(sdist) as archive:
            names = {n.removeprefix(top + "/") for n in archive.getnames()}
        assert {"pyproject.toml", "README.md", "PKG-INFO"} <= names
        assert source_files() <= names

    @pytest.fixture(scope="module")
    def venv(tmp_path_factory) -> Path:
        """A fresh virtualenv holding the wheel and what pip brings for it, nothing else."""
        folder = tmp_path_factory.mktemp("wheel") / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        python = folder / "bin" / "python"
        done = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                str(one("multiinit-*.whl")),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return folder

    def test_the_wheel_alone_brings_only_numpy(venv: Path) -> None:
        listed = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "list",
                "--format=json",
                "--disable-pip-version-check",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        installed = {p["name"].lower() for p in json.loads(listed.stdout)} - {"pip", "setuptools"}
        assert installed == {"multiinit", "numpy"}

    def test_from_the_wheel_every_spec_builds_without_importing_a_framework(
        venv: Path, tmp_path: Path
    ) -> None:
        # Run in an empty folder: the multiinit imported is the installed one, not this tree's.
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", CHECK], capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert Path(result["file"]).is_relative_to(venv), result["file"]
        assert result["built"] == result["constructors"] != []
        assert result["imported"] == []
        assert result["version"] == result["metadata"] == source_version()

    def test_the_command_runs_from_the_wheel(venv: Path, tmp_path: Path) -> None:
        done = subprocess.run(
            [str(venv / "bin" / "multiinit"), "--help"], capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: multiinit") and "report" in done.stdout
