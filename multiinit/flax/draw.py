"""Spec -> values in JAX: the laws, planned on the host and drawn by cached jitted kernels.

``_draw(spec, key, view, fans, dtype)`` fills a native array of ``view.native_shape`` in
``dtype``; the compiled initializer (``compiled.py``) and model-level apply (``model.py``) both
draw through it. ``_dtype`` is the one check of the dtypes the adapter fills.

Decisions (each one is tested in ``tests/test_flax_*.py``):

The laws
    Exactly the laws of ``multiinit.reference``: ``uniform(low, high)`` is U[low, high) (never
    JAX's U[0, scale)); values are drawn in float32 (float64 for float64) and then rounded to
    the requested dtype, and clamped inward so that a bound stays a bound in every dtype
    (``uniform`` never returns ``high``; a truncated normal never leaves
    ``[mean + low*std, mean + high*std]``, even in bfloat16). Truncated normals with both
    bounds within 4 std use ``jax.random.truncated_normal`` (so with mean 0 they give the
    values of ``jax.nn.initializers.truncated_normal`` / ``variance_scaling``); wider or
    one-sided bounds use the inverse normal CDF in the lower tail, as the reference does,
    because JAX's erf-based sampler saturates there (with ``lower=-100``, as torch's
    ``trunc_normal_(std=0.02)`` defaults give, it returns the bound itself with probability
    2**-23). Uniform, normal and the variance-scaling family draw with the same JAX
    primitive as ``jax.nn.initializers``, so with the same key they give its values up to the
    rounding of the scale. Orthogonal flattens as torch does, (out, in * spatial) on the
    logical view, with the QR sign fix; dirac puts the 1 at ``k // 2`` (torch's centre).

dtypes
    float32, bfloat16, float16 and float64. float64 needs x64 enabled; without it JAX
    gives float32 (and warns), as ``jax.nn.initializers`` do. Anything else: ``SpecError``.

Keys and jit
    The same key gives the same values, another key other values, and ``jax.jit`` gives the
    values eager mode gives (the keys an initializer accepts: ``compiled.py``).

Custom NumPy functions
    ``custom(fn)`` runs ``fn(rng, logical_shape, dtype)`` on the host: eagerly it is called
    directly (its errors are raised as they are); under ``jit`` (and ``flax`` ``init``
    under ``jit``, ``vmap``, ``eval_shape``) it runs through ``jax.pure_callback``, so it
    works there too. ``rng`` is ``numpy.random.default_rng(SeedSequence(key words))``, so a
    key always gives the same values, eagerly or jitted. ``dtype`` is the requested NumPy
    dtype, except bfloat16, for which ``fn`` is asked for float32 (NumPy's random functions
    do not know bfloat16) and the result is rounded. Under ``vmap`` the callback runs once
    per key (``vmap_method="sequential"``). Errors raised by ``fn`` under ``jit`` reach the
    caller as JAX runtime errors that carry the original message.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri as _jax_ndtri

from ..errors import SpecError
from ..fans import LogicalView
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

__all__: list[str] = []

_FLOATS = ("bfloat16", "float16", "float32", "float64")

#: Both truncation bounds within this many std: JAX's erf-based sampler is accurate there.
_ERF_SAFE = 4.0


# --------------------------------------------------------------------------- small helpers


def _dtype(dtype: Any) -> np.dtype:
    """The dtype JAX will produce for ``dtype`` (float64 -> float32 without x64)."""
    if dtype is None:
        dtype = float  # JAX's default float: float32, or float64 with x64
    try:
        resolved = np.dtype(jnp.dtype(dtype))
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in _FLOATS:
        raise SpecError(
            f"dtype={dtype!r} is not allowed; a multiinit flax initializer fills one of {', '.join(_FLOATS)}"
        )
    return np.dtype(jax.dtypes.canonicalize_dtype(resolved))


def _compute_dtype(dtype: np.dtype) -> Any:
    # Half precisions are drawn in float32 and rounded once: JAX's own bfloat16 draws have 7
    # random bits, and the reference's law is the float64 one.
    return jnp.float64 if dtype == np.float64 else jnp.float32


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



# --------------------------------------------------------------------------- the samplers
#
# A built-in law is planned on the host -- its family, the static facts the compiled code
# depends on, and its numbers -- then drawn by one jitted kernel per (family, static facts,
# shape, dtype), the numbers passed as runtime scalars. Every variance-scaling spec on a shape
# shares the uniform, normal or truncated kernel of that shape, and eager calls run the same
# compiled code as ``jax.jit`` calls (XLA fuses float arithmetic differently from op-by-op
# execution; this way jit gives exactly the eager values).


def _scalars(dtype: Any, *values: float) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(v, dtype=dtype) for v in values)


def _plan_truncated(mean: float, std: float, low: float, high: float, dtype: np.dtype) -> tuple[str, tuple, tuple]:
    cdtype = np.dtype(_compute_dtype(dtype))
    clamp = (_at_least(mean + low * std, dtype), _at_most(mean + high * std, dtype))
    if -_ERF_SAFE <= low and high <= _ERF_SAFE:
        return "truncated", (), (*_scalars(cdtype, low, high, mean, std), *clamp)
    # Inverse CDF in the lower tail (as multiinit.reference), where it keeps its precision.
    sign = 1.0
    if low > 0:
        low, high, sign = -high, -low, -1.0
    numbers = _scalars(cdtype, low, high, _phi(low), _phi(high), sign, mean, std)
    return "tail", (), (*numbers, *clamp)


def _plan(spec: Spec, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype) -> tuple[str, tuple, tuple]:
    """``(family, static, numbers)`` of a built-in random law."""
    cdtype = np.dtype(_compute_dtype(dtype))
    if isinstance(spec, Uniform):
        # Rounding (to bfloat16 above all) can reach ``high``: U[low, high) must not.
        return "uniform", (), (*_scalars(cdtype, spec.low, spec.high), _at_least(spec.low, dtype),
                               _below(spec.high, dtype))
    if isinstance(spec, Normal):
        return "normal", (), _scalars(cdtype, spec.mean, spec.std)
    if isinstance(spec, TruncatedNormal):
        return _plan_truncated(spec.mean, spec.std, spec.low, spec.high, dtype)
    scaled = spec.as_variance_scaling()
    if scaled is not None:
        distribution, number = scaled.law(*(fans if fans is not None else view.fans))
        if distribution == "uniform":
            return "uniform", (), (*_scalars(cdtype, -number, number), _at_least(-number, dtype),
                                   _below(number, dtype))
        if distribution == "untruncated_normal":
            return "normal", (), _scalars(cdtype, 0.0, number)
        return _plan_truncated(0.0, number, -2.0, 2.0, dtype)
    if isinstance(spec, Orthogonal):
        return "orthogonal", (view,), _scalars(cdtype, spec.gain)
    if isinstance(spec, Sparse):
        return "sparse", (view, int(math.ceil(spec.sparsity * view.logical_shape[0]))), _scalars(cdtype, spec.std)
    return "spec", (spec, view, fans), ()


def _run(family: str, static: tuple, shape: tuple[int, ...], dtype: np.dtype, key: Any, *numbers: Any) -> Any:
    """Draw a planned law (traced: called inside ``jax.jit``)."""
    cdtype = _compute_dtype(dtype)
    # Under an outer jit the numbers are constants, which XLA would fold into the arithmetic
    # differently from the eager kernel (where they are arguments): the barrier keeps one program.
    numbers = jax.lax.optimization_barrier(numbers)
    if family == "uniform":
        low, high, floor, ceiling = numbers
        x = jax.random.uniform(key, shape, cdtype, low, high).astype(dtype)
        return jnp.clip(x, floor, ceiling)
    if family == "normal":
        mean, std = numbers
        return (mean + std * jax.random.normal(key, shape, cdtype)).astype(dtype)
    if family == "truncated":
        low, high, mean, std, floor, ceiling = numbers
        z = jax.random.truncated_normal(key, low, high, shape, cdtype)
        return jnp.clip((mean + std * z).astype(dtype), floor, ceiling)
    if family == "tail":
        low, high, p_low, p_high, sign, mean, std, floor, ceiling = numbers
        u = jax.random.uniform(key, shape, cdtype)
        # jax's uniform is k * 2**-m on [0, 1); the half step makes it open, so ndtri never sees 0.
        u = u + 2.0 ** -((52 if cdtype == jnp.float64 else 23) + 1)
        z = sign * jnp.clip(_jax_ndtri(p_low + (p_high - p_low) * u), low, high)
        return jnp.clip((mean + std * z).astype(dtype), floor, ceiling)
    if family == "orthogonal":
        (view,), (gain,) = static, numbers
        return view.to_native(_orthogonal(gain, key, view.logical_shape, cdtype)).astype(dtype)
    if family == "sparse":
        (view, k), (std,) = static, numbers
        return view.to_native(_sparse(std, k, key, view.logical_shape, cdtype)).astype(dtype)
    spec, view, fans = static
    return _draw_traced(spec, key, view, fans, dtype)


@functools.lru_cache(maxsize=512)
def _kernel(family: str, static: tuple, shape: tuple[int, ...], dtype: np.dtype) -> Callable[..., Any]:
    return jax.jit(functools.partial(_run, family, static, shape, dtype))


def _orthogonal(gain: Any, key: Any, logical: tuple[int, ...], cdtype: Any) -> Any:
    rows = logical[0]
    cols = math.prod(logical) // rows
    flat = jax.random.normal(key, (rows, cols), cdtype)
    if rows < cols:
        flat = flat.T
    q, r = jnp.linalg.qr(flat)
    q = q * jnp.sign(jnp.diagonal(r))  # the sign fix: Haar-distributed, as torch's orthogonal_
    if rows < cols:
        q = q.T
    return gain * q.reshape(logical)


def _dirac(spec: Dirac, logical: tuple[int, ...], cdtype: Any) -> Any:
    out_ch, in_ch = logical[0], logical[1]
    per_group = out_ch // spec.groups
    # Output channel o of group g copies input channel o % per_group (when it exists).
    hit = jnp.arange(in_ch)[None, :] == (jnp.arange(out_ch) % per_group)[:, None]
    for k in logical[2:]:
        centre = jnp.arange(k) == k // 2
        hit = hit[..., None] & centre
    return hit.astype(cdtype)


def _sparse(std: Any, k: int, key: Any, logical: tuple[int, ...], cdtype: Any) -> Any:
    values_key, rows_key = jax.random.split(key)
    out = std * jax.random.normal(values_key, logical, cdtype)
    if k:
        # The rows of the k smallest of i.i.d. random keys, per column: a uniformly random
        # k-subset, exactly k zeros.
        zero = _k_smallest_per_column(jax.random.bits(rows_key, logical, jnp.uint32), k)
        out = jnp.where(zero, jnp.zeros((), out.dtype), out)
    return out


def _k_smallest_per_column(keys: Any, k: int) -> Any:
    """A mask of the set ``jnp.argsort(keys, axis=0, stable=True)[:k]`` picks (ties to the lower row).

    Without the argsort, which XLA runs on the CPU about 4x slower than a plain sort of the keys
    (7 s against 2 s on 4096x4096): the k-th smallest key t of each column, every key below t,
    then as many keys equal to t, from the top row down, as the column still needs.
    """
    t = jnp.sort(keys.T, axis=-1)[:, k - 1]
    below = keys < t
    tied = keys == t
    need = k - jnp.sum(below, axis=0, dtype=jnp.int32)
    return below | (tied & (jnp.cumsum(tied, axis=0, dtype=jnp.int32) <= need))


def _custom_host(spec: Spec, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype,
                 words: Any) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([int(w) for w in np.asarray(words).ravel()]))
    asked = dtype if dtype.name in ("float16", "float32", "float64") else np.dtype(np.float32)
    logical = _reference_sample(spec, view.logical_shape, seed=rng, dtype=asked, fans=fans)
    return np.ascontiguousarray(view.to_native(logical)).astype(dtype)


def _custom(spec: Custom, key: Any, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype) -> Any:
    words = _key_words(key)
    if not _is_tracer(words):
        return jnp.asarray(_custom_host(spec, view, fans, dtype, words))
    result = jax.ShapeDtypeStruct(view.native_shape, dtype)
    return jax.pure_callback(
        lambda w: _custom_host(spec, view, fans, dtype, w), result, words, vmap_method="sequential"
    )


def _mixture(spec: Mixture, key: Any, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype,
             component: Callable[..., Any]) -> Any:
    live = [(w, s) for w, s in spec.components if w > 0]
    keys = jax.random.split(key, len(live) + 1)
    draws = [component(s, keys[i + 1], view, fans, dtype) for i, (_, s) in enumerate(live)]
    total = math.fsum(w for w, _ in live)
    u = jax.random.uniform(keys[0], view.native_shape, _compute_dtype(dtype))
    out = draws[0]
    cumulative = 0.0
    # Component i covers [c_i, c_{i+1}) of U[0, 1): the last threshold passed wins.
    for (weight, _), draw in zip(live[:-1], draws[1:]):
        cumulative += weight / total
        out = jnp.where(u >= cumulative, draw, out)
    return out


def _has_custom(spec: Spec) -> bool:
    if isinstance(spec, Mixture):
        return any(_has_custom(s) for _, s in spec.components)
    return isinstance(spec, Custom)


def _deterministic(spec: Spec, view: LogicalView, dtype: np.dtype) -> Any:
    native, logical = view.native_shape, view.logical_shape
    if isinstance(spec, Constant):
        return jnp.full(native, spec.value, dtype)
    if isinstance(spec, Eye) and len(native) == 2:
        # eye(out, in) seen in (in, out) is eye(in, out): no transpose to materialize.
        return jnp.eye(native[0], native[1], dtype=dtype)
    cdtype = _compute_dtype(dtype)
    drawn = jnp.eye(logical[0], logical[1], dtype=cdtype) if isinstance(spec, Eye) else _dirac(spec, logical, cdtype)
    return view.to_native(drawn).astype(dtype)


def _draw_traced(spec: Spec, key: Any, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype) -> Any:
    """``spec`` drawn inside a trace (no nested compilation)."""
    if isinstance(spec, Custom):
        return _custom(spec, key, view, fans, dtype)
    if isinstance(spec, Mixture):
        return _mixture(spec, key, view, fans, dtype, _draw_traced)
    if not spec.random:
        return _deterministic(spec, view, dtype)
    family, static, numbers = _plan(spec, view, fans, dtype)
    return _run(family, static, view.native_shape, dtype, key, *numbers)


def _draw(spec: Spec, key: Any, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype) -> Any:
    """``spec`` drawn for a native array of ``view.native_shape``, in ``dtype``.

    A custom function is called directly when eager (its errors stay Python errors) and
    through a host callback when traced; a mixture with one only selects among its
    components' draws; a constant is one ``jnp.full``; every other spec (eye and dirac too: op
    by op they are several full-size temporaries) runs its cached compiled kernel.
    """
    if math.prod(view.native_shape) == 0:
        return jnp.zeros(view.native_shape, dtype)
    if isinstance(spec, Custom):
        return _custom(spec, key, view, fans, dtype)
    if isinstance(spec, Mixture) and _has_custom(spec):
        return _mixture(spec, key, view, fans, dtype, _draw)
    if isinstance(spec, Constant):
        return _deterministic(spec, view, dtype)
    family, static, numbers = _plan(spec, view, fans, dtype)
    return _kernel(family, static, view.native_shape, dtype)(key, *numbers)

