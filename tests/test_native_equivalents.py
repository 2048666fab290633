"""Every native equivalent ``mi.explain`` names is run in its own framework and must draw the
spec's law (same checks and thresholds as the matrix). A claim of equivalence that is wrong
fails here, in that framework's env."""

from __future__ import annotations

import pytest

import multiinit as mi
from multiinit import stats
from multiinit.fans import LogicalView, from_logical_shape
from multiinit.registry import BACKENDS

from conftest import REQUESTED
from matrix import NATIVE, SHAPES, SPECS


def _named(backend: str, spec: mi.Spec, case: str) -> str | None:
    shape = from_logical_shape(SHAPES[case], BACKENDS[backend].layout)
    try:
        return mi.explain(spec, shape, backend).native[backend]
    except mi.ShapeError:  # the reference refuses the shape; the matrix checks the backend does too
        return None


CASES = [
    (backend, spec, case, code)
    for backend in REQUESTED
    if backend in NATIVE
    for spec in SPECS
    for case in SHAPES
    if (code := _named(backend, spec, case)) is not None
]


@pytest.mark.parametrize("backend, spec, case, code", CASES, ids=[f"{b}-{s!r}-{c}" for b, s, c, _ in CASES])
def test_the_named_native_call_draws_the_spec_law(backend, spec, case, code) -> None:
    layout = BACKENDS[backend].layout
    shape = from_logical_shape(SHAPES[case], layout)
    native = NATIVE[backend](code, shape, 3)
    verdict = stats.check(LogicalView.of(shape, layout).to_logical(native), spec, reference_seed=12345)
    assert verdict.passed, f"{backend}: {code} is not {spec!r} on {shape}: {verdict}"


@pytest.mark.parametrize("backend", [b for b in REQUESTED if b in NATIVE])
def test_most_specs_have_a_checked_native_call(backend) -> None:
    named = {s for b, s, _, _ in CASES if b == backend}
    assert len(named) >= 10, f"{backend}: only {sorted(map(repr, named))}"
