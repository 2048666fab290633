"""Big parameters drawn in row blocks: JAX's numbers, a fraction of its temporaries.

JAX's random programs hold three times their output in temporaries (the 64-bit counters of
every element as two uint32 arrays, then the two words threefry gives for each): drawing one
4096x4096 float32 kernel takes 192 MB besides its 64 MB, 0.17 of an 18-layer model of such
kernels, and ``jax.random.normal(key, shape)[rows]`` does not shrink it (XLA computes the whole
draw before slicing). Under ``jax.threefry_partitionable(True)``, which every kernel of this
adapter runs under, element ``i`` (row-major) of a draw of ``shape`` takes its bits from the
counter ``i`` alone. So a block of rows ``[a, b)`` is the same draw on the block's shape with
counters that start at ``a * row_size``: the key here carries that start (``IMPL``, a JAX PRNG
implementation whose key data is threefry's two words and the start's two), and the laws of
``draw.py`` run on it unchanged. ``blocked`` draws the blocks in a ``fori_loop`` into the
output (a donated old array's buffer, or one fresh array): the same numbers, bit for bit, with
temporaries of five blocks (a block's counters and words, and its values before they are
written): 40 MB instead of 192 for that kernel (``tests/test_flax_blocks.py`` checks both).

Only laws that draw every element from its own counter with one use of the key are drawn so
(``BLOCKED``: uniform, normal, the truncated family, the far tails), on the default device
(``sharding=None``: a sharded parameter's devices each draw only their shard already).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.extend.random as jer
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["BLOCKED", "BLOCK_BYTES", "IMPL", "blocked", "row_blocks"]

#: ``draw.py``'s law families drawn in row blocks.
BLOCKED = frozenset({"uniform", "normal", "truncated", "tail"})
#: A parameter of more bytes than this is drawn in row blocks of at most this size (when its
#: rows split in a power of two). 8 MB: on this project's 2-core machine an 18-layer model of
#: 4096x4096 kernels drew in 0.98x the time of whole draws (16 MB: 1.06x, 32 MB: 1.12x).
BLOCK_BYTES = 8 << 20


def _bits(key: Any, bit_width: int, shape: tuple[int, ...]) -> Any:
    # JAX's partitionable threefry (jax._src.random.threefry2x32) on the counters
    # start + iota: the hi word takes the carry of the lo word's wrap.
    lo = key[3] + lax.iota(np.uint32, math.prod(shape)).reshape(shape)
    hi = key[2] + (lo < key[3]).astype(np.uint32)
    first, second = jer.threefry2x32_p.bind(key[0], key[1], hi, lo)
    if bit_width == 64:
        return (first.astype(np.uint64) << np.uint64(32)) | second.astype(np.uint64)
    if bit_width == 32:
        return first ^ second
    return (first ^ second).astype({8: np.uint8, 16: np.uint16}[bit_width])


def _threefry(key: Any) -> Any:
    return jax.random.wrap_key_data(key[..., :2], impl="threefry2x32")


def _with_start(data: Any, start: Any) -> Any:
    return jnp.concatenate([data, jnp.broadcast_to(start, (*data.shape[:-1], 2))], axis=-1)


def _split(key: Any, shape: tuple[int, ...]) -> Any:
    return _with_start(jax.random.key_data(jax.random.split(_threefry(key), shape)), key[2:])


def _fold_in(key: Any, data: Any) -> Any:
    return _with_start(jax.random.key_data(jax.random.fold_in(_threefry(key), data)), key[2:])


def _seed(seed: Any) -> Any:
    raise NotImplementedError("row-block keys are made from a threefry key (blocked), not a seed")


#: The PRNG implementation of row-block keys: threefry's two key words, then the first
#: counter's high and low words.
IMPL = jer.define_prng_impl(
    key_shape=(4,),
    seed=_seed,
    split=_split,
    random_bits=_bits,
    fold_in=_fold_in,
    name="multiinit_row_block",
    tag="mirb",
)


def row_blocks(family: str, shape: tuple[int, ...], dtype: np.dtype, sharding: Any) -> int:
    """How many row blocks a draw of ``family`` on ``shape`` is made in (1: one draw).

    >>> row_blocks("normal", (4096, 4096), np.dtype("float32"), None)
    8
    >>> row_blocks("normal", (4096, 4096), np.dtype("float32"), "a sharding")
    1
    """
    if family not in BLOCKED or sharding is not None or not shape or math.prod(shape) >= 1 << 32:
        return 1
    blocks, nbytes = 1, math.prod(shape) * dtype.itemsize
    while nbytes > blocks * BLOCK_BYTES and shape[0] % (2 * blocks) == 0:
        blocks *= 2
    return blocks


def blocked(
    draw: Callable[[Any, tuple[int, ...]], Any],
    key: Any,
    shape: tuple[int, ...],
    dtype: np.dtype,
    blocks: int,
    out: Any = None,
) -> Any:
    """``draw(key, shape)`` (traced, in a jitted kernel), made in ``blocks`` row blocks of
    ``draw(block_key, block_shape)`` written into ``out`` (a buffer of ``shape`` and ``dtype``
    to overwrite, e.g. a donated array; default: a new one). ``key`` is a threefry key."""
    rows = shape[0] // blocks
    block = (rows, *shape[1:])
    size = np.uint32(math.prod(block))
    data = jax.random.key_data(key)

    def body(i: Any, out: Any) -> Any:
        start = jnp.stack([jnp.uint32(0), size * i.astype(np.uint32)])
        values = draw(jax.random.wrap_key_data(jnp.concatenate([data, start]), impl=IMPL), block)
        return lax.dynamic_update_slice(out, values.astype(dtype), (i * rows,) + (0,) * (len(shape) - 1))

    return lax.fori_loop(0, blocks, body, jnp.zeros(shape, dtype) if out is None else out)
