"""NumPy work on host memory for the adapters' samplers (no framework is imported here).

* ``outside(values, lo, hi)``: the positions of the values outside ``[lo, hi]``, the search of
  the rejection sampler of truncated normals on torch's CPU tensors (through a NumPy view of
  their own memory). In cache-sized blocks, two reused scratch masks instead of two
  array-sized ones, one span per thread: a third of the cost of torch's own comparison and
  ``nonzero`` ops on this kind of machine, before threads. (Keras' TensorFlow path keeps TF's
  own mask: a NumPy search there measured no gain against the cost of TF's normal draw.)

* ``finite_cast(array, dtype)`` and ``all_finite(array)``: a user law's result in its final
  dtype and the fence's check that every value is finite, in cache-sized blocks on every
  thread (no array-sized bool mask).
* ``affine(out, source, scale, shift, bounds)``: ``out = source * scale + shift`` (clipped to
  ``bounds``), in blocks on every thread: the maps around Keras' TensorFlow inversion of the
  normal CDF, which NumPy's whole-array passes would make on one thread, out of cache.
* ``write_eye(logical)`` and ``write_dirac(logical, groups)``: the identity and dirac laws
  written into an adapter's own buffer seen in the logical layout (zeros, then the ones
  where they go): no logical temporary, no rearranging copy.
* ``to_native(view, logical, dtype)``: a user law's logical array cast into an adapter's
  native layout in one pass (``copy_striped`` where the layout transposes rows).
* ``law_native(spec, key, view, dtype)``: a user law's values (``reference.law_values``) in an
  adapter's native layout, the one way Keras and Flax lay a ``custom`` law out (whole, tile by
  tile through a logical view, or tiles then one rearranging copy).
* ``copy_striped(out, source)``: ``out[...] = source`` for a ``source`` that is a
  transposed view (a Keras or Flax kernel from a user law's logical array), in cache-sized tiles, the
  stripes of the last axis shared between threads; a dtype change happens in the same pass.

>>> import numpy as np
>>> outside(np.array([0.5, -3.0, 1.0, 2.5], dtype=np.float32), -2.0, 2.0)
array([1, 3])
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from . import stream as _stream
from .reference import law_values

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .fans import LogicalView
    from .spec import Custom

__all__ = [
    "BLOCK",
    "affine",
    "all_finite",
    "copy_striped",
    "finite_cast",
    "law_native",
    "outside",
    "to_native",
    "write_dirac",
    "write_eye",
]

_T = TypeVar("_T")

#: Elements per block of ``outside``: its two bool scratch arrays stay in cache.
BLOCK = 1 << 18
#: Up to this many elements, ``outside`` compares in one expression (the redraws of a small
#: truncated tensor call it several times, where the blocks' set-up is most of the cost).
_SMALL = 1 << 12


def outside(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The flat positions of ``values`` (contiguous) outside ``[lo, hi]``, increasing. A large
    array is cut into one span per thread (``stream.run_parallel``: NumPy releases the GIL).

    ``lo`` and ``hi`` are compared in ``values``' dtype: callers pass bounds that are exact
    numbers of it (rounded inward), so no value equal to a bound counts as outside.

    >>> outside(np.array([0.5, -3.0, 2.0, 2.5], dtype=np.float32), -2.0, 2.0)
    array([1, 3])
    """
    flat = values.reshape(-1)
    low, high = flat.dtype.type(lo), flat.dtype.type(hi)
    if flat.size <= _SMALL:  # one small mask costs less than setting up blocks and spans
        return np.flatnonzero((flat < low) | (flat > high))

    def span(first: int, stop: int) -> list[np.ndarray]:
        found = []
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
                found.append(positions + start)
        return found

    parts = [p for ps in _per_span(flat.size, span) for p in ps]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.intp)


def affine(
    out: np.ndarray,
    source: np.ndarray,
    scale: np.floating[Any],
    shift: np.floating[Any],
    bounds: tuple[np.floating[Any], np.floating[Any]] | None = None,
) -> None:
    """``out[...] = source * scale + shift``, then clipped to ``bounds`` when given, in ``out``'s
    dtype: each operation rounds as NumPy's own passes over the whole arrays would (so the
    numbers are theirs), but a block at a time while it is in cache, one span per thread.
    ``out`` and ``source`` are C-contiguous arrays of one size; ``out`` may be ``source``.

    >>> import numpy as np
    >>> out = np.empty(4, dtype=np.float32)
    >>> bounds = (np.float32(0), np.float32(6))
    >>> affine(out, np.arange(4, dtype=np.float32), np.float32(2), np.float32(1), bounds)
    >>> out
    array([1., 3., 5., 6.], dtype=float32)
    """
    if not (out.flags.c_contiguous and source.flags.c_contiguous) or out.size != source.size:
        # reshape(-1) of a strided out would be a copy: the results would go nowhere.
        raise ValueError(
            f"affine: out and source must be C-contiguous and of one size; got sizes {out.size} and "
            f"{source.size}, contiguous {out.flags.c_contiguous} and {source.flags.c_contiguous}"
        )
    target, values = out.reshape(-1), source.reshape(-1)

    def span(first: int, stop: int) -> None:
        for start in range(first, stop, BLOCK):
            block = target[start : min(start + BLOCK, stop)]
            np.multiply(values[start : start + block.size], scale, out=block)
            np.add(block, shift, out=block)
            if bounds is not None:
                np.clip(block, *bounds, out=block)

    _per_span(target.size, span)


#: Values per thread below which ``copy_striped`` stays on the calling thread.
_COPY_SPLIT = 1 << 16
#: Positions of the last axis per stripe: 16 float32 values fill a cache line of ``out``.
_STRIPE = 16
#: A stripe whose source rows lie a multiple of this many bytes apart takes 8 positions: the
#: rows then share one set of a 64 KB-per-way L2 (this machine's 512 KB 8-way, and most x86
#: L2s' per-way span), and 16 of them evict each other. Measured on a 4096x16384 kernel:
#: 0.2-1.2 s in stripes of 16 (from process to process), 0.11-0.14 s in stripes of 8.
_ALIASING_STRIDE = 1 << 16
#: Positions of the next-to-last axis per tile: a tile of 16 x 1024 float64 is 128 KB of
#: source and 64 KB of ``out``, inside L2 (measured against whole-axis stripes: 0.59x on
#: 4096x4096, 0.38x on 5120x5120, 1.0x on 512x512, in a run of 22 shapes and dtypes).
_TILE_ROWS = 1024


def copy_striped(
    out: np.ndarray, source: np.ndarray, stripe: int | None = None, rows: int = _TILE_ROWS
) -> None:
    """``out[...] = source`` (same shape; NumPy's casting rules) in tiles of ``rows`` positions
    of the next-to-last axis by ``stripe`` of the last, the stripes split into one span per
    thread (NumPy releases the GIL) and every thread walking the same band of rows.

    For a ``source`` whose last axis is not its contiguous one (a transposed view), a tile
    reads ``stripe`` contiguous runs of the source that stay in cache while ``rows`` of
    ``out``'s rows each take ``stripe`` adjacent values. ``stripe=None`` takes 16, or 8 when
    the source's runs lie a multiple of 64 KB apart (they would evict each other from L2).

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
    if stripe is None:
        stripe = _STRIPE // 2 if source.ndim and source.strides[-1] % _ALIASING_STRIDE == 0 else _STRIPE
    if stripe < 1 or rows < 1:
        raise ValueError(f"copy_striped: stripe and rows must be at least 1, got {stripe} and {rows}")
    width = out.shape[-1] if out.ndim else 0
    if width == 0 or out.size == 0:
        out[...] = source
        return
    bands: list[tuple[slice, ...]] = [()]
    if out.ndim > 1:
        bands = [(slice(start, start + rows),) for start in range(0, out.shape[-2], rows)]
    stripes = -(-width // stripe)
    spans = max(1, min(stripes, _stream.threads(), out.size // _COPY_SPLIT))
    edges = [stripes * i // spans * stripe for i in range(spans)] + [width]

    def span(index: int) -> None:
        cuts = [
            slice(start, min(start + stripe, edges[index + 1]))
            for start in range(edges[index], edges[index + 1], stripe)
        ]
        # Band-major: measured 35 against 50 ms stripe-major on 4096x4096 (two threads).
        for band in bands:
            for cut in cuts:
                tile: tuple[Any, ...] = (..., *band, cut)
                out[tile] = source[tile]

    if spans == 1:
        span(0)
    else:
        _stream.run_parallel([functools.partial(span, i) for i in range(spans)])


def to_native(
    view: LogicalView, logical: np.ndarray, dtype: Any, out: np.ndarray | None = None
) -> np.ndarray:
    """``view.to_native(logical)`` cast to ``dtype``, C-contiguous, in one pass over ``logical``:
    into ``out`` when given (``view.native_shape`` and ``dtype``, C-contiguous), else a new
    array. A transposed layout goes through ``copy_striped``'s tiles on the pool's threads
    (NumPy's own transposing copy of a 4096x4096 array costs several times as much); a
    reshaped one (an attention kernel's heads) through NumPy.

    >>> import numpy as np
    >>> from multiinit.fans import LogicalView
    >>> view = LogicalView.of((3, 2), "in,out")  # a Dense kernel: logical (out, in) = (2, 3)
    >>> to_native(view, np.arange(6.0).reshape(2, 3), "float32")
    array([[0., 3.],
           [1., 4.],
           [2., 5.]], dtype=float32)
    """
    if out is None:
        out = np.empty(view.native_shape, dtype=dtype)
    if not view.is_plain:
        out[...] = view.to_native(logical)
        return out
    inverse = [0] * len(view.axes)
    for position, axis in enumerate(view.axes):
        inverse[axis] = position
    moved = logical.transpose(inverse)  # a view in the native shape
    if inverse[-1] == logical.ndim - 1 or logical.size == 0:  # the rows stay rows
        out[...] = moved
    else:
        copy_striped(out, moved)
    return out


def law_native(
    spec: Custom,
    key: Sequence[int],
    view: LogicalView,
    dtype: Any,
    path: str | None = None,
    *,
    empty: Callable[[tuple[int, ...], np.dtype], np.ndarray] | None = None,
) -> np.ndarray:
    """A user law's values for ``view``'s logical shape from the stream ``key``, fenced as
    ``reference.law_values`` fences them, in ``view``'s native layout and ``dtype`` (C-contiguous,
    in a buffer from ``empty(shape, dtype)``, default ``np.empty``: Keras passes an aligned one
    that TensorFlow takes without a copy). Each law's result is laid out in one pass:

    * called whole: the fence casts while ``to_native`` lays the result out;
    * ``elementwise`` on a plain layout: each tile written straight into its place through a
      logical view of the buffer, on the pool's threads (no logical temporary);
    * ``elementwise`` on a reshaped layout (an attention kernel's heads), which has no logical
      view to write through: the tiles make the logical array, rearranged once.

    >>> import numpy as np
    >>> import multiinit as mi
    >>> from multiinit.fans import LogicalView
    >>> law = mi.custom(lambda rng, shape, dtype: np.arange(6.0).reshape(shape), name="doc_native")
    >>> law_native(law, (0,), LogicalView.of((3, 2), "in,out"), "float32")  # logical (2, 3)
    array([[0., 3.],
           [1., 4.],
           [2., 5.]], dtype=float32)
    """
    dtype = np.dtype(dtype)
    make = np.empty if empty is None else empty
    native, logical = view.native_shape, view.logical_shape
    if not spec.elementwise:
        return law_values(
            spec, key, logical, dtype, path, place=lambda a, d: to_native(view, a, d, out=make(native, d))
        )
    if view.is_plain:
        out = make(native, dtype)
        law_values(spec, key, logical, dtype, path, out=view.to_logical(out))
        return out
    return to_native(view, law_values(spec, key, logical, dtype, path), dtype, out=make(native, dtype))


def _spans(size: int) -> list[int]:
    """Edges of one span per thread over ``size`` elements, on block boundaries."""
    blocks = -(-size // BLOCK)
    spans = 1 if blocks <= 1 else min(blocks, _stream.threads())
    return [size * i // spans // BLOCK * BLOCK for i in range(spans)] + [size]


def _per_span(size: int, job: Callable[[int, int], _T]) -> list[_T]:
    """``job(first, stop)`` over one span of ``size`` elements per thread (``_spans``), the
    results in span order."""
    edges = _spans(size)
    results: list[Any] = [None] * (len(edges) - 1)

    def span(index: int) -> None:
        results[index] = job(edges[index], edges[index + 1])

    if len(results) == 1:
        span(0)
    else:
        _stream.run_parallel([functools.partial(span, i) for i in range(len(results))])
    return results


def _finite_blocks(flat: np.ndarray, first: int, stop: int) -> bool:
    scratch = np.empty(min(BLOCK, stop - first), dtype=bool)
    for start in range(first, stop, BLOCK):
        block = flat[start : min(start + BLOCK, stop)]
        mask = scratch[: block.size]
        np.isfinite(block, out=mask)
        if not mask.all():
            return False
    return True


def all_finite(array: np.ndarray) -> bool:
    """True when no value of ``array`` (numbers) is NaN or infinite, as
    ``np.isfinite(array).all()``: in blocks, one span per thread.

    >>> import numpy as np
    >>> all_finite(np.array([1.0, 2.0])), all_finite(np.array([1.0, np.inf]))
    (True, False)
    """
    if array.dtype.kind not in "fc" or array.size == 0:
        return True
    if not array.flags.c_contiguous:
        return bool(np.isfinite(array).all())
    flat = array.reshape(-1)
    return all(_per_span(flat.size, lambda first, stop: _finite_blocks(flat, first, stop)))


def finite_cast(array: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, bool]:
    """``(np.asarray(array, dtype), all_finite(of it))`` in one pass: each block is cast and
    checked while it is in cache, one span per thread. Values too large for ``dtype`` become
    inf (checked); ``array`` itself is returned when it already has ``dtype``.

    >>> import numpy as np
    >>> out, finite = finite_cast(np.array([1.0, 1e5]), np.dtype("float16"))
    >>> out.dtype, out.tolist(), finite
    (dtype('float16'), [1.0, inf], False)
    """
    dtype = np.dtype(dtype)
    if array.dtype == dtype:
        return array, all_finite(array)
    if not array.flags.c_contiguous or array.size == 0:
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.asarray(array, dtype=dtype)
        return out, all_finite(out)
    out = np.empty(array.shape, dtype=dtype)
    source, target = array.reshape(-1), out.reshape(-1)

    def job(first: int, stop: int) -> bool:
        finite = True
        with np.errstate(over="ignore", invalid="ignore"):  # np.errstate is per thread
            for start in range(first, stop, BLOCK):
                end = min(start + BLOCK, stop)
                target[start:end] = source[start:end]
                finite = _finite_blocks(target, start, end) and finite
        return finite

    return out, all(_per_span(source.size, job))


def write_eye(logical: np.ndarray) -> None:
    """The identity (``eye``) into ``logical``, a 2-D array or a transposed view of one.

    >>> import numpy as np
    >>> out = np.full((2, 3), 7.0)
    >>> write_eye(out.T)
    >>> out
    array([[1., 0., 0.],
           [0., 1., 0.]])
    """
    logical.fill(0)
    diagonal = np.arange(min(logical.shape))
    logical[diagonal, diagonal] = 1


def write_dirac(logical: np.ndarray, groups: int) -> None:
    """torch's ``dirac_`` law into ``logical`` (``(out, in, *kernel)``, or a transposed view of
    a native buffer): in each of ``groups`` groups of output channels, channel ``d`` has a 1
    at input channel ``d``, at the kernel's centre (index ``k // 2`` of every spatial axis).

    >>> import numpy as np
    >>> out = np.zeros((2, 2, 3))
    >>> write_dirac(out, 1)
    >>> out[:, :, 1]
    array([[1., 0.],
           [0., 1.]])
    """
    logical.fill(0)
    out_channels, in_channels, *kernel = logical.shape
    per_group = out_channels // groups
    diagonal = np.arange(min(per_group, in_channels))
    rows = (np.arange(groups)[:, None] * per_group + diagonal).reshape(-1)
    spots = (rows, np.tile(diagonal, groups), *(k // 2 for k in kernel))
    logical[spots] = 1
