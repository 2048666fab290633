"""Host draws: the laws MXNet does not sample natively, drawn by NumPy straight into an
array's memory (part of ``multiinit.mxnet``).

``draw.py`` sends here every law MXNet has no sampler for (truncated normals and the truncated
variance-scaling forms, mixtures, sparse, the Gaussian under orthogonal, eye, dirac, custom
laws), in native mode as in portable mode. ``host_target(arr)`` gives the NumPy array to write
into; ``fill(spec, out, view, fans, base, path)`` writes ``spec``'s law there.

Decisions (each one tested in ``tests/test_mxnet_*.py``; the matrix checks every law):

Why NumPy
    MXNet 1.9 has no truncated normal, mixture or sparse sampler, and its own normal sampler
    costs three times NumPy's float32 ziggurat on CPU. NumPy's generators release the GIL, so
    the tiles of a tensor fill on every core (``multiinit.stream.run_parallel``).
Where the values go
    A dense array in host memory is written through a NumPy view of its own memory (the
    pointer MXNet's C API gives after every pending operation on the array has finished): no
    temporary, no copy. Any other array (a GPU context, row-sparse storage) is drawn into a
    host buffer of its size and copied once.
Streams (native mode)
    ``base`` is the initializer's or ``apply``'s derived seed, or, without a seed, an integer
    drawn from MXNet's generator on the array's device (so ``mx.random.seed`` makes it
    reproducible, and a seeded draw never touches the user's MXNet stream). An elementwise law
    cuts the array, flat in memory order, into the tiles of ``stream.tiling((numel,))``; tile
    ``t`` draws from ``stream.tile_rng((base,), t)``. A whole-tensor law draws from
    ``stream.parameter_rng((base,))``. Layout is irrelevant to an elementwise law, so it is
    drawn in memory order; a whole-tensor law is drawn in logical layout and rearranged once.
Laws
    * Uniform ``U[low, high)``: float32 (float64 for float64 arrays) uniforms, scaled, then
      clamped to the dtype's own numbers inside the support, as the reference does.
    * Truncated normals: when the window holds at least half the mass (every variance-scaling
      form holds 95%), standard normals in the working dtype, those outside the window drawn
      again until none is (exact, about 1.05 draws at +-2 std); a narrower window inverts the
      CDF in float64 (``reference.truncated_standard_normal``). Then scaled, shifted, and
      clamped to the window as the dtype rounds it: values never escape.
    * Mixtures of elementwise laws: one float64 uniform ``u`` per element picks the component
      whose weight interval holds it (probabilities exact to 2**-53). A uniform component
      takes its value from the same ``u`` rescaled within its interval, ``low + (u - start) *
      (high - low) / weight``: ``u`` has 53 bits, so even a component of weight 2**-29 keeps
      float32's full resolution (no quantization: the law of an independent uniform draw). A
      constant takes its value; any other component draws a tile of its own. Components are
      selected by arithmetic on 0/1 masks, never by branches or masked assignment (random
      masks cost NumPy a branch miss per element). A mixture with a whole-tensor component
      (orthogonal, sparse, custom, ...) is drawn whole by the reference instead.
    * Sparse: ``N(0, std**2)``, then in each column a uniformly random set of
      ``ceil(sparsity * rows)`` rows set to zero, chosen by Floyd's algorithm (one bounded
      random integer per zero, vectorized over the columns).
    * Eye and dirac: written straight into the array (``multiinit.host.write_eye``,
      ``write_dirac``): zeros, then the ones where the logical layout puts them.
    * Anything else: the reference's whole-tensor draw.
User laws
    ``custom`` functions run behind ``call_law`` (``multiinit.reference``): an exception, a
    wrong shape or dtype, NaN or infinite values become a ``LawError`` naming the law and the
    parameter, raised before anything is written. One built with ``elementwise=True`` is
    called once per tile of the stream rule, on the pool's threads (``law_values``).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

# multiinit/mxnet/__init__.py has already turned a failing mxnet import into BackendUnavailable.
import mxnet as mx
import numpy as np
from mxnet.base import _LIB, check_call

from .. import host as _host, stream
from ..errors import LawError, MultiinitError, ShapeError, SpecError
from ..fans import LogicalView
from ..reference import _draw_checked, law_values, truncated_standard_normal
from ..spec import (
    Constant,
    Custom,
    Dirac,
    Eye,
    Mixture,
    Normal,
    Sparse,
    Spec,
    TruncatedNormal,
    Uniform,
    is_negative_zero,
)

__all__ = ["host_target", "host_view", "fill", "fenced", "elementwise_law"]

#: MXNet device types whose arrays live in host memory.
HOST_DEVICES = ("cpu", "cpu_pinned", "cpu_shared")
_FLOATS = (np.dtype("float16"), np.dtype("float32"), np.dtype("float64"))


# --------------------------------------------------------------------------- where values go


def host_view(arr: Any) -> np.ndarray | None:
    """A writable NumPy view of ``arr``'s own memory, or None when there is none to give (not
    in host memory, not dense storage, read-only, or a dtype NumPy does not have).

    The caller keeps ``arr`` alive while it uses the view and issues no MXNet operation on
    ``arr`` in between (MXNet has finished every pending one when this returns).

    >>> import mxnet as mx
    >>> a = mx.nd.zeros((2, 3))
    >>> host_view(a)[1, 2] = 5.0
    >>> a.asnumpy().tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]
    """
    if (
        getattr(arr, "stype", "default") != "default"
        or arr.ctx.device_type not in HOST_DEVICES
        or not getattr(arr, "writable", True)
    ):
        return None
    try:
        dtype = np.dtype(arr.dtype)
    except TypeError:
        return None
    if dtype.kind not in "fiub" or dtype.fields is not None:  # bfloat16 is a structured dtype
        return None
    shape = tuple(int(d) for d in arr.shape)
    check_call(_LIB.MXNDArrayWaitToWrite(arr.handle))
    size = math.prod(shape) * dtype.itemsize
    if size == 0:
        return np.empty(shape, dtype)
    pointer = ctypes.c_void_p()
    check_call(_LIB.MXNDArrayGetData(arr.handle, ctypes.byref(pointer)))
    memory = (ctypes.c_char * size).from_address(pointer.value)
    return np.frombuffer(memory, dtype=dtype).reshape(shape)


@contextlib.contextmanager
def host_target(arr: Any) -> Iterator[np.ndarray]:
    """A NumPy array to write ``arr``'s values into: a view of its memory when it has one,
    else a host buffer copied into ``arr`` (one copy) when the block exits without error."""
    view = host_view(arr)
    if view is not None:
        yield view
        return
    dtype = np.dtype(arr.dtype) if np.dtype(arr.dtype).fields is None else np.dtype("float32")
    buffer = np.empty(tuple(int(d) for d in arr.shape), dtype)
    yield buffer
    value = mx.nd.array(buffer, dtype=arr.dtype, ctx=arr.ctx)
    arr[:] = value.as_np_ndarray() if isinstance(arr, mx.np.ndarray) else value


# --------------------------------------------------------------------------- laws


def elementwise_law(spec: Spec, fans: tuple[int, int] | None) -> tuple[Any, ...] | None:
    """``spec`` as a plain elementwise law, or None when it draws a whole tensor.

    ``("constant", v)``, ``("uniform", low, high)``, ``("normal", mean, std)``,
    ``("truncated", mean, std, low, high)`` (bounds in std) or ``("mixture", [(w, law), ...])``
    (components of weight > 0).

    >>> import multiinit as mi
    >>> elementwise_law(mi.he_uniform(), (6, 4))
    ('uniform', -1.0, 1.0)
    >>> elementwise_law(mi.orthogonal(), (6, 4)) is None
    True
    """
    if isinstance(spec, Constant):
        return ("constant", float(spec.value))
    if isinstance(spec, Uniform):
        return ("uniform", float(spec.low), float(spec.high))
    if isinstance(spec, Normal):
        return ("normal", float(spec.mean), float(spec.std))
    if isinstance(spec, TruncatedNormal):
        return ("truncated", float(spec.mean), float(spec.std), float(spec.low), float(spec.high))
    if isinstance(spec, Mixture):
        parts = []
        for weight, component in spec.components:
            if weight <= 0:
                continue
            law = elementwise_law(component, fans)
            if law is None:
                return None
            parts.append((float(weight), law))
        return ("mixture", parts)
    scaling = spec.as_variance_scaling()
    if scaling is None or not stream.is_elementwise(spec):
        return None
    # A fan-based spec comes with its fans (the shape was checked before).
    distribution, number = scaling.law(*cast("tuple[int, int]", fans))
    if distribution == "uniform":
        return ("uniform", -number, number)
    if distribution == "untruncated_normal":
        return ("normal", 0.0, number)
    return ("truncated", 0.0, number, -2.0, 2.0)


def _work(dtype: np.dtype) -> np.dtype:
    return np.dtype("float64") if dtype == np.float64 else np.dtype("float32")


def _support(low: float, high: float, dtype: np.dtype, open_high: bool) -> tuple[float, float]:
    """The dtype's smallest number >= low and largest number <= high (< high when open)."""
    floor = np.array(low, dtype=dtype)
    if float(floor) < low:
        floor = np.nextafter(floor, np.array(np.inf, dtype=dtype))
    ceiling = np.array(high, dtype=dtype)
    if float(ceiling) > high or (open_high and float(ceiling) == high):
        ceiling = np.nextafter(ceiling, np.array(-np.inf, dtype=dtype))
    return float(floor), float(ceiling)


def _clamp(x: np.ndarray, low: float | None, high: float | None) -> None:
    """``x`` clamped in place (np.minimum/np.maximum: NumPy 1.x's clip costs three times more)."""
    if low is not None:
        np.maximum(x, low, out=x)
    if high is not None:
        np.minimum(x, high, out=x)


def _clamp_uniform(x: np.ndarray, low: float, high: float, dtype: np.dtype) -> None:
    """``x`` = low + (high - low) * u, u in [0, 1), clamped so that rounding to ``dtype`` keeps
    it in [low, high): the top can round up to ``high``; the bottom only rounds below ``low``
    when ``low`` is not one of the dtype's numbers."""
    floor, ceiling = _support(low, high, dtype, open_high=True)
    _clamp(x, floor if floor != low else None, ceiling)


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _truncated_standard(rng: np.random.Generator, x: np.ndarray, low: float, high: float) -> None:
    """Fill ``x`` (float32 or float64) with N(0, 1) cut to [low, high] (see the module doc)."""
    if _phi(high) - _phi(low) < 0.5:
        x[...] = truncated_standard_normal(rng, low, high, x.shape)
        return
    rng.standard_normal(out=x, dtype=x.dtype)
    flat = x.reshape(-1)
    if -low == high:
        bad = np.flatnonzero(np.abs(flat) > high)
    else:
        bad = np.flatnonzero((flat < low) | (flat > high))
    while bad.size:
        again = rng.standard_normal(bad.size, dtype=x.dtype)
        flat[bad] = again
        bad = bad[(again < low) | (again > high)]


def _fill_law(law: tuple[Any, ...], rng: np.random.Generator, out: np.ndarray) -> None:
    """Write the elementwise ``law`` into ``out`` (a float array) from ``rng``."""
    kind = law[0]
    if kind == "constant":
        out.fill(law[1])
        return
    if kind == "mixture":
        _fill_mixture(law[1], rng, out)
        return
    work = out if out.dtype in (np.float32, np.float64) else np.empty(out.shape, np.float32)
    if kind == "uniform":
        low, high = law[1], law[2]
        rng.random(out=work, dtype=work.dtype)
        if math.isfinite(high - low):
            work *= high - low
            work += low
        else:  # the width overflows: low * (1 - u) + high * u keeps every term finite
            np.add(work * high, (1.0 - work) * low, out=work)
        _clamp_uniform(work, low, high, out.dtype)
    elif kind == "normal":
        rng.standard_normal(out=work, dtype=work.dtype)
        work *= law[2]
        work += law[1]
    else:  # truncated
        mean, std, low, high = law[1:]
        _truncated_standard(rng, work, low, high)
        work *= std
        work += mean
        _clamp(work, *_support(mean + low * std, mean + high * std, out.dtype, open_high=False))
    if work is not out:
        out[...] = work


def _fill_mixture(
    parts: Sequence[tuple[float, tuple[Any, ...]]], rng: np.random.Generator, out: np.ndarray
) -> None:
    """A mixture of elementwise laws by the masked arithmetic of the module doc."""
    total = math.fsum(w for w, _ in parts)
    edges = [0.0]
    for w, _ in parts:
        edges.append(edges[-1] + w / total)
    u = rng.random(out.shape)
    acc = None  # the first term is written, the others added
    term = np.empty(out.shape)
    own = None
    for k, (w, law) in enumerate(parts):
        start, stop = edges[k], edges[k + 1]
        kind = law[0]
        if kind == "constant" and law[1] == 0.0:
            continue  # a zero adds nothing to the sum
        mask = _picked(u, edges, k)
        if kind == "constant":
            np.multiply(mask, law[1], out=term)
        elif kind == "uniform":
            low, high = law[1], law[2]
            scale = (high - low) / (w / total) if math.isfinite(high - low) else None
            if scale is not None and math.isfinite(scale):
                np.subtract(u, start, out=term)
                term *= scale
                term += low
            else:  # a width or scale float64 cannot hold: interpolate between the bounds
                t = (u - start) / (stop - start)
                np.add(t * high, (1.0 - t) * low, out=term)
            _clamp_uniform(term, low, high, out.dtype)
            term *= mask
        else:
            if own is None:
                own = np.empty(out.shape, _work(out.dtype))
            _fill_law(law, rng, own)
            np.multiply(own, mask, out=term)
        if acc is None:
            acc, term = term, np.empty(out.shape)
        else:
            acc += term
    # A product 0 * negative is -0.0, so where a zero constant was picked the sum's sign is
    # the other terms' (-0.0 when every one was): adding +0.0 as the sum is stored makes those
    # zeros +0.0 at no cost (x + 0.0 is x for any other x), and a -0.0 constant then negates its own.
    if acc is None:
        out.fill(0.0)
    else:
        np.add(acc, 0.0, out=out, casting="same_kind")
    for k, (_, law) in enumerate(parts):
        if law[0] == "constant" and is_negative_zero(law[1]):
            np.negative(out, out=out, where=_picked(u, edges, k))


def _picked(u: np.ndarray, edges: list[float], k: int) -> np.ndarray:
    """Where component ``k`` is picked: ``u`` in ``[edges[k], edges[k + 1])``, the first and
    last intervals open at their outer ends (the edges' float sum need not reach 1)."""
    if k == 0:
        return u < edges[1]
    if k == len(edges) - 2:
        return u >= edges[k]
    return (u >= edges[k]) & (u < edges[k + 1])


def _tile_jobs(
    flat: np.ndarray, base: int, job: Callable[[np.random.Generator, np.ndarray], None]
) -> list[Callable[[], None]]:
    grid = stream.tiling((flat.size,))

    def one(tile: stream.Tile) -> Callable[[], None]:
        return lambda: job(stream.tile_rng((base,), tile.index), flat[tile.box[0]])

    return [one(tile) for tile in grid.tiles()]


def fill_elementwise(law: tuple[Any, ...], out: np.ndarray, base: int) -> None:
    """``law`` into ``out`` (any float array, written in memory order), tile by tile in threads."""
    if out.size == 0:
        return
    flat = out.reshape(-1)
    stream.run_parallel(_tile_jobs(flat, base, lambda rng, piece: _fill_law(law, rng, piece)))


def fill_standard_normal(out: np.ndarray, base: int) -> None:
    """N(0, 1) into ``out`` (float32 or float64), tile by tile in threads."""
    fill_elementwise(("normal", 0.0, 1.0), out, base)


def _sparse(spec: Sparse, out: np.ndarray, base: int) -> None:
    """``out`` (rows, cols) gets N(0, std**2) with ceil(sparsity * rows) zeros per column."""
    rows, cols = out.shape
    fill_elementwise(("normal", 0.0, float(spec.std)), out, base)
    zeros = math.ceil(spec.sparsity * rows)
    if not zeros:
        return
    rng = stream.parameter_rng((base,))
    columns = np.arange(cols)
    # Floyd: for j = rows - k .. rows - 1, pick t in [0, j]; if t is taken already, take j
    # (never taken before). NaN marks a taken row: a normal draw is never NaN.
    for j in range(rows - zeros, rows):
        t = cast(np.ndarray, rng.integers(0, j + 1, size=cols))  # cols values (the stubs see a scalar)
        t[np.isnan(out[t, columns])] = j
        out[t, columns] = np.nan
    np.nan_to_num(out, copy=False, nan=0.0)


# --------------------------------------------------------------------------- user laws


def _custom_names(spec: Spec) -> list[str]:
    if isinstance(spec, Custom):
        return [spec.name]
    if isinstance(spec, Mixture):
        return [n for w, s in spec.components if w > 0 for n in _custom_names(s)]
    inner = getattr(spec, "spec", None)
    return _custom_names(inner) if isinstance(inner, Spec) else []


def fenced(spec: Spec, path: str | None, draw: Callable[[], np.ndarray]) -> np.ndarray:
    """``draw()``, for a spec that runs user code (a ``custom`` law, also inside a mixture):
    any failure of the user's function, and any NaN or infinity in the result, becomes a
    ``LawError`` naming the law(s) and ``path``. multiinit's own errors pass through."""
    names = ", ".join(repr(n) for n in _custom_names(spec)) or repr(spec)
    where = f" at {path!r}" if path else ""
    try:
        values = draw()
    except LawError as err:
        if not path or repr(path) in str(err):
            raise
        # The core named the law but not the parameter (its stream does not carry the path).
        text = str(err)
        for name in _custom_names(spec):
            text = text.replace(f"custom law {name!r}", f"custom law {name!r}{where}", 1)
        raise type(err)(text if text != str(err) else f"{text} ({path!r})") from err
    except (ShapeError, SpecError) as err:
        if not any(f"custom(name={n!r}" in str(err) for n in _custom_names(spec)):
            raise
        # A core without a fence of its own refuses the law's result by naming the law.
        raise LawError(f"custom law {names}{where}: {err}") from err
    except MultiinitError:
        raise
    except Exception as err:  # the user's code failed: say whose, keep the cause
        raise LawError(f"custom law {names}{where} raised {type(err).__name__}: {err}") from err
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(values.size - np.count_nonzero(finite))
        first = tuple(int(i) for i in np.unravel_index(int(np.argmin(finite)), values.shape))
        raise LawError(
            f"custom law {names}{where} gave {bad} NaN or infinite values (the first at index "
            f"{first}); a custom function must return finite numbers"
        )
    return values


def logical_values(
    spec: Spec,
    shape: tuple[int, ...],
    fans: tuple[int, int] | None,
    dtype: np.dtype,
    base: int,
    path: str | None,
) -> np.ndarray:
    """The whole logical tensor of ``spec`` from the stream of ``base``, in ``dtype`` (a float
    dtype): the reference's law and code, user laws fenced."""
    if isinstance(spec, Custom):  # the generator parameter_rng((base,)) gives, or its tiles
        return law_values(spec, (base,), shape, dtype, path)
    rng = stream.parameter_rng((base,))
    if _custom_names(spec):
        return fenced(spec, path, lambda: _draw_checked(spec, rng, shape, fans, dtype, path))
    return _draw_checked(spec, rng, shape, fans, dtype, path)


def write_logical(out: np.ndarray, view: LogicalView, logical: np.ndarray) -> None:
    """A logical array into ``out`` (native layout), rearranged once."""
    out[...] = (
        logical if view.is_plain and view.axes == tuple(range(len(view.axes))) else view.to_native(logical)
    )


# --------------------------------------------------------------------------- the entry point


def fill(
    spec: Spec, out: np.ndarray, view: LogicalView, fans: tuple[int, int] | None, base: int, path: str | None
) -> None:
    """Write ``spec`` into ``out`` (the native array seen through ``view``) from the native
    stream of ``base`` (see the module doc). Checks (shape, dtype) are the caller's."""
    if out.size == 0:
        return
    if spec.uses_fans and fans is None:
        fans = view.fans
    law = elementwise_law(spec, fans) if out.dtype in _FLOATS else None
    if law is not None:
        fill_elementwise(law, out, base)
        return
    if isinstance(spec, Sparse) and out.dtype in _FLOATS and view.is_plain and view.axes == (0, 1):
        _sparse(spec, out, base)
        return
    if isinstance(spec, (Eye, Dirac)) and view.is_plain:
        # Straight into the array, seen in the logical layout: no logical temporary, no copy.
        logical = out.transpose(view.axes)
        if isinstance(spec, Eye):
            _host.write_eye(logical)
        else:
            _host.write_dirac(logical, spec.groups)
        return
    dtype = out.dtype if out.dtype in _FLOATS else np.dtype("float32")
    write_logical(out, view, logical_values(spec, view.logical_shape, fans, dtype, base, path))
