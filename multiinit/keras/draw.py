"""Spec -> values, with ``keras.ops`` and ``keras.random`` only (so any Keras 3 backend runs it).

``_draw(spec, view, fans, dtype, seed)`` gives a tensor in the native layout of ``view``;
``seed`` is a stateless Keras seed, or None for Keras' global generator (how the seed of each
call is chosen is ``compiled.py``'s, and ``model.py``'s for a whole model). ``_resolve_dtype``
says which dtype a spec fills and refuses the ones it cannot.

Decisions (each one tested in ``tests/test_keras_*.py``):

Truncated normals
    Drawn by inverting the normal CDF on U(Phi(low), Phi(high)) and clipped to the bounds, so
    values never escape them, for any bounds in std units and on every backend (Keras' torch
    backend keeps an out-of-bounds candidate about 4e-6 of the time; Keras only cuts at 2 std).
    At +-2 std on the TensorFlow and JAX backends, whose own truncated normal is exact, that
    one is used (the inversion takes about 1.5x as long as TF's own), then the same clip.
    The inversion runs in float32 when both bounds are within 3 std (float32 resolves
    CDF values there far below any statistical test), in float64 otherwise (in float32 a far
    tail would be quantized and a cut at +-100 std would put the rare u = 0 on the bound); the
    result is clipped to the bounds as rounded to the output dtype.

Other laws
    Built-in specs draw natively with ``keras.random`` (no host round trip); elementwise laws
    draw directly in the native shape; orthogonal, eye, dirac and sparse are drawn on the
    logical view and rearranged with ``keras.ops``; a mixture picks per element among full
    draws of its components. A custom spec calls the user's NumPy ``fn(rng, shape, dtype)`` in
    logical layout with ``numpy.random.default_rng`` seeded from the call's derived seed (or,
    with ``seed=None``, from an integer drawn from Keras' global generator), then converts.
    Random specs need a floating dtype (float16, bfloat16, float32, float64); constant, eye and
    dirac also fill integer variables. Half-precision draws are made in float32 and cast.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops as _ops

from ..errors import SpecError
from ..fans import LogicalView
from ..reference import sample as _reference_sample
from ..rules import derive_seed
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

_FLOATS = ("float16", "bfloat16", "float32", "float64")
_SQRT2 = math.sqrt(2.0)
# Below this many std on both sides, float32 resolves the normal CDF well enough to invert it.
_FLOAT32_TRUNCATION_LIMIT = 3.0
# Backends whose keras.random.truncated_normal (cut at 2 std) never lets a value out: TF
# re-draws outside values, JAX inverts the CDF and clamps. Keras' torch backend keeps its first
# of 4 candidates when none is inside, so there (and elsewhere) the CDF inversion below is used.
_EXACT_TWO_SIGMA = ("tensorflow", "jax")


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / _SQRT2)


def _work_dtype(dtype: str) -> str:
    """The dtype random draws are made in: float64 stays, everything else draws in float32."""
    return "float64" if dtype == "float64" else "float32"


def _cast(x: Any, dtype: str) -> Any:
    return x if keras.backend.standardize_dtype(x.dtype) == dtype else _ops.cast(x, dtype)


def _child(seed: int | None, index: int) -> int | None:
    """The seed of the ``index``-th draw inside one call (None stays None: the global RNG)."""
    return None if seed is None else derive_seed(seed, index)


def _truncated(shape: tuple[int, ...], mean: float, std: float, low: float, high: float,
               dtype: str, seed: int | None) -> Any:
    """N(mean, std**2) cut to [mean + low*std, mean + high*std]; never outside, any backend."""
    if (low, high) == (-2.0, 2.0) and keras.backend.backend() in _EXACT_TWO_SIGMA:
        # This backend's own two-sigma truncated normal is exact (rejection or clamped inversion).
        work = _work_dtype(dtype)
        y = _cast(keras.random.truncated_normal(shape, mean=mean, stddev=std, dtype=work, seed=seed), dtype)
        if mean == 0.0 and dtype == work:
            # The backend computes draw * std with |draw| <= 2; rounding is monotone and doubling
            # exact, so |y| <= 2 * std as this dtype rounds it: the bound itself. The clip (a
            # fifth of the cost on 4096x4096) is needed only for a mean, or a second rounding.
            return y
        return _ops.clip(y, mean + low * std, mean + high * std)
    flip = low > 0  # work in the lower tail, where the CDF keeps its relative precision
    a, b = (-high, -low) if flip else (low, high)
    work = "float64" if dtype == "float64" or max(abs(low), abs(high)) > _FLOAT32_TRUNCATION_LIMIT else "float32"
    u = keras.random.uniform(shape, minval=_phi(a), maxval=_phi(b), dtype=work, seed=seed)
    x = _SQRT2 * _ops.erfinv(2.0 * u - 1.0)
    if flip:
        x = -x
    y = _cast(mean + std * x, dtype)
    # One clip, to the bounds as the output dtype rounds them, catches everything: u on Phi(a)
    # = 0 (erfinv(-1) = -inf), an inverse that rounds past a bound, and the affine map above
    # rounding across it (e.g. 0.2133 + 0.7298 * 1.86 in float32).
    return _ops.clip(y, mean + low * std, mean + high * std)


def _elementwise(spec: Spec) -> bool:
    """True when every element is drawn independently (so the native shape can be drawn as is)."""
    if isinstance(spec, (Constant, Uniform, Normal, TruncatedNormal)):
        return True
    if isinstance(spec, Mixture):
        return all(_elementwise(s) for _, s in spec.components)
    return spec.as_variance_scaling() is not None


def _draw_elementwise(spec: Spec, shape: tuple[int, ...], fans: tuple[int, int] | None,
                      dtype: str, seed: int | None) -> Any:
    if isinstance(spec, Constant):
        return _ops.full(shape, spec.value, dtype=dtype)
    work = _work_dtype(dtype)
    if isinstance(spec, Uniform):
        x = keras.random.uniform(shape, minval=spec.low, maxval=spec.high, dtype=work, seed=seed)
    elif isinstance(spec, Normal):
        x = keras.random.normal(shape, mean=spec.mean, stddev=spec.std, dtype=work, seed=seed)
    elif isinstance(spec, TruncatedNormal):
        return _truncated(shape, spec.mean, spec.std, spec.low, spec.high, dtype, seed)
    else:
        distribution, number = spec.as_variance_scaling().law(*fans)
        if distribution == "uniform":
            x = keras.random.uniform(shape, minval=-number, maxval=number, dtype=work, seed=seed)
        elif distribution == "untruncated_normal":
            x = keras.random.normal(shape, mean=0.0, stddev=number, dtype=work, seed=seed)
        else:
            return _truncated(shape, 0.0, number, -2.0, 2.0, dtype, seed)
    return _cast(x, dtype)


def _orthogonal(spec: Orthogonal, shape: tuple[int, ...], dtype: str, seed: int | None) -> Any:
    # Logical (rows=out, cols=in*k), as torch flattens; QR of the tall side, with the sign fix
    # that makes the result Haar-distributed.
    rows = shape[0]
    cols = math.prod(shape) // rows
    work = _work_dtype(dtype)
    a = keras.random.normal((max(rows, cols), min(rows, cols)), dtype=work, seed=seed)
    q, r = _ops.qr(a)
    q = q * _ops.sign(_ops.diagonal(r))
    if rows < cols:
        q = _ops.transpose(q)
    return _cast(spec.gain * _ops.reshape(q, shape), dtype)


def _dirac(spec: Dirac, shape: tuple[int, ...], dtype: str) -> Any:
    out_channels, in_channels, *kernel = shape
    per_group = out_channels // spec.groups
    # Channel part: row g*per_group + d has its 1 in column d (d < min(per_group, in)).
    channels = _ops.tile(_ops.eye(per_group, in_channels, dtype=dtype), (spec.groups, 1))
    centre = None
    for k in kernel:  # the 1 sits at index k // 2 of every spatial axis, as in torch
        hot = _ops.one_hot(k // 2, k, dtype=dtype)
        centre = hot if centre is None else _ops.reshape(centre, (-1, 1)) * _ops.reshape(hot, (1, -1))
    centre = _ops.reshape(centre, (1, 1, *kernel))
    return _ops.reshape(channels, (out_channels, in_channels) + (1,) * len(kernel)) * centre


def _sparse(spec: Sparse, shape: tuple[int, ...], dtype: str, seed: int | None) -> Any:
    rows, cols = shape
    work = _work_dtype(dtype)
    values = keras.random.normal(shape, stddev=spec.std, dtype=work, seed=_child(seed, 0))
    zeros_per_column = int(math.ceil(spec.sparsity * rows))
    if zeros_per_column:
        # A uniformly random set of exactly k rows per column: the top k of iid keys (top_k
        # returns k distinct indices even on ties), scattered into a mask.
        keys = keras.random.uniform((cols, rows), dtype="float32", seed=_child(seed, 1))
        picked = _ops.top_k(keys, zeros_per_column, sorted=False)[1]
        column = _ops.broadcast_to(_ops.arange(cols, dtype=picked.dtype)[:, None], (cols, zeros_per_column))
        pairs = _ops.reshape(_ops.stack([picked, column], axis=-1), (-1, 2))
        hits = _ops.scatter(pairs, _ops.ones((cols * zeros_per_column,), dtype=work), shape)
        values = _ops.where(hits > 0, _ops.zeros_like(values), values)
    return _cast(values, dtype)


def _mixture(spec: Mixture, view: LogicalView, fans: tuple[int, int] | None, dtype: str,
             seed: int | None) -> Any:
    live = [(w, s, i) for i, (w, s) in enumerate(spec.components) if w > 0]
    total = math.fsum(w for w, _, _ in live)
    # Per element, component i wins when u falls in its slice of [0, 1); later wheres go first
    # so that the smallest such i wins, as a categorical draw does.
    u = keras.random.uniform(view.native_shape, dtype="float32", seed=_child(seed, 0))
    weight, component, index = live[-1]
    out = _draw(component, view, fans, dtype, _child(seed, index + 1))
    edges = np.cumsum([w / total for w, _, _ in live])
    for edge, (weight, component, index) in reversed(list(zip(edges[:-1], live[:-1]))):
        draw = _draw(component, view, fans, dtype, _child(seed, index + 1))
        out = _ops.where(u < float(edge), draw, out)
    return out


def _custom(spec: Custom, view: LogicalView, fans: tuple[int, int] | None, dtype: str,
            seed: int | None) -> Any:
    if seed is None:
        # Keras' global generator picks the NumPy seed, so set_random_seed reproduces it.
        drawn = keras.random.randint((), 0, 2**31 - 1, dtype="int32", seed=None)
        seed = int(_ops.convert_to_numpy(drawn))
    host = dtype if dtype in ("float16", "float32", "float64") else "float32"
    logical = _reference_sample(spec, view.logical_shape, seed=np.random.default_rng(seed),
                                dtype=host, fans=fans)
    return _ops.convert_to_tensor(view.to_native(logical), dtype=dtype)


def _to_native(view: LogicalView, logical: Any) -> Any:
    if view.is_plain and view.axes == tuple(range(len(view.axes))):
        return logical
    permuted = tuple(view.pre_shape[a] for a in view.axes)
    inverse = [0] * len(view.axes)
    for position, axis in enumerate(view.axes):
        inverse[axis] = position
    x = _ops.transpose(_ops.reshape(logical, permuted), inverse)
    return _ops.reshape(x, view.native_shape)


def _draw(spec: Spec, view: LogicalView, fans: tuple[int, int] | None, dtype: str,
          seed: int | None) -> Any:
    """A native-layout tensor of ``spec`` for ``view`` (fans default to the view's)."""
    if spec.uses_fans and fans is None:
        fans = view.fans
    if math.prod(view.native_shape) == 0:
        return _ops.zeros(view.native_shape, dtype=dtype)
    if isinstance(spec, Mixture):
        return _mixture(spec, view, fans, dtype, seed)
    if _elementwise(spec):
        return _draw_elementwise(spec, view.native_shape, fans, dtype, seed)
    if isinstance(spec, Custom):
        return _custom(spec, view, fans, dtype, seed)
    if isinstance(spec, Eye) and view.is_plain:
        # A 2-D plain view is the identity or the transpose, and eye(a, b).T is eye(b, a).
        return _ops.eye(*view.native_shape, dtype=dtype)
    shape = view.logical_shape
    if isinstance(spec, Orthogonal):
        logical = _orthogonal(spec, shape, dtype, seed)
    elif isinstance(spec, Eye):
        logical = _ops.eye(shape[0], shape[1], dtype=dtype)
    elif isinstance(spec, Dirac):
        logical = _dirac(spec, shape, dtype)
    elif isinstance(spec, Sparse):
        logical = _sparse(spec, shape, dtype, seed)
    else:  # pragma: no cover - every Spec kind is handled above
        raise SpecError(f"spec={spec!r} is not allowed; it is not a multiinit spec")
    return _to_native(view, logical)


def _resolve_dtype(spec: Spec, dtype: Any, where: str) -> str:
    resolved = keras.backend.standardize_dtype(keras.backend.floatx() if dtype is None else dtype)
    if resolved not in _FLOATS and (spec.random or isinstance(spec, Custom)):
        raise SpecError(
            f"{spec!r} cannot fill {where}: dtype={resolved!r} is not allowed; a random spec "
            f"draws one of {', '.join(_FLOATS)}"
        )
    return resolved
