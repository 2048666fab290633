"""The JAX/Flax adapter: jittable ``kernel_init`` functions and rules for Flax parameters.

``multiinit.compile(spec, "flax")`` (or ``spec.to("flax")``, or any constructor of
``from multiinit import flax as mif``) returns an :class:`Initializer`, a function
``init(key, shape, dtype=jnp.float32) -> jax.Array`` that ``flax.linen`` and ``flax.nnx``
layers take as ``kernel_init`` / ``bias_init``::

    import flax.linen as nn
    from multiinit import flax as mif
    layer = nn.Dense(8, kernel_init=mif.xavier_uniform(), bias_init=mif.zeros())

``multiinit.apply(variables, rules, seed=0)`` initializes a whole linen variables tree (and
returns a new one) or an ``nnx.Module`` (changed in place).

Decisions (each one is tested in ``tests/test_flax_*.py``):

Layout and fans
    A Flax kernel is ``(*spatial, in, out)``; an initializer computes fans on the logical
    ``(out, in, *spatial)`` view of the shape it is handed, so ``xavier_uniform`` on a Dense
    kernel of shape ``(4, 8)`` is torch's ``xavier_uniform_`` on a ``Linear(4, 8)`` weight.
    A grouped or depthwise ``Conv`` kernel is already ``(*k, in/groups, out)``: its logical
    view is the plain transpose (fan_in = in/groups * prod(k), as in torch), nothing to tell.
    An initializer sees only a shape, so a bias initializer cannot know its kernel's fans:
    pass them, ``compile(spec, "flax", fans=(fan_in, fan_out))``, or use model-level apply.

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
    ``key`` is a JAX PRNG key (``jax.random.key(0)`` or the raw ``jax.random.PRNGKey(0)``);
    the same key gives the same values, another key other values, and ``jax.jit`` gives the
    values eager mode gives. ``out_sharding`` (which JAX's own initializers accept) is not.

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

Model level: ``apply(variables_or_module, rules, seed=None, portable=False, *, layers=None)``
    * A linen variables dict (plain dict or ``FrozenDict``): only the ``"params"`` collection
      is initialized (``batch_stats`` and other collections are copied unchanged); a dict
      without a ``"params"`` key is taken as a params tree itself. A NEW tree of the same
      structure is returned; the input tree and its arrays are not touched. Leaves may be
      arrays, ``jax.ShapeDtypeStruct`` (from ``jax.eval_shape(model.init, ...)``: apply then
      materializes the parameters without running ``init``) or Flax boxed metadata
      (``nn.Partitioned``: the box is kept, its value replaced).
    * An ``nnx.Module``: its ``nnx.Param`` variables are set in place (not ``BatchStat``
      or other variables) and the module is returned. Shared variables are set once.
    * Paths are ``"params/Dense_0/kernel"`` (linen; ``"layers_0"`` inside ``nn.Sequential``)
      and ``"layers/0/kernel"`` (nnx attribute paths joined by ``/``); a role is the leaf
      name (``kernel``, ``bias``, ``scale``, ``embedding``; ``"weight"`` also selects a
      ``kernel``); a layer class selects the parameters of its instances (nnx always;
      linen when ``layers=`` gives instances, see below); neutral kinds (``"dense"``,
      ``"conv"``, ``"conv_transpose"``, ``"embedding"``, ``"norm"``) select by layer kind.
    * Which layer a linen parameter belongs to: a linen tree has no layer objects, so the
      layer is read, in this order, from ``layers=`` (a mapping of module-path globs, with or
      without the ``params/`` prefix, to a Flax module instance, a module class or a kind
      name; ``modules(model, *inputs)`` builds it for every submodule by tracing
      ``model.init`` abstractly), else from Flax's automatic name (``ConvTranspose_0`` is a
      ``ConvTranspose``), else from the leaves (a 2-D ``kernel``: dense; more dims: conv;
      ``embedding``: embedding; ``scale`` without ``kernel``: norm). It matters for three
      layouts: ``ConvTranspose(transpose_kernel=True)`` stores ``(*k, out, in)`` (its logical
      view swaps the last two axes; this needs an instance, by ``layers=`` or ``modules()``;
      with ``transpose_kernel=False`` Flax's ``(*k, in, out)`` is the plain view, so fan_in
      is in * prod(k) as Flax computes it, not torch's ``(in, out, *k)``-storage fan);
      ``DenseGeneral``/``LinearGeneral`` kernels are flattened as Flax flattens them for
      their initializer, (batch * in, out); an ``Embed`` table ``(num, features)`` is
      already logical (fan_in = features, as torch's Embedding).
    * A bias (any parameter below 2-D of a layer that has a kernel) gets its kernel's fans,
      so ``variance_scaling(1/3, "fan_in", "uniform")`` on it is torch's default bias.
    * ``order`` (the portable stream of a parameter) follows definition order: layers in
      the order of ``layers=`` when it lists every module that holds parameters (as
      ``modules()`` does), else the dict's insertion order, which ``model.init`` gives in
      definition order, with Flax's numbered names put back in numeric order (``Dense_2``
      before ``Dense_10``: trees rebuilt by ``jax.tree_util``, e.g. from a jitted ``init``,
      sort their keys); within a layer the weight (``kernel``/``scale``/``embedding``)
      comes first, then the rest. A parent's own parameters come before its children's, as
      in torch's ``named_parameters``.
    * ``seed=None`` draws from fresh OS entropy (JAX has no global generator): not
      reproducible. An int seed gives each parameter the key
      ``jax.random.key(derive_seed(seed, order))``.
    * All or nothing: rules, shapes and every draw (custom functions included) are checked
      and done before anything is written; on error the input is left as it was.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import re
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import BackendUnavailable, RuleError, ShapeError, SpecError

try:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from flax.core import FrozenDict
    from flax.core import meta as _meta
    from jax.scipy.special import ndtri as _jax_ndtri
except ImportError as e:  # the exact pip command is in the message
    raise BackendUnavailable.missing("flax", "JAX and Flax", "jax", e) from e

from .fans import SPATIAL_IN_OUT, LogicalView
from .reference import check_shape
from .reference import sample as _reference_sample
from .registry import namespace
from .rules import LAYER_KINDS, Param, derive_seed, execute, roles_of
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
)

__all__ = ["LAYOUT", "Initializer", "Modules", "compile", "apply", "modules"]

#: Flax kernels are (*spatial, in, out).
LAYOUT = SPATIAL_IN_OUT

_FLOATS = ("bfloat16", "float16", "float32", "float64")

#: Both truncation bounds within this many std: JAX's erf-based sampler is accurate there.
_ERF_SAFE = 4.0


# --------------------------------------------------------------------------- small helpers


def _shape(shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = (shape,)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise ShapeError(f"shape={shape!r} is not allowed; shape must be a sequence of non-negative integers")
    return tuple(int(d) for d in dims)


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


def _check_key(key: Any) -> None:
    dtype = getattr(key, "dtype", None)
    if dtype is not None and (jnp.issubdtype(dtype, jax.dtypes.prng_key) or dtype == jnp.uint32):
        return
    raise SpecError(
        f"key={key!r} is not allowed; key must be a JAX PRNG key such as jax.random.key(0) "
        "(what flax passes to kernel_init)"
    )


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


# --------------------------------------------------------------------------- one tensor


class Initializer:
    """A Flax/JAX initializer ``init(key, shape, dtype=jnp.float32) -> jax.Array`` for a spec.

    Usable as ``kernel_init``/``bias_init`` in ``flax.linen`` and ``flax.nnx``, jittable,
    equal (and hashable) by spec and fans, so linen modules holding it stay hashable.

    >>> import jax, multiinit as mi
    >>> init = mi.compile(mi.uniform(-1, 1), "flax")
    >>> init(jax.random.key(0), (4, 8)).shape
    (4, 8)
    """

    __slots__ = ("spec", "fans")

    def __init__(self, spec: Spec, fans: tuple[int, int] | None = None) -> None:
        self.spec = spec
        self.fans = fans

    def __call__(self, key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> Any:
        shape = _shape(shape)
        resolved = _dtype(dtype)
        _check_key(key)
        view = LogicalView.of(shape, SPATIAL_IN_OUT)
        try:
            check_shape(self.spec, view.logical_shape, self.fans)
        except ShapeError as e:
            raise ShapeError(
                f"{e} (the flax array of shape {shape}, logical (out, in, *spatial) {view.logical_shape})"
            ) from None
        return _draw(self.spec, key, view, self.fans, resolved)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Initializer) and (self.spec, self.fans) == (other.spec, other.fans)

    def __hash__(self) -> int:
        return hash((Initializer, self.spec, self.fans))

    def __repr__(self) -> str:
        fans = "" if self.fans is None else f", fans={self.fans}"
        return f"multiinit.compile({self.spec!r}, 'flax'{fans})"


def compile(spec: Spec, fans: tuple[int, int] | None = None) -> Initializer:
    """``spec`` as a Flax ``kernel_init``: ``init(key, shape, dtype=jnp.float32) -> jax.Array``.

    ``fans=(fan_in, fan_out)`` replaces the fans of the shape (a ``bias_init`` cannot see its
    kernel: give it the kernel's fans to reproduce torch's default bias).

    >>> import jax, flax.linen as nn, multiinit as mi
    >>> layer = nn.Dense(8, kernel_init=mi.compile(mi.xavier_uniform(), "flax"))
    >>> compile(mi.constant(42))(jax.random.key(0), (2,)).tolist()
    [42.0, 42.0]
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec such as mi.normal()")
    if fans is not None:
        if (
            not isinstance(fans, (tuple, list))
            or len(fans) != 2
            or not all(isinstance(f, (int, np.integer)) and not isinstance(f, bool) and f >= 0 for f in fans)
        ):
            raise SpecError(f"fans={fans!r} is not allowed; fans must be (fan_in, fan_out), two integers >= 0")
        fans = (int(fans[0]), int(fans[1]))
    return Initializer(spec, fans)


# --------------------------------------------------------------------------- layers

_LINEN_KINDS: tuple[tuple[type, str], ...] = tuple(
    (cls, kind)
    for name, kind in (
        ("ConvTranspose", "conv_transpose"), ("Conv", "conv"), ("ConvLocal", "conv"),
        ("DenseGeneral", "dense"), ("Dense", "dense"), ("Embed", "embedding"),
        ("BatchNorm", "norm"), ("LayerNorm", "norm"), ("GroupNorm", "norm"),
        ("RMSNorm", "norm"), ("InstanceNorm", "norm"),
    )
    if (cls := getattr(nn, name, None)) is not None
)
_NNX_KINDS: tuple[tuple[type, str], ...] = tuple(
    (cls, kind)
    for name, kind in (
        ("ConvTranspose", "conv_transpose"), ("Conv", "conv"), ("ConvLocal", "conv"),
        ("LinearGeneral", "dense"), ("Linear", "dense"), ("Embed", "embedding"),
        ("BatchNorm", "norm"), ("LayerNorm", "norm"), ("GroupNorm", "norm"),
        ("RMSNorm", "norm"), ("InstanceNorm", "norm"),
    )
    if (cls := getattr(nnx, name, None)) is not None
)
#: Flax's automatic submodule names are "<ClassName>_<n>".
_BY_NAME = {cls.__name__: cls for cls, _ in _LINEN_KINDS}
_GENERAL = tuple(c for c in (getattr(nn, "DenseGeneral", None), getattr(nnx, "LinearGeneral", None)) if c)
_AUTO_NAME = re.compile(r"^(.+)_(\d+)$")
#: Roles that come first within a layer (torch's "weight", Keras' "kernel"/"gamma").
_FIRST_ROLES = roles_of("weight") | roles_of("gamma") | roles_of("embedding")
_WEIGHT_ROLES = roles_of("weight")


class _Layer:
    """What is known of the layer that owns some parameters."""

    __slots__ = ("instance", "cls", "kind")

    def __init__(self, instance: Any = None, cls: type | None = None, kind: str | None = None) -> None:
        self.instance = instance
        self.cls = cls if cls is not None else (type(instance) if instance is not None else None)
        self.kind = kind if kind is not None else _kind_of(self.cls)

    def attr(self, name: str, default: Any = None) -> Any:
        return getattr(self.instance, name, default) if self.instance is not None else default


def _kind_of(cls: type | None) -> str | None:
    if cls is None:
        return None
    for known, kind in _LINEN_KINDS + _NNX_KINDS:
        if issubclass(cls, known):
            return kind
    return None


def _guess_kind(leaves: dict[str, Any]) -> str | None:
    """The kind of an unknown layer, from its parameters' names and shapes."""
    kernel = next((v for k, v in leaves.items() if k in _WEIGHT_ROLES), None)
    if kernel is not None:
        return "dense" if len(kernel.shape) == 2 else ("conv" if len(kernel.shape) > 2 else None)
    if "embedding" in leaves:
        return "embedding"
    if "scale" in leaves:
        return "norm"
    return None


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(value)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _view(layer: _Layer, name: str, shape: tuple[int, ...], leaves: dict[str, Any]) -> LogicalView:
    """How parameter ``name`` of ``layer`` maps onto logical ``(out, in, *spatial)``."""
    n = len(shape)
    if n < 2:
        return LogicalView(shape)
    if layer.kind == "embedding" and name in roles_of("embedding"):
        return LogicalView(shape)  # (num, features) is torch's Embedding layout already
    if name in _WEIGHT_ROLES:
        if layer.kind == "conv_transpose" and layer.attr("transpose_kernel", False):
            # (*k, out, in) -> (out, in, *k)
            return LogicalView(shape, axes=(n - 2, n - 1, *range(n - 2)))
        if layer.cls is not None and issubclass(layer.cls, _GENERAL):
            # Flax hands the initializer (batch * in, out): the same flattening here.
            n_out = len(_as_tuple(layer.attr("features", layer.attr("out_features"))))
            if not n_out:
                bias = leaves.get("bias")
                n_out = len(bias.shape) if bias is not None and len(bias.shape) else 1
            n_out = min(n_out, n - 1)
            flat = (math.prod(shape[: n - n_out]), math.prod(shape[n - n_out:]))
            return LogicalView(shape, axes=(1, 0), pre_shape=flat)
    return LogicalView.of(shape, SPATIAL_IN_OUT)


def _ordered_leaves(names: Iterable[str]) -> list[str]:
    names = list(names)
    return [n for n in names if n in _FIRST_ROLES] + [n for n in names if n not in _FIRST_ROLES]


def _numbered_order(names: list[str]) -> list[str]:
    """``names`` with each family of Flax auto names (``Dense_2``, ``Dense_10``) put back in
    numeric order within the places the family holds; other names keep their place."""
    families: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        match = _AUTO_NAME.match(name)
        if match:
            families.setdefault(match.group(1), []).append((int(match.group(2)), name))
    sorted_family = {prefix: iter(sorted(members)) for prefix, members in families.items()}
    out = []
    for name in names:
        match = _AUTO_NAME.match(name)
        out.append(next(sorted_family[match.group(1)])[1] if match else name)
    return out


def _layer_params(path: tuple[Any, ...], layer: _Layer, leaves: dict[str, Any],
                  start: int, sep: str = "/") -> list[Param]:
    """The Params of one layer's own leaves (``leaves``: name -> (array-like, handle))."""
    shapes = {name: value[0] for name, value in leaves.items()}
    views = {name: _view(layer, name, tuple(int(d) for d in arr.shape), shapes) for name, arr in shapes.items()}
    weight = next((name for name in shapes if name in _WEIGHT_ROLES and len(shapes[name].shape) >= 2), None)
    weight_fans = views[weight].fans if weight is not None else None
    out = []
    for name in _ordered_leaves(leaves):
        arr, handle = leaves[name]
        fans = weight_fans if weight_fans is not None and len(arr.shape) < 2 else None
        out.append(Param(
            path=sep.join(str(p) for p in (*path, name)),
            view=views[name],
            role=str(name),
            layer=layer.instance,
            fans=fans,
            order=start + len(out),
            dtype=np.dtype(arr.dtype).name,
            handle=handle,
            kind=layer.kind,
        ))
    return out


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _unbox(value: Any) -> Any:
    return value.unbox() if isinstance(value, _meta.AxisMetadata) else value


# --------------------------------------------------------------------------- linen trees


class Modules(dict):
    """What ``modules()`` returns: module path -> bound linen module, in call order. As
    ``layers=`` it may list modules that hold no parameters (``Dropout``), which a
    hand-written mapping may not (there a key that matches nothing is a typo)."""


class _Layers:
    """The ``layers=`` mapping, checked: module-path glob -> what the user says it is."""

    def __init__(self, layers: Mapping[str, Any] | None) -> None:
        self.entries: list[tuple[str, _Layer]] = []
        self.used: set[str] = set()
        self.strict = not isinstance(layers, Modules)
        if layers is None:
            return
        if not isinstance(layers, Mapping):
            raise RuleError(
                f"layers={layers!r} is not allowed; layers must be a dict of module path -> flax "
                "module (instance or class) or kind name, e.g. multiinit.flax.modules(model, x)"
            )
        for key, value in layers.items():
            if not isinstance(key, str):
                raise RuleError(f"layers key {key!r} is not allowed; keys are module paths such as 'Conv_0'")
            self.entries.append((key.strip("/"), self._layer(key, value)))

    @staticmethod
    def _layer(key: str, value: Any) -> _Layer:
        if isinstance(value, str):
            if value not in LAYER_KINDS:
                raise RuleError(
                    f"layers[{key!r}]={value!r} is not allowed; a kind is one of {', '.join(LAYER_KINDS)}"
                )
            return _Layer(kind=value)
        if isinstance(value, type) and issubclass(value, (nn.Module, nnx.Module)):
            return _Layer(cls=value)
        if isinstance(value, (nn.Module, nnx.Module)):
            return _Layer(instance=value)
        raise RuleError(
            f"layers[{key!r}]={value!r} is not allowed; a layer is a flax module instance (e.g. "
            "nn.ConvTranspose(8, (3, 3), transpose_kernel=True)), a module class, or a kind name "
            f"({', '.join(LAYER_KINDS)})"
        )

    def find(self, full: str, short: str) -> _Layer | None:
        for key, layer in self.entries:
            if fnmatch.fnmatchcase(full, key) or fnmatch.fnmatchcase(short, key):
                self.used.add(key)
                return layer
        return None

    def rank(self, short: str) -> int | None:
        return next((i for i, (key, _) in enumerate(self.entries) if key == short), None)

    def check_used(self, module_paths: list[str]) -> None:
        import difflib

        if not self.strict:
            return
        for key, _ in self.entries:
            if key not in self.used:
                close = difflib.get_close_matches(key, module_paths, n=3, cutoff=0.0)
                raise RuleError(
                    f"layers key {key!r} matches no module holding parameters (closest module paths: "
                    f"{', '.join(repr(c) for c in close) or 'none'})"
                )


def _linen_params(tree: Mapping[str, Any], layers: _Layers) -> tuple[list[Param], tuple[str, ...]]:
    """The Params of a linen tree's learnable collection, and the key path of that collection."""
    if "params" in tree and isinstance(tree["params"], Mapping):
        root, prefix = tree["params"], ("params",)
    else:
        root, prefix = tree, ()
    found: list[tuple[str, list[Param]]] = []
    module_paths: list[str] = []

    def visit(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        leaves = {}
        children = []
        for name in node:
            value = node[name]
            if isinstance(value, Mapping):
                children.append(name)
            elif _is_array(_unbox(value)):
                leaves[name] = (_unbox(value), (*prefix, *path, name))
        short = "/".join(path)
        layer = layers.find("/".join((*prefix, *path)), short)
        if leaves:
            module_paths.append(short)
            if layer is None:
                match = _AUTO_NAME.match(path[-1]) if path else None
                cls = _BY_NAME.get(match.group(1)) if match else None
                layer = _Layer(cls=cls) if cls is not None else _Layer()
            if layer.kind is None:
                layer.kind = _guess_kind({k: v[0] for k, v in leaves.items()})
            found.append((short, _layer_params((*prefix, *path), layer, leaves, 0)))
        for name in _numbered_order(children):
            visit(node[name], (*path, name))

    visit(root, ())
    layers.check_used(module_paths)
    ranks = [layers.rank(short) for short, _ in found]
    if layers.entries and all(r is not None for r in ranks):
        # layers= lists every module (as modules() does, in call order): that is the order.
        found = [entry for _, entry in sorted(zip(ranks, found), key=lambda pair: pair[0])]
    params = [p for _, group in found for p in group]
    for i, p in enumerate(params):
        p.order = i
    return params, prefix


def _rebuild(node: Any, values: dict[tuple[str, ...], Any], path: tuple[str, ...] = ()) -> Any:
    """A new tree like ``node``, with the leaves at ``values``' paths replaced."""
    if isinstance(node, Mapping):
        built = {name: _rebuild(node[name], values, (*path, name)) for name in node}
        return FrozenDict(built) if isinstance(node, FrozenDict) else built
    if path in values:
        new = values[path]
        return _meta.replace_boxed(node, new) if isinstance(node, _meta.AxisMetadata) else new
    return node


# --------------------------------------------------------------------------- nnx modules


def _nnx_children(node: Any) -> list[tuple[Any, Any]]:
    """A graph node's children in definition (insertion) order."""
    if isinstance(node, nnx.List) or isinstance(node, (list, tuple)):
        return list(enumerate(node))
    if isinstance(node, Mapping):
        return list(node.items())
    if isinstance(node, (nnx.Module, nnx.Pytree)):
        return [(k, v) for k, v in vars(node).items() if not k.startswith(("_pytree__", "_object__"))]
    return []


def _nnx_params(model: Any) -> list[Param]:
    seen_nodes: set[int] = set()
    seen_vars: set[int] = set()
    params: list[Param] = []

    def visit(node: Any, path: tuple[Any, ...]) -> None:
        if id(node) in seen_nodes:
            return
        seen_nodes.add(id(node))
        children = _nnx_children(node)
        leaves = {}
        for name, value in children:
            if isinstance(value, nnx.Param) and id(value) not in seen_vars and _is_array(value.get_value()):
                seen_vars.add(id(value))
                leaves[name] = (value.get_value(), value)
        if leaves:
            layer = _Layer(instance=node) if isinstance(node, nnx.Module) else _Layer()
            if layer.kind is None:
                layer.kind = _guess_kind({k: v[0] for k, v in leaves.items()})
            params.extend(_layer_params(path, layer, leaves, len(params)))
        for name, value in children:
            if isinstance(value, (nnx.Module, nnx.Pytree, list, tuple, Mapping)) and not isinstance(
                value, nnx.Variable
            ):
                visit(value, (*path, name))

    visit(model, ())
    return params


# --------------------------------------------------------------------------- apply


def _keyed_draw(entropy: int | None) -> Callable[[Param, Spec, int | None], Any]:
    def draw(param: Param, spec: Spec, seed: int | None) -> Any:
        if seed is None:
            seed = derive_seed(entropy, param.order)
        key = jax.random.key(seed)
        return _draw(spec, key, param.view, param.fans, _dtype(param.dtype))

    return draw


def _from_numpy(param: Param, native: np.ndarray) -> Any:
    return jnp.asarray(native, dtype=np.dtype(param.dtype))


def apply(model: Any, rules: Any, seed: int | None = None, portable: bool = False, *,
          layers: Mapping[str, Any] | None = None) -> Any:
    """Initialize a linen variables tree (a new tree is returned) or an nnx module (in place).

    ``rules`` are ``(selector, spec)`` pairs or a dict, first match wins (see
    ``multiinit.apply``). ``layers`` (linen trees only) says which flax module owns the
    parameters under a module path: ``{"Up_0": nn.ConvTranspose(8, (3, 3),
    transpose_kernel=True)}`` or ``layers=modules(model, x)``; see the module docstring.

    >>> import jax, jax.numpy as jnp, flax.linen as nn, multiinit as mi
    >>> net = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(1)])
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 4)))
    >>> new = apply(variables, {"kernel": mi.normal(std=0.01), "bias": mi.zeros()}, seed=0)
    >>> float(new["params"]["layers_0"]["bias"].sum()), new is variables
    (0.0, False)
    """
    entropy = None if seed is not None else int(np.random.SeedSequence().entropy)
    draw = _keyed_draw(entropy)
    if isinstance(model, nnx.Module):
        if layers is not None:
            raise RuleError("layers= is for linen variable trees; an nnx module knows its own layers")
        params = _nnx_params(model)

        def write_nnx(pairs: Sequence[tuple[Param, Any]]) -> None:
            for param, value in pairs:
                param.handle.set_value(value)

        execute(params, rules, seed=seed, portable=portable, draw=draw, from_numpy=_from_numpy, write=write_nnx)
        return model
    if isinstance(model, nn.Module):
        raise RuleError(
            f"model={type(model).__name__}(...) is a flax.linen Module, which holds no parameters; "
            "pass its variables: multiinit.apply(model.init(key, x), rules, seed=0)"
        )
    if not isinstance(model, Mapping):
        raise RuleError(
            f"model of type {type(model).__name__} is not allowed; the flax backend takes a linen "
            "variables dict (from model.init) or an nnx.Module"
        )
    params, _ = _linen_params(model, _Layers(layers))
    written: dict[tuple[str, ...], Any] = {}

    def write_linen(pairs: Sequence[tuple[Param, Any]]) -> None:
        for param, value in pairs:
            written[param.handle] = value

    execute(params, rules, seed=seed, portable=portable, draw=draw, from_numpy=_from_numpy, write=write_linen)
    return _rebuild(model, written)


def modules(model: Any, *args: Any, method: Any = None, **kwargs: Any) -> Modules:
    """Every submodule of a linen ``model`` by module path, in call order, for ``layers=``.

    Traces ``model.init(key, *args, **kwargs)`` abstractly (``jax.eval_shape``: nothing is
    computed) and records each module the first time one of its methods is called. The
    root module is under ``""``.

    >>> import jax.numpy as jnp, flax.linen as nn
    >>> net = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(1)])
    >>> list(modules(net, jnp.ones((2, 4))))
    ['', 'layers_0', 'layers_2']
    """
    if not isinstance(model, nn.Module):
        raise RuleError(f"model={model!r} is not allowed; modules() takes a flax.linen Module")
    found = Modules()

    def record(next_fun: Callable[..., Any], fargs: Any, fkwargs: Any, context: Any) -> Any:
        found.setdefault("/".join(str(p) for p in context.module.path), context.module)
        return next_fun(*fargs, **fkwargs)

    extra = {} if method is None else {"method": method}
    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **extra, **kwargs))
    return found


globals().update(namespace("flax", compile))
