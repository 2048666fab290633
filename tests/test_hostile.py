"""Hostile and extreme input to the neutral core (issue 15), one row per input.

Every row is an input a new user (or an attacker) might give, the multiinit error class it
must raise, and fragments its message must contain: the parameter, the value (shortened when
long) and what is allowed. No OverflowError, RecursionError, MemoryError, KeyError or bare
TypeError/ValueError may escape, no infinity may be returned, and deserializing never runs code.
User laws (``custom``) are fenced: whatever they do wrong is a ``LawError`` naming the law and
the parameter path. The limits checked here are documented in docs/errors.md.
"""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest

import multiinit as mi
from multiinit import reference, registry
from multiinit.errors import shown
from multiinit.fans import MAX_ELEMENTS, MAX_NDIM
from multiinit.reference import call_law, sample
from multiinit.spec import MAX_DEPTH, MAX_NODES, MAX_TEXT

MB = 2**20


def _deep_dict(depth: int) -> dict:
    data = {"kind": "constant", "value": 0.0}
    for _ in range(depth):
        data = {"kind": "mixture", "components": [{"weight": 1.0, "spec": data}]}
    return data


def _deep_mixture(depth: int) -> mi.Spec:
    spec = mi.zeros()
    for _ in range(depth):
        spec = mi.mixture([(1.0, spec)])
    return spec


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


# (id, call, error class, fragments the message must contain)
HOSTILE = [
    # ------------------------------------------------------------------ huge numbers
    (
        "normal std=10**400",
        lambda: mi.normal(std=10**400),
        mi.SpecError,
        ["normal: std=1000000000", "(401 digits)", "must be a finite number > 0", "1.797e+308"],
    ),
    (
        "from_dict std=10**400",
        lambda: mi.from_dict({"kind": "normal", "std": 10**400}),
        mi.SpecError,
        ["std=1000000000", "(401 digits)"],
    ),
    (
        "parse std=10**400",
        lambda: mi.parse("normal(std=1" + "0" * 400 + ")"),
        mi.SpecError,
        ["std=1000000000", "(401 digits)"],
    ),
    ("parse std=1e400", lambda: mi.parse("normal(std=1e400)"), mi.SpecError, ["std=inf", "finite"]),
    (
        "parse std=16**4000",
        lambda: mi.parse("normal(std=0x" + "f" * 4000 + ")"),
        mi.SpecError,
        ["std=<an int of about 4817 digits>"],
    ),
    (
        "calculate_gain slope 1e200",
        lambda: mi.calculate_gain("leaky_relu", 1e200),
        mi.SpecError,
        ["param=1e+200", "square is finite", "1.341e+154"],
    ),
    (
        "calculate_gain slope 10**400",
        lambda: mi.calculate_gain("leaky_relu", 10**400),
        mi.SpecError,
        ["param=1000000000", "(401 digits)"],
    ),
    (
        "xavier gain=1e200 sample",
        lambda: mi.xavier_uniform(gain=1e200).sample((3, 3)),
        mi.SpecError,
        ["xavier_uniform: gain=1e+200", "square is finite"],
    ),
    (
        "xavier gain=1e-200",
        lambda: mi.xavier_normal(gain=1e-200),
        mi.SpecError,
        ["xavier_normal: gain=1e-200", "square is finite and > 0"],
    ),
    (
        "kaiming a=1e160 sample",
        lambda: mi.kaiming_normal(a=1e160).sample((3, 3)),
        mi.SpecError,
        ["kaiming_normal: a=1e+160", "square is finite"],
    ),
    (
        "uniform width overflows",
        lambda: mi.uniform(-1e308, 1e308).sample((3,)),
        mi.SpecError,
        ["uniform: high=1e+308", "high - low", "low=-1e+308"],
    ),
    (
        "truncated bounds overflow",
        lambda: mi.truncated_normal(std=1e308, low=-1e308, high=1e308).sample((3,)),
        mi.SpecError,
        ["truncated_normal: std=1e+308", "bounds", "low*std overflows"],
    ),
    (
        "truncated bound blames low",
        lambda: mi.truncated_normal(std=2.0, low=-1e308, high=1.0),
        mi.SpecError,
        ["truncated_normal: low=-1e+308", "low*std overflows"],
    ),
    (
        "truncated mean overflows",
        lambda: mi.truncated_normal(mean=1.7e308, std=1.0, low=-1.0, high=1e307),
        mi.SpecError,
        ["truncated_normal: mean=1.7e+308", "bounds"],
    ),
    (
        "truncated width overflows",
        lambda: mi.truncated_normal(std=1e308, low=-1.5, high=1.5),
        mi.SpecError,
        ["truncated_normal: std=1e+308", "distance between"],
    ),
    (
        "trunc_normal tiny std",
        lambda: mi.trunc_normal(std=1e-320, a=-1, b=1),
        mi.SpecError,
        ["trunc_normal: std=1e-320", "(a - mean) / std", "a=-1.0"],
    ),
    (
        "trunc_normal a - mean",
        lambda: mi.trunc_normal(mean=1e308, std=1.0, a=-1e308, b=1e308),
        mi.SpecError,
        ["trunc_normal: a=-1e+308", "a - mean", "mean=1e+308"],
    ),
    (
        "normal overflows on draw",
        lambda: mi.normal(std=1e308).sample((3,)),
        mi.SpecError,
        ["normal(std=1e+308) cannot fill a tensor of shape (3,) in float32", "mean and std must be smaller"],
    ),
    (
        "normal overflows float32",
        lambda: mi.normal(std=2e38).sample((1000,), path="w"),
        mi.SpecError,
        ["cannot fill 'w' of shape (1000,) in float32", "3.40282e+38"],
    ),
    (
        "constant beyond float16",
        lambda: mi.constant(1e5).sample((2,), dtype="float16"),
        mi.SpecError,
        ["constant(value=100000.0)", "float16 (65504)", "its value must be smaller"],
    ),
    (
        "uniform beyond float32",
        lambda: mi.uniform(0, 1e39).sample((2,)),
        mi.SpecError,
        ["uniform(low=0.0, high=1e+39)", "float32", "its low and high must be smaller"],
    ),
    (
        "scale / fan overflows",
        lambda: mi.variance_scaling(1e308, "fan_avg", "uniform").sample((1, 1), fans=(0, 1)),
        mi.SpecError,
        ["(fans (0, 1))", "scale=1e+308", "fan_in=0, fan_out=1"],
    ),
    (
        "mixture component overflows",
        lambda: mi.mixture([(0.5, mi.zeros()), (0.5, mi.normal(std=1e308))]).sample((8,)),
        mi.SpecError,
        ["its component normal(std=1e+308)"],
    ),
    (
        "fans too large",
        lambda: mi.he_normal().sample((2, 2), fans=(10**400, 1)),
        mi.SpecError,
        ["fans=(1000000000", "(406 characters)", "<= 2**48 (MAX_ELEMENTS)"],
    ),
    (
        "mixture weights overflow fsum",
        lambda: mi.mixture([(1e308, mi.zeros()), (1e308, mi.ones())]),
        mi.SpecError,
        ["weights=[1e+308, 1e+308]", "sum to 1", "sum is inf"],
    ),
    (
        "dirac groups unprintable",
        lambda: mi.dirac(groups=10**5000),
        mi.SpecError,
        ["groups=<an int of about 5001 digits>", "<= 2**48"],
    ),
    # ------------------------------------------------------------------ pathological size
    (
        "from_dict nested 100000 deep",
        lambda: mi.from_dict(_deep_dict(100_000)),
        mi.SpecError,
        ["nest at most 32 deep", "MAX_DEPTH"],
    ),
    (
        "from_dict nested 33 deep",
        lambda: mi.from_dict(_deep_dict(MAX_DEPTH + 1)),
        mi.SpecError,
        ["MAX_DEPTH"],
    ),
    (
        "mixture nested 33 deep",
        lambda: _deep_mixture(MAX_DEPTH + 1),
        mi.SpecError,
        ["components nest 33 mixtures deep", "MAX_DEPTH"],
    ),
    (
        "parse 100000 unary signs",
        lambda: mi.parse("normal(std=" + "-" * 100_000 + "1)"),
        mi.SpecError,
        ["parse: text='normal(std=---", "(a string of 100013 characters)", "nests deeper"],
    ),
    (
        "parse 100000 binary operators",
        lambda: mi.parse("normal(std=" + "1+" * 100_000 + "1)"),
        mi.SpecError,
        ["(a string of 200013 characters)", "nests deeper"],
    ),
    (
        "parse 150 unary signs",
        lambda: mi.parse("normal(std=" + "-" * 150 + "1)"),
        mi.SpecError,
        ["nest at most 128 deep"],
    ),
    (
        "parse 40 mixtures deep",
        lambda: mi.parse("mixture([(1.0, " * 40 + "zeros()" + ")])" * 40),
        mi.SpecError,
        ["MAX_DEPTH"],
    ),
    (
        "parse 1 MB of text",
        lambda: mi.parse("x" * MB),
        mi.SpecError,
        ["(a string of 1048576 characters)", "at most 1000000 characters", "MAX_TEXT"],
    ),
    (
        "a 1 MB value",
        lambda: mi.normal(std="x" * MB),
        mi.SpecTypeError,
        ["normal: std='xxxx", "(a string of 1048576 characters)", "must be a finite number > 0"],
    ),
    (
        "a 1 MB kind",
        lambda: mi.from_dict({"kind": "y" * MB}),
        mi.SpecError,
        ["kind='yyyy", "(a string of 1048576 characters)", "must be one of"],
    ),
    (
        "a 1 MB custom name",
        lambda: mi.from_dict({"kind": "custom", "name": "n" * MB}),
        mi.SpecError,
        ["name='nnnn", "(a string of 1048576 characters)", "not registered"],
    ),
    (
        "a long string in text",
        lambda: mi.parse("normal(std='" + "s" * 500_000 + "')"),
        mi.SpecTypeError,
        ["normal: std='sss", "(a string of 500000 characters)"],
    ),
    (
        "zeros on 2**63 elements",
        lambda: mi.zeros().sample((2**63,)),
        mi.ShapeError,
        ["shape=(9223372036854775808,)", "at most 2**48 elements", "MAX_ELEMENTS"],
    ),
    (
        "33 dimensions",
        lambda: mi.zeros().sample((1,) * 33),
        mi.ShapeError,
        ["at most 32 dimensions", "MAX_NDIM"],
    ),
    ("fans of 2**63 elements", lambda: mi.compute_fans((2**40, 2**40)), mi.ShapeError, ["MAX_ELEMENTS"]),
    (
        "fans of a string",
        lambda: mi.compute_fans("ab"),
        mi.ShapeError,
        ["shape='ab'", "a sequence of non-negative integers"],
    ),
    ("fans of None", lambda: mi.compute_fans(None), mi.ShapeError, ["shape=None"]),
    (
        "256 components",
        lambda: mi.mixture([(1 / 256, mi.zeros())] * 256),
        mi.SpecError,
        ["fewer than 256", "MAX_NODES"],
    ),
    (
        "256 components from a dict",
        lambda: mi.from_dict(
            {
                "kind": "mixture",
                "components": [{"weight": 1 / 256, "spec": {"kind": "constant", "value": 0}}] * 256,
            }
        ),
        mi.SpecError,
        ["fewer than 256", "MAX_NODES"],
    ),
    (
        "an endless iterator of components",
        lambda: mi.mixture((1.0, mi.zeros()) for _ in itertools.count()),
        mi.SpecError,
        ["components=<generator object", "MAX_NODES"],
    ),
    (
        "257 specs in all",
        lambda: mi.mixture(
            [(0.5, mi.mixture([(1 / 200, mi.zeros())] * 200)), (0.5, mi.mixture([(1 / 60, mi.ones())] * 60))]
        ),
        mi.SpecError,
        ["hold 263 specs in all", "MAX_NODES"],
    ),
    # ------------------------------------------------------------------ calls Python would refuse
    (
        "repeated keyword",
        lambda: mi.parse("normal(std=1, std=2)"),
        mi.SpecTypeError,
        ["normal(...) has the keyword argument std= twice"],
    ),
    (
        "keyword and positional",
        lambda: mi.parse("normal(1, mean=2)"),
        mi.SpecTypeError,
        ["multiple values for argument 'mean'"],
    ),
    (
        "compile to a list of backends",
        lambda: mi.compile(mi.normal(), ["torch"]),
        mi.UnknownBackend,
        ["backend=['torch'] is not allowed", "must be one of numpy, torch"],
    ),
    (
        "compile to a dict",
        lambda: mi.compile(mi.normal(), {"backend": "torch"}),
        mi.UnknownBackend,
        ["backend={'backend': 'torch'}"],
    ),
    (
        "compile with seed for numpy",
        lambda: mi.compile(mi.normal(), "numpy", seed=0),
        mi.SpecTypeError,
        ["compile: seed=0 is not allowed for the 'numpy' backend", "takes no options"],
    ),
    ("resolve None", lambda: registry.resolve(None), mi.UnknownBackend, ["backend=None"]),
    (
        "explain to a list of backends",
        lambda: mi.explain(mi.normal(), (3, 3), ["torch"]),
        mi.UnknownBackend,
        ["backend=['torch']"],
    ),
    ("explain on a string shape", lambda: mi.explain(mi.normal(), "ab"), mi.ShapeError, ["shape='ab'"]),
    (
        "a value whose repr fails",
        lambda: mi.normal(std=_BadRepr()),
        mi.SpecTypeError,
        ["normal: std=<_BadRepr instance at", "must be a finite number"],
    ),
    (
        "a distribution that is an array",
        lambda: mi.variance_scaling(distribution=np.array([1.0, 2.0])),
        mi.SpecTypeError,
        ["distribution=array([1., 2.])", "must be one of"],
    ),
    ("text with a NUL byte", lambda: mi.parse("normal()\x00"), mi.SpecError, ["not a spec call"]),
    (
        "text with a lone surrogate",
        lambda: mi.parse("normal(std=1)\ud800"),
        mi.SpecError,
        ["not a spec call"],
    ),
    # ------------------------------------------------------------------ deserializing never runs code
    (
        "a dict naming os.system",
        lambda: mi.from_dict({"kind": "custom", "name": "os.system"}),
        mi.SpecError,
        ["name='os.system' is not registered in this process"],
    ),
    (
        "a dict naming a module path",
        lambda: mi.from_dict({"kind": "os.system", "command": "echo pwned"}),
        mi.SpecError,
        ["kind='os.system' is not allowed"],
    ),
    (
        "text importing os",
        lambda: mi.parse("__import__('os').system('echo pwned')"),
        mi.SpecError,
        ["__import__('os').system", "is not allowed"],
    ),
    (
        "text calling a lambda",
        lambda: mi.parse("normal(std=(lambda: 1)())"),
        mi.SpecError,
        ["lambda: 1", "is not allowed"],
    ),
    (
        "text with a custom law by module path",
        lambda: mi.parse("custom(name='os.system')"),
        mi.SpecError,
        ["not registered"],
    ),
    (
        "text with a function",
        lambda: mi.parse("custom(print, name='x')"),
        mi.SpecError,
        ["functions are never parsed"],
    ),
    ("pickle bytes as a dict", lambda: mi.from_dict(b"\x80\x04\x95"), mi.SpecTypeError, ["data=b'\\x80"]),
]


@pytest.mark.parametrize("call, error, fragments", [pytest.param(*row[1:], id=row[0]) for row in HOSTILE])
def test_hostile_input_is_a_multiinit_error_naming_its_culprit(call, error, fragments) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert len(message) < 1000, message  # long input is shortened, never echoed whole


def test_errors_derive_from_the_builtins_python_code_expects() -> None:
    for error, builtin in (
        (mi.SpecError, ValueError),
        (mi.SpecTypeError, TypeError),
        (mi.SpecTypeError, ValueError),
        (mi.ShapeError, ValueError),
        (mi.LawError, ValueError),
        (mi.LawError, mi.SpecError),
        (mi.LawShapeError, mi.LawError),
        (mi.LawShapeError, mi.ShapeError),
        (mi.RuleError, ValueError),
        (mi.UnknownBackend, ValueError),
        (mi.BackendUnavailable, ImportError),
    ):
        assert issubclass(error, builtin) and issubclass(error, mi.MultiinitError), (error, builtin)
    with pytest.raises(TypeError):  # as Python refuses a keyword a function does not take
        mi.compile(mi.normal(), "numpy", seed=0)
    with pytest.raises(TypeError):
        mi.parse("normal(std=1, std=2)")


def test_the_limits_are_the_documented_constants() -> None:
    assert (MAX_TEXT, MAX_DEPTH, MAX_NODES, MAX_NDIM, MAX_ELEMENTS) == (1_000_000, 32, 256, 32, 2**48)
    call = "uniform(5, 10)"
    assert mi.parse(call + " " * (MAX_TEXT - len(call))) == mi.uniform(5, 10)  # exactly the limit
    with pytest.raises(mi.SpecError, match="MAX_TEXT"):
        mi.parse(call + " " * (MAX_TEXT - len(call) + 1))


def test_up_to_the_limits_everything_still_works() -> None:
    deepest = _deep_mixture(MAX_DEPTH)
    assert mi.from_dict(json.loads(json.dumps(deepest.to_dict()))) == deepest
    assert mi.parse(str(deepest)) == deepest
    assert np.array_equal(deepest.sample((3, 2)), np.zeros((3, 2), dtype=np.float32))
    widest = mi.mixture([(1 / (MAX_NODES - 1), mi.constant(i)) for i in range(MAX_NODES - 1)])
    assert mi.parse(str(widest)) == widest and mi.from_dict(widest.to_dict()) == widest
    assert set(np.unique(widest.sample((64, 64), seed=1))) <= set(range(MAX_NODES - 1))
    # the extremes that are valid stay valid, and their draws are finite
    assert np.isfinite(mi.uniform(-1e308, 0).sample((100,), dtype="float64")).all()
    assert np.isfinite(
        mi.truncated_normal(std=1e300, low=-100, high=100).sample((100,), dtype="float64")
    ).all()
    assert mi.xavier_uniform(gain=1e154).as_variance_scaling().scale == 1e154**2
    assert math.isclose(mi.calculate_gain("leaky_relu", 1e150), math.sqrt(2) / 1e150)
    assert mi.zeros().sample((0, 2**48)).shape == (0, 2**48)


def test_far_tail_truncation_is_explained_not_divided_by_zero() -> None:
    # Both bounds 40 std out: the mass between them underflows to 0 in double precision.
    law = mi.explain(mi.truncated_normal(low=40, high=41), (3, 3)).law
    # SciPy's truncnorm(40, 41).std() is 0.02495332..., the asymptotic 1/40*sqrt(1 - 6/40**2) too.
    assert "std 0.0249533" in law, law


@pytest.mark.parametrize(
    "spec",
    [
        mi.truncated_normal(mean=1.0, std=2.0, low=40, high=41),  # both bounds 40 std out: the CDF underflows
        mi.truncated_normal(low=-45, high=-44),
        mi.truncated_normal(low=38, high=1e100),
        mi.trunc_normal(std=0.01, a=0.5, b=1.0),  # torch's absolute bounds, 50 to 100 std out
    ],
    ids=str,
)
def test_a_truncation_far_in_one_tail_draws_its_law_not_nan(spec) -> None:
    from multiinit import stats

    x = spec.sample((20_000,), seed=3, dtype="float64")
    lo, hi = spec.bounds
    assert np.isfinite(x).all() and lo <= x.min() and x.max() <= hi
    verdict = stats.check(x, spec, (20_000,))  # KS and moments at the house level, ALPHA = 1e-6
    assert verdict.passed, verdict


def test_running_out_of_memory_while_drawing_is_a_shape_error(monkeypatch) -> None:
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(reference, "_draw", exhausted)
    with pytest.raises(
        mi.ShapeError, match=r"'big.weight' of shape \(4, 4\): 16 values of float32 do not fit"
    ) as info:
        sample(mi.normal(), (4, 4), path="big.weight")
    assert isinstance(info.value.__cause__, MemoryError)


# --------------------------------------------------------------------------- user laws, fenced


def _law(name: str, result):
    def fn(rng, shape, dtype):
        if isinstance(result, BaseException):
            raise result
        return result(shape) if callable(result) else result

    return mi.custom(fn, name=name)


# (id, what the law does, error class, fragment after "custom law '<name>' at '<path>' ")
LIARS = [
    (
        "raises",
        RuntimeError("the user's law broke"),
        mi.LawError,
        "raised RuntimeError: the user's law broke",
    ),
    ("raises KeyError", KeyError("missing"), mi.LawError, "raised KeyError: 'missing'"),
    ("raises OverflowError", OverflowError("math range error"), mi.LawError, "raised OverflowError"),
    ("raises RecursionError", RecursionError("too deep"), mi.LawError, "raised RecursionError"),
    ("raises MemoryError", MemoryError(), mi.LawError, "raised MemoryError"),
    (
        "NaN",
        lambda shape: np.full(shape, np.nan),
        mi.LawError,
        "returned 4 NaN values (the first at index (0, 0))",
    ),
    (
        "one inf",
        lambda shape: np.where(np.arange(4).reshape(shape) == 3, np.inf, 0.0),
        mi.LawError,
        "returned 1 infinite values (the first at index (1, 1)); "
        "a custom function must return finite numbers",
    ),
    (
        "wrong shape",
        lambda shape: np.zeros(3),
        mi.LawShapeError,
        "returned an array of shape (3,) for shape (2, 2); a custom function must return exactly the shape",
    ),
    (
        "transposed shape",
        lambda shape: np.zeros((1, 4)),
        mi.LawShapeError,
        "returned an array of shape (1, 4)",
    ),
    (
        "strings",
        lambda shape: np.full(shape, "x"),
        mi.LawError,
        "returned dtype <U1; a custom function must return numbers",
    ),
    ("complex", lambda shape: np.zeros(shape, dtype=complex), mi.LawError, "returned dtype complex128"),
    ("bools", lambda shape: np.ones(shape, dtype=bool), mi.LawError, "returned dtype bool"),
    ("objects", lambda shape: np.full(shape, object()), mi.LawError, "returned dtype object"),
    ("None", None, mi.LawShapeError, "returned an array of shape () for shape (2, 2)"),
    (
        "too large for float16",
        lambda shape: np.full(shape, 1e5),
        mi.LawError,
        "returned values too large for float16 (largest 65504; 100000 at index (0, 0))",
    ),
]


@pytest.mark.parametrize("does, error, fragment", [pytest.param(*row[1:], id=row[0]) for row in LIARS])
def test_a_failing_or_lying_law_is_a_law_error_naming_the_law_and_the_path(does, error, fragment) -> None:
    spec = _law("hostile.liar", does)
    dtype = "float16" if "float16" in fragment else "float32"
    with pytest.raises(error) as info:
        sample(spec, (2, 2), seed=0, dtype=dtype, path="head.weight")
    assert f"custom law 'hostile.liar' at 'head.weight' {fragment}" in str(info.value)
    if isinstance(does, BaseException):
        assert info.value.__cause__ is does  # chained: the user's traceback is kept
    with pytest.raises(error) as info:  # without a path: the law is still named
        spec.sample((2, 2), dtype=dtype)
    assert f"custom law 'hostile.liar' {fragment}" in str(info.value)


@pytest.mark.parametrize("escape", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_an_interrupt_inside_a_law_is_not_swallowed(escape) -> None:
    with pytest.raises(escape):
        sample(_law("hostile.interrupted", escape()), (2, 2), path="w")


def test_the_fence_holds_inside_a_mixture_and_through_every_neutral_door() -> None:
    broken = _law("hostile.nan", lambda shape: np.full(shape, np.nan))
    spec = mi.mixture([(0.5, mi.zeros()), (0.5, broken)])
    with pytest.raises(
        mi.LawError, match=re.escape("custom law 'hostile.nan' at 'blocks.3.bias' returned 6 NaN")
    ):
        sample(spec, (6,), path="blocks.3.bias")
    with pytest.raises(mi.LawError, match=re.escape("custom law 'hostile.nan' at 'blocks.3.bias'")):
        spec.sample((6,), path="blocks.3.bias")
    with pytest.raises(mi.LawError, match=re.escape("custom law 'hostile.nan' returned")):
        mi.compile(spec, "numpy")((6,))
    with pytest.raises(mi.LawError, match=re.escape("custom law 'hostile.nan'")):
        mi.from_dict(spec.to_dict()).sample((6,))
    with pytest.raises(mi.LawError, match=re.escape("'hostile.nan'")):
        mi.parse(str(spec)).sample((6,))


def test_call_law_returns_the_laws_values_in_the_dtype_asked() -> None:
    seen = {}

    def law(rng, shape, dtype):
        seen.update(shape=shape, dtype=dtype)
        return np.arange(6, dtype=np.int64).reshape(shape)

    out = call_law(mi.custom(law, name="hostile.ints"), np.random.default_rng(0), [2, 3], "float16", path="p")
    assert seen == {"shape": (2, 3), "dtype": np.dtype("float16")}
    assert out.dtype == np.float16 and out.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(mi.SpecError, match="call_law runs a custom spec"):
        call_law(mi.normal(), np.random.default_rng(0), (2,))
    with pytest.raises(mi.ShapeError, match="shape="):
        call_law(mi.custom(law, name="hostile.ints"), np.random.default_rng(0), (2, -3))
    with pytest.raises(mi.SpecError, match="dtype="):
        call_law(mi.custom(law, name="hostile.ints"), np.random.default_rng(0), (2, 3), "int32")


def test_a_law_whose_exception_cannot_be_printed_is_still_named() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    with pytest.raises(mi.LawError, match="raised Unprintable: <Unprintable whose message cannot be shown>"):
        sample(_law("hostile.unprintable", Unprintable()), (2,), path="w")
    long = _law("hostile.long", ValueError("e" * MB))
    with pytest.raises(mi.LawError) as info:
        sample(long, (2,), path="w")
    assert "(1048576 characters)" in str(info.value) and len(str(info.value)) < 1000


def test_shown_never_raises_and_never_echoes_a_huge_value() -> None:
    assert shown("abc") == "'abc'" and shown(1.5) == "1.5" and shown(None) == "None"
    assert shown(10**5000) == "<an int of about 5001 digits>"
    assert len(shown("q" * MB)) < 200 and "(a string of 1048576 characters)" in shown("q" * MB)
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    assert shown(nested) == "[[[[...]]]]"
    assert "_BadRepr" in shown(_BadRepr())


@pytest.mark.parametrize(
    "values, refusal",
    [
        (
            np.array([[0.0, 1.0, 2.0], [3.0, np.nan, 5.0]]),
            "returned 1 NaN values (the first at index (1, 1))",
        ),
        (
            np.array([[0.0, 1.0, -np.inf], [3.0, 4.0, 5.0]]),
            "returned 1 infinite values (the first at index (0, 2))",
        ),
        # too large for float16 only once cast:
        (
            np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 1e5]]),
            "returned values too large for float16 (largest 65504; 100000 at index (1, 2))",
        ),
        (np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]), None),
    ],
)
def test_a_placed_law_result_is_checked_where_it_lands_and_reported_where_the_law_put_it(
    values, refusal
) -> None:
    # An adapter's `place` casts while copying into its own layout (here a transpose): the
    # fence checks what `place` returns, and a refusal names the law's own (logical) index,
    # word for word as without `place`.
    law = mi.custom(lambda rng, shape, dtype: values, name="hostile.placed")
    placed = []

    def place(array, dtype):
        placed.append(dtype)
        return np.ascontiguousarray(array.T, dtype=dtype)

    def run(**kwargs):
        try:
            return call_law(law, np.random.default_rng(0), (2, 3), "float16", path="p", **kwargs)
        except mi.LawError as e:
            return str(e)

    plain, fenced = run(), run(place=place)
    assert placed == [np.dtype("float16")]
    if refusal is None:
        assert fenced.dtype == np.float16 and np.array_equal(fenced, plain.T)
    else:
        assert fenced == plain and f"custom law 'hostile.placed' at 'p' {refusal}" in plain
