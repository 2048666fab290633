"""The NumPy reference: the executable definition of every spec, and the portable stream.

``sample(spec, shape, seed)`` draws in logical ``(out, in, *spatial)`` layout, in float64,
then casts. Every adapter must draw from the law this module draws from (the test matrix
checks it), and portable mode writes exactly these numbers into every framework.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .errors import ShapeError, SpecError
from .fans import OUT_IN, compute_fans
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
    WithAxes,
)

__all__ = ["sample", "check_shape", "fans_for", "compile", "LAYOUT", "truncated_standard_normal"]

#: The reference draws in logical layout.
LAYOUT = OUT_IN

_FLOAT_DTYPES = ("float16", "float32", "float64")


def _shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = (shape,)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise ShapeError(
            f"shape={shape!r} is not allowed; shape must be a sequence of non-negative integers"
        )
    return tuple(int(d) for d in dims)


def _dtype(dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in _FLOAT_DTYPES:
        raise SpecError(
            f"dtype={dtype!r} is not allowed; the NumPy reference draws one of {_FLOAT_DTYPES}"
        )
    return resolved


def _where(path: str | None) -> str:
    return f"{path!r}" if path else "a tensor"


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
            or not all(isinstance(f, (int, np.integer)) and not isinstance(f, bool) and f >= 0 for f in fans)
        ):
            raise SpecError(f"fans={fans!r} is not allowed; fans must be (fan_in, fan_out), two integers >= 0")
        return int(fans[0]), int(fans[1])
    try:
        if isinstance(spec, WithAxes):
            return spec.fans(shape)
        return compute_fans(shape)
    except ShapeError as e:
        raise ShapeError(f"{spec!r} cannot fill {_where(path)} of shape {tuple(shape)}: {e}") from None


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
    """
    shape = _shape(shape)
    if fans is not None:
        fans_for(spec, shape, fans, path)  # validates the override
    problem = _shape_problem(spec, shape, fans)
    if problem:
        raise ShapeError(f"{spec!r} cannot fill {_where(path)} of shape {shape}: {problem}")


# --------------------------------------------------------------------------- the samplers

# Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9,
# far below float32 resolution). NumPy has no erfinv, and the reference must not need SciPy.
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
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
    lo, hi = _phi(low), _phi(high)
    u = lo + (hi - lo) * rng.random(size)
    x = np.clip(_ndtri(u), low, high)
    return -x if flip else x


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
    return np.clip(x, float(floor), float(ceiling))


def _variance_scaled(spec: Spec, rng: np.random.Generator, shape: tuple[int, ...], fans,
                     dtype: np.dtype) -> np.ndarray:
    distribution, number = spec.as_variance_scaling().law(*fans)
    if distribution == "uniform":
        return _within(rng.uniform(-number, number, shape), -number, number, dtype, open_high=True)
    if distribution == "untruncated_normal":
        return number * rng.standard_normal(shape)
    return _within(number * truncated_standard_normal(rng, -2.0, 2.0, shape), -2 * number, 2 * number,
                   dtype, open_high=False)


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
            out[(g * per_group + d, d) + centre] = 1.0
    return out


def _sparse(spec: Sparse, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    rows, cols = shape
    out = spec.std * rng.standard_normal(shape)
    zeros_per_column = int(math.ceil(spec.sparsity * rows))
    if zeros_per_column:
        # A uniformly random set of rows per column: the first k of a random permutation.
        picked = np.argsort(rng.random(shape), axis=0, kind="stable")[:zeros_per_column]
        out[picked, np.arange(cols)[None, :]] = 0.0
    return out


def _draw(spec: Spec, rng: np.random.Generator, shape: tuple[int, ...], fans, dtype: np.dtype) -> np.ndarray:
    if isinstance(spec, Constant):
        return np.full(shape, spec.value)
    if isinstance(spec, Uniform):
        return _within(rng.uniform(spec.low, spec.high, shape), spec.low, spec.high, dtype, open_high=True)
    if isinstance(spec, Normal):
        return spec.mean + spec.std * rng.standard_normal(shape)
    if isinstance(spec, TruncatedNormal):
        x = spec.mean + spec.std * truncated_standard_normal(rng, spec.low, spec.high, shape)
        return _within(x, spec.mean + spec.low * spec.std, spec.mean + spec.high * spec.std, dtype,
                       open_high=False)
    if isinstance(spec, WithAxes):
        return _draw(spec.spec, rng, shape, fans, dtype)  # the fans came from its axes
    if spec.as_variance_scaling() is not None:
        return _variance_scaled(spec, rng, shape, fans, dtype)
    if isinstance(spec, Orthogonal):
        return _orthogonal(spec, rng, shape)
    if isinstance(spec, Eye):
        return np.eye(shape[0], shape[1])
    if isinstance(spec, Dirac):
        return _dirac(spec, shape)
    if isinstance(spec, Sparse):
        return _sparse(spec, rng, shape)
    if isinstance(spec, Mixture):
        weights = np.array([w for w, _ in spec.components])
        choice = rng.choice(len(weights), size=shape, p=weights / weights.sum())
        out = np.empty(shape)
        for i, (_, component) in enumerate(spec.components):
            draw = _draw(component, rng, shape, fans, dtype)
            mask = choice == i
            out[mask] = draw[mask]
        return out
    if isinstance(spec, Custom):
        result = np.asarray(spec.fn(rng, shape, dtype))
        if result.shape != shape:
            raise ShapeError(
                f"{spec!r} returned an array of shape {result.shape} for shape {shape}; "
                "a custom function must return exactly the shape it is given"
            )
        if result.dtype.kind not in "iuf":
            raise SpecError(
                f"{spec!r} returned dtype {result.dtype}; a custom function must return numbers"
            )
        return result
    raise SpecError(f"spec={spec!r} is not allowed; it is not a multiinit spec")


def sample(
    spec: Spec,
    shape: Sequence[int],
    seed: int | np.random.Generator = 0,
    dtype: Any = "float32",
    fans: tuple[int, int] | None = None,
) -> np.ndarray:
    """Draw ``spec`` for a logical ``shape``; the same seed always gives the same array.

    >>> from multiinit import normal
    >>> a = sample(normal(std=0.01), (4, 3), seed=7)
    >>> bool((a == sample(normal(std=0.01), (4, 3), seed=7)).all()), a.dtype
    (True, dtype('float32'))
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec")
    shape = _shape(shape)
    resolved = _dtype(dtype)
    check_shape(spec, shape, fans)
    if isinstance(seed, np.random.Generator):
        rng = seed
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        rng = np.random.default_rng(int(seed))
    else:
        raise SpecError(
            f"seed={seed!r} is not allowed; seed must be an integer >= 0 or a numpy.random.Generator"
        )
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype=resolved)
    used_fans = fans_for(spec, shape, fans) if spec.uses_fans else None
    return np.asarray(_draw(spec, rng, shape, used_fans, resolved), dtype=resolved)


def compile(spec: Spec) -> Any:
    """The ``"numpy"`` backend: ``fn(shape, seed=0, dtype="float32", fans=None) -> ndarray``.

    >>> from multiinit import zeros
    >>> compile(zeros())((2,)).tolist()
    [0.0, 0.0]
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec")

    def draw(shape: Sequence[int], seed: int | np.random.Generator = 0, dtype: Any = "float32",
             fans: tuple[int, int] | None = None) -> np.ndarray:
        return sample(spec, shape, seed=seed, dtype=dtype, fans=fans)

    draw.spec = spec  # type: ignore[attr-defined]
    return draw
