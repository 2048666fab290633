"""Every code example on the documentation site runs, in the env of the framework it needs.

In ``docs/**/*.md`` each fenced ``python`` block runs as a script (its asserts say what it
promises) and each ``pycon`` block runs as a doctest (its printed output is checked). A block
whose first line is ``# backend: torch`` (or ``keras``, ``flax``, ``mxnet``; in a ``pycon`` block
``>>> # backend: torch``) needs that framework; a block without one needs none and runs in every
env, the core env included. Blocks for a backend that is not in ``MULTIINIT_BACKENDS`` are not
collected (the conftest's rule), never skipped. A block that shows a file
(``--8<-- "examples/seed_chapter_torch.py"``) must show one of the scripts that
tests/test_examples.py runs. Any other fence must be of a kind that is not code to run.

The same file tests the griffe extension that renders the docstrings' reST habits as Markdown
for the API pages (docs/_ext/rst_docstrings.py), on every docstring of the package.
"""

from __future__ import annotations

import ast
import doctest
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from multiinit import layers

from conftest import ADAPTER_BACKENDS, REQUESTED

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

#: Fences that are not code to run: shell commands, program output.
NOT_CODE = {"sh", "text"}
_OPEN = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<lang>[\w+-]*)(?P<attrs>.*)$")
_TAG = re.compile(r"^(?:>>> )?# backend: (?P<backend>\w+)\s*$")
_SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$')


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    backend: str  # "numpy" for a block that needs no framework

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(text: str, page: str) -> list[Block]:
    """The fenced code blocks of one Markdown page (fences may be indented, e.g. in tabs)."""
    lines = text.split("\n")
    found = []
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, fence = opened["indent"], opened["fence"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        assert end < len(lines), f"{page}:{i + 1}: the code fence is never closed"
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : end]
        ]
        tag = _TAG.match(body[0]) if body else None
        found.append(
            Block(page, i + 1, opened["lang"], "\n".join(body) + "\n", tag["backend"] if tag else "numpy")
        )
        i = end + 1
    return found


BLOCKS = [b for page in PAGES for b in blocks_of(page.read_text(), str(page.relative_to(ROOT)))]
RUNNABLE = [b for b in BLOCKS if b.lang in ("python", "pycon") and not _SNIPPET.match(b.code.strip())]
HERE = [b for b in RUNNABLE if b.backend in REQUESTED]


def test_the_pages_have_code_and_every_block_is_run_somewhere() -> None:
    assert PAGES and RUNNABLE, "no documentation pages or no code examples found"
    for block in BLOCKS:
        assert block.lang in {"python", "pycon", *NOT_CODE}, (
            f"{block.id}: a ```{block.lang} block is neither run by this test nor output; "
            f"use python or pycon (run here) or one of {sorted(NOT_CODE)}"
        )
        assert block.backend in ("numpy", *ADAPTER_BACKENDS), (
            f"{block.id}: '# backend: {block.backend}' names no backend; "
            f"allowed: {', '.join(ADAPTER_BACKENDS)}"
        )
    # Each framework has examples, and so does the core env.
    assert {b.backend for b in RUNNABLE} >= {"numpy", *ADAPTER_BACKENDS}


def test_blocks_that_show_a_file_show_a_script_the_tests_run() -> None:
    shown = [b for b in BLOCKS if _SNIPPET.match(b.code.strip())]
    assert shown, "the seed chapter shows the examples/ scripts"
    for block in shown:
        path = _SNIPPET.match(block.code.strip())["path"]
        assert re.fullmatch(r"examples/seed_chapter_(torch|keras|flax|mxnet)\.py", path), (
            f"{block.id} shows {path}, which tests/test_examples.py does not run"
        )
        assert (ROOT / path).is_file(), f"{block.id} shows {path}, which does not exist"


def run_block(block: Block) -> None:
    # A block that registers a layer (docs/layers.md) must not change what later tests see.
    with layers.isolated():
        _run_block(block)


def _run_block(block: Block) -> None:
    if block.lang == "python":
        exec(compile(block.code, block.id, "exec"), {"__name__": "__docs__"})  # the docs' own code blocks
        return
    test = doctest.DocTestParser().get_doctest(
        block.code, {"__name__": "__docs__"}, block.id, block.page, block.line
    )
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


# Only the blocks this env can run are collected: none of another framework's (not a skip).
if HERE:

    @pytest.mark.parametrize("block", HERE, ids=[b.id for b in HERE])
    def test_the_code_example_runs(block: Block) -> None:
        run_block(block)


def test_each_adapter_page_shows_the_decisions_of_every_file_of_its_package() -> None:
    # An adapter that is a package states its decisions in each file's docstring (DESIGN.md).
    for package in sorted(p for p in (ROOT / "multiinit").iterdir() if (p / "__init__.py").is_file()):
        page = DOCS / "frameworks" / f"{package.name}.md"
        assert page.is_file(), (
            f"the adapter package multiinit.{package.name} has no page {page.relative_to(ROOT)}"
        )
        text = page.read_text()
        assert re.search(rf"^::: multiinit\.{package.name}$", text, re.MULTILINE)
        for module in sorted(package.glob("*.py")):
            if module.name != "__init__.py":
                name = f"multiinit.{package.name}.{module.stem}"
                assert re.search(rf"^::: {re.escape(name)}$", text, re.MULTILINE), (
                    f"{page.relative_to(ROOT)} does not show the decisions of {name} (add '::: {name}')"
                )


# ------------------------------------------------------------------ docstrings as Markdown


def _extension():
    spec = importlib.util.spec_from_file_location("rst_docstrings", DOCS / "_ext" / "rst_docstrings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


to_markdown = _extension().to_markdown


def test_a_doctest_becomes_a_pycon_fence_at_the_margin() -> None:
    text = "Say it.\n\n    >>> 1 + 1\n    2\n\nAfter."
    assert to_markdown(text) == "Say it.\n\n```pycon\n>>> 1 + 1\n2\n```\n\nAfter."


def test_doctest_directives_are_left_to_the_test_runner() -> None:
    text = ">>> import torch  # doctest: +SKIP\n>>> x = 1  # a comment stays"
    assert to_markdown(text) == "```pycon\n>>> import torch\n>>> x = 1  # a comment stays\n```"


def test_a_literal_block_becomes_a_python_fence() -> None:
    text = "Three ways in::\n\n    import multiinit as mi\n\n    mi.zeros()\n\nThen text."
    assert (
        to_markdown(text)
        == "Three ways in:\n\n```python\nimport multiinit as mi\n\nmi.zeros()\n```\n\nThen text."
    )


def test_a_definition_list_item_becomes_a_bold_title_and_a_paragraph() -> None:
    text = "Seeds\n    A seeded initializer advances\n    on every call.\n\n    * a list item\n\nNext."
    assert to_markdown(text) == (
        "**Seeds**\n\nA seeded initializer advances\non every call.\n\n* a list item\n\nNext."
    )


def test_a_simple_table_stays_monospaced_and_roles_become_literals() -> None:
    text = "Values:\n\n====  ====\na     b\n====  ====\n\nSee :class:`Initializer`."
    assert (
        to_markdown(text)
        == "Values:\n\n```text\n====  ====\na     b\n====  ====\n```\n\nSee ``Initializer``."
    )


def test_plain_markdown_is_left_alone_and_rewriting_twice_changes_nothing() -> None:
    plain = "Text with ``code``, *emphasis* and\n\n* a list\n  continued\n* another"
    assert to_markdown(plain) == plain
    once = to_markdown("Example::\n\n    x = 1\n\n>>> x\n1")
    assert to_markdown(once) == once


def _docstrings() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "multiinit").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node)
                if text:
                    found.append((f"{path.relative_to(ROOT)}:{getattr(node, 'name', '<module>')}", text))
    return found


def test_every_docstring_of_the_package_renders_without_reST_leftovers() -> None:
    # Read from the sources (no import): the adapters are checked in every env, the core's too.
    docstrings = _docstrings()
    assert len(docstrings) > 100
    for where, text in docstrings:
        fenced = False
        for line in to_markdown(text).split("\n"):
            if line.startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                continue
            assert not line.lstrip().startswith(">>>"), f"{where}: a doctest line outside a fence: {line!r}"
            assert not re.fullmatch(r"\s*[=-]{3,}(\s+[=-]{3,})*\s*", line), (
                f"{where}: a heading underline: {line!r}"
            )
            assert not line.rstrip().endswith("::"), f"{where}: a reST literal-block marker: {line!r}"
            assert not re.search(r":[a-z]+:`", line), f"{where}: a reST role: {line!r}"
        assert not fenced, f"{where}: a fence is left open"
