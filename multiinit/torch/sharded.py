"""Any part of a parameter, drawn alone: the stream rule's torch half, and DTensor shards.

A parameter's values are defined on its *logical* ``(out, in, *spatial)`` tensor by the stream
rule (``multiinit.stream``); this file writes any part of them into any torch destination:

* a plain tensor is one part, its whole self;
* a ``DTensor`` (FSDP2 ``fully_shard``, tensor parallel ``parallelize_module``, FSDP2 + TP on a
  2-D mesh, any ``Shard(d)`` / ``_StridedShard`` / ``Replicate`` placement) is this rank's local
  shard: the global indices it holds along each dim (``local_runs``), written into
  ``to_local()``, on its own device, with no collective and no full tensor for an elementwise law;
* a ``ConvTranspose`` weight is stored ``(in, out/g, *k)``: each logical box is written into a
  transposed view of the stored one, group by group (``_pieces``);
* any other view -- a registered layout (``"in,out"``, ``"in,out,out"``, ``"batch,in,out"``),
  attention's packed ``(3E, E)`` as ``(3, E, E)`` -- splits stored axes, permutes them and
  merges them: each local box is cut where a split or a merge needs it, so that every piece is
  a view of the local tensor (``_layout_pieces``), never a copy.

**The torch half of the stream rule.** Tile ``t`` of the parameter at position ``order`` is
drawn into a contiguous tensor of the tile's shape (on the parameter's device, in its dtype)
by the spec's torch sampler (``draw.py``, with the whole tensor's fans), from a
``torch.Generator`` on that device seeded with ``stream.tile_seed(base, order, t)``; ``base``
is ``stream.seed_base(seed)`` for ``mi.apply(..., seed=seed)``. (A contiguous tile, because
torch's CPU ``normal_`` gives other numbers on a strided view.) A tile that lies whole in a
contiguous part of the destination is drawn there directly; the others through a tile-sized
temporary. Tiles are drawn on several threads for CPU tensors (``stream.run_parallel``).
So a value depends on the seed, the order, the spec, the logical shape, the dtype and the
device type -- never on the world size, the mesh or the placements.

**Whole-tensor laws** (orthogonal, sparse, custom, a mixture holding one) are drawn whole, in
logical layout, from a generator seeded with the tile-0 seed, and each rank keeps its part:
a sharded parameter costs every rank one full draw and one full temporary of the logical
tensor (a QR of the whole matrix for orthogonal). **eye and dirac** are computed for each part
directly (no full tensor). **Portable mode** writes ``rules.portable_values`` region by region:
the NumPy reference, tile by tile on threads, straight into the destination.

The compiled fillers and drop-ins (``mi.compile(spec, "torch")(dtensor)``,
``mit.xavier_uniform_(dtensor)``) draw one 32-bit ``base`` from the generator (torch's global
RNG without one) and fill the local shard by the same rule, order 0, with torch's stored-shape
fans: ranks seeded alike agree, for any mesh. (On plain tensors they keep torch's own numbers.)
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from .. import stream as _stream
from ..errors import ShapeError
from ..fans import LogicalView
from ..spec import Constant, Dirac, Eye, Mixture, Orthogonal, Spec, WithAxes
from .draw import _filler, _runs_user_code

# torch.distributed.tensor costs 0.7 s to import: it is looked up only once a DTensor exists
# (a DTensor cannot exist before its module was imported).
_DTENSOR_MODULE = "torch.distributed.tensor"


def _placements() -> Any:
    from torch.distributed.tensor import placement_types

    return placement_types


__all__ = ["is_dtensor", "local_runs", "check_dtensor", "Stream", "fill", "fill_compiled"]

Box = tuple[slice, ...]
#: One contiguous stretch of a dim held locally: (global start, local start, length).
Run = tuple[int, int, int]


def is_dtensor(tensor: Any) -> bool:
    """True for a ``torch.distributed.tensor.DTensor`` (FSDP2 and tensor-parallel parameters).

    >>> is_dtensor(torch.empty(2, 3))
    False
    """
    module = sys.modules.get(_DTENSOR_MODULE)
    cls = getattr(module, "DTensor", None) if module is not None else None
    return cls is not None and isinstance(tensor, cls)


# --------------------------------------------------------------------------- which part is local


def _take(runs: list[tuple[int, int]], start: int, stop: int) -> list[tuple[int, int]]:
    """Positions ``[start, stop)`` of the index list that ``runs`` (global start, length) spell."""
    out = []
    position = 0
    for first, length in runs:
        lo, hi = max(start, position), min(stop, position + length)
        if lo < hi:
            out.append((first + lo - position, hi - lo))
        position += length
    return out


def _chunk(runs: list[tuple[int, int]], chunks: int, index: int) -> list[tuple[int, int]]:
    # torch.chunk: pieces of ceil(n / chunks), the last ones shorter or empty (Shard, FSDP2).
    n = sum(length for _, length in runs)
    size = -(-n // chunks)
    return _take(runs, min(n, index * size), min(n, (index + 1) * size))


def _strided(
    runs: list[tuple[int, int]], split_factor: int, chunks: int, index: int
) -> list[tuple[int, int]]:
    # _StridedShard: torch.chunk into split_factor pieces, each chunked in turn; this rank
    # holds its chunk of every piece, in order (FSDP2 + TP's right-to-left sharding).
    n = sum(length for _, length in runs)
    first = -(-n // split_factor)
    out = []
    for j in range(split_factor):
        lo, hi = min(n, j * first), min(n, (j + 1) * first)
        m = hi - lo
        size = -(-m // chunks)
        out.extend(_take(runs, lo + min(m, index * size), lo + min(m, (index + 1) * size)))
    return out


def _merge(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, length in runs:
        if merged and merged[-1][0] + merged[-1][1] == first:
            merged[-1] = (merged[-1][0], merged[-1][1] + length)
        elif length:
            merged.append((first, length))
    return merged


def _is_strided(placement: Any) -> bool:
    strided = getattr(_placements(), "_StridedShard", None)
    return strided is not None and isinstance(placement, strided)


def _placement_problem(placement: Any) -> str | None:
    types = _placements()
    if isinstance(placement, (types.Replicate, types.Shard)) or _is_strided(placement):
        return None
    if isinstance(placement, types.Partial):
        return (
            "a Partial placement holds pending sums, not values; initialize the parameter "
            "before it is made Partial, or redistribute it to Shard/Replicate first"
        )
    return f"placement {placement!r} is not one multiinit knows (Shard, _StridedShard, Replicate)"


def local_runs(tensor: Any) -> list[list[Run]] | None:
    """The global indices this rank's shard of ``tensor`` holds, per dim, as runs
    ``(global start, local start, length)`` in local order; None when this rank holds none.

    A plain tensor holds everything: one run per dim.

    >>> import torch
    >>> local_runs(torch.empty(4, 3))
    [[(0, 0, 4)], [(0, 0, 3)]]
    """
    shape = tuple(tensor.shape)
    if not is_dtensor(tensor):
        return [[(0, 0, n)] if n else [] for n in shape]
    mesh = tensor.device_mesh
    coordinate = mesh.get_coordinate()
    if coordinate is None:
        return None
    per_dim: list[list[tuple[int, int]]] = [[(0, n)] if n else [] for n in shape]
    for mesh_dim, placement in enumerate(tensor.placements):
        problem = _placement_problem(placement)
        if problem:
            raise ShapeError(problem)
        if isinstance(placement, _placements().Replicate):
            continue
        chunks, index = mesh.size(mesh_dim), coordinate[mesh_dim]
        if _is_strided(placement):
            per_dim[placement.dim] = _strided(
                per_dim[placement.dim], int(placement.split_factor), chunks, index
            )
        else:
            per_dim[placement.dim] = _chunk(per_dim[placement.dim], chunks, index)
    out = []
    for runs in per_dim:
        local, position = [], 0
        for first, length in _merge(runs):
            local.append((first, position, length))
            position += length
        out.append(local)
    return out


def check_dtensor(tensor: Any, path: str | None = None) -> None:
    """Raise ``ShapeError`` (naming ``path``) when the local shard of a DTensor is not what its
    placements say, or a placement holds no values (``Partial``); write nothing.

    >>> import torch.distributed as dist
    >>> from torch.distributed.device_mesh import init_device_mesh
    >>> from torch.distributed.tensor import DTensor, Partial, Shard, distribute_tensor
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> mesh = init_device_mesh("cpu", (1,))
    >>> check_dtensor(distribute_tensor(torch.zeros(4, 3), mesh, [Shard(0)]), "w")  # a shard: fine
    >>> check_dtensor(DTensor.from_local(torch.zeros(4, 3), mesh, [Partial()]), "w")
    Traceback (most recent call last):
    multiinit.errors.ShapeError: multiinit cannot initialize 'w' (placements (Partial(sum),)): a Partial ...
    >>> dist.destroy_process_group()
    """
    where = repr(path) if path else "a DTensor"
    for placement in tensor.placements:
        problem = _placement_problem(placement)
        if problem:
            raise ShapeError(
                f"multiinit cannot initialize {where} (placements {tuple(tensor.placements)}): {problem}"
            )
    runs = local_runs(tensor)
    if runs is None:
        return
    local = tuple(tensor._local_tensor.shape)
    expected = tuple(sum(length for _, _, length in dim) for dim in runs)
    if local != expected:
        raise ShapeError(
            f"multiinit cannot initialize {where}: its local shard has shape {local} where its "
            f"placements {tuple(tensor.placements)} on a mesh of shape {tuple(tensor.device_mesh.shape)} "
            f"give {expected}; only torch.chunk-style Shard, _StridedShard and Replicate layouts are known"
        )


def _local(tensor: Any) -> torch.Tensor:
    # Under no_grad, to_local() is the local tensor itself: writes land in the shard's storage
    # (for FSDP2, a view into its padded all-gather buffer).
    local: torch.Tensor = tensor.to_local() if is_dtensor(tensor) else tensor
    return local


# --------------------------------------------------------------------------- logical pieces


def _boxes(runs: list[list[Run]]) -> Iterator[tuple[Box, Box]]:
    """(global box, local box) for every combination of runs across dims."""
    if any(not dim for dim in runs):
        return

    def product(axis: int) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...]]]:
        if axis == len(runs):
            yield (), ()
            return
        for first, local, length in runs[axis]:
            for rest_global, rest_local in product(axis + 1):
                yield (
                    (slice(first, first + length), *rest_global),
                    (slice(local, local + length), *rest_local),
                )

    yield from product(0)


def _transposed_groups(view: LogicalView) -> int | None:
    """The groups of a ConvTranspose view ((in, out/g, *k) stored, (out, in/g, *k) logical),
    or None for a plain (identity) view."""
    if view.pre_shape == view.native_shape and view.axes == tuple(range(len(view.axes))):
        return None
    pre, axes = view.pre_shape, view.axes
    if (
        len(pre) == len(view.native_shape) + 1
        and axes[:3] == (0, 2, 1)
        and axes[3:] == tuple(range(3, len(pre)))
    ):
        return pre[0]
    raise ShapeError(f"{view!r} is not a layout the torch adapter writes (plain or transposed conv)")


def _groups(coarse: Sequence[int], fine: Sequence[int]) -> list[list[int]] | None:
    """For each axis of ``coarse``, the consecutive axes of ``fine`` a row-major reshape
    merges into it; None when ``fine`` does not refine ``coarse`` that way."""
    groups, j = [], 0
    for n in coarse:
        group: list[int] = []
        size = 1
        while j < len(fine) and (not group or size < n):
            group.append(j)
            size *= fine[j]
            j += 1
        if size != n:
            return None
        groups.append(group)
    if not groups:
        return None if j < len(fine) else groups
    while j < len(fine) and fine[j] == 1:  # trailing size-1 axes belong to the last one
        groups[-1].append(j)
        j += 1
    return groups if j == len(fine) else None


def _row_major(lo: int, hi: int, sizes: Sequence[int]) -> list[Box]:
    """The indices ``[lo, hi)`` of a row-major axis of ``sizes`` as boxes over those sizes
    (each one: single leading indices, one range, full trailing axes), in order."""
    if len(sizes) == 1 or hi <= lo:
        return [(slice(lo, hi),)] if len(sizes) == 1 and hi > lo else []
    inner = math.prod(sizes[1:])
    full = tuple(slice(0, n) for n in sizes[1:])
    first, last = lo // inner, (hi - 1) // inner
    if first == last:
        return [
            (slice(first, first + 1), *rest)
            for rest in _row_major(lo - first * inner, hi - first * inner, sizes[1:])
        ]
    out: list[Box] = []
    start = -(-lo // inner) * inner
    if start > lo:
        out += [(slice(first, first + 1), *rest) for rest in _row_major(lo - first * inner, inner, sizes[1:])]
    stop = hi - hi % inner
    if stop > start:
        out.append((slice(start // inner, stop // inner), *full))
    if hi > stop:
        out += [(slice(last, last + 1), *rest) for rest in _row_major(0, hi - stop, sizes[1:])]
    return out


def _layout_pieces(
    view: LogicalView, runs: list[list[Run]], local: torch.Tensor
) -> list[tuple[Box, torch.Tensor]]:
    """``_pieces`` for any view that splits stored axes, permutes them and merges them again
    (a registered layout such as ``"in,out"`` or ``"batch,in,out"``, attention's packed
    (3E, E) -> (3, E, E)): each local box is cut where a split or a merge needs it, so every
    piece is a view of the local tensor (never a copy) whose logical box is one box."""
    native, pre, logical = view.native_shape, view.pre_shape, view.logical_shape
    split = _groups(native, pre)
    permuted = tuple(pre[a] for a in view.axes)
    merge = _groups(logical, permuted)
    if split is None or merge is None:
        raise ShapeError(
            f"{view!r} is not a layout the torch adapter writes (a split, a permutation, a merge)"
        )
    pieces: list[tuple[Box, torch.Tensor]] = []

    def merged(target: torch.Tensor, box: list[slice]) -> None:
        # box: one slice per permuted axis. Each logical axis needs, over its group, single
        # leading indices, one range and full trailing axes; cut the first group that has not.
        for group in merge:
            ranged = [i for i in group if box[i].stop - box[i].start > 1]
            open_ = [i for i in group if (box[i].start, box[i].stop) != (0, permuted[i])]
            last_open = open_[-1] if open_ else None
            wide = [i for i in ranged if last_open is not None and i < last_open]
            if wide:
                cut(target, box, wide[0])
                return
        lengths, logical_box = [], []
        for group in merge:
            start, size = 0, 1
            for i in reversed(group):
                start += box[i].start * size
                size *= permuted[i]
            length = math.prod(box[i].stop - box[i].start for i in group)
            logical_box.append(slice(start, start + length))
            lengths.append(length)
        try:
            destination = target.view(lengths)
        except RuntimeError:  # strides that do not merge: cut a group down to single rows
            to_cut = next(i for group in merge for i in group[:-1] if box[i].stop - box[i].start > 1)
            cut(target, box, to_cut)
            return
        pieces.append((tuple(logical_box), destination))

    def cut(target: torch.Tensor, box: list[slice], axis: int) -> None:
        for k in range(box[axis].stop - box[axis].start):
            narrower = list(box)
            narrower[axis] = slice(box[axis].start + k, box[axis].start + k + 1)
            merged(target.narrow(axis, k, 1), narrower)

    for global_box, local_box in _boxes(runs):
        target = local[local_box]
        per_axis = []
        for part, group in zip(global_box, split, strict=True):
            sizes = [pre[i] for i in group]
            per_axis.append(_row_major(part.start, part.stop, sizes))
        for combination in _product(per_axis):
            destination = target
            pre_box: list[slice] = []
            # Each native axis becomes its pre axes: a slice of it, then an unflatten (a view).
            for axis in reversed(range(len(native))):
                sub = combination[axis]
                sizes = [pre[i] for i in split[axis]]
                start = sum(s.start * math.prod(sizes[k + 1 :]) for k, s in enumerate(sub))
                length = math.prod(s.stop - s.start for s in sub)
                destination = destination.narrow(axis, start - global_box[axis].start, length)
                destination = destination.unflatten(axis, [s.stop - s.start for s in sub])
            for sub in combination:
                pre_box.extend(sub)
            merged(destination.permute(view.axes), [pre_box[a] for a in view.axes])
    return pieces


def _product(per_axis: list[list[Box]]) -> Iterator[tuple[Box, ...]]:
    if not per_axis:
        yield ()
        return
    for first in per_axis[0]:
        for rest in _product(per_axis[1:]):
            yield (first, *rest)


def _pieces(view: LogicalView, runs: list[list[Run]], local: torch.Tensor) -> list[tuple[Box, torch.Tensor]]:
    """(logical box, destination of that box's shape) covering the local part of a parameter."""
    identity = view.is_plain and view.axes == tuple(range(len(view.axes)))
    transposed_conv = len(view.pre_shape) == len(view.native_shape) + 1 and view.axes[:3] == (0, 2, 1)
    if not identity and not transposed_conv:
        return _layout_pieces(view, runs, local)
    groups = _transposed_groups(view)
    pieces = []
    for global_box, local_box in _boxes(runs):
        target = local[local_box]
        if groups is None:
            pieces.append((global_box, target))
            continue
        # Stored (in, out/g, *k): an input channel i of group i // (in/g) -- logical rows
        # g*(out/g) + o, logical column i % (in/g). Split the stored rows at group borders.
        per_in, per_out = view.pre_shape[1], view.pre_shape[2]
        rows, cols = global_box[0], global_box[1]
        for group in range(rows.start // per_in, (rows.stop - 1) // per_in + 1):
            lo, hi = max(rows.start, group * per_in), min(rows.stop, (group + 1) * per_in)
            logical = (
                slice(group * per_out + cols.start, group * per_out + cols.stop),
                slice(lo - group * per_in, hi - group * per_in),
                *global_box[2:],
            )
            part = target[lo - rows.start : hi - rows.start].transpose(0, 1)
            pieces.append((logical, part))
    return pieces


# --------------------------------------------------------------------------- the stream of a parameter


@dataclass(frozen=True)
class Stream:
    """Where one parameter's logical values come from.

    ``shape`` is the logical shape, ``fans`` the whole tensor's (None when the law uses none);
    ``base`` and ``order`` give the native tile seeds (``stream.tile_seed``); ``portable``
    (``portable(box, write)``, ``rules.portable_values``) replaces them in portable mode;
    ``prepared`` is a user law's values already drawn and validated: the whole logical tensor,
    or a ``Staged`` part of it that covers this rank's pieces; they are then copied from.
    """

    spec: Spec
    shape: tuple[int, ...]
    fans: tuple[int, int] | None
    order: int = 0
    base: int | None = None
    portable: Callable[[Box | None, Callable[[Box, np.ndarray], None] | None], Any] | None = None
    prepared: torch.Tensor | Staged | None = None
    path: str | None = None


@dataclass(frozen=True)
class Staged:
    """The values of the logical ``region`` of a parameter (the smallest box holding every
    local piece): what a rank draws of an elementwise user law. ``staged[box]`` is the part
    for a logical box inside the region, as ``whole[box]`` would be."""

    region: Box
    values: torch.Tensor

    def __getitem__(self, box: Box) -> torch.Tensor:
        return self.values[_stream.shift(box, self.region)]


def local_region(tensor: Any, view: LogicalView) -> Box | None:
    """The smallest logical box holding every piece of ``tensor`` this rank writes (None when
    it holds none): for a ``Shard(0)`` weight, its own rows."""
    runs = local_runs(tensor)
    if runs is None:
        return None
    boxes = [box for box, _ in _pieces(view, runs, _local(tensor))]
    if not boxes:
        return None
    return tuple(
        slice(min(b[axis].start for b in boxes), max(b[axis].stop for b in boxes))
        for axis in range(len(boxes[0]))
    )


def _deterministic(spec: Spec, box: Box, target: torch.Tensor, shape: tuple[int, ...]) -> None:
    """eye / dirac on one logical box, computed there (the ones that fall inside it)."""
    target.zero_()
    if isinstance(spec, Eye):
        first = max(box[0].start, box[1].start)
        last = min(box[0].stop, box[1].stop, shape[0], shape[1])
        if first < last:
            d = torch.arange(first, last, device=target.device)
            target[d - box[0].start, d - box[1].start] = 1
        return
    assert isinstance(spec, Dirac)
    per_group = shape[0] // spec.groups
    size = min(per_group, shape[1])
    centre = [n // 2 for n in shape[2:]]
    if not all(s.start <= c < s.stop for s, c in zip(box[2:], centre, strict=True)):
        return
    spot = tuple(c - s.start for s, c in zip(box[2:], centre, strict=True))
    for group in range(spec.groups):
        # rows group*per_group + d, columns d, for d < size, inside the box
        lo = max(0, box[0].start - group * per_group, box[1].start)
        hi = min(size, box[0].stop - group * per_group, box[1].stop)
        if lo < hi:
            d = torch.arange(lo, hi, device=target.device)
            ones = (d + group * per_group - box[0].start, d - box[1].start, *spot)
            target[ones] = 1


def _run_jobs(jobs: list[Callable[[], None]], device: torch.device) -> None:
    # Worker threads do not inherit grad or inference mode: each job sets the caller's.
    inference = torch.is_inference_mode_enabled()

    def wrapped(job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode(inference), torch.no_grad():
                job()

        return run

    if len(jobs) == 1:  # on the calling thread, in its own modes
        jobs[0]()
    elif device.type == "cpu":
        _stream.run_parallel([wrapped(j) for j in jobs])
    else:  # an accelerator runs one tile at a time already in parallel
        for job in jobs:
            job()


def _has_qr(spec: Spec) -> bool:
    if isinstance(spec, Orthogonal):
        return True
    return isinstance(spec, Mixture) and any(_has_qr(s) for w, s in spec.components if w > 0)


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """torch's CPU QR (MKL) rounds differently with the number of threads: orthogonal is
    computed on one, so its values do not depend on the machine's cores or the ranks' thread
    settings."""
    previous = torch.get_num_threads()
    if device.type != "cpu" or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _whole(source: Stream, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The whole logical tensor of a whole-tensor law (each rank keeps its part)."""
    if source.portable is not None:
        values = source.portable(None, None)
        return torch.from_numpy(np.ascontiguousarray(values)).to(device=device, dtype=dtype)
    whole = torch.empty(source.shape, dtype=dtype, device=device)
    base = cast(int, source.base)  # a native stream always has its base (the writer sets it)
    generator = torch.Generator(device=device).manual_seed(_stream.tile_seed(base, source.order, 0))
    with _one_thread(device) if _has_qr(source.spec) else contextlib.nullcontext():
        _filler(source.spec)(whole, generator, source.fans)
    return whole


#: torch runs an elementwise CPU op of more elements than this on its OpenMP team. Tiles are
#: parallel already (``_run_jobs``): a tile's copy stays below it, so no thread waits for a
#: team woken between a serial draw and its copy (which cost more than the draw on a busy
#: machine).
_SERIAL = 32768


def _copy(target: torch.Tensor, values: torch.Tensor) -> None:
    """``target.copy_(values)``, on CPU in pieces small enough to run on the calling thread.
    (Not through NumPy: ``tensor.numpy()`` makes the storage non-resizable for good, which
    breaks FSDP2 when it frees an unsharded parameter.)"""
    if target.device.type != "cpu" or target.numel() <= _SERIAL or target.dim() == 0:
        target.copy_(values)
        return
    inner = target[0].numel() if target.shape[0] else 0
    if inner > _SERIAL:
        for i in range(target.shape[0]):
            _copy(target[i], values[i])
        return
    step = max(1, _SERIAL // max(1, inner))
    for start in range(0, target.shape[0], step):
        target[start : start + step].copy_(values[start : start + step])


def _tile_job(
    source: Stream, fill_: Any, tile: _stream.Tile, box: Box, target: torch.Tensor
) -> Callable[[], None]:
    def run() -> None:
        part = _stream.meet(tile.box, box)
        destination = target[_stream.shift(part, box)]
        generator = torch.Generator(device=target.device).manual_seed(
            # A native stream always has its base (the writer sets it).
            _stream.tile_seed(cast(int, source.base), source.order, tile.index)
        )
        if part == tile.box and destination.is_contiguous():
            fill_(destination, generator, source.fans)
            return
        values = torch.empty(tile.shape, dtype=target.dtype, device=target.device)
        fill_(values, generator, source.fans)
        _copy(destination, values[_stream.shift(part, tile.box)])

    return run


def fill(source: Stream, pieces: Sequence[tuple[Box, torch.Tensor]]) -> None:
    """Write ``source``'s logical values into each (logical box, destination) piece.

    The caller holds ``no_grad`` and has checked everything (``fill`` does not fail for a
    reason a check could have found).

    Two ranks' halves, each written on its own, are the whole tensor written at once:

    >>> import multiinit as mi
    >>> from multiinit import stream
    >>> source = Stream(mi.normal(), (8192, 64), None, base=stream.seed_base(0))
    >>> top, bottom, whole = torch.empty(4096, 64), torch.empty(4096, 64), torch.empty(8192, 64)
    >>> fill(source, [((slice(0, 4096), slice(0, 64)), top)])
    >>> fill(source, [((slice(4096, 8192), slice(0, 64)), bottom)])
    >>> fill(source, [((slice(0, 8192), slice(0, 64)), whole)])
    >>> torch.equal(torch.cat([top, bottom]), whole)
    True
    """
    pieces = [(box, target) for box, target in pieces if target.numel()]
    if not pieces:
        return
    spec = source.spec
    dtype, device = pieces[0][1].dtype, pieces[0][1].device
    if source.prepared is not None:
        for box, target in pieces:
            target.copy_(source.prepared[box])
        return
    if isinstance(spec, (Eye, Dirac)):
        for box, target in pieces:
            _deterministic(spec, box, target, source.shape)
        return
    if isinstance(spec, Constant) and source.portable is None:  # no stream to follow
        # (portable mode writes the reference's own rounding of the value, e.g. to float16)
        for _, target in pieces:
            target.fill_(spec.value)
        return
    if not _stream.is_elementwise(spec):
        whole = _whole(source, dtype, device)
        for box, target in pieces:
            target.copy_(whole[box])
        return
    if source.portable is not None:
        inference = torch.is_inference_mode_enabled()
        for box, target in pieces:
            # Called from the reference's threads, tile by tile: set the caller's modes there.
            def write(region: Box, values: np.ndarray, box: Box = box, target: torch.Tensor = target) -> None:
                with torch.inference_mode(inference), torch.no_grad():
                    _copy(target[_stream.shift(region, box)], torch.from_numpy(np.asarray(values)))

            source.portable(box, write)
        return
    fill_ = _filler(spec)
    grid = _stream.tiling(source.shape)
    if _runs_user_code(spec):
        # A user law can fail on any tile: every piece is drawn into a temporary first, so a
        # failure leaves the parameter as it was (only a compiled call gets here: mi.apply
        # prepares user laws).
        staged = [
            (box, target, torch.empty(target.shape, dtype=dtype, device=device)) for box, target in pieces
        ]
        _run_jobs(
            [_tile_job(source, fill_, t, box, temp) for box, _, temp in staged for t in grid.tiles(box)],
            device,
        )
        for _, target, temp in staged:
            _copy(target, temp)
        return
    if len(grid) == 1 and len(pieces) == 1:
        box, target = pieces[0]
        if box == tuple(slice(0, n) for n in source.shape) and target.is_contiguous():
            # The whole of a one-tile tensor (most of a model's small parameters): what its
            # one job would do, without the grid's walk and the job around it.
            base = cast(int, source.base)  # a native stream always has its base (the writer sets it)
            generator = torch.Generator(device=device).manual_seed(_stream.tile_seed(base, source.order, 0))
            fill_(target, generator, source.fans)
            return
    jobs = [_tile_job(source, fill_, tile, box, target) for box, target in pieces for tile in grid.tiles(box)]
    _run_jobs(jobs, device)


def fill_parameter(tensor: torch.Tensor, view: LogicalView, source: Stream) -> None:
    """Write ``source`` into a parameter (plain tensor or DTensor) whose logical view is
    ``view``: this rank's part only (see ``fill``)."""
    if not is_dtensor(tensor) and view.is_plain and view.axes == tuple(range(len(view.axes))):
        # A plain tensor stored in the logical layout is one piece, the whole of it: no runs
        # to walk (the common case, and thousands of small ones in a model's walk).
        fill(source, [(tuple(slice(0, n) for n in tensor.shape), tensor)])
        return
    runs = local_runs(tensor)
    if runs is None:
        return
    fill(source, _pieces(view, runs, _local(tensor)))


# --------------------------------------------------------------------------- compiled fillers


def _stored_fans(shape: tuple[int, ...]) -> tuple[int, int] | None:
    if len(shape) < 2:
        return None
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def fill_compiled(
    tensor: Any, spec: Spec, generator: torch.Generator | None, filler: Callable[..., None] | None = None
) -> None:
    """A compiled filler or drop-in on a DTensor: one 32-bit base from ``generator`` (torch's
    global RNG without one), then this rank's shard by the stream rule (order 0, torch's
    stored-shape fans). ``filler`` replaces the spec's sampler (``trunc_normal_``'s absolute
    bounds). The caller has checked the spec against the global shape and holds no_grad.

    The shard holds the stream's values of that base, whatever the mesh:

    >>> import multiinit as mi
    >>> import torch.distributed as dist
    >>> from torch.distributed.device_mesh import init_device_mesh
    >>> from torch.distributed.tensor import Shard, distribute_tensor
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> w = distribute_tensor(torch.empty(4, 3), init_device_mesh("cpu", (1,)), [Shard(0)])
    >>> with torch.no_grad():
    ...     fill_compiled(w, mi.normal(), torch.Generator().manual_seed(0))
    >>> base = int(torch.randint(0, 1 << 32, (1,), generator=torch.Generator().manual_seed(0)).item())
    >>> whole = torch.empty(4, 3)
    >>> fill(Stream(mi.normal(), (4, 3), None, 0, base), [((slice(0, 4), slice(0, 3)), whole)])
    >>> torch.equal(w.to_local(), whole)
    True
    >>> dist.destroy_process_group()
    """
    check_dtensor(tensor)
    device = generator.device if generator is not None else torch.device("cpu")
    # A deterministic law (constant, eye, dirac) takes nothing from the generator, as in torch.
    base = (
        int(torch.randint(0, 1 << 32, (1,), generator=generator, device=device).item()) if spec.random else 0
    )
    shape = tuple(tensor.shape)
    fans = (
        (spec.fans(shape) if isinstance(spec, WithAxes) else _stored_fans(shape)) if spec.uses_fans else None
    )
    source = Stream(spec, shape, fans, 0, base)
    runs = local_runs(tensor)
    if runs is None:
        return
    pieces = list(_pieces(LogicalView(shape), runs, _local(tensor)))
    if filler is None:
        fill(source, pieces)
        return
    pieces = [(box, target) for box, target in pieces if target.numel()]
    if not pieces:
        return
    grid = _stream.tiling(shape)
    jobs = [
        _tile_job(source, filler, tile, box, target) for box, target in pieces for tile in grid.tiles(box)
    ]
    _run_jobs(jobs, pieces[0][1].device)
