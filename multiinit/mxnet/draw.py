"""Drawing: a multiinit spec's values written into an MXNet array (part of ``multiinit.mxnet``).

``fill(arr, spec, view, fans, seed, path)`` writes ``spec`` into ``arr`` (an MXNet array of the
view's native shape), and ``check_dtype`` says beforehand whether it can. The initializer
(``compiled.py``) and ``apply`` (``model.py``) both write through ``fill``; which seed each call
gets is theirs to say. Laws MXNet has no sampler for are drawn by ``host.py``.

Decisions (each one tested in ``tests/test_mxnet_*.py``):

Seeds (MXNet has one global generator per device and no way to read its state)
    * ``seed=None``: every draw uses MXNet's global generator, as ``mx.init`` does, so
      ``mx.random.seed(s)`` makes a program reproducible; uniform, normal and the Xavier
      forms then give exactly the numbers of the matching ``mx.init`` class (drawn with
      ``mx.np``'s samplers in numpy mode, as MXNet's own initializers are there, and, on a
      float32 array, straight into it as they do). A host draw (``host.py``) takes its
      base seed from MXNet's generator.
    * ``seed=<int>`` (for the initializer, ``derive_seed(seed, k)`` on its call k: see
      ``compiled.py``): an array in host memory is drawn by ``host.py`` from that seed, every
      law alike, and MXNet's generator is never touched (NumPy's samplers are also 2-3x
      faster than MXNet's). A device array's uniform and normal laws run MXNet's samplers
      after seeding the device with that seed; the generator is then reseeded with an
      integer drawn from the user's own stream just before, so the user's stream is never
      left at multiinit's seed, and a program seeded with ``mx.random.seed`` stays
      reproducible. Deterministic specs (constants, eye, dirac) never touch any generator.

Laws
    Constants, uniform, normal and the untruncated variance-scaling forms are MXNet's own
    samplers. Orthogonal is QR by LAPACK's LQ factorization (``mx.nd.linalg.gelqf`` of the
    transposed tall matrix, MXNet's fastest factorization here) of a Gaussian drawn by
    ``host.py``, with the sign fix, torch's flattening (rows = out). Everything else
    (truncated normals, mixtures, sparse, eye, dirac, custom) is ``host.py``'s.

Dtypes
    A random law fills float16, float32 and float64 arrays; an integer or boolean array takes
    a deterministic spec (a constant it holds exactly, eye, dirac). A law whose values a
    float dtype cannot hold (``constant(1e5)`` in float16) is refused, as is a dtype NumPy
    does not have (bfloat16). ``SpecError`` names the parameter, before anything is written.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, cast

# multiinit/mxnet/__init__.py has already turned a failing mxnet import into BackendUnavailable.
import mxnet as mx
import numpy as np

from .. import stream
from ..errors import SpecError
from ..fans import LogicalView
from ..spec import (
    Constant,
    Mixture,
    Normal,
    Orthogonal,
    Spec,
    TruncatedNormal,
    Uniform,
    WithAxes,
    is_negative_zero,
)
from . import host

FLOATS = ("float16", "float32", "float64")
_INT31 = 2**31 - 1


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


def base_seed(seed: int | None, ctx: Any) -> int:
    """The base of a host draw: ``seed``, or an integer from MXNet's generator on ``ctx``."""
    return int(seed) if seed is not None else _random_int(ctx)


def _native_law(spec: Spec, fans: tuple[int, int] | None) -> tuple[str, float, float] | None:
    """``(sampler, a, b)`` when MXNet samples ``spec`` itself: uniform(a, b) or normal(a, b)."""
    if isinstance(spec, Uniform):
        return ("uniform", spec.low, spec.high)
    if isinstance(spec, Normal):
        return ("normal", spec.mean, spec.std)
    scaling = spec.as_variance_scaling()
    if scaling is None or not stream.is_elementwise(spec):
        return None
    # A fan-based spec comes with its fans (the shape was checked before).
    distribution, number = scaling.law(*cast("tuple[int, int]", fans))
    if distribution == "uniform":
        return ("uniform", -number, number)
    if distribution == "untruncated_normal":
        return ("normal", 0.0, number)
    return None


def _orthogonal(spec: Orthogonal, shape: tuple[int, ...], dtype: str, ctx: Any, base: int) -> Any:
    """A logical-layout NDArray of ``spec`` on ``ctx``."""
    # torch's flattening: rows = out, cols = the rest. QR of the tall side is the LQ of its
    # transpose (gelqf: a = L Q, so a.T = Q.T L.T); the sign fix makes the result Haar.
    rows = shape[0]
    cols = math.prod(shape) // rows
    work = _work_dtype(dtype)
    a = mx.nd.empty((min(rows, cols), max(rows, cols)), dtype=work, ctx=mx.cpu())
    host.fill_standard_normal(cast(np.ndarray, host.host_view(a)), base)  # a fresh dense CPU array
    if ctx != mx.cpu():
        a = a.as_in_context(ctx)
    q, lower = mx.nd.linalg.gelqf(a)
    q = q * mx.nd.sign(mx.nd.diag(lower)).reshape((-1, 1))
    if rows >= cols:
        q = q.T
    return (spec.gain * q.reshape(shape)).astype(dtype, copy=False)


def _store(arr: Any, value: Any) -> None:
    """``value`` (a legacy NDArray) into ``arr`` (an mx.np array refuses legacy ones)."""
    arr[:] = value.as_np_ndarray() if isinstance(arr, mx.np.ndarray) else value


def _native_in_place(law: tuple[str, float, float], arr: Any, seed: int | None) -> bool:
    """MXNet's sampler straight into ``arr``, as ``mx.init`` does: False, having done nothing,
    when the array is not float32 of the current mode's kind."""
    numpy_array = isinstance(arr, mx.np.ndarray)
    # MXNet's samplers write float32 into `out`; and the sampler must be the current mode's.
    if _dtype_name(arr.dtype) != "float32" or numpy_array != _np_mode():
        return False
    sampler = getattr(mx.np.random if numpy_array else mx.nd.random, law[0])
    with _seeded(seed, arr.ctx):
        sampler(law[1], law[2], arr.shape, out=arr)
    return True


def fill(
    arr: Any,
    spec: Spec,
    view: LogicalView,
    fans: tuple[int, int] | None,
    seed: int | None,
    path: str,
    prepared: np.ndarray | None = None,
) -> None:
    """Write ``spec`` into ``arr``, an MXNet array of ``view.native_shape`` (any context, dense
    or row-sparse), from ``seed`` (None: MXNet's global generator). ``prepared`` is a logical
    array drawn already (a user law's values), written as it is. ``fans`` default to the
    view's (a spec that states its fan axes reads them off the stored shape). The caller
    has checked the shape and the dtype (``check_dtype``).

    >>> import mxnet as mx, multiinit as mi
    >>> from multiinit.fans import LogicalView
    >>> a = mx.nd.zeros((2, 3))
    >>> fill(a, mi.constant(4.0), LogicalView((2, 3)), None, None, "w")
    >>> a.asnumpy().tolist()
    [[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]]
    """
    if math.prod(arr.shape) == 0:
        return
    if isinstance(spec, WithAxes):
        # Its axes index the stored shape (given fans win, as a bias's); then its law draws.
        fans = fans if fans is not None else spec.fans(view.native_shape)
        spec = spec.spec
    if getattr(arr, "stype", "default") != "default":
        # Row-sparse storage: draw dense on the host, then one assignment (MXNet converts).
        dense = mx.nd.zeros(arr.shape, dtype=arr.dtype, ctx=mx.cpu())
        fill(dense, spec, view, fans, seed, path, prepared)
        arr[:] = dense
        return
    if prepared is not None:
        with host.host_target(arr) as out:
            host.write_logical(out, view, prepared)
        return
    if isinstance(spec, Constant):
        arr[:] = spec.value
        if is_negative_zero(spec.value) and np.dtype(arr.dtype).kind == "f":
            mx.nd.negative(arr, out=arr)  # MXNet writes a scalar -0.0 as +0.0
        return
    if spec.uses_fans and fans is None:
        fans = view.fans
    dtype = _dtype_name(arr.dtype)
    law = _native_law(spec, fans)
    # MXNet's own samplers where its numbers are the point (seed=None: mx.init's numbers), or
    # where the host cannot write (a device array); a seeded host array is drawn on the host.
    if law is not None and (seed is None or arr.ctx.device_type not in host.HOST_DEVICES):
        # Elementwise: the layout does not matter, the array is drawn as it is stored.
        if not _native_in_place(law, arr, seed):
            with _seeded(seed, arr.ctx):
                sampler = _uniform if law[0] == "uniform" else _normal
                value = sampler(law[1], law[2], tuple(arr.shape), _work_dtype(dtype), arr.ctx)
            _store(arr, value.astype(dtype, copy=False))
        return
    base = base_seed(seed if spec.random else 0, arr.ctx)
    if isinstance(spec, Orthogonal) and dtype in FLOATS:
        logical = _orthogonal(spec, view.logical_shape, dtype, arr.ctx, base)
        plain = view.is_plain and view.axes == tuple(range(len(view.axes)))
        _store(arr, logical if plain else view.to_native(logical))
        return
    with host.host_target(arr) as out:
        host.fill(spec, out, view, fans, base, path)


# --------------------------------------------------------------------------- dtypes


def _reach(spec: Spec) -> float | None:
    """The largest magnitude a bounded law can take, or None when unbounded or fan-based."""
    if isinstance(spec, Constant):
        return abs(spec.value)
    if isinstance(spec, Uniform):
        return max(abs(spec.low), abs(spec.high))
    if isinstance(spec, TruncatedNormal):
        ends = [spec.mean + b * spec.std for b in (spec.low, spec.high)]
        return max(abs(e) for e in ends) if all(math.isfinite(e) for e in ends) else None
    if isinstance(spec, Mixture):
        reaches = [_reach(s) for w, s in spec.components if w > 0]
        return max((r for r in reaches if r is not None), default=None)
    return None


def check_dtype(spec: Spec, dtype: Any, path: str) -> None:
    """``SpecError`` naming ``path`` when ``spec`` cannot fill an array of ``dtype`` (see the
    module doc); nothing is drawn or written.

    >>> import multiinit as mi
    >>> check_dtype(mi.eye(), "int32", "w")
    >>> check_dtype(mi.normal(), "int32", "w")
    Traceback (most recent call last):
    ...
    multiinit.errors.SpecError: normal() cannot fill 'w': dtype='int32' is not allowed; a random spec draws one of float16, float32, float64
    """  # noqa: E501 - doctest output lines, as printed
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.fields is not None or resolved.kind not in "fiub":
        raise SpecError(
            f"{spec!r} cannot fill {path!r}: its dtype {dtype!r} is not allowed; multiinit fills "
            f"{', '.join(FLOATS)} arrays (integer and boolean ones with constants, eye and dirac)"
        )
    name = resolved.name
    if name in FLOATS:
        reach = _reach(spec)
        top = float(np.finfo(resolved).max)
        if reach is not None and reach > top:
            raise SpecError(
                f"{spec!r} cannot fill {path!r}: its values reach {reach:g}, beyond {name}'s "
                f"largest number {top:g}"
            )
        return
    if spec.random:
        raise SpecError(
            f"{spec!r} cannot fill {path!r}: dtype={name!r} is not allowed; a random spec draws "
            f"one of {', '.join(FLOATS)}"
        )
    if isinstance(spec, Constant):
        value = spec.value
        if resolved.kind == "b":
            ok = value in (0.0, 1.0)
        else:
            info = np.iinfo(resolved)
            ok = float(value).is_integer() and info.min <= value <= info.max
        if not ok:
            raise SpecError(f"{spec!r} cannot fill {path!r}: a {name} array cannot hold {value!r} exactly")


def _dtype_name(dtype: Any) -> str:
    name: str = np.dtype(dtype).name
    return name
