"""Conformance of ``from multiinit import torch as init`` with ``torch.nn.init``, checked
against torch itself, name by name, in the style of array-api-compat's tests.

Every public name of ``torch.nn.init`` (its ``__all__``, deprecated aliases included) and every
private helper it defines is walked, and for each one aspect at a time is compared:

``name``       the drop-in has it;
``signature``  ``inspect.signature`` equal, annotations and defaults included;
``law``        two-sample KS of the drop-in's draw against torch's own draw (independent
               generators) on dense and conv shapes, in several dtypes and memory layouts, and
               the same support (no value outside where torch's has none, and vice versa);
``dtype``      the same dtypes filled, and where torch refuses one, the same exception type;
``error``      on torch's own bad inputs (one fault each), an exception of the type torch
               raises (which must also be a ``MultiinitError``), and no error where torch has
               none;
``warning``    the same warnings (category and message) pointing at the same line;
``numbers``    with the same generator seed, equal tensors, and the generator left in the
               same state (what a next draw gives).

The section "torch.nn.init" of ``docs/known-differences.md`` is the one list of deliberate
differences. The test reads it: a (name, aspect) pair in the table *must* differ (a stale row
fails), and any pair not in it must not.

Thresholds: each KS test is at ALPHA = 1e-6 (``multiinit.stats``) on 18,432 to 32,768 values
per side, which detects a 2% error in a scale or a shifted bound; with a few hundred KS tests
and fixed seeds, the chance that a conforming drop-in fails one is below 1e-3 even if the
seeds were random.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch.nn import init as torch_init

import multiinit as mi
import multiinit.torch as mit
from multiinit import stats

# --------------------------------------------------------------------------- the table

TABLE = Path(__file__).resolve().parent.parent / "docs" / "known-differences.md"
ASPECTS = ("name", "signature", "law", "dtype", "error", "warning", "numbers")


def _read_table(section: str) -> dict[tuple[str, str], str]:
    """{(name, aspect): difference} from the Markdown table under ``## section``; a name
    cell may list several backticked names."""
    text = TABLE.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section '## {section}' in {TABLE}"
    rows: dict[tuple[str, str], str] = {}
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("name", "") or set(cells[0]) <= set("-: "):
            continue
        names, aspect, difference, why = cells
        assert aspect in ASPECTS, f"unknown aspect {aspect!r} in {line!r}"
        assert difference and why, f"a row needs its difference and its reason: {line!r}"
        for name in re.findall(r"`([^`]+)`", names):
            rows[(name, aspect)] = difference
    return rows


KNOWN = _read_table("torch.nn.init")

PUBLIC = list(torch_init.__all__)
DEPRECATED = [n for n in PUBLIC if not n.endswith("_") and n != "calculate_gain"]
PRIVATE = sorted(
    n
    for n, f in vars(torch_init).items()
    if n.startswith("_")
    and not n.startswith("__")
    and inspect.isfunction(f)
    and f.__module__ == torch_init.__name__
)
NAMES = PUBLIC + PRIVATE


def _conforms(name: str, aspect: str, differences: list[str]) -> None:
    """The single rule: ``differences`` is non-empty exactly when the table lists the pair."""
    if (name, aspect) in KNOWN:
        assert differences, (
            f"docs/known-differences.md lists {name} / {aspect} ({KNOWN[(name, aspect)]!r}) but "
            "multiinit.torch no longer differs from torch.nn.init there: remove the row"
        )
    else:
        assert not differences, (
            f"multiinit.torch.{name} differs from torch.nn.init.{name} ({aspect}) and "
            "docs/known-differences.md does not list it:\n  " + "\n  ".join(differences)
        )


def test_the_table_names_only_real_names_and_aspects() -> None:
    assert KNOWN, "the torch.nn.init table is empty"
    for name, _ in KNOWN:
        assert name in NAMES, f"docs/known-differences.md names {name!r}, not a name of torch.nn.init"


# --------------------------------------------------------------------------- how to call


def _caller(module: Any, name: str) -> Callable[..., Any]:
    """``name`` of ``module`` as a callable; a deprecated alias with its FutureWarning muted
    (the ``warning`` aspect checks that warning)."""
    function = getattr(module, name)
    if name not in DEPRECATED:
        return function

    def quiet(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return function(*args, **kwargs)

    return quiet


def _underscored(name: str) -> str:
    """The function a deprecated alias or a private ``_no_grad_*`` helper stands for."""
    if name in DEPRECATED:
        return name + "_"
    return {
        "_no_grad_uniform_": "uniform_",
        "_no_grad_normal_": "normal_",
        "_no_grad_trunc_normal_": "trunc_normal_",
        "_no_grad_fill_": "constant_",
        "_no_grad_zero_": "zeros_",
    }.get(name, name)


RANDOM = {
    "uniform_",
    "normal_",
    "trunc_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
}

#: Arguments after the tensor, per function: the first is the one the dtype checks use.
ARGS: dict[str, list[tuple[tuple, dict]]] = {
    "uniform_": [
        ((), {}),
        ((-0.5, 0.25), {}),
        ((True, 2), {}),
        ((torch.tensor(0.5), 2.0), {}),
        ((0.3, 0.3), {}),
    ],
    "normal_": [((), {}), ((0.5, 0.01), {}), ((3.0, 0.0), {}), ((np.float32(1.0), 2), {})],
    "trunc_normal_": [
        ((), {}),
        ((0.5, 0.3, 0.4, 2.0), {}),
        ((0.0, 0.5, 1.0, 3.0), {}),
        ((0.0, 0.02), {}),
        ((0.0, 1.0, -0.1, 0.1), {}),
        ((0.0, 1.0, 0.0, math.inf), {}),
        ((1.0, 1.0, 1.0, 1.0), {}),
    ],
    "constant_": [
        ((0.3,), {}),
        ((7,), {}),
        ((True,), {}),
        ((2.7,), {}),
        ((torch.tensor(2.0),), {}),
        ((-0.0,), {}),
    ],
    "ones_": [((), {})],
    "zeros_": [((), {})],
    "eye_": [((), {})],
    "dirac_": [((), {}), ((2,), {}), ((True,), {})],
    "xavier_uniform_": [((), {}), ((), {"gain": math.sqrt(2)}), ((0.0,), {}), ((True,), {})],
    "xavier_normal_": [((), {}), ((2.0,), {}), ((0.0,), {})],
    "kaiming_uniform_": [
        ((), {}),
        ((), {"a": math.sqrt(5)}),
        ((), {"mode": "FAN_OUT"}),
        ((None,), {}),
        ((0, "fan_out", "relu"), {}),
        (("x", "fan_in", "relu"), {}),
    ],
    "kaiming_normal_": [
        ((), {}),
        ((), {"mode": "fan_out", "nonlinearity": "relu"}),
        ((-0.2,), {}),
        ((0, "fan_in", "selu"), {}),
    ],
    "orthogonal_": [((), {}), ((2.0,), {}), ((-2.0,), {}), ((0,), {})],
    "sparse_": [((0.3,), {}), ((0.3,), {"std": 0.02}), ((1.5,), {}), ((0.1, 0.0), {})],
}
ARGS["_no_grad_uniform_"] = [((0.0, 1.0), {}), ((-0.5, 0.25), {})]
ARGS["_no_grad_normal_"] = [((0.0, 1.0), {}), ((0.5, 0.01), {})]
ARGS["_no_grad_trunc_normal_"] = [((0.0, 1.0, -2.0, 2.0), {}), ((0.5, 0.3, 0.4, 2.0), {})]
ARGS["_no_grad_fill_"] = [((0.3,), {}), ((7,), {})]
ARGS["_no_grad_zero_"] = [((), {})]
for _alias in DEPRECATED:
    ARGS[_alias] = ARGS[_alias + "_"]

FILLERS = [n for n in NAMES if n in ARGS]
TAKES_GENERATOR = {
    n
    for n in FILLERS
    if "generator" in inspect.signature(getattr(torch_init, n)).parameters or _underscored(n) in RANDOM
}


def _shapes(name: str) -> list[tuple[int, ...]]:
    base = _underscored(name)
    if base == "dirac_":
        return [(8, 4, 3, 3), (6, 3, 5), (4, 2, 3, 3, 3)]
    if base in ("eye_", "sparse_"):
        return [(256, 128), (100, 300)]
    return [(256, 128), (64, 32, 3, 3)]


def _layouts(shape: tuple[int, ...]) -> list[str]:
    return ["contiguous", "transposed"] + (["channels_last"] if len(shape) == 4 else [])


def _tensor(shape: tuple[int, ...], dtype: torch.dtype, layout: str) -> torch.Tensor:
    if layout == "transposed":  # a non-contiguous view of the same logical shape
        return torch.zeros(tuple(reversed(shape[:2])) + shape[2:], dtype=dtype).transpose(0, 1)
    if layout == "channels_last":
        return torch.zeros(shape, dtype=dtype).to(memory_format=torch.channels_last)
    return torch.zeros(shape, dtype=dtype)


def _call(
    module: Any, name: str, tensor: torch.Tensor, args: tuple, kwargs: dict, seed: int | None
) -> torch.Generator | None:
    generator = None
    if seed is not None and name in TAKES_GENERATOR:
        generator = torch.Generator().manual_seed(seed)
        kwargs = {**kwargs, "generator": generator}
    out = _caller(module, name)(tensor, *args, **kwargs)
    assert out is tensor
    return generator


def _outcome(function: Callable[[], Any]) -> BaseException | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            function()
    except Exception as e:  # noqa: BLE001 - the point is to compare what each raises
        return e
    return None


# --------------------------------------------------------------------------- name, signature


@pytest.mark.parametrize("name", NAMES)
def test_name(name) -> None:
    _conforms(name, "name", [] if hasattr(mit, name) else ["multiinit.torch has no such name"])


@pytest.mark.parametrize("name", NAMES)
def test_signature(name) -> None:
    if not hasattr(mit, name):
        assert (name, "name") in KNOWN  # absent on purpose: test_name holds it to the table
        return
    theirs, ours = inspect.signature(getattr(torch_init, name)), inspect.signature(getattr(mit, name))
    _conforms(name, "signature", [] if ours == theirs else [f"{ours} != torch's {theirs}"])


# --------------------------------------------------------------------------- law

LAW_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.complex64]


def _parts(x: torch.Tensor) -> list[np.ndarray]:
    x = x.detach()
    if x.is_complex():
        return [x.real.double().numpy().ravel(), x.imag.double().numpy().ravel()]
    return [x.double().numpy().ravel()]


def _law_differences(name: str) -> list[str]:
    differences = []
    # Every argument set on every shape and dtype; the memory layouts with the first set (a
    # deprecated alias is its function: the first set only).
    cases = ARGS[name][:1] if name in DEPRECATED else ARGS[name]
    for i, (args, kwargs) in enumerate(cases):
        for shape in _shapes(name):
            for dtype in LAW_DTYPES:
                for layout in _layouts(shape) if i == 0 else ["contiguous"]:
                    where = f"{name}(<{dtype} {shape} {layout}>, *{args}, **{kwargs})"
                    theirs = _tensor(shape, dtype, layout)
                    if _outcome(lambda: _call(torch_init, name, theirs, args, kwargs, seed=2)) is not None:
                        continue  # torch refuses the dtype: the dtype aspect
                    ours = _tensor(shape, dtype, layout)
                    _call(mit, name, ours, args, kwargs, seed=1)
                    for a, b in zip(_parts(ours), _parts(theirs), strict=True):
                        check = stats.check_same(a, b)
                        if not check.passed:
                            differences.append(f"{where}: {check}")
                    support = _support(name, args, kwargs)
                    if support is not None:
                        lo, hi = support
                        for label, x in (("ours", ours), ("torch's", theirs)):
                            values = np.concatenate(_parts(x))
                            if values.min() < lo or values.max() > hi:
                                differences.append(
                                    f"{where}: {label} values leave [{lo}, {hi}]: "
                                    f"{values.min()!r}..{values.max()!r}"
                                )
    return differences


def _support(name: str, args: tuple, kwargs: dict) -> tuple[float, float] | None:
    """The closed support a truncated normal promises (absolute bounds), else None."""
    if _underscored(name) != "trunc_normal_":
        return None
    bound = inspect.signature(torch_init.trunc_normal_).bind(None, *args, **kwargs)
    bound.apply_defaults()
    return bound.arguments["a"], bound.arguments["b"]


@pytest.mark.parametrize("name", [n for n in FILLERS if _underscored(n) in RANDOM])
def test_law(name) -> None:
    _conforms(name, "law", _law_differences(name))


# --------------------------------------------------------------------------- dtype

ALL_DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex32,
    torch.complex64,
    torch.complex128,
]


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "ComplexHalf support is experimental"
        return torch.zeros(shape, dtype=dtype)


def _compare_outcomes(where: str, theirs: BaseException | None, ours: BaseException | None) -> list[str]:
    if theirs is None and ours is None:
        return []
    if theirs is None:
        return [f"{where}: torch fills, multiinit raises {type(ours).__name__}: {ours}"]
    if ours is None:
        return [f"{where}: torch raises {type(theirs).__name__}, multiinit fills"]
    if not isinstance(ours, type(theirs)):
        return [f"{where}: torch raises {type(theirs).__name__}, multiinit {type(ours).__name__}: {ours}"]
    if not isinstance(ours, mi.MultiinitError) and type(ours).__module__.startswith("multiinit"):
        return [f"{where}: {type(ours).__name__} is not a MultiinitError"]
    return []


@pytest.mark.parametrize("name", FILLERS)
def test_dtype(name) -> None:
    args, kwargs = ARGS[name][0]
    shape = _shapes(name)[0]
    differences = []
    for dtype in ALL_DTYPES:
        theirs = _outcome(lambda: _caller(torch_init, name)(_empty(shape, dtype), *args, **kwargs))
        ours = _outcome(lambda: _caller(mit, name)(_empty(shape, dtype), *args, **kwargs))
        differences += _compare_outcomes(f"{name} on {dtype}", theirs, ours)
    _conforms(name, "dtype", differences)


# --------------------------------------------------------------------------- error

inf, nan = math.inf, math.nan


class _NotATensor:
    shape = (3, 3)


#: torch's own bad inputs, one fault each: (args, kwargs, shape) after the tensor; shape None
#: means "not a tensor at all", "meta" a meta tensor.
BAD: dict[str, list[tuple[tuple, dict, Any]]] = {
    "uniform_": [
        ((1.0, 0.0), {}, (3, 3)),
        ((-inf, 0.0), {}, (3, 3)),
        ((0.0, inf), {}, (3, 3)),
        ((nan, 1.0), {}, (3, 3)),
        (("a", 1.0), {}, (3, 3)),
        ((None, 1.0), {}, (3, 3)),
        ((), {"generator": 0}, (3, 3)),
        ((), {}, None),
    ],
    "normal_": [
        ((0.0, -1.0), {}, (3, 3)),
        ((0.0, nan), {}, (3, 3)),
        (("x", 1.0), {}, (3, 3)),
        ((1 + 2j, 1.0), {}, (3, 3)),
        ((), {"generator": "x"}, (3, 3)),
        ((), {}, None),
        ((inf, 1.0), {}, (3, 3)),
        ((0.0, inf), {}, (3, 3)),
        ((nan, 1.0), {}, (3, 3)),
    ],
    "trunc_normal_": [
        ((0.0, 1.0, 2.0, -2.0), {}, (3, 3)),
        ((0.0, 0.0), {}, (3, 3)),
        ((0.0, 1.0, nan, 2.0), {}, (3, 3)),
        (("x",), {}, (3, 3)),
        ((0.0, "x"), {}, (3, 3)),
        ((0.0, 1.0, "x"), {}, (3, 3)),
        ((None,), {}, (3, 3)),
        ((0.0, -1.0), {}, (3, 3)),
        ((inf,), {}, (3, 3)),
        ((0.0, -1.0), {}, "meta"),
        ((), {}, None),
    ],
    "constant_": [
        (("x",), {}, (3, 3)),
        ((None,), {}, (3, 3)),
        ((2**70,), {}, (3, 3)),
        ((1 + 2j,), {}, (3, 3)),
        ((nan,), {}, (3, 3)),
        ((-inf,), {}, (3, 3)),
        ((1.0,), {}, None),
    ],
    "ones_": [((), {}, None)],
    "zeros_": [((), {}, None)],
    "eye_": [((), {}, (2, 3, 4)), ((), {}, (5,)), ((), {}, None)],
    "dirac_": [
        ((), {}, (3, 3)),
        ((), {}, (1, 1, 1, 1, 1, 1)),
        ((2,), {}, (3, 3, 3)),
        ((0,), {}, (4, 4, 3)),
        (("x",), {}, (4, 4, 3)),
        ((None,), {}, (4, 4, 3)),
        ((1.5,), {}, (4, 4, 3)),
        ((-1,), {}, (4, 4, 3)),
        ((), {}, None),
    ],
    "xavier_uniform_": [
        ((), {}, (5,)),
        ((), {}, ()),
        ((-1.0,), {}, (3, 3)),
        ((inf,), {}, (3, 3)),
        ((nan,), {}, (3, 3)),
        (("x",), {}, (3, 3)),
        ((None,), {}, (3, 3)),
        ((), {}, (0, 0)),
        ((), {}, None),
    ],
    "xavier_normal_": [
        ((), {}, (5,)),
        ((-1.0,), {}, (3, 3)),
        ((nan,), {}, (3, 3)),
        ((inf,), {}, (3, 3)),
        (("x",), {}, (3, 3)),
        ((), {}, (0, 0)),
        ((), {}, None),
    ],
    "kaiming_uniform_": [
        (("x",), {}, (3, 3)),
        ((True,), {}, (3, 3)),
        ((0, "fan_avg"), {}, (3, 3)),
        ((0, "fan_in", "gelu"), {}, (3, 3)),
        ((0, 3), {}, (3, 3)),
        ((0, None), {}, (3, 3)),
        ((0, "fan_in", None), {}, (3, 3)),
        ((np.float32(0.1),), {}, (3, 3)),
        ((nan,), {}, (3, 3)),
        ((inf,), {}, (3, 3)),
        ((), {}, (5,)),
        ((), {}, None),
    ],
    "kaiming_normal_": [
        (("x",), {}, (3, 3)),
        ((0, "fan_avg"), {}, (3, 3)),
        ((0, 3), {}, (3, 3)),
        ((0, "fan_in", 3), {}, (3, 3)),
        ((nan,), {}, (3, 3)),
        ((-inf,), {}, (3, 3)),
        ((), {}, (5,)),
        ((), {}, None),
    ],
    "orthogonal_": [
        ((), {}, (5,)),
        (("x",), {}, (3, 3)),
        ((None,), {}, (3, 3)),
        ((inf,), {}, (3, 3)),
        ((nan,), {}, (3, 3)),
        ((), {}, None),
    ],
    "sparse_": [
        ((0.1,), {}, (2, 3, 4)),
        ((0.1,), {}, (5,)),
        (("x",), {}, (3, 3)),
        ((None,), {}, (3, 3)),
        ((0.1, -1.0), {}, (3, 3)),
        ((0.1, "x"), {}, (3, 3)),
        ((nan,), {}, (3, 3)),
        ((inf,), {}, (3, 3)),
        ((-0.5,), {}, (6, 3)),
        ((0.1, inf), {}, (3, 3)),
        ((0.1,), {}, None),
    ],
    "_calculate_fan_in_and_fan_out": [((), {}, (5,)), ((), {}, None)],
    "_calculate_correct_fan": [
        (("fan_avg",), {}, (3, 3)),
        ((3,), {}, (3, 3)),
        (("fan_in",), {}, (5,)),
        (("fan_in",), {}, None),
    ],
    "_no_grad_uniform_": [((1.0, 0.0), {}, (3, 3)), (("a", 1.0), {}, (3, 3))],
    "_no_grad_normal_": [((0.0, -1.0), {}, (3, 3)), ((0.0, "x"), {}, (3, 3))],
    "_no_grad_trunc_normal_": [((0.0, 0.0, -2.0, 2.0), {}, (3, 3)), ((0.0, 1.0, 2.0, -2.0), {}, (3, 3))],
    "_no_grad_fill_": [(("x",), {}, (3, 3))],
    "_no_grad_zero_": [((), {}, None)],
}
for _alias in DEPRECATED:
    BAD[_alias] = BAD[_alias + "_"]


def _bad_tensor(shape: Any) -> Any:
    if shape is None:
        return _NotATensor()
    if shape == "meta":
        return torch.empty(3, 3, device="meta")
    return torch.zeros(shape)


@pytest.mark.parametrize("name", [n for n in NAMES if n in BAD])
def test_error(name) -> None:
    differences = []
    for args, kwargs, shape in BAD[name]:
        where = f"{name}(<{shape}>, *{args}, **{kwargs})"
        theirs = _outcome(lambda: _caller(torch_init, name)(_bad_tensor(shape), *args, **kwargs))
        ours = _outcome(lambda: _caller(mit, name)(_bad_tensor(shape), *args, **kwargs))
        if theirs is None and ours is None:
            raise AssertionError(f"{where} is not a bad input for either: take it out of BAD")
        differences += _compare_outcomes(where, theirs, ours)
        if ours is not None and not isinstance(ours, mi.MultiinitError):
            differences.append(f"{where}: multiinit raises a foreign {type(ours).__name__}: {ours}")
    _conforms(name, "error", differences)


CALCULATE_GAIN_BAD = [
    ("leaky_relu", "x"),
    ("leaky_relu", True),
    ("foo",),
    ("leaky_relu", np.float32(0.2)),
    ("RELU",),
    (3,),
]


def test_error_calculate_gain() -> None:
    differences = []
    for args in CALCULATE_GAIN_BAD:
        theirs = _outcome(lambda: torch_init.calculate_gain(*args))
        ours = _outcome(lambda: mit.calculate_gain(*args))
        assert theirs is not None, f"calculate_gain{args} is not a bad input for torch"
        differences += _compare_outcomes(f"calculate_gain{args}", theirs, ours)
    _conforms("calculate_gain", "error", differences)


# --------------------------------------------------------------------------- warning

#: Calls that make torch warn, plus ordinary calls of every filler (where neither may warn).
WARNING_CASES: list[tuple[str, tuple, dict, Any]] = [
    ("kaiming_uniform_", (), {}, (0, 3)),
    ("kaiming_normal_", (), {}, (4, 0, 3)),
    ("kaiming_uniform_", (0, "bad mode"), {}, (0,)),  # torch warns before reading anything
    ("trunc_normal_", (5.0, 1.0, -2.0, 2.0), {}, (64, 32)),
    ("trunc_normal_", (-3.0, 0.2, 0.0, 1.0), {}, (64, 32)),
    ("_no_grad_trunc_normal_", (5.0, 1.0, -2.0, 2.0), {}, (64, 32)),
    *[(alias, *ARGS[alias][0], _shapes(alias)[0]) for alias in DEPRECATED],
    *[(name, *ARGS[name][0], _shapes(name)[0]) for name in FILLERS if name not in DEPRECATED],
]


def _warnings_of(module: Any, name: str, args: tuple, kwargs: dict, shape: Any) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tensor = torch.zeros(shape)
        getattr(module, name)(tensor, *args, **kwargs)
    return [f"{w.category.__name__}: {w.message} at {Path(w.filename).name}:{w.lineno}" for w in caught]


@pytest.mark.parametrize("name", sorted({c[0] for c in WARNING_CASES}))
def test_warning(name) -> None:
    differences = []
    for case in [c for c in WARNING_CASES if c[0] == name]:
        _, args, kwargs, shape = case
        theirs = _warnings_of(torch_init, name, args, kwargs, shape)
        ours = _warnings_of(mit, name, args, kwargs, shape)
        if theirs != ours:
            differences.append(f"{name}(<{shape}>, *{args}, **{kwargs}): torch {theirs}, multiinit {ours}")
    _conforms(name, "warning", differences)


def test_warnings_point_at_the_callers_line() -> None:
    # Both calls are on the same line, so each warning must name this file and this line.
    for module in (torch_init, mit):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # (fmt: skip keeps the two calls on one line.)
            line = inspect.currentframe().f_lineno + 1
            module.kaiming_normal_(torch.zeros(0, 3)); module.normal(torch.zeros(2))  # noqa: E702  # fmt: skip
        assert [(Path(w.filename).name, w.lineno) for w in caught] == [(Path(__file__).name, line)] * 2, (
            module
        )


# --------------------------------------------------------------------------- numbers

NUMBER_DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.complex64,
    torch.complex128,
    torch.int64,
]


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit: -0.0 is not 0.0 (``torch.equal`` compares values)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(
        a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)
    )


def _number_differences(name: str) -> list[str]:
    differences = []
    for args, kwargs in ARGS[name]:
        for shape in _shapes(name):
            for dtype in NUMBER_DTYPES:
                for layout in _layouts(shape):
                    where = f"{name}(<{dtype} {shape} {layout}>, *{args}, **{kwargs})"
                    theirs = _tensor(shape, dtype, layout)
                    g_theirs: list[Any] = []
                    if _outcome(lambda: g_theirs.append(_call(torch_init, name, theirs, args, kwargs, 9))):
                        continue  # torch refuses: the dtype and error aspects
                    ours = _tensor(shape, dtype, layout)
                    g_ours = _call(mit, name, ours, args, kwargs, 9)
                    if not _same_bits(ours, theirs):
                        differences.append(f"{where}: other values")
                    elif g_ours is not None and not torch.equal(
                        torch.rand(4, generator=g_ours), torch.rand(4, generator=g_theirs[0])
                    ):
                        differences.append(f"{where}: the generator is left in another state")
    return differences


@pytest.mark.parametrize("name", FILLERS)
def test_numbers(name) -> None:
    _conforms(name, "numbers", _number_differences(name))


def test_numbers_calculate_gain() -> None:
    differences = []
    for nonlinearity in (
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
    ):
        for param in (None, 0, 0.2, -0.5, 3, inf, "ignored" if nonlinearity != "leaky_relu" else None):
            theirs, ours = (
                torch_init.calculate_gain(nonlinearity, param),
                mit.calculate_gain(nonlinearity, param),
            )
            if not (theirs == ours or (math.isnan(theirs) and math.isnan(ours))):
                differences.append(
                    f"calculate_gain({nonlinearity!r}, {param!r}): {ours!r} != torch's {theirs!r}"
                )
    _conforms("calculate_gain", "numbers", differences)


@pytest.mark.parametrize("name", ["_calculate_fan_in_and_fan_out", "_calculate_correct_fan"])
def test_numbers_fan_helpers(name) -> None:
    differences = []
    for shape in [(3, 4), (128, 64, 3, 3), (2, 5, 7), (1, 1, 2, 2, 2), (0, 4), (4, 0, 3)]:
        for args in (
            [()] if name == "_calculate_fan_in_and_fan_out" else [("fan_in",), ("fan_out",), ("FAN_IN",)]
        ):
            theirs = getattr(torch_init, name)(torch.zeros(shape), *args)
            ours = getattr(mit, name)(torch.zeros(shape), *args)
            if ours != theirs or type(ours) is not type(theirs):
                differences.append(f"{name}({shape}, *{args}): {ours!r} != torch's {theirs!r}")
    _conforms(name, "numbers", differences)


# --------------------------------------------------------------------------- __torch_function__


class _Recorder(torch.Tensor):
    """A tensor-like whose ``__torch_function__`` records each call and does nothing."""

    calls: ClassVar[list[Any]] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(func)
        return "handled"


def _hand_off(module: Any, name: str) -> Any:
    """The torch.nn.init function handed to ``__torch_function__`` before anything else, or
    None when the call goes on to tensor operations."""
    args, kwargs = ARGS[name][0]
    _Recorder.calls = []
    tensor = torch.zeros(_shapes(name)[0]).as_subclass(_Recorder)
    _outcome(lambda: _caller(module, name)(tensor, *args, **kwargs))
    first = _Recorder.calls[0] if _Recorder.calls else None
    return first if getattr(first, "__module__", None) == torch_init.__name__ else None


@pytest.mark.parametrize("name", FILLERS)
def test_torch_function_hand_off_as_torch_does(name) -> None:
    # torch hands the whole call to an overriding tensor-like in uniform_, normal_, constant_
    # and kaiming_uniform_ (its own function as func); the drop-in does the same, with torch's
    # function, and nowhere else.
    assert _hand_off(mit, name) is _hand_off(torch_init, name)


class _PassThrough(torch.Tensor):
    """A tensor subclass whose ``__torch_function__`` runs every call as torch would."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize("name", [n for n in FILLERS if (n, "numbers") not in KNOWN])
def test_a_tensor_subclass_gets_torchs_numbers(name) -> None:
    args, kwargs = ARGS[name][0]
    tensors = []
    for module in (torch_init, mit):
        tensor = torch.zeros(_shapes(name)[0]).as_subclass(_PassThrough)
        _call(module, name, tensor, args, kwargs, seed=4)
        tensors.append(tensor.as_subclass(torch.Tensor))
    assert torch.equal(*tensors)
