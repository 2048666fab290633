"""Where a Flax parameter lives, and how each device computes its own part of it.

Model-level ``apply`` (``model.py``) decides which spec fills which parameter; this file turns
one parameter's spec into a ``jax.Array`` with the parameter's sharding, each device computing
only its shard, and the values independent of the mesh.

Decisions (each one is tested in ``tests/test_flax_*.py``):

Keys: the native stream
    ``seed=s`` gives the parameter at position ``order`` the key
    ``jax.random.fold_in(jax.random.key(s), order)`` (``root_key``: a seed of 2**32 or more
    folds its higher 32-bit words in turn into ``jax.random.key(s % 2**32)``, so large seeds do
    not collide). ``fold_in`` is a bijection of ``order`` for a fixed key: two parameters of one
    model never share a key (the previous ``key(derive_seed(s, order))`` mapped every parameter
    to a 32-bit seed, where two of some 77,000 parameters collide by even odds).
    Kernels run under ``jax.threefry_partitionable(True)`` whatever the process's setting, so
    the values are the same for any mesh, and each device draws its shard's random bits only.
Native draws
    One jitted kernel per (law family, static facts, shape, dtype, sharding, donation), the
    law's numbers as arguments (``draw.py``'s plans, so every variance-scaling spec on a shape
    shares a kernel), compiled with ``out_shardings=`` the parameter's sharding: no device
    holds more than its shard, and elementwise laws (constant, uniform, normal, the truncated
    family, variance scaling, mixtures of these) compile to programs without collectives.
    Whole-tensor laws (orthogonal's QR, sparse's per-column choice, eye, dirac) are correct on
    any mesh -- XLA partitions or replicates their work as it sees fit, which may cost each
    device the whole computation. The result is bit for bit the unsharded one. On the default
    device a parameter above 8 MB of an elementwise law is drawn in row blocks
    (``blocks.py``): the same numbers, with a few blocks of temporaries instead of three times
    the parameter.
Donation
    With ``donate=True`` a parameter's old ``jax.Array`` is donated to its kernel when it has
    the new array's shape, dtype and sharding: XLA writes the new values into the old buffers
    (no second copy even for one parameter); otherwise the old array is deleted as soon as the
    new one exists. Either way the old array is ``is_deleted()`` afterwards.
Portable draws, per shard
    ``jax.make_array_from_callback(shape, sharding, cb)``: for each distinct device index,
    ``cb`` converts the native box to the logical box it covers (``logical_box``) and draws
    that region of the stream rule (``rules.portable_values(..., box=)``: only the tiles it
    overlaps), then rearranges it into the native layout. Whole-tensor laws and user laws are
    drawn whole once on the host and sliced per device.
Where a parameter goes (``target``)
    In this order: the ``shardings=`` argument of ``apply`` (a ``Mesh``, one ``Sharding`` for
    all, or a tree of ``Sharding``/``PartitionSpec``/None matching the input); the leaf's own
    sharding (a committed ``jax.Array``, a ``ShapeDtypeStruct.sharding``); its partitioning
    metadata (``nn.Partitioned``/``nn.LogicallyPartitioned`` names, ``nnx.with_partitioning``'s
    ``out_sharding``) on a mesh from the metadata or the context (``jax.set_mesh``); else the
    default device (an uncommitted array, as ``jnp`` makes). A ``NamedSharding`` over an
    ``AbstractMesh`` (what ``eval_shape`` under ``jax.set_mesh`` gives) is made concrete on the
    given or context mesh of the same axes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec, Sharding

from ..errors import RuleError, ShapeError
from ..fans import LogicalView
from . import blocks as _blocks
from .draw import _is_tracer, _plan, _run

__all__ = [
    "root_key",
    "param_key",
    "native",
    "place",
    "portable",
    "logical_box",
    "context_mesh",
    "concrete",
    "check_sharding",
    "collectives",
]

Index = tuple[slice, ...]

#: What a compiled program does when it gathers or exchanges data between devices.
COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")


# --------------------------------------------------------------------------- keys


def root_key(seed: int) -> Any:
    """The key of a whole ``apply`` call: ``jax.random.key(seed)`` below 2**32; a larger seed's
    higher 32-bit words are folded into ``jax.random.key(seed % 2**32)`` one by one.

    >>> import jax
    >>> bool((jax.random.key_data(root_key(7)) == jax.random.key_data(jax.random.key(7))).all())
    True
    """
    seed = int(seed)
    key = jax.random.key(seed & 0xFFFFFFFF)
    rest = seed >> 32
    while rest:
        key = jax.random.fold_in(key, rest & 0xFFFFFFFF)
        rest >>= 32
    return key


def param_key(root: Any, order: int) -> Any:
    """The key of the parameter at position ``order``: ``jax.random.fold_in(root, order)``."""
    return jax.random.fold_in(root, int(order))


# --------------------------------------------------------------------------- meshes and shardings


def context_mesh() -> Mesh | None:
    """The concrete mesh of ``jax.set_mesh(...)`` around the call, or None."""
    mesh = jax.sharding.get_mesh()
    return mesh if isinstance(mesh, Mesh) and not mesh.empty else None


def concrete(sharding: Any, mesh: Mesh | None, path: str) -> Sharding | None:
    """``sharding`` on devices: a ``NamedSharding`` over an ``AbstractMesh`` is moved onto
    ``mesh`` (or the context mesh), which must have the same axis names and sizes."""
    if sharding is None:
        return None
    if isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, AbstractMesh):
        target = mesh if mesh is not None else context_mesh()
        if target is None:
            raise RuleError(
                f"{path!r} is sharded over an abstract mesh {dict(sharding.mesh.shape)} (from eval_shape "
                "under jax.set_mesh) and there is no mesh to put it on; call mi.apply inside the same "
                "jax.set_mesh(mesh), or pass shardings=mesh"
            )
        if dict(target.shape) != dict(sharding.mesh.shape):
            raise RuleError(
                f"{path!r} is sharded over a mesh of axes {dict(sharding.mesh.shape)}, and the mesh given "
                f"has {dict(target.shape)}; they must have the same axis names and sizes"
            )
        return NamedSharding(target, sharding.spec)
    if not isinstance(sharding, Sharding):
        raise RuleError(f"{path!r}: sharding {sharding!r} is not a jax.sharding.Sharding")
    return sharding


def named(mesh: Mesh | None, spec: PartitionSpec | None, path: str) -> NamedSharding | None:
    """``NamedSharding(mesh, spec)``; without a mesh, the context's; None when neither exists."""
    if spec is None:
        return None
    mesh = mesh if mesh is not None else context_mesh()
    if mesh is None:
        return None
    unknown = [a for a in _spec_axes(spec) if a not in mesh.axis_names]
    if unknown:
        raise RuleError(
            f"{path!r} is partitioned by {spec}, and the mesh has no axis {unknown[0]!r} (its axes: "
            f"{', '.join(map(repr, mesh.axis_names))}); map logical names to mesh axes first "
            "(nn.logical_to_mesh_sharding) or pass shardings="
        )
    return NamedSharding(mesh, spec)


def _spec_axes(spec: PartitionSpec) -> list[str]:
    out: list[str] = []
    for entry in spec:
        if entry is None or entry is PartitionSpec.UNCONSTRAINED:
            continue
        out.extend(entry if isinstance(entry, tuple) else (entry,))
    return out


def check_sharding(sharding: Sharding | None, shape: tuple[int, ...], path: str) -> None:
    """Raise ``ShapeError`` (naming ``path``) when ``sharding`` cannot hold an array of
    ``shape``: a ``PartitionSpec`` longer than the array's rank, or a dimension the mesh axes
    do not divide (JAX refuses uneven shards)."""
    if sharding is None:
        return
    if isinstance(sharding, NamedSharding) and len(sharding.spec) > len(shape):
        raise ShapeError(
            f"{path!r} of shape {shape} cannot be sharded by {sharding.spec}: the spec names "
            f"{len(sharding.spec)} dimensions and the parameter has {len(shape)}"
        )
    try:
        sharding.shard_shape(shape)
    except Exception as e:  # noqa: BLE001 - JAX's IndivisibleError and friends, reworded
        raise ShapeError(f"{path!r} of shape {shape} cannot be sharded by {sharding}: {e}") from None


# --------------------------------------------------------------------------- native draws


@functools.lru_cache(maxsize=1024)
def _kernel(
    family: str,
    static: tuple[Any, ...],
    shape: tuple[int, ...],
    dtype: np.dtype,
    sharding: Sharding | None,
    donate: bool,
) -> Callable[..., Any]:
    blocks = _blocks.row_blocks(family, shape, dtype, sharding)

    def body(*args: Any) -> Any:
        old, (root, order, *numbers) = (args[0], args[1:]) if donate else (None, args)
        key = jax.random.fold_in(root, order)
        if blocks == 1:
            return _run(family, static, shape, dtype, key, *numbers)

        def draw(block_key: Any, block: tuple[int, ...]) -> Any:
            return _run(family, static, block, dtype, block_key, *numbers)

        # A big parameter in row blocks: the same numbers, a block's temporaries (blocks.py).
        return _blocks.blocked(draw, key, shape, dtype, blocks, old)

    if donate:
        # keep_unused: the old array's values are not read, only its buffer reused.
        return jax.jit(body, out_shardings=sharding, donate_argnums=(0,), keep_unused=True)
    return jax.jit(body, out_shardings=sharding)


def _plan_of(
    spec: Any, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype
) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
    if spec.random:
        return _plan(spec, view, fans, dtype)
    return "spec", (spec, view, fans), ()


def program(
    spec: Any,
    view: LogicalView,
    fans: tuple[int, int] | None,
    dtype: np.dtype,
    sharding: Sharding | None,
    donate: bool = False,
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The jitted kernel of ``spec`` on ``view`` with ``out_shardings=sharding``, and the law's
    numbers it takes after ``(root, order)`` (and the donated array first, with ``donate``)."""
    family, static, numbers = _plan_of(spec, view, fans, dtype)
    return _kernel(family, static, view.native_shape, dtype, sharding, donate), numbers


def native(
    spec: Any,
    view: LogicalView,
    fans: tuple[int, int] | None,
    dtype: np.dtype,
    root: Any,
    order: int,
    sharding: Sharding | None,
    old: Any = None,
) -> Any:
    """``spec`` drawn for the parameter at ``order`` in its native layout, placed by
    ``sharding`` (None: the default device), each device computing its shard. ``old`` (an
    array to donate, or None) gives its buffers to the result when they fit."""
    if math.prod(view.native_shape) == 0:
        return _zeros(view.native_shape, dtype, sharding)
    donate = old is not None and _fits(old, view.native_shape, dtype, sharding)
    kernel, numbers = program(spec, view, fans, dtype, sharding, donate)
    args = (old,) if donate else ()
    with jax.threefry_partitionable(True):
        return kernel(*args, root, np.uint32(order), *numbers)


def _fits(old: Any, shape: tuple[int, ...], dtype: np.dtype, sharding: Sharding | None) -> bool:
    """True when XLA can write the new array into ``old``'s buffers."""
    if tuple(old.shape) != tuple(shape) or np.dtype(old.dtype) != dtype:
        return False
    if sharding is None:
        return not getattr(old, "committed", True)
    same: bool = old.sharding == sharding
    return same


def _zeros(shape: tuple[int, ...], dtype: np.dtype, sharding: Sharding | None) -> Any:
    return full(shape, dtype, 0, sharding)


@functools.lru_cache(maxsize=256)
def _full_kernel(
    shape: tuple[int, ...], dtype: Any, value: Any, sharding: Sharding | None
) -> Callable[[], Any]:
    return jax.jit(lambda: jnp.full(shape, value, dtype), out_shardings=sharding)


def full(shape: tuple[int, ...], dtype: Any, value: Any, sharding: Sharding | None) -> Any:
    """An array of ``value`` placed by ``sharding``, each device writing its shard."""
    return _full_kernel(tuple(shape), np.dtype(dtype), value, sharding)()


def collectives(
    spec: Any, view: LogicalView, fans: tuple[int, int] | None, dtype: np.dtype, sharding: Sharding | None
) -> list[str]:
    """The collectives (``COLLECTIVES``) in the compiled native program of ``spec`` on
    ``sharding``: none for an elementwise law."""
    kernel, numbers = program(spec, view, fans, dtype, sharding)
    jitted = cast("jax.stages.Wrapped", kernel)  # program's kernel is jax.jit's
    with jax.threefry_partitionable(True):
        # None where a backend has no text of its program, which fails below as it always has.
        text = cast(str, jitted.lower(jax.random.key(0), np.uint32(0), *numbers).compile().as_text())
    return [name for name in COLLECTIVES if name in text]


# --------------------------------------------------------------------------- host values on devices


def _norm(index: Index, shape: tuple[int, ...]) -> Index:
    return tuple(slice(*s.indices(n)[:2]) for s, n in zip(index, shape, strict=True))


def from_callback(
    shape: tuple[int, ...], dtype: np.dtype, sharding: Sharding | None, part: Callable[[Index], np.ndarray]
) -> Any:
    """A ``jax.Array`` of ``shape`` placed by ``sharding`` (None: the default device), each
    distinct device index computed once by ``part(native_index) -> np.ndarray``."""
    shape = tuple(shape)
    if sharding is None:
        return jnp.asarray(np.asarray(part(tuple(slice(0, n) for n in shape)), dtype=dtype))
    memo: dict[tuple[Any, ...], np.ndarray] = {}

    def callback(index: Index) -> np.ndarray:
        index = _norm(index, shape)
        key = tuple((s.start, s.stop) for s in index)
        if key not in memo:
            memo[key] = np.ascontiguousarray(np.asarray(part(index), dtype=dtype))
        return memo[key]

    # JAX annotates the callback as taking `Index | None`, but it asserts the index is not None
    # before every call: a callback of an Index is what it calls.
    return jax.make_array_from_callback(shape, sharding, callback)  # type: ignore[arg-type]


def place(values: Any, sharding: Sharding | None) -> Any:
    """A host (NumPy) or JAX array moved onto ``sharding``: each device receives its slice."""
    if _is_tracer(values):
        return values if sharding is None else jax.lax.with_sharding_constraint(values, sharding)
    if isinstance(values, jax.Array):
        return values if sharding is None else jax.device_put(values, sharding)
    host = np.asarray(values)
    return from_callback(host.shape, host.dtype, sharding, lambda index: host[index])


# --------------------------------------------------------------------------- portable, per shard


def logical_box(view: LogicalView, index: Index) -> tuple[Index, Callable[[np.ndarray], np.ndarray]] | None:
    """The logical box that covers the native ``index``, and a function that turns that box's
    logical values into the native block of ``index``.

    For views that transpose the native axes and merge runs of them (every Flax view: plain
    kernels, transposed convolutions, axis-role layouts). A merged logical axis whose native
    slice is not one run of its flat index (a sharded axis after the first of a merged group)
    is covered by the run's bounding range, and the elements are picked out of it. Returns
    None for other views (the caller draws the whole tensor).

    >>> from multiinit.fans import Layout
    >>> view = Layout("in,out,out").view((4, 2, 3))        # logical (6, 4)
    >>> box, pick = logical_box(view, (slice(0, 4), slice(1, 2), slice(0, 3)))
    >>> box
    (slice(3, 6, None), slice(0, 4, None))
    """
    native = view.native_shape
    if view.pre_shape != native:
        return None
    permuted = [native[a] for a in view.axes]
    # Each logical axis is a run of the permuted native axes (size-1 axes may go to either
    # neighbour: their slice is always [0, 1)).
    groups: list[list[int]] = []
    position = 0
    for size in view.logical_shape:
        group: list[int] = []
        product = 1
        while product < size and position < len(permuted):
            group.append(position)
            product *= permuted[position]
            position += 1
        if product != size:
            return None
        groups.append(group)
    if position < len(permuted):
        if not groups or any(permuted[p] != 1 for p in range(position, len(permuted))):
            return None
        groups[-1].extend(range(position, len(permuted)))
    index = _norm(index, native)
    sub = [index[a] for a in view.axes]  # the native slices in permuted order
    box: list[slice] = []
    picks: list[np.ndarray | None] = []
    for group in groups:
        sizes = [permuted[p] for p in group]
        slices = [sub[p] for p in group]
        strides = [math.prod(sizes[i + 1 :]) for i in range(len(sizes))]
        first = sum(s.start * st for s, st in zip(slices, strides, strict=True))
        last = sum((s.stop - 1) * st for s, st in zip(slices, strides, strict=True))
        if any(s.stop <= s.start for s in slices):
            box.append(slice(0, 0))
            picks.append(None)
            continue
        box.append(slice(first, last + 1))
        lengths = [s.stop - s.start for s in slices]
        if last + 1 - first == math.prod(lengths):
            picks.append(None)  # one run: the box is exactly the block
        else:
            grids = np.ix_(*[np.arange(s.start, s.stop) for s in slices])
            flat = sum(g * st for g, st in zip(grids, strides, strict=True)) - first
            picks.append(np.asarray(flat).reshape(-1))
    inverse = [0] * len(view.axes)
    for position, axis in enumerate(view.axes):
        inverse[axis] = position

    def to_native(values: np.ndarray) -> np.ndarray:
        for axis, pick in enumerate(picks):
            if pick is not None:
                values = np.take(values, pick, axis=axis)
        values = values.reshape([sub[p].stop - sub[p].start for p in range(len(permuted))])
        native: np.ndarray = values.transpose(inverse)
        return native

    return tuple(box), to_native


def portable(
    shape: tuple[int, ...],
    view: LogicalView,
    dtype: np.dtype,
    sharding: Sharding | None,
    region: Callable[[Index | None], np.ndarray],
    elementwise: bool,
) -> Any:
    """The portable values of a parameter placed by ``sharding``: ``region(logical_box)`` gives
    the logical values of a box (None: the whole tensor). An elementwise law is drawn per device
    index, only the tiles each one overlaps; any other law is drawn whole once and sliced."""
    whole: list[np.ndarray] = []

    def native_whole() -> np.ndarray:
        if not whole:
            whole.append(view.to_native(region(None)))
        return whole[0]

    def part(index: Index) -> np.ndarray:
        if elementwise:
            found = logical_box(view, index)
            if found is not None:
                box, to_native = found
                return to_native(region(box))
        return native_whole()[index]

    return from_callback(shape, dtype, sharding, part)
