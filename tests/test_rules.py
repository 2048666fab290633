"""Model-level rule planning, on a framework-free description of a model."""

from __future__ import annotations

import re

import numpy as np
import pytest

import multiinit as mi
from multiinit.fans import SPATIAL_IN_OUT, LogicalView
from multiinit.rules import Param, derive_seed, execute, normalize_rules, plan


class Dense:
    pass


class Conv(Dense):
    pass


class Norm:
    pass


def model() -> list[Param]:
    dense, conv, norm = Dense(), Conv(), Norm()
    return [
        Param("conv.weight", LogicalView((8, 3, 3, 3)), "weight", conv, order=0),
        Param("conv.bias", LogicalView((8,)), "bias", conv, fans=(27, 72), order=1),
        Param("norm.gamma", LogicalView((8,)), "gamma", norm, order=2),
        Param("norm.beta", LogicalView((8,)), "beta", norm, order=3),
        Param("head/kernel", LogicalView.of((72, 10), SPATIAL_IN_OUT), "kernel", dense, order=4),
        Param("head/bias", LogicalView((10,)), "bias", dense, fans=(72, 10), order=5),
    ]


def assigned(pairs) -> dict[str, mi.Spec]:
    return {p.path: s for p, s in pairs}


def test_roles_globs_and_types_first_match_wins() -> None:
    pairs = plan(
        model(),
        [
            ("conv.*", mi.he_normal()),  # wins over the role rule for conv.weight
            ("weight", mi.xavier_uniform()),  # "weight" also selects a "kernel"
            (Norm, mi.ones()),
            ("*bias", mi.zeros()),
        ],
    )
    got = assigned(pairs)
    assert got == {
        "conv.weight": mi.he_normal(),
        "conv.bias": mi.he_normal(),  # the glob came first; the bias uses its weight's fans
        "norm.gamma": mi.ones(),
        "norm.beta": mi.ones(),
        "head/kernel": mi.xavier_uniform(),
        "head/bias": mi.zeros(),
    }


def test_a_type_selector_matches_subclasses_and_tuples() -> None:
    got = assigned(plan(model(), [((Norm, Conv), mi.zeros())]))
    assert set(got) == {"conv.weight", "conv.bias", "norm.gamma", "norm.beta"}
    got = assigned(plan(model(), {Dense: mi.ones()}))
    assert set(got) == {"conv.weight", "conv.bias", "head/kernel", "head/bias"}


def test_unselected_parameters_and_none_rules_are_left_alone() -> None:
    got = assigned(plan(model(), {"bias": None, "kernel": "lecun_normal()"}))
    assert got == {"conv.weight": mi.lecun_normal(), "head/kernel": mi.lecun_normal()}


def test_a_rule_selecting_nothing_names_the_closest_paths() -> None:
    with pytest.raises(mi.RuleError) as info:
        plan(model(), {"weight": mi.zeros(), "conv.wieght": mi.ones()})
    message = str(info.value)
    assert "rule 1 ('conv.wieght' -> ones()) matches no parameter" in message
    assert "'conv.weight'" in message.split("closest paths:")[1]
    with pytest.raises(mi.RuleError, match="layer types here: Conv, Dense, Norm"):
        plan(model(), {int: mi.zeros()})
    with pytest.raises(mi.RuleError, match="roles: beta, bias, gamma, kernel, weight"):
        plan(model(), {"running_mean": mi.zeros()})


def test_a_shadowed_rule_is_not_an_error() -> None:
    plan(model(), {"*": mi.zeros(), "bias": mi.ones()})


def test_shape_errors_are_found_before_anything_happens_and_name_the_path() -> None:
    with pytest.raises(
        mi.ShapeError, match=re.escape("xavier_uniform() cannot fill 'norm.gamma' of shape (8,)")
    ):
        plan(model(), {"weight": mi.he_normal(), "gamma": mi.xavier_uniform()})
    # A bias with its layer's fans can take a fan-based spec (torch's default bias).
    plan(model(), {"bias": mi.variance_scaling(1 / 3, "fan_in", "uniform")})


@pytest.mark.parametrize(
    "rules, message",
    [
        ("weight", "rules='weight' is not allowed"),
        ({"weight": "normal(std=-1)"}, "rules[0] spec: normal: std=-1"),
        ({"weight": 0.01}, "rules[0] spec=0.01 is not allowed"),
        ([("weight",)], "rules[0]=('weight',) is not allowed"),
        ({3: mi.zeros()}, "rules[0] selector=3 is not allowed"),
        ({"": mi.zeros()}, "selector='' is not allowed"),
    ],
)
def test_malformed_rules_are_rule_errors(rules, message) -> None:
    with pytest.raises(mi.RuleError) as info:
        normalize_rules(rules)
    assert message in str(info.value)


class _Nothing:
    """A writer that writes nothing: what ``execute`` refuses before it calls one."""

    def check(self, param, spec) -> None:
        raise AssertionError("execute called the writer")

    prepare = fill = check


def test_portable_mode_needs_a_seed_and_seeds_must_be_integers() -> None:
    with pytest.raises(mi.RuleError, match="portable=True needs seed"):
        execute(model(), {"weight": mi.normal()}, seed=None, portable=True, writer=_Nothing())
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(mi.RuleError, match="seed="):
            execute(model(), {"weight": mi.normal()}, seed=bad, portable=False, writer=_Nothing())


def test_derived_seeds_differ_by_seed_and_key() -> None:
    seeds = {derive_seed(s, k) for s in range(20) for k in range(20)}
    assert len(seeds) == 400 and all(0 <= s < 2**32 for s in seeds)


def test_select_by_kind_role_and_path() -> None:
    params = model()
    params[0].kind = params[1].kind = "conv"
    params[4].kind = params[5].kind = "dense"
    params[2].kind = params[3].kind = "norm"
    got = assigned(
        plan(
            params,
            [
                (mi.select(kind=("dense", "conv"), role="weight"), mi.he_normal()),
                (mi.select(kind="conv", role="bias"), mi.ones()),
                (mi.select(path="head/*"), mi.zeros()),
            ],
        )
    )
    assert got == {
        "conv.weight": mi.he_normal(),
        "head/kernel": mi.he_normal(),
        "conv.bias": mi.ones(),
        "head/bias": mi.zeros(),
    }
    assert set(assigned(plan(params, {"norm": mi.ones()}))) == {"norm.gamma", "norm.beta"}  # a bare kind
    with pytest.raises(mi.RuleError, match="layer kinds here: conv, dense, norm"):
        plan(params, [(mi.select(kind="embedding"), mi.zeros())])


def test_select_errors() -> None:
    with pytest.raises(mi.RuleError, match="kind='lstm' is not allowed"):
        mi.select(kind="lstm")
    with pytest.raises(mi.RuleError, match="needs at least one"):
        mi.select()


def test_presets_are_rules_for_dense_conv_and_embedding() -> None:
    params = model()
    params[0].kind = params[1].kind = "conv"
    params[4].kind = params[5].kind = "dense"
    # The model has no embedding and no transposed conv: those optional rules select nothing.
    got = assigned(plan(params, mi.presets.torch_default))
    third = mi.variance_scaling(1 / 3, "fan_in", "uniform")
    assert got == {"conv.weight": third, "conv.bias": third, "head/kernel": third, "head/bias": third}
    assert assigned(plan(params, mi.presets.keras_default))["head/bias"] == mi.zeros()
    assert set(mi.presets.PRESETS) == {"torch", "keras", "flax", "mxnet"}


def test_torch_preset_reads_a_transposed_conv_fan_as_torch_does() -> None:
    # torch's ConvTranspose2d(4, 6, 3) stores (4, 6, 3, 3) and its default reads fan_in = 6 * 9,
    # the logical fan_out; the depthwise conv is a plain logical fan_in of 1 * 9.
    up = Param("up.weight", LogicalView((6, 4, 3, 3)), "weight", Conv(), order=0, kind="conv_transpose")
    up_bias = Param(
        "up.bias", LogicalView((6,)), "bias", Conv(), fans=(36, 54), order=1, kind="conv_transpose"
    )
    dw = Param("dw.weight", LogicalView((4, 1, 3, 3)), "weight", Conv(), order=2, kind="depthwise_conv")
    got = assigned(plan([up, up_bias, dw], mi.presets.torch_default))
    transposed = mi.variance_scaling(1 / 3, "fan_out", "uniform")
    assert got == {
        "up.weight": transposed,
        "up.bias": transposed,
        "dw.weight": mi.variance_scaling(1 / 3, "fan_in", "uniform"),
    }
    law = mi.reference.sample(transposed, (6, 4, 3, 3), seed=0, fans=up.fans)
    assert np.abs(law).max() <= 1 / np.sqrt(54)


def test_an_optional_selector_may_select_nothing_and_says_so_in_its_repr() -> None:
    rule = mi.select(kind="embedding", optional=True)
    assert repr(rule) == "select(kind='embedding', optional=True)"
    assert plan(model(), [(rule, mi.zeros())]) == []
    with pytest.raises(mi.RuleError, match="matches no parameter"):
        plan(model(), [(mi.select(kind="embedding"), mi.zeros())])
    with pytest.raises(mi.RuleError, match="optional='yes' is not allowed"):
        mi.select(kind="dense", optional="yes")
