"""Spec -> values, with ``keras.ops`` and ``keras.random`` (so any Keras 3 backend runs it),
and NumPy on the host where it is faster (on TensorFlow the host arrays cross without a copy).

``_draw(spec, view, fans, dtype, seed, path=None)`` gives a tensor in the native layout of
``view``; ``seed`` is a stateless Keras seed (an int), a ``keras.random.SeedGenerator`` (the
drop-ins pass Keras' own seed objects), or None for Keras' global generator (how the seed of
each call is chosen is ``compiled.py``'s, and ``model.py``'s for a whole model); ``path`` names
the parameter in a user law's errors. ``_resolve_dtype`` says which dtype a spec fills and
refuses the ones it cannot.

Decisions (each one tested in ``tests/test_keras_*.py``):

Fans
    ``fans`` given win (a bias at model level: its kernel's). A ``with_axes`` spec reads its
    fans off the shape the initializer receives, ``spec.fans(view.native_shape)`` (Keras'
    own layout, JAX's meaning of the axes); any other fan-based spec uses the logical view's.

Truncated normals
    The reference's two samplers, on the backend (on JAX, where model-level draws are jitted,
    only traceable ones: JAX's own exact two-sigma sampler, and the inversion below for any
    other bounds): when at least half of the normal's mass lies
    inside the bounds (every variance-scaling form, Keras' +-2 std), normals are drawn with the
    backend's ``keras.random.normal(mean, std)``, the values outside are found on the host,
    redrawn (in rounds on the few of them, until all are inside) and scattered back: exact,
    and about 1.2x the cost of the normal draw itself (1.4x for bounds holding 84% of the
    mass), where TF's own two-sigma ``truncated_normal`` costs 1.6x and Keras' torch backend
    lets ~4e-6 of its draws out. Narrower bounds invert the normal CDF on U(Phi(low),
    Phi(high)), in float32 when both bounds are within 3 std (float32 resolves CDF values
    there far below any statistical test), in float64 otherwise (in float32 a far tail would
    be quantized), then clip to the bounds. On TensorFlow a float32 draw with both bounds
    within 3 std always inverts (``_inverted_on_tf``): TF's uniform and ``erfinv`` cost about
    its normal draw, and the affine map and the clip run in NumPy from the tensor's memory
    into the buffer TF takes without a copy, 1.1x the normal draw for any such bounds. Where
    the backend has no float64 (JAX without x64) far bounds are drawn by the
    reference's own sampler on the host, seeded by the call (inside ``jax.jit``, where nothing
    reaches the host, in float32). Bounds both beyond 40 std (torch's
    ``trunc_normal_(std=0.02)`` defaults: +-100 std) hold more than any float normal sampler
    can reach (a float64 Box-Muller or ziggurat stops near 38.6 std), so the law is the
    normal's: one normal draw, no clip. Comparisons use the
    bounds rounded inward to the working dtype, so no value is outside them; a half-precision
    result is the float32 one rounded (rounding is monotone, so it stays within the bounds as
    that dtype rounds them).

Mixtures of uniforms and constants (the seed chapter's law)
    When the uniforms all have one density and constants fill exactly the gaps between them
    (the chapter's 1/4 U(5, 10), 1/2 zeros, 1/4 U(-10, -5) is U(-10, 10) with its middle half
    set to 0), one integer word per element, uniform on 2**25 values, is the whole law: the
    word times the hull's width / 2**25 (exact integers in float32, and a step of at most every
    uniform's width * 2**-23, the backends' own float32 resolution: for the chapter 5 * 2**-23,
    as ``keras.random.uniform(5, 10)`` draws), with integer comparisons picking the gaps: a
    draw, two float passes and a where, fewer passes than the chapter's own ``MyInit``.
    Otherwise one draw of 30 random bits per element (``keras.random.randint(0, 2**30)``):
    the low 23 bits are the uniform value, ``u = m * 2**-23`` built exactly as the backends build a
    float32 uniform (bits of a float in [1, 2), minus 1), so every uniform component keeps the
    backend's own float32 resolution, ``low + (high - low) * u``; the component is picked by
    comparing the whole word with thresholds that are multiples of 2**23, so the choice uses
    the top 7 bits, independent of the value's. That is exact for weights that are multiples
    of 1/128 (the chapter's 1/4, 1/2, 1/4); other weights take the choice from a second
    30-bit draw (probabilities exact to 2**-30, finer than float32's resolution). Uniform
    components of equal width share one multiplication. The result never reaches a
    component's ``high`` (checked once per spec on the extreme bit patterns, clamped only
    where float32 rounding would reach it). float64 mixtures draw each component with its
    own float64 law (23 bits would quantize them), as do mixtures holding any other law: one
    uniform picks per element among full draws of the components.

Other laws
    Built-in specs draw natively with ``keras.random``; on TensorFlow a float32 uniform takes
    TF's uniform bits and maps them itself (``_uniform_on_tf``: Keras' numbers bit for bit,
    with the clip that keeps the open bound out in the same pass, in chunks whose TF tensors
    reuse each other's memory: 0.66-0.77x Keras' own uniform initializers); elementwise laws
    draw directly in the native shape; orthogonal, eye and dirac are drawn on the logical
    view and rearranged with ``keras.ops``, except that eye and dirac are written straight
    into Keras' layout on the host (``host.write_eye``, ``write_dirac``: zeros, then the
    ones) where the host can serve (not inside a JAX trace). Sparse draws its normals
    straight in the native layout (a logical column of a Keras kernel is a native row) and
    picks each column's zero rows as the k smallest of iid 30-bit keys with
    ``np.argpartition`` on the host (a tenth of TF's ``top_k``; on JAX,
    traceable, with ``top_k``). Random specs need a floating dtype
    (float16, bfloat16, float32, float64); constant, eye and dirac also fill integer
    variables. Half-precision draws are made in float32 and cast.

User laws (``custom``)
    ``fn(rng, logical_shape, dtype)`` runs behind the fence ``reference.call_law`` (an
    exception, a wrong shape or dtype, non-finite values: a ``LawError`` naming the law and
    the parameter path), with ``numpy.random.default_rng`` seeded from the call's seed (or,
    with ``seed=None``, from an integer drawn from Keras' global generator, so
    ``keras.utils.set_random_seed`` reproduces it). Besides the user's function and the
    fence, a call costs one pass: the fence casts the logical array to ``dtype`` while it is
    rearranged into Keras' layout in cache-sized tiles shared between the pool's threads
    (``host.copy_striped``; NumPy's own transposing copy of a 4096x4096 array is several
    times slower), into a 64-byte-aligned buffer that TensorFlow takes without a copy (DLPack); other
    backends convert it as usual. ``dtype`` is the requested NumPy dtype, except bfloat16,
    for which ``fn`` is asked for float32 and the result is rounded. A law built with
    ``elementwise=True`` is called once per tile of the stream rule (``reference.law_values``),
    on the pool's threads, each tile cast straight into its place in that buffer through its
    logical view: no logical array and no transposing copy.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any, cast

import keras
import numpy as np
from keras import ops as _ops

from ..errors import SpecError
from ..fans import LogicalView
from ..host import affine, law_native, write_dirac, write_eye
from ..reference import truncated_standard_normal
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
    VarianceScaling,
    WithAxes,
    is_negative_zero,
)

_FLOATS = ("float16", "bfloat16", "float32", "float64")
_SQRT2 = math.sqrt(2.0)
# Below this many std on both sides, float32 resolves the normal CDF well enough to invert it.
_FLOAT32_TRUNCATION_LIMIT = 3.0
# Redraw the normals outside when at least this much of the mass lies inside (the reference's
# rule); invert the CDF for narrower bounds.
_REJECT_ABOVE = 0.5
# Beyond this many std on both sides no float normal sampler reaches: the law is the normal's.
_NO_MASS = 40.0
# The uniform bits of a float32 in [1, 2) (its mantissa) and its exponent.
_MANTISSA_BITS = 23
_ONE_BITS = 0x3F800000
# Random bits per element of the mixture's draw (keras.random.randint(0, 2**30)).
_WORD_BITS = 30
_CHOICE_BITS = _WORD_BITS - _MANTISSA_BITS


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / _SQRT2)


def _work_dtype(dtype: str) -> str:
    """The dtype random draws are made in: float64 stays, everything else draws in float32."""
    return "float64" if dtype == "float64" else "float32"


def _cast(x: Any, dtype: str) -> Any:
    return x if keras.backend.standardize_dtype(x.dtype) == dtype else _ops.cast(x, dtype)


def _child(seed: Any, index: int) -> Any:
    """The seed of the ``index``-th draw inside one call: an int seed derives one; a
    ``SeedGenerator`` advances by itself on every draw; None stays None (the global RNG)."""
    if seed is None or not isinstance(seed, (int, np.integer)):
        return seed
    return derive_seed(int(seed), index)


def _inward(bound: float, dtype: str, up: bool) -> float:
    """``bound`` rounded to ``dtype`` towards the inside of a support ([bound, ...) when ``up``)."""
    np_dtype = np.float64 if dtype == "float64" else np.float32
    rounded = np_dtype(bound)
    if up and float(rounded) < bound:
        rounded = np.nextafter(rounded, np_dtype(np.inf))
    if not up and float(rounded) > bound:
        rounded = np.nextafter(rounded, np_dtype(-np.inf))
    return float(rounded)


# --------------------------------------------------------------------------- truncated normals


def _truncated(
    shape: tuple[int, ...], mean: float, std: float, low: float, high: float, dtype: str, seed: Any
) -> Any:
    """N(mean, std**2) cut to [mean + low*std, mean + high*std]; never outside, any backend."""
    work = _work_dtype(dtype)
    lo, hi = mean + low * std, mean + high * std
    if min(-low, high) >= _NO_MASS:
        return _cast(keras.random.normal(shape, mean=mean, stddev=std, dtype=work, seed=seed), dtype)
    # Model-level draws are jitted on JAX (sharded.py); a layer built inside a tf.function
    # draws in its graph: nothing may go to the host there.
    traced = keras.backend.backend() == "jax" or _tracing()
    if keras.backend.backend() == "jax" and (low, high) == (-2.0, 2.0):
        # JAX's own two-sigma truncated normal is exact (an inverse CDF, clamped), and
        # traceable; then the same clip as the inversion below.
        y = _cast(keras.random.truncated_normal(shape, mean=mean, stddev=std, dtype=work, seed=seed), dtype)
        return _ops.clip(y, *_inside(lo, hi, dtype, open_high=False))
    if (
        keras.backend.backend() == "tensorflow"
        and dtype == "float32"
        and max(-low, high) <= _FLOAT32_TRUNCATION_LIMIT
    ):
        return _inverted_on_tf(shape, mean, std, low, high, seed)
    if _phi(high) - _phi(low) >= _REJECT_ABOVE and not traced:
        y = _cast(_rejected(shape, mean, std, low, high, work, seed), dtype)
        return _fit(y, lo, hi, dtype, open_high=False) if dtype in ("float16", "bfloat16") else y
    flip = low > 0  # work in the lower tail, where the CDF keeps its relative precision
    a, b = (-high, -low) if flip else (low, high)
    far = max(abs(low), abs(high)) > _FLOAT32_TRUNCATION_LIMIT
    work = "float64" if dtype == "float64" or far else "float32"
    if work == "float64" and not _holds("float64") and not _tracing():
        # JAX without x64: no float64 to invert in, and float32 would quantize a far tail.
        # The reference's own sampler on the host (the law is the same), seeded by the call.
        rng = np.random.default_rng(_host_seed(seed))
        host = "float16" if dtype == "float16" else "float32"
        x = (mean + std * truncated_standard_normal(rng, low, high, tuple(shape))).astype(host)
        y = _from_host(np.clip(x, *_inside(lo, hi, host, open_high=False)), dtype)
        return _fit(y, lo, hi, dtype, open_high=False) if dtype == "bfloat16" else y
    u = keras.random.uniform(shape, minval=_phi(a), maxval=_phi(b), dtype=work, seed=seed)
    x = _SQRT2 * _ops.erfinv(2.0 * u - 1.0)
    if flip:
        x = -x
    y = _cast(mean + std * x, dtype)
    # One clip, to the bounds rounded inward to the output dtype, catches everything: u on
    # Phi(a) = 0 (erfinv(-1) = -inf), an inverse that rounds past a bound, and the affine map
    # above rounding across it (e.g. 0.2133 + 0.7298 * 1.86 in float32).
    return _ops.clip(y, *_inside(lo, hi, dtype, open_high=False))


def _inverted_on_tf(
    shape: tuple[int, ...], mean: float, std: float, low: float, high: float, seed: Any
) -> Any:
    """The float32 inversion below, for bounds within 3 std on TensorFlow: TF draws the uniform
    bits and computes ``erfinv``; the map of the bits onto [2 Phi(a) - 1, 2 Phi(b) - 1] (TF's
    own arithmetic, so Keras' uniform exactly), then the affine map and the clip of the
    result, passes that TF's elementwise kernels would each run into a fresh tensor (each ~20%
    of its normal draw), run in NumPy (``host.affine``: in cache-sized blocks on every thread)
    in one aligned buffer that TF takes without a copy, chunk by chunk (``_uniform_on_tf``).
    0.89-1.08x TF's normal draw, where rejection costs 1.2x at +-2 std and 1.4x for bounds
    holding 84% of the mass (1/0.84 draws before any search)."""
    flip = low > 0  # work in the lower tail, where the CDF keeps its relative precision
    a, b = (-high, -low) if flip else (low, high)
    # The clip to the bounds rounded inward catches erfinv(-1) = -inf and any rounding across.
    floor, ceiling = _inside(mean + low * std, mean + high * std, "float32", open_high=False)
    scale = np.float32(-std * _SQRT2 if flip else std * _SQRT2)
    if _tracing():
        # In a tf.function's graph: the same float32 operations as TF ops, the same numbers.
        u = keras.random.uniform(shape, 2.0 * _phi(a) - 1.0, 2.0 * _phi(b) - 1.0, dtype="float32", seed=seed)
        y = _ops.add(_ops.multiply(_ops.erfinv(u), float(scale)), float(np.float32(mean)))
        return _ops.clip(y, float(np.float32(floor)), float(np.float32(ceiling)))

    def inverted(part: np.ndarray) -> None:
        e = np.asarray(_ops.erfinv(_from_host(part, "float32")))  # a read-only view of TF's result
        # erfinv has read its input: the same buffer takes the result (one buffer, not two).
        affine(part, e, scale, np.float32(mean), (np.float32(floor), np.float32(ceiling)))

    out = _uniform_on_tf(shape, 2.0 * _phi(a) - 1.0, 2.0 * _phi(b) - 1.0, seed, then=inverted)
    return _from_host(out, "float32")


def _uniform_on_tf(
    shape: tuple[int, ...],
    low: float,
    high: float,
    seed: Any,
    bounds: tuple[float, float] | None = None,
    then: Callable[[np.ndarray], object] | None = None,
) -> np.ndarray:
    """``keras.random.uniform(shape, low, high, "float32", seed)`` on TensorFlow, bit for bit,
    clipped to ``bounds`` when given, then ``then(part)`` on each part: an aligned host buffer
    that TF takes without a copy. TF's uniform bits, then its own map (two float32 operations,
    in TF's order), done with the clip in one pass a block at a time on every thread
    (``host.affine``; TF's map makes two passes and two fresh tensors, the clip a third), chunk
    by chunk, so that TF's own tensors reuse the memory the previous chunk freed."""
    start = np.float32(low)
    width = np.float32(np.float32(high) - start)
    clipped = None if bounds is None else (np.float32(bounds[0]), np.float32(bounds[1]))
    out = _aligned_empty(tuple(shape), np.dtype("float32"))
    flat = out.reshape(-1)
    uniform = _unit_uniform(seed)
    for first in range(0, flat.size, _UNIFORM_CHUNK):
        part = flat[first : first + _UNIFORM_CHUNK]
        affine(part, np.asarray(uniform(first, part.size)), width, start, clipped)
        if then is not None:
            then(part)
    return out


#: Values per chunk of ``_uniform_on_tf`` (16 MB of float32; a multiple of 4, Philox's values
#: per counter). TF's CPU tensors come from malloc, which maps a fresh region for each block
#: above its threshold (at most 32 MB) and gives it back when it is freed: on a machine whose
#: transparent huge pages are on ``madvise``, a fault per 4 KB page, 16k for each 64 MB
#: tensor. A chunk's tensors are smaller, so the next chunk's reuse their memory: on such a
#: machine 33k faults a 4096x4096 call fewer and 0.96x TF's normal draw instead of 1.04
#: (interleaved, 12 rounds; 2M values read 0.99, the whole tensor at once 1.04).
_UNIFORM_CHUNK = 1 << 22


def _unit_uniform(seed: Any) -> Callable[[int, int], Any]:
    """``part(first, count)``: values ``first`` to ``first + count`` (``first`` a multiple of 4)
    of the flat float32 uniform bits on [0, 1) that ``keras.random.uniform(shape,
    dtype="float32", seed=seed)`` maps onto its bounds on TensorFlow: Keras' seed (drawn once,
    here), TF's stateless op. Philox gives four values per step of its 128-bit counter, so a
    part starts ``first / 4`` steps on."""
    import tensorflow as tf  # the backend Keras runs on: already imported
    from keras.src.backend.tensorflow.random import _cast_seed
    from keras.src.random.seed_generator import draw_seed

    key, counter = tf.raw_ops.StatelessRandomGetKeyCounter(seed=_cast_seed(draw_seed(seed)))
    low, high = (int(word) for word in np.asarray(counter))

    def part(first: int, count: int) -> Any:
        step = low + first // 4
        at = np.array([step % 2**64, (high + (step >> 64)) % 2**64], dtype=np.uint64)
        return tf.raw_ops.StatelessRandomUniformV2(
            shape=(count,), key=key, counter=at, alg=_TF_AUTO_SELECT, dtype=tf.float32
        )

    return part


#: TF's "auto_select" RNG algorithm, the one ``tf.random.stateless_uniform`` passes by default.
_TF_AUTO_SELECT = 3


def _rejected(
    shape: tuple[int, ...], mean: float, std: float, low: float, high: float, work: str, seed: Any
) -> Any:
    """The reference's rejection sampler: normals, the ones outside redrawn until inside."""
    lo = _inward(mean + low * std, work, up=True)
    hi = _inward(mean + high * std, work, up=False)
    x = keras.random.normal(shape, mean=mean, stddev=std, dtype=work, seed=_child(seed, 0))
    outside = np.flatnonzero(_ops.convert_to_numpy(_ops.logical_or(x < lo, x > hi)))
    if outside.size == 0:
        return x
    inside = _phi(high) - _phi(low)
    kept: list[np.ndarray] = []
    missing, round_ = outside.size, 1
    while missing > 0:
        # A few more than the expected need, so that one or two rounds suffice.
        count = int(missing / inside + 6 * math.sqrt(missing) + 16)
        y = _ops.convert_to_numpy(
            keras.random.normal((count,), mean=mean, stddev=std, dtype=work, seed=_child(seed, round_))
        )
        y = y[(y >= lo) & (y <= hi)]
        kept.append(y[:missing])
        missing -= min(missing, y.size)
        round_ += 1
    return _replaced(x, outside, np.concatenate(kept), work)


def _replaced(x: Any, positions: np.ndarray, values: np.ndarray, work: str) -> Any:
    """``x`` with the elements at flat ``positions`` replaced by ``values``."""
    if keras.backend.backend() == "tensorflow":
        # TF's scatter copies the whole tensor and then scatters slowly (40% of a normal draw
        # for 2.8M of 16.8M values); on the host it is one copy into an aligned buffer, the
        # writes, and a tensor TF takes without a copy.
        host = _aligned_empty(tuple(x.shape), np.dtype(work))
        np.copyto(host, np.asarray(x))  # np.asarray of a CPU tensor is a read-only view
        host.reshape(-1)[positions] = values
        return _from_host(host, work)
    flat = _ops.scatter_update(
        _ops.reshape(x, (-1,)), positions.reshape(-1, 1), _ops.convert_to_tensor(values, dtype=work)
    )
    return _ops.reshape(flat, tuple(x.shape))


# --------------------------------------------------------------------------- elementwise laws


def _elementwise(spec: Spec) -> bool:
    """True when every element is drawn independently (so the native shape can be drawn as is)."""
    if isinstance(spec, (Constant, Uniform, Normal, TruncatedNormal)):
        return True
    if isinstance(spec, Mixture):
        return all(_elementwise(s) for _, s in spec.components)
    return spec.as_variance_scaling() is not None


def _constant(shape: tuple[int, ...], value: float, dtype: str) -> Any:
    """A tensor of ``value``. Zeros and ones (every bias and norm scale) take TensorFlow's
    fast path (33 us a call for a small one, where ``full``'s broadcast costs 59). -0.0 is
    the negated zeros: TensorFlow caches converted scalars under keys where 0.0 == -0.0, so
    once a +0.0 has been converted, ``full(shape, -0.0)`` fills +0.0."""
    if value == 0:
        zeros = _ops.zeros(shape, dtype=dtype)
        return _ops.negative(zeros) if is_negative_zero(value) else zeros
    if value == 1:
        return _ops.ones(shape, dtype=dtype)
    return _ops.full(shape, value, dtype=dtype)


def _draw_elementwise(
    spec: Spec, shape: tuple[int, ...], fans: tuple[int, int] | None, dtype: str, seed: Any
) -> Any:
    if isinstance(spec, Constant):
        return _constant(shape, spec.value, dtype)
    work = _work_dtype(dtype)
    if isinstance(spec, Uniform):
        return _uniform(shape, spec.low, spec.high, dtype, seed)
    if isinstance(spec, Normal):
        x = keras.random.normal(shape, mean=spec.mean, stddev=spec.std, dtype=work, seed=seed)
    elif isinstance(spec, TruncatedNormal):
        return _truncated(shape, spec.mean, spec.std, spec.low, spec.high, dtype, seed)
    else:
        # _elementwise let only a fan-based spec through to here, and _draw gave it its fans.
        scaled = cast(VarianceScaling, spec.as_variance_scaling())
        distribution, number = scaled.law(*cast("tuple[int, int]", fans))
        if distribution == "uniform":
            return _uniform(shape, -number, number, dtype, seed)
        if distribution == "untruncated_normal":
            x = keras.random.normal(shape, mean=0.0, stddev=number, dtype=work, seed=seed)
        else:
            return _truncated(shape, 0.0, number, -2.0, 2.0, dtype, seed)
    return _cast(x, dtype)


# --------------------------------------------------------------------------- mixtures


def _bits_plan(spec: Mixture) -> tuple[Any, ...] | None:
    """How a float32 mixture of uniforms and constants draws from random bits (a hull plan,
    see ``_plan_hull``, else a bits plan, see ``_plan_bits``), or None for a mixture holding
    any other law."""
    live = tuple((w, s) for w, s in spec.components if w > 0)
    if not all(isinstance(s, (Uniform, Constant)) for _, s in live):
        return None
    return _plan_hull(live) or _plan_bits(live)


#: A hull draw takes at most this many bits: float32 holds every integer up to 2**24 exactly.
_HULL_BITS = 25


@functools.lru_cache(maxsize=256)
def _plan_hull(live: tuple[tuple[float, Spec], ...]) -> tuple[Any, ...] | None:
    """``("hull", half, step, offset, gaps)`` when the mixture is one uniform over the hull of
    its uniforms with the gaps between them set to constants: its uniforms all have one
    density, each gap is filled by a constant of exactly the gap's mass, and the boundaries
    are dyadic fractions of the hull (the seed chapter's 1/4 U(-10, -5) + 1/2 zeros + 1/4
    U(5, 10) is U(-10, 10) with [-5, 5) set to 0). Then one integer word per element,
    uniform on [-half, half), is the whole law: ``word * step + offset`` in float32 (the word
    is exact there), with the words of gap j, ``gaps[j] = (first, end, value)``, set to
    its constant. ``step`` is at most every uniform's width * 2**-23, the backends' own
    float32 resolution. The last element, ``(floor, ceiling)``, clamps the hull's own ends
    where float32 rounding reaches past them (None: it does not; the chapter's centred hull
    needs no clamp). None when any of that does not hold, or rounding would put an inner
    piece's end values outside it."""
    total = math.fsum(w for w, _ in live)
    uniforms = sorted(((w / total, s) for w, s in live if isinstance(s, Uniform)), key=lambda p: p[1].low)
    constants = [(w / total, s.value) for w, s in live if isinstance(s, Constant)]
    if not uniforms:
        return None
    density = uniforms[0][0] / (uniforms[0][1].high - uniforms[0][1].low)
    if any(abs(w / (s.high - s.low) / density - 1) > 1e-12 for w, s in uniforms):
        return None
    gaps: list[tuple[float, float, tuple[float, float]]] = []
    for (_, left), (_, right) in itertools.pairwise(uniforms):
        if right.low < left.high:
            return None  # overlapping uniforms
        if right.low > left.high:
            mass = density * (right.low - left.high)
            used = [g[2] for g in gaps]
            match = next((c for c in constants if abs(c[0] - mass) <= 1e-12 and c not in used), None)
            if match is None:
                return None
            gaps.append((left.high, right.low, match))
    if len(gaps) != len(constants):
        return None
    low, high = uniforms[0][1].low, uniforms[-1][1].high
    hull = high - low
    narrowest = min(s.high - s.low for _, s in uniforms)
    bits = _MANTISSA_BITS + max(0, math.ceil(math.log2(hull / narrowest) - 1e-9))
    if bits > _HULL_BITS:
        return None
    words = 1 << bits

    def word_of(x: float) -> int | None:
        exact = (x - low) / hull * words
        return round(exact) if abs(exact - round(exact)) < 1e-6 else None

    edges = [word_of(x) for _, s in uniforms for x in (s.low, s.high)]
    if any(e is None for e in edges):
        return None  # a boundary between word values
    half = words // 2
    f32 = np.float32
    step = f32(hull / words)
    offset = f32(low + half * float(step))

    def value(word: int) -> float:
        x = f32(f32(word) * step)
        return float(x if offset == 0 else f32(x + offset))

    def edge(x: float) -> int:
        # Only for a uniform's low or high, each of whose words exists (checked above).
        return cast(int, word_of(x))

    clamps: list[float | None] = [None, None]
    for i, (_, s) in enumerate(uniforms):
        first, end = edge(s.low) - half, edge(s.high) - half
        floor, ceiling = _inside(s.low, s.high, "float32", open_high=True)
        if value(first) < floor:
            if i > 0:
                return None
            clamps[0] = floor  # the hull's own bottom: one maximum fixes it
        if value(end - 1) > ceiling:
            if i < len(uniforms) - 1:
                return None
            clamps[1] = ceiling  # the hull's own top (rounded up to it): one minimum
    return (
        "hull",
        half,
        float(step),
        float(offset),
        tuple((edge(a) - half, edge(b) - half, c[1]) for a, b, c in gaps),
        tuple(clamps),
    )


def _mixture_hull(plan: tuple[Any, ...], shape: tuple[int, ...], seed: Any) -> Any:
    """A float32 tensor of the hull plan (see ``_plan_hull``): one word, a product, and a where
    per gap, on bool masks made of integer comparisons."""
    _, half, step, offset, gaps, (floor, ceiling) = plan
    word = keras.random.randint(shape, -half, half, dtype="int32", seed=_child(seed, 0))
    out = _ops.cast(word, "float32") * step
    if offset != 0.0:
        out = out + offset
    if floor is not None or ceiling is not None:
        # Only the hull's own ends can round outside (checked when planned); the gap values
        # written below are the constants themselves.
        out = _ops.clip(out, -np.inf if floor is None else floor, np.inf if ceiling is None else ceiling)
    for first, end, value in gaps:
        # A 0-d tensor, not the Python scalar: see _constant for -0.0.
        out = _ops.where(_ops.logical_and(word >= first, word < end), _constant((), value, "float32"), out)
    return out


@functools.lru_cache(maxsize=256)
def _plan_bits(live: tuple[tuple[float, Spec], ...]) -> tuple[tuple[Any, ...], tuple[int, ...], bool]:
    """``(pieces, thresholds, one_word)``: piece i is ``("constant", value)`` or ``("uniform",
    width, offset, floor, ceiling)``, whose values are ``f * width + offset`` for the float32
    f in [1, 2) made of the word's low 23 bits, clamped to ``floor``/``ceiling`` where float32
    rounding would leave [low, high) (None: it cannot); an element takes piece i when its
    choice word lies below ``thresholds[i]`` and above the previous ones; ``one_word`` says
    the choice is the value's own word (every weight a multiple of 2**-_CHOICE_BITS)."""
    total = math.fsum(w for w, _ in live)
    scale = 1 << _CHOICE_BITS
    one_word = all(abs(w / total * scale - round(w / total * scale)) < 1e-9 for w, _ in live)
    word = 1 << _WORD_BITS
    edges, acc = [], 0.0
    for w, _ in live[:-1]:
        acc += w / total
        edges.append(round(acc * scale) << _MANTISSA_BITS if one_word else min(word, round(acc * word)))
    f32 = np.float32
    first, last = f32(1.0), f32(2.0) - f32(2.0**-_MANTISSA_BITS)
    pieces: list[tuple[Any, ...]] = []
    for _, s in live:
        if isinstance(s, Constant):
            pieces.append(("constant", s.value))
            continue
        s = cast(Uniform, s)  # _bits_plan plans only mixtures of uniforms and constants
        width = f32(s.high - s.low)
        offset = f32(s.low - float(width))
        # Exactly the float32 arithmetic the backend does (a product, then a sum), at both
        # ends of f; rounding is monotone, so the values in between lie between these two.
        smallest, largest = f32(f32(first * width) + offset), f32(f32(last * width) + offset)
        floor, ceiling = _inside(s.low, s.high, "float32", open_high=True)
        pieces.append(
            (
                "uniform",
                float(width),
                float(offset),
                floor if smallest < floor else None,
                ceiling if largest > ceiling else None,
            )
        )
    return tuple(pieces), tuple(edges), one_word


def _mixture_bits(
    plan: tuple[tuple[Any, ...], tuple[int, ...], bool], shape: tuple[int, ...], seed: Any
) -> Any:
    """A float32 tensor of the mixture ``plan`` describes (see ``_plan_bits``)."""
    pieces, edges, one_word = plan
    word = keras.random.randint(shape, 0, 1 << _WORD_BITS, dtype="int32", seed=_child(seed, 0))
    choice = (
        word
        if one_word
        else keras.random.randint(shape, 0, 1 << _WORD_BITS, dtype="int32", seed=_child(seed, 1))
    )
    f = None
    scaled: dict[float, Any] = {}

    def value(piece: tuple[Any, ...]) -> Any:
        nonlocal f
        if piece[0] == "constant":
            return _constant((), piece[1], "float32")  # a 0-d tensor: see _constant for -0.0
        _, width, offset, floor, ceiling = piece
        if f is None:
            # The float32 in [1, 2) whose mantissa is the word's low 23 bits: how the backends
            # make a float32 uniform (before they subtract 1).
            f = _ops.view(
                _ops.bitwise_or(_ops.bitwise_and(word, (1 << _MANTISSA_BITS) - 1), _ONE_BITS), "float32"
            )
        if width not in scaled:
            scaled[width] = f * width
        x = scaled[width] if offset == 0.0 else scaled[width] + offset
        if floor is not None:
            x = _ops.maximum(x, floor)
        return x if ceiling is None else _ops.minimum(x, ceiling)

    out = value(pieces[-1])
    for edge, piece in zip(reversed(edges), reversed(pieces[:-1]), strict=True):
        # Later wheres go first, so the first piece whose threshold lies above the word wins.
        out = _ops.where(choice < edge, value(piece), out)
    if tuple(out.shape) != tuple(shape):  # one piece, a constant
        out = _ops.broadcast_to(out, shape)
    return out


def _mixture(spec: Mixture, view: LogicalView, fans: tuple[int, int] | None, dtype: str, seed: Any) -> Any:
    plan = _bits_plan(spec) if dtype == "float32" else None
    if plan is not None and plan[0] == "hull":
        return _mixture_hull(plan, view.native_shape, seed)
    if plan is not None:
        return _mixture_bits(plan, view.native_shape, seed)
    live = [(w, s, i) for i, (w, s) in enumerate(spec.components) if w > 0]
    total = math.fsum(w for w, _, _ in live)
    # Per element, component i wins when u falls in its slice of [0, 1); later wheres go first
    # so that the smallest such i wins, as a categorical draw does.
    u = keras.random.uniform(view.native_shape, dtype="float32", seed=_child(seed, 0))
    _, component, index = live[-1]
    out = _draw(component, view, fans, dtype, _child(seed, index + 1))
    edges = np.cumsum([w / total for w, _, _ in live])
    for edge, (_, component, index) in reversed(list(zip(edges[:-1], live[:-1], strict=True))):
        draw = _draw(component, view, fans, dtype, _child(seed, index + 1))
        out = _ops.where(u < float(edge), draw, out)
    return out


# --------------------------------------------------------------------------- supports


def _np_dtype(dtype: str) -> np.dtype:
    if dtype == "bfloat16":
        import ml_dtypes  # a dependency of Keras 3

        # ml_dtypes' compiled extension has no stubs: its bfloat16, so this dtype, is Any to mypy.
        bfloat16: np.dtype = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(dtype)


@functools.lru_cache(maxsize=1024)
def _inside(low: float, high: float, dtype: str, open_high: bool) -> tuple[float, float]:
    """``(floor, ceiling)``: the smallest value of ``dtype`` >= ``low`` and the largest below
    ``high`` (or <= it, when the support is closed), as the reference rounds bounds inward."""
    np_dtype = _np_dtype(dtype)
    floor = np.array(low, dtype=np_dtype)
    if float(floor) < low:
        floor = np.nextafter(floor, np.array(np.inf, dtype=np_dtype))
    ceiling = np.array(high, dtype=np_dtype)
    if float(ceiling) > high or (open_high and float(ceiling) == high):
        ceiling = np.nextafter(ceiling, np.array(-np.inf, dtype=np_dtype))
    return float(floor), float(ceiling)


def _fit(x: Any, low: float, high: float, dtype: str, open_high: bool) -> Any:
    """``x`` (already in ``dtype``, computed in float32 within [low, high]) with the values its
    rounding to ``dtype`` pushed onto or past a bound pulled back inside."""
    floor, ceiling = _inside(low, high, dtype, open_high)
    np_dtype = _np_dtype(dtype)
    # Rounding is monotone: only the bounds themselves, rounded, can land outside.
    below = float(np.array(np.float32(low), dtype=np_dtype)) < floor
    above = float(np.array(np.float32(high), dtype=np_dtype)) > ceiling
    if below and above:
        return _ops.clip(x, floor, ceiling)
    if below:
        return _ops.maximum(x, floor)
    return _ops.minimum(x, ceiling) if above else x


def _uniform(shape: tuple[int, ...], low: float, high: float, dtype: str, seed: Any) -> Any:
    """U[low, high) with the backend's uniform, never returning ``high`` in ``dtype``."""
    work = _work_dtype(dtype)
    if work == "float32":
        # The backends compute low + (high - low) * u in float32 with u < 1: at worst the
        # largest float32 below 1, whose value may round up to high for some bounds.
        f32 = np.float32
        largest = f32(f32(f32(1.0) - f32(2.0**-24)) * f32(f32(high) - f32(low))) + f32(low)
        floor, ceiling = _inside(low, high, "float32", open_high=True)
        bounds = (floor, ceiling) if largest > ceiling or f32(low) < floor else None
        if keras.backend.backend() == "tensorflow" and not _tracing():
            x = _from_host(_uniform_on_tf(shape, low, high, seed, bounds), "float32")
        else:
            x = keras.random.uniform(shape, minval=low, maxval=high, dtype=work, seed=seed)
            x = x if bounds is None else _ops.clip(x, *bounds)
    else:
        x = keras.random.uniform(shape, minval=low, maxval=high, dtype=work, seed=seed)
    y = _cast(x, dtype)
    return _fit(y, low, high, dtype, open_high=True) if dtype in ("float16", "bfloat16") else y


# --------------------------------------------------------------------------- whole-tensor laws


def _orthogonal(spec: Orthogonal, shape: tuple[int, ...], dtype: str, seed: Any) -> Any:
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


def _written_on_host(spec: Eye | Dirac, view: LogicalView, dtype: str) -> np.ndarray | None:
    """An eye or dirac tensor built in Keras' layout on the host: zeros, then the ones where the
    view puts them (``host.write_eye``, ``write_dirac``; a 4096x4096 dirac in 8 ms against
    136 by the backend ops, which build an identity, multiply and transpose). None where the
    host cannot serve: inside a JAX trace, a view that reshapes, or a dtype NumPy lacks
    (bfloat16)."""
    if not view.is_plain or dtype == "bfloat16" or _tracing():
        return None
    out = _aligned_empty(view.native_shape, np.dtype(dtype))
    logical = out.transpose(view.axes)  # the buffer seen in the logical layout
    if isinstance(spec, Eye):
        write_eye(logical)
    else:
        write_dirac(logical, spec.groups)
    return out


def _sparse(spec: Sparse, view: LogicalView, dtype: str, seed: Any) -> Any:
    """N(0, std**2) with ceil(sparsity * rows) zeros in every logical column, drawn straight in
    the native layout (a logical column of a Keras kernel is a native row: no transpose)."""
    rows, cols = view.logical_shape
    work = _work_dtype(dtype)
    plain = view.is_plain
    shape = view.native_shape if plain else view.logical_shape
    values = keras.random.normal(shape, stddev=spec.std, dtype=work, seed=_child(seed, 0))
    zeros_per_column = math.ceil(spec.sparsity * rows)
    if zeros_per_column:
        # A uniformly random set of exactly k rows per column: the k smallest of iid 30-bit
        # keys (ties, 2**-30 apart, are as rare as they are harmless).
        keys = keras.random.randint((cols, rows), 0, 1 << _WORD_BITS, dtype="int32", seed=_child(seed, 1))
        # The native axis a logical column runs along: axis 1 of a Keras (in, out) kernel.
        along = view.axes[0] if plain else 0
        if keras.backend.backend() == "jax" or _tracing():
            # Traceable (model-level draws are jitted on JAX, a layer built in a tf.function
            # draws in its graph): top_k on the keys' negation.
            picked = _ops.top_k(-keys, zeros_per_column, sorted=False)[1]
            column = _ops.arange(cols, dtype=picked.dtype)[:, None]
            flat = (column * rows + picked) if along == 1 else (picked * cols + column)
            count = cols * zeros_per_column
            values = _ops.scatter_update(
                _ops.reshape(values, (-1,)), _ops.reshape(flat, (count, 1)), _ops.zeros((count,), dtype=work)
            )
            values = _ops.reshape(values, shape)
        else:
            # np.argpartition on the host takes a tenth of TF's top_k.
            picked = np.argpartition(np.asarray(_ops.convert_to_numpy(keys)), zeros_per_column - 1, axis=1)[
                :, :zeros_per_column
            ]
            column = np.arange(cols)[:, None]
            flat = (column * rows + picked) if along == 1 else (picked * cols + column)
            values = _replaced(values, flat.reshape(-1), np.zeros(flat.size, np.dtype(work)), work)
    out = _cast(values, dtype)
    return out if plain else _to_native(view, out)


# --------------------------------------------------------------------------- user laws


def _host_seed(seed: Any) -> int:
    """The NumPy seed of a host draw: an int seed itself; otherwise one drawn with Keras' global
    generator (or the drop-in's SeedGenerator), so ``keras.utils.set_random_seed`` reproduces it."""
    if seed is not None and isinstance(seed, (int, np.integer)):
        return int(seed)
    return int(_ops.convert_to_numpy(keras.random.randint((), 0, 2**31 - 1, dtype="int32", seed=seed)))


def _tracing() -> bool:
    """True inside a JAX trace (``jax.jit``) or a TensorFlow graph (a layer built inside a
    ``tf.function``), where values cannot go to the host."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # the backend Keras runs on: already imported

        return not tf.executing_eagerly()
    if keras.backend.backend() != "jax":
        return False
    import jax  # the backend Keras runs on: already imported

    return isinstance(_ops.zeros(()), jax.core.Tracer)


def _holds(dtype: str) -> bool:
    """True when the backend makes tensors of ``dtype`` (JAX without x64 makes float64 float32)."""
    made: str = keras.backend.standardize_dtype(_ops.zeros((1,), dtype=dtype).dtype)
    return made == dtype


def _custom(spec: Custom, view: LogicalView, dtype: str, seed: Any, path: str | None) -> Any:
    host = dtype if dtype in ("float16", "float32", "float64") else "float32"
    # In Keras' layout on the host, in an aligned buffer TensorFlow takes without a copy.
    native = law_native(spec, (_host_seed(seed),), view, host, path, empty=_aligned_empty)
    return _from_host(native, dtype)


#: TensorFlow's alignment for tensors it takes without a copy (it aborts on less).
_ALIGN = 64


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    nbytes = max(1, math.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start : start + math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)


def filled_in_place(view: LogicalView, dtype: str, fill: Callable[[np.ndarray], object]) -> Any:
    """A tensor in ``view``'s native layout whose values ``fill`` writes into a logical view of
    a new host buffer (``view`` plain: the view is a transpose of the buffer, no copy), which
    TensorFlow then takes without a copy. Tiles written into it land in Keras' layout directly:
    no logical temporary and no transposing pass over the whole tensor afterwards.

    >>> import numpy as np
    >>> from multiinit.fans import LogicalView
    >>> view = LogicalView.of((3, 2), "in,out")  # a Dense kernel, 3 inputs and 2 outputs
    >>> t = filled_in_place(view, "float32", lambda a: a.__setitem__(..., [[1, 2, 3], [4, 5, 6]]))
    >>> keras.ops.convert_to_numpy(t).tolist()
    [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    """
    out = _aligned_empty(view.native_shape, np.dtype(dtype))
    fill(view.to_logical(out))
    return _from_host(out, dtype)


#: False while a value is drawn for a variable that already has a buffer (``host_copied``).
_ADOPT: contextvars.ContextVar[bool] = contextvars.ContextVar("multiinit_keras_adopt", default=True)


@contextlib.contextmanager
def host_copied(copied: bool = True) -> Iterator[None]:
    """Within it, a value drawn on the host reaches TensorFlow as a copy in TensorFlow's own
    memory instead of the host buffer itself. For a value assigned to a built variable:
    TensorFlow's assign adopts a value's buffer and frees the variable's old one into its
    allocator, which only reuses it for buffers it allocates itself, so adopting NumPy's
    buffers left the model's size behind (measured: 1.0x the parameters after ``mi.apply`` on
    a built 67M Keras model, 0.0x with the copy, which TensorFlow's assign would otherwise
    make itself). A variable created from the value adopts the host buffer, with no copy.

    >>> with host_copied():
    ...     _ADOPT.get()
    False
    """
    token = _ADOPT.set(not copied)
    try:
        yield
    finally:
        _ADOPT.reset(token)


def _from_host(array: np.ndarray, dtype: str) -> Any:
    if (
        _ADOPT.get()
        and keras.backend.backend() == "tensorflow"
        and array.ctypes.data % _ALIGN == 0
        and array.size
    ):
        import tensorflow as tf  # the backend Keras runs on: already imported

        tensor = tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        return _cast(tensor, dtype)
    return _ops.convert_to_tensor(array, dtype=dtype)


# --------------------------------------------------------------------------- dispatch


def _to_native(view: LogicalView, logical: Any) -> Any:
    if view.is_plain and view.axes == tuple(range(len(view.axes))):
        return logical
    permuted = tuple(view.pre_shape[a] for a in view.axes)
    inverse = [0] * len(view.axes)
    for position, axis in enumerate(view.axes):
        inverse[axis] = position
    x = _ops.transpose(_ops.reshape(logical, permuted), inverse)
    return _ops.reshape(x, view.native_shape)


def _draw(
    spec: Spec,
    view: LogicalView,
    fans: tuple[int, int] | None,
    dtype: str,
    seed: Any,
    path: str | None = None,
) -> Any:
    """A native-layout tensor of ``spec`` for ``view`` (fans default to the view's, or to a
    ``with_axes`` spec's axes on the native shape)."""
    if isinstance(spec, WithAxes):
        if fans is None:
            fans = spec.fans(view.native_shape)
        spec = spec.spec
    if spec.uses_fans and fans is None:
        fans = view.fans
    if math.prod(view.native_shape) == 0:
        return _ops.zeros(view.native_shape, dtype=dtype)
    if isinstance(spec, Mixture):
        return _mixture(spec, view, fans, dtype, seed)
    if _elementwise(spec):
        return _draw_elementwise(spec, view.native_shape, fans, dtype, seed)
    if isinstance(spec, Custom):
        return _custom(spec, view, dtype, seed, path)
    if isinstance(spec, (Eye, Dirac)):
        written = _written_on_host(spec, view, dtype)
        if written is not None:
            return _from_host(written, dtype)
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
        return _sparse(spec, view, dtype, seed)
    else:  # pragma: no cover - every Spec kind is handled above
        raise SpecError(f"spec={spec!r} is not allowed; it is not a multiinit spec")
    return _to_native(view, logical)


def _resolve_dtype(spec: Spec, dtype: Any, where: str) -> str:
    resolved: str = keras.backend.standardize_dtype(keras.backend.floatx() if dtype is None else dtype)
    if resolved not in _FLOATS and (spec.random or isinstance(spec, Custom)):
        raise SpecError(
            f"{spec!r} cannot fill {where}: dtype={resolved!r} is not allowed; a random spec "
            f"draws one of {', '.join(_FLOATS)}"
        )
    return resolved
