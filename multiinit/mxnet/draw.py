"""Drawing: a multiinit spec's values as MXNet arrays (part of ``multiinit.mxnet``).

``_draw(spec, view, fans, dtype, ctx, seed, path)`` gives a native-layout NDArray of ``spec``
for a parameter seen through its logical view, and ``_fill_in_place(spec, arr, seed)`` writes
the laws MXNet samples natively straight into an array. The initializer (``compiled.py``) and
``apply`` (``model.py``) both draw through these two; which seed each call gets is theirs to say.

Decisions (each one tested in ``tests/test_mxnet_*.py``):

Seeds (MXNet has one global generator per device and no way to read its state)
    * ``seed=None``: every draw uses MXNet's global generator, as ``mx.init`` does, so
      ``mx.random.seed(s)`` makes a program reproducible; uniform, normal and the Xavier
      forms then give exactly the numbers of the matching ``mx.init`` class (drawn with
      ``mx.np``'s samplers in numpy mode, as MXNet's own initializers are there, and, on a
      float32 array, straight into it as they do).
    * ``seed=<int>``: the draw runs after seeding the array's device with that seed (for the
      initializer, ``derive_seed(seed, k)`` on its call k: see ``compiled.py``). The
      generator is then reseeded with an integer drawn from the user's own stream just
      before: the user's stream is never left at multiinit's seed, and a program seeded
      with ``mx.random.seed`` stays reproducible, although its later draws are not the
      ones it would have made without the seeded initialization. Deterministic specs
      (constants, eye, dirac) never touch the generator.

Laws MXNet does not have
    Truncated normals invert the normal CDF on U(Phi(low), Phi(high)) and are clipped to
    the bounds, so values never escape them (float32 when both bounds are within 3 std,
    else float64; a window lying wholly in one tail uses the tail expansion of the normal
    quantile, so a cut at [4, 6] std is as exact as one at [-2, 2]). Orthogonal is QR by
    LAPACK's LQ factorization (``mx.nd.linalg.gelqf`` of the transposed tall matrix) with
    the sign fix, torch's flattening (rows = out). Sparse zeroes the k smallest of a
    uniform key per column (``topk``). A mixture picks per element among full-shape draws
    of its components. A custom spec calls the user's NumPy ``fn(rng, shape, dtype)`` with
    ``numpy.random.default_rng`` seeded by an integer drawn from MXNet's (possibly just
    seeded) generator, so it is reproducible both ways. Everything else draws natively.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

# multiinit/mxnet/__init__.py has already turned a failing mxnet import into BackendUnavailable.
import mxnet as mx
import numpy as np

from ..errors import SpecError
from ..fans import LogicalView
from ..reference import TAIL_BELOW as _P_LOW
from ..reference import TAIL_DENOMINATOR as _D
from ..reference import TAIL_NUMERATOR as _C
from ..reference import sample as _reference_sample
from ..spec import (
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
)

_FLOATS = ("float16", "float32", "float64")
_SQRT2 = math.sqrt(2.0)
# Within this many std on both sides, float32 resolves the normal CDF far below any test.
_FLOAT32_TRUNCATION_LIMIT = 3.0
_INT31 = 2**31 - 1


# Every function here returns a legacy NDArray in logical layout on ``ctx``; the numpy-mode
# conversion happens once, when a value is stored.


def _np_mode() -> bool:
    return bool(mx.util.is_np_array())


def _work_dtype(dtype: str) -> str:
    return "float64" if dtype == "float64" else "float32"


# mx.np's samplers give other numbers than mx.nd's: draw with the one MXNet's own
# initializers use in the current mode, so that the same global seed gives their numbers.


def _uniform(low: float, high: float, shape: tuple[int, ...], dtype: str, ctx: Any) -> Any:
    if _np_mode():
        return mx.np.random.uniform(low, high, size=shape, dtype=dtype, ctx=ctx).as_nd_ndarray()
    return mx.nd.random.uniform(low, high, shape=shape, dtype=dtype, ctx=ctx)


def _normal(mean: float, std: float, shape: tuple[int, ...], dtype: str, ctx: Any) -> Any:
    if _np_mode():
        return mx.np.random.normal(mean, std, size=shape, dtype=dtype, ctx=ctx).as_nd_ndarray()
    return mx.nd.random.normal(mean, std, shape=shape, dtype=dtype, ctx=ctx)


def _random_int(ctx: Any) -> int:
    """An integer in [0, 2**31 - 1) from MXNet's generator on ``ctx``."""
    return int(mx.nd.random.randint(0, _INT31, shape=(1,), ctx=ctx).asscalar())


@contextlib.contextmanager
def _seeded(seed: int | None, ctx: Any) -> Iterator[None]:
    """Draw from ``seed`` on ``ctx``'s generator, then resume the user's stream (see module doc)."""
    if seed is None:
        yield
        return
    resume = _random_int(ctx)
    mx.random.seed(int(seed), ctx=ctx)
    try:
        yield
    finally:
        mx.random.seed(resume, ctx=ctx)


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / _SQRT2)


def _poly(coefficients: Sequence[float], x: Any, monic_tail: bool = False) -> Any:
    out = x * 0 + coefficients[0]
    for c in coefficients[1:]:
        out = out * x + c
    return out * x + 1 if monic_tail else out


def _lower_tail_quantile(p: Any) -> Any:
    """The standard normal quantile of ``p`` < 0.02425 (Acklam's tail form, as the reference)."""
    q = mx.nd.sqrt(-2.0 * mx.nd.log(p))
    return _poly(_C, q) / _poly(_D, q, monic_tail=True)


def _truncated(shape: tuple[int, ...], mean: float, std: float, low: float, high: float,
               dtype: str, ctx: Any) -> Any:
    """N(mean, std**2) cut to [mean + low*std, mean + high*std]; never outside the bounds."""
    flip = low > 0  # work in the lower tail, where the CDF keeps its relative precision
    a, b = (-high, -low) if flip else (low, high)
    lo, hi = _phi(a), _phi(b)
    if hi < _P_LOW:
        # The whole window is in the far tail: 2u - 1 would round to -1 there, so invert
        # the tail directly.
        u = _uniform(lo, hi, shape, "float64", ctx)
        # lo underflows to 0 beyond about 38 std: keep log(u) finite.
        x = _lower_tail_quantile(mx.nd.maximum(u, max(lo, 1e-300)))
    else:
        wide = max(abs(low), abs(high)) > _FLOAT32_TRUNCATION_LIMIT
        work = "float64" if dtype == "float64" or wide else "float32"
        u = _uniform(lo, hi, shape, work, ctx)
        x = _SQRT2 * mx.nd.erfinv(2.0 * u - 1.0)
    x = mx.nd.clip(x, a, b)
    if flip:
        x = -x
    y = (mean + std * x).astype(dtype)
    # Again with the bounds as the output dtype rounds them: the arithmetic may round across.
    return mx.nd.clip(y, mean + low * std, mean + high * std)


def _orthogonal(spec: Orthogonal, shape: tuple[int, ...], dtype: str, ctx: Any) -> Any:
    # torch's flattening: rows = out, cols = the rest. QR of the tall side is the LQ of its
    # transpose (gelqf: a = L Q, so a.T = Q.T L.T); the sign fix makes the result Haar.
    rows = shape[0]
    cols = math.prod(shape) // rows
    work = _work_dtype(dtype)
    a = _normal(0.0, 1.0, (min(rows, cols), max(rows, cols)), work, ctx)
    q, lower = mx.nd.linalg.gelqf(a)
    q = q * mx.nd.sign(mx.nd.diag(lower)).reshape((-1, 1))
    if rows >= cols:
        q = q.T
    return (spec.gain * q.reshape(shape)).astype(dtype)


def _dirac(spec: Dirac, shape: tuple[int, ...], dtype: str, ctx: Any) -> Any:
    out_channels, in_channels, *kernel = shape
    per_group = out_channels // spec.groups
    # Row g*per_group + d has its 1 in column d (d < min(per_group, in)), at the centre k//2.
    channels = mx.nd.tile(mx.nd.eye(per_group, in_channels, dtype=dtype, ctx=ctx), reps=(spec.groups, 1))
    centre = int(np.ravel_multi_index(tuple(k // 2 for k in kernel), kernel))
    spot = mx.nd.one_hot(mx.nd.full((1,), centre, ctx=ctx), depth=math.prod(kernel), dtype=dtype)
    return (channels.reshape((out_channels, in_channels, 1)) * spot.reshape((1, 1, -1))).reshape(shape)


def _sparse(spec: Sparse, shape: tuple[int, ...], dtype: str, ctx: Any) -> Any:
    rows, _ = shape
    values = _normal(0.0, spec.std, shape, _work_dtype(dtype), ctx)
    zeros_per_column = int(math.ceil(spec.sparsity * rows))
    if zeros_per_column:
        # A uniformly random set of rows per column: those whose key is among the k smallest.
        keys = _uniform(0.0, 1.0, shape, "float32", ctx)
        picked = mx.nd.topk(keys, axis=0, k=zeros_per_column, ret_typ="mask", is_ascend=True)
        values = mx.nd.where(picked, mx.nd.zeros_like(values), values)
    return values.astype(dtype)


def _mixture(spec: Mixture, shape: tuple[int, ...], fans: tuple[int, int] | None, dtype: str,
             ctx: Any) -> Any:
    live = [(w, s) for w, s in spec.components if w > 0]
    total = math.fsum(w for w, _ in live)
    # Component i wins where u falls in its slice of [0, 1); applying the wheres from the last
    # to the first makes the smallest such i win, as a categorical draw does.
    u = _uniform(0.0, 1.0, shape, "float32", ctx)
    out = _draw_logical(live[-1][1], shape, fans, dtype, ctx)
    edges = np.cumsum([w / total for w, _ in live])
    for edge, (_, component) in reversed(list(zip(edges[:-1], live[:-1]))):
        out = mx.nd.where(u < float(edge), _draw_logical(component, shape, fans, dtype, ctx), out)
    return out


def _custom(spec: Custom, shape: tuple[int, ...], fans: tuple[int, int] | None, dtype: str,
            ctx: Any) -> Any:
    rng = np.random.default_rng(_random_int(ctx))
    logical = _reference_sample(spec, shape, seed=rng, dtype=dtype, fans=fans)
    return mx.nd.array(logical, dtype=dtype, ctx=ctx)


def _draw_logical(spec: Spec, shape: tuple[int, ...], fans: tuple[int, int] | None, dtype: str,
                  ctx: Any) -> Any:
    """A logical-layout NDArray of ``spec`` (``fans`` already resolved for fan-based specs)."""
    if isinstance(spec, Constant):
        return mx.nd.full(shape, spec.value, dtype=dtype, ctx=ctx)
    work = _work_dtype(dtype)
    if isinstance(spec, Uniform):
        return _uniform(spec.low, spec.high, shape, work, ctx).astype(dtype)
    if isinstance(spec, Normal):
        return _normal(spec.mean, spec.std, shape, work, ctx).astype(dtype)
    if isinstance(spec, TruncatedNormal):
        return _truncated(shape, spec.mean, spec.std, spec.low, spec.high, dtype, ctx)
    scaling = spec.as_variance_scaling()
    if scaling is not None:
        distribution, number = scaling.law(*fans)
        if distribution == "uniform":
            return _uniform(-number, number, shape, work, ctx).astype(dtype)
        if distribution == "untruncated_normal":
            return _normal(0.0, number, shape, work, ctx).astype(dtype)
        return _truncated(shape, 0.0, number, -2.0, 2.0, dtype, ctx)
    if isinstance(spec, Orthogonal):
        return _orthogonal(spec, shape, dtype, ctx)
    if isinstance(spec, Eye):
        return mx.nd.eye(shape[0], shape[1], dtype=dtype, ctx=ctx)
    if isinstance(spec, Dirac):
        return _dirac(spec, shape, dtype, ctx)
    if isinstance(spec, Sparse):
        return _sparse(spec, shape, dtype, ctx)
    if isinstance(spec, Mixture):
        return _mixture(spec, shape, fans, dtype, ctx)
    if isinstance(spec, Custom):
        return _custom(spec, shape, fans, dtype, ctx)
    raise SpecError(f"spec={spec!r} is not allowed; it is not a multiinit spec")  # pragma: no cover


def _to_native(view: LogicalView, logical: Any) -> Any:
    """A logical NDArray in the parameter's native layout (NDArrays reshape and transpose
    like NumPy arrays, so the view's own mapping applies as is)."""
    if view.is_plain and view.axes == tuple(range(len(view.axes))):
        return logical
    return view.to_native(logical)


def _draw(spec: Spec, view: LogicalView, fans: tuple[int, int] | None, dtype: str, ctx: Any,
          seed: int | None, path: str) -> Any:
    """A native-layout NDArray of ``spec`` for ``view``, drawn from ``seed`` (None: global)."""
    if spec.uses_fans and fans is None:
        fans = view.fans
    if dtype not in _FLOATS and spec.random:
        raise SpecError(
            f"{spec!r} cannot fill {path!r}: dtype={dtype!r} is not allowed; a random spec draws "
            f"one of {', '.join(_FLOATS)}"
        )
    work = dtype if dtype in _FLOATS else "float32"
    with _seeded(seed if spec.random else None, ctx):
        logical = _draw_logical(spec, view.logical_shape, fans, work, ctx)
    return _to_native(view, logical).astype(dtype, copy=False)


def _fill_in_place(spec: Spec, arr: Any, seed: int | None) -> bool:
    """Fill ``arr`` directly when the law is one MXNet samples natively (a constant, uniform
    or normal, fan-based ones included), as ``mx.init`` does: no temporary, no copy. Returns
    False, having done nothing, for every other law, dtype or array kind."""
    if isinstance(spec, Constant):
        arr[:] = spec.value
        return True
    numpy_array = isinstance(arr, mx.np.ndarray)
    # MXNet's samplers write float32 into `out`; and the sampler must be the current mode's.
    if _dtype_name(arr.dtype) != "float32" or numpy_array != _np_mode():
        return False
    if isinstance(spec, Uniform):
        law = ("uniform", spec.low, spec.high)
    elif isinstance(spec, Normal):
        law = ("normal", spec.mean, spec.std)
    elif spec.as_variance_scaling() is not None:
        distribution, number = spec.as_variance_scaling().law(*LogicalView(tuple(arr.shape)).fans)
        if distribution == "truncated_normal":
            return False
        law = ("uniform", -number, number) if distribution == "uniform" else ("normal", 0.0, number)
    else:
        return False
    sampler = getattr(mx.np.random if numpy_array else mx.nd.random, law[0])
    with _seeded(seed, arr.context):
        sampler(law[1], law[2], arr.shape, out=arr)
    return True


def _as_stored(value: Any, like: Any) -> Any:
    """``value`` (an NDArray) in the array type of ``like`` (mx.np refuses legacy NDArrays)."""
    if isinstance(like, mx.np.ndarray):
        return value.as_np_ndarray()
    return value


def _dtype_name(dtype: Any) -> str:
    return np.dtype(dtype).name
