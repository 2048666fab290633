"""rules.execute with a Writer: check everything, prepare user laws, then fill in one pass."""

from __future__ import annotations

import numpy as np
import pytest

import multiinit as mi
from multiinit.fans import LogicalView
from multiinit.rules import Draw, Param, execute, needs_prepare, portable_rng, portable_values


def params() -> list[Param]:
    return [
        Param("a.weight", LogicalView((8, 4)), "weight", order=0),
        Param("a.bias", LogicalView((8,)), "bias", fans=(4, 8), order=1),
        Param("b.weight", LogicalView((3, 8)), "weight", order=2),
        Param("b.bias", LogicalView((3,)), "bias", fans=(8, 3), order=3),
    ]


class Recorder:
    """A writer that records the calls it gets, and can refuse a path or fail a law."""

    def __init__(self, refuse: str | None = None, fail: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.refuse, self.fail = refuse, fail
        self.values: dict[str, np.ndarray] = {}

    def check(self, param: Param, spec: mi.Spec) -> None:
        self.calls.append(("check", param.path))
        if param.path == self.refuse:
            raise mi.ShapeError(f"{param.path!r} cannot be written")

    def prepare(self, param: Param, spec: mi.Spec, draw: Draw) -> np.ndarray:
        self.calls.append(("prepare", param.path))
        if param.path == self.fail:
            raise mi.SpecError("the law failed")
        return portable_values(param, spec, draw)

    def fill(self, param: Param, spec: mi.Spec, draw: Draw, prepared: object) -> None:
        self.calls.append(("fill", param.path))
        self.values[param.path] = prepared if prepared is not None else portable_values(param, spec, draw)


LAW = mi.custom(lambda rng, shape, dtype: rng.uniform(-1, 1, shape), name="tests.execute.law")


def test_check_then_prepare_then_fill() -> None:
    w = Recorder()
    execute(
        params(),
        {"a.weight": LAW, "weight": mi.normal(), "bias": mi.zeros()},
        seed=1,
        portable=True,
        writer=w,
    )
    kinds = [k for k, _ in w.calls]
    assert kinds == ["check"] * 4 + ["prepare"] + ["fill"] * 4
    assert [p for k, p in w.calls if k == "prepare"] == ["a.weight"]


@pytest.mark.parametrize("fault", ["refuse", "fail"])
def test_a_fault_found_before_any_fill(fault) -> None:
    w = Recorder(**{fault: "b.weight"})
    with pytest.raises(mi.MultiinitError):
        execute(params(), {"b.weight": LAW, "*": mi.normal()}, seed=1, portable=True, writer=w)
    assert not any(k == "fill" for k, _ in w.calls)


def test_draws_carry_the_stream_key() -> None:
    seen = []

    class Keys(Recorder):
        def fill(self, param, spec, draw, prepared):
            seen.append((param.path, draw.seed, draw.order, draw.portable))

    execute(params(), {"*": mi.normal()}, seed=7, portable=False, writer=Keys())
    assert seen == [
        ("a.weight", 7, 0, False),
        ("a.bias", 7, 1, False),
        ("b.weight", 7, 2, False),
        ("b.bias", 7, 3, False),
    ]
    assert Draw(7, 2, True).key == (7, 2)
    with pytest.raises(mi.RuleError, match="no seed"):
        _ = Draw(None, 2, False).key


def test_portable_values_are_the_reference_stream_of_seed_and_order() -> None:
    w = Recorder()
    execute(params(), {"weight": mi.he_normal(), "bias": mi.uniform(-1, 1)}, seed=3, portable=True, writer=w)
    assert np.array_equal(w.values["b.weight"], mi.he_normal().sample((3, 8), seed=(3, 2)))
    assert np.array_equal(w.values["a.bias"], mi.uniform(-1, 1).sample((8,), seed=(3, 1)))


def test_a_one_tile_parameter_draws_from_its_portable_rng() -> None:
    w = Recorder()
    execute(params(), {"weight": mi.he_normal(), "bias": mi.normal()}, seed=3, portable=True, writer=w)
    assert np.array_equal(w.values["b.weight"], mi.he_normal().sample((3, 8), seed=portable_rng(3, 2)))
    assert np.array_equal(w.values["b.bias"], mi.normal().sample((3,), seed=portable_rng(3, 3)))


def test_only_user_laws_need_preparing() -> None:
    assert needs_prepare(LAW) and needs_prepare(mi.mixture([(0.5, LAW), (0.5, mi.zeros())]))
    assert not needs_prepare(mi.mixture([(1.0, LAW), (0.0, mi.zeros())]).components[1][1])
    assert not any(needs_prepare(s) for s in (mi.normal(), mi.orthogonal(), mi.sparse(0.1), mi.eye()))
