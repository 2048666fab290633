"""The NumPy reference: the executable definition of every spec, and the portable stream.

``sample(spec, shape, seed)`` draws in logical ``(out, in, *spatial)`` layout, in float64,
then casts. Every adapter must draw from the law this module draws from (the test matrix
checks it), and portable mode writes exactly these numbers into every framework.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import numpy as np

from .errors import LawError, LawShapeError, ShapeError, SpecError, shorten, shown
from .fans import MAX_ELEMENTS, OUT_IN, as_shape, compute_fans
from .spec import (
    Constant,
    Custom,
    Dirac,
    Eye,
    Mixture,
    Normal,
    Orthogonal,
    Sparse,
    Spec,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
    WithAxes,
)

__all__ = [
    "sample",
    "call_law",
    "law_values",
    "check_shape",
    "fans_for",
    "compile",
    "LAYOUT",
    "truncated_standard_normal",
]

#: The reference draws in logical layout.
LAYOUT = OUT_IN

_FLOAT_DTYPES = ("float16", "float32", "float64")


def _shape(shape: Sequence[int]) -> tuple[int, ...]:
    # Dimensions >= 0, at most MAX_NDIM of them and MAX_ELEMENTS elements (see fans.as_shape).
    return as_shape(shape)


def _dtype(dtype: Any) -> np.dtype:
    resolved: np.dtype | None
    try:
        resolved = np.dtype(dtype)
    except Exception:  # noqa: BLE001 - TypeError for unknown names, ValueError for bad structured dtypes
        resolved = None
    if resolved is None or resolved.name not in _FLOAT_DTYPES:
        raise SpecError(
            f"dtype={shown(dtype)} is not allowed; the NumPy reference draws one of {_FLOAT_DTYPES}"
        )
    return resolved


def _where(path: str | None) -> str:
    return f"{shown(path)}" if path else "a tensor"


def fans_for(
    spec: Spec, shape: Sequence[int], fans: tuple[int, int] | None = None, path: str | None = None
) -> tuple[int, int]:
    """The fans a fan-based spec uses on a logical ``shape`` (``fans`` wins when given; a
    ``with_axes`` spec reads them off ``shape`` by its axes).

    >>> from multiinit import xavier_uniform, with_axes
    >>> fans_for(xavier_uniform(), (8, 4))
    (4, 8)
    >>> fans_for(with_axes(xavier_uniform(), in_axis=0, out_axis=1), (8, 4))
    (8, 4)
    """
    if fans is not None:
        if (
            not isinstance(fans, (tuple, list))
            or len(fans) != 2
            or not all(
                isinstance(f, (int, np.integer)) and not isinstance(f, bool) and 0 <= f <= MAX_ELEMENTS
                for f in fans
            )
        ):
            raise SpecError(
                f"fans={shown(fans)} is not allowed; fans must be (fan_in, fan_out), two integers "
                ">= 0 and <= 2**48 (MAX_ELEMENTS)"
            )
        return int(fans[0]), int(fans[1])
    shape = _shape(shape)
    try:
        if isinstance(spec, WithAxes):
            return spec.fans(shape)
        return compute_fans(shape)
    except ShapeError as e:
        raise ShapeError(f"{shown(spec)} cannot fill {_where(path)} of shape {shape}: {e}") from None


def _shape_problem(spec: Spec, shape: tuple[int, ...], fans: tuple[int, int] | None) -> str | None:
    """Why ``spec`` cannot fill a logical ``shape``, or None when it can."""
    ndim = len(shape)
    if isinstance(spec, WithAxes):
        if fans is None:
            try:
                fans = spec.fans(shape)
            except ShapeError as e:
                return str(e)
        return _shape_problem(spec.spec, shape, fans)
    if spec.as_variance_scaling() is not None:
        if fans is None and ndim < 2:
            return "fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
    elif isinstance(spec, Orthogonal) and ndim < 2:
        return "only tensors with 2 or more dimensions are supported"
    elif isinstance(spec, (Eye, Sparse)) and ndim != 2:
        return "only tensors with 2 dimensions are supported"
    elif isinstance(spec, Dirac):
        if ndim not in (3, 4, 5):
            return "only tensors with 3, 4, or 5 dimensions are supported"
        if shape[0] % spec.groups:
            return f"dim 0 ({shape[0]}) must be divisible by groups={spec.groups}"
    elif isinstance(spec, Mixture):
        for _, component in spec.components:
            problem = _shape_problem(component, shape, fans)
            if problem:
                return f"its component {component!r}: {problem}"
    return None


def check_shape(
    spec: Spec, shape: Sequence[int], fans: tuple[int, int] | None = None, path: str | None = None
) -> None:
    """Raise ``ShapeError`` (naming ``path``) if ``spec`` cannot fill a logical ``shape``.

    >>> from multiinit import eye
    >>> check_shape(eye(), (3, 3, 3), path="conv.weight")
    Traceback (most recent call last):
    ...
    multiinit.errors.ShapeError: eye() cannot fill 'conv.weight' of shape (3, 3, 3): only tensors with 2 dimensions are supported
    """  # noqa: E501 - doctest output lines, as printed
    shape = _shape(shape)
    if fans is not None:
        fans_for(spec, shape, fans, path)  # validates the override
    problem = _shape_problem(spec, shape, fans)
    if problem:
        raise ShapeError(f"{shown(spec)} cannot fill {_where(path)} of shape {shape}: {problem}")


# --------------------------------------------------------------------------- the samplers

# Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9,
# far below float32 resolution). NumPy has no erfinv, and the reference must not need SciPy.
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_P_LOW = 0.02425

#: Acklam's lower-tail coefficients and the probability below which they apply, for adapters
#: that invert the normal tail natively with exactly the reference's approximation.
TAIL_NUMERATOR, TAIL_DENOMINATOR, TAIL_BELOW = _C, _D, _P_LOW


def _ndtri(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    x = np.empty_like(p)
    low = p < _P_LOW
    high = p > 1 - _P_LOW
    mid = ~(low | high)
    q = p[mid] - 0.5
    r = q * q
    num = ((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]
    den = ((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1
    x[mid] = num * q / den
    for mask, sign, tail in ((low, 1.0, p[low]), (high, -1.0, 1 - p[high])):
        with np.errstate(divide="ignore"):
            q = np.sqrt(-2 * np.log(tail))
        num = ((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]
        den = (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1
        x[mask] = sign * num / den
    return x


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def truncated_standard_normal(
    rng: np.random.Generator, low: float, high: float, size: tuple[int, ...]
) -> np.ndarray:
    """N(0, 1) restricted to [low, high] by inverting the CDF; never escapes the bounds.

    >>> x = truncated_standard_normal(np.random.default_rng(0), -2.0, 2.0, (1000,))
    >>> bool(x.min() >= -2.0 and x.max() <= 2.0)
    True
    """
    # Work in the lower tail, where the CDF keeps its relative precision.
    flip = low > 0
    if flip:
        low, high = -high, -low
    if high < -_FAR:
        x = _far_tail(rng, low, high, size)
    else:
        lo, hi = _phi(low), _phi(high)
        u = lo + (hi - lo) * rng.random(size)
        x = np.clip(_ndtri(u), low, high)
    return -x if flip else x


def _truncated_standard(
    rng: np.random.Generator, low: float, high: float, shape: tuple[int, ...]
) -> np.ndarray:
    """N(0, 1) restricted to [low, high], the reference's definition: when at least half the
    mass lies inside (every default and variance-scaling form), standard normals are drawn and
    those outside redrawn, in order and from the same generator, until none is (exact, and
    about 1.05 draws at +-2); narrower bounds invert the CDF (``truncated_standard_normal``)."""
    if _phi(high) - _phi(low) < 0.5:
        return truncated_standard_normal(rng, low, high, shape)
    x = rng.standard_normal(shape)
    flat = x.reshape(-1)
    if -low == high:
        bad = np.flatnonzero(np.abs(flat) > high)
    else:
        bad = np.flatnonzero((flat < low) | (flat > high))
    while bad.size:
        redraw = rng.standard_normal(bad.size)
        flat[bad] = redraw
        bad = bad[(redraw < low) | (redraw > high)]
    return x


#: Beyond this many std the normal CDF falls below 1e-300 and double precision loses it
#: (at 38.5 it is 0): bounds this far out are inverted in log space instead.
_FAR = 37.0


def _log_lower_tail(t: np.ndarray) -> np.ndarray:
    """``log Phi(-t)`` for ``t >= 37``, by the asymptotic series (error below 1e-12 there)."""
    s = 1.0 / (t * t)
    series = 1 - s + 3 * s**2 - 15 * s**3 + 105 * s**4
    log_tail: np.ndarray = -0.5 / s - np.log(t) - 0.5 * math.log(2 * math.pi) + np.log(series)
    return log_tail


def _far_tail(rng: np.random.Generator, low: float, high: float, size: tuple[int, ...]) -> np.ndarray:
    """N(0, 1) restricted to [low, high], both below -37: the inverse CDF in log space."""
    near, far = -high, min(-low, 1e150)  # beyond 1e150 std the CDF is exp(-1e300): nothing
    log_near = _log_lower_tail(np.float64(near))
    ratio = np.exp(_log_lower_tail(np.float64(far)) - log_near)  # Phi(low) / Phi(high)
    with np.errstate(divide="ignore"):
        target = log_near + np.log(ratio + rng.random(size) * (1 - ratio))  # log of Phi(x)
    # Solve log Phi(-t) = target for t: a fixed point for the start, then Newton steps.
    t = np.sqrt(np.maximum(-2 * target, near * near))
    for _ in range(3):
        t = np.sqrt(np.maximum(-2 * (target + np.log(t) + 0.5 * math.log(2 * math.pi)), near * near))
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(3):
            log_tail = _log_lower_tail(t)
            slope = np.exp(-0.5 * t * t - 0.5 * math.log(2 * math.pi) - log_tail)  # -d/dt log Phi(-t)
            t = t + (log_tail - target) / slope
    tail: np.ndarray = np.clip(-np.nan_to_num(t, nan=near, posinf=far), low, high)
    return tail


def _within(x: np.ndarray, low: float, high: float, dtype: np.dtype, open_high: bool) -> np.ndarray:
    """``x`` (float64) clamped so that rounding it to ``dtype`` keeps it in the support.

    Rounding to nearest is monotone, so clamping to the dtype's own numbers inside the
    support is enough: U[low, high) never returns ``high`` and a truncated normal never
    leaves its closed bounds, in float16 as in float64.
    """
    floor = np.array(low, dtype=dtype)
    if float(floor) < low:
        floor = np.nextafter(floor, np.array(np.inf, dtype=dtype))
    ceiling = np.array(high, dtype=dtype)
    if float(ceiling) > high or (open_high and float(ceiling) == high):
        ceiling = np.nextafter(ceiling, np.array(-np.inf, dtype=dtype))
    # Clamped in float64 and rounded once, straight into an array of the output dtype.
    within: np.ndarray = np.clip(
        x, float(floor), float(ceiling), out=x if x.dtype == dtype else np.empty(x.shape, dtype)
    )
    return within


def _times(z: np.ndarray, factor: float, dtype: np.dtype) -> np.ndarray:
    """``z * factor`` computed in float64 and rounded once to ``dtype`` (one pass)."""
    scaled: np.ndarray = np.multiply(z, factor, out=z if z.dtype == dtype else np.empty(z.shape, dtype))
    return scaled


def _variance_scaled(
    spec: VarianceScaling,
    rng: np.random.Generator,
    shape: tuple[int, ...],
    fans: tuple[int, int],
    dtype: np.dtype,
) -> np.ndarray:
    distribution, number = spec.law(*fans)
    if distribution == "uniform":
        return _within(_uniform(rng, -number, number, shape), -number, number, dtype, open_high=True)
    if distribution == "untruncated_normal":
        return _times(rng.standard_normal(shape), number, dtype)
    x = _truncated_standard(rng, -2.0, 2.0, shape)
    x *= number
    return _within(x, -2 * number, 2 * number, dtype, open_high=False)


def _uniform(rng: np.random.Generator, low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
    # rng.uniform's own formula, low + (high - low) * u, without its temporaries.
    x = rng.random(shape)
    x *= high - low
    x += low
    return x


def _mixture(
    spec: Mixture,
    rng: np.random.Generator,
    shape: tuple[int, ...],
    fans: Any,
    dtype: np.dtype,
    path: str | None = None,
    origin: tuple[int, ...] | None = None,
) -> np.ndarray:
    """One float64 uniform per element picks the component whose weight interval holds it.
    Elementwise components then draw just as many values as they were picked, in order; a
    component that needs the whole tensor (orthogonal, ...) is drawn whole and masked."""
    from .stream import is_elementwise

    weights = np.array([w for w, _ in spec.components], dtype=np.float64)
    if not all(is_elementwise(s) for w, s in spec.components if w > 0):
        choice = rng.choice(len(weights), size=shape, p=weights / weights.sum())
        out = np.empty(shape)
        for i, (_, component) in enumerate(spec.components):
            draw = _draw(component, rng, shape, fans, dtype, path, origin)
            mask = choice == i
            out[mask] = draw[mask]
        return out
    u = rng.random(shape)
    picked = np.searchsorted(np.cumsum(weights)[:-1], u, side="right")
    out = u  # every element is overwritten below
    for i, (weight, component) in enumerate(spec.components):
        if weight <= 0:
            continue
        mask = picked == i
        if isinstance(component, Constant):
            out[mask] = component.value
            continue
        count = int(np.count_nonzero(mask))
        if count:
            out[mask] = _draw(component, rng, (count,), fans, dtype, path)
    return out


def _orthogonal(spec: Orthogonal, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    rows = shape[0]
    cols = math.prod(shape) // rows
    flat = rng.standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    # The sign fix makes the result Haar-distributed (QR alone is not unique).
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return spec.gain * q.reshape(shape)


def _dirac(spec: Dirac, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape)
    per_group = shape[0] // spec.groups
    centre = tuple(k // 2 for k in shape[2:])
    for g in range(spec.groups):
        for d in range(min(per_group, shape[1])):
            spot = (g * per_group + d, d, *centre)
            out[spot] = 1.0
    return out


def _sparse(spec: Sparse, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    rows, cols = shape
    out = spec.std * rng.standard_normal(shape)
    zeros_per_column = math.ceil(spec.sparsity * rows)
    if zeros_per_column:
        # A uniformly random set of rows per column: the first k of a random permutation.
        picked = np.argsort(rng.random(shape), axis=0, kind="stable")[:zeros_per_column]
        out[picked, np.arange(cols)[None, :]] = 0.0
    return out


def _draw(
    spec: Spec,
    rng: np.random.Generator,
    shape: tuple[int, ...],
    fans: Any,
    dtype: np.dtype,
    path: str | None = None,
    origin: tuple[int, ...] | None = None,
) -> np.ndarray:
    if isinstance(spec, Constant):
        return np.full(shape, spec.value)
    if isinstance(spec, Uniform):
        return _within(_uniform(rng, spec.low, spec.high, shape), spec.low, spec.high, dtype, open_high=True)
    if isinstance(spec, Normal):
        x = rng.standard_normal(shape)
        if spec.mean == 0:
            return _times(x, spec.std, dtype)
        x *= spec.std
        x += spec.mean
        return x
    if isinstance(spec, TruncatedNormal):
        x = _truncated_standard(rng, spec.low, spec.high, shape)
        x *= spec.std
        x += spec.mean
        return _within(
            x, spec.mean + spec.low * spec.std, spec.mean + spec.high * spec.std, dtype, open_high=False
        )
    if isinstance(spec, WithAxes):
        return _draw(spec.spec, rng, shape, fans, dtype, path, origin)  # the fans came from its axes
    scaled = spec.as_variance_scaling()
    if scaled is not None:
        return _variance_scaled(scaled, rng, shape, fans, dtype)
    if isinstance(spec, Orthogonal):
        return _orthogonal(spec, rng, shape)
    if isinstance(spec, Eye):
        return np.eye(shape[0], shape[1])
    if isinstance(spec, Dirac):
        return _dirac(spec, shape)
    if isinstance(spec, Sparse):
        return _sparse(spec, rng, shape)
    if isinstance(spec, Mixture):
        return _mixture(spec, rng, shape, fans, dtype, path, origin)
    if isinstance(spec, Custom):
        return call_law(spec, rng, shape, dtype, path, origin=origin)
    raise SpecError(f"spec={shown(spec)} is not allowed; it is not a multiinit spec")


# --------------------------------------------------------------------------- user laws, fenced


def _named(
    spec: Custom, path: str | None, shape: tuple[int, ...], origin: Sequence[int] | None
) -> tuple[str, str]:
    """The law's name for a message, and the tile it failed on ("" for a call on the whole)."""
    at = f" at {shown(path)}" if path is not None else ""
    where = "" if origin is None else f" for the tile at {tuple(int(i) for i in origin)} of shape {shape}"
    return f"custom law {shown(spec.name)}{at}", where


def call_law(
    spec: Custom,
    rng: np.random.Generator,
    shape: Sequence[int],
    dtype: Any = "float32",
    path: str | None = None,
    *,
    place: Callable[[np.ndarray, np.dtype], np.ndarray] | None = None,
    origin: Sequence[int] | None = None,
) -> np.ndarray:
    """Run a user law (``custom``) behind a fence: the one way every backend calls one.

    Calls ``spec.fn(rng, shape, dtype)`` with ``shape`` a tuple of ints in logical
    ``(out, in, *spatial)`` layout and ``dtype`` a ``numpy.dtype`` (float16, float32 or
    float64), and returns the result as a NumPy array of exactly ``shape`` and ``dtype`` whose
    values are all finite. Anything else is a ``LawError`` that names the law (its registered
    name) and ``path`` (the parameter path, when given; adapters pass it):

    * the function raises an ``Exception``: a ``LawError`` that repeats the exception's type
      and message and chains it (``__cause__``); ``KeyboardInterrupt``, ``SystemExit`` and
      other ``BaseException``s are not caught;
    * the result is not something NumPy reads as an array, or its dtype is not numbers
      (bool, complex, strings, objects): ``LawError``;
    * its shape is not ``shape``: ``LawShapeError`` (a ``LawError`` and a ``ShapeError``),
      with the shape received and the shape expected;
    * a value is NaN or infinite, or too large for ``dtype`` (it would become inf): ``LawError``
      with how many and the index of the first.

    ``place(result, dtype)``, when given, makes the returned array from the law's result (of
    ``shape``, numbers) instead of ``numpy.asarray(result, dtype)``: an adapter's copy into its
    own layout, casting on the way, so the result is copied once; the finiteness check runs on
    what it returns.

    ``origin``, when given, says that ``shape`` is one tile of a larger tensor (an
    ``elementwise`` law drawn tile by tile) starting at that index: every message then names the
    tile, and a bad value's index is given in the whole tensor.

    It writes nothing: call it before touching a parameter, and a failing law leaves the model
    as it was. A bad ``spec``, ``shape`` or ``dtype`` is the caller's mistake, not the law's:
    ``SpecError`` or ``ShapeError``.

    >>> import multiinit as mi
    >>> law = mi.custom(lambda rng, shape, dtype: rng.uniform(-1, 1, shape), name="doc_sym")
    >>> call_law(law, np.random.default_rng(0), (2, 3), "float32", path="head.weight").dtype
    dtype('float32')
    >>> nan = mi.custom(lambda rng, shape, dtype: np.full(shape, np.nan), name="doc_nan")
    >>> call_law(nan, np.random.default_rng(0), (2,), path="head.bias")
    Traceback (most recent call last):
    ...
    multiinit.errors.LawError: custom law 'doc_nan' at 'head.bias' returned 2 NaN values (the first at index (0,)); a custom function must return finite numbers
    """  # noqa: E501 - doctest output lines, as printed
    if not isinstance(spec, Custom):
        raise SpecError(f"spec={shown(spec)} is not allowed; call_law runs a custom spec (mi.custom)")
    return _fenced(spec, rng, _shape(shape), _dtype(dtype), path, place, origin)


def _fenced(
    spec: Custom,
    rng: np.random.Generator,
    shape: tuple[int, ...],
    resolved: np.dtype,
    path: str | None,
    place: Callable[[np.ndarray, np.dtype], np.ndarray] | None,
    origin: Sequence[int] | None,
) -> np.ndarray:
    """``call_law`` once its arguments are checked: what each tile of a ``law_values`` call
    runs, so a tile costs its law and the copy, not the checks of arguments already checked,
    nor the words of a message it does not raise (2-5% of the seed chapter's law on 256 tiles)."""
    try:
        result = spec.fn(rng, shape, resolved)
    except Exception as err:
        law, where = _named(spec, path, shape, origin)
        tile = f" ({where.strip()})" if where else ""
        raise LawError(f"{law} raised {type(err).__name__}: {_message(err)}{tile}") from err
    try:
        array = _as_array(result)
    except Exception as err:
        law, where = _named(spec, path, shape, origin)
        raise LawError(
            f"{law} returned {shown(result)}{where}, which NumPy cannot read as an array; "
            "a custom function must return an array of numbers"
        ) from err
    if array.shape != shape:
        law, where = _named(spec, path, shape, origin)
        raise LawShapeError(
            f"{law} returned an array of shape {array.shape} {where.strip() or f'for shape {shape}'}; "
            "a custom function must return exactly the shape it is given"
        )
    if array.dtype.kind not in "iuf":
        law, where = _named(spec, path, shape, origin)
        raise LawError(
            f"{law} returned dtype {array.dtype}{where}; a custom function must return numbers "
            "(integers or floats)"
        )
    from . import host as _host  # here, not at import: host brings the thread pool (stream)

    # One pass over the result in its final dtype: NaN and inf stay non-finite through the cast,
    # and values too large for it become inf. Which of the three it was is found only on failure.
    if place is None:
        out, finite = _host.finite_cast(array, resolved)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            out = place(array, resolved)
        finite = _host.all_finite(out)
    if finite:
        return out
    law, where = _named(spec, path, shape, origin)
    if array.dtype.kind == "f":
        for test, what in ((np.isnan, "NaN"), (np.isinf, "infinite")):
            bad = test(array)
            if bad.any():
                raise LawError(
                    f"{law} returned {int(bad.sum())} {what} values{where} (the first at index "
                    f"{_shifted(_first(bad), origin)}); a custom function must return finite numbers"
                )
    with np.errstate(over="ignore", invalid="ignore"):
        first = _first(~np.isfinite(np.asarray(array, dtype=resolved)))
    raise LawError(
        f"{law} returned values too large for {resolved.name}{where} (largest "
        f"{float(np.finfo(resolved).max):.6g}; {float(array[first]):.6g} at index "
        f"{_shifted(first, origin)}); a custom function must return finite numbers that "
        f"{resolved.name} holds"
    )


def law_values(
    spec: Custom,
    key: Sequence[int],
    shape: Sequence[int],
    dtype: Any = "float32",
    path: str | None = None,
    *,
    place: Callable[[np.ndarray, np.dtype], np.ndarray] | None = None,
    out: np.ndarray | None = None,
    box: Sequence[slice] | None = None,
) -> np.ndarray:
    """A user law's values for the logical ``shape`` (or its region ``box``) from the stream
    ``key`` (ints >= 0): what every adapter draws for a ``custom`` spec, fenced as
    ``call_law`` fences it.

    A law called once (the default, or a tensor of one tile) gets
    ``numpy.random.default_rng(key)``, the generator ``key`` always gave, and ``place`` as
    ``call_law`` takes it; ``box`` then takes its part of the whole. An ``elementwise=True``
    law over more than one tile of the stream rule is called once per tile that meets ``box``
    (default: all), each with its own generator (the stream rule's, as ``multiinit.stream``
    gives it), on the pool's threads, so a shard costs its own tiles only. Each tile is fenced and
    written into ``out`` (a writable array of the region's shape and ``dtype``: an adapter
    passes a view of its own buffer, in the logical layout, so the tiles land in its layout
    with no further copy) or, without ``out``, into a new array; ``place`` is not used on that
    path. A failing tile raises its ``LawError`` once every tile has ended, and ``out`` may
    then be partly written: pass a buffer that is not yet a parameter's.

    >>> import multiinit as mi
    >>> law = mi.custom(lambda rng, shape, dtype: rng.random(shape), name="doc_tiles", elementwise=True)
    >>> whole = law_values(law, (0, 1), (2048, 2048))
    >>> part = law_values(law, (0, 1), (2048, 2048), box=(slice(0, 1024), slice(0, 2048)))
    >>> bool((whole[:1024] == part).all())
    True
    """
    from . import stream

    if not isinstance(spec, Custom):
        raise SpecError(f"spec={shown(spec)} is not allowed; law_values runs a custom spec (mi.custom)")
    shape = _shape(shape)
    region = stream._full_box(shape, box)
    grid = stream.tiling(shape)
    if not spec.elementwise or len(grid) <= 1:
        values = call_law(spec, np.random.default_rng([int(k) for k in key]), shape, dtype, path, place=place)
        if box is not None:
            values = values[region]
        if out is None:
            return values
        out[...] = values
        return out
    resolved = _dtype(dtype)
    target = np.empty(tuple(s.stop - s.start for s in region), dtype=resolved) if out is None else out

    def job(tile: stream.Tile) -> Callable[[], None]:
        def run() -> None:
            rng = stream.tile_rng(key, tile.index)
            origin = tuple(b.start for b in tile.box)
            part = stream.meet(tile.box, region)
            into = target[stream.shift(part, region)]
            if part == tile.box:
                # The fence casts the tile straight into its place (one pass, no temporary)
                # and checks what landed there.
                _fenced(spec, rng, tile.shape, resolved, path, lambda a, d: _copied(into, a), origin)
                return
            # A tile the region cuts is checked whole, as every other shard of it is.
            whole = _fenced(spec, rng, tile.shape, resolved, path, None, origin)
            into[...] = whole[stream.shift(part, tile.box)]

        return run

    stream.run_parallel(job(tile) for tile in grid.tiles(region))
    return target


def _copied(into: np.ndarray, values: np.ndarray) -> np.ndarray:
    if values.dtype != into.dtype and not into.flags.c_contiguous:
        # A tile of a Keras or Flax kernel lands through a transposed view: casting first,
        # while the tile is in cache, leaves that strided copy the destination's narrower
        # values to move (a float64 tile into float32: 6% of a 4096x4096 custom draw in Keras).
        values = values.astype(into.dtype)
    np.copyto(into, values, casting="unsafe")
    return into


def _as_array(result: Any) -> np.ndarray:
    if type(result) is np.ndarray:  # what a NumPy law returns: nothing to convert, nothing to warn
        return result
    # NumPy 1.x warns, then makes an object array of a ragged list (refused by the caller).
    # catch_warnings swaps the process's filter list, so two threads inside it at once (the
    # tiles of an elementwise law) could leave one's "ignore" filter there for good: one at
    # a time.
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", _RAGGED)
        return np.asarray(result)


_WARNINGS_LOCK = threading.Lock()
_RAGGED = cast(
    "type[Warning]",
    getattr(getattr(np, "exceptions", None), "VisibleDeprecationWarning", None)
    or getattr(np, "VisibleDeprecationWarning", Warning),
)


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _shifted(index: tuple[int, ...], origin: Sequence[int] | None) -> tuple[int, ...]:
    """``index`` within a tile as an index of the whole tensor (the tile starts at ``origin``)."""
    if origin is None:
        return index
    return tuple(i + int(o) for i, o in zip(index, origin, strict=True))


def _message(err: BaseException) -> str:
    try:
        return shorten(str(err), 400, 100)
    except Exception:  # noqa: BLE001 - an exception whose str() fails
        return f"<{type(err).__name__} whose message cannot be shown>"


def _key(seed: Any) -> tuple[int, ...]:
    """A stream key from an int seed or a tuple of ints (all >= 0), or a SpecError."""
    parts = seed if isinstance(seed, tuple) and seed else (seed,)
    if all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 0 for k in parts):
        return tuple(int(k) for k in parts)
    raise SpecError(
        f"seed={shown(seed)} is not allowed; seed must be an integer >= 0, a tuple of them such as "
        "(seed, order), or a numpy.random.Generator"
    )


def sample(
    spec: Spec,
    shape: Sequence[int],
    seed: int | tuple[int, ...] | np.random.Generator = 0,
    dtype: Any = "float32",
    fans: tuple[int, int] | None = None,
    *,
    path: str | None = None,
) -> np.ndarray:
    """Draw ``spec`` for a logical ``shape``; the same seed always gives the same array.

    An int seed ``s`` (or a tuple of ints, a stream key) draws the portable stream of
    ``multiinit.stream``: the tensor cut into tiles, each from its own stream, so any part of
    it can be computed alone. ``mi.apply(..., portable=True, seed=s)`` writes, into the
    parameter at position ``order``, ``sample(spec, logical_shape, seed=(s, order))``. A
    ``numpy.random.Generator`` draws the whole tensor from that one generator instead.

    ``path`` names the parameter in error messages (a user law's ``LawError`` included).
    Values that ``dtype`` cannot hold are refused (``SpecError`` naming the spec), never
    returned as infinities.

    >>> from multiinit import normal
    >>> a = sample(normal(std=0.01), (4, 3), seed=7)
    >>> bool((a == sample(normal(std=0.01), (4, 3), seed=7)).all()), a.dtype
    (True, dtype('float32'))
    """
    from . import stream

    if not isinstance(spec, Spec):
        raise SpecError(f"spec={shown(spec)} is not allowed; spec must be a multiinit spec")
    shape = _shape(shape)
    resolved = _dtype(dtype)
    check_shape(spec, shape, fans, path)
    key = None if isinstance(seed, np.random.Generator) else _key(seed)
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype=resolved)
    used_fans = fans_for(spec, shape, fans, path) if spec.uses_fans else None
    where = f"{_where(path)} of shape {shape}" + (f" (fans {used_fans})" if used_fans else "")
    top = float(np.finfo(resolved).max)
    try:
        reaches = [(_reach(leaf, used_fans), leaf) for leaf in _leaves(spec)]
    except SpecError as e:  # a variance scale too large for these fans (VarianceScaling.law)
        raise SpecError(f"{shown(spec)} cannot fill {where}: {e}") from None
    for (reach, exact), leaf in reaches:
        if exact and reach > top:
            # A bounded law whose support the dtype cannot hold: refused before drawing.
            raise SpecError(_too_large(spec, leaf, reach, resolved, where))
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused just below
            if key is not None:
                out = stream.draw(spec, shape, key, dtype=resolved, fans=used_fans, path=path)
            else:
                # key is None for a Generator seed only.
                out = _draw_checked(spec, cast(np.random.Generator, seed), shape, used_fans, resolved, path)
    except MemoryError as err:
        raise ShapeError(
            f"{shown(spec)} cannot fill {where}: {math.prod(shape)} values of {resolved.name} do not "
            "fit in this process's memory"
        ) from err
    if not np.isfinite(out).all():
        reach, leaf = max(((r, node) for (r, _), node in reaches), key=lambda pair: pair[0])
        raise SpecError(_too_large(spec, leaf, reach, resolved, where))
    return out


def _draw_checked(
    spec: Spec,
    rng: np.random.Generator,
    shape: tuple[int, ...],
    fans: Any,
    dtype: np.dtype,
    path: str | None = None,
    origin: tuple[int, ...] | None = None,
) -> np.ndarray:
    """``spec``'s law for ``shape`` from ``rng``, in ``dtype`` (checks already made; ``fans``
    are the whole tensor's, also when ``shape`` is one tile of it, which starts at ``origin``)."""
    return np.asarray(_draw(spec, rng, shape, fans, dtype, path, origin), dtype=dtype)


#: The parameters that set how large a law's values get, for messages.
_SCALE = {
    Constant: "value",
    Uniform: "low and high",
    Normal: "mean and std",
    TruncatedNormal: "mean and std",
    Orthogonal: "gain",
    Sparse: "std",
}


def _leaves(spec: Spec) -> Iterator[Spec]:
    """The specs that draw values: a mixture's components of weight > 0, at every level."""
    if isinstance(spec, Mixture):
        for weight, component in spec.components:
            if weight > 0:
                yield from _leaves(component)
    else:
        yield spec


def _reach(spec: Spec, fans: Any) -> tuple[float, bool]:
    """How large ``spec``'s values get: ``(bound, True)`` for a bounded law, ``(typical
    extreme, False)`` for a normal one (8 std), ``(0, True)`` for laws that cannot overflow."""
    if isinstance(spec, Constant):
        return abs(spec.value), True
    if isinstance(spec, Uniform):
        return max(abs(spec.low), abs(spec.high)), True
    if isinstance(spec, Normal):
        return abs(spec.mean) + 8 * spec.std, False
    if isinstance(spec, TruncatedNormal):
        return max(abs(b) for b in spec.bounds), True
    if isinstance(spec, Orthogonal):
        return spec.gain, True
    if isinstance(spec, Sparse):
        return 8 * spec.std, False
    vs = spec.as_variance_scaling()
    if vs is not None:
        distribution, number = vs.law(*fans)
        if distribution == "uniform":
            return number, True
        if distribution == "truncated_normal":
            return 2 * number, True
        return 8 * number, False
    return 0.0, True  # eye, dirac: ones; custom: checked by call_law


def _too_large(spec: Spec, leaf: Spec, reach: float, dtype: np.dtype, where: str) -> str:
    params = leaf._params()
    scale = _SCALE.get(type(leaf)) or ("gain" if "gain" in params else "scale")
    part = "" if leaf is spec else f" (its component {shown(leaf)})"
    reaches = f"reach about {reach:.4g}" if math.isfinite(reach) else "overflow even in float64"
    return (
        f"{shown(spec)}{part} cannot fill {where} in {dtype.name}: its values {reaches}, beyond the "
        f"largest {dtype.name} ({float(np.finfo(dtype).max):.6g}); its {scale} must be smaller, "
        "or the dtype wider"
    )


def compile(spec: Spec) -> Any:
    """The ``"numpy"`` backend: ``fn(shape, seed=0, dtype="float32", fans=None) -> ndarray``.

    >>> from multiinit import zeros
    >>> compile(zeros())((2,)).tolist()
    [0.0, 0.0]
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec")

    def draw(
        shape: Sequence[int],
        seed: int | np.random.Generator = 0,
        dtype: Any = "float32",
        fans: tuple[int, int] | None = None,
    ) -> np.ndarray:
        return sample(spec, shape, seed=seed, dtype=dtype, fans=fans)

    draw.spec = spec  # type: ignore[attr-defined]
    return draw
