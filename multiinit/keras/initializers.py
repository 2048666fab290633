"""The ``keras.initializers`` drop-in: ``from multiinit.keras import initializers`` replaces
``from keras import initializers``, e.g. ``Dense(64, kernel_initializer=initializers.HeNormal(seed=1))``.

Every public name of ``keras.initializers`` (Keras 3.15): the classes (``Zeros``, ``Ones``,
``Constant``, ``Identity``, ``STFT``, ``RandomNormal``, ``RandomUniform``, ``TruncatedNormal``,
``VarianceScaling``, ``GlorotNormal``, ``GlorotUniform``, ``HeNormal``, ``HeUniform``,
``LecunNormal``, ``LecunUniform``, ``Orthogonal``), their snake_case and legacy aliases
(``glorot_uniform``, ``IdentityInitializer``, ...), Keras' own ``Initializer`` base class, and
``get``/``serialize``/``deserialize``, with the same signatures, laws, dtypes, configs and
seeds. ``tests/test_keras_conformance.py`` checks all of it against Keras itself, on whichever
backend Keras runs, and ``docs/known-differences.md`` lists every deliberate difference with
its reason.

Behind every drop-in is a neutral spec, its ``spec`` attribute, so ``mi.explain``, portable
mode (``mi.apply(..., {"kernel": init.spec}, portable=True)``), the presets and the report know
it. ``spec_of(name, *args, **kwargs)`` is the one table from Keras' names and arguments to
specs: ``spec_of("VarianceScaling", 2.0, "fan_out", "uniform")`` is ``variance_scaling(2.0,
"fan_out", "uniform")``; ``input_axes``/``output_axes`` become ``with_axes``; a degenerate
parameter is the law it degenerates to (``RandomNormal(stddev=0)`` is ``constant(mean)``,
``Orthogonal(gain=-1)`` draws ``orthogonal(1)`` negated, the same Haar law); laws the neutral
language has no word for (``Constant`` of an array, ``Identity(gain != 1)``, ``STFT``) are
``custom`` laws registered under a name that says what they are, computed in NumPy.

Decisions implemented here:

* **Keras' own classes underneath.** Each drop-in subclasses the Keras class of the same name
  and keeps its ``__init__`` arguments, attributes, ``get_config``/``from_config`` and ``clone``,
  so ``isinstance(init, keras.initializers.VarianceScaling)`` holds and a config is Keras' own.
  Where Keras' law is the spec's, the values are Keras' own call's (the same ``keras.random``
  calls in the same order): the same numbers for the same seed.
* **Seeds as Keras documents them**: an int-seeded or unseeded initializer (a seed picked from
  Python's ``random`` when it is built, which ``keras.utils.set_random_seed`` sets) returns the
  same values on every call; a ``keras.random.SeedGenerator`` seed advances. (The neutral
  namespace ``from multiinit import keras as mik`` keeps its own documented decision: an int
  seed advances per call, so two layers sharing an initializer differ.)
* **Exact truncation on every backend.** Keras' torch backend keeps a value outside +-2 std
  about 4e-6 of the time; there ``TruncatedNormal`` and the truncated variance-scaling forms
  draw with multiinit's exact sampler (``draw.py``), other numbers for the same seed.
* **Errors are multiinit errors that are also what Keras raises.** Keras' own checks
  (``VarianceScaling``'s scale, mode and distribution, ``STFT``'s side, window and scaling,
  seeds, 2-D only for ``Identity``) raise a ``SpecError`` (or ``ShapeError``) that is also the
  builtin Keras raises; an error from the backend inside Keras' call becomes a multiinit error
  that is also every builtin class of the backend's exception (``TypeError``,
  ``NotImplementedError``, ``IndexError``, ...; a backend-only class such as TensorFlow's
  ``InvalidArgumentError`` has none beyond ``Exception``). Parameters Keras would only trip
  over when called (``RandomNormal(stddev="x")``) are refused when the initializer is built.
  Non-finite parameters are refused (Keras fills nan or inf), and so is
  ``RandomUniform(minval > maxval)`` (Keras' law for it depends on the backend).
* **dtypes.** Random laws fill float16, bfloat16, float32 and float64; any other dtype,
  complex included, raises ``SpecDtypeError`` naming it (also ``TypeError``, ``ValueError`` and
  ``NotImplementedError``, what Keras' backends raise there), also on the JAX and torch
  backends, where Keras draws complex normals. Zeros, Ones, Constant, Identity and STFT fill
  what Keras fills.
* **Serialization.** Each class is registered with Keras as ``"multiinit>ClassName"``; its
  config is Keras' own, so ``serialize``/``deserialize`` round-trip to the drop-in class, and a
  saved model names ``"module": "multiinit.keras.initializers"`` and loads in any process that
  imported multiinit (the registry imports this module as soon as Keras is imported).
  ``deserialize`` and ``get`` read Keras' own configs and names (``"glorot_uniform"``,
  ``{"class_name": "HeNormal", ...}``) as the drop-ins.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any, TypeVar, cast

import keras
import numpy as np
from keras import initializers as _K

from .. import spec as _spec
from ..errors import ShapeError, SpecError, SpecTypeError, shorten, shown
from ..fans import SPATIAL_IN_OUT, LogicalView, from_logical_shape
from ..spec import Spec
from .draw import _constant, _truncated

__all__ = [
    "Initializer",
    "Zeros",
    "zeros",
    "Ones",
    "ones",
    "Constant",
    "constant",
    "Identity",
    "identity",
    "IdentityInitializer",
    "STFT",
    "stft",
    "STFTInitializer",
    "RandomNormal",
    "random_normal",
    "RandomUniform",
    "random_uniform",
    "TruncatedNormal",
    "truncated_normal",
    "VarianceScaling",
    "variance_scaling",
    "GlorotNormal",
    "glorot_normal",
    "GlorotUniform",
    "glorot_uniform",
    "HeNormal",
    "he_normal",
    "HeUniform",
    "he_uniform",
    "LecunNormal",
    "lecun_normal",
    "LecunUniform",
    "lecun_uniform",
    "Orthogonal",
    "orthogonal",
    "OrthogonalInitializer",
    "get",
    "serialize",
    "deserialize",
    "spec_of",
    "SpecDtypeError",
]

#: Keras' own base class, the one every initializer (a drop-in too) derives from.
Initializer = _K.Initializer

#: The dtypes a random law fills.
FLOATS = ("float16", "bfloat16", "float32", "float64")


# --------------------------------------------------------------------------- errors
# Each is a multiinit error and the builtin Keras raises for the same input, so ``except``
# clauses written against keras.initializers keep catching what they caught.


class SpecDtypeError(SpecTypeError, NotImplementedError):
    """A dtype a random law cannot fill: also the ``TypeError`` (TensorFlow), ``ValueError``
    (JAX) and ``NotImplementedError`` (torch) Keras' backends raise for it."""


class SpecAttributeError(SpecError, AttributeError):
    """A parameter Keras reads with a method it lacks (``distribution=None``)."""


class SpecIndexError(ShapeError, IndexError):
    """An axis beyond the tensor's dimensions (``input_axes=[5]`` on a 3-D kernel)."""


class SpecRuntimeError(SpecError, RuntimeError):
    """A value a backend's kernel refuses with ``RuntimeError``."""


class SpecNotImplementedError(SpecError, NotImplementedError):
    """A dtype or operation a backend has no kernel for."""


class SpecOverflowError(SpecError, OverflowError):
    """A number a backend cannot convert."""


class SpecKeyError(SpecError, KeyError):
    """A lookup a backend fails."""


class SpecMemoryError(ShapeError, MemoryError):
    """A tensor that does not fit in memory."""


#: The builtin a backend's exception derives from -> the multiinit error that is also it.
_AS = {
    TypeError: SpecTypeError,
    NotImplementedError: SpecNotImplementedError,
    RuntimeError: SpecRuntimeError,
    IndexError: SpecIndexError,
    AttributeError: SpecAttributeError,
    OverflowError: SpecOverflowError,
    KeyError: SpecKeyError,
    MemoryError: SpecMemoryError,
    ValueError: SpecError,
}


def _as_multiinit(err: Exception, message: str) -> Exception:
    """``message`` as the multiinit error that is also ``err``'s builtin classes."""
    if isinstance(err, (SpecError, ShapeError)):
        return err
    kinds = list(dict.fromkeys(_AS[c] for c in type(err).__mro__ if c.__module__ == "builtins" and c in _AS))
    # Keep the most specific: SpecTypeError already is a SpecError.
    kinds = [k for k in kinds if not any(other is not k and issubclass(other, k) for other in kinds)]
    kind: type[Exception]
    if len(kinds) > 1:
        # A backend error of several builtins (both a ValueError and a TypeError, say): a class
        # that is each of them.
        try:
            kind = type("Spec" + type(err).__name__, tuple(kinds), {"__module__": __name__})
        except TypeError:  # no consistent order of the bases: the first builtin will do
            kind = kinds[0]
    else:
        kind = kinds[0] if kinds else SpecError
    return kind(message)


def _keras_call_error(init: Any, err: Exception, shape: Any, dtype: Any) -> Exception:
    what = f"{type(init).__name__} (multiinit.keras.initializers)"
    return _as_multiinit(
        err,
        f"{what} cannot fill shape={shown(shape)}, dtype={shown(dtype)}: Keras' own "
        f"{type(init).__name__} raises {type(err).__name__}: {shorten(str(err), 300, 60)}",
    )


# --------------------------------------------------------------------------- arguments


def _number(name: str, parameter: str, value: Any) -> float:
    """A real number as Keras takes one: a Python or NumPy number, a bool, or a scalar tensor
    or array; anything else is a ``SpecTypeError`` (Keras fails on it when called)."""
    original = value
    if not isinstance(value, numbers.Number) and hasattr(value, "shape") and tuple(value.shape) == ():
        with contextlib.suppress(Exception):  # reported as the type error below
            value = np.asarray(keras.ops.convert_to_numpy(value)).item()
    if isinstance(value, (numbers.Real, np.bool_)):
        try:
            number = float(value)
        except (OverflowError, ValueError):
            number = math.inf
        if not math.isfinite(number):
            raise SpecError(
                f"{name}: {parameter}={shown(original)} is not allowed; {parameter} must be a "
                "finite number (Keras would fill nan or inf)"
            )
        return number
    raise SpecTypeError(
        f"{name}: {parameter}={shown(original)} is not allowed; {parameter} must be a real "
        "number or a scalar tensor"
    )


def _axes(name: str, parameter: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise SpecTypeError(
            f"{name}: {parameter}={shown(value)} is not allowed; {parameter} must be None or "
            "a list of axis numbers"
        )
    if not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in value):
        raise SpecTypeError(
            f"{name}: {parameter}={shown(value)} is not allowed; {parameter} must be a list of integers"
        )
    return tuple(int(a) for a in value)


def _keras_init(name: str, build: Callable[[], Any]) -> None:
    """Run Keras' own ``__init__`` checks, their errors as multiinit errors of the same builtins."""
    try:
        build()
    except (SpecError, ShapeError):
        raise
    except Exception as err:  # every Keras check becomes a typed multiinit error
        raise _as_multiinit(err, f"{name}: {shorten(str(err), 300, 60)}") from err


# --------------------------------------------------------------------------- laws in NumPy
# The laws the neutral language has no constructor for, as registered custom laws: what
# portable mode, explain and the report use for them (the drop-ins call Keras' own code).


#: The custom laws made so far, by name: equal arguments give one spec (equal, hashable alike).
_LAWS: dict[str, Spec] = {}


def _logical_law(name: str, native: Callable[[tuple[int, ...]], np.ndarray]) -> Spec:
    """A custom spec named ``name`` whose law is ``native(keras_shape)`` in Keras' layout."""
    if name in _LAWS:
        return _LAWS[name]

    def law(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        keras_shape = from_logical_shape(shape, SPATIAL_IN_OUT)
        values = np.broadcast_to(np.asarray(native(keras_shape), dtype=np.float64), keras_shape)
        return LogicalView.of(keras_shape, SPATIAL_IN_OUT).to_logical(values)

    _LAWS[name] = _spec.custom(law, name=name)
    return _LAWS[name]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes() + str(array.shape).encode()).hexdigest()[:12]


def _constant_spec(value: Any) -> Spec:
    array = None
    if not isinstance(value, numbers.Number):
        try:
            array = np.asarray(keras.ops.convert_to_numpy(value) if keras.ops.is_tensor(value) else value)
        except Exception:  # noqa: BLE001 - not an array either: the type error below
            array = None
    if array is not None and array.ndim > 0:
        if array.dtype.kind not in "biuf":
            raise SpecTypeError(
                f"Constant: value={shown(value)} is not allowed; value must be a real number "
                "or an array of real numbers"
            )
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise SpecError(
                f"Constant: value={shown(value)} is not allowed; its values must be finite "
                "(Keras would fill nan or inf)"
            )
        frozen = values.copy()
        return _logical_law(
            f"keras.initializers.Constant(array {frozen.shape} {_digest(frozen)})", lambda shape: frozen
        )
    if isinstance(value, (complex, np.complexfloating)) and not isinstance(value, numbers.Real):
        raise SpecTypeError(f"Constant: value={shown(value)} is not allowed; value must be a real number")
    return _spec.constant(_number("Constant", "value", value if array is None else array.item()))


def _identity_spec(gain: Any) -> Spec:
    gain_ = _number("Identity", "gain", gain)
    if gain_ == 1.0:
        return _spec.eye()
    if gain_ == 0.0:
        return _spec.zeros()
    # Keras' Identity is 2-D only: the shape is (rows, columns).
    return _logical_law(
        f"keras.initializers.Identity(gain={gain_!r})",
        lambda shape: gain_ * np.eye(*cast("tuple[int, int]", shape)),
    )


def _stft_kernel(side: str, window: Any, scaling: Any, periodic: bool, shape: tuple[int, ...]) -> np.ndarray:
    """Keras' STFT kernel for ``shape`` (frame, channels, bins), in float64."""
    frame_length, _, fft_length = shape
    kernel_time = np.arange(frame_length, dtype=np.float64).reshape(frame_length, 1, 1)
    freq = np.arange(fft_length, dtype=np.float64).reshape(1, 1, fft_length) / ((fft_length - 1) * 2)
    args = -2.0 * kernel_time * freq * np.pi
    kernel = np.cos(args) if side == "real" else np.sin(args)
    win: np.ndarray
    if window is not None:
        if isinstance(window, str):
            import scipy.signal  # Keras itself needs SciPy for named windows

            win = scipy.signal.get_window(window, frame_length, periodic)
        else:
            win = np.asarray(window, dtype=np.float64)
        win = win.reshape(frame_length, 1, 1)
        norm = 1.0
        if scaling == "density":
            norm = np.sqrt(np.sum(np.square(win)))
        elif scaling == "spectrum":
            norm = np.sum(np.abs(win))
        kernel = kernel * win / norm
    return kernel


def _stft_spec(side: Any, window: Any, scaling: Any, periodic: Any) -> Spec:
    if isinstance(window, (str, type(None))):
        shown_window = repr(window)
    else:
        frozen = np.asarray(
            keras.ops.convert_to_numpy(window) if keras.ops.is_tensor(window) else window, dtype=np.float64
        ).copy()
        window, shown_window = frozen, f"array {frozen.shape} {_digest(frozen)}"
    name = (
        f"keras.initializers.STFT(side={side!r}, window={shown_window}, scaling={scaling!r}, "
        f"periodic={bool(periodic)!r})"
    )
    return _logical_law(name, lambda shape: _stft_kernel(side, window, scaling, bool(periodic), shape))


# --------------------------------------------------------------------------- the table


def _normal_spec(mean: Any, stddev: Any, name: str = "RandomNormal", truncated: bool = False) -> Spec:
    mean_ = _number(name, "mean", mean)
    std_ = abs(_number(name, "stddev", stddev))  # -std draws the same law (Keras: mean + std * z)
    if std_ == 0.0:
        return _spec.constant(mean_)
    if truncated:
        return _spec.truncated_normal(mean_, std_)
    return _spec.normal(mean_, std_)


def _uniform_spec(minval: Any, maxval: Any) -> Spec:
    low, high = _number("RandomUniform", "minval", minval), _number("RandomUniform", "maxval", maxval)
    if low > high:
        # Keras draws U(maxval, minval] on TensorFlow and torch but the constant minval on JAX
        # (jax.random.uniform clamps below at minval): no one law to keep.
        raise SpecError(
            f"RandomUniform: maxval={shown(maxval)} is not allowed; maxval must be >= minval={shown(minval)}"
        )
    return _spec.constant(low) if low == high else _spec.uniform(low, high)


_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("uniform", "truncated_normal", "untruncated_normal")


def _variance_spec(
    scale: Any,
    mode: Any,
    distribution: Any,
    input_axes: Any = None,
    output_axes: Any = None,
    named: Callable[[], Spec] | None = None,
    name: str = "VarianceScaling",
) -> Spec:
    # Keras' own checks, in its order and with its builtins.
    if isinstance(scale, (str, bytes)) or scale is None:
        raise SpecTypeError(f"{name}: scale={shown(scale)} is not allowed; scale must be a positive number")
    scale_ = _number(name, "scale", scale)
    if not scale_ > 0:
        raise SpecError(f"{name}: scale={shown(scale)} is not allowed; scale must be a positive number")
    if mode not in _MODES:
        raise SpecError(f"{name}: mode={shown(mode)} is not allowed; mode must be one of {', '.join(_MODES)}")
    if not isinstance(distribution, str):
        raise SpecAttributeError(
            f"{name}: distribution={shown(distribution)} is not allowed; distribution "
            f"must be a string, one of {', '.join(_DISTRIBUTIONS)} (or 'normal')"
        )
    lowered = distribution.lower()
    lowered = "truncated_normal" if lowered == "normal" else lowered  # Keras' reading of "normal"
    if lowered not in _DISTRIBUTIONS:
        raise SpecError(
            f"{name}: distribution={shown(distribution)} is not allowed; distribution must be one "
            f"of {', '.join(_DISTRIBUTIONS)} (or 'normal', read as truncated_normal)"
        )
    inner = named() if named is not None else _spec.variance_scaling(scale_, mode, lowered)
    ins, outs = _axes(name, "input_axes", input_axes), _axes(name, "output_axes", output_axes)
    if ins is None or outs is None:
        return inner  # Keras uses the axes only when both are given
    return _spec.with_axes(inner, in_axis=ins, out_axis=outs)


def _orthogonal_spec(gain: Any) -> Spec:
    gain_ = _number("Orthogonal", "gain", gain)
    return _spec.zeros() if gain_ == 0.0 else _spec.orthogonal(abs(gain_))


def _stft_checks(side: Any, window: Any, scaling: Any) -> None:
    if side not in ("real", "imag"):
        raise SpecError(f"STFT: side={shown(side)} is not allowed; side must be 'real' or 'imag'")
    if scaling is not None and scaling not in ("density", "spectrum"):
        raise SpecError(
            f"STFT: scaling={shown(scaling)} is not allowed; scaling must be None, 'density' or 'spectrum'"
        )


def _stft(side: Any = "real", window: Any = "hann", scaling: Any = "density", periodic: Any = False) -> Spec:
    """``STFT``'s entry of the table below: Keras' arguments and defaults, Keras' checks first."""
    _stft_checks(side, window, scaling)
    return _stft_spec(side, window, scaling, periodic)


def _variance_scaling(
    scale: Any = 1.0,
    mode: Any = "fan_in",
    distribution: Any = "truncated_normal",
    input_axes: Any = None,
    output_axes: Any = None,
) -> Spec:
    """``VarianceScaling``'s entry of the table below: Keras' arguments and defaults (a def, where the
    other entries are lambdas, only because its signature is longer than a line)."""
    return _variance_spec(scale, mode, distribution, input_axes, output_axes)


#: Keras name -> spec builder taking Keras' arguments (without the seed).
_TABLE: dict[str, Callable[..., Spec]] = {
    "Zeros": lambda: _spec.zeros(),
    "Ones": lambda: _spec.ones(),
    "Constant": lambda value=0.0: _constant_spec(value),
    "Identity": lambda gain=1.0: _identity_spec(gain),
    "STFT": _stft,
    "RandomNormal": lambda mean=0.0, stddev=0.05: _normal_spec(mean, stddev),
    "RandomUniform": lambda minval=-0.05, maxval=0.05: _uniform_spec(minval, maxval),
    "TruncatedNormal": lambda mean=0.0, stddev=0.05: _normal_spec(mean, stddev, "TruncatedNormal", True),
    "VarianceScaling": _variance_scaling,
    "Orthogonal": lambda gain=1.0: _orthogonal_spec(gain),
}
for _name, _scale, _mode, _distribution, _named_spec in (
    ("GlorotNormal", 1.0, "fan_avg", "truncated_normal", _spec.glorot_normal),
    ("GlorotUniform", 1.0, "fan_avg", "uniform", _spec.glorot_uniform),
    ("HeNormal", 2.0, "fan_in", "truncated_normal", _spec.he_normal),
    ("HeUniform", 2.0, "fan_in", "uniform", _spec.he_uniform),
    ("LecunNormal", 1.0, "fan_in", "truncated_normal", _spec.lecun_normal),
    ("LecunUniform", 1.0, "fan_in", "uniform", _spec.lecun_uniform),
):
    _TABLE[_name] = (
        lambda scale, mode, distribution, named, name: (
            lambda input_axes=None, output_axes=None: _variance_spec(
                scale, mode, distribution, input_axes, output_axes, named, name
            )
        )
    )(_scale, _mode, _distribution, _named_spec, _name)


def spec_of(name: str, *args: Any, **kwargs: Any) -> Spec:
    """The neutral spec behind ``keras.initializers.<name>(*args, **kwargs)`` (Keras' arguments
    without ``seed``): the one table every drop-in builds its spec from.

    >>> spec_of("VarianceScaling", 2.0, "fan_out", "uniform")
    variance_scaling(scale=2.0, mode='fan_out', distribution='uniform')
    >>> spec_of("GlorotUniform", input_axes=[0], output_axes=[1, 2])
    with_axes(glorot_uniform(), in_axis=(0,), out_axis=(1, 2))
    >>> spec_of("RandomNormal", 0.5, 0.0), spec_of("Orthogonal", gain=-2.0)
    (constant(value=0.5), orthogonal(gain=2.0))
    """
    canonical = _CANONICAL.get(name, name) if isinstance(name, str) else name
    if canonical not in _TABLE:
        raise SpecError(
            f"name={shown(name)} is not allowed; name must be one of {', '.join(_TABLE)} "
            "(or a snake_case alias)"
        )
    try:
        inspect.signature(_TABLE[canonical]).bind(*args, **kwargs)
    except TypeError as err:
        raise SpecTypeError(f"spec_of({canonical!r}, ...): {err}") from None
    return _TABLE[canonical](*args, **kwargs)


# --------------------------------------------------------------------------- the drop-ins
# Their signatures (__init__, __call__, get_config, from_config; get, serialize, deserialize) are
# Keras' own, which carry no annotations (tests/test_keras_conformance.py compares them), so their
# types are PEP 484 type comments: mypy reads those, inspect.signature does not show them.


class _DropIn:
    """What every drop-in adds to its Keras class: the spec, the checks, typed errors."""

    spec: Spec
    #: True for the laws that draw random numbers (they need a floating dtype).
    _random = False

    def spec_for(self, shape: Any) -> Spec:
        """The spec this initializer draws on a tensor of ``shape`` (``spec``, but for Keras'
        axes: see ``VarianceScaling``)."""
        return self.spec

    def __call__(self, shape, dtype=None):  # type: (Any, Any) -> Any
        if self._random:
            self._check_dtype(shape, dtype)
        try:
            return self._fill(shape, dtype)
        except (SpecError, ShapeError):
            raise
        except Exception as err:  # Keras' and its backend's errors, typed
            raise _keras_call_error(self, err, shape, dtype) from err

    def _fill(self, shape: Any, dtype: Any) -> Any:
        return super().__call__(shape, dtype)  # type: ignore[misc]

    def _check_dtype(self, shape: Any, dtype: Any) -> None:
        try:
            resolved = keras.backend.standardize_dtype(dtype)
        except Exception as err:  # an unknown dtype name
            # Keras' backends raise TypeError (TensorFlow, JAX) or ValueError (torch) for it.
            raise SpecTypeError(
                f"{type(self).__name__}: dtype={shown(dtype)} is not allowed; it is not a "
                f"dtype Keras knows ({shorten(str(err), 200, 40)})"
            ) from err
        if resolved not in FLOATS:
            raise SpecDtypeError(
                f"{type(self).__name__} (a {self.spec!r} law) cannot fill shape={shown(shape)}: "
                f"dtype={resolved!r} is not allowed; random laws draw one of {', '.join(FLOATS)}"
                + (
                    " (complex weights have no Keras initializer law)"
                    if resolved.startswith("complex")
                    else ""
                )
            )


_C = TypeVar("_C", bound=type)


def _register(cls: _C) -> _C:
    cls.__module__ = __name__
    registered: _C = keras.saving.register_keras_serializable(package="multiinit", name=cls.__name__)(cls)
    return registered


@_register
class Zeros(_DropIn, _K.Zeros):
    """keras.initializers.Zeros (spec ``zeros()``).

    >>> float(keras.ops.sum(Zeros()((2, 3))))
    0.0
    """

    def __init__(self):  # type: () -> None
        super().__init__()
        self.spec = spec_of("Zeros")


@_register
class Ones(_DropIn, _K.Ones):
    """keras.initializers.Ones (spec ``ones()``).

    >>> float(keras.ops.sum(Ones()((2, 3))))
    6.0
    """

    def __init__(self):  # type: () -> None
        super().__init__()
        self.spec = spec_of("Ones")


@_register
class Constant(_DropIn, _K.Constant):
    """keras.initializers.Constant: a scalar (spec ``constant(value)``) or an array broadcast to
    the shape (a custom law of that array).

    >>> Constant(2.5).spec, keras.ops.convert_to_numpy(Constant([1.0, 2.0])((2, 2))).tolist()
    (constant(value=2.5), [[1.0, 2.0], [1.0, 2.0]])
    """

    def __init__(self, value=0.0):  # type: (Any) -> None
        super().__init__(value)
        self.spec = spec_of("Constant", value)

    def _fill(self, shape: Any, dtype: Any) -> Any:
        resolved = keras.backend.standardize_dtype(dtype)
        spec = self.spec
        if isinstance(spec, _spec.Constant) and _spec.is_negative_zero(spec.value) and resolved in FLOATS:
            # Keras casts the Python scalar, and TensorFlow's cache of converted scalars takes
            # -0.0 for 0.0: once a 0.0 went through it, Keras' own fill is +0.0.
            return _constant(tuple(shape), -0.0, resolved)
        return super()._fill(shape, dtype)


@_register
class Identity(_DropIn, _K.Identity):
    """keras.initializers.Identity: ``gain`` times the identity, 2-D only (spec ``eye()`` for
    gain 1, else a custom law of ``gain * eye``).

    >>> keras.ops.convert_to_numpy(Identity(2.0)((2, 3))).tolist()
    [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    """

    def __init__(self, gain=1.0):  # type: (Any) -> None
        super().__init__(gain)
        self.spec = spec_of("Identity", gain)

    def get_config(self):  # type: () -> dict[str, Any]
        # Keras 3.15's Identity has no get_config, so its config ({}) loses the gain.
        return {"gain": self.gain}

    def _fill(self, shape: Any, dtype: Any) -> Any:
        if len(shape) != 2:
            raise ShapeError(
                f"Identity: shape={shown(shape)} is not allowed; the identity initializer fills "
                f"2-D matrices only (rank {len(shape)} given)"
            )
        return super()._fill(shape, dtype)


@_register
class STFT(_DropIn, _K.STFT):
    """keras.initializers.STFT: the real or imaginary STFT kernel of shape (frame, 1, bins)
    (spec: a custom law computing the same kernel in NumPy).

    >>> tuple(STFT("imag", None)((8, 1, 5)).shape)
    (8, 1, 5)
    """

    def __init__(self, side="real", window="hann", scaling="density", periodic=False):
        # type: (Any, Any, Any, Any) -> None
        _keras_init("STFT", lambda: super(STFT, self).__init__(side, window, scaling, periodic))
        self.spec = spec_of("STFT", side, window, scaling, periodic)

    @classmethod
    def from_config(cls, config):  # type: (dict[str, Any]) -> STFT
        # An array window is saved as Keras' "__numpy__" config; Keras 3.15's own STFT hands
        # that dict to __init__ as the window, so a saved array window does not load there.
        config = dict(config)
        if isinstance(config.get("window"), dict):
            config["window"] = keras.saving.deserialize_keras_object(config["window"])
        return cls(**config)

    def _fill(self, shape: Any, dtype: Any) -> Any:
        if len(tuple(shape)) != 3:
            raise ShapeError(
                f"STFT: shape={shown(shape)} is not allowed; the STFT kernel is 3-D "
                "(frame_length, input_channels, fft_bins)"
            )
        return super()._fill(shape, dtype)


class _Seeded(_DropIn):
    """Random drop-ins: Keras' seed handling (an int or None: the same values on every call;
    a SeedGenerator: new ones), and Keras' seed errors as multiinit errors."""

    _random = True


@_register
class RandomNormal(_Seeded, _K.RandomNormal):
    """keras.initializers.RandomNormal: N(mean, stddev**2) (spec ``normal(mean, |stddev|)``).

    >>> init = RandomNormal(stddev=0.01, seed=1)
    >>> init.spec, bool(keras.ops.all(init((3, 2)) == init((3, 2))))
    (normal(std=0.01), True)
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):  # type: (Any, Any, Any) -> None
        spec = spec_of("RandomNormal", mean, stddev)
        _keras_init("RandomNormal", lambda: super(RandomNormal, self).__init__(mean, stddev, seed))
        self.spec = spec


@_register
class RandomUniform(_Seeded, _K.RandomUniform):
    """keras.initializers.RandomUniform: U[minval, maxval) (spec ``uniform(minval, maxval)``).

    >>> RandomUniform(-1, 1).spec
    uniform(low=-1.0, high=1.0)
    """

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):  # type: (Any, Any, Any) -> None
        spec = spec_of("RandomUniform", minval, maxval)
        _keras_init("RandomUniform", lambda: super(RandomUniform, self).__init__(minval, maxval, seed))
        self.spec = spec


def _exact_truncation() -> bool:
    """True where Keras' own two-sigma truncated normal is exact (TF re-draws, JAX inverts
    and clamps); Keras' torch backend keeps a value outside about 4e-6 of the time."""
    return keras.backend.backend() in ("tensorflow", "jax")


@_register
class TruncatedNormal(_Seeded, _K.TruncatedNormal):
    """keras.initializers.TruncatedNormal: N(mean, stddev**2) cut at 2 stddev (spec
    ``truncated_normal(mean, |stddev|)``).

    >>> TruncatedNormal(0.1, 0.02).spec
    truncated_normal(mean=0.1, std=0.02)
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):  # type: (Any, Any, Any) -> None
        spec = spec_of("TruncatedNormal", mean, stddev)
        _keras_init("TruncatedNormal", lambda: super(TruncatedNormal, self).__init__(mean, stddev, seed))
        self.spec = spec

    def _fill(self, shape: Any, dtype: Any) -> Any:
        if _exact_truncation() or not isinstance(self.spec, _spec.TruncatedNormal):
            return super()._fill(shape, dtype)
        spec = self.spec
        resolved = keras.backend.standardize_dtype(dtype)
        return _truncated(tuple(shape), spec.mean, spec.std, -2.0, 2.0, resolved, self.seed)


@_register
class VarianceScaling(_Seeded, _K.VarianceScaling):
    """keras.initializers.VarianceScaling (spec ``variance_scaling(scale, mode, distribution)``;
    with ``input_axes`` and ``output_axes`` both given, that spec ``with_axes``).

    Keras reads a 1-D shape ``(n,)`` as fans ``(n, n)`` and a 0-D one as ``(1, 1)``, and with
    axes it counts only the listed ones: ``spec_for(shape)`` is the exact spec for a shape
    (the unlisted axes as batch axes) and ``fans(shape)`` Keras' fans.

    >>> VarianceScaling(2.0, "fan_out", "uniform").spec
    variance_scaling(scale=2.0, mode='fan_out', distribution='uniform')
    """

    def __init__(
        self,
        scale=1.0,
        mode="fan_in",
        distribution="truncated_normal",
        seed=None,
        input_axes=None,
        output_axes=None,
    ):
        # type: (Any, Any, Any, Any, Any, Any) -> None
        spec = _variance_spec(scale, mode, distribution, input_axes, output_axes)
        _keras_init(
            "VarianceScaling",
            lambda: super(VarianceScaling, self).__init__(
                scale, mode, distribution, seed, input_axes, output_axes
            ),
        )
        self.spec = spec

    def fans(self, shape: Any) -> tuple[int, int]:
        """Keras' ``(fan_in, fan_out)`` for ``shape`` (its own ``compute_fans``).

        >>> VarianceScaling().fans((3, 3, 64, 128)), VarianceScaling().fans((7,))
        ((576, 1152), (7, 7))
        """
        from keras.src.initializers.random_initializers import compute_fans

        fans: tuple[int, int] = compute_fans(
            tuple(shape), input_axes=self.input_axes, output_axes=self.output_axes
        )
        return fans

    def spec_for(self, shape: Any) -> Spec:
        """The exact spec on ``shape``: with Keras' axes, every unlisted axis a batch axis.

        >>> GlorotUniform(input_axes=[0], output_axes=[2]).spec_for((4, 5, 6))
        with_axes(glorot_uniform(), in_axis=(0,), out_axis=(2,), batch_axis=(1,))
        """
        spec = self.spec
        if not isinstance(spec, _spec.WithAxes):
            return spec
        rank = len(tuple(shape))
        # Keras' axes are lists, so _variance_spec gave with_axes tuples.
        ins, outs = cast("tuple[int, ...]", spec.in_axis), cast("tuple[int, ...]", spec.out_axis)
        named = {a % rank for a in (*ins, *outs)} if rank else set()
        rest = tuple(a for a in range(rank) if a not in named)
        return _spec.with_axes(spec.spec, in_axis=spec.in_axis, out_axis=spec.out_axis, batch_axis=rest)

    def _fill(self, shape: Any, dtype: Any) -> Any:
        if self.distribution != "truncated_normal" or _exact_truncation():
            return super()._fill(shape, dtype)
        # Keras' own stddev for Keras' own fans, drawn exactly (Keras' torch backend lets
        # about 4e-6 of its draws out).
        fan_in, fan_out = self.fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out}.get(self.mode, (fan_in + fan_out) / 2.0)
        stddev = math.sqrt(self.scale / max(1.0, fan)) / _spec.TRUNCATED_STD_2
        resolved = keras.backend.standardize_dtype(dtype)
        return _truncated(tuple(shape), 0.0, stddev, -2.0, 2.0, resolved, self.seed)


def _named(name: str, keras_class: type[Any], doc: str) -> type[VarianceScaling]:
    def __init__(self, seed=None, input_axes=None, output_axes=None):
        # type: (VarianceScaling, Any, Any, Any) -> None
        spec = spec_of(name, input_axes=input_axes, output_axes=output_axes)
        _keras_init(name, lambda: keras_class.__init__(self, seed, input_axes, output_axes))
        self.spec = spec

    cls = type(
        name,
        (VarianceScaling, keras_class),
        {
            "__init__": __init__,
            "__doc__": doc,
            "__qualname__": name,
            "get_config": keras_class.get_config,
        },
    )
    return _register(cls)


# Each named form derives from both the drop-in VarianceScaling (its fills and fans) and
# Keras' own class (isinstance, get_config), as Keras' derives from Keras' VarianceScaling.
GlorotNormal = _named(
    "GlorotNormal", _K.GlorotNormal, "keras.initializers.GlorotNormal (spec ``glorot_normal()``)."
)
GlorotUniform = _named(
    "GlorotUniform", _K.GlorotUniform, "keras.initializers.GlorotUniform (spec ``glorot_uniform()``)."
)
HeNormal = _named("HeNormal", _K.HeNormal, "keras.initializers.HeNormal (spec ``he_normal()``).")
HeUniform = _named("HeUniform", _K.HeUniform, "keras.initializers.HeUniform (spec ``he_uniform()``).")
LecunNormal = _named(
    "LecunNormal", _K.LecunNormal, "keras.initializers.LecunNormal (spec ``lecun_normal()``)."
)
LecunUniform = _named(
    "LecunUniform", _K.LecunUniform, "keras.initializers.LecunUniform (spec ``lecun_uniform()``)."
)


@_register
class Orthogonal(_Seeded, _K.Orthogonal):
    """keras.initializers.Orthogonal: a (semi-)orthogonal matrix times ``gain`` (spec
    ``orthogonal(|gain|)``: -Q is as Haar-distributed as Q).

    >>> w = keras.ops.convert_to_numpy(Orthogonal(seed=0)((4, 3)))
    >>> bool(abs(w.T @ w - np.eye(3)).max() < 1e-5)
    True
    """

    def __init__(self, gain=1.0, seed=None):  # type: (Any, Any) -> None
        spec = spec_of("Orthogonal", gain)
        _keras_init("Orthogonal", lambda: super(Orthogonal, self).__init__(gain, seed))
        self.spec = spec

    def _fill(self, shape: Any, dtype: Any) -> Any:
        if len(tuple(shape)) < 2:
            raise ShapeError(
                f"Orthogonal: shape={shown(shape)} is not allowed; the tensor to initialize must "
                f"be at least 2-D (rank {len(tuple(shape))} given)"
            )
        return super()._fill(shape, dtype)


# The aliases are the same classes, as in Keras.
zeros, ones, constant = Zeros, Ones, Constant
identity = IdentityInitializer = Identity
stft = STFTInitializer = STFT
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
variance_scaling = VarianceScaling
glorot_normal, glorot_uniform = GlorotNormal, GlorotUniform
he_normal, he_uniform = HeNormal, HeUniform
lecun_normal, lecun_uniform = LecunNormal, LecunUniform
orthogonal = OrthogonalInitializer = Orthogonal

_CLASSES = (
    Zeros,
    Ones,
    Constant,
    Identity,
    STFT,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    LecunNormal,
    LecunUniform,
    Orthogonal,
)

#: Every name Keras' ``deserialize`` and ``get`` read -> the drop-in class (Keras' own table:
#: class names, their snake_case, and the legacy aliases).
ALL_OBJECTS_DICT: dict[str, Any] = {cls.__name__: cls for cls in _CLASSES}
ALL_OBJECTS_DICT["Initializer"] = Initializer
ALL_OBJECTS_DICT.update(
    {
        "zeros": Zeros,
        "ones": Ones,
        "constant": Constant,
        "identity": Identity,
        "stft": STFT,
        "random_normal": RandomNormal,
        "random_uniform": RandomUniform,
        "truncated_normal": TruncatedNormal,
        "variance_scaling": VarianceScaling,
        "glorot_normal": GlorotNormal,
        "glorot_uniform": GlorotUniform,
        "he_normal": HeNormal,
        "he_uniform": HeUniform,
        "lecun_normal": LecunNormal,
        "lecun_uniform": LecunUniform,
        "orthogonal": Orthogonal,
        "initializer": Initializer,
        "IdentityInitializer": Identity,
        "normal": RandomNormal,
        "one": Ones,
        "STFTInitializer": STFT,
        "OrthogonalInitializer": Orthogonal,
        "uniform": RandomUniform,
        "zero": Zeros,
    }
)
#: The table's names for the aliases.
_CANONICAL = {alias: cls.__name__ for alias, cls in ALL_OBJECTS_DICT.items() if cls is not Initializer}


def serialize(initializer):  # type: (Any) -> Any
    """keras.initializers.serialize: the initializer's config as a dict (a drop-in's names
    ``"registered_name": "multiinit>ClassName"``).

    >>> serialize(HeNormal(seed=1))["registered_name"]
    'multiinit>HeNormal'
    """
    return keras.saving.serialize_keras_object(initializer)


def deserialize(config, custom_objects=None):  # type: (Any, dict[str, Any] | None) -> Any
    """keras.initializers.deserialize: the initializer a config describes; Keras' own class
    names (``{"class_name": "HeNormal", ...}``) give the drop-ins.

    >>> type(deserialize({"class_name": "GlorotUniform", "config": {"seed": 1}})).__module__
    'multiinit.keras.initializers'
    """
    return keras.saving.deserialize_keras_object(
        config, module_objects=ALL_OBJECTS_DICT, custom_objects=custom_objects
    )


def get(identifier):  # type: (Any) -> Any
    """keras.initializers.get: an initializer from a name, a config, a class, a callable, or a
    tensor (whose values it returns for its own shape).

    >>> get("he_normal").spec, get(None)
    (he_normal(), None)
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        obj = deserialize(identifier)
    elif isinstance(identifier, str):
        obj = deserialize({"class_name": str(identifier), "config": {}})
    elif keras.ops.is_tensor(identifier) or isinstance(identifier, (np.generic, np.ndarray)):

        def initialize_fn(shape, dtype=None):  # type: (Any, Any) -> Any
            dtype = keras.backend.standardize_dtype(dtype)
            if tuple(int(d) for d in shape) != tuple(int(d) for d in identifier.shape):
                raise ShapeError(
                    f"Expected `shape` to be {identifier.shape} for direct tensor as initializer. "
                    f"Received shape={shape}"
                )
            return keras.ops.cast(identifier, dtype)

        obj = initialize_fn
    else:
        obj = identifier
    if callable(obj):
        if inspect.isclass(obj):
            obj = obj()
        return obj
    raise SpecError(f"Could not interpret initializer identifier: {shorten(str(identifier))}")
