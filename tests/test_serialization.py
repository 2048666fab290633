"""to_dict / from_dict / parse / str round-trip every spec; nothing is ever evaluated."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import multiinit as mi

from test_spec import every_spec


@pytest.mark.parametrize("spec", every_spec(), ids=repr)
def test_dict_round_trip_through_json(spec: mi.Spec) -> None:
    data = json.loads(json.dumps(spec.to_dict()))
    assert mi.from_dict(data) == spec


@pytest.mark.parametrize("spec", every_spec(), ids=repr)
def test_text_round_trip(spec: mi.Spec) -> None:
    assert mi.parse(str(spec)) == spec
    assert str(mi.parse(str(spec))) == str(spec)


def test_nested_mixture_dict_is_readable() -> None:
    spec = mi.mixture([(0.5, mi.mixture([(0.5, mi.ones()), (0.5, mi.he_normal())])), (0.5, mi.eye())])
    assert spec.to_dict() == {
        "kind": "mixture",
        "components": [
            {
                "weight": 0.5,
                "spec": {
                    "kind": "mixture",
                    "components": [
                        {"weight": 0.5, "spec": {"kind": "constant", "value": 1.0}},
                        {"weight": 0.5, "spec": {"kind": "he_normal"}},
                    ],
                },
            },
            {"weight": 0.5, "spec": {"kind": "eye"}},
        ],
    }


def test_parse_accepts_positional_keyword_negative_and_prefixed_calls() -> None:
    assert mi.parse("uniform(-10, -5)") == mi.uniform(-10, -5)
    assert mi.parse("  normal(mean=+1, std=0.5) ") == mi.normal(1, 0.5)
    assert mi.parse("mi.xavier_uniform(2)") == mi.xavier_uniform(2)
    assert mi.parse("multiinit.dirac(groups=2)") == mi.dirac(2)
    assert mi.parse("kaiming_normal(0.0, 'fan_out', 'relu')") == mi.kaiming_normal(0, "fan_out", "relu")
    assert mi.parse("mixture(components=[[0.5, zeros()], [0.5, ones()]])") == mi.mixture(
        [(0.5, mi.zeros()), (0.5, mi.ones())]
    )


def test_custom_travels_by_registered_name_only() -> None:
    def tests_law(rng, shape, dtype):
        return np.ones(shape)

    spec = mi.custom(tests_law)
    assert spec.to_dict() == {"kind": "custom", "name": "tests_law"}
    assert mi.from_dict({"kind": "custom", "name": "tests_law"}).fn is tests_law
    with pytest.raises(
        mi.SpecError, match=re.escape("name='never.registered' is not registered in this process")
    ):
        mi.from_dict({"kind": "custom", "name": "never.registered"})
    with pytest.raises(mi.SpecError, match="not registered"):
        mi.parse("custom(name='never.registered')")
    with pytest.raises(mi.SpecError, match="functions are never parsed"):
        mi.parse("custom(tests_law)")


MALFORMED_DICTS = [
    ({"kind": "gaussian", "std": 1.0}, "kind='gaussian'"),
    ({"std": 1.0}, "kind=None"),
    ({"kind": "normal", "sigma": 1.0}, "keys=['sigma']"),
    ({"kind": "normal", "std": -1.0}, "std=-1.0"),
    ({"kind": "normal", "std": True}, "std=True"),
    ({"kind": "sparse"}, "keys=[]"),
    ({"kind": "mixture", "components": "zeros"}, "components='zeros'"),
    ({"kind": "mixture", "components": [{"weight": 1.0}]}, "components[0]="),
    ({"kind": "mixture", "components": [{"weight": 1.0, "spec": {"kind": "nope"}}]}, "kind='nope'"),
    ({"kind": "custom", "name": "x", "fn": "os.system"}, "keys=['fn']"),
    ({"kind": "__import__"}, "kind='__import__'"),
    ("normal()", "data='normal()'"),
    (None, "data=None"),
]


@pytest.mark.parametrize("data, named", MALFORMED_DICTS, ids=[m[1] for m in MALFORMED_DICTS])
def test_malformed_dicts_raise_spec_error(data, named) -> None:
    with pytest.raises(mi.SpecError) as info:
        mi.from_dict(data)
    assert named in str(info.value)


MALFORMED_TEXT = [
    ("__import__('os').system('echo pwned')", "spec="),
    ("normal(std=__import__('os'))", "is not allowed"),
    ("normal(std=1e400 - 1e400)", "is not allowed"),
    ("(lambda: 0)()", "spec="),
    ("normal(std=0.1).__class__", "single spec call"),
    ("normal(**{'std': 1})", "**kwargs"),
    ("normal(std=x)", "'x' is not allowed"),
    ("normal(", "not a spec call"),
    ("gaussian(1)", "spec='gaussian'"),
    ("normal(sigma=1)", "arguments it does not take"),
    ("normal(0, 1, 2)", "arguments it does not take"),
    ("normal(std=-1)", "std=-1"),
    ("os.normal()", "spec='os.normal'"),
    ("", "not a spec call"),
]


@pytest.mark.parametrize("text, named", MALFORMED_TEXT, ids=[m[0] for m in MALFORMED_TEXT])
def test_parse_refuses_anything_but_spec_calls(text, named) -> None:
    with pytest.raises(mi.SpecError) as info:
        mi.parse(text)
    assert named in str(info.value)


def test_parse_needs_text() -> None:
    with pytest.raises(mi.SpecError, match="text=b'zeros\\(\\)'"):
        mi.parse(b"zeros()")
