"""The README's examples are excerpts of the example scripts the tests run (tests/test_examples.py):
every line of each per-framework block appears in its script, in the same order, so the README
cannot drift from code that is executed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"PyTorch": "torch", "Keras 3": "keras", "JAX/Flax": "flax", "MXNet": "mxnet"}


def _code(line: str) -> str:
    """A line without its trailing comment (the README may shorten a comment, never the code)."""
    return re.sub(r"\s+#.*$", "", line).rstrip()


def _blocks() -> list[tuple[str, list[str]]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## One example per framework", 1)[1].split("\n## ", 1)[0]
    found = []
    for title, code in re.findall(r"\*\*([^*]+)\*\*[^\n]*\n+```python\n(.*?)```", section, re.S):
        framework = next((fw for name, fw in SCRIPTS.items() if title.startswith(name)), None)
        assert framework is not None, f"README block under {title!r} names no known framework"
        found.append((framework, [_code(line) for line in code.splitlines() if _code(line).strip()]))
    return found


def test_there_is_one_example_per_framework() -> None:
    assert sorted(fw for fw, _ in _blocks()) == sorted(SCRIPTS.values())


@pytest.mark.parametrize("framework,lines", _blocks(), ids=[fw for fw, _ in _blocks()])
def test_each_readme_example_is_an_excerpt_of_its_tested_script(framework: str, lines: list[str]) -> None:
    script = [
        _code(line) for line in (ROOT / "examples" / f"seed_chapter_{framework}.py").read_text().splitlines()
    ]
    position = 0
    for line in lines:
        try:
            position = script.index(line, position) + 1
        except ValueError:
            pytest.fail(f"README line {line!r} is not in examples/seed_chapter_{framework}.py (in order)")
