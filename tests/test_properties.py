"""Property-based tests (hypothesis) of the neutral core: round trips and refusals.

* Random valid specs (nested mixtures and custom laws registered by name included) come back
  equal through ``to_dict``/``from_dict`` (also through JSON), ``parse(str(spec))`` and ``repr``.
* Random invalid arguments (wrong types, NaN, inf, huge floats and ints, negative where a
  positive is needed, wrong strings, nesting too deep) always give a ``SpecError`` (or its
  documented subclass) naming the parameter, never a foreign exception; random text and random
  dicts are read or refused with a ``SpecError``, nothing else.
* Every draw is finite, of the shape and dtype asked, or refused with a multiinit error; a
  lying user law is a ``LawError`` naming the law and the path, or its own values.

Profiles (registered in ``tests/conftest.py``), chosen by the env var ``HYPOTHESIS_PROFILE``:

    ci    (default) derandomized: the same examples every run (no flakiness), 200 per test,
          no deadline, no example database written
    long  fresh random examples, 5000 per test, prints a blob that replays a failure:
          HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import multiinit as mi
from multiinit.errors import shown
from multiinit.reference import call_law
from multiinit.spec import MAX_DEPTH, MAX_NODES

# --------------------------------------------------------------------------- valid specs

#: Numbers far from the float limits, so the laws' derived quantities (bounds, widths,
#: squares) stay finite whatever the combination: the valid side of the line.
moderate = st.one_of(
    st.floats(min_value=-1e100, max_value=1e100, allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**6), max_value=10**6),
)
positive = st.one_of(
    st.floats(min_value=1e-100, max_value=1e100),
    st.integers(min_value=1, max_value=10**6),
)
#: Any finite float, the extremes included (a constant may be anything finite).
finite = st.floats(allow_nan=False, allow_infinity=False)
fan_modes = st.sampled_from(["fan_in", "fan_out", "fan_avg"])
distributions = st.sampled_from(["truncated_normal", "untruncated_normal", "uniform"])
nonlinearities = st.sampled_from(["linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"])


def _prop_law(rng, shape, dtype):
    return rng.standard_normal(shape)


#: Custom laws registered under random names ("prop." keeps them apart from other tests').
customs = st.text(min_size=0, max_size=12).map(lambda text: mi.custom(_prop_law, name="prop." + text))


@st.composite
def _ordered(draw, numbers=moderate):
    low, high = draw(numbers), draw(numbers)
    assume(float(low) != float(high))
    return (low, high) if float(low) < float(high) else (high, low)


@st.composite
def _trunc_normal(draw):
    mean, std, (a, b) = draw(moderate), draw(positive), draw(_ordered())
    low, high = (a - mean) / std, (b - mean) / std
    assume(float(low) < float(high))  # rounding can merge bounds much closer than the std
    return mi.trunc_normal(mean, std, a, b)


leaves = st.one_of(
    st.just(mi.zeros()),
    st.just(mi.ones()),
    finite.map(mi.constant),
    _ordered().map(lambda pair: mi.uniform(*pair)),
    st.builds(mi.normal, moderate, positive),
    st.builds(lambda m, s, bounds: mi.truncated_normal(m, s, *bounds), moderate, positive, _ordered()),
    _trunc_normal(),
    st.builds(mi.variance_scaling, positive, fan_modes, distributions),
    st.builds(mi.xavier_uniform, positive),
    st.builds(mi.xavier_normal, positive),
    st.builds(mi.kaiming_uniform, moderate, st.sampled_from(["fan_in", "fan_out"]), nonlinearities),
    st.builds(mi.kaiming_normal, moderate, st.sampled_from(["fan_in", "fan_out"]), nonlinearities),
    st.sampled_from(
        [
            mi.glorot_uniform(),
            mi.glorot_normal(),
            mi.he_uniform(),
            mi.he_normal(),
            mi.lecun_uniform(),
            mi.lecun_normal(),
            mi.eye(),
        ]
    ),
    st.builds(mi.orthogonal, positive),
    st.builds(mi.dirac, st.integers(min_value=1, max_value=2**48)),
    st.builds(mi.sparse, st.floats(min_value=0, max_value=1, exclude_max=True), positive),
    customs,
)


def _mixtures(children):
    @st.composite
    def build(draw):
        parts = draw(st.lists(children, min_size=1, max_size=4))
        counts = draw(st.lists(st.integers(0, 9), min_size=len(parts), max_size=len(parts)))
        counts[0] += 1  # at least one live component
        total = sum(counts)
        return mi.mixture([(count / total, part) for count, part in zip(counts, parts, strict=True)])

    return build()


specs = st.recursive(leaves, _mixtures, max_leaves=12)


@given(specs)
def test_every_valid_spec_round_trips(spec) -> None:
    assert mi.from_dict(spec.to_dict()) == spec
    assert mi.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    again = mi.parse(str(spec))
    assert again == spec and hash(again) == hash(spec)
    assert mi.parse(repr(spec)) == spec and repr(again) == repr(spec)


def _chain(depth: int) -> mi.Spec:
    spec = mi.normal(std=0.5)
    for _ in range(depth):
        spec = mi.mixture([(0.25, mi.zeros()), (0.75, spec)])
    return spec


def _chain_dict(depth: int) -> dict:
    data = {"kind": "normal", "std": 0.5}
    for _ in range(depth):
        data = {"kind": "mixture", "components": [{"weight": 1.0, "spec": data}]}
    return data


@given(st.integers(min_value=1, max_value=MAX_DEPTH))
def test_mixtures_nested_up_to_the_limit_round_trip(depth) -> None:
    spec = _chain(depth)
    assert mi.from_dict(spec.to_dict()) == spec
    assert mi.parse(str(spec)) == spec


@given(st.integers(min_value=MAX_DEPTH + 1, max_value=400))
def test_mixtures_nested_beyond_the_limit_are_refused_everywhere(depth) -> None:
    with pytest.raises(mi.SpecError, match="MAX_DEPTH"):
        mi.from_dict(_chain_dict(depth))
    text = "mixture([(1.0, " * depth + "zeros()" + ")])" * depth
    with pytest.raises(mi.SpecError):
        mi.parse(text)
    if depth < 100:  # built in Python: each level refuses once the one below is too deep
        with pytest.raises(mi.SpecError, match="MAX_DEPTH"):
            _chain(depth)


# --------------------------------------------------------------------------- invalid arguments

wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.complex_numbers(allow_nan=False, allow_infinity=False).filter(lambda z: z.imag != 0),
    st.just(object()),
    st.just(mi.normal()),
    st.just(np.array([1.0, 2.0])),
)
not_finite = st.sampled_from([math.nan, math.inf, -math.inf, np.float32("nan"), np.float64("-inf")])
huge_ints = st.one_of(st.integers(min_value=2**1024), st.integers(max_value=-(2**1024)))
bad_numbers = st.one_of(wrong_types, not_finite, huge_ints)
not_positive = st.one_of(
    bad_numbers, st.floats(max_value=0, allow_nan=False, allow_infinity=False), st.integers(max_value=0)
)
#: Finite floats whose square overflows: a gain that cannot become a variance scale.
unsquarable = st.floats(min_value=1.35e154, allow_infinity=False)


def bad_choice(allowed):
    return st.one_of(
        wrong_types.filter(lambda v: not isinstance(v, str)),
        st.text(max_size=20).filter(lambda s: s not in allowed),
    )


#: (constructor, parameter, bad values, the other arguments it needs)
BAD_ARGUMENTS = [
    ("constant", "value", bad_numbers, {}),
    ("uniform", "low", bad_numbers, {}),
    ("uniform", "high", st.one_of(bad_numbers, st.floats(max_value=0, allow_nan=False)), {}),
    ("normal", "mean", bad_numbers, {}),
    ("normal", "std", not_positive, {}),
    ("truncated_normal", "mean", bad_numbers, {}),
    ("truncated_normal", "std", not_positive, {}),
    ("truncated_normal", "low", st.one_of(bad_numbers, st.floats(min_value=2, allow_infinity=False)), {}),
    ("truncated_normal", "high", st.one_of(bad_numbers, st.floats(max_value=-2, allow_infinity=False)), {}),
    ("trunc_normal", "std", not_positive, {}),
    ("trunc_normal", "a", st.one_of(bad_numbers, st.floats(min_value=2, allow_infinity=False)), {}),
    ("trunc_normal", "b", st.one_of(bad_numbers, st.floats(max_value=-2, allow_infinity=False)), {}),
    ("variance_scaling", "scale", not_positive, {}),
    ("variance_scaling", "mode", bad_choice(("fan_in", "fan_out", "fan_avg")), {}),
    (
        "variance_scaling",
        "distribution",
        bad_choice(("truncated_normal", "untruncated_normal", "uniform")),
        {},
    ),
    ("xavier_uniform", "gain", st.one_of(not_positive, unsquarable), {}),
    ("xavier_normal", "gain", st.one_of(not_positive, unsquarable), {}),
    ("kaiming_uniform", "a", st.one_of(bad_numbers, unsquarable, unsquarable.map(lambda a: -a)), {}),
    ("kaiming_normal", "a", st.one_of(bad_numbers, unsquarable), {}),
    ("kaiming_uniform", "mode", bad_choice(("fan_in", "fan_out")), {}),
    (
        "kaiming_normal",
        "nonlinearity",
        bad_choice(
            (
                "linear",
                "conv1d",
                "conv2d",
                "conv3d",
                "conv_transpose1d",
                "conv_transpose2d",
                "conv_transpose3d",
                "sigmoid",
                "tanh",
                "relu",
                "leaky_relu",
                "selu",
            )
        ),
        {},
    ),
    ("orthogonal", "gain", not_positive, {}),
    (
        "dirac",
        "groups",
        st.one_of(wrong_types, st.floats(), st.integers(max_value=0), st.integers(min_value=2**48 + 1)),
        {},
    ),
    (
        "sparse",
        "sparsity",
        st.one_of(
            bad_numbers,
            st.floats(max_value=-1e-300, allow_nan=False),
            st.floats(min_value=1, allow_nan=False),
        ),
        {},
    ),
    ("sparse", "std", not_positive, {"sparsity": 0.1}),
]


@settings(max_examples=4 * settings.default.max_examples)
@given(st.data())
def test_every_bad_argument_is_a_spec_error_naming_it(data) -> None:
    name, param, values, others = data.draw(st.sampled_from(BAD_ARGUMENTS), label="case")
    bad = data.draw(values, label=param)
    arguments = {**others, param: bad}
    with pytest.raises(mi.SpecError) as info:
        mi.CONSTRUCTORS[name](**arguments)
    message = str(info.value)
    assert f"{param}=" in message and "must be" in message, message
    assert len(message) < 1000, message  # a long value is shortened, never echoed whole
    if name in (
        "uniform",
        "normal",
        "truncated_normal",
        "variance_scaling",
        "xavier_uniform",
        "xavier_normal",
        "kaiming_uniform",
        "kaiming_normal",
        "orthogonal",
        "dirac",
        "sparse",
    ):
        # the same value read from a dict: refused the same way
        with pytest.raises(mi.SpecError, match=f"{param}="):
            mi.from_dict({"kind": name, **arguments})
    try:
        literal = repr(bad)
    except ValueError:  # an int too long to print: text cannot carry it either
        return
    with pytest.raises(mi.SpecError):  # the same value as text: refused, whatever it reads as
        mi.parse(
            f"{name}({', '.join(f'{k}={v!r}' for k, v in others.items())}"
            f"{', ' if others else ''}{param}={literal})"
        )


bad_components = st.one_of(
    wrong_types.filter(lambda v: not isinstance(v, (list, dict, str, bytes))),
    st.just([]),
    st.lists(
        st.one_of(wrong_types, st.tuples(st.floats(), st.just(mi.zeros()))), min_size=1, max_size=3
    ).filter(
        lambda items: (
            not (
                all(isinstance(i, tuple) for i in items)
                and math.isclose(sum(w for w, _ in items), 1.0)
                and all(w >= 0 for w, _ in items)
            )
        )
    ),
    st.tuples(
        st.one_of(bad_numbers, st.floats(max_value=-1e-300, allow_nan=False), st.integers(max_value=-1)),
        st.just(mi.zeros()),
    ).map(lambda pair: [pair, (1.0, mi.ones())]),
    st.integers(min_value=MAX_NODES, max_value=MAX_NODES + 50).map(lambda n: [(1.0 / n, mi.zeros())] * n),
)


@given(bad_components)
def test_every_bad_mixture_is_a_spec_error(components) -> None:
    with pytest.raises(mi.SpecError, match=r"mixture: (components|weights)"):
        mi.mixture(components)


# --------------------------------------------------------------------------- any text, any dict

_SPEC_CHARACTERS = "()[],=-+.e0123456789'\" _abcimnorstuxz*"


@st.composite
def mutated_text(draw):
    text = str(draw(specs))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["delete", "insert", "repeat"]))
        if edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 5)) :]
        elif edit == "insert":
            text = text[:at] + draw(st.text(_SPEC_CHARACTERS, min_size=1, max_size=4)) + text[at:]
        else:
            text = text[:at] + text[at : at + 8] * draw(st.integers(2, 60)) + text[at:]
    return text


@given(st.one_of(st.text(max_size=200), st.text(_SPEC_CHARACTERS, max_size=200), mutated_text()))
def test_any_text_is_read_or_refused_with_a_spec_error(text) -> None:
    try:
        spec = mi.parse(text)
    except mi.SpecError as e:
        assert len(str(e)) < 2000
        return
    assert isinstance(spec, mi.Spec) and mi.parse(str(spec)) == spec


_KEYS = [
    "kind",
    "mean",
    "std",
    "low",
    "high",
    "value",
    "scale",
    "mode",
    "distribution",
    "gain",
    "a",
    "nonlinearity",
    "groups",
    "sparsity",
    "components",
    "weight",
    "spec",
    "name",
]
_KINDS = [
    "constant",
    "uniform",
    "normal",
    "truncated_normal",
    "variance_scaling",
    "xavier_uniform",
    "kaiming_normal",
    "he_normal",
    "orthogonal",
    "eye",
    "dirac",
    "sparse",
    "mixture",
    "custom",
    "os.system",
]
json_like = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(),
        st.integers(),
        huge_ints,
        st.text(max_size=10),
        st.sampled_from(_KINDS),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(_KEYS), children, max_size=5),
        st.fixed_dictionaries({"kind": st.sampled_from(_KINDS)}, optional=dict.fromkeys(_KEYS[1:], children)),
    ),
    max_leaves=20,
)


@given(json_like)
def test_any_dict_is_read_or_refused_with_a_spec_error(data) -> None:
    try:
        spec = mi.from_dict(data)
    except mi.SpecError:
        return
    assert isinstance(spec, mi.Spec) and mi.from_dict(spec.to_dict()) == spec


# --------------------------------------------------------------------------- draws and user laws

shapes = st.lists(st.integers(0, 4), max_size=4).map(tuple)
float_dtypes = st.sampled_from(["float16", "float32", "float64"])


@given(specs, shapes, float_dtypes, st.integers(0, 2**64))
def test_a_draw_is_finite_and_as_asked_or_refused(spec, shape, dtype, seed) -> None:
    try:
        x = spec.sample(shape, seed=seed, dtype=dtype, path="net.weight")
    except (mi.ShapeError, mi.SpecError) as e:
        assert "net.weight" in str(e) or "fans" in str(e) or "shape" in str(e), str(e)
        return
    assert x.shape == shape and x.dtype == np.dtype(dtype)
    assert np.isfinite(x).all()


results = st.one_of(
    hnp.arrays(
        st.sampled_from(
            ["float16", "float32", "float64", "int8", "int64", "uint16", "bool", "complex64", "U2", "O"]
        ),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    st.lists(st.one_of(st.floats(), st.lists(st.floats(), max_size=3)), max_size=4),
    wrong_types,
)


@given(results, shapes, float_dtypes)
def test_a_law_returns_its_own_finite_values_or_a_law_error(result, shape, dtype) -> None:
    spec = mi.custom(lambda rng, s, d: result, name="prop.liar")
    try:
        out = call_law(spec, np.random.default_rng(0), shape, dtype, path="head.weight")
    except mi.LawError as e:
        assert "custom law 'prop.liar' at 'head.weight'" in str(e), str(e)
        return
    assert out.shape == shape and out.dtype == np.dtype(dtype) and np.isfinite(out).all()
    np.testing.assert_array_equal(out, np.asarray(result).astype(dtype))


_RAISED = [
    ValueError("v"),
    RuntimeError("r"),
    KeyError("k"),
    ZeroDivisionError("z"),
    MemoryError(),
    RecursionError("deep"),
    OverflowError("o"),
    TypeError("t"),
    StopIteration(),
    mi.SpecError("inner"),
    AssertionError("a"),
    NotImplementedError(),
]


@given(st.sampled_from(_RAISED), st.one_of(st.none(), st.text(max_size=30)))
def test_a_law_that_raises_is_a_law_error_chaining_it(error, path) -> None:
    def law(rng, shape, dtype):
        raise error

    spec = mi.custom(law, name="prop.raises")
    with pytest.raises(mi.LawError) as info:
        call_law(spec, np.random.default_rng(0), (2, 2), "float32", path=path)
    assert info.value.__cause__ is error
    message = str(info.value)
    assert "custom law 'prop.raises'" in message and type(error).__name__ in message
    if path is not None:
        assert f"at {shown(path)}" in message
