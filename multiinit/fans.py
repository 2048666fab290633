"""Logical layout, fans and gains: the part every framework computes slightly differently.

multiinit's *logical layout* is PyTorch's: ``(out, in, *spatial)``. A framework that stores
kernels as ``(*spatial, in, out)`` (Keras, Flax) is viewed through a transpose, and fans are
always computed on the logical view, so one spec is one distribution everywhere.
"""

from __future__ import annotations

import itertools
import math
import numbers
from typing import Any, Sequence

from .errors import ShapeError, SpecError, shown

__all__ = [
    "MAX_ELEMENTS",
    "MAX_NDIM",
    "as_shape",
    "OUT_IN",
    "SPATIAL_IN_OUT",
    "LAYOUTS",
    "NONLINEARITIES",
    "calculate_gain",
    "compute_fans",
    "to_logical_shape",
    "from_logical_shape",
    "to_logical_axes",
    "from_logical_axes",
    "LogicalView",
]

#: (out, in, *spatial): PyTorch and MXNet; also multiinit's logical layout.
OUT_IN = "out_in_spatial"
#: (*spatial, in, out): Keras and Flax kernels.
SPATIAL_IN_OUT = "spatial_in_out"
LAYOUTS = (OUT_IN, SPATIAL_IN_OUT)

# torch.nn.init.calculate_gain's table: these give gain 1.
_LINEAR = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)
NONLINEARITIES = _LINEAR + ("tanh", "relu", "leaky_relu", "selu")


#: The most dimensions a shape may have (NumPy 1.x's own limit, so every backend can hold it).
MAX_NDIM = 32
#: The most elements a shape may describe, counting a dimension of size 0 as 1 (so that fans
#: stay bounded too): 2**48, far beyond any tensor a host holds, far below NumPy's index limit.
MAX_ELEMENTS = 2**48


def as_shape(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """``shape`` as a tuple of ints, or a ``ShapeError`` naming ``name`` and what is allowed.

    A shape is a sequence of integers >= 0 (a bare integer is a 1-D shape), with at most
    ``MAX_NDIM`` dimensions whose product (zeros left out) is at most ``MAX_ELEMENTS``.

    >>> as_shape([3, 4])
    (3, 4)
    >>> as_shape((2**40, 2**40))
    Traceback (most recent call last):
    ...
    multiinit.errors.ShapeError: shape=(1099511627776, 1099511627776) is not allowed; shape must describe at most 2**48 elements (MAX_ELEMENTS), zeros left out; this one has 1208925819614629174706176
    """
    allowed = "a sequence of non-negative integers"
    if isinstance(shape, (str, bytes)):
        raise ShapeError(f"{name}={shown(shape)} is not allowed; {name} must be {allowed}")
    try:
        dims = tuple(itertools.islice(iter(shape), MAX_NDIM + 1))
    except TypeError:
        dims = (shape,)
    except Exception:  # an iterable that fails while iterating
        raise ShapeError(f"{name}={shown(shape)} is not allowed; {name} must be {allowed}") from None
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise ShapeError(f"{name}={shown(shape)} is not allowed; {name} must be {allowed}")
    if len(dims) > MAX_NDIM:
        raise ShapeError(
            f"{name}={shown(shape)} is not allowed; {name} must have at most {MAX_NDIM} dimensions (MAX_NDIM)"
        )
    dims = tuple(int(d) for d in dims)
    count = math.prod(d for d in dims if d)
    if count > MAX_ELEMENTS:
        raise ShapeError(
            f"{name}={shown(dims)} is not allowed; {name} must describe at most 2**48 elements "
            f"(MAX_ELEMENTS), zeros left out; this one has {shown(count)}"
        )
    return dims


def _check_layout(layout: str) -> None:
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise SpecError(f"layout={shown(layout)} is not allowed; layout must be one of {LAYOUTS}")


def to_logical_axes(ndim: int, layout: str) -> tuple[int, ...]:
    """The permutation that turns an array in ``layout`` into the logical layout.

    ``numpy.transpose(native, to_logical_axes(native.ndim, layout))`` is the logical view.

    >>> to_logical_axes(4, SPATIAL_IN_OUT)
    (3, 2, 0, 1)
    """
    _check_layout(layout)
    if layout == OUT_IN or ndim < 2:
        return tuple(range(ndim))
    return (ndim - 1, ndim - 2) + tuple(range(ndim - 2))


def from_logical_axes(ndim: int, layout: str) -> tuple[int, ...]:
    """The permutation that turns a logical array into ``layout`` (inverse of ``to_logical_axes``).

    >>> from_logical_axes(4, SPATIAL_IN_OUT)
    (2, 3, 1, 0)
    """
    forward = to_logical_axes(ndim, layout)
    inverse = [0] * ndim
    for position, axis in enumerate(forward):
        inverse[axis] = position
    return tuple(inverse)


def to_logical_shape(shape: Sequence[int], layout: str) -> tuple[int, ...]:
    """The logical ``(out, in, *spatial)`` shape of an array stored in ``layout``.

    >>> to_logical_shape((3, 3, 64, 128), SPATIAL_IN_OUT)
    (128, 64, 3, 3)
    """
    shape = tuple(int(s) for s in shape)
    return tuple(shape[a] for a in to_logical_axes(len(shape), layout))


def from_logical_shape(shape: Sequence[int], layout: str) -> tuple[int, ...]:
    """The shape in ``layout`` of a logical ``(out, in, *spatial)`` shape.

    >>> from_logical_shape((128, 64, 3, 3), SPATIAL_IN_OUT)
    (3, 3, 64, 128)
    """
    shape = tuple(int(s) for s in shape)
    return tuple(shape[a] for a in from_logical_axes(len(shape), layout))


def compute_fans(shape: Sequence[int], layout: str = OUT_IN) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` stored in ``layout``.

    Equal to ``torch.nn.init._calculate_fan_in_and_fan_out`` on the logical view, so a 3x3
    conv kernel 64 -> 128 has fan_in 576 and fan_out 1152 in every layout. Raises
    ``ShapeError`` below two dimensions, as torch does (Keras would invent fans for a bias).

    >>> compute_fans((3, 3, 64, 128), SPATIAL_IN_OUT)
    (576, 1152)
    """
    logical = to_logical_shape(as_shape(shape), layout)
    if len(logical) < 2:
        raise ShapeError(
            f"fans cannot be computed for a tensor of shape {logical}: fan in and fan out can "
            "not be computed for tensor with fewer than 2 dimensions"
        )
    receptive = math.prod(logical[2:])
    return logical[1] * receptive, logical[0] * receptive


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or (
        type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iuf"
    )


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity; the same table and values as torch's.

    ``param`` is leaky_relu's negative slope (default 0.01); other nonlinearities ignore it.

    >>> calculate_gain("relu")
    1.4142135623730951
    >>> calculate_gain("leaky_relu", 0.2)
    1.3867504905630728
    """
    if not isinstance(nonlinearity, str) or nonlinearity not in NONLINEARITIES:
        raise SpecError(
            f"calculate_gain: nonlinearity={shown(nonlinearity)} is not allowed; nonlinearity must "
            f"be one of {', '.join(NONLINEARITIES)}"
        )
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    if param is None:
        slope = 0.01
    else:
        slope = _finite(param)
        # The gain squares the slope: a slope whose square overflows has no finite gain**2.
        if slope is None or not math.isfinite(slope * slope):
            raise SpecError(
                f"calculate_gain: param={shown(param)} is not allowed; leaky_relu's param (negative "
                f"slope) must be a finite number whose square is finite (|param| <= {_MAX_SQUARABLE:.4g})"
            )
    return math.sqrt(2.0 / (1 + slope**2))


#: The largest float whose square is still finite.
_MAX_SQUARABLE = math.sqrt(1.7976931348623157e308)


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or None (also for ints too large for a float)."""
    if not _is_number(value):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (OverflowError, ValueError, TypeError):
        return None
    return number if math.isfinite(number) else None


class LogicalView:
    """How a framework's stored parameter maps onto the logical ``(out, in, *spatial)`` array.

    ``logical = native.reshape(pre_shape).transpose(axes).reshape(logical_shape)``. A plain
    layout is a transpose; a transposed or depthwise convolution also needs the reshapes
    (Keras' depthwise ``(kh, kw, C, m)`` is a conv with ``C*m`` outputs of one input each).

    >>> v = LogicalView.of((3, 3, 64, 128), SPATIAL_IN_OUT)
    >>> v.logical_shape, v.fans
    ((128, 64, 3, 3), (576, 1152))
    """

    __slots__ = ("native_shape", "pre_shape", "axes", "logical_shape")

    def __init__(
        self,
        native_shape: Sequence[int],
        axes: Sequence[int] | None = None,
        pre_shape: Sequence[int] | None = None,
        logical_shape: Sequence[int] | None = None,
    ) -> None:
        self.native_shape = tuple(int(s) for s in native_shape)
        self.pre_shape = tuple(int(s) for s in pre_shape) if pre_shape is not None else self.native_shape
        if math.prod(self.pre_shape) != math.prod(self.native_shape):
            raise ShapeError(f"pre_shape {self.pre_shape} does not hold {self.native_shape}")
        self.axes = tuple(axes) if axes is not None else tuple(range(len(self.pre_shape)))
        if sorted(self.axes) != list(range(len(self.pre_shape))):
            raise ShapeError(f"axes {self.axes} is not a permutation of {len(self.pre_shape)} axes")
        permuted = tuple(self.pre_shape[a] for a in self.axes)
        self.logical_shape = tuple(int(s) for s in logical_shape) if logical_shape is not None else permuted
        if math.prod(self.logical_shape) != math.prod(permuted):
            raise ShapeError(f"logical_shape {self.logical_shape} does not hold {permuted}")

    @classmethod
    def of(cls, native_shape: Sequence[int], layout: str = OUT_IN) -> "LogicalView":
        """The view of a plain weight stored in ``layout``.

        >>> LogicalView.of((4, 8), SPATIAL_IN_OUT).logical_shape
        (8, 4)
        """
        return cls(native_shape, to_logical_axes(len(tuple(native_shape)), layout))

    @property
    def fans(self) -> tuple[int, int]:
        """``compute_fans`` of the logical shape (``ShapeError`` below 2-D)."""
        return compute_fans(self.logical_shape)

    @property
    def is_plain(self) -> bool:
        """True when the logical array is a pure transpose of the native one."""
        return self.pre_shape == self.native_shape and self.logical_shape == tuple(
            self.pre_shape[a] for a in self.axes
        )

    def to_logical(self, native):
        """The logical view of a NumPy array stored natively."""
        return native.reshape(self.pre_shape).transpose(self.axes).reshape(self.logical_shape)

    def to_native(self, logical):
        """A logical NumPy array rearranged into the native layout (inverse of ``to_logical``)."""
        permuted = tuple(self.pre_shape[a] for a in self.axes)
        inverse = [0] * len(self.axes)
        for position, axis in enumerate(self.axes):
            inverse[axis] = position
        return logical.reshape(permuted).transpose(inverse).reshape(self.native_shape)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LogicalView) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__
        )

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, s) for s in self.__slots__))

    def __repr__(self) -> str:
        return (
            f"LogicalView(native_shape={self.native_shape}, axes={self.axes}, "
            f"pre_shape={self.pre_shape}, logical_shape={self.logical_shape})"
        )
