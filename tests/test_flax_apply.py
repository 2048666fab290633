"""Model-level ``mi.apply`` on Flax: linen variable trees (a new tree, the input untouched) and
nnx modules (in place); paths, roles, kinds and layer types; the logical views of transposed,
depthwise and general dense kernels; bias fans; order and portable mode; all or nothing."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.core import FrozenDict

import multiinit as mi
from multiinit import flax as mif, stats
from multiinit.reference import sample
from multiinit.rules import portable_rng

KEY = jax.random.key(0)
X4 = jnp.ones((2, 4))


def snapshot(tree) -> list[tuple[str, np.ndarray]]:
    return [
        (jax.tree_util.keystr(path), np.array(leaf))
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    ]


def assert_same(tree, before) -> None:
    after = snapshot(tree)
    assert [p for p, _ in after] == [p for p, _ in before]
    for (path, a), (_, b) in zip(after, before, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=path)


def variables_of(model: nn.Module, *inputs) -> dict:
    """``model``'s variables without running ``init`` (whose compilation is the slow part of
    these tests): shapes from ``jax.eval_shape``, values from NumPy. Keys come back sorted,
    so tests of order use the real ``init``."""
    rng = np.random.default_rng(0)

    def fill(node):
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        return jnp.asarray(rng.standard_normal(node.shape), dtype=node.dtype)

    return fill(jax.eval_shape(lambda: model.init(KEY, *inputs)))


def chapter() -> tuple[nn.Module, dict]:
    net = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(1)])
    return net, net.init(KEY, X4)


class ConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=True)(x)
        return nn.Dense(2)(x)


# --------------------------------------------------------------------------- linen trees


def test_linen_returns_a_new_tree_and_leaves_the_input_unchanged() -> None:
    variables = variables_of(ConvNet(), jnp.ones((1, 6, 6, 3)))
    before = snapshot(variables)
    params_dict, kernel = variables["params"], variables["params"]["Conv_0"]["kernel"]
    new = mi.apply(variables, {"kernel": mi.xavier_uniform(), "bias": mi.constant(0.5)}, seed=0)
    assert new is not variables and new["params"] is not params_dict
    assert variables["params"] is params_dict and variables["params"]["Conv_0"]["kernel"] is kernel
    assert_same(variables, before)
    assert list(new) == list(variables) and list(new["params"]) == list(variables["params"])
    np.testing.assert_array_equal(np.asarray(new["params"]["Dense_0"]["bias"]), 0.5)
    assert not np.array_equal(np.asarray(new["params"]["Conv_0"]["kernel"]), np.asarray(kernel))
    # batch statistics are not parameters: copied, never drawn, never selectable
    np.testing.assert_array_equal(
        np.asarray(new["batch_stats"]["BatchNorm_0"]["var"]),
        np.asarray(variables["batch_stats"]["BatchNorm_0"]["var"]),
    )
    assert new["batch_stats"] is not variables["batch_stats"]
    with pytest.raises(mi.RuleError, match=r"'mean'.* matches no parameter"):
        mi.apply(variables, {"mean": mi.zeros()}, seed=0)


def test_linen_paths_roles_and_kinds_select() -> None:
    _, variables = chapter()
    new = mi.apply(
        variables,
        [
            ("params/layers_0/kernel", mi.constant(1)),
            ("weight", mi.constant(2)),  # "weight" also selects a flax kernel
            ("*/layers_2/bias", mi.constant(3)),
            ("bias", mi.constant(4)),
        ],
        seed=0,
    )["params"]
    np.testing.assert_array_equal(np.asarray(new["layers_0"]["kernel"]), 1.0)
    np.testing.assert_array_equal(np.asarray(new["layers_2"]["kernel"]), 2.0)
    np.testing.assert_array_equal(np.asarray(new["layers_2"]["bias"]), 3.0)
    np.testing.assert_array_equal(np.asarray(new["layers_0"]["bias"]), 4.0)
    new = mi.apply(variables, {"dense": mi.constant(5)}, seed=0)["params"]  # a neutral kind
    np.testing.assert_array_equal(np.asarray(new["layers_0"]["bias"]), 5.0)
    tree = variables["params"]  # a bare params tree: paths without "params/"
    new = mi.apply(tree, {"layers_2/kernel": mi.constant(6)}, seed=0)
    np.testing.assert_array_equal(np.asarray(new["layers_2"]["kernel"]), 6.0)


def test_linen_frozen_boxed_abstract_and_bfloat16_trees() -> None:
    _, variables = chapter()
    frozen = mi.apply(FrozenDict(variables), {"bias": mi.ones()}, seed=0)
    assert isinstance(frozen, FrozenDict)
    np.testing.assert_array_equal(np.asarray(frozen["params"]["layers_0"]["bias"]), 1.0)

    boxed = nn.Dense(4, kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), (None, "model")))
    variables = boxed.init(KEY, X4)
    new = mi.apply(variables, {"kernel": mi.constant(7)}, seed=0)
    box = new["params"]["kernel"]
    assert isinstance(box, nn.Partitioned) and box.names == (None, "model")
    np.testing.assert_array_equal(np.asarray(box.unbox()), 7.0)

    net, _ = chapter()
    abstract = jax.eval_shape(lambda: net.init(KEY, X4))  # nothing computed yet
    new = mi.apply(abstract, {"kernel": mi.lecun_normal(), "bias": mi.zeros()}, seed=0)
    kernel = new["params"]["layers_0"]["kernel"]
    assert isinstance(kernel, jax.Array) and kernel.shape == (4, 8)

    half = variables_of(nn.Dense(8, param_dtype=jnp.bfloat16), X4)
    new = mi.apply(half, {"kernel": mi.he_uniform()}, seed=0)
    assert new["params"]["kernel"].dtype == jnp.bfloat16


def test_linen_module_instead_of_its_variables_is_refused() -> None:
    with pytest.raises(mi.RuleError, match=r"model=Dense\(...\) is a flax.linen Module.*pass its variables"):
        mif.apply(nn.Dense(3), {"kernel": mi.zeros()})


# --------------------------------------------------------------------------- layouts and fans


class Up(nn.Module):
    transpose_kernel: bool = True

    @nn.compact
    def __call__(self, x):
        return nn.ConvTranspose(16, (3, 3), transpose_kernel=self.transpose_kernel)(x)


UP_X = jnp.ones((1, 5, 5, 64))


def max_abs(tree, *path) -> float:
    for key in path:
        tree = tree[key]
    return float(np.abs(np.asarray(tree)).max())


def test_conv_transpose_with_transpose_kernel_needs_its_module() -> None:
    model = Up()
    variables = variables_of(model, UP_X)
    assert variables["params"]["ConvTranspose_0"]["kernel"].shape == (3, 3, 16, 64)  # (*k, out, in)
    bound = math.sqrt(6 / (64 * 9))  # he_uniform, logical (out 16, in 64, 3, 3): fan_in 576, by hand
    told = [
        {"ConvTranspose_0": nn.ConvTranspose(16, (3, 3), transpose_kernel=True)},
        mif.modules(model, UP_X),
    ]
    for layers in told:
        new = mif.apply(variables, {"kernel": mi.he_uniform()}, seed=0, layers=layers)
        assert 0.99 * bound < max_abs(new, "params", "ConvTranspose_0", "kernel") < bound
    # By its name alone the transpose_kernel flag is unknown: Flax's default layout is assumed.
    new = mif.apply(variables, {"kernel": mi.he_uniform()}, seed=0)
    assert max_abs(new, "params", "ConvTranspose_0", "kernel") > 1.5 * bound
    # The flax default (*k, in, out) is the plain view: fan_in 576 without telling anything.
    variables = variables_of(Up(transpose_kernel=False), UP_X)
    assert variables["params"]["ConvTranspose_0"]["kernel"].shape == (3, 3, 64, 16)
    new = mif.apply(variables, {"conv_transpose": mi.he_uniform()}, seed=0)
    assert 0.99 * bound < max_abs(new, "params", "ConvTranspose_0", "kernel") < bound


def test_conv_transpose_bias_gets_the_logical_kernel_fans() -> None:
    variables = variables_of(Up(), UP_X)
    torch_linear = mi.variance_scaling(1 / 3, "fan_in", "uniform")
    new = mif.apply(
        variables,
        {"bias": torch_linear},
        seed=0,
        layers={"ConvTranspose_*": nn.ConvTranspose(16, (3, 3), transpose_kernel=True)},
    )
    bias = np.asarray(new["params"]["ConvTranspose_0"]["bias"])
    assert np.abs(bias).max() < 1 / math.sqrt(576)


def test_layer_types_select_on_linen_only_when_instances_are_known() -> None:
    model = Up()
    variables = variables_of(model, UP_X)
    new = mif.apply(variables, {nn.ConvTranspose: mi.constant(3)}, seed=0, layers=mif.modules(model, UP_X))
    np.testing.assert_array_equal(np.asarray(new["params"]["ConvTranspose_0"]["kernel"]), 3.0)
    with pytest.raises(mi.RuleError, match=r"ConvTranspose.*matches no parameter.*none known"):
        mif.apply(variables, {nn.ConvTranspose: mi.constant(3)}, seed=0)


def test_layers_mapping_errors() -> None:
    variables = variables_of(Up(), UP_X)
    with pytest.raises(
        mi.RuleError, match=r"layers key 'ConvTranspose_9' matches no module.*'ConvTranspose_0'"
    ):
        mif.apply(variables, {"kernel": mi.zeros()}, layers={"ConvTranspose_9": "conv_transpose"})
    with pytest.raises(
        mi.RuleError, match=r"layers\['ConvTranspose_0'\]='deconv' is not allowed; a kind is one of"
    ):
        mif.apply(variables, {"kernel": mi.zeros()}, layers={"ConvTranspose_0": "deconv"})
    with pytest.raises(mi.RuleError, match=r"layers\['ConvTranspose_0'\]=3 is not allowed"):
        mif.apply(variables, {"kernel": mi.zeros()}, layers={"ConvTranspose_0": 3})


def test_depthwise_general_dense_and_embedding_views() -> None:
    class Mixed(nn.Module):
        @nn.compact
        def __call__(self, x, ids):
            x = nn.Conv(64, (3, 3), feature_group_count=64)(x)  # depthwise: kernel (3, 3, 1, 64)
            y = nn.DenseGeneral((4, 5))(x)  # kernel (64, 4, 5): Flax flattens it to (64, 20)
            return y, nn.Embed(1000, 16)(ids)

    variables = variables_of(Mixed(), jnp.ones((1, 5, 5, 64)), jnp.zeros((1,), jnp.int32))
    new = mi.apply(variables, {"kernel": mi.he_uniform(), "embedding": mi.presets.flax_default[0][1]}, seed=0)
    params = new["params"]
    # depthwise: fan_in = 1 * 3 * 3 (torch's Conv2d(64, 64, 3, groups=64)), by hand
    assert 0.99 * math.sqrt(6 / 9) < max_abs(params, "Conv_0", "kernel") < math.sqrt(6 / 9)
    # general dense: fan_in = 64 (not 4 * 64 as a (spatial, in, out) reading would say)
    assert 0.95 * math.sqrt(6 / 64) < max_abs(params, "DenseGeneral_0", "kernel") < math.sqrt(6 / 64)
    # embedding (num, features) is logical already: N(0, 1/16) by flax's default, fan_in = 16
    table = np.asarray(params["Embed_0"]["embedding"])
    verdict = stats.check(table, mi.variance_scaling(1.0, "fan_in", "untruncated_normal"))
    assert verdict.passed and abs(table.std() - 0.25) < 0.01, str(verdict)


def test_torch_default_preset_on_linen_draws_the_bias_from_the_kernel_fans() -> None:
    variables = variables_of(nn.Dense(20000), X4)
    # The preset's dense/conv rules (its embedding rule would select nothing here: a RuleError).
    rules = [
        (selector, spec) for selector, spec in mi.presets.torch_default if "dense" in (selector.kind or ())
    ]
    new = mi.apply(variables, rules, seed=0)["params"]
    bias, kernel = np.asarray(new["bias"]), np.asarray(new["kernel"])
    spec = mi.variance_scaling(1 / 3, "fan_in", "uniform")
    # torch's Linear(4, 20000): weight and bias U(+-1/sqrt(4)), by hand
    assert 0.499 < np.abs(bias).max() < 0.5 and 0.499 < np.abs(kernel).max() < 0.5
    assert stats.check(bias, spec, fans=(4, 20000)).passed
    assert stats.check(kernel.T, spec).passed


# --------------------------------------------------------------------------- order, seeds, portable


class Deep(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(12):
            x = nn.Dense(3)(x)
        return x


def test_order_is_definition_order_even_from_a_sorted_tree() -> None:
    model = Deep()
    eager = model.init(KEY, X4)
    # A jitted init returns its tree through jax.tree_util, which sorts dict keys; so does this.
    jitted = jax.tree_util.tree_map(lambda leaf: leaf, eager)
    assert list(jitted["params"])[:4] == ["Dense_0", "Dense_1", "Dense_10", "Dense_11"]
    expected = [f"params/Dense_{i}/{leaf}" for i in range(12) for leaf in ("kernel", "bias")]
    assert [p.path for p in sorted(mif.params_of(eager), key=lambda p: p.order)] == expected
    assert [p.path for p in sorted(mif.params_of(jitted), key=lambda p: p.order)] == expected
    spec = {"kernel": mi.normal(), "bias": mi.normal()}
    a = mi.apply(eager, spec, seed=3, portable=True)
    b = mi.apply(jitted, spec, seed=3, portable=True)
    for i in range(12):
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(
                np.asarray(a["params"][f"Dense_{i}"][leaf]), np.asarray(b["params"][f"Dense_{i}"][leaf])
            )


def test_modules_order_repairs_a_sorted_tree_of_mixed_layers() -> None:
    class Mixed(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(5)(x)
            x = nn.LayerNorm()(x)
            return nn.Dense(3)(x)

    model = Mixed()
    expected = [
        "params/Dense_0/kernel",
        "params/Dense_0/bias",
        "params/LayerNorm_0/scale",
        "params/LayerNorm_0/bias",
        "params/Dense_1/kernel",
        "params/Dense_1/bias",
    ]
    eager = model.init(KEY, X4)
    params = mif.params_of(eager)
    assert [p.path for p in sorted(params, key=lambda p: p.order)] == expected
    jitted = jax.tree_util.tree_map(lambda leaf: leaf, eager)  # keys sorted, as a jitted init's
    assert list(jitted["params"]) == ["Dense_0", "Dense_1", "LayerNorm_0"]
    params = mif.params_of(jitted, layers=mif.modules(model, X4))
    assert [p.path for p in sorted(params, key=lambda p: p.order)] == expected


def test_portable_mode_writes_the_reference_draw_in_flax_layout() -> None:
    _, variables = chapter()
    rules = {"kernel": mi.xavier_uniform(), "bias": mi.uniform(-1, 1)}
    new = mi.apply(variables, rules, seed=11, portable=True)["params"]
    # order: layers_0 kernel 0, bias 1, layers_2 kernel 2, bias 3 (by hand); kernels are
    # logical (out, in), so the flax kernel is the transpose of the reference draw.
    np.testing.assert_array_equal(
        np.asarray(new["layers_0"]["kernel"]), sample(mi.xavier_uniform(), (8, 4), seed=portable_rng(11, 0)).T
    )
    np.testing.assert_array_equal(
        np.asarray(new["layers_0"]["bias"]), sample(mi.uniform(-1, 1), (8,), seed=portable_rng(11, 1))
    )
    np.testing.assert_array_equal(
        np.asarray(new["layers_2"]["kernel"]), sample(mi.xavier_uniform(), (1, 8), seed=portable_rng(11, 2)).T
    )


def test_portable_linen_and_nnx_of_one_architecture_hold_the_same_numbers() -> None:
    _, variables = chapter()
    module = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(8, 1, rngs=nnx.Rngs(0)))
    rules = {"kernel": mi.orthogonal(), "bias": mi.variance_scaling(1 / 3, "fan_in", "uniform")}
    linen = mi.apply(variables, rules, seed=5, portable=True)["params"]
    mi.apply(module, rules, seed=5, portable=True)
    for i, name in ((0, "layers_0"), (2, "layers_2")):
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(
                np.asarray(getattr(module.layers[i], leaf).get_value()), np.asarray(linen[name][leaf])
            )


def test_seeds() -> None:
    _, variables = chapter()
    rules = {"kernel": mi.he_normal(), "bias": mi.normal()}
    a = snapshot(mi.apply(variables, rules, seed=1))
    assert_same(mi.apply(variables, rules, seed=1), a)
    different = snapshot(mi.apply(variables, rules, seed=2))
    assert all(not np.array_equal(x, y) for (_, x), (_, y) in zip(a, different, strict=True))
    unseeded = [snapshot(mi.apply(variables, rules)) for _ in range(2)]
    assert not np.array_equal(unseeded[0][0][1], unseeded[1][0][1])
    with pytest.raises(mi.RuleError, match="portable=True needs seed"):
        mi.apply(variables, rules, portable=True)


# --------------------------------------------------------------------------- all or nothing


def failing_law(rng, shape, dtype):
    raise RuntimeError("this law fails")


def test_linen_errors_change_nothing() -> None:
    _, variables = chapter()
    before = snapshot(variables)
    with pytest.raises(
        mi.RuleError, match=r"'layer_0/kernel'.*matches no parameter.*closest paths: 'params/layers_0/kernel'"
    ):
        mi.apply(variables, {"layer_0/kernel": mi.zeros()}, seed=0)
    with pytest.raises(mi.ShapeError, match=r"eye\(\) cannot fill 'params/layers_0/bias'"):
        mi.apply(variables, {"kernel": mi.zeros(), "bias": mi.eye()}, seed=0)
    with pytest.raises(mi.LawError, match="this law fails"):
        mi.apply(
            variables,
            {
                "params/layers_2/kernel": mi.custom(failing_law, name="apply_tests.failing"),
                "kernel": mi.zeros(),
            },
            seed=0,
        )
    assert_same(variables, before)


class Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.first = nnx.Linear(4, 8, rngs=rngs)
        self.norm = nnx.BatchNorm(8, rngs=rngs)
        self.blocks = nnx.Sequential(nnx.Linear(8, 8, rngs=rngs), nnx.relu, nnx.Linear(8, 2, rngs=rngs))
        self.up = nnx.ConvTranspose(64, 16, (3, 3), transpose_kernel=True, rngs=rngs)
        self.shared = self.first  # tied: the same parameters under a second name


def nnx_values(module) -> list[np.ndarray]:
    return [np.array(v.get_value()) for _, v in nnx.iter_graph(module) if isinstance(v, nnx.Variable)]


def test_nnx_is_changed_in_place() -> None:
    net = Net(nnx.Rngs(0))
    kernel = net.first.kernel
    mean = np.array(net.norm.mean.get_value())
    out = mi.apply(net, {nnx.Linear: mi.constant(2), "bias": mi.zeros(), "scale": mi.ones()}, seed=0)
    assert out is net and net.first.kernel is kernel and net.shared.kernel is kernel
    np.testing.assert_array_equal(np.asarray(net.first.kernel.get_value()), 2.0)
    np.testing.assert_array_equal(np.asarray(net.blocks.layers[2].kernel.get_value()), 2.0)
    np.testing.assert_array_equal(np.asarray(net.norm.mean.get_value()), mean)  # a BatchStat, not a Param


def test_nnx_paths_order_views_and_tied_parameters() -> None:
    net = Net(nnx.Rngs(0))
    params = mif.params_of(net)
    assert [p.path for p in params] == [
        "first/kernel",
        "first/bias",
        "norm/scale",
        "norm/bias",
        "blocks/layers/0/kernel",
        "blocks/layers/0/bias",
        "blocks/layers/2/kernel",
        "blocks/layers/2/bias",
        "up/kernel",
        "up/bias",
    ]
    assert [p.order for p in params] == list(range(10))
    up = params[8]
    assert (
        up.kind == "conv_transpose" and up.view.logical_shape == (16, 64, 3, 3) and up.view.fans == (576, 144)
    )
    assert params[9].fans == (576, 144) and params[1].fans == (4, 8)
    new = mi.apply(net, {"up/kernel": mi.he_uniform()}, seed=0)
    assert np.abs(np.asarray(new.up.kernel.get_value())).max() < math.sqrt(6 / 576)
    with pytest.raises(mi.RuleError, match="layers= is for linen"):
        mif.apply(net, {"kernel": mi.zeros()}, layers={"up": "conv_transpose"})


def test_nnx_errors_change_nothing() -> None:
    net = Net(nnx.Rngs(0))
    before = nnx_values(net)
    with pytest.raises(mi.RuleError, match="matches no parameter"):
        mi.apply(net, {"first/weight": mi.zeros()}, seed=0)
    with pytest.raises(mi.ShapeError, match=r"cannot fill 'up/kernel'"):
        mi.apply(net, {"kernel": mi.eye()}, seed=0)
    with pytest.raises(mi.LawError, match="this law fails"):
        mi.apply(
            net, {"bias": mi.zeros(), "up/kernel": mi.custom(failing_law, name="apply_tests.failing")}, seed=0
        )
    for a, b in zip(nnx_values(net), before, strict=True):
        np.testing.assert_array_equal(a, b)
