"""The exception hierarchy. Every error multiinit raises is a ``MultiinitError``.

Each also derives from the builtin a caller would expect (``ValueError`` for bad values,
``ImportError`` for a missing framework), so ``except ValueError`` keeps working in code that
was written against ``torch.nn.init``.
"""

from __future__ import annotations

__all__ = [
    "MultiinitError",
    "SpecError",
    "ShapeError",
    "RuleError",
    "BackendUnavailable",
    "UnknownBackend",
]


class MultiinitError(Exception):
    """Root of every error raised by multiinit."""


class SpecError(MultiinitError, ValueError):
    """A spec was given a value it cannot take (names the parameter, the value and what is allowed)."""


class ShapeError(MultiinitError, ValueError):
    """A spec cannot fill a tensor of this shape (xavier on 1-D, eye on 3-D, ...)."""


class RuleError(MultiinitError, ValueError):
    """A model-level rule is malformed or selects no parameter."""


class UnknownBackend(MultiinitError, ValueError):
    """A backend name multiinit does not know."""


class BackendUnavailable(MultiinitError, ImportError):
    """The framework behind a backend is not installed; the message holds the pip command."""

    @classmethod
    def missing(cls, backend: str, framework: str, extra: str, cause: BaseException | None = None):
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
