"""Spec -> values in JAX: the laws, planned on the host and drawn by cached jitted kernels.

``_draw(spec, key, view, fans, dtype, path=None)`` fills a native array of
``view.native_shape`` in ``dtype``; the compiled initializer (``compiled.py``) and model-level
apply (``model.py``) both draw through it. ``_draw_jax(call, key, shape, dtype)`` draws what a
``jax.nn.initializers`` call draws, with JAX's arithmetic (the drop-in, ``initializers.py``).
``_any_dtype`` resolves a dtype a compiled initializer is handed (``_dtype``: the float dtypes a
model's parameter is drawn in) and ``_check_dtype`` says whether a spec can fill it.
``_plan(spec, view, fans, dtype)`` and ``_run(family, static, shape, dtype, key, *numbers)``
(compiled once per plan by ``_kernel``) are what ``sharded.py`` draws with too.

Decisions (each one is tested in ``tests/test_flax_*.py``):

The laws
    Exactly the laws of ``multiinit.reference``: ``uniform(low, high)`` is U[low, high) (never
    JAX's U[0, scale)); values are drawn in float32 (float64 for float64) and then rounded to
    the requested dtype, and clamped inward so that a bound stays a bound in every dtype
    (``uniform`` never returns ``high``; a truncated normal never leaves
    ``[mean + low*std, mean + high*std]``, even in bfloat16). Truncated normals with both
    bounds within 4 std use ``jax.random.truncated_normal``; wider or one-sided bounds use the
    inverse normal CDF in the lower tail, as the reference does, because JAX's erf-based
    sampler saturates there (with ``lower=-100``, as torch's ``trunc_normal_(std=0.02)``
    defaults give, it returns the bound itself with probability 2**-23; with ``lower=-inf``
    it returns -3.4e38 as often). Orthogonal flattens as torch does, (out, in * spatial) on the
    logical view, with the QR sign fix; dirac puts the 1 at ``k // 2`` (torch's centre).

JAX's numbers
    Where the law is JAX's, the draw is JAX's: the same primitives in the same order with the
    same scalars (computed in the drawing dtype as ``jax.nn.initializers`` computes them), so
    in float32 and float64 ``mif.glorot_uniform()``, ``mif.he_normal()``, ``mif.normal(0, s)``,
    ``mif.uniform(0, s)``, ``mif.truncated_normal(std=s, low, high)`` (bounds within 4 std),
    ``mif.orthogonal(gain)`` (on a kernel whose out axis is one stored axis) and every other
    variance-scaling spec give, for the same key, exactly the values of the matching
    ``jax.nn.initializers`` call under ``jax.jit``. (JAX's own eager and jitted
    ``variance_scaling(..., "normal")`` differ in the last bit of some values: XLA fuses the
    two multiplications under jit. Here eager calls run the jitted kernel, so they give the
    jitted values.) The drop-in (``_draw_jax``) does the same in every dtype JAX draws in,
    half precisions included.

dtypes
    Random laws fill float32, bfloat16, float16 and float64, and complex64/complex128 where
    the law has JAX's complex form (below). Constants, eye and dirac also fill integer and
    bool arrays (``constant`` only with a value the dtype holds exactly). float64 and
    complex128 need x64 enabled; without it JAX gives float32/complex64, as
    ``jax.nn.initializers`` do. Anything else: ``SpecError`` naming the dtype.

Complex dtypes: JAX's convention
    A complex law has the variance of its real law as ``E|z - mean|**2``, as JAX defines it:
    ``normal(mean, std)`` is ``mean + std * z`` with ``z`` JAX's circular complex normal
    (each part N(0, 1/2)); the variance-scaling family (``xavier_*``, ``kaiming_*``,
    ``glorot_*``, ``he_*``, ``lecun_*``, ``variance_scaling``) is JAX's: ``"uniform"`` a
    uniform *disk* of radius ``sqrt(2 * scale / fan)``, untruncated normals circular,
    truncated normals JAX's complex truncated normal (a circular normal whose modulus is cut
    at 2, rescaled by 0.9531... so that the variance is ``scale / fan``); ``orthogonal`` a
    Haar-distributed (semi-)unitary matrix times ``gain``; ``sparse`` circular normal values;
    ``constant``, ``eye`` and ``dirac`` real values. ``uniform(low, high)`` and a plain
    ``truncated_normal`` have no complex form in JAX (``jax.random.uniform`` and
    ``truncated_normal`` refuse complex dtypes), nor has a ``custom`` NumPy law: those raise
    ``SpecError``. (torch's convention differs: there a uniform law draws each part
    independently; see ``multiinit/torch/draw.py``.)

Keys and jit
    The same key gives the same values, another key other values, and ``jax.jit`` gives the
    values eager mode gives (the keys an initializer accepts: ``compiled.py``). Nothing here
    relies on implicit rank promotion: everything works under
    ``jax.config.update("jax_numpy_rank_promotion", "raise")``.

Speed
    A mixture of uniforms and constants (the seed chapter's law) takes one draw of random
    bits: each element's bits pick its component (thresholds at 2**-32, so the component
    probabilities are exact to float32 resolution and beyond) and, rescaled inside the
    component's share, give a uniform component's value at JAX's own float32 uniform
    resolution (23 bits; more for components wider than 1/2 of the mass, never fewer --
    components under 2**-8 of the mass take the general path). Other mixtures draw every
    component and pick with one draw of bits. ``sparse`` picks its zero rows by a partial
    Fisher-Yates shuffle per column (k steps over the columns at once), not a sort.

Custom NumPy functions (the fence)
    ``custom(fn)`` runs ``fn(rng, logical_shape, dtype)`` on the host behind
    ``multiinit.reference.call_law``: an exception, a wrong shape or dtype, non-finite values
    give a ``LawError`` naming the law (and the parameter path at model level). Eagerly it is
    called directly; under ``jit`` (and ``flax`` ``init`` under ``jit``, ``vmap``,
    ``eval_shape``) it runs through ``jax.pure_callback``, and the error reaching the caller
    (a JAX runtime error) carries the ``LawError`` and the law's name in its message.
    ``rng`` is ``numpy.random.default_rng(SeedSequence(key words))``, so a key always gives
    the same values, eagerly or jitted. ``dtype`` is the requested NumPy dtype, except
    bfloat16, for which ``fn`` is asked for float32 (NumPy's random functions do not know
    bfloat16) and the result is rounded. The fence casts the result while it lays it out
    natively on the host (``host.to_native``: one pass in cache-sized tiles on the pool's
    threads: 0.86-0.92x an eager 4096x4096 call that left XLA to transpose the logical
    array, 0.89-1.11x a jitted one). Under ``vmap`` the callback
    runs once per key (``vmap_method="sequential"``). A law built with ``elementwise=True``
    is called once per tile of the stream rule over the key words, on the pool's threads
    (``reference.law_values``); at model level (``model.py``) its tiles are written straight
    into the native layout on the host.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri as _jax_ndtri

from ..errors import SpecError, SpecTypeError
from ..fans import LogicalView
from ..host import law_native as _law_native
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
    WithAxes,
)

__all__: list[str] = []

_FLOATS = ("bfloat16", "float16", "float32", "float64")
_COMPLEX = ("complex64", "complex128")
_EXACT = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


class DtypeError(SpecError):
    """A dtype the law cannot fill (a ``ValueError``, as JAX's samplers raise for one)."""


class DtypeTypeError(DtypeError, SpecTypeError):
    """Not a dtype at all (a ``TypeError`` too, as ``jnp.dtype`` raises for one)."""


#: Both truncation bounds within this many std: JAX's erf-based sampler is accurate there.
_ERF_SAFE = 4.0

#: Both truncation bounds beyond this many std (float32, float64 draws): the normal has less
#: mass outside than the dtype resolves (2e-9 < 2**-24 beyond 6; 2e-19 < 2**-53 beyond 9), and
#: JAX's normal sampler does not reach that far, so the truncated law is a normal draw, clamped
#: to the bounds (torch's trunc_normal_(std=0.02) defaults cut at 100 std).
_NORMAL_REACH = {"float32": 6.0, "float64": 9.0}

#: JAX's constants (jax/_src/nn/initializers.py): the std of a standard normal truncated to
#: [-2, 2], and of a circular complex normal whose modulus is truncated to 2.
_TRUNCATED_STD = 0.87962566103423978
_COMPLEX_TRUNCATED_STD = 0.95311164380491208


# --------------------------------------------------------------------------- dtypes


def _any_dtype(dtype: Any) -> np.dtype:
    """The dtype JAX will produce for ``dtype`` (float64 -> float32 without x64): a bool,
    integer, float or complex dtype JAX arrays hold, or a ``DtypeTypeError`` naming it. What a
    compiled initializer takes; which laws fill which: ``_check_dtype``."""
    if dtype is None:
        dtype = float  # JAX's default float: float32, or float64 with x64
    try:
        resolved = np.dtype(jnp.dtype(dtype))
    except (TypeError, ValueError):  # unknown names, malformed ones
        resolved = None
    if resolved is None or resolved.name not in _FLOATS + _COMPLEX + _EXACT:
        raise DtypeTypeError(
            f"dtype={dtype!r} is not allowed; a multiinit flax initializer fills a bool, integer, float "
            f"({', '.join(_FLOATS)}) or complex ({', '.join(_COMPLEX)}) dtype"
        )
    return np.dtype(jax.dtypes.canonicalize_dtype(resolved))


def _dtype(dtype: Any) -> np.dtype:
    """The float dtype JAX will produce for ``dtype`` (float64 -> float32 without x64), or a
    ``SpecError``: the dtypes a parameter of a model is drawn in (``model.py``)."""
    resolved = _any_dtype(dtype)
    if resolved.name not in _FLOATS:
        raise DtypeError(
            f"dtype={dtype!r} is not allowed; a multiinit flax initializer fills one of "
            f"{', '.join(_FLOATS)} here"
        )
    return resolved


def _is_float(dtype: np.dtype) -> bool:
    return dtype.name in _FLOATS


def _is_complex(dtype: np.dtype) -> bool:
    return dtype.kind == "c"


def complex_problem(spec: Spec) -> str | None:
    """Why ``spec`` has no law on a complex array in JAX's convention, or None when it has one.

    >>> import multiinit as mi
    >>> complex_problem(mi.he_normal()) is None, complex_problem(mi.uniform(-1, 1))[:30]
    (True, 'jax.random.uniform draws no co')
    """
    if isinstance(spec, WithAxes):
        return complex_problem(spec.spec)
    if isinstance(spec, Uniform):
        return (
            "jax.random.uniform draws no complex numbers, and a complex uniform on an interval has "
            "no one meaning (JAX's variance-scaling uniform is a disk: mi.variance_scaling(..., "
            "'uniform') has it)"
        )
    if isinstance(spec, TruncatedNormal):
        return (
            "jax.random.truncated_normal draws no complex numbers (JAX's variance-scaling truncated "
            "normal has a complex form: mi.he_normal(), mi.variance_scaling(...) have it)"
        )
    if isinstance(spec, Mixture):
        for weight, component in spec.components:
            problem = complex_problem(component) if weight > 0 else None
            if problem is not None:
                return f"its component {component!r}: {problem}"
        return None
    if isinstance(spec, Custom):
        return "a custom law's NumPy function draws real numbers"
    return None


def _check_dtype(spec: Spec, dtype: np.dtype) -> None:
    """A ``DtypeError`` naming the dtype when ``spec`` cannot fill it."""
    inner = spec.spec if isinstance(spec, WithAxes) else spec
    if _is_float(dtype):
        return
    if _is_complex(dtype):
        problem = complex_problem(inner)
        if problem is not None:
            raise DtypeError(f"dtype={dtype.name} is not allowed for {spec!r}: {problem}")
        return
    if isinstance(inner, (Eye, Dirac)):
        return
    if isinstance(inner, Constant):
        if not _holds(dtype, inner.value):
            raise DtypeError(
                f"dtype={dtype.name} is not allowed for {spec!r}: {dtype.name} cannot hold "
                f"{inner.value!r} exactly (a constant fills an integer or bool array with a value it holds)"
            )
        return
    raise DtypeError(
        f"dtype={dtype.name} is not allowed for {spec!r}; a random law fills {', '.join(_FLOATS)} "
        f"(or {', '.join(_COMPLEX)} where JAX has its complex form)"
    )


def _holds(dtype: np.dtype, value: float) -> bool:
    if dtype.kind == "b":
        return value in (0.0, 1.0)
    info = np.iinfo(dtype)
    return value == math.floor(value) and info.min <= value <= info.max


def _compute_dtype(dtype: np.dtype) -> Any:
    # Half precisions are drawn in float32 and rounded once: JAX's own bfloat16 draws have 7
    # random bits, and the reference's law is the float64 one. Complex draws in their dtype.
    if _is_complex(dtype) or dtype == np.float64:
        return dtype
    return np.dtype(np.float32)


# --------------------------------------------------------------------------- small helpers


def _at_least(value: float, dtype: np.dtype) -> np.ndarray:
    """The smallest ``dtype`` number >= ``value``."""
    x = np.array(value, dtype=dtype)
    if float(x) < value:
        x = np.nextafter(x, np.array(np.inf, dtype=dtype))
    return x


def _at_most(value: float, dtype: np.dtype) -> np.ndarray:
    """The largest ``dtype`` number <= ``value``."""
    x = np.array(value, dtype=dtype)
    if float(x) > value:
        x = np.nextafter(x, np.array(-np.inf, dtype=dtype))
    return x


def _below(value: float, dtype: np.dtype) -> np.ndarray:
    """The largest ``dtype`` number < ``value``."""
    x = _at_most(value, dtype)
    if float(x) == value:
        x = np.nextafter(x, np.array(-np.inf, dtype=dtype))
    return x


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _key_words(key: Any) -> Any:
    """The raw uint32 words of a typed or raw PRNG key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def _scalars(dtype: Any, *values: Any) -> tuple[np.ndarray, ...]:
    """Each value as ``jnp.array(value, dtype)`` holds it (NumPy rounds as JAX does on the host)."""
    return tuple(np.asarray(v, dtype=dtype) for v in values)


def _factor(expression: str | None, v: Any, cdtype: Any) -> Any:
    """The factor a law multiplies by: ``v`` itself, or what ``jax.nn.initializers.variance_scaling``
    computes from ``v = jnp.array(scale / n, dtype)`` -- in the graph, as JAX does, so that XLA
    folds it (or computes it) exactly as in JAX's own jitted initializer."""
    if expression is None:
        return v
    v = jnp.asarray(v)
    if expression == "uniform":
        return jnp.sqrt(3 * v)
    if expression == "normal":
        return jnp.sqrt(v)
    if expression == "truncated":
        return jnp.sqrt(v) / jnp.array(_TRUNCATED_STD, cdtype)
    return jnp.sqrt(v) / jnp.array(_COMPLEX_TRUNCATED_STD, cdtype)  # the complex truncated normal


def _denominator(mode: str, fan_in: float, fan_out: float) -> float:
    """JAX's ``n`` for a mode, with its float arithmetic; an empty fan counts as 1 (as
    ``VarianceScaling.law`` does: nothing is drawn then, but the number stays finite)."""
    if mode == "fan_in":
        n = fan_in
    elif mode == "fan_out":
        n = fan_out
    elif mode == "fan_avg":
        n = (fan_in + fan_out) / 2
    else:
        n = (fan_in * fan_out) ** 0.5
    return n if n > 0 else 1.0


# --------------------------------------------------------------------------- the samplers
#
# A built-in law is planned on the host -- its family, the static facts the compiled code
# depends on, and its numbers -- then drawn by one jitted kernel per (family, static facts,
# shape, dtype), the numbers passed as runtime scalars. Every variance-scaling spec on a shape
# shares the uniform, normal or truncated kernel of that shape, and eager calls run the same
# compiled code as ``jax.jit`` calls (XLA fuses float arithmetic differently from op-by-op
# execution; this way jit gives exactly the eager values).


def _plan_truncated(
    mean: float, std: float, low: float, high: float, dtype: np.dtype, cdtype: np.dtype, clamp: bool = True
) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
    floor, ceiling = _at_least(mean + low * std, dtype), _at_most(mean + high * std, dtype)
    reach = _NORMAL_REACH.get(np.dtype(cdtype).name)
    if reach is not None and low <= -reach and high >= reach:
        return "normal", (mean != 0.0, None, True), (*_scalars(cdtype, std, mean), floor, ceiling)
    if low >= -_ERF_SAFE and high <= _ERF_SAFE:
        numbers = (*_scalars(cdtype, low, high, std, mean), floor, ceiling)
        return "truncated", (mean != 0.0, clamp, None), numbers
    # Inverse CDF in the lower tail (as multiinit.reference), where it keeps its precision.
    sign = 1.0
    if low > 0:
        low, high, sign = -high, -low, -1.0
    numbers = _scalars(cdtype, low, high, _phi(low), _phi(high), sign, mean, std)
    return "tail", (), (*numbers, floor, ceiling)


def _plan_scaled(
    distribution: str,
    mode: str,
    scale: float,
    fan_in: float,
    fan_out: float,
    dtype: np.dtype,
    cdtype: np.dtype,
    bound: float | None,
) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
    """The plan of ``variance_scaling(scale, mode, distribution)`` on these fans: JAX's variance
    in the drawing dtype, its factor computed in the graph (``_factor``); ``bound`` (the law's
    own limit or sigma, in float64) clamps the values inward in ``dtype`` when given."""
    clamp = bound is not None
    variance = np.asarray(scale / _denominator(mode, fan_in, fan_out), dtype=cdtype)
    zero = np.zeros((), cdtype)
    if _is_complex(cdtype):
        if distribution == "uniform":
            return "disk", (), (variance,)
        if distribution == "truncated_normal":
            return "complex_truncated", (), (variance,)
        return "normal", (False, "normal"), (variance, zero)
    if distribution == "uniform":
        bounds = (
            (_at_least(-bound, dtype), _below(bound, dtype)) if bound is not None else _scalars(dtype, 0, 0)
        )
        return "uniform", (clamp, "uniform"), (*_scalars(cdtype, -1.0, 1.0), variance, *bounds)
    if distribution == "untruncated_normal":
        return "normal", (False, "normal"), (variance, zero)
    bounds = (
        (_at_least(-2 * bound, dtype), _at_most(2 * bound, dtype))
        if bound is not None
        else _scalars(dtype, 0, 0)
    )
    return "truncated", (False, clamp, "truncated"), (*_scalars(cdtype, -2.0, 2.0), variance, zero, *bounds)


def _orthogonal_axis(view: LogicalView) -> int | None:
    """The stored axis that is the logical out axis (JAX's ``column_axis``), or None when the
    view is not a plain transpose of one stored array."""
    if view.is_plain and view.batch == 0 and len(view.native_shape) >= 2:
        return view.axes[0]
    return None


def _plan(
    spec: Spec, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype
) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
    """``(family, static, numbers)`` of a built-in law: ``_run(family, static, shape, dtype,
    key, *numbers)`` draws it (``_kernel`` compiles that); ``"spec"`` plans draw the spec."""
    if isinstance(spec, Mixture):
        pieces = _plan_pieces(spec, dtype)
        if pieces is not None:
            return _planned(*pieces, dtype, _compute_dtype(dtype))
        return "spec", (spec, view, fans), ()
    if not spec.random:
        return "spec", (spec, view, fans), ()
    family, static, numbers = _plan_law(spec, view, fans, dtype)
    return (
        (family, static, numbers)
        if family == "spec"
        else _planned(family, static, numbers, dtype, _compute_dtype(dtype))
    )


def _plan_law(
    spec: Spec, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype
) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
    """The inner plan of a built-in random law (the numbers not yet split into baked and run-time ones)."""
    cdtype = _compute_dtype(dtype)
    if isinstance(spec, Uniform):
        # Rounding (to bfloat16 above all) can reach ``high``: U[low, high) must not.
        return (
            "uniform",
            (True, None),
            (
                *_scalars(cdtype, spec.low, spec.high, 1.0),
                _at_least(spec.low, dtype),
                _below(spec.high, dtype),
            ),
        )
    if isinstance(spec, Normal):
        return "normal", (spec.mean != 0.0, None), _scalars(cdtype, spec.std, spec.mean)
    if isinstance(spec, TruncatedNormal):
        return _plan_truncated(spec.mean, spec.std, spec.low, spec.high, dtype, cdtype)
    scaled = spec.as_variance_scaling()
    if scaled is not None:
        fan_in, fan_out = fans if fans is not None else view.fans
        # The law's own numbers: its checks (a number that overflows is the spec's SpecError),
        # and the bounds no value may leave in any dtype.
        _, number = scaled.law(fan_in, fan_out)
        return _plan_scaled(
            scaled.distribution,
            scaled.mode,
            scaled.scale,
            float(fan_in),
            float(fan_out),
            dtype,
            cdtype,
            None if _is_complex(dtype) else number,
        )
    if isinstance(spec, Orthogonal):
        axis = _orthogonal_axis(view)
        if axis is not None:
            return "orthogonal", (view.native_shape, axis), _scalars(cdtype, spec.gain)
        return "orthogonal_logical", (view,), _scalars(cdtype, spec.gain)
    if isinstance(spec, Sparse):
        rows = view.logical_shape[0]
        k = min(rows, math.ceil(spec.sparsity * rows))
        return "sparse", (view, k), _scalars(cdtype, spec.std)
    return "spec", (spec, view, fans), ()


def _jax_uniform(key: Any, shape: tuple[int, ...], cdtype: Any, minval: Any, maxval: Any) -> Any:
    return jax.random.uniform(key, shape, cdtype, minval, maxval)


def _complex_uniform(key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """``jax._src.nn.initializers._complex_uniform``: a uniform disk of unit variance."""
    key_r, key_theta = jax.random.split(key)
    real_dtype = np.array(0, dtype).real.dtype
    r = jnp.sqrt(2 * jax.random.uniform(key_r, shape, real_dtype)).astype(dtype)
    theta = 2 * np.pi * jax.random.uniform(key_theta, shape, real_dtype).astype(dtype)
    return r * jnp.exp(1j * theta)


def _complex_truncated_normal(key: Any, upper: float, shape: tuple[int, ...], dtype: Any) -> Any:
    """``jax._src.nn.initializers._complex_truncated_normal``: modulus cut at ``upper``."""
    key_r, key_theta = jax.random.split(key)
    real_dtype = np.array(0, dtype).real.dtype
    t = (1 - jnp.exp(jnp.array(-(upper**2), dtype))) * jax.random.uniform(key_r, shape, real_dtype).astype(
        dtype
    )
    r = jnp.sqrt(-jnp.log(1 - t))
    theta = 2 * np.pi * jax.random.uniform(key_theta, shape, real_dtype).astype(dtype)
    return r * jnp.exp(1j * theta)


def _jax_orthogonal(key: Any, shape: tuple[int, ...], column_axis: int, cdtype: Any) -> Any:
    """``jax.nn.initializers.orthogonal``'s matrix (before its scale), in ``cdtype``."""
    n_rows, n_cols = math.prod(shape) // shape[column_axis], shape[column_axis]
    q = jax.random.orthogonal(key, n_rows, (), cdtype, n_cols)
    q = jnp.reshape(q, (*np.delete(shape, column_axis), shape[column_axis]))
    return jnp.moveaxis(q, -1, column_axis)


def _baked(
    family: str, dtype: np.dtype, numbers: tuple[Any, ...], always: bool = False
) -> tuple[Any, ...] | None:
    """The numbers as compile-time constants (hashable ``(value, dtype)`` pairs), or None to
    pass them at run time.

    XLA folds constants: a truncated normal's ``erf(lower / sqrt(2))`` and a complex law's
    factors come out of its constant folding, not out of the compiled kernel, in the last bit.
    JAX's own initializers are traced with constants, so to give their values under ``jax.jit``
    those families (and every call of the drop-in, ``always``) are compiled with theirs; the
    other families take their numbers as arguments, one kernel per shape for every spec.
    """
    if not (always or family in ("truncated", "disk", "complex_truncated") or _is_complex(dtype)):
        return None
    return tuple((np.asarray(v).item(), np.asarray(v).dtype) for v in numbers)


def _planned(
    family: str,
    static: tuple[Any, ...],
    numbers: tuple[Any, ...],
    dtype: np.dtype,
    cdtype: Any,
    always_bake: bool = False,
) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
    """A plan ``(family, (cdtype, baked, static), runtime numbers)``: what ``_run`` draws."""
    baked = _baked(family, dtype, numbers, always_bake)
    return family, (np.dtype(cdtype), baked, static), (() if baked is not None else tuple(numbers))


def _run(
    family: str, static: tuple[Any, ...], shape: tuple[int, ...], dtype: np.dtype, key: Any, *numbers: Any
) -> Any:
    """Draw a plan (``_plan``, ``_planned``) traced, inside ``jax.jit``."""
    if family == "spec":
        spec, view, fans = static
        return _draw_traced(spec, key, view, fans, dtype)
    cdtype, baked, static = static
    if baked is not None:
        numbers = tuple(np.asarray(v, dtype=d) for v, d in baked)
    else:
        # Under an outer jit the numbers are constants, which XLA would fold into the arithmetic
        # differently from the eager kernel (where they are arguments): the barrier keeps one program.
        numbers = jax.lax.optimization_barrier(numbers)
    if family == "uniform":
        (clamp, expression), (minval, maxval, factor, floor, ceiling) = static, numbers
        x = (_jax_uniform(key, shape, cdtype, minval, maxval) * _factor(expression, factor, cdtype)).astype(
            dtype
        )
        return jnp.clip(x, floor, ceiling) if clamp else x
    if family == "normal":
        (shifted, expression, *clamped), (std, mean, *bounds) = static, numbers
        x = jax.random.normal(key, shape, cdtype) * _factor(expression, std, cdtype)
        x = (x + mean if shifted else x).astype(dtype)
        return jnp.clip(x, *bounds) if clamped else x
    if family == "truncated":
        (shifted, clamp, expression), (low, high, std, mean, floor, ceiling) = static, numbers
        x = jax.random.truncated_normal(key, low, high, shape, cdtype) * _factor(expression, std, cdtype)
        x = (x + mean if shifted else x).astype(dtype)
        return jnp.clip(x, floor, ceiling) if clamp else x
    if family == "tail":
        low, high, p_low, p_high, sign, mean, std, floor, ceiling = numbers
        u = jax.random.uniform(key, shape, cdtype)
        # jax's uniform is k * 2**-m on [0, 1); the half step makes it open, so ndtri never sees 0.
        u = u + 2.0 ** -((52 if cdtype == np.float64 else 23) + 1)
        z = sign * jnp.clip(_jax_ndtri(p_low + (p_high - p_low) * u), low, high)
        return jnp.clip((mean + std * z).astype(dtype), floor, ceiling)
    if family == "disk":
        (variance,) = numbers
        return (_complex_uniform(key, shape, cdtype) * _factor("normal", variance, cdtype)).astype(dtype)
    if family == "complex_truncated":
        (variance,) = numbers
        return (
            _complex_truncated_normal(key, 2, shape, cdtype) * _factor("complex_truncated", variance, cdtype)
        ).astype(dtype)
    if family == "orthogonal":
        (native, axis), (gain,) = static, numbers
        return (gain * _jax_orthogonal(key, native, axis, cdtype)).astype(dtype)
    if family == "orthogonal_logical":
        (view,), (gain,) = static, numbers
        return view.to_native(gain * _orthogonal(key, view.logical_shape, cdtype)).astype(dtype)
    if family == "delta_orthogonal":
        (native, axis), (scale,) = static, numbers
        return _delta_orthogonal(key, native, axis, scale, cdtype).astype(dtype)
    if family == "sparse":
        (view, k), (std,) = static, numbers
        return _sparse(std, k, key, view, cdtype).astype(dtype)
    if family == "pieces":
        pieces, bits = static
        return _pieces(pieces, bits, key, shape, dtype, cdtype, numbers)
    raise SpecError(f"family={family!r} is not allowed; not a planned law")


@functools.lru_cache(maxsize=512)
def _kernel(
    family: str, static: tuple[Any, ...], shape: tuple[int, ...], dtype: np.dtype
) -> Callable[..., Any]:
    return jax.jit(functools.partial(_run, family, static, shape, dtype))


def _call(
    plan: tuple[str, tuple[Any, ...], tuple[Any, ...]], shape: tuple[int, ...], dtype: np.dtype, key: Any
) -> Any:
    """A plan through its cached kernel: one program, called eagerly or inside a trace (where
    ``jax.jit`` nests it), so jit gives the eager values."""
    family, static, numbers = plan
    return _kernel(family, static, shape, dtype)(key, *numbers)


def _orthogonal(key: Any, logical: tuple[int, ...], cdtype: Any) -> Any:
    """torch's flattening on the logical view: (out, in * spatial), QR of a normal draw with
    the sign (phase) fix, as ``jax.random.orthogonal`` computes it."""
    rows = logical[0]
    cols = math.prod(logical) // rows
    q = jax.random.orthogonal(key, rows, (), cdtype, cols)
    return q.reshape(logical)


def _delta_orthogonal(key: Any, shape: tuple[int, ...], column_axis: int, scale: Any, cdtype: Any) -> Any:
    """``jax.nn.initializers.delta_orthogonal``: ``orthogonal(scale, column_axis)`` of
    ``shape[-2:]`` at the spatial centre ``(k - 1) // 2``, zeros elsewhere."""
    matrix = scale * _jax_orthogonal(key, shape[-2:], column_axis, cdtype)
    centre = tuple((k - 1) // 2 for k in shape[:-2])
    return jnp.zeros(shape, dtype=cdtype).at[centre].set(matrix)


def _dirac(spec: Dirac, logical: tuple[int, ...], cdtype: Any) -> Any:
    out_ch, in_ch = logical[0], logical[1]
    per_group = out_ch // spec.groups
    # Output channel o of group g copies input channel o % per_group (when it exists).
    hit = jnp.arange(in_ch)[None, :] == (jnp.arange(out_ch) % per_group)[:, None]
    for k in logical[2:]:
        centre = jnp.arange(k) == k // 2
        hit = hit[..., None] & centre.reshape((1,) * hit.ndim + (k,))
    return hit.astype(cdtype)


def _sparse(std: Any, k: int, key: Any, view: LogicalView, cdtype: Any) -> Any:
    """torch's sparse law, laid out natively: normal values, and ``k`` zeros in each logical
    column (a Flax ``(in, out)`` kernel's rows: drawn there directly, no transpose)."""
    values_key, rows_key = jax.random.split(key)
    if view.is_plain and view.batch == 0 and view.axes == (1, 0):
        out = std * jax.random.normal(values_key, view.native_shape, cdtype)
        zero = _k_per_row(rows_key, cast("tuple[int, int]", view.native_shape), k)  # sparse is 2-D
    else:
        out = std * jax.random.normal(values_key, view.logical_shape, cdtype)
        zero = _k_rows_per_column(rows_key, cast("tuple[int, int]", view.logical_shape), k)
    if k:
        out = jnp.where(zero, jnp.zeros((), out.dtype), out)
    return out if view.is_plain and view.batch == 0 and view.axes == (1, 0) else view.to_native(out)


def _k_rows_per_column(key: Any, shape: tuple[int, int], k: int) -> Any:
    """A mask with exactly ``k`` True rows in each column, a uniformly random k-subset per column."""
    return _k_per_row(key, (shape[1], shape[0]), k).T


def _k_per_row(key: Any, shape: tuple[int, int], k: int) -> Any:
    """A mask with exactly ``k`` True entries in each row, a uniformly random k-subset per row.

    A partial Fisher-Yates shuffle of every row at once: at step ``i`` each row swaps its
    entry ``i`` with an entry drawn uniformly from ``[i, m)`` (one scatter of two values per
    row, in place); the first ``k`` entries of the shuffled order are the subset. k steps over
    the rows at once, about half the cost of a normal draw of the array, where sorting every
    row costs 10 to 20 normal draws.
    """
    n, m = shape
    if k == 0:
        return jnp.zeros(shape, bool)
    # Row i of ``picks`` is uniform on [i, m): jax.random.randint with per-row bounds.
    picks = jax.random.randint(key, (k, n), jnp.arange(k, dtype=jnp.int32)[:, None], m, dtype=jnp.int32)
    row = jnp.arange(n, dtype=jnp.int32)
    rows = jnp.concatenate([row, row])
    order = jnp.broadcast_to(jnp.arange(m, dtype=jnp.int32)[None, :], (n, m))

    def swap(i: Any, order: Any) -> Any:
        j = picks[i]
        here, there = order[row, i], order[row, j]
        columns = jnp.concatenate([jnp.full((n,), i, jnp.int32), j])
        return order.at[rows, columns].set(jnp.concatenate([there, here]))

    order = jax.lax.fori_loop(0, k, swap, order)
    return jnp.zeros(shape, bool).at[row[:, None], order[:, :k]].set(True)


# --------------------------------------------------------------------------- mixtures


def _live(spec: Mixture) -> list[tuple[float, Spec]]:
    return [(w, s) for w, s in spec.components if w > 0]


def _thresholds(weights: list[float], bits: int) -> list[int]:
    """Integer cut points ``0 = t_0 < ... < t_n = 2**bits`` with ``(t_{i+1} - t_i) / 2**bits``
    the weight of component i to the nearest 2**-bits (a zero-width share is dropped earlier)."""
    total = math.fsum(weights)
    cuts, cumulative = [0], 0.0
    for w in weights[:-1]:
        cumulative += w / total
        cuts.append(min(2**bits, max(cuts[-1], round(cumulative * 2**bits))))
    cuts.append(2**bits)
    return cuts


def _plan_pieces(spec: Mixture, dtype: np.dtype) -> tuple[str, tuple[Any, ...], tuple[Any, ...]] | None:
    """The one-draw plan of a mixture of uniforms and constants in a real float dtype, or None.

    Each piece is ``(kind, start, shift)``: its bits run over ``[start, next start)``; a
    uniform piece's value is ``low + (high - low) * ((bits - start) >> shift) * scale``, where
    ``shift`` keeps 23 bits (52 in float64) or more of the offset.
    """
    if not _is_float(dtype):
        return None
    live = _live(spec)
    if len(live) < 2 or not all(isinstance(s, (Uniform, Constant)) for _, s in live):
        return None
    cdtype = _compute_dtype(dtype)
    bits, mantissa = (64, 52) if cdtype == np.float64 else (32, 23)
    cuts = _thresholds([w for w, _ in live], bits)
    pieces, numbers = [], []
    for (_, component), start, stop in zip(live, cuts[:-1], cuts[1:], strict=True):
        width = stop - start
        if width == 0:
            continue
        if isinstance(component, Constant):
            value = _scalars(dtype, component.value)[0]
            pieces.append(("constant", start, 0))
            numbers += [*_scalars(cdtype, component.value, 0.0, 0.0), value, value]
            continue
        if width < 2 ** (mantissa + 1):
            return None  # too small a share to carry the dtype's resolution: the general path
        component = cast(Uniform, component)  # every live component is a uniform or a constant (above)
        shift = width.bit_length() - 1 - mantissa
        scale = 2.0**shift / width  # offset >> shift is below width / 2**shift: the fraction is < 1
        pieces.append(("uniform", start, shift))
        numbers += [
            *_scalars(cdtype, component.low, component.high - component.low, scale),
            _at_least(component.low, dtype),
            _below(component.high, dtype),
        ]
    return "pieces", (tuple(pieces), bits), tuple(numbers)


def _pieces(
    pieces: tuple[Any, ...],
    bits: int,
    key: Any,
    shape: tuple[int, ...],
    dtype: np.dtype,
    cdtype: np.dtype,
    numbers: tuple[Any, ...],
) -> Any:
    """One draw of random bits per element: the piece it falls in, and the value there."""
    udtype = jnp.uint64 if bits == 64 else jnp.uint32
    r = jax.random.bits(key, shape, udtype)
    # Going through the pieces in order, each one that has started takes over: only scalars
    # are selected per element, then one expression gives the value.
    start = jnp.zeros((), udtype)
    shift = jnp.zeros((), udtype)
    low, width, scale, floor, ceiling = numbers[0:5]
    for i, (_, piece_start, piece_shift) in enumerate(pieces):
        if i == 0:
            start, shift = jnp.asarray(piece_start, udtype), jnp.asarray(piece_shift, udtype)
            continue
        p_low, p_width, p_scale, p_floor, p_ceiling = numbers[5 * i : 5 * i + 5]
        on = r >= jnp.asarray(piece_start, udtype)
        start = jnp.where(on, jnp.asarray(piece_start, udtype), start)
        shift = jnp.where(on, jnp.asarray(piece_shift, udtype), shift)
        low = jnp.where(on, p_low, low)
        width = jnp.where(on, p_width, width)
        scale = jnp.where(on, p_scale, scale)
        floor = jnp.where(on, p_floor, floor)
        ceiling = jnp.where(on, p_ceiling, ceiling)
    offset = ((r - start) >> shift).astype(cdtype)
    x = (low + width * (offset * scale)).astype(dtype)
    return jnp.clip(x, floor, ceiling)


def _choice(key: Any, shape: tuple[int, ...], weights: list[float]) -> Any:
    """Each element's component index, from one draw of 32 random bits (probabilities to 2**-32)."""
    r = jax.random.bits(key, shape, jnp.uint32)
    index = jnp.zeros(shape, jnp.int32)
    for cut in _thresholds(weights, 32)[1:-1]:
        if cut < 2**32:  # a cut at 2**32: the components after it have no share left
            index = index + (r >= jnp.asarray(cut, jnp.uint32)).astype(jnp.int32)
    return index


def _mixture(
    spec: Mixture,
    key: Any,
    view: LogicalView,
    fans: tuple[int, int] | None,
    dtype: np.dtype,
    component: Callable[..., Any],
) -> Any:
    """Every live component drawn by ``component(spec, key, view, fans, dtype)`` and one
    draw of bits picking among them per element."""
    live = _live(spec)
    keys = jax.random.split(key, len(live) + 1)
    draws = [component(s, keys[i + 1], view, fans, dtype) for i, (_, s) in enumerate(live)]
    if len(draws) == 1:
        return draws[0]
    index = _choice(keys[0], view.native_shape, [w for w, _ in live])
    out = draws[0]
    for i, draw in enumerate(draws[1:], start=1):
        out = jnp.where(index == i, draw, out)
    return out


def _has_custom(spec: Spec) -> bool:
    if isinstance(spec, Mixture):
        return any(_has_custom(s) for _, s in spec.components)
    return isinstance(spec, Custom)


# --------------------------------------------------------------------------- custom laws


def _custom_host(
    spec: Custom, view: LogicalView, dtype: np.dtype, path: str | None, words: Any
) -> np.ndarray:
    """The user's law behind the fence, on the host, in the native layout and ``_asked(dtype)``
    (``host.law_native``), from the key words of a call or a parameter."""
    key = [int(w) for w in np.asarray(words).ravel()]
    return _law_native(spec, key, view, _asked(dtype), path)


def _asked(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.name in ("float16", "float32", "float64") else np.dtype(np.float32)


def _custom(
    spec: Custom, key: Any, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype, path: str | None
) -> Any:
    words = _key_words(key)
    if _is_tracer(words):
        result = jax.ShapeDtypeStruct(view.native_shape, _asked(dtype))
        native = jax.pure_callback(
            lambda w: _custom_host(spec, view, dtype, path, w), result, words, vmap_method="sequential"
        )
    else:
        native = jnp.asarray(_custom_host(spec, view, dtype, path, words))
    return native.astype(dtype)


# --------------------------------------------------------------------------- entry points


def _deterministic(spec: Spec, view: LogicalView, dtype: np.dtype) -> Any:
    native, logical = view.native_shape, view.logical_shape
    if isinstance(spec, Constant):
        return jnp.full(native, spec.value, dtype)
    if isinstance(spec, Eye) and len(native) == 2:
        # eye(out, in) seen in (in, out) is eye(in, out): no transpose to materialize.
        return jnp.eye(native[0], native[1], dtype=dtype)
    cdtype = _compute_dtype(dtype) if _is_float(dtype) or _is_complex(dtype) else dtype
    # The deterministic laws besides a constant are eye and dirac; a JAX array, which
    # LogicalView rearranges as it does a NumPy one (its reshape and transpose).
    drawn: Any = (
        jnp.eye(logical[0], logical[1], dtype=cdtype)
        if isinstance(spec, Eye)
        else _dirac(cast(Dirac, spec), logical, cdtype)
    )
    return view.to_native(drawn).astype(dtype)


def _draw_traced(
    spec: Spec,
    key: Any,
    view: LogicalView,
    fans: tuple[int, int] | None,
    dtype: np.dtype,
    path: str | None = None,
) -> Any:
    """``spec`` drawn inside a trace (a kernel of a "spec" plan)."""
    if isinstance(spec, Custom):
        return _custom(spec, key, view, fans, dtype, path)
    if isinstance(spec, Mixture) and _plan_pieces(spec, dtype) is None:
        return _mixture(spec, key, view, fans, dtype, functools.partial(_draw_traced, path=path))
    if not spec.random and not isinstance(spec, Mixture):
        return _deterministic(spec, view, dtype)
    return _call(_plan(spec, view, fans, dtype), view.native_shape, dtype, key)


def _draw(
    spec: Spec,
    key: Any,
    view: LogicalView,
    fans: tuple[int, int] | None,
    dtype: np.dtype,
    path: str | None = None,
) -> Any:
    """``spec`` drawn for a native array of ``view.native_shape``, in ``dtype``.

    A ``with_axes`` spec takes its fans from its axes on the native shape (unless ``fans``
    are given). A custom function is called directly when eager and through a host callback
    when traced, behind the fence (``path`` names the parameter in its errors); a mixture
    with one only selects among its components' draws; a constant is one ``jnp.full``; every
    other spec (eye and dirac too: op by op they are several full-size temporaries) runs its
    cached compiled kernel.
    """
    if isinstance(spec, WithAxes):
        if fans is None:
            fans = spec.fans(view.native_shape)
        spec = spec.spec
    _check_dtype(spec, dtype)
    if math.prod(view.native_shape) == 0:
        return jnp.zeros(view.native_shape, dtype)
    if isinstance(spec, Custom):
        return _custom(spec, key, view, fans, dtype, path)
    if isinstance(spec, Mixture) and _has_custom(spec):
        return _mixture(spec, key, view, fans, dtype, functools.partial(_draw, path=path))
    if isinstance(spec, Constant):
        return _deterministic(spec, view, dtype)
    return _call(_plan(spec, view, fans, dtype), view.native_shape, dtype, key)


# --------------------------------------------------------------------------- JAX's own calls


def _draw_jax(call: tuple[Any, ...], key: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """What the ``jax.nn.initializers`` call ``call`` draws, with JAX's arithmetic in ``dtype``.

    ``call`` is ``(name, *arguments)`` as the drop-in normalized them (``initializers.py``
    checked them, the key, the shape and the dtype): ``("constant", value)``, ``("uniform",
    scale)``, ``("normal", stddev)``, ``("truncated_normal", stddev, lower, upper)`` (bounds
    within 4), ``("variance_scaling", scale, mode, distribution, fan_in, fan_out)``
    (distribution in the neutral names), ``("orthogonal", scale, column_axis)``,
    ``("delta_orthogonal", scale, column_axis)``.
    """
    name, *args = call
    family: str
    static: tuple[Any, ...]
    numbers: tuple[Any, ...]
    if name == "constant":
        return jnp.full(shape, args[0], dtype)
    if math.prod(shape) == 0:
        return jnp.zeros(shape, dtype)
    if name == "uniform":
        family, static, numbers = "uniform", (False, None), (*_scalars(dtype, 0.0, 1.0, args[0], 0, 0),)
    elif name == "normal":
        family, static, numbers = "normal", (False, None), _scalars(dtype, args[0], 0.0)
    elif name == "truncated_normal":
        stddev, lower, upper = args
        family, static, numbers = (
            "truncated",
            (False, False, None),
            (*_scalars(dtype, lower, upper, stddev, 0.0, 0, 0),),
        )
    elif name == "variance_scaling":
        scale, mode, distribution, fan_in, fan_out = args
        family, static, numbers = _plan_scaled(distribution, mode, scale, fan_in, fan_out, dtype, dtype, None)
    elif name == "orthogonal":
        scale, column_axis = args
        family, static, numbers = "orthogonal", (shape, column_axis % len(shape)), _scalars(dtype, scale)
    elif name == "delta_orthogonal":
        scale, column_axis = args
        family, static, numbers = "delta_orthogonal", (shape, column_axis), _scalars(dtype, scale)
    else:
        raise SpecError(f"call={call!r} is not allowed; not a jax.nn.initializers law")
    return _call(_planned(family, static, numbers, dtype, dtype, always_bake=True), shape, dtype, key)
