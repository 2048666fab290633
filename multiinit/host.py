"""NumPy work on host memory for the adapters' samplers (no framework is imported here).

* ``outside(values, lo, hi)``: the positions of the values outside ``[lo, hi]``, the search of
  the rejection sampler of truncated normals on torch's CPU tensors (through a NumPy view of
  their own memory). In cache-sized blocks, two reused scratch masks instead of two
  array-sized ones, one span per thread: a third of the cost of torch's own comparison and
  ``nonzero`` ops on this kind of machine, before threads. (Keras' TensorFlow path keeps TF's
  own mask: a NumPy search there measured no gain against the cost of TF's normal draw.)

* ``copy_striped(out, source, stripe)``: ``out[...] = source`` for a ``source`` that is a
  transposed view (a Keras kernel from a user law's logical array), in stripes along the last
  axis, the stripes shared between threads; a dtype change happens in the same pass.

>>> import numpy as np
>>> outside(np.array([0.5, -3.0, 1.0, 2.5], dtype=np.float32), -2.0, 2.0)
array([1, 3])
"""

from __future__ import annotations

import functools

import numpy as np

from . import stream as _stream

__all__ = ["BLOCK", "copy_striped", "outside"]

#: Elements per block of ``outside``: its two bool scratch arrays stay in cache.
BLOCK = 1 << 18


def outside(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The flat positions of ``values`` (contiguous) outside ``[lo, hi]``, increasing. A large
    array is cut into one span per thread (``stream.run_parallel``: NumPy releases the GIL).

    ``lo`` and ``hi`` are compared in ``values``' dtype: callers pass bounds that are exact
    numbers of it (rounded inward), so no value equal to a bound counts as outside.
    """
    flat = values.reshape(-1)
    low, high = flat.dtype.type(lo), flat.dtype.type(hi)
    blocks = -(-flat.size // BLOCK)
    spans = 1 if blocks <= 1 else min(blocks, _stream.threads())
    edges = [flat.size * i // spans // BLOCK * BLOCK for i in range(spans)] + [flat.size]
    found: list[list[np.ndarray]] = [[] for _ in range(spans)]

    def span(index: int) -> None:
        first, stop = edges[index], edges[index + 1]
        below = np.empty(min(BLOCK, stop - first), dtype=bool)
        above = np.empty_like(below)
        for start in range(first, stop, BLOCK):
            block = flat[start : min(start + BLOCK, stop)]
            b, a = below[: block.size], above[: block.size]
            np.less(block, low, out=b)
            np.greater(block, high, out=a)
            b |= a
            positions = np.flatnonzero(b)
            if positions.size:
                found[index].append(positions + start)

    if spans == 1:
        span(0)
    else:
        _stream.run_parallel([functools.partial(span, i) for i in range(spans)])
    parts = [p for ps in found for p in ps]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.intp)


#: Values per thread below which ``copy_striped`` stays on the calling thread.
_COPY_SPLIT = 1 << 16


def copy_striped(out: np.ndarray, source: np.ndarray, stripe: int) -> None:
    """``out[...] = source`` (same shape; NumPy's casting rules), ``stripe`` positions of the last
    axis at a time, the stripes split into one span per thread (NumPy releases the GIL).

    For a ``source`` whose last axis is not its contiguous one (a transposed view), a stripe
    reads ``stripe`` contiguous runs of the source that stay in cache while each of ``out``'s
    rows takes ``stripe`` adjacent values: 16 float32 rows of a 4096-wide array are 256 KB.

    >>> import numpy as np
    >>> a = np.arange(6.0).reshape(2, 3)
    >>> out = np.empty((3, 2), dtype=np.float32)
    >>> copy_striped(out, a.T, 1)
    >>> out
    array([[0., 3.],
           [1., 4.],
           [2., 5.]], dtype=float32)
    """
    if out.shape != source.shape:
        raise ValueError(f"copy_striped: out has shape {out.shape}, source {source.shape}")
    width = out.shape[-1] if out.ndim else 0
    if width == 0 or out.size == 0:
        out[...] = source
        return
    stripes = -(-width // stripe)
    spans = max(1, min(stripes, _stream.threads(), out.size // _COPY_SPLIT))
    edges = [stripes * i // spans * stripe for i in range(spans)] + [width]

    def span(index: int) -> None:
        for start in range(edges[index], edges[index + 1], stripe):
            cut = slice(start, min(start + stripe, edges[index + 1]))
            out[..., cut] = source[..., cut]

    if spans == 1:
        span(0)
    else:
        _stream.run_parallel([functools.partial(span, i) for i in range(spans)])
