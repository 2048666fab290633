"""``mi.apply`` on sharded Flax parameters (issue 13.3): meshes of 1, 2, 4 and 8 simulated CPU
devices, 1-D and 2-D, several PartitionSpecs, every spec of the contract, native and portable.
The values equal the unsharded ones bit for bit and every array keeps (or gets) its sharding;
each device computes only its shard (no collective in an elementwise law's program, no
full-size array in it; the portable draw asks only for each shard's logical box); abstract
trees with shardings (``ShapeDtypeStruct.sharding``, ``nn.get_partition_spec`` + a mesh, a
``shardings=`` tree, ``nnx.with_partitioning``) materialize sharded; donation gives the input
buffers to the result.

Simulated devices need ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX is
imported. The jax tox env leaves it unset (its other files run on one device); there, and
wherever it is unset, this file runs itself again in a fresh process that has it (one test,
which fails if any test there fails).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from simulated_devices import rerun

import multiinit as mi
from multiinit import rules as mi_rules
from multiinit.fans import LogicalView
from multiinit.flax import sharded

DEVICES = 8
IN_PROCESS = jax.device_count() >= DEVICES


def my_law(rng, shape, dtype):
    w = rng.uniform(-10, 10, shape)
    return (w * (np.abs(w) >= 5)).astype(dtype)


#: Every constructor of the contract, with the kernel shape (flax layout) it fills here.
CASES = [
    (mi.zeros(), (16, 32)),
    (mi.ones(), (16, 32)),
    (mi.constant(0.25), (16, 32)),
    (mi.uniform(-0.5, 0.25), (16, 32)),
    (mi.normal(0.5, 0.01), (16, 32)),
    (mi.truncated_normal(std=0.02), (16, 32)),
    (mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5), (16, 32)),
    (mi.trunc_normal(std=0.02), (16, 32)),
    (mi.variance_scaling(0.5, "fan_avg", "truncated_normal"), (16, 32)),
    (mi.variance_scaling(2.0, "fan_out", "untruncated_normal"), (16, 32)),
    (mi.xavier_uniform(gain=mi.calculate_gain("relu")), (16, 32)),
    (mi.xavier_normal(gain=2.0), (16, 32)),
    (mi.kaiming_uniform(a=math.sqrt(5)), (16, 32)),
    (mi.kaiming_normal(mode="fan_out", nonlinearity="relu"), (16, 32)),
    (mi.glorot_uniform(), (16, 32)),
    (mi.glorot_normal(), (16, 32)),
    (mi.he_uniform(), (16, 32)),
    (mi.he_normal(), (16, 32)),
    (mi.lecun_uniform(), (16, 32)),
    (mi.lecun_normal(), (16, 32)),
    (mi.orthogonal(), (16, 32)),
    (mi.eye(), (16, 32)),
    (mi.dirac(), (3, 3, 8, 16)),
    (mi.sparse(0.25), (16, 32)),
    (mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]), (16, 32)),
    (mi.custom(my_law, name="tests.flax_sharded.my_law"), (16, 32)),
    (mi.with_axes(mi.he_normal(), in_axis=0, out_axis=(1, 2)), (16, 8, 8)),
]
NAMES = [f"p{i}" for i in range(len(CASES))]


def abstract_tree(dtype=jnp.float32) -> dict:
    """A params tree of ShapeDtypeStructs, one kernel per case (what eval_shape gives)."""
    return {
        "params": {
            name: {"kernel": jax.ShapeDtypeStruct(shape, dtype)}
            for name, (_, shape) in zip(NAMES, CASES, strict=True)
        }
    }


RULES = [(f"params/{name}/kernel", spec) for name, (spec, _) in zip(NAMES, CASES, strict=True)]


def mesh_of(shape: tuple[int, ...], names: tuple[str, ...]) -> Mesh:
    return Mesh(np.array(jax.devices()[: math.prod(shape)]).reshape(shape), names)


def spec_for(shape: tuple[int, ...], choices: list[P], i: int) -> P:
    """The i-th PartitionSpec of ``choices`` that fits a kernel of ``shape`` (last dims padded)."""
    spec = choices[i % len(choices)]
    return P(*([None] * (len(shape) - len(spec))), *spec) if len(spec) < len(shape) else spec


def leaves(tree) -> list[tuple[str, jax.Array]]:
    return [(jax.tree_util.keystr(p), leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def assert_equal_trees(a, b) -> None:
    la, lb = leaves(a), leaves(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb, strict=True):
        assert x.dtype == y.dtype, path
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=path)


_UNSHARDED: dict = {}


def unsharded(portable: bool, names: tuple[str, ...] = tuple(NAMES)) -> dict:
    """The tree of kernels ``names`` drawn unsharded (a parameter's order is its position)."""
    if (portable, names) not in _UNSHARDED:
        tree = {"params": {name: abstract_tree()["params"][name] for name in names}}
        rules = [rule for rule in RULES if rule[0].split("/")[1] in names]
        _UNSHARDED[(portable, names)] = mi.apply(tree, rules, seed=11, portable=portable)
    return _UNSHARDED[(portable, names)]


def check_sharded(result, shardings: dict, portable: bool) -> None:
    assert_equal_trees(result, unsharded(portable))
    for name in NAMES:
        array = result["params"][name]["kernel"]
        expected = shardings["params"][name]["kernel"]
        assert array.sharding == expected, name
        shard = expected.shard_shape(array.shape)
        assert all(s.data.shape == shard for s in array.addressable_shards), name


# --------------------------------------------------------------------------- meshes


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_every_spec_on_a_2d_mesh(portable: bool) -> None:
    mesh = mesh_of((2, 4), ("data", "model"))
    choices = [P("data", "model"), P("model", "data"), P(None, "model"), P(("data", "model"), None), P()]
    shardings = {
        "params": {
            name: {"kernel": NamedSharding(mesh, spec_for(shape, choices, i))}
            for i, (name, (_, shape)) in enumerate(zip(NAMES, CASES, strict=True))
        }
    }
    result = mi.apply(abstract_tree(), RULES, seed=11, portable=portable, shardings=shardings)
    check_sharded(result, shardings, portable)


#: A law of each kind of program (the 2-D mesh test has every spec): uniform, normal,
#: truncated (lower tail), orthogonal, a mixture, a user law.
FAMILIES = ["p3", "p4", "p7", "p20", "p24", "p25"]


@pytest.mark.parametrize("devices", [1, 2, 4, 8])
@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_1d_meshes_of_1_2_4_and_8_devices(devices: int, portable: bool) -> None:
    mesh = mesh_of((devices,), ("x",))
    choices = [P("x", None), P(None, "x")]
    tree = {"params": {name: abstract_tree()["params"][name] for name in FAMILIES}}
    rules = [rule for rule in RULES if rule[0].split("/")[1] in FAMILIES]
    shardings = {
        "params": {
            name: {"kernel": NamedSharding(mesh, spec_for(tree["params"][name]["kernel"].shape, choices, i))}
            for i, name in enumerate(FAMILIES)
        }
    }
    result = mi.apply(tree, rules, seed=11, portable=portable, shardings=shardings)
    assert list(result["params"]) == FAMILIES
    for name in FAMILIES:
        array = result["params"][name]["kernel"]
        expected = shardings["params"][name]["kernel"]
        reference = unsharded(portable, tuple(FAMILIES))["params"][name]["kernel"]
        np.testing.assert_array_equal(np.asarray(array), np.asarray(reference), err_msg=name)
        assert array.sharding == expected, name
        assert all(s.data.shape == expected.shard_shape(array.shape) for s in array.addressable_shards), name


def test_concrete_sharded_arrays_keep_their_sharding_and_donate_their_buffers() -> None:
    mesh = mesh_of((2, 4), ("data", "model"))
    rules = [
        ("params/p3/kernel", mi.uniform(-0.5, 0.25)),
        ("params/p17/kernel", mi.he_normal()),
        ("params/p20/kernel", mi.orthogonal()),
    ]
    reference = unsharded(False, ("p3", "p17", "p20"))
    tree = {"params": {}}
    for name, spec in (("p3", P("data", "model")), ("p17", P(None, "model")), ("p20", P("model", None))):
        tree["params"][name] = {"kernel": jax.device_put(jnp.ones((16, 32)), NamedSharding(mesh, spec))}
    expected = {name: leaf["kernel"].sharding for name, leaf in tree["params"].items()}
    kept = mi.apply(tree, rules, seed=11)
    for name in expected:
        assert kept["params"][name]["kernel"].sharding == expected[name]
        np.testing.assert_array_equal(
            np.asarray(kept["params"][name]["kernel"]), np.asarray(reference["params"][name]["kernel"])
        )
        np.testing.assert_array_equal(np.asarray(tree["params"][name]["kernel"]), 1.0)  # the input: untouched
    buffers = {
        name: [s.data.unsafe_buffer_pointer() for s in leaf["kernel"].addressable_shards]
        for name, leaf in tree["params"].items()
    }
    donated = mi.apply(tree, rules, seed=11, donate=True)
    for name in expected:
        old, new = tree["params"][name]["kernel"], donated["params"][name]["kernel"]
        assert old.is_deleted() and new.sharding == expected[name]
        assert [s.data.unsafe_buffer_pointer() for s in new.addressable_shards] == buffers[name], name
        np.testing.assert_array_equal(np.asarray(new), np.asarray(kept["params"][name]["kernel"]))


def test_resharding_by_shardings_and_portable_donation_delete_the_old_arrays() -> None:
    mesh = mesh_of((2, 4), ("data", "model"))
    tree = {
        "params": {
            "p3": {"kernel": jax.device_put(jnp.ones((16, 32)), NamedSharding(mesh, P("data", "model")))}
        }
    }
    target = NamedSharding(mesh, P("model", "data"))
    new = mi.apply(tree, {"kernel": mi.uniform(-0.5, 0.25)}, seed=11, shardings=target, donate=True)
    assert tree["params"]["p3"]["kernel"].is_deleted() and new["params"]["p3"]["kernel"].sharding == target
    np.testing.assert_array_equal(
        np.asarray(new["params"]["p3"]["kernel"]),
        np.asarray(unsharded(False, ("p3",))["params"]["p3"]["kernel"]),
    )
    tree = {"params": {"p3": {"kernel": jax.device_put(jnp.ones((16, 32)), target)}}}
    new = mi.apply(tree, {"kernel": mi.uniform(-0.5, 0.25)}, seed=11, portable=True, donate=True)
    assert tree["params"]["p3"]["kernel"].is_deleted() and new["params"]["p3"]["kernel"].sharding == target
    np.testing.assert_array_equal(
        np.asarray(new["params"]["p3"]["kernel"]),
        np.asarray(unsharded(True, ("p3",))["params"]["p3"]["kernel"]),
    )


# --------------------------------------------------------------------------- each device its shard


#: A law of each elementwise program: constant, uniform, normal, truncated, lower tail, mixture.
ELEMENTWISE = [
    mi.constant(0.25),
    mi.he_uniform(),
    mi.normal(0.5, 0.01),
    mi.truncated_normal(std=0.02),
    mi.trunc_normal(std=0.02),
    CASES[24][0],
]


@pytest.mark.parametrize("spec", ELEMENTWISE, ids=repr)
def test_an_elementwise_law_compiles_to_per_shard_work_without_collectives(spec) -> None:
    mesh = mesh_of((2, 4), ("data", "model"))
    view = LogicalView.of((16, 32), "...,in,out")
    target = NamedSharding(mesh, P("data", "model"))
    fans = view.fans if spec.uses_fans else None
    assert sharded.collectives(spec, view, fans, np.dtype("float32"), target) == []
    kernel, numbers = sharded.program(spec, view, fans, np.dtype("float32"), target)
    with jax.threefry_partitionable(True):
        text = kernel.lower(jax.random.key(0), np.uint32(0), *numbers).compile().as_text()
    assert "[16,32]" not in text and "[8,8]" in text  # every array in the program is one shard's


def test_portable_draws_only_each_shards_logical_box(monkeypatch) -> None:
    mesh = mesh_of((2, 4), ("data", "model"))
    asked = []
    original = mi_rules.portable_values

    def spy(param, spec, draw, box=None, write=None):
        asked.append(box)
        return original(param, spec, draw, box=box, write=write)

    monkeypatch.setattr(mi_rules, "portable_values", spy)
    tree = {"params": {"q": {"kernel": jax.ShapeDtypeStruct((512, 16, 64), jnp.float32)}}}
    layers = {"q": nn.DenseGeneral((16, 64))}  # (in, heads, head_dim): logical (1024, 512)
    target = NamedSharding(mesh, P("data", None, "model"))  # head_dim sharded: not one logical run
    new = mi.apply(tree, {"kernel": mi.he_normal()}, seed=3, portable=True, shardings=target, layers=layers)
    assert len(asked) == 8 and all(box is not None for box in asked)
    for box in asked:
        rows, cols = (s.stop - s.start for s in box)
        assert cols == 256 and rows <= 1024 - 48  # the bounding rows of one head_dim quarter
    monkeypatch.setattr(mi_rules, "portable_values", original)
    whole = mi.apply(tree, {"kernel": mi.he_normal()}, seed=3, portable=True, layers=layers)
    np.testing.assert_array_equal(
        np.asarray(new["params"]["q"]["kernel"]), np.asarray(whole["params"]["q"]["kernel"])
    )
    assert new["params"]["q"]["kernel"].sharding == target


def test_logical_box_of_a_merged_axis_picks_the_elements_of_the_native_block() -> None:
    view = mi.Layout("in,out,out").view((4, 6, 10))  # logical (60, 4)
    logical = np.arange(240).reshape(60, 4)
    native = view.to_native(logical)
    rng = np.random.default_rng(0)
    for _ in range(50):
        index = []
        for n in native.shape:
            a = int(rng.integers(0, n))
            b = int(rng.integers(a + 1, n + 1))
            index.append(slice(a, b))
        index = tuple(index)
        box, to_native = sharded.logical_box(view, index)
        np.testing.assert_array_equal(to_native(logical[box]), native[index])


# --------------------------------------------------------------------------- abstract trees with shardings


class Partitioned(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(
            16,
            kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), ("data", "model")),
            bias_init=nn.with_partitioning(nn.initializers.zeros, ("model",)),
        )(x)
        x = nn.LayerNorm()(x)
        return nn.Dense(
            8, kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), ("model", "data"))
        )(x)


def test_linen_abstract_tree_with_partition_specs_materializes_sharded() -> None:
    mesh = mesh_of((2, 4), ("data", "model"))
    model, x = Partitioned(), jnp.ones((2, 8))
    abstract = jax.eval_shape(model.init, jax.random.key(0), x)
    shardings = nn.get_sharding(abstract, mesh)
    native = jax.jit(model.init, out_shardings=shardings)(jax.random.key(0), x)  # Flax's own sharded init
    rules = {"kernel": mi.he_normal(), "bias": mi.zeros(), "scale": mi.ones()}
    plain = mi.apply(abstract, rules, seed=2)
    for given in (shardings, mesh):
        new = mi.apply(abstract, rules, seed=2, shardings=given)
        for (path, a), (_, b) in zip(leaves(new), leaves(native), strict=True):
            assert a.sharding == b.sharding, path
        assert_equal_trees(new, plain)
        assert isinstance(new["params"]["Dense_0"]["kernel"], nn.Partitioned)
    # PartitionSpec leaves take the context mesh
    with jax.set_mesh(mesh):
        new = mi.apply(abstract, rules, seed=2, shardings=nn.get_partition_spec(abstract))
    assert new["params"]["Dense_1"]["kernel"].unbox().sharding == NamedSharding(mesh, P("model", "data"))
    # a box's own mesh
    boxed = jax.tree.map(
        lambda b: b.replace(mesh=mesh) if isinstance(b, nn.Partitioned) else b,
        abstract,
        is_leaf=lambda b: isinstance(b, nn.Partitioned),
    )
    new = mi.apply(boxed, rules, seed=2)
    assert new["params"]["Dense_0"]["kernel"].unbox().sharding == NamedSharding(mesh, P("data", "model"))
    assert_equal_trees(new, plain)


def test_shapedtypestruct_shardings_are_kept_and_abstract_meshes_need_one() -> None:
    mesh = mesh_of((2, 4), ("data", "model"))
    tree = {
        "params": {
            "p0": {
                "kernel": jax.ShapeDtypeStruct(
                    (16, 32), jnp.float32, sharding=NamedSharding(mesh, P(None, "data"))
                )
            }
        }
    }
    new = mi.apply(tree, {"kernel": mi.he_uniform()}, seed=11)
    assert new["params"]["p0"]["kernel"].sharding == NamedSharding(mesh, P(None, "data"))
    with jax.set_mesh(mesh):
        model = nnx.eval_shape(
            lambda: nnx.Linear(16, 32, rngs=nnx.Rngs(0), kernel_metadata={"out_sharding": ("data", "model")})
        )
    assert isinstance(model.kernel.get_value().sharding.mesh, jax.sharding.AbstractMesh)
    before = model.kernel.get_value()
    with pytest.raises(mi.RuleError, match=r"'kernel' is sharded over an abstract mesh.*jax.set_mesh"):
        mi.apply(model, {"kernel": mi.he_uniform(), "bias": mi.zeros()}, seed=11)
    assert model.kernel.get_value() is before
    with jax.set_mesh(mesh):
        mi.apply(model, {"kernel": mi.he_uniform(), "bias": mi.zeros()}, seed=11)
    assert model.kernel.get_value().sharding == NamedSharding(mesh, P("data", "model"))


class Block(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, sharded_init: bool) -> None:
        wrap = (
            (lambda init, names: nnx.with_partitioning(init, names))
            if sharded_init
            else (lambda init, _: init)
        )
        self.up = nnx.Linear(
            16, 32, kernel_init=wrap(nnx.initializers.lecun_normal(), ("data", "model")), rngs=rngs
        )
        self.attention = nnx.MultiHeadAttention(
            4,
            32,
            32,
            rngs=rngs,
            decode=False,
            kernel_init=wrap(nnx.initializers.lecun_normal(), (None, "model", None)),
        )
        self.norm = nnx.BatchNorm(32, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)


def nnx_arrays(module) -> list[tuple[tuple, jax.Array]]:
    return [(path, v.get_value()) for path, v in nnx.iter_graph(module) if isinstance(v, nnx.Param)]


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_nnx_with_partitioning_concrete_and_abstract(portable: bool) -> None:
    mesh = mesh_of((2, 4), ("data", "model"))
    rules = {"kernel": mi.glorot_uniform(), "bias": mi.uniform(-0.1, 0.1), "scale": mi.ones()}
    plain = Block(nnx.Rngs(0), sharded_init=False)
    mi.apply(plain, rules, seed=4, portable=portable)
    with jax.set_mesh(mesh):
        concrete = Block(nnx.Rngs(0), sharded_init=True)
    shardings = {path: value.sharding for path, value in nnx_arrays(concrete)}
    assert shardings[("up", "kernel")] == NamedSharding(mesh, P("data", "model"))
    mi.apply(concrete, rules, seed=4, portable=portable)
    with jax.set_mesh(mesh):
        abstract = nnx.eval_shape(lambda: Block(nnx.Rngs(0), sharded_init=True))
        mi.apply(abstract, rules, seed=4, portable=portable)
    # eval_shape rebuilt the module with its attributes sorted by name: its parameters are
    # numbered in that order, as those of the same module merged back from its state.
    merged = nnx.merge(*nnx.split(Block(nnx.Rngs(0), sharded_init=False)))
    mi.apply(merged, rules, seed=4, portable=portable)
    for module, reference in ((concrete, plain), (abstract, merged)):
        for (path, a), (_, b) in zip(nnx_arrays(module), nnx_arrays(reference), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))
            assert a.sharding == shardings[path], path
    assert abstract.norm.var.get_value().sharding.mesh == mesh
    np.testing.assert_array_equal(np.asarray(abstract.norm.var.get_value()), 1.0)


# --------------------------------------------------------------------------- faults change nothing


def test_sharding_faults_leave_the_tree_as_it_was() -> None:
    mesh = mesh_of((2, 4), ("data", "model"))
    array = jax.device_put(jnp.ones((16, 32)), NamedSharding(mesh, P("data", "model")))
    tree = {"params": {"a": {"kernel": array}, "b": {"kernel": jnp.zeros((6, 10))}}}
    rules = {"kernel": mi.he_normal()}
    with pytest.raises(mi.ShapeError, match=r"'params/b/kernel' of shape \(6, 10\) cannot be sharded.*"):
        mi.apply(tree, rules, seed=0, donate=True, shardings=mesh_sharding_tree(mesh))
    with pytest.raises(
        mi.ShapeError, match=r"'params/a/kernel' of shape \(16, 32\) cannot be sharded by .*names 3"
    ):
        mi.apply(tree, rules, seed=0, donate=True, shardings=NamedSharding(mesh, P("data", "model", None)))
    with pytest.raises(mi.RuleError, match=r"shardings has an entry at 'params/c/kernel'"):
        mi.apply(tree, rules, seed=0, donate=True, shardings={"params": {"c": {"kernel": None}}})
    with pytest.raises(mi.RuleError, match=r"needs a mesh"):
        mi.apply(tree, rules, seed=0, donate=True, shardings={"params": {"a": {"kernel": P("data")}}})
    boxed = {
        "params": {
            "a": {"kernel": nn.Partitioned(jax.ShapeDtypeStruct((16, 32), jnp.float32), ("rows", None))}
        }
    }
    with pytest.raises(mi.RuleError, match=r"partitioned by .*'rows'.*mesh has no axis 'rows'"):
        mi.apply(boxed, rules, seed=0, shardings=mesh)
    assert not array.is_deleted()
    np.testing.assert_array_equal(np.asarray(array), 1.0)
    assert array.sharding == NamedSharding(mesh, P("data", "model"))


def mesh_sharding_tree(mesh: Mesh) -> dict:
    return {
        "params": {
            "a": {"kernel": NamedSharding(mesh, P("data", "model"))},
            "b": {"kernel": NamedSharding(mesh, P("data", "model"))},
        }
    }


# --------------------------------------------------------------------------- run with 8 devices

if not IN_PROCESS:
    # This process has fewer devices (XLA_FLAGS was not set before JAX was imported): the tests
    # above run in a fresh process that has 8, and this test fails when any of them fails.
    for _name in [n for n in list(globals()) if n.startswith("test_")]:
        del globals()[_name]

    def test_the_mesh_tests_in_a_process_with_8_simulated_devices() -> None:
        rerun(__file__, DEVICES)
