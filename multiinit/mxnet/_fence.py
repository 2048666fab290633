"""Stand-in for ``multiinit.errors.LawError`` and ``multiinit.reference.call_law`` while the
core does not have them yet (the hostile-input work adds both; ``host.py`` imports them from
there when they exist, and this file goes away). Same contract as the core's."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import MultiinitError, ShapeError
from ..spec import Custom


class LawError(MultiinitError, ValueError):
    """A user law (``custom``) failed: it raised, or returned the wrong shape, a non-numeric
    dtype or non-finite values. Names the law and the parameter path."""


class LawShapeError(LawError, ShapeError):
    """A user law returned an array of the wrong shape."""


def call_law(spec: Custom, rng: np.random.Generator, shape: Sequence[int], dtype: Any = "float32",
             path: str | None = None) -> np.ndarray:
    """``spec.fn(rng, shape, dtype)`` as a finite array of exactly ``shape`` and ``dtype``, or a
    ``LawError`` naming the law and ``path``."""
    shape = tuple(int(d) for d in shape)
    dtype = np.dtype(dtype)
    law = f"custom law {spec.name!r}" + (f" at {path!r}" if path is not None else "")
    try:
        result = spec.fn(rng, shape, dtype)
    except Exception as err:
        raise LawError(f"{law} raised {type(err).__name__}: {err}") from err
    try:
        array = np.asarray(result)
    except Exception as err:
        raise LawError(f"{law} returned something NumPy cannot read as an array") from err
    if array.shape != shape:
        raise LawShapeError(f"{law} returned an array of shape {array.shape} for shape {shape}; "
                            "a custom function must return exactly the shape it is given")
    if array.dtype.kind not in "iuf":
        raise LawError(f"{law} returned dtype {array.dtype}; a custom function must return numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(array, dtype=dtype)
    finite = np.isfinite(out)
    if not finite.all():
        raise LawError(f"{law} returned {int(out.size - finite.sum())} NaN or infinite values (or values "
                       f"too large for {dtype.name}); a custom function must return finite numbers")
    return out
