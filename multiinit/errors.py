"""The exception hierarchy. Every error multiinit raises is a ``MultiinitError``.

Each also derives from the builtin a caller would expect (``ValueError`` for bad values,
``ImportError`` for a missing framework), so ``except ValueError`` keeps working in code that
was written against ``torch.nn.init``.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "MultiinitError",
    "SpecError",
    "SpecTypeError",
    "ShapeError",
    "RuleError",
    "LawError",
    "LawShapeError",
    "BackendUnavailable",
    "UnknownBackend",
    "shown",
    "shorten",
]


class MultiinitError(Exception):
    """Root of every error raised by multiinit."""


class SpecError(MultiinitError, ValueError):
    """A spec was given a value it cannot take (names the parameter, the value and what is allowed)."""


class SpecTypeError(SpecError, TypeError):
    """A spec, ``parse`` or ``compile`` was given something of the wrong type or form: a string
    where a number is needed, an unknown or repeated keyword, an option a backend does not take.

    Also a ``TypeError``, which is what Python raises for such calls.
    """


class ShapeError(MultiinitError, ValueError):
    """A spec cannot fill a tensor of this shape (xavier on 1-D, eye on 3-D, ...)."""


class LawError(SpecError):
    """A user law (``custom``) failed: it raised, or returned the wrong shape, a non-numeric
    dtype or non-finite values. Names the law and, when known, the parameter path; an
    exception raised inside the law is chained (``__cause__``).

    A ``SpecError`` (so a ``ValueError``): the law is the custom spec's, and code that caught
    a custom law's bad result as a ``SpecError`` before ``LawError`` existed still does.
    """


class LawShapeError(LawError, ShapeError):
    """A user law returned an array of the wrong shape: a ``LawError`` and a ``ShapeError``."""


class RuleError(MultiinitError, ValueError):
    """A model-level rule is malformed or selects no parameter."""


class UnknownBackend(MultiinitError, ValueError):
    """A backend name multiinit does not know."""


class BackendUnavailable(MultiinitError, ImportError):
    """The framework behind a backend is not installed; the message holds the pip command."""

    @classmethod
    def missing(
        cls, backend: str, framework: str, extra: str, cause: BaseException | None = None
    ) -> BackendUnavailable:
        """Build the error for ``backend`` whose ``framework`` failed to import.

        >>> str(BackendUnavailable.missing("torch", "PyTorch", "torch")).splitlines()[0]
        'the multiinit "torch" backend needs PyTorch, which cannot be imported here'
        """
        why = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        return cls(
            f'the multiinit "{backend}" backend needs {framework}, which cannot be imported here'
            f"{why}\n"
            f'install it with: pip install "multiinit[{extra}]"'
        )


# --------------------------------------------------------------------------- values in messages

#: How much of a long value a message keeps: the first and the last characters of its repr.
SHOWN_HEAD, SHOWN_TAIL = 60, 20

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 8
# Strings, ints and other objects are cut by ``shown`` itself, which says how long they were.
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = 10**9


def shorten(text: str, head: int = SHOWN_HEAD, tail: int = SHOWN_TAIL, what: str = "characters") -> str:
    """``text`` cut to its first ``head`` and last ``tail`` characters, saying how long it was.

    >>> shorten("x" * 1000, 5, 3)
    'xxxxx...xxx (1000 characters)'
    """
    if len(text) <= head + tail + 20:
        return text
    return f"{text[:head]}...{text[-tail:] if tail else ''} ({len(text)} {what})"


def shown(value: Any) -> str:
    """``repr(value)`` for an error message: never raises, never echoes a huge value whole.

    A long string keeps its first 60 and last 20 characters and says how long it was; a
    container shows a few items and levels; an int too long to print says how many digits
    it has; an object whose ``repr`` fails is named by its type.

    >>> shown("abc")
    "'abc'"
    >>> shown("z" * 10**6)
    "'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz...zzzzzzzzzzzzzzzzzzz' (a string of 1000000 characters)"
    """  # noqa: E501 - doctest output lines, as printed
    if isinstance(value, (str, bytes)) and len(value) > SHOWN_HEAD + SHOWN_TAIL + 20:
        head = repr(value[:SHOWN_HEAD])[:SHOWN_HEAD]
        tail = repr(value[-SHOWN_TAIL:])[-SHOWN_TAIL:]
        kind = "string" if isinstance(value, str) else "bytes object"
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{head}...{tail} (a {kind} of {len(value)} {unit})"
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - an int beyond Python's printing limit, a repr that raises, ...
        if isinstance(value, int):
            return f"<an int of about {int(value.bit_length() * 0.30103) + 1} digits>"
        return f"<a {type(value).__name__} object>"
    if isinstance(value, int) and not isinstance(value, bool):
        return shorten(text, what="digits")
    return shorten(text)
