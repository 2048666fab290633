"""Big Flax parameters drawn in row blocks (``multiinit/flax/blocks.py``): JAX's numbers bit for
bit, with a block's temporaries instead of three times the parameter's."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multiinit as mi
from multiinit.fans import LogicalView
from multiinit.flax import blocks, sharded

X = jnp.ones((1, 128))


def abstract(features: int = 96, dtype=jnp.float32):
    """A Dense(features) on 128 inputs: its kernel is (128, features)."""
    return jax.eval_shape(nn.Dense(features, param_dtype=dtype).init, jax.random.key(0), X)


@pytest.fixture
def block_bytes(monkeypatch):
    """Set the block size; compiled kernels are dropped before and after (they depend on it)."""

    def set_to(size: int) -> None:
        sharded._kernel.cache_clear()
        monkeypatch.setattr(blocks, "BLOCK_BYTES", size)

    yield set_to
    sharded._kernel.cache_clear()


SPECS = [
    mi.normal(std=0.02),
    mi.normal(mean=0.5, std=0.01),
    mi.uniform(-0.1, 0.3),
    mi.glorot_uniform(),
    mi.he_normal(),
    mi.truncated_normal(std=0.02),
    mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5),
    mi.truncated_normal(std=1.0, low=3.5, high=6.0),  # a far tail: the inverse CDF in the tail
    mi.trunc_normal(std=0.02),
]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_row_blocks_give_the_numbers_of_one_draw(spec, dtype, block_bytes) -> None:
    tree = abstract(dtype=dtype)
    rules = {"kernel": spec, "bias": mi.zeros()}
    block_bytes(1 << 40)
    whole = mi.apply(tree, rules, seed=7)["params"]["kernel"]
    block_bytes(1024)  # a (128, 96) kernel: 8 blocks or more
    assert blocks.row_blocks("normal", (128, 96), np.dtype(dtype), None) >= 8
    parts = mi.apply(tree, rules, seed=7)["params"]["kernel"]
    assert parts.dtype == whole.dtype and parts.shape == whole.shape
    np.testing.assert_array_equal(np.asarray(parts, np.float32), np.asarray(whole, np.float32))


def test_row_blocks_write_into_a_donated_array_with_the_same_numbers(block_bytes) -> None:
    rules = {"kernel": mi.he_normal(), "bias": mi.zeros()}
    block_bytes(1 << 40)
    whole = mi.apply(abstract(), rules, seed=3)["params"]["kernel"]
    block_bytes(1024)
    old = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), abstract())
    kernel = old["params"]["kernel"]
    new = mi.apply(old, rules, seed=3, donate=True)["params"]["kernel"]
    assert kernel.is_deleted()
    np.testing.assert_array_equal(np.asarray(new), np.asarray(whole))


def test_a_block_draw_holds_five_blocks_of_temporaries_where_one_draw_holds_three_kernels() -> None:
    # XLA's own accounting of the compiled kernels (no timing, no process memory).
    shape, dtype = (1024, 512), np.dtype("float32")
    spec = mi.normal(std=0.02)
    family, static, numbers = sharded._plan_of(spec, LogicalView.of(shape), (512, 1024), dtype)

    def temporaries(blocks_: int) -> int:
        def body(key):
            def draw(k, s):
                return sharded._run(family, static, s, dtype, k, *numbers)

            if blocks_ == 1:
                return draw(key, shape)
            return blocks.blocked(draw, key, shape, dtype, blocks_)

        with jax.threefry_partitionable(True):
            compiled = jax.jit(body).lower(jax.random.key(0)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    nbytes = 1024 * 512 * 4
    assert temporaries(1) >= 3 * nbytes  # JAX's counters and threefry words for every element
    # A block's counters and words, and the block drawn before it is written: five blocks.
    assert temporaries(8) <= 5 * nbytes // 8 + (1 << 16)


def test_which_draws_go_in_blocks() -> None:
    f32 = np.dtype("float32")
    assert blocks.row_blocks("normal", (4096, 4096), f32, None) == 8
    assert blocks.row_blocks("normal", (4095, 4096), f32, None) == 1  # rows do not halve
    assert blocks.row_blocks("normal", (1024, 1024), f32, None) == 1  # 4 MB: one draw
    assert blocks.row_blocks("orthogonal", (4096, 4096), f32, None) == 1  # not elementwise
    assert blocks.row_blocks("pieces", (4096, 4096), f32, None) == 1
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("x",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    assert blocks.row_blocks("normal", (4096, 4096), f32, sharding) == 1  # devices draw shards


def test_block_keys_split_and_fold_in_as_threefry_keeps_the_first_counter() -> None:
    key = jax.random.fold_in(jax.random.key(5), 2)
    data = jax.random.key_data(key)
    start = jnp.array([0, 4096], jnp.uint32)
    block_key = jax.random.wrap_key_data(jnp.concatenate([data, start]), impl=blocks.IMPL)
    with jax.threefry_partitionable(True):
        split = jax.random.key_data(jax.random.split(block_key, 3))
        folded = jax.random.key_data(jax.random.fold_in(block_key, 9))
        np.testing.assert_array_equal(split[:, :2], jax.random.key_data(jax.random.split(key, 3)))
        np.testing.assert_array_equal(split[:, 2:], np.broadcast_to(start, (3, 2)))
        np.testing.assert_array_equal(folded[:2], jax.random.key_data(jax.random.fold_in(key, 9)))
        np.testing.assert_array_equal(folded[2:], start)
        # Bits at a start are the whole draw's bits from that counter on, a wrap included.
        whole = jax.random.bits(key, (3, 4096), jnp.uint32)
        np.testing.assert_array_equal(jax.random.bits(block_key, (2, 4096), jnp.uint32), whole[1:])
        wrap = jax.random.wrap_key_data(
            jnp.concatenate([data, jnp.array([0, 2**32 - 2], jnp.uint32)]), impl=blocks.IMPL
        )
        lo = jnp.array([2**32 - 2, 2**32 - 1, 0, 1], jnp.uint32)
        hi = jnp.array([0, 0, 1, 1], jnp.uint32)
        first, second = jax.extend.random.threefry2x32_p.bind(data[0], data[1], hi, lo)
        np.testing.assert_array_equal(jax.random.bits(wrap, (4,), jnp.uint32), first ^ second)
