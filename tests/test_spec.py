"""Spec values: the contract's names, immutability, equality, repr, and every validation error."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import multiinit as mi
from multiinit.spec import CONSTRUCTORS

# The spec section of the public contract in DESIGN.md, name by name.
CONTRACT = [
    "zeros",
    "ones",
    "constant",
    "uniform",
    "normal",
    "truncated_normal",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "variance_scaling",
    "orthogonal",
    "eye",
    "dirac",
    "sparse",
    "mixture",
    "custom",
    "calculate_gain",
    "from_dict",
    "parse",
    "compile",
    "apply",
]


def _law(rng, shape, dtype):
    return rng.uniform(-1, 1, shape)


def every_spec() -> list[mi.Spec]:
    """One of each spec kind, most with non-default parameters."""
    return [
        mi.zeros(),
        mi.ones(),
        mi.constant(42),
        mi.uniform(5, 10),
        mi.normal(1.5, 0.01),
        mi.truncated_normal(0.1, 0.02, -1.5, 2.5),
        mi.trunc_normal(0, 0.5, -1, 1),
        mi.xavier_uniform(gain=2.0),
        mi.xavier_normal(gain=0.5),
        mi.kaiming_uniform(a=math.sqrt(5)),
        mi.kaiming_normal(mode="fan_out", nonlinearity="relu"),
        mi.glorot_uniform(),
        mi.glorot_normal(),
        mi.he_uniform(),
        mi.he_normal(),
        mi.lecun_uniform(),
        mi.lecun_normal(),
        mi.variance_scaling(0.5, "fan_avg", "uniform"),
        mi.orthogonal(gain=2.0),
        mi.eye(),
        mi.dirac(groups=2),
        mi.sparse(0.25, std=0.02),
        mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
        mi.mixture([(0.5, mi.mixture([(0.5, mi.ones()), (0.5, mi.he_normal())])), (0.5, mi.eye())]),
        mi.custom(_law, name="tests.sym_uniform"),
    ]


def test_every_contract_name_exists() -> None:
    missing = [name for name in CONTRACT if not callable(getattr(mi, name, None))]
    assert not missing
    assert set(CONTRACT) - {"calculate_gain", "from_dict", "parse", "compile", "apply"} <= set(CONSTRUCTORS)


def test_all_lists_every_constructor() -> None:
    # multiinit.__all__ is written out for type checkers and editors: it must not drift from
    # the constructor table, and every name in it must exist.
    assert set(CONSTRUCTORS) <= set(mi.__all__)
    assert [name for name in mi.__all__ if not hasattr(mi, name)] == []


@pytest.mark.parametrize("spec", every_spec(), ids=repr)
def test_specs_are_immutable_hashable_and_equal_by_value(spec: mi.Spec) -> None:
    field = dataclasses.fields(spec)[0].name if dataclasses.fields(spec) else "kind"
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
        setattr(spec, field, 1.0)
    twin = mi.parse(repr(spec))
    assert twin == spec and twin is not spec
    assert hash(twin) == hash(spec)
    assert len({spec, twin}) == 1


def test_equality_is_by_value_and_kind() -> None:
    assert mi.normal(0, 1) == mi.normal(mean=0.0, std=1.0)
    assert mi.normal(0, 1) != mi.normal(0, 2)
    assert mi.constant(0) == mi.zeros() and mi.constant(1) == mi.ones()
    # -0.0 fills other bits than +0.0: its own spec, also inside a mixture, however Python
    # compares the floats; a round trip keeps it.
    assert mi.constant(-0.0) != mi.zeros() and len({mi.constant(-0.0), mi.zeros()}) == 2
    assert mi.mixture([(1, mi.constant(-0.0))]) != mi.mixture([(1, mi.zeros())])
    assert mi.parse(str(mi.constant(-0.0))) == mi.from_dict(mi.constant(-0.0).to_dict()) == mi.constant(-0.0)
    # The same law under two names stays two specs: each name keeps its home framework.
    assert mi.xavier_uniform() != mi.glorot_uniform()
    assert mi.xavier_uniform().as_variance_scaling() == mi.glorot_uniform().as_variance_scaling()
    assert mi.kaiming_uniform() != mi.kaiming_normal()


@pytest.mark.parametrize(
    "spec, text",
    [
        (mi.uniform(-1, 1), "uniform(low=-1.0, high=1.0)"),
        (mi.normal(std=0.01), "normal(std=0.01)"),
        (mi.zeros(), "zeros()"),
        (mi.constant(42), "constant(value=42.0)"),
        (mi.xavier_uniform(gain=2), "xavier_uniform(gain=2.0)"),
        (mi.kaiming_normal(mode="fan_out"), "kaiming_normal(mode='fan_out')"),
        (mi.he_normal(), "he_normal()"),
        (mi.sparse(0.1), "sparse(sparsity=0.1)"),
        (mi.mixture([(0.5, mi.zeros()), (0.5, mi.ones())]), "mixture([(0.5, zeros()), (0.5, ones())])"),
        (mi.trunc_normal(std=0.5, a=-1, b=1), "truncated_normal(std=0.5)"),
    ],
)
def test_repr_reads_as_the_call_that_builds_it(spec: mi.Spec, text: str) -> None:
    assert repr(spec) == text == str(spec)


def test_named_specs_say_what_they_are_as_variance_scaling() -> None:
    vs = mi.variance_scaling
    gain = mi.calculate_gain("leaky_relu", math.sqrt(5))
    assert mi.xavier_uniform(gain=3).as_variance_scaling() == vs(9, "fan_avg", "uniform")
    assert mi.xavier_normal(gain=3).as_variance_scaling() == vs(9, "fan_avg", "untruncated_normal")
    assert mi.kaiming_uniform(a=math.sqrt(5)).as_variance_scaling() == vs(gain**2, "fan_in", "uniform")
    assert abs(gain**2 - 1 / 3) < 1e-15  # torch's default Linear init is variance_scaling(1/3)
    relu = mi.kaiming_normal(mode="fan_out", nonlinearity="relu").as_variance_scaling()
    assert (relu.scale, relu.mode, relu.distribution) == (pytest.approx(2.0), "fan_out", "untruncated_normal")
    assert mi.glorot_normal().as_variance_scaling() == vs(1, "fan_avg", "truncated_normal")
    assert mi.he_uniform().as_variance_scaling() == vs(2, "fan_in", "uniform")
    assert mi.he_normal().as_variance_scaling() == vs(2, "fan_in", "truncated_normal")
    assert mi.lecun_uniform().as_variance_scaling() == vs(1, "fan_in", "uniform")
    assert mi.lecun_normal().as_variance_scaling() == vs(1, "fan_in", "truncated_normal")
    assert mi.orthogonal().as_variance_scaling() is None and mi.normal().as_variance_scaling() is None


def test_trunc_normal_takes_torch_absolute_bounds() -> None:
    spec = mi.trunc_normal(mean=1.0, std=0.5, a=0.0, b=3.0)
    assert (spec.low, spec.high) == (-2.0, 4.0)
    assert spec.bounds == (0.0, 3.0)
    # torch's defaults with a small std: the cut at +-2 absolute is +-100 std, no truncation.
    assert mi.trunc_normal(std=0.02).bounds == pytest.approx((-2.0, 2.0))
    assert mi.trunc_normal(std=0.02).low == pytest.approx(-100.0)


# -------------------------------------------------------------------------- validation errors

BAD = [
    # (call, parameter named in the message, allowed text in the message)
    (lambda: mi.normal(std=-1.0), "std=-1.0", "> 0"),
    (lambda: mi.normal(std=0), "std=0", "> 0"),
    (lambda: mi.truncated_normal(std=0.0), "std=0.0", "> 0"),
    (lambda: mi.sparse(0.1, std=-0.01), "std=-0.01", "> 0"),
    (lambda: mi.uniform(1, 1), "high=1", "> low=1.0"),
    (lambda: mi.uniform(2, 1), "high=1", "> low=2.0"),
    (lambda: mi.truncated_normal(low=2, high=-2), "high=-2", "> low=2.0"),
    (lambda: mi.trunc_normal(a=1, b=0), "b=0", "> a=1.0"),
    (lambda: mi.variance_scaling(mode="fan_mean"), "mode='fan_mean'", "'fan_in', 'fan_out', 'fan_avg'"),
    (lambda: mi.variance_scaling(distribution="gaussian"), "distribution='gaussian'", "'uniform'"),
    (lambda: mi.variance_scaling(distribution="normal"), "distribution='normal'", "say which"),
    (lambda: mi.variance_scaling(scale=0), "scale=0", "> 0"),
    (lambda: mi.kaiming_uniform(mode="fan_avg"), "mode='fan_avg'", "'fan_in', 'fan_out'"),
    (lambda: mi.kaiming_normal(nonlinearity="gelu"), "nonlinearity='gelu'", "'leaky_relu'"),
    (lambda: mi.calculate_gain("swish"), "nonlinearity='swish'", "relu"),
    (lambda: mi.calculate_gain("leaky_relu", "0.2"), "param='0.2'", "finite number"),
    (lambda: mi.mixture([(0.5, mi.zeros()), (0.4, mi.ones())]), "weights=[0.5, 0.4]", "sum to 1"),
    (lambda: mi.mixture([(1.5, mi.zeros()), (-0.5, mi.ones())]), "components[1] weight=-0.5", ">= 0"),
    (lambda: mi.mixture([]), "components=[]", "non-empty"),
    (lambda: mi.mixture([(1.0, "zeros()")]), "components[0] spec='zeros()'", "a multiinit spec"),
    (lambda: mi.mixture([(1.0,)]), "components[0]=(1.0,)", "(weight, spec) pair"),
    (lambda: mi.sparse(1.0), "sparsity=1.0", "[0, 1)"),
    (lambda: mi.sparse(-0.1), "sparsity=-0.1", "[0, 1)"),
    (lambda: mi.normal(mean=float("nan")), "mean=nan", "finite number"),
    (lambda: mi.uniform(0, float("inf")), "high=inf", "finite number"),
    (lambda: mi.constant(float("-inf")), "value=-inf", "finite number"),
    (lambda: mi.xavier_uniform(gain=True), "gain=True", "finite number"),
    (lambda: mi.normal(std="0.1"), "std='0.1'", "finite number"),
    (lambda: mi.constant(np.bool_(True)), "constant: value=", "finite number"),
    (lambda: mi.constant(None), "value=None", "finite number"),
    (lambda: mi.orthogonal(gain=0), "gain=0", "> 0"),
    (lambda: mi.dirac(groups=0), "groups=0", "integer >= 1"),
    (lambda: mi.dirac(groups=2.0), "groups=2.0", "integer >= 1"),
    (lambda: mi.custom(42, name="x"), "fn=42", "callable"),
    (lambda: mi.custom(lambda r, s, d: r.random(s)), "name=", "lambda needs name"),
    (lambda: mi.custom(_law, name=""), "name=''", "non-empty string"),
]


@pytest.mark.parametrize("call, named, allowed", BAD, ids=[b[1] for b in BAD])
def test_bad_values_raise_spec_error_naming_parameter_value_and_allowed(call, named, allowed) -> None:
    with pytest.raises(mi.SpecError) as info:
        call()
    message = str(info.value)
    assert named in message and allowed in message, message
    assert isinstance(info.value, ValueError) and isinstance(info.value, mi.MultiinitError)


def test_numbers_of_other_types_are_accepted_and_stored_as_float() -> None:
    spec = mi.normal(np.float32(0.5), np.int64(2))
    assert spec == mi.normal(0.5, 2.0) and type(spec.std) is float
    assert mi.dirac(np.int64(3)).groups == 3


def test_mixture_weights_tolerate_float_rounding_only() -> None:
    mi.mixture([(0.1, mi.zeros()), (0.2, mi.ones()), (0.7, mi.normal())])  # sums to 1.0000000000000002
    with pytest.raises(mi.SpecError):
        mi.mixture([(0.5, mi.zeros()), (0.5 + 1e-6, mi.ones())])


def test_custom_works_as_a_decorator_and_registers_its_name() -> None:
    @mi.custom
    def tests_decorated(rng, shape, dtype):
        return np.full(shape, 3.0)

    @mi.custom(name="tests.named_decorated")
    def whatever(rng, shape, dtype):
        return np.full(shape, 4.0)

    assert isinstance(tests_decorated, mi.Spec) and tests_decorated.name == "tests_decorated"
    assert whatever.name == "tests.named_decorated"
    assert mi.parse("custom(name='tests.named_decorated')") == whatever
    assert whatever.sample((2,)).tolist() == [4.0, 4.0]


def test_random_and_uses_fans_flags() -> None:
    assert not mi.zeros().random and not mi.eye().random and not mi.dirac().random
    assert mi.normal().random and mi.orthogonal().random
    assert mi.xavier_uniform().uses_fans and not mi.normal().uses_fans
    assert mi.mixture([(1.0, mi.ones()), (0.0, mi.normal())]).random is False
    assert mi.mixture([(0.5, mi.ones()), (0.5, mi.zeros())]).random is True
    assert mi.mixture([(0.5, mi.he_normal()), (0.5, mi.zeros())]).uses_fans
