"""The ``jax.nn.initializers`` drop-in: ``from multiinit.flax import initializers as init``
replaces ``jax.nn.initializers`` (and ``flax.linen.initializers`` / ``flax.nnx.initializers``),
e.g. ``nn.Dense(8, kernel_init=init.glorot_uniform())``.

Every public name of ``jax.nn.initializers`` (JAX 0.10) with the same signature
(annotations included), law, dtypes and exception types: ``zeros`` and ``ones`` (initializers
themselves), ``constant``, ``uniform``, ``normal``, ``truncated_normal``,
``variance_scaling`` (``mode="fan_geo_avg"`` and the ``in_axis``/``out_axis``/``batch_axis``
axes), ``glorot_*``/``xavier_*``, ``he_*``/``kaiming_*``, ``lecun_*``, ``orthogonal``
(``column_axis``), ``delta_orthogonal``, and the ``Initializer`` protocol; and Flax's own
extras, ``zeros_init``, ``ones_init`` and nnx's ``DtypeLikeInexact``.
``tests/test_flax_conformance.py`` checks all of it against JAX and Flax themselves, and
``docs/known-differences.md`` lists every deliberate difference with its reason.

The drop-ins behave as JAX documents them, which is not always what the neutral namespace
(``from multiinit import flax as mif``) does: here ``uniform(scale)`` is U[0, scale),
``normal(stddev)`` has mean 0, ``dtype=None`` means JAX's default float (float64 with x64),
and half precisions are drawn the way JAX draws them.

Behind every drop-in is a neutral spec: ``spec_of(name, *args, **kwargs)`` is the one table
from JAX's names and arguments to specs (``spec_of("glorot_uniform", in_axis=0, out_axis=(1,
2))`` is ``with_axes(glorot_uniform(), in_axis=0, out_axis=(1, 2))``), and each initializer
it returns carries its spec as ``init.spec``, so ``mi.explain``, portable mode, presets and
the report know it. ``delta_orthogonal`` and ``orthogonal`` with a ``column_axis`` other than
the last have no spec of the contract; their spec is a ``custom`` law registered under the
JAX call's name (``"jax.nn.initializers.delta_orthogonal(scale=1.0)"``), whose NumPy function
draws the same law in logical layout.

Decisions implemented here:

* **JAX's numbers.** Where JAX's law is the spec's, the drop-in draws it with JAX's own
  primitives in JAX's order, with the scalars computed as JAX computes them, in every dtype
  JAX draws in (``draw.py``): for the same key, the values of the ``jax.nn.initializers``
  call under ``jax.jit`` (bit for bit; eagerly too, except the last bit of some
  ``variance_scaling(..., "normal")`` values, where JAX's own eager and jitted draws differ).
* **Exact where JAX's sampler is not:** a ``truncated_normal`` bound beyond 4 std (or
  infinite) is drawn by the exact inverse-CDF sampler (JAX's saturates: ``lower=-inf``
  returns -3.4e38 with probability 2**-23), so the numbers differ there.
* **Errors as JAX raises them, earlier.** Arguments are checked when the initializer is
  built (JAX checks them when it is called); a bad one raises a ``MultiinitError`` that is
  also the builtin JAX raises for it (``TypeError``, ``ValueError``, ``IndexError``,
  ``NotImplementedError``, ``OverflowError``). Where JAX fills NaN or nonsense, the drop-in
  refuses: non-finite parameters, ``variance_scaling(scale < 0)``, ``truncated_normal`` with
  ``lower >= upper``, complex or array-valued parameters, axes named twice.
* **Empty arrays** (a 0 in the shape) are returned empty by every initializer, where JAX's
  variance-scaling ones divide by zero.
* **``out_sharding``** is taken as JAX takes it (values drawn, then resharded); ``orthogonal``
  and ``delta_orthogonal`` raise ``NotImplementedError`` for it, as JAX's do.
* **The initializers are objects**, equal and hashable by value (so linen modules holding
  them stay comparable), weak-referenceable (``jax.jit`` wraps them), with JAX's call
  signature (``inspect.signature``) and ``.spec``.
"""

# JAX's initializers module is written with ``from __future__ import annotations``: its
# annotations are strings, and ``inspect.signature`` compares them as written. This file
# writes the same annotations, so the signatures are equal.
from __future__ import annotations

import inspect
import math
import numbers
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import flax.typing
import jax
import jax.numpy as jnp
import numpy as np

# JAX's own reading of ``out_sharding`` (a PartitionSpec needs a mesh context; a concrete mesh
# becomes abstract under a trace), so that the drop-in takes exactly what JAX takes.
from jax._src.sharding_impls import canonicalize_sharding as _canonicalize_sharding
from jax.nn.initializers import Initializer

from .. import spec as _spec
from ..errors import ShapeError, SpecError, SpecTypeError, shown
from ..fans import SPATIAL_IN_OUT, LogicalView
from ..spec import Spec
from . import compiled as _compiled
from .compiled import AxisError
from .draw import _ERF_SAFE, DtypeError, _any_dtype, _draw, _draw_jax, _is_complex, _is_float

__all__ = [
    "Initializer",
    "zeros",
    "ones",
    "constant",
    "uniform",
    "normal",
    "truncated_normal",
    "variance_scaling",
    "glorot_uniform",
    "glorot_normal",
    "xavier_uniform",
    "xavier_normal",
    "lecun_uniform",
    "lecun_normal",
    "he_uniform",
    "he_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "delta_orthogonal",
    "zeros_init",
    "ones_init",
    "DtypeLikeInexact",
    "spec_of",
    "JaxInitializer",
]

# The names JAX's annotations use (typing only: the strings are what signatures compare).
if typing.TYPE_CHECKING:  # pragma: no cover
    from jax import Array
    from jax._src import core
    from jax._src.nn.initializers import DTypeLikeInexact, OutShardingType, RealNumeric
    from jax.typing import ArrayLike

#: flax.nnx.initializers' alias (``typing.Any``).
DtypeLikeInexact = Any

#: Where JAX's truncated normal has no mass a float64 can hold: an infinite bound is cut here
#: (std units), so the law stays a neutral truncated_normal (Phi(-40) < 1e-300).
_FAR = 40.0


# --------------------------------------------------------------------------- errors


class ParameterTypeError(SpecTypeError):
    """A parameter that is not a real number where JAX needs one (JAX raises ``TypeError`` or
    ``ValueError``; this is both)."""


class ParameterOverflowError(SpecError, OverflowError):
    """A constant an integer dtype cannot hold (JAX raises ``OverflowError``)."""


class NotImplementedHere(DtypeError, NotImplementedError):
    """What JAX itself does not implement (``orthogonal`` in half precision, with
    ``out_sharding``): raised as JAX raises it, ``NotImplementedError``."""


# --------------------------------------------------------------------------- arguments


def _real(function: str, name: str, value: Any) -> float:
    """``value`` as JAX reads a real scalar parameter (Python and NumPy numbers, bools, 0-d
    arrays), finite; anything else is a ``SpecError`` naming it."""
    original = value
    if isinstance(value, (np.ndarray, jax.Array)) and not isinstance(value, jax.core.Tracer):
        if value.ndim != 0:
            raise ParameterTypeError(
                f"{function}: {name}={shown(original)} is not allowed; {name} must be a real number "
                "(an array of them has no single law)"
            )
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if not isinstance(value, numbers.Real):
        raise ParameterTypeError(
            f"{function}: {name}={shown(original)} is not allowed; {name} must be a real number"
        )
    number = float(value)
    if not math.isfinite(number):
        raise SpecError(
            f"{function}: {name}={shown(original)} is not allowed; {name} must be a finite number "
            "(JAX would fill NaN or infinities)"
        )
    return number


def _axes(function: str, name: str, value: Any) -> int | tuple[int, ...]:
    """An axis argument as JAX reads it: an int, or a sequence of ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(a, int) and not isinstance(a, bool) for a in value)
    ):
        return tuple(value)
    raise ParameterTypeError(
        f"{function}: {name}={shown(value)} is not allowed; {name} must be an int or a sequence of ints"
    )


def _column_axis(function: str, value: Any) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise ParameterTypeError(
        f"{function}: column_axis={shown(value)} is not allowed; column_axis must be an int"
    )


_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
_DISTRIBUTIONS = {
    "truncated_normal": "truncated_normal",
    "normal": "untruncated_normal",
    "uniform": "uniform",
}


def _choice(function: str, name: str, value: Any, allowed: Sequence[str]) -> str:
    if not (isinstance(value, str) and value in allowed):
        raise SpecError(
            f"{function}: {name}={shown(value)} is not allowed; {name} must be one of "
            f"{', '.join(repr(a) for a in allowed)} (invalid {name} for variance scaling initializer)"
        )
    return value


def _jax_fans(shape: tuple[int, ...], in_axis: Any, out_axis: Any, batch_axis: Any) -> tuple[float, float]:
    """``jax._src.nn.initializers._compute_fans``: JAX's fans, floats, with JAX's errors
    (except on an empty array, where JAX divides by zero: fans 0 here, nothing is drawn)."""
    if isinstance(in_axis, int) and in_axis == -2 and len(shape) <= 1:
        raise ShapeError(
            f"Can't compute input and output sizes of a {len(shape)}-dimensional weights tensor with default "
            "in_axis. Must be at least 2D or specify in_axis explicitly."
        )

    def size(axes: int | tuple[int, ...], name: str) -> int:
        try:
            return shape[axes] if isinstance(axes, int) else math.prod(shape[i] for i in axes)
        except IndexError:
            raise AxisError(
                f"{name}={axes!r} is not allowed for shape {shape}: an axis out of range"
            ) from None

    in_size, out_size, batch_size = (
        size(in_axis, "in_axis"),
        size(out_axis, "out_axis"),
        size(batch_axis, "batch_axis"),
    )
    if 0 in (in_size, out_size, batch_size):
        return 0.0, 0.0
    receptive_field_size = math.prod(shape) / in_size / out_size / batch_size
    return in_size * receptive_field_size, out_size * receptive_field_size


# --------------------------------------------------------------------------- the table


def _named(distribution: str, scale: float, mode: str) -> Spec:
    """The named spec of a variance-scaling form, or ``variance_scaling`` itself."""
    names = {
        (1.0, "fan_avg", "uniform"): _spec.glorot_uniform,
        (1.0, "fan_avg", "truncated_normal"): _spec.glorot_normal,
        (1.0, "fan_in", "uniform"): _spec.lecun_uniform,
        (1.0, "fan_in", "truncated_normal"): _spec.lecun_normal,
        (2.0, "fan_in", "uniform"): _spec.he_uniform,
        (2.0, "fan_in", "truncated_normal"): _spec.he_normal,
    }
    named = names.get((scale, mode, distribution))
    return named() if named is not None else _spec.variance_scaling(scale, mode, distribution)


def _scaled(
    function: str, scale: Any, mode: Any, distribution: Any, in_axis: Any, out_axis: Any, batch_axis: Any
) -> tuple[Spec, tuple[Any, ...]]:
    if isinstance(scale, str) or scale is None:
        raise ParameterTypeError(
            f"{function}: scale={shown(scale)} is not allowed; scale must be a real number > 0"
        )
    scale_ = _real(function, "scale", scale)
    mode_ = _choice(function, "mode", mode, _MODES)
    distribution_ = _DISTRIBUTIONS[_choice(function, "distribution", distribution, tuple(_DISTRIBUTIONS))]
    axes = (
        _axes(function, "in_axis", in_axis),
        _axes(function, "out_axis", out_axis),
        _axes(function, "batch_axis", batch_axis),
    )
    if scale_ < 0:
        raise SpecError(
            f"{function}: scale={shown(scale)} is not allowed; scale must be >= 0 (JAX takes the "
            "square root of a negative variance: NaN)"
        )
    law = _spec.zeros() if scale_ == 0 else _named(distribution_, scale_, mode_)
    if axes != (-2, -1, ()) and scale_ != 0:
        law = _spec.with_axes(law, in_axis=axes[0], out_axis=axes[1], batch_axis=axes[2])
    return law, ("variance_scaling", scale_, mode_, distribution_, *axes)


def _truncated(stddev: Any, lower: Any, upper: Any) -> tuple[Spec, tuple[Any, ...] | None]:
    function = "truncated_normal"
    for name, value in (("lower", lower), ("upper", upper)):
        if isinstance(value, str) or value is None:
            raise ParameterTypeError(
                f"{function}: {name}={shown(value)} is not allowed; {name} must be a number"
            )
    std = _real(function, "stddev", stddev)
    low, high = (float(_real_or_inf(function, n, v)) for n, v in (("lower", lower), ("upper", upper)))
    if not low < high:
        raise SpecError(
            f"{function}: upper={shown(upper)} is not allowed; upper must be > lower={shown(lower)} "
            "(JAX fills a constant otherwise)"
        )
    both = low == -math.inf and high == math.inf
    if low == -math.inf:
        low = min(high, 0.0) - _FAR
    if high == math.inf:
        high = max(low, 0.0) + _FAR
    if std == 0:
        law: Spec = _spec.zeros()
    elif both:
        law = _spec.normal(0.0, abs(std))
    elif std > 0:
        law = _spec.truncated_normal(0.0, std, low, high)
    else:  # -|s| T with T in [low, high] is |s| T' with T' in [-high, -low]
        law = _spec.truncated_normal(0.0, -std, -high, -low)
    if low >= -_ERF_SAFE and high <= _ERF_SAFE:
        return law, ("truncated_normal", std, low, high)
    return law, None  # drawn exactly, from the spec


def _real_or_inf(function: str, name: str, value: Any) -> float:
    if isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isinf(value):
        return float(value)
    return _real(function, name, value)


def _orthogonal_law(function: str, scale: float, column_axis: int) -> Spec:
    if scale == 0:
        return _spec.zeros()
    if function == "orthogonal" and column_axis == -1:
        # On a (..., in, out) kernel the columns are the out axis: torch's rows, the spec's law.
        return _spec.orthogonal(abs(scale))
    law: Spec
    if function == "orthogonal":
        name = f"jax.nn.initializers.orthogonal(scale={scale!r}, column_axis={column_axis})"
        law = _spec.custom(_numpy_orthogonal(scale, column_axis), name=name)
        return law
    law = _spec.custom(
        _numpy_delta_orthogonal(scale), name=f"jax.nn.initializers.delta_orthogonal(scale={scale!r})"
    )
    return law


def _haar(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A Haar-distributed (rows, cols) matrix with orthonormal rows or columns (NumPy QR with
    the sign fix)."""
    z = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(z)
    q = q * np.sign(np.diagonal(r))[None, :]
    haar: np.ndarray = q if rows >= cols else q.T
    return haar


#: A custom spec's law: ``law(rng, logical_shape, dtype) -> values`` (see ``spec.custom``).
_Law = Callable[[np.random.Generator, tuple[int, ...], Any], np.ndarray]


def _numpy_orthogonal(scale: float, column_axis: int) -> _Law:
    def law(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """JAX's ``orthogonal(scale, column_axis)`` on the Flax kernel whose logical view is ``shape``."""
        view = LogicalView.of(_flax_shape(shape), SPATIAL_IN_OUT)
        native = view.native_shape
        axis = column_axis % len(native)
        cols = native[axis]
        q = _haar(rng, math.prod(native) // cols, cols)
        q = np.moveaxis(q.reshape((*np.delete(native, axis), cols)), -1, axis)
        return view.to_logical(scale * q)

    return law


def _numpy_delta_orthogonal(scale: float) -> _Law:
    def law(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """JAX's ``delta_orthogonal(scale)`` in logical layout: a Haar (out, in) matrix at the
        spatial centre ``(k - 1) // 2``, zeros elsewhere."""
        if len(shape) not in (3, 4, 5) or shape[0] < shape[1]:
            raise ValueError(
                f"delta_orthogonal needs a 3-D to 5-D kernel with in <= out, not logical {shape}"
            )
        out = np.zeros(shape)
        centre: tuple[slice | int, ...] = (slice(None), slice(None), *((k - 1) // 2 for k in shape[2:]))
        out[centre] = scale * _haar(rng, *shape[:2])
        return out

    return law


def _flax_shape(logical: tuple[int, ...]) -> tuple[int, ...]:
    """The Flax ``(*spatial, in, out)`` shape of a logical ``(out, in, *spatial)`` one."""
    if len(logical) < 2:
        raise ValueError(f"orthogonal needs at least 2 dimensions, not {logical}")
    return (*logical[2:], logical[1], logical[0])


def _build(name: str, *args: Any, **kwargs: Any) -> tuple[Spec, tuple[Any, ...] | None, Any]:
    """``(spec, call, dtype)`` of ``jax.nn.initializers.<name>(*args, **kwargs)``: the law,
    what ``draw._draw_jax`` draws (None: the spec is drawn), and the default dtype."""
    try:
        bound = inspect.signature(_SIGNATURES[name]).bind(*args, **kwargs)
    except KeyError:
        raise SpecError(
            f"name={shown(name)} is not allowed; name must be one of {', '.join(_SIGNATURES)}"
        ) from None
    except TypeError as e:
        raise SpecTypeError(f"{name}: {e}") from None
    bound.apply_defaults()
    a = bound.arguments
    dtype = a.get("dtype")
    if name in ("zeros", "ones"):
        value = 0.0 if name == "zeros" else 1.0
        return _spec.constant(value), ("constant", value), None
    if name == "constant":
        value = a["value"]
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        number = _real("constant", "value", value)
        raw = value.item() if isinstance(value, (np.ndarray, jax.Array, np.generic)) else value
        return _spec.constant(number), ("constant", raw), dtype
    if name == "uniform":
        if isinstance(a["scale"], str) or a["scale"] is None:
            raise ParameterTypeError(
                f"uniform: scale={shown(a['scale'])} is not allowed; scale must be a real number"
            )
        scale = _real(name, "scale", a["scale"])
        law: Spec = _spec.zeros() if scale == 0 else _spec.uniform(min(0.0, scale), max(0.0, scale))
        return law, ("uniform", scale), dtype
    if name == "normal":
        if isinstance(a["stddev"], str) or a["stddev"] is None:
            raise ParameterTypeError(
                f"normal: stddev={shown(a['stddev'])} is not allowed; stddev must be a real number"
            )
        std = _real(name, "stddev", a["stddev"])
        return (_spec.zeros() if std == 0 else _spec.normal(0.0, abs(std))), ("normal", std), dtype
    if name == "truncated_normal":
        if isinstance(a["stddev"], str) or a["stddev"] is None:
            raise ParameterTypeError(
                f"truncated_normal: stddev={shown(a['stddev'])} is not allowed; stddev must be a real number"
            )
        law, call = _truncated(a["stddev"], a["lower"], a["upper"])
        return law, call, dtype
    if name == "variance_scaling":
        law, call = _scaled(
            name, a["scale"], a["mode"], a["distribution"], a["in_axis"], a["out_axis"], a["batch_axis"]
        )
        return law, call, dtype
    if name in _SCALED:
        scale, mode, distribution = _SCALED[name]
        law, call = _scaled(name, scale, mode, distribution, a["in_axis"], a["out_axis"], a["batch_axis"])
        return law, call, dtype
    # orthogonal, delta_orthogonal
    if isinstance(a["scale"], str) or a["scale"] is None:
        raise ParameterTypeError(
            f"{name}: scale={shown(a['scale'])} is not allowed; scale must be a real number"
        )
    scale = _real(name, "scale", a["scale"])
    column_axis = _column_axis(name, a["column_axis"])
    return _orthogonal_law(name, scale, column_axis), (name, scale, column_axis), dtype


def spec_of(name: str, *args: Any, **kwargs: Any) -> Spec:
    """The neutral spec behind ``jax.nn.initializers.<name>(*args, **kwargs)`` (the table every
    drop-in builds from); ``zeros`` and ``ones`` take no arguments.

    >>> spec_of("glorot_uniform")
    glorot_uniform()
    >>> spec_of("variance_scaling", 2.0, "fan_geo_avg", "normal", in_axis=0, out_axis=(1, 2))
    with_axes(variance_scaling(scale=2.0, mode='fan_geo_avg', distribution='untruncated_normal'), in_axis=0, out_axis=(1, 2))
    >>> spec_of("uniform", 0.5), spec_of("normal", -0.1)
    (uniform(low=0.0, high=0.5), normal(std=0.1))
    """  # noqa: E501 - doctest output lines, as printed
    return _build(name, *args, **kwargs)[0]


# --------------------------------------------------------------------------- the initializers


def _parameter(name: str, annotation: str, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation
    )


def _call_signature(dtype: Any) -> inspect.Signature:
    """The signature of JAX's ``init(key, shape, dtype=dtype, out_sharding=None)``."""
    return inspect.Signature(
        [
            _parameter("key", "Array"),
            _parameter("shape", "core.Shape"),
            _parameter("dtype", "DTypeLikeInexact | None", dtype),
            _parameter("out_sharding", "OutShardingType", None),
        ],
        return_annotation="Array",
    )


class _Default:
    """The dtype an initializer was built with (JAX's closures default to it; an explicit
    ``dtype=None`` is JAX's default float instead)."""

    def __repr__(self) -> str:
        return "<the initializer's dtype>"


_DEFAULT: Any = _Default()


class _Signature:
    """``__signature__`` of an instance (its own dtype default), None for the class itself."""

    def __get__(self, instance: Any, owner: type) -> inspect.Signature | None:
        return None if instance is None else _call_signature(instance.dtype)


class JaxInitializer(_compiled.Initializer):
    """A ``jax.nn.initializers``-style initializer ``init(key, shape, dtype=..., out_sharding=None)``
    with its neutral ``spec``; what every drop-in returns.

    >>> import jax, multiinit.flax.initializers as init
    >>> g = init.glorot_uniform(in_axis=0, out_axis=(1, 2))
    >>> g.spec
    with_axes(glorot_uniform(), in_axis=0, out_axis=(1, 2))
    >>> g(jax.random.key(0), (32, 8, 16)).shape
    (32, 8, 16)
    """

    __slots__ = ("name", "call", "dtype")
    __signature__ = _Signature()

    def __init__(self, name: str, spec: Spec, call: tuple[Any, ...] | None, dtype: Any = None) -> None:
        super().__init__(spec)
        self.name = name
        self.call = call
        self.dtype = dtype

    @property
    def __name__(self) -> str:  # code that names a kernel_init reads it
        return self.name if self.name in ("zeros", "ones") else "init"

    def __call__(
        self,
        key: Array,
        shape: core.Shape,
        dtype: DTypeLikeInexact | None = _DEFAULT,
        out_sharding: OutShardingType = None,
    ) -> Array:
        filled: Array = _fill(self, key, shape, self.dtype if dtype is _DEFAULT else dtype, out_sharding)
        return filled

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JaxInitializer) and (self.name, self.spec, self.call, self.dtype) == (
            other.name,
            other.spec,
            other.call,
            other.dtype,
        )

    def __hash__(self) -> int:
        return hash((JaxInitializer, self.name, self.spec, self.call, _hashable(self.dtype)))

    def __repr__(self) -> str:
        return f"multiinit.flax.initializers.{self.name}(...) -> {self.spec!r}"


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def _kinds(name: str) -> str:
    """The dtype kinds JAX's function fills: 'f' floats, 'c' complex, 'e' every dtype."""
    if name in ("zeros", "ones", "constant"):
        return "e"
    if name in ("uniform", "truncated_normal"):
        return "f"
    return "fc"


def _fill(init: JaxInitializer, key: Any, shape: Any, dtype: Any, out_sharding: Any) -> Any:
    """JAX's checks in JAX's order, then the draw."""
    name, call = init.name, init.call
    shape = _compiled._shape(shape)
    resolved = _any_dtype(dtype)
    kinds = _kinds(name)
    if kinds != "e":
        _compiled._check_key(key)
        if not (_is_float(resolved) or ("c" in kinds and _is_complex(resolved))):
            allowed = "a float" + (" or complex" if "c" in kinds else "")
            raise DtypeError(
                f"{name}: dtype={resolved.name} is not allowed; JAX's {name} fills {allowed} dtype"
            )
    if out_sharding is not None and name in ("orthogonal", "delta_orthogonal"):
        raise NotImplementedHere(
            f"{name}: out_sharding={shown(out_sharding)} is not allowed; JAX's {name} "
            "does not implement out_sharding"
        )
    sharding = _sharding(name, out_sharding)
    if name == "constant" or name in ("zeros", "ones"):
        call = cast("tuple[Any, ...]", call)  # _build gives a constant its call
        try:
            if sharding is not None:
                return jnp.full(shape, call[1], dtype=resolved, device=sharding)
            return _draw_jax(call, key, shape, resolved)
        except OverflowError:  # a Python int beyond int64, as JAX converts it
            raise ParameterOverflowError(
                f"constant: value={shown(call[1])} is not allowed for {resolved.name}: it does not fit"
            ) from None
    x = _random(init, key, shape, resolved)
    # JAX draws with the explicit mesh axes made automatic, then reshards (random.maybe_auto_axes):
    # the values do not depend on the sharding (threefry is partitionable).
    return x if sharding is None else jax.sharding.reshard(x, sharding)


def _sharding(name: str, out_sharding: Any) -> Any:
    """``out_sharding`` read as JAX reads it (a NamedSharding, or a PartitionSpec in a mesh context)."""
    if out_sharding is None:
        return None
    try:
        return _canonicalize_sharding(out_sharding, f"nn.initializers.{name}")
    except TypeError as e:
        raise SpecTypeError(f"{name}: out_sharding={shown(out_sharding)} is not allowed; {e}") from None
    except ValueError as e:
        raise SpecError(f"{name}: out_sharding={shown(out_sharding)} is not allowed; {e}") from None


def _random(init: JaxInitializer, key: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    name, call = init.name, init.call
    if name in ("orthogonal", "delta_orthogonal"):
        if dtype.name in ("float16", "bfloat16"):
            raise NotImplementedHere(
                f"{name}: dtype={dtype.name} is not allowed; JAX's QR has no {dtype.name} "
                "kernel (Unsupported dtype)"
            )
        call = cast("tuple[Any, ...]", call)  # _build gives orthogonal and delta_orthogonal their call
        _, scale, column_axis = call
        if name == "orthogonal":
            if len(shape) < 2:
                raise ShapeError("orthogonal initializer requires at least a 2D shape")
            if not -len(shape) <= column_axis < len(shape):
                raise AxisError(
                    f"orthogonal: column_axis={column_axis} is not allowed for shape {shape}: "
                    "tuple index out of range"
                )
        else:
            if len(shape) not in (3, 4, 5):
                raise ShapeError("Delta orthogonal initializer requires a 3D, 4D or 5D shape.")
            if shape[-1] < shape[-2]:
                raise ShapeError("`fan_in` must be less or equal than `fan_out`. ")
            if not -2 <= column_axis < 2:
                raise AxisError(
                    f"delta_orthogonal: column_axis={column_axis} is not allowed: it indexes the "
                    "kernel's last two axes (tuple index out of range)"
                )
        return _draw_jax(call, key, shape, dtype)
    if call is not None and call[0] == "variance_scaling":
        _, scale, mode, distribution, in_axis, out_axis, batch_axis = call
        fan_in, fan_out = _jax_fans(shape, in_axis, out_axis, batch_axis)
        if math.prod(shape) == 0:
            return jnp.zeros(shape, dtype)
        return _draw_jax(("variance_scaling", scale, mode, distribution, fan_in, fan_out), key, shape, dtype)
    if call is not None:
        return _draw_jax(call, key, shape, dtype)
    # A truncated normal JAX cannot draw exactly: the spec's own sampler.
    return _draw(init.spec, key, LogicalView(shape), None, dtype)


# --------------------------------------------------------------------------- the drop-ins


def _make(name: str, *args: Any, **kwargs: Any) -> JaxInitializer:
    spec, call, dtype = _build(name, *args, **kwargs)
    return JaxInitializer(name, spec, call, dtype)


zeros = JaxInitializer("zeros", _spec.zeros(), ("constant", 0.0))
"""An initializer that returns a constant array full of zeros (the ``key`` is ignored).

>>> import jax, jax.numpy as jnp
>>> zeros(jax.random.key(42), (2, 3), jnp.float32).tolist()
[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
"""

ones = JaxInitializer("ones", _spec.ones(), ("constant", 1.0))
"""An initializer that returns a constant array full of ones (the ``key`` is ignored)."""


def constant(value: ArrayLike, dtype: DTypeLikeInexact | None = None) -> Initializer:
    """Builds an initializer that returns arrays full of a constant ``value`` (any dtype).

    >>> import jax, jax.numpy as jnp
    >>> constant(-7)(jax.random.key(42), (2, 3), jnp.int32).tolist()
    [[-7, -7, -7], [-7, -7, -7]]
    """
    return _make("constant", value, dtype)


def uniform(scale: RealNumeric = 1e-2, dtype: DTypeLikeInexact | None = None) -> Initializer:
    """Builds an initializer of values uniformly distributed in ``[0, scale)`` (JAX's meaning;
    ``multiinit.flax.uniform(low, high)`` is U[low, high)).

    >>> import jax
    >>> x = uniform(10.0)(jax.random.key(42), (1000,))
    >>> bool((x >= 0).all() and (x < 10).all())
    True
    """
    return _make("uniform", scale, dtype)


def normal(stddev: RealNumeric = 1e-2, dtype: DTypeLikeInexact | None = None) -> Initializer:
    """Builds an initializer of normally distributed values with mean 0 and std ``stddev``
    (circular complex normals for complex dtypes, as JAX draws them).

    >>> import jax
    >>> normal(5.0)(jax.random.key(42), (2, 3)).shape
    (2, 3)
    """
    return _make("normal", stddev, dtype)


def truncated_normal(
    stddev: RealNumeric = 1e-2,
    dtype: DTypeLikeInexact | None = None,
    lower: RealNumeric = -2.0,
    upper: RealNumeric = 2.0,
) -> Initializer:
    """Builds an initializer of truncated-normal values: ``stddev * t`` with ``t`` a standard
    normal truncated to ``(lower, upper)`` (no variance correction, as in JAX).

    >>> import jax
    >>> x = truncated_normal(5.0)(jax.random.key(42), (1000,))
    >>> bool((abs(x) <= 10).all())
    True
    """
    return _make("truncated_normal", stddev, dtype, lower, upper)


def variance_scaling(
    scale: RealNumeric,
    mode: Literal["fan_in"] | Literal["fan_out"] | Literal["fan_avg"] | Literal["fan_geo_avg"],
    distribution: Literal["truncated_normal"] | Literal["normal"] | Literal["uniform"],
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: DTypeLikeInexact | None = None,
) -> Initializer:
    """Initializer that adapts its scale to the shape of the weights tensor: variance
    ``scale / n`` with ``n`` the fan of ``mode`` (``"fan_geo_avg"``: sqrt(fan_in * fan_out)),
    the fans from ``in_axis``/``out_axis``/``batch_axis`` (every other axis a receptive field).
    ``"normal"`` is untruncated; ``"truncated_normal"`` cuts at 2 std and corrects the variance;
    complex dtypes get JAX's complex forms (a disk for ``"uniform"``).

    >>> import jax
    >>> init = variance_scaling(2.0, "fan_in", "uniform", in_axis=0, out_axis=(1, 2))
    >>> init.spec
    with_axes(he_uniform(), in_axis=0, out_axis=(1, 2))
    >>> init(jax.random.key(0), (32, 8, 16)).shape
    (32, 8, 16)
    """
    return _make("variance_scaling", scale, mode, distribution, in_axis, out_axis, batch_axis, dtype)


def _scaled_constructor(
    name: str, scale: float, mode: str, distribution: str, aka: str = ""
) -> Callable[..., Initializer]:
    def constructor(
        in_axis: int | Sequence[int] = -2,
        out_axis: int | Sequence[int] = -1,
        batch_axis: int | Sequence[int] = (),
        dtype: DTypeLikeInexact | None = None,
    ) -> Initializer:
        return _make(name, in_axis, out_axis, batch_axis, dtype)

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__module__ = __name__
    constructor.__doc__ = (
        f'Builds a {name.replace("_", " ")} initializer{aka}: ``variance_scaling({scale}, "{mode}", '
        f'"{distribution}")`` with the given axes.\n\n'
        f">>> import jax\n>>> {name}()(jax.random.key(0), (3, 3, 16, 32)).shape\n(3, 3, 16, 32)\n"
    )
    return constructor


#: JAX's named variance-scaling initializers: (scale, mode, distribution).
_SCALED = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
}

glorot_uniform = _scaled_constructor("glorot_uniform", *_SCALED["glorot_uniform"], " (aka Xavier uniform)")
glorot_normal = _scaled_constructor("glorot_normal", *_SCALED["glorot_normal"], " (aka Xavier normal)")
lecun_uniform = _scaled_constructor("lecun_uniform", *_SCALED["lecun_uniform"])
lecun_normal = _scaled_constructor("lecun_normal", *_SCALED["lecun_normal"])
he_uniform = _scaled_constructor("he_uniform", *_SCALED["he_uniform"], " (aka Kaiming uniform)")
he_normal = _scaled_constructor("he_normal", *_SCALED["he_normal"], " (aka Kaiming normal)")
# JAX's aliases are the same functions.
xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal


def orthogonal(
    scale: RealNumeric = 1.0, column_axis: int = -1, dtype: DTypeLikeInexact | None = None
) -> Initializer:
    """Builds an initializer of uniformly distributed (Haar) orthogonal matrices times
    ``scale``: the array flattened to (everything else, ``shape[column_axis]``) has orthonormal
    columns, or rows when it is wider than tall (unitary for complex dtypes).

    >>> import jax, numpy as np
    >>> w = np.asarray(orthogonal()(jax.random.key(42), (4, 8)))
    >>> bool(np.allclose(w @ w.T, np.eye(4), atol=1e-5))
    True
    """
    return _make("orthogonal", scale, column_axis, dtype)


def delta_orthogonal(
    scale: RealNumeric = 1.0, column_axis: int = -1, dtype: DTypeLikeInexact | None = None
) -> Initializer:
    """Builds an initializer for delta orthogonal kernels: an orthogonal ``(in, out)`` matrix
    (``in <= out``) at the spatial centre ``(k - 1) // 2`` of a 3-D to 5-D kernel, zeros
    elsewhere.

    >>> import jax
    >>> w = delta_orthogonal()(jax.random.key(42), (3, 3, 3))
    >>> float(abs(w[0]).max()), float(abs(w[2]).max())
    (0.0, 0.0)
    """
    return _make("delta_orthogonal", scale, column_axis, dtype)


def zeros_init() -> Initializer:
    """Builds an initializer that returns a constant array full of zeros (Flax's ``zeros_init``).

    >>> import jax, jax.numpy as jnp
    >>> zeros_init()(jax.random.key(42), (2, 3), jnp.float32).tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    return zeros


def ones_init() -> Initializer:
    """Builds an initializer that returns a constant array full of ones (Flax's ``ones_init``).

    >>> import jax, jax.numpy as jnp
    >>> ones_init()(jax.random.key(42), (3, 2), jnp.float32).tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """
    return ones


# Flax writes its module without postponed annotations: its return annotation is the object.
zeros_init.__annotations__ = {"return": flax.typing.Initializer}
ones_init.__annotations__ = {"return": flax.typing.Initializer}


#: The signature each name's arguments are bound with (``_build``).
_SIGNATURES = {
    "zeros": lambda: None,
    "ones": lambda: None,
    "constant": constant,
    "uniform": uniform,
    "normal": normal,
    "truncated_normal": truncated_normal,
    "variance_scaling": variance_scaling,
    **{name: globals()[name] for name in _SCALED},
    "xavier_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "kaiming_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "orthogonal": orthogonal,
    "delta_orthogonal": delta_orthogonal,
}
for _alias, _name in (
    ("xavier_uniform", "glorot_uniform"),
    ("xavier_normal", "glorot_normal"),
    ("kaiming_uniform", "he_uniform"),
    ("kaiming_normal", "he_normal"),
):
    _SCALED[_alias] = _SCALED[_name]
del _alias, _name
