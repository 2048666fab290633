"""The compiled form: :class:`Initializer`, a Flax ``kernel_init``, and :func:`compile`.

``multiinit.compile(spec, "flax")`` (or ``spec.to("flax")``, or any constructor of
``from multiinit import flax as mif``) returns an :class:`Initializer`: it checks the key,
shape and dtype it is handed, takes the logical view of the shape, checks that the spec can
fill it, and draws through ``draw.py``.

Decisions (each one is tested in ``tests/test_flax_*.py``):

Layout and fans
    A Flax kernel is ``(*spatial, in, out)``; an initializer computes fans on the logical
    ``(out, in, *spatial)`` view of the shape it is handed, so ``xavier_uniform`` on a Dense
    kernel of shape ``(4, 8)`` is torch's ``xavier_uniform_`` on a ``Linear(4, 8)`` weight.
    A ``with_axes`` spec takes its fans from its axes on the shape handed over, as JAX's
    ``in_axis``/``out_axis``/``batch_axis`` do (``spec.fans(shape)``): an attention kernel
    ``(features, heads, head_dim)`` with ``in_axis=0, out_axis=(1, 2)``.
    A grouped or depthwise ``Conv`` kernel is already ``(*k, in/groups, out)``: its logical
    view is the plain transpose (fan_in = in/groups * prod(k), as in torch), nothing to tell.
    An initializer sees only a shape, so a bias initializer cannot know its kernel's fans:
    pass them, ``compile(spec, "flax", fans=(fan_in, fan_out))``, or use model-level apply.

Keys, dtypes and jit
    ``key`` is a JAX PRNG key (``jax.random.key(0)`` or the raw ``jax.random.PRNGKey(0)``);
    ``out_sharding`` (which JAX's own initializers accept) is taken by the drop-in
    (``initializers.py``), not here. The dtypes each law fills: ``draw.py``. An initializer
    is a plain object that ``jax.jit`` can wrap directly, ``jax.jit(init, static_argnums=(1,))``
    (it is weak-referenceable, hashable and equal by value). (Same key, same values, eager or
    jitted: ``draw.py``.)

Errors
    Each is a ``MultiinitError`` and the builtin JAX raises for the same mistake: a key that
    is not a key, a shape that is not a sequence of non-negative integers and a dtype that is
    not one are ``TypeError``s too; a law that cannot fill the shape or the dtype is a
    ``ValueError`` (``ShapeError``, ``SpecError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ShapeError, SpecError, SpecTypeError, shown
from ..fans import SPATIAL_IN_OUT, LogicalView
from ..reference import check_shape
from ..spec import Spec, WithAxes
from .draw import DtypeError, DtypeTypeError, _any_dtype, _draw

__all__ = [
    "LAYOUT",
    "Initializer",
    "compile",
    "DtypeError",
    "DtypeTypeError",
    "KeyTypeError",
    "ShapeTypeError",
    "AxisError",
]

#: Flax kernels are (*spatial, in, out).
LAYOUT = SPATIAL_IN_OUT


# --------------------------------------------------------------------------- errors


class KeyTypeError(SpecTypeError):
    """Not a JAX PRNG key where one is needed (JAX raises ``TypeError``)."""


class ShapeTypeError(ShapeError, TypeError):
    """A shape that is not a sequence of non-negative integers (JAX raises ``TypeError``)."""


class AxisError(ShapeError, IndexError):
    """An axis argument that does not index the shape (JAX raises ``IndexError``)."""


# --------------------------------------------------------------------------- arguments


def _shape(shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = (shape,)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise ShapeTypeError(
            f"shape={shown(shape)} is not allowed; shape must be a sequence of non-negative integers"
        )
    return tuple(int(d) for d in dims)


def _check_key(key: Any) -> None:
    dtype = getattr(key, "dtype", None)
    if dtype is not None and (jnp.issubdtype(dtype, jax.dtypes.prng_key) or dtype == jnp.uint32):
        return
    raise KeyTypeError(
        f"key={shown(key)} is not allowed; key must be a JAX PRNG key such as jax.random.key(0) "
        "(what flax passes to kernel_init)"
    )


def _fans_of(spec: Spec, shape: tuple[int, ...], fans: tuple[int, int] | None) -> tuple[int, int] | None:
    """The fans a ``with_axes`` spec reads off ``shape`` (``fans`` win when given)."""
    if fans is not None or not isinstance(spec, WithAxes):
        return fans
    return spec.fans(shape)


def _fill(spec: Spec, fans: tuple[int, int] | None, key: Any, shape: Any, dtype: Any) -> Any:
    """Check the arguments, then draw: the body of every compiled initializer."""
    shape = _shape(shape)
    resolved = _any_dtype(dtype)
    _check_key(key)
    view = LogicalView.of(shape, SPATIAL_IN_OUT)
    fans = _fans_of(spec, shape, fans)
    inner = spec.spec if isinstance(spec, WithAxes) else spec
    try:
        check_shape(inner, view.logical_shape, fans)
    except ShapeError as e:
        raise ShapeError(
            f"{e} (the flax array of shape {shape}, logical (out, in, *spatial) {view.logical_shape})"
        ) from None
    return _draw(inner, key, view, fans, resolved)


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

    # __weakref__: jax.jit keeps a weak reference to the function it wraps.
    __slots__ = ("spec", "fans", "__weakref__")

    def __init__(self, spec: Spec, fans: tuple[int, int] | None = None) -> None:
        self.spec = spec
        self.fans = fans

    def __call__(self, key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> Any:
        return _fill(self.spec, self.fans, key, shape, dtype)

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
            raise SpecError(
                f"fans={fans!r} is not allowed; fans must be (fan_in, fan_out), two integers >= 0"
            )
        fans = (int(fans[0]), int(fans[1]))
    return Initializer(spec, fans)
