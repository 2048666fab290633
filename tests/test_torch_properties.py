"""Property-based tests of ``mi.apply`` on torch models (issue 15.4): random small models,
random rule sets and exactly one injected fault -- a rule that selects nothing, a spec that
does not fit its parameter, a user law that raises or lies (wrong shape, NaN, inf, strings),
a parameter that cannot be written (inference tensor, expanded storage, integer dtype, meta
without ``device=``, a foreign tensor subclass) -- raise a ``MultiinitError`` and leave every
parameter and buffer bit-identical. Without the fault the same rules succeed.

Profiles: ``HYPOTHESIS_PROFILE=ci`` (the default: derandomized, 200 examples, no deadline)
or ``long`` (fresh random examples, many more).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import multiinit as mi
import multiinit.torch as mit

# The suite's profiles live in tests/conftest.py ("ci": derandomized, 200 examples; "long").
# Where the loaded profile is not derandomized and none was asked for, this file loads its own
# copy of "ci", so the property tests are never random in CI.
if not settings.default.derandomize and os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
    settings.register_profile(
        "multiinit-ci", derandomize=True, database=None, max_examples=200, deadline=None, print_blob=False
    )
    settings.load_profile("multiinit-ci")


# --------------------------------------------------------------------------- models


class _Sub(torch.Tensor):
    pass


def _layer(kind: str, a: int, b: int, bias: bool) -> nn.Module:
    if kind == "linear":
        return nn.Linear(a, b, bias=bias)
    if kind == "conv1d":
        return nn.Conv1d(a, b, 3, bias=bias)
    if kind == "conv2d":
        return nn.Conv2d(a, 2 * b, 3, groups=2 if a % 2 == 0 else 1, bias=bias)
    if kind == "convt":
        return nn.ConvTranspose1d(2 * a, 2 * b, 3, groups=2, bias=bias)
    if kind == "batchnorm":
        return nn.BatchNorm1d(a)
    if kind == "layernorm":
        return nn.LayerNorm(a)
    if kind == "embedding":
        return nn.Embedding(a + 3, b)
    raise AssertionError(kind)


_KINDS = ("linear", "conv1d", "conv2d", "convt", "batchnorm", "layernorm", "embedding")

layers = st.lists(
    st.tuples(st.sampled_from(_KINDS), st.integers(1, 9), st.integers(1, 9), st.booleans()),
    min_size=1,
    max_size=5,
)


class Tied(nn.Module):
    def __init__(self, body: nn.Module, n: int) -> None:
        super().__init__()
        self.body = body
        self.embed = nn.Embedding(n, 4)
        self.head = nn.Linear(4, n, bias=False)
        self.head.weight = self.embed.weight


def _model(spec: list, tied: bool) -> nn.Module:
    torch.manual_seed(0)
    body = nn.Sequential(*(_layer(*s) for s in spec))
    model = Tied(body, 6) if tied else body
    # Buffers away from their defaults, so a reset would show.
    with torch.no_grad():
        for _, buf in model.named_buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
            else:
                buf.fill_(7)
    return model


# --------------------------------------------------------------------------- specs that fit


def _fitting(param) -> list:
    """Specs that can fill ``param`` (a ``rules.Param``)."""
    specs = [
        mi.zeros(),
        mi.constant(0.3),
        mi.uniform(-1, 1),
        mi.normal(std=0.5),
        mi.truncated_normal(),
        mi.mixture([(0.5, mi.zeros()), (0.5, mi.normal())]),
    ]
    shape = param.logical_shape
    if len(shape) >= 2 or param.fans is not None:
        specs += [
            mi.he_normal(),
            mi.xavier_uniform(),
            mi.variance_scaling(1 / 3, "fan_in", "uniform"),
            mi.kaiming_normal(),
        ]
    if len(shape) >= 2:
        specs.append(mi.orthogonal())
    if len(shape) == 2:
        specs += [mi.eye(), mi.sparse(0.5)]
    if len(shape) in (3, 4, 5):
        specs.append(mi.dirac())
    specs.append(mi.custom(_good, name="t.props.good"))
    return specs


def _misfit(param):
    shape = param.logical_shape
    if len(shape) != 2:
        return mi.eye()
    return mi.dirac()


def _good(rng, shape, dtype):
    return rng.uniform(-1, 1, shape).astype(dtype)


def _raises(rng, shape, dtype):
    raise ZeroDivisionError("the law divided by zero")


def _wrong_shape(rng, shape, dtype):
    return np.zeros((*shape, 2), dtype=dtype)


def _nan(rng, shape, dtype):
    out = rng.uniform(-1, 1, shape).astype(dtype)
    out.reshape(-1)[-1] = np.nan
    return out


def _inf(rng, shape, dtype):
    return np.full(shape, np.inf, dtype=dtype)


def _strings(rng, shape, dtype):
    return np.full(shape, "1.0")


_LIARS = {"raises": _raises, "wrong shape": _wrong_shape, "nan": _nan, "inf": _inf, "strings": _strings}


# --------------------------------------------------------------------------- faults


def _swap(model: nn.Module, param, make) -> None:
    """Replace ``param`` (every path of it) with ``make(old)``."""
    old = param.layer._parameters[param.role]
    new = make(old)
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is old:
                module._parameters[name] = new


def _inference(old):
    with torch.inference_mode():
        return nn.Parameter(old.detach().clone())


def _expanded(old):
    return nn.Parameter(old.detach().reshape(-1)[:1].clone().expand(old.shape)) if old.numel() > 1 else None


def _integer(old):
    return nn.Parameter(torch.ones(old.shape, dtype=torch.int64), requires_grad=False)


def _meta(old):
    return nn.Parameter(torch.empty(old.shape, device="meta"))


def _subclass(old):
    return nn.Parameter(_Sub(old.detach().clone()))


_UNWRITABLE = {
    "inference": _inference,
    "expanded": _expanded,
    "integer": _integer,
    "meta": _meta,
    "subclass": _subclass,
}
FAULTS = ("no match", "misfit", *(f"law {k}" for k in _LIARS), *(f"param {k}" for k in _UNWRITABLE))


def _snapshot(model: nn.Module) -> list:
    return [
        (name, id(t), t.dtype, t.device, t.detach().clone() if not t.is_meta else None)
        for name, t in (
            *model.named_parameters(remove_duplicate=False),
            *model.named_buffers(remove_duplicate=False),
        )
    ]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x[:4] == y[:4] and (x[4] is None) == (y[4] is None) and (x[4] is None or torch.equal(x[4], y[4]))
        for x, y in zip(a, b, strict=True)
    )


@st.composite
def cases(draw):
    model = _model(draw(layers), draw(st.booleans()))
    params = mit.params_of(model)
    chosen = draw(
        st.lists(st.sampled_from(range(len(params))), min_size=1, max_size=len(params), unique=True)
    )
    rules = []
    for i in chosen:
        param = params[i]
        spec = draw(st.sampled_from(_fitting(param)))
        selector = draw(st.sampled_from(param.paths))
        rules.append((selector, spec))
    # A broad rule after the specific ones (first match wins); optional, as it may select nothing.
    if draw(st.booleans()):
        broad = draw(
            st.sampled_from(
                [
                    mi.select(role="bias", optional=True),
                    mi.select(kind="norm", optional=True),
                    mi.select(path="*.bias", optional=True),
                ]
            )
        )
        rules.append((broad, mi.zeros()))
    fault = draw(st.sampled_from(FAULTS))
    target = params[draw(st.sampled_from(chosen))]
    seed = draw(st.integers(0, 2**31))
    portable = draw(st.booleans())
    return model, rules, fault, target, seed, portable


def _inject(model, rules, fault, target):
    """The rules and model with ``fault`` in them, and the text the error must hold."""
    rules = list(rules)
    if fault == "no match":
        rules.insert(len(rules) // 2, ("nowhere.*", mi.zeros()))
        return rules, "nowhere"
    if fault == "misfit":
        rules.insert(0, (target.path, _misfit(target)))
        return rules, target.path
    if fault.startswith("law "):
        name = fault[4:]
        law = mi.custom(_LIARS[name], name=f"t.props.{name.replace(' ', '_')}")
        rules.insert(0, (target.path, law))
        return rules, f"t.props.{name.replace(' ', '_')}"
    make = _UNWRITABLE[fault[6:]]
    if make(target.handle) is None:  # a one-element parameter cannot be expanded: break another way
        make = _inference
    _swap(model, target, make)
    rules.insert(0, (target.path, mi.normal()))  # a random law: refused on an integer parameter too
    return rules, target.path


@given(cases())
def test_one_fault_leaves_every_parameter_and_buffer_bit_identical(case) -> None:
    model, rules, fault, target, seed, portable = case
    rules, text = _inject(model, rules, fault, target)
    before = _snapshot(model)
    with pytest.raises(mi.MultiinitError) as info:
        mi.apply(model, rules, seed=seed, portable=portable)
    assert text in str(info.value), f"{fault}: {info.value}"
    assert _same(_snapshot(model), before), fault


@settings(max_examples=max(20, settings.default.max_examples // 4))
@given(cases())
def test_without_the_fault_the_same_rules_succeed(case) -> None:
    model, rules, _, _, seed, portable = case
    first = mi.apply(model, rules, seed=seed, portable=portable)
    values = [p.detach().clone() for p in first.parameters()]
    again = mi.apply(model, rules, seed=seed, portable=portable)  # the same seed, the same values
    assert all(torch.equal(a, b.detach()) for a, b in zip(values, again.parameters(), strict=True))
