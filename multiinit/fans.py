"""Logical layout, fans and gains: the part every framework computes slightly differently.

multiinit's *logical layout* is PyTorch's: ``(out, in, *spatial)``. A framework that stores
kernels as ``(*spatial, in, out)`` (Keras, Flax) is viewed through a transpose, and fans are
always computed on the logical view, so one spec is one distribution everywhere.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ShapeError, SpecError, shown

if TYPE_CHECKING:  # the views rearrange NumPy arrays; this module itself needs no NumPy
    import numpy as np

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
    "AXIS_ROLES",
    "Layout",
    "as_layout",
    "fans_from_axes",
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
NONLINEARITIES = (*_LINEAR, "tanh", "relu", "leaky_relu", "selu")


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
    """  # noqa: E501 - doctest output lines, as printed
    if type(shape) is tuple and len(shape) <= MAX_NDIM and all(type(d) is int and d >= 0 for d in shape):
        # A shape already checked, passed on (a model's walk asks for thousands): no ABC checks.
        checked: tuple[int, ...] = shape
        if math.prod(d for d in checked if d) <= MAX_ELEMENTS:
            return checked
    allowed = "a sequence of non-negative integers"
    if isinstance(shape, (str, bytes)):
        raise ShapeError(f"{name}={shown(shape)} is not allowed; {name} must be {allowed}")
    try:
        dims = tuple(itertools.islice(iter(shape), MAX_NDIM + 1))
    except TypeError:
        dims = (shape,)
    except Exception:  # noqa: BLE001 - an iterable that fails while iterating
        raise ShapeError(f"{name}={shown(shape)} is not allowed; {name} must be {allowed}") from None
    # (type: ignore: typeshed's numbers.Integral has no __ge__; every real Integral compares.)
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in dims):  # type: ignore[operator]
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
    return (ndim - 1, ndim - 2, *range(ndim - 2))


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


def compute_fans(shape: Sequence[int], layout: str | Layout = OUT_IN) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` stored in ``layout``.

    Equal to ``torch.nn.init._calculate_fan_in_and_fan_out`` on the logical view, so a 3x3
    conv kernel 64 -> 128 has fan_in 576 and fan_out 1152 in every layout. Raises
    ``ShapeError`` below two dimensions, as torch does (Keras would invent fans for a bias).
    ``layout`` is ``OUT_IN``, ``SPATIAL_IN_OUT`` or axis roles (see ``Layout``).

    >>> compute_fans((3, 3, 64, 128), SPATIAL_IN_OUT)
    (576, 1152)
    >>> compute_fans((32, 8, 16), "in,out,out")  # an attention query kernel (dim, heads, head_dim)
    (32, 128)
    """
    if not (isinstance(layout, str) and layout in LAYOUTS):
        return as_layout(layout).fans(shape)
    logical = to_logical_shape(as_shape(shape), layout)
    if len(logical) < 2:
        raise ShapeError(
            f"fans cannot be computed for a tensor of shape {logical}: fan in and fan out can "
            "not be computed for tensor with fewer than 2 dimensions"
        )
    receptive = math.prod(logical[2:])
    return logical[1] * receptive, logical[0] * receptive


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
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
        given = _finite(param)
        # The gain squares the slope: a slope whose square overflows has no finite gain**2.
        if given is None or not math.isfinite(given * given):
            raise SpecError(
                f"calculate_gain: param={shown(param)} is not allowed; leaky_relu's param (negative "
                f"slope) must be a finite number whose square is finite (|param| <= {_MAX_SQUARABLE:.4g})"
            )
        slope = given
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

    The first ``batch`` axes of the logical array are batch axes (stacked layers, experts):
    the logical layout is then ``(*batch, out, in, *spatial)`` and the fans are those of one
    batch element, ``compute_fans(logical_shape[batch:])``. A drawer handed only the logical
    shape would count them, so a parameter with batch axes carries its fans explicitly.

    >>> v = LogicalView.of((3, 3, 64, 128), SPATIAL_IN_OUT)
    >>> v.logical_shape, v.fans
    ((128, 64, 3, 3), (576, 1152))
    >>> LogicalView.of((4, 16, 8), "batch,in,out").fans  # 4 experts, each 16 -> 8
    (16, 8)
    """

    __slots__ = ("native_shape", "pre_shape", "axes", "logical_shape", "batch")

    def __init__(
        self,
        native_shape: Sequence[int],
        axes: Sequence[int] | None = None,
        pre_shape: Sequence[int] | None = None,
        logical_shape: Sequence[int] | None = None,
        batch: int = 0,
    ) -> None:
        self.native_shape = tuple(int(s) for s in native_shape)
        if axes is None and pre_shape is None and logical_shape is None and batch == 0 and type(batch) is int:
            # The identity view (every tensor stored in the logical layout): nothing to check.
            self.pre_shape = self.logical_shape = self.native_shape
            self.axes = tuple(range(len(self.native_shape)))
            self.batch = 0
            return
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
        if isinstance(batch, bool) or not isinstance(batch, int) or not 0 <= batch <= len(self.logical_shape):
            raise ShapeError(
                f"batch={batch!r} is not allowed; batch must be a number of leading logical axes, "
                f"0 to {len(self.logical_shape)}"
            )
        self.batch = batch

    @classmethod
    def of(cls, native_shape: Sequence[int], layout: str | Layout = OUT_IN) -> LogicalView:
        """The view of a weight stored in ``layout``: ``OUT_IN``, ``SPATIAL_IN_OUT`` or axis
        roles (see ``Layout``).

        >>> LogicalView.of((4, 8), SPATIAL_IN_OUT).logical_shape
        (8, 4)
        >>> LogicalView.of((32, 8, 16), "in,out,out").logical_shape
        (128, 32)
        """
        if not (isinstance(layout, str) and layout in LAYOUTS):
            return as_layout(layout).view(native_shape)
        return cls(native_shape, to_logical_axes(len(tuple(native_shape)), layout))

    @property
    def fans(self) -> tuple[int, int]:
        """``compute_fans`` of the logical shape without its batch axes (``ShapeError`` below 2-D)."""
        return compute_fans(self.logical_shape[self.batch :])

    @property
    def is_plain(self) -> bool:
        """True when the logical array is a pure transpose of the native one."""
        return self.pre_shape == self.native_shape and self.logical_shape == tuple(
            self.pre_shape[a] for a in self.axes
        )

    def to_logical(self, native: np.ndarray) -> np.ndarray:
        """The logical view of a NumPy array stored natively."""
        logical: np.ndarray = native.reshape(self.pre_shape).transpose(self.axes).reshape(self.logical_shape)
        return logical

    def to_native(self, logical: np.ndarray) -> np.ndarray:
        """A logical NumPy array rearranged into the native layout (inverse of ``to_logical``)."""
        permuted = tuple(self.pre_shape[a] for a in self.axes)
        inverse = [0] * len(self.axes)
        for position, axis in enumerate(self.axes):
            inverse[axis] = position
        native: np.ndarray = logical.reshape(permuted).transpose(inverse).reshape(self.native_shape)
        return native

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LogicalView) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__
        )

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, s) for s in self.__slots__))

    def __repr__(self) -> str:
        batch = f", batch={self.batch}" if self.batch else ""
        return (
            f"LogicalView(native_shape={self.native_shape}, axes={self.axes}, "
            f"pre_shape={self.pre_shape}, logical_shape={self.logical_shape}{batch})"
        )


# --------------------------------------------------------------------------- axis roles

#: The roles an axis of a stored parameter can have, and ``...`` (any number of spatial axes).
AXIS_ROLES = ("out", "in", "spatial", "batch")
_ELLIPSIS = "..."

_GRAMMAR = (
    "a layout names the role of each stored axis, in order, comma-separated: out, in, spatial, "
    "batch, or '...' (any number of spatial axes, at most once); it needs an out axis, and "
    "spatial axes need an in axis; e.g. 'out,in,...' (torch), '...,in,out' (Keras, Flax), "
    "'in,out' (transformers' Conv1D), 'in,out,out' (an attention kernel (dim, heads, head_dim)), "
    "'batch,out,in' (stacked experts)"
)


def _native_shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in dims
    ):
        raise ShapeError(f"{what}: shape={shape!r} is not allowed; shape must be a sequence of integers >= 0")
    return tuple(int(d) for d in dims)


class Layout:
    """The role of each axis of a stored parameter: which are out, in, spatial and batch.

    The grammar, one role per stored axis, comma-separated (spaces ignored):

    * ``out``: an output axis; several out axes are flattened, in order, into one logical out;
    * ``in``: an input axis; several are flattened the same way into one logical in;
    * ``spatial``: a receptive-field axis (kept, in order, after in);
    * ``batch``: an axis that is neither (stacked layers, experts): excluded from the fans,
      kept in front of the logical array;
    * ``...``: any number (zero or more) of spatial axes, at most once.

    A layout needs at least one ``out``; ``spatial`` (and ``...``) need an ``in``. A layout
    without ``in`` (``"out"``, ``"out,out"``: a bias, a per-head bias) has no fans of its own:
    such a parameter takes its fans from its layer's weight. On a shape, the logical array is
    ``(*batch, prod(out), prod(in), *spatial)`` (without the in axis when there is none) and the
    fans are torch's on ``(out, in, *spatial)``: fan_in = in x receptive field, fan_out =
    out x receptive field, batch axes not counted.

    ``Layout("out,in,...")`` is torch's and MXNet's weight, ``Layout("...,in,out")`` Keras'
    and Flax's kernel. A bad layout is a ``SpecError`` when it is made; a shape it does not fit
    is a ``ShapeError`` naming both.

    >>> q = Layout("in, out, out")           # Keras EinsumDense query kernel (dim, heads, head_dim)
    >>> q.view((32, 8, 16)).logical_shape, q.fans((32, 8, 16))
    ((128, 32), (32, 128))
    >>> Layout("...,in,out").fans((3, 3, 64, 128))
    (576, 1152)
    >>> Layout("batch,out,in").view((4, 6, 5)).logical_shape   # 4 experts of (out 6, in 5)
    (4, 6, 5)
    """

    __slots__ = ("roles",)

    def __init__(self, text: str | Layout) -> None:
        if isinstance(text, Layout):
            self.roles: tuple[str, ...] = text.roles
            return
        if not isinstance(text, str):
            raise SpecError(f"layout={text!r} is not allowed; {_GRAMMAR}")
        roles = tuple(token.strip() for token in text.split(","))
        problem = None
        unknown = [r for r in roles if r not in AXIS_ROLES and r != _ELLIPSIS]
        if not text.strip():
            problem = "it is empty"
        elif unknown:
            problem = f"{unknown[0]!r} is not an axis role"
        elif roles.count(_ELLIPSIS) > 1:
            problem = "'...' may appear only once"
        elif "out" not in roles:
            problem = "it has no out axis"
        elif ("spatial" in roles or _ELLIPSIS in roles) and "in" not in roles:
            problem = "it has spatial axes but no in axis"
        if problem:
            raise SpecError(f"layout={text!r} is not allowed: {problem}; {_GRAMMAR}")
        self.roles = roles

    @property
    def text(self) -> str:
        """The layout in its normal form, e.g. ``'in,out,out'``."""
        return ",".join(self.roles)

    @property
    def ndim(self) -> int | None:
        """The number of axes the layout describes; None when it has ``...``."""
        return None if _ELLIPSIS in self.roles else len(self.roles)

    @property
    def has_fans(self) -> bool:
        """True when the layout has an in axis, so a parameter in it has fans of its own."""
        return "in" in self.roles

    def roles_for(self, shape: Sequence[int]) -> tuple[str, ...]:
        """The role of each axis of ``shape`` (``...`` expanded), or ``ShapeError``.

        >>> Layout("out,in,...").roles_for((8, 4, 3, 3))
        ('out', 'in', 'spatial', 'spatial')
        """
        shape = _native_shape(shape, f"layout {self.text!r}")
        if _ELLIPSIS in self.roles:
            fixed = len(self.roles) - 1
            if len(shape) < fixed:
                raise ShapeError(
                    f"layout {self.text!r} does not fit shape {shape}: it names at least {fixed} axes "
                    f"and the shape has {len(shape)}"
                )
            at = self.roles.index(_ELLIPSIS)
            return self.roles[:at] + ("spatial",) * (len(shape) - fixed) + self.roles[at + 1 :]
        if len(shape) != len(self.roles):
            raise ShapeError(
                f"layout {self.text!r} does not fit shape {shape}: it names {len(self.roles)} axes "
                f"and the shape has {len(shape)}"
            )
        return self.roles

    def axes(self, shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """The axes of ``shape`` with each role, in order.

        >>> Layout("...,in,out").axes((3, 3, 64, 128))
        {'out': (3,), 'in': (2,), 'spatial': (0, 1), 'batch': ()}
        """
        roles = self.roles_for(shape)
        return {role: tuple(i for i, r in enumerate(roles) if r == role) for role in AXIS_ROLES}

    def view(self, shape: Sequence[int]) -> LogicalView:
        """The ``LogicalView`` of a parameter of native ``shape`` stored in this layout.

        >>> Layout("in,out").view((128, 512)).logical_shape   # GPT-2's Conv1D c_fc, 128 -> 512
        (512, 128)
        """
        shape = _native_shape(shape, f"layout {self.text!r}")
        by_role = self.axes(shape)
        order = by_role["batch"] + by_role["out"] + by_role["in"] + by_role["spatial"]
        logical = [shape[a] for a in by_role["batch"]]
        logical.append(math.prod(shape[a] for a in by_role["out"]))
        if by_role["in"]:
            logical.append(math.prod(shape[a] for a in by_role["in"]))
        logical.extend(shape[a] for a in by_role["spatial"])
        return LogicalView(shape, axes=order, logical_shape=logical, batch=len(by_role["batch"]))

    def fans(self, shape: Sequence[int]) -> tuple[int, int]:
        """``(fan_in, fan_out)`` of a parameter of native ``shape`` in this layout.

        >>> Layout("batch,in,out").fans((12, 64, 256))   # 12 stacked layers, each 64 -> 256
        (64, 256)
        """
        view = self.view(shape)
        if not self.has_fans:
            raise ShapeError(
                f"layout {self.text!r} has no in axis, so a parameter of shape {view.native_shape} in "
                "it has no fans of its own (give it its layer weight's fans)"
            )
        return view.fans

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self.roles == other.roles

    def __hash__(self) -> int:
        return hash((Layout, self.roles))

    def __repr__(self) -> str:
        return f"Layout({self.text!r})"

    def __str__(self) -> str:
        return self.text


def as_layout(layout: str | Layout) -> Layout:
    """``layout`` as a ``Layout``; also reads the named layouts ``OUT_IN`` and ``SPATIAL_IN_OUT``.

    >>> as_layout(SPATIAL_IN_OUT)
    Layout('...,in,out')
    """
    if isinstance(layout, Layout):
        return layout
    if layout == OUT_IN:
        return Layout("out,in,...")
    if layout == SPATIAL_IN_OUT:
        return Layout("...,in,out")
    if isinstance(layout, str) and "," not in layout and layout.strip() not in AXIS_ROLES:
        raise SpecError(
            f"layout={layout!r} is not allowed; layout must be one of {LAYOUTS} or axis roles: {_GRAMMAR}"
        )
    return Layout(layout)


def _axis_group(name: str, value: Any, ndim: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    single = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    group = (value,) if single else tuple(value)
    out = []
    for axis in group:
        # (type: ignore: typeshed's numbers.Integral has no __ge__; every real Integral compares.)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:  # type: ignore[operator]
            raise ShapeError(
                f"{name}={value!r} is not allowed for shape {shape}: an axis must be an integer in "
                f"[{-ndim}, {ndim})"
            )
        out.append(int(axis) % ndim)
    return tuple(out)


def fans_from_axes(
    shape: Sequence[int],
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of ``shape`` with JAX's meaning of ``in_axis``/``out_axis``/``batch_axis``.

    The axes index ``shape`` (negative allowed, an int or a tuple); every other axis is a
    receptive-field axis: fan_in = prod(in) x receptive, fan_out = prod(out) x receptive, and
    batch axes count in neither, as ``jax.nn.initializers.variance_scaling`` computes them.
    The defaults are JAX's (a ``(..., in, out)`` kernel). Below two dimensions, an axis out
    of range, or an axis named twice is a ``ShapeError``.

    >>> fans_from_axes((32, 8, 16), in_axis=0, out_axis=(1, 2))
    (32, 128)
    >>> fans_from_axes((3, 3, 64, 128))
    (576, 1152)
    >>> fans_from_axes((12, 64, 256), batch_axis=0)
    (64, 256)
    """
    dims = _native_shape(shape, "fans_from_axes")
    ndim = len(dims)
    if ndim < 2:
        raise ShapeError(
            f"fans cannot be computed from axes for a tensor of shape {dims}: it must have at least "
            "2 dimensions"
        )
    groups = {}
    for name, value in (("in_axis", in_axis), ("out_axis", out_axis), ("batch_axis", batch_axis)):
        try:
            groups[name] = _axis_group(name, value, ndim, dims)
        except TypeError:
            raise ShapeError(
                f"{name}={value!r} is not allowed; an axis argument must be an integer or a tuple of integers"
            ) from None
    seen: dict[int, str] = {}
    for name, axes in groups.items():
        for axis in axes:
            if axis in seen:
                raise ShapeError(
                    f"in_axis={in_axis!r}, out_axis={out_axis!r}, batch_axis={batch_axis!r} name axis "
                    f"{axis} of shape {dims} twice ({seen[axis]} and {name}); each axis has one role"
                )
            seen[axis] = name
    receptive = math.prod(d for i, d in enumerate(dims) if i not in seen)
    fan_in = math.prod(dims[a] for a in groups["in_axis"]) * receptive
    fan_out = math.prod(dims[a] for a in groups["out_axis"]) * receptive
    return fan_in, fan_out
