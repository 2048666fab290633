"""A griffe extension: the project's reStructuredText habits in docstrings, read as Markdown.

multiinit's docstrings are written for ``help()`` and ``doctest``: ``>>>`` examples without
fences, ``text::`` literal blocks, definition lists (a title line with its paragraphs indented
below), simple tables between ``====`` borders, and roles such as ``:class:`x```.
mkdocstrings renders docstrings as Markdown, where a ``>>>`` line is a triple blockquote, an
indented paragraph a code block and a ``====`` line a heading underline. This extension
rewrites those constructs before rendering; the rest (double-backtick literals, ``*emphasis*``,
``**strong**``, bullet lists) already means the same in both. The source docstrings stay as
they are.

Loaded by mkdocs.yml (``extensions: [docs/_ext/rst_docstrings.py:RstDocstrings]``);
``to_markdown`` is a plain function, tested in tests/test_docs.py without griffe.
"""

from __future__ import annotations

import re
from typing import Any

try:  # griffe is in the docs env only; the tests call to_markdown directly
    from griffe import Extension
except ImportError:  # pragma: no cover - exercised in the test envs, which have no griffe
    Extension = object  # type: ignore[assignment,misc]

_DIRECTIVE = re.compile(r"\s*# doctest: [+-]\w+(?:, *[+-]\w+)*\s*$")
_TABLE_BORDER = re.compile(r"^=+(?: +=+)+$")
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`([^`]+)`")  # :class:`Initializer` -> ``Initializer``


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], start: int, deeper_than: int) -> int:
    """The index after the indented block that starts at ``start`` (blank lines inside kept)."""
    end = start
    for i in range(start, len(lines)):
        if lines[i].strip() and _indent(lines[i]) <= deeper_than:
            break
        if lines[i].strip():
            end = i + 1
    return end


def _dedent(lines: list[str], by: int) -> list[str]:
    return [line[by:] if line.strip() else "" for line in lines]


def to_markdown(text: str) -> str:
    """One docstring, its reST constructs rewritten as Markdown (examples: tests/test_docs.py)."""
    lines = _ROLE.sub(r"``\1``", text).split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        margin = " " * _indent(line)
        if stripped.startswith("```"):
            # Already Markdown (or rewritten before): copied as it is, up to the closing fence.
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith("```"):
                end += 1
            out += lines[i : end + 1]
            i = end + 1
            continue
        if stripped.startswith(">>>"):
            # A doctest block runs to the next blank line, as in reST. Fences start at the
            # margin (an indented fence would be read as an indented code block).
            end = i
            while end < len(lines) and lines[end].strip():
                end += 1
            # doctest's directives are for the test runner, not the reader.
            example = [_DIRECTIVE.sub("", line) for line in _dedent(lines[i:end], len(margin))]
            out += ["```pycon", *example, "```"]
            i = end
            continue
        if _TABLE_BORDER.match(stripped):
            # A reST simple table (``====  ====`` borders) stays a monospaced block: in Markdown
            # its border lines would turn the rows above them into headings.
            end = i
            while end < len(lines) and lines[end].strip():
                end += 1
            out += ["```text", *_dedent(lines[i:end], len(margin)), "```"]
            i = end
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            # "text::" introduces a literal block and reads "text:"; a lone "::" disappears.
            intro = line.rstrip()[:-2].rstrip()
            if intro.strip():
                out.append(intro + ":")
            start = i + 1
            while start < len(lines) and not lines[start].strip():
                start += 1
            end = _block_end(lines, start, _indent(line))
            if start < end:
                body = lines[start:end]
                depth = min(_indent(b) for b in body if b.strip())
                out += ["", "```python", *_dedent(body, depth), "```"]
                i = end
                continue
            i += 1
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        previous = out[-1] if out else ""
        if (
            stripped
            and not previous.strip()
            and following.strip()
            and _indent(following) > _indent(line)
            and not stripped.startswith(("* ", "- ", "```"))
        ):
            # A definition list item: the term becomes a bold line, its body a paragraph below.
            end = _block_end(lines, i + 1, _indent(line))
            body = _dedent(lines[i + 1 : end], _indent(following) - _indent(line))
            out += [f"{margin}**{stripped}**", "", *body]
            i = end
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class RstDocstrings(Extension):  # type: ignore[misc,valid-type]
    """Rewrite every docstring with ``to_markdown`` once griffe has loaded it."""

    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        if not obj.is_alias and obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)

    def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
        # The top package is not among the objects ``on_object`` sees; rewriting is idempotent
        # (fenced blocks are left alone), so seeing it twice would do no harm.
        self.on_object(obj=pkg)
