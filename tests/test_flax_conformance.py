"""Conformance of ``from multiinit.flax import initializers as init`` with ``jax.nn.initializers``
(and ``flax.linen.initializers`` / ``flax.nnx.initializers``), checked against JAX and Flax
themselves, name by name, in the style of array-api-compat's tests.

Every public name of ``jax.nn.initializers`` and every extra name of Flax's two initializer
modules is walked, and for each one aspect at a time is compared:

``name``       the drop-in has it (and a non-callable name is the same object);
``signature``  ``inspect.signature`` equal, annotations and defaults included, for the
               constructor and for the initializer it returns;
``law``        two-sample KS of the drop-in's draw against JAX's own draw (independent keys)
               on dense, conv and attention shapes and with stated axes, in float32,
               bfloat16, float16 and complex64 (each part), and float64/complex128 with x64
               on; the same support (truncated normals), the same orthogonality;
``dtype``      the same dtypes filled (the same result dtype), and where JAX refuses one, the
               same exception type;
``error``      on JAX's own bad inputs (one fault each), an exception of the type JAX raises
               (which must also be a ``MultiinitError``), and no error where JAX has none;
``numbers``    with the same key, equal values (bit for bit), in every dtype, x64 on and off:
               the drop-in's values eagerly and under ``jax.jit`` are JAX's jitted values, and
               JAX's eager ones wherever JAX's eager and jitted values agree (JAX's own
               ``variance_scaling(..., "normal")`` differs in the last bit between the two).

The section "jax.nn.initializers" of ``docs/known-differences.md`` is the one list of
deliberate differences. The test reads it: a (name, aspect) pair in the table *must* differ (a
stale row fails), and any pair not in it must not. Flax's extra names are written
``flax.linen.initializers.<name>`` / ``flax.nnx.initializers.<name>`` there.

Thresholds: each KS test is at ALPHA = 1e-6 (``multiinit.stats``) on 4,096 to 32,768 values
per side (16,384 and more for every law that is not drawn with stated axes), which detects a
2-5% error in a scale or a shifted bound; with a few thousand KS tests and fixed keys, the
chance that a conforming drop-in fails one is below 1e-2 even if the keys were random.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen.initializers as linen_init
import jax
import jax.nn.initializers as jax_init
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import multiinit as mi
from multiinit import stats
from multiinit.fans import SPATIAL_IN_OUT, LogicalView
from multiinit.flax import initializers as init

nnx_init = nnx.initializers

# --------------------------------------------------------------------------- the table

TABLE = Path(__file__).resolve().parent.parent / "docs" / "known-differences.md"
ASPECTS = ("name", "signature", "law", "dtype", "error", "numbers")


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


KNOWN = _read_table("jax.nn.initializers")

PUBLIC = sorted(n for n in dir(jax_init) if not n.startswith("_"))
FLAX = {"flax.linen.initializers": linen_init, "flax.nnx.initializers": nnx_init}
#: Flax's names that are not JAX's objects, as "flax.<module>.<name>".
EXTRAS = sorted(
    f"{label}.{n}"
    for label, module in FLAX.items()
    for n in dir(module)
    if not n.startswith("_") and getattr(module, n) is not getattr(jax_init, n, None)
)
NAMES = PUBLIC + EXTRAS


def _native(name: str) -> Any:
    """The framework's object for a table name."""
    if name.startswith("flax."):
        label, _, short = name.rpartition(".")
        return getattr(FLAX[label], short)
    return getattr(jax_init, name)


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _conforms(name: str, aspect: str, differences: list[str]) -> None:
    """The single rule: ``differences`` is non-empty exactly when the table lists the pair."""
    if (name, aspect) in KNOWN:
        assert differences, (
            f"docs/known-differences.md lists {name} / {aspect} ({KNOWN[(name, aspect)]!r}) but "
            "multiinit.flax.initializers no longer differs from JAX there: remove the row"
        )
    else:
        assert not differences, (
            f"multiinit.flax.initializers.{_short(name)} differs from {name} ({aspect}) and "
            "docs/known-differences.md does not list it:\n  " + "\n  ".join(differences[:20])
        )


def test_the_table_names_only_real_names() -> None:
    assert KNOWN, "the jax.nn.initializers table is empty"
    for name, _ in KNOWN:
        assert name in NAMES, (
            f"docs/known-differences.md names {name!r}, not a name of JAX's or Flax's modules"
        )


def test_aliases_are_the_same_functions_as_in_jax() -> None:
    assert set(ALIASES) == {"xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"}
    for alias, name in ALIASES.items():
        assert getattr(init, alias) is getattr(init, name), alias


def test_the_walk_sees_every_name() -> None:
    # A JAX upgrade that adds a name must show up here, not be skipped in silence.
    assert len(PUBLIC) == 20 and "delta_orthogonal" in PUBLIC and "Initializer" in PUBLIC
    assert {_short(n) for n in EXTRAS} >= {"zeros_init", "ones_init", "Initializer"}


# --------------------------------------------------------------------------- how to call

KEY = jax.random.key(7)
INITIALIZERS = ("zeros", "ones")  # initializers themselves, not constructors
RANDOM = {
    "uniform",
    "normal",
    "truncated_normal",
    "variance_scaling",
    "glorot_uniform",
    "glorot_normal",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "delta_orthogonal",
}
SCALED = {
    "glorot_uniform",
    "glorot_normal",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "lecun_uniform",
    "lecun_normal",
}

DENSE, CONV = (128, 256), (3, 3, 32, 64)  # n = 32,768 and 18,432
ATTENTION = (32, 8, 16)  # (features, heads, head_dim): in_axis=0, out_axis=(1, 2); n = 4,096
STACKED = (6, 64, 96)  # six (64, 96) kernels: batch_axis=0; n = 36,864
AXES = {"in_axis": 0, "out_axis": (1, 2)}
BATCH = {"batch_axis": 0, "in_axis": 1, "out_axis": 2}

#: Constructor arguments per name, each with the shapes it is drawn on.
CASES: dict[str, list[tuple[tuple, dict, list[tuple[int, ...]]]]] = {
    "zeros": [((), {}, [DENSE, CONV])],
    "ones": [((), {}, [DENSE, CONV])],
    "constant": [
        ((0.3,), {}, [DENSE]),
        ((7,), {}, [CONV]),
        ((True,), {}, [DENSE]),
        ((np.float32(-2.5),), {}, [DENSE]),
        ((4.0,), {"dtype": jnp.bfloat16}, [DENSE]),
        ((-0.0,), {}, [DENSE]),
    ],
    "uniform": [
        ((), {}, [DENSE, CONV]),
        ((0.3,), {}, [DENSE]),
        ((-2.0,), {}, [DENSE]),
        ((5,), {"dtype": jnp.float16}, [CONV]),
        ((0.0,), {}, [DENSE]),
    ],
    "normal": [((), {}, [DENSE, CONV]), ((0.5,), {}, [DENSE]), ((-0.1,), {}, [CONV]), ((0.0,), {}, [DENSE])],
    "truncated_normal": [
        ((), {}, [DENSE, CONV]),
        ((0.5,), {"lower": -1.0, "upper": 3.0}, [DENSE]),
        ((-2.0,), {"lower": 0.5, "upper": 1.5}, [DENSE]),
        ((1.0,), {"lower": -4.0, "upper": 4.0}, [CONV]),
        ((1.0,), {"lower": -math.inf, "upper": 1.0}, [DENSE]),
        ((0.02,), {"lower": -100.0, "upper": 100.0}, [DENSE]),
    ],
    "variance_scaling": [
        ((2.0, "fan_in", "uniform"), {}, [DENSE, CONV]),
        ((0.5, "fan_out", "truncated_normal"), {}, [CONV]),
        ((3.0, "fan_avg", "normal"), {}, [DENSE]),
        ((1.0, "fan_geo_avg", "uniform"), {}, [CONV]),
        ((1.0, "fan_in", "truncated_normal"), AXES, [ATTENTION]),
        ((2.0, "fan_geo_avg", "normal"), BATCH, [STACKED]),
        ((0.0, "fan_in", "normal"), {}, [DENSE]),
    ],
    "orthogonal": [
        ((), {}, [DENSE, CONV]),
        ((2.0,), {}, [(256, 128)]),
        ((-1.5,), {}, [CONV]),
        ((1.0, 0), {}, [CONV]),
        ((1.0, -2), {}, [DENSE]),
    ],
    "delta_orthogonal": [
        ((), {}, [CONV, (5, 16, 16)]),
        ((2.0,), {}, [(3, 3, 3, 8, 8)]),
        ((1.0, 0), {}, [CONV]),
    ],
}
for _name in SCALED:
    CASES[_name] = [((), {}, [DENSE, CONV]), ((), AXES, [ATTENTION]), ((), BATCH, [STACKED])]
#: JAX's aliases (xavier_uniform is glorot_uniform, ...): checked to be the same functions here
#: too, which carries every aspect over, instead of being drawn again.
ALIASES = {
    n: getattr(jax_init, n).__name__
    for n in PUBLIC
    if getattr(jax_init, n).__name__ != n
    and getattr(jax_init, getattr(jax_init, n).__name__, None) is getattr(jax_init, n)
}
DRAWN = [n for n in PUBLIC if n in CASES and n not in ALIASES]


def _make(module: Any, name: str, args: tuple, kwargs: dict) -> Callable[..., Any]:
    """The initializer of ``module.<name>(*args, **kwargs)`` (zeros/ones are themselves)."""
    if name in INITIALIZERS:
        return getattr(module, name)
    return getattr(module, name)(*args, **kwargs)


def _outcome(function: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return function(), None
    except Exception as e:  # noqa: BLE001 - the point is to compare what each raises
        return None, e


def _compare_outcomes(where: str, theirs: BaseException | None, ours: BaseException | None) -> list[str]:
    if theirs is None and ours is None:
        return []
    if theirs is None:
        return [f"{where}: JAX fills, multiinit raises {type(ours).__name__}: {ours}"]
    if ours is None:
        return [f"{where}: JAX raises {type(theirs).__name__}, multiinit fills"]
    if not isinstance(ours, type(theirs)):
        return [f"{where}: JAX raises {type(theirs).__name__}, multiinit {type(ours).__name__}: {ours}"]
    if not isinstance(ours, mi.MultiinitError):
        return [f"{where}: multiinit raises a foreign {type(ours).__name__}: {ours}"]
    return []


# --------------------------------------------------------------------------- name, signature


@pytest.mark.parametrize("name", NAMES)
def test_name(name) -> None:
    short = _short(name)
    differences = []
    if not hasattr(init, short):
        differences.append("multiinit.flax.initializers has no such name")
    elif (
        not callable(_native(name)) or inspect.isclass(_native(name)) or name.endswith(".Initializer")
    ) and getattr(init, short) is not _native(name):
        # Types, aliases and protocols: the same object, so annotations and isinstance agree.
        differences.append(f"{getattr(init, short)!r} is not {name} ({_native(name)!r})")
    _conforms(name, "name", differences)


@pytest.mark.parametrize("name", [n for n in NAMES if n in CASES or _short(n) in ("zeros_init", "ones_init")])
def test_signature(name) -> None:
    short = _short(name)
    if not hasattr(init, short):
        return  # test_name holds it to the table
    theirs, ours = inspect.signature(_native(name)), inspect.signature(getattr(init, short))
    differences = [] if ours == theirs else [f"{ours} != {theirs}"]
    # The initializer a constructor returns: JAX's closure init(key, shape, dtype=..., out_sharding=None).
    for args, kwargs, _ in CASES.get(name, [])[:2]:
        for extra in ({}, {"dtype": jnp.bfloat16}):
            if name in INITIALIZERS or "dtype" in kwargs:
                extra = {}
            made_theirs, made_ours = (
                _make(jax_init, name, args, {**kwargs, **extra}),
                _make(init, name, args, {**kwargs, **extra}),
            )
            a, b = inspect.signature(made_theirs), inspect.signature(made_ours)
            if a != b:
                differences.append(
                    f"{name}(*{args}, **{kwargs | extra}) returns init{b}, JAX's returns init{a}"
                )
    _conforms(name, "signature", differences)


# --------------------------------------------------------------------------- law

LAW_DTYPES = ["float32", "bfloat16", "float16", "complex64"]
X64_DTYPES = ["float64", "complex128"]


def _cases(name: str, dtypes: list[str], rest: list[str]) -> list[tuple[tuple, dict, tuple[int, ...], str]]:
    """``(args, kwargs, shape, dtype)``: a name's first arguments on its first shape in every one
    of ``dtypes`` and on its other shapes in the first of them, its other arguments in ``rest``
    only. The dtype and the shape (the fans) are parameters of the same code, which the first
    arguments cover; their cross product would only repeat it, and every compile costs a second."""
    out = []
    for i, (args, kwargs, shapes) in enumerate(CASES[name]):
        for j, shape in enumerate(shapes):
            these = (dtypes if j == 0 else dtypes[:1]) if i == 0 else [d for d in dtypes if d in rest]
            out += [(args, kwargs, shape, dtype) for dtype in these]
    return out


def _parts(x: Any) -> list[np.ndarray]:
    x = np.asarray(x)
    if np.iscomplexobj(x):
        return [x.real.astype(np.float64).ravel(), x.imag.astype(np.float64).ravel()]
    return [x.astype(np.float64).ravel()]


def _support(name: str, args: tuple, kwargs: dict) -> tuple[float, float] | None:
    """The closed support a truncated normal promises, else None."""
    if name != "truncated_normal":
        return None
    bound = inspect.signature(jax_init.truncated_normal).bind(*args, **kwargs)
    bound.apply_defaults()
    s, lower, upper = bound.arguments["stddev"], bound.arguments["lower"], bound.arguments["upper"]
    low, high = sorted((s * lower, s * upper))
    return low, high


def _orthonormality(x: Any, column_axis: int) -> float:
    """How far the array flattened to (rest, shape[column_axis]) is from orthonormal columns
    (or rows, when it is wider than tall)."""
    x = np.moveaxis(np.asarray(x).astype(np.complex128), column_axis, -1)
    flat = x.reshape(-1, x.shape[-1])
    gram = flat.conj().T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.conj().T
    scale = np.abs(np.diagonal(gram)).mean()
    return float(np.abs(gram / scale - np.eye(gram.shape[0])).max())


def _law_differences(name: str, dtypes: list[str]) -> list[str]:
    differences = []
    for args, kwargs, shape, dtype in _cases(name, dtypes, ["float32"]):
        where = f"{name}(*{args}, **{kwargs})(key, {shape}, {dtype})"
        theirs, error = _outcome(
            lambda: _make(jax_init, name, args, kwargs)(jax.random.key(2), shape, jnp.dtype(dtype))
        )
        if error is not None:
            continue  # JAX refuses the dtype: the dtype aspect
        ours = _make(init, name, args, kwargs)(jax.random.key(1), shape, jnp.dtype(dtype))
        if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
            differences.append(f"{where}: {ours.dtype}{ours.shape} vs JAX's {theirs.dtype}{theirs.shape}")
            continue
        for a, b in zip(_parts(ours), _parts(theirs), strict=True):
            check = stats.check_same(a, b)
            if not check.passed:
                differences.append(f"{where}: {check}")
        support = _support(name, args, kwargs)
        if support is not None:
            for label, x in (("ours", ours), ("JAX's", theirs)):
                values = np.concatenate(_parts(x))
                if values.min() < support[0] or values.max() > support[1]:
                    differences.append(f"{where}: {label} values leave {support}")
        if name in ("orthogonal", "delta_orthogonal") and "float16" not in dtype:
            axis = (args[1] if len(args) > 1 else -1) if name == "orthogonal" else -1
            x_ours, x_theirs = np.asarray(ours), np.asarray(theirs)
            if name == "delta_orthogonal":  # the centre tap is the orthogonal matrix
                centre = tuple((k - 1) // 2 for k in shape[:-2])
                x_ours, x_theirs = x_ours[centre], x_theirs[centre]
            tolerance = 1e-4 if dtype in ("float32", "complex64") else 1e-10
            if (_orthonormality(x_theirs, axis) <= tolerance) != (_orthonormality(x_ours, axis) <= tolerance):
                differences.append(
                    f"{where}: orthonormal {_orthonormality(x_ours, axis):.2g}, JAX's "
                    f"{_orthonormality(x_theirs, axis):.2g}"
                )
    return differences


@pytest.mark.parametrize("name", [n for n in DRAWN if n in RANDOM])
def test_law(name) -> None:
    differences = _law_differences(name, LAW_DTYPES)
    with jax.enable_x64(True):
        differences += _law_differences(name, X64_DTYPES)
    _conforms(name, "law", differences)


@pytest.mark.parametrize("name", DRAWN)
def test_the_spec_behind_each_call_is_the_law_jax_draws(name) -> None:
    """``init.<name>(...).spec`` means what JAX's call draws: JAX's float32 draw, viewed in
    logical layout, passes ``multiinit.stats.check`` against the spec (its analytic law, and
    a KS test against the NumPy reference draw); so explain, portable mode and the report,
    which read the spec, describe what the drop-in does."""
    for args, kwargs, shapes in CASES[name]:
        for shape in shapes:
            spec = _make(init, name, args, kwargs).spec
            theirs = np.asarray(_make(jax_init, name, args, kwargs)(jax.random.key(5), shape, jnp.float32))
            view = LogicalView.of(shape, SPATIAL_IN_OUT)
            fans = spec.fans(shape) if isinstance(spec, mi.spec.WithAxes) else None
            inner = spec.spec if isinstance(spec, mi.spec.WithAxes) else spec
            verdict = stats.check(view.to_logical(theirs), inner, fans=fans)
            assert verdict.passed, f"{name}(*{args}, **{kwargs}) on {shape}: spec {spec!r}: {verdict}"


# --------------------------------------------------------------------------- dtype

ALL_DTYPES = [
    "bool",
    "uint8",
    "int8",
    "int32",
    "uint32",
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]


def _dtype_differences(name: str) -> list[str]:
    differences = []
    args, kwargs, shapes = CASES[name][0]
    shape = shapes[0]
    for dtype in ALL_DTYPES:
        where = f"{name}(*{args}, **{kwargs})(key, {shape}, {dtype})"
        theirs, their_error = _outcome(
            lambda: _make(jax_init, name, args, kwargs)(KEY, shape, jnp.dtype(dtype))
        )
        ours, our_error = _outcome(lambda: _make(init, name, args, kwargs)(KEY, shape, jnp.dtype(dtype)))
        found = _compare_outcomes(where, their_error, our_error)
        if not found and theirs is not None and (ours.dtype, ours.shape) != (theirs.dtype, theirs.shape):
            found = [f"{where}: {ours.dtype}{ours.shape}, JAX's {theirs.dtype}{theirs.shape}"]
        differences += found
    return differences


@pytest.mark.parametrize("name", DRAWN)
def test_dtype(name) -> None:
    differences = _dtype_differences(name)
    with jax.enable_x64(True):
        differences += _dtype_differences(name)
    _conforms(name, "dtype", differences)


def test_dtype_none_is_jaxs_default_float_and_the_constructors_dtype_is_the_default() -> None:
    for module in (jax_init, init):
        assert module.glorot_uniform()(KEY, (4, 8)).dtype == jnp.float32
        assert module.glorot_uniform(dtype=jnp.bfloat16)(KEY, (4, 8)).dtype == jnp.bfloat16
        assert module.glorot_uniform(dtype=jnp.bfloat16)(KEY, (4, 8), None).dtype == jnp.float32
        with jax.enable_x64(True):
            assert module.normal()(KEY, (4, 8)).dtype == jnp.float64
            assert module.zeros(KEY, (4, 8)).dtype == jnp.float64


# --------------------------------------------------------------------------- error

inf, nan = math.inf, math.nan


def C(**call: Any) -> dict[str, Any]:
    """A call of the initializer: key, shape, dtype (and out_sharding), with defaults."""
    return {"key": KEY, "shape": (4, 6), **call}


#: JAX's own bad inputs, one fault each: (constructor args, kwargs, call); zeros/ones take no
#: constructor arguments.
BAD: dict[str, list[tuple[tuple, dict, dict]]] = {
    "zeros": [
        ((), {}, C(shape=(-1, 3))),
        ((), {}, C(shape=(2.0, 3))),
        ((), {}, C(dtype="foo")),
        ((), {}, C(shape="ab")),
        ((), {}, C(out_sharding="x")),
    ],
    "constant": [
        ((None,), {}, C()),
        (("x",), {}, C()),
        ((2**70,), {}, C(dtype=jnp.int32)),
        ((1 + 2j,), {}, C()),
        ((1 + 2j,), {}, C(dtype=jnp.complex64)),
        ((nan,), {}, C()),
        ((-inf,), {}, C()),
        ((jnp.arange(6.0),), {}, C()),
        ((jnp.arange(4.0),), {}, C()),
        ((1.0,), {}, C(dtype="foo")),
        ((1.0,), {}, C(shape=(-1,))),
        ((1.0,), {}, C(out_sharding="x")),
    ],
    "uniform": [
        (("x",), {}, C()),
        ((None,), {}, C()),
        ((1 + 1j,), {}, C()),
        ((nan,), {}, C()),
        ((inf,), {}, C()),
        ((jnp.ones(6),), {}, C()),
        ((), {}, C(key=0)),
        ((), {}, C(key=None)),
        ((), {}, C(shape=(2.5,))),
        ((), {}, C(shape=(-2,))),
        ((), {}, C(dtype="foo")),
        ((), {}, C(dtype=jnp.int32)),
        ((), {}, C(dtype=jnp.complex64)),
        ((), {}, C(dtype=bool)),
        ((), {}, C(out_sharding=3)),
    ],
    "normal": [
        (("x",), {}, C()),
        ((None,), {}, C()),
        ((1j,), {}, C()),
        ((1j,), {}, C(dtype=jnp.complex64)),
        ((nan,), {}, C()),
        ((-inf,), {}, C()),
        ((), {}, C(key="k")),
        ((), {}, C(dtype=jnp.int32)),
        ((), {}, C(dtype=jnp.uint8)),
        ((), {}, C(shape=(3, 1.5))),
    ],
    "truncated_normal": [
        (("x",), {}, C()),
        ((1.0,), {"lower": "x"}, C()),
        ((1.0,), {"upper": None}, C()),
        ((1.0,), {"lower": 2.0, "upper": -2.0}, C()),
        ((1.0,), {"lower": 1.0, "upper": 1.0}, C()),
        ((1.0,), {"lower": nan}, C()),
        ((nan,), {}, C()),
        ((), {}, C(dtype=jnp.complex64)),
        ((), {}, C(dtype=jnp.int32)),
        ((), {}, C(key=0)),
    ],
    "variance_scaling": [
        ((1.0, "bad", "uniform"), {}, C()),
        ((1.0, "fan_in", "bad"), {}, C()),
        ((1.0, None, "uniform"), {}, C()),
        ((1.0, "fan_in", "untruncated_normal"), {}, C()),
        (("x", "fan_in", "uniform"), {}, C()),
        ((None, "fan_in", "uniform"), {}, C()),
        ((-1.0, "fan_in", "uniform"), {}, C()),
        ((nan, "fan_in", "normal"), {}, C()),
        ((1.0, "fan_in", "normal"), {}, C(shape=(3,))),
        ((1.0, "fan_in", "normal"), {}, C(shape=())),
        ((1.0, "fan_in", "uniform"), {}, C(shape=(0, 3))),
        ((1.0, "fan_out", "uniform"), {}, C(shape=(3, 0))),
        ((1.0, "fan_in", "uniform"), {"in_axis": 5}, C()),
        ((1.0, "fan_in", "uniform"), {"in_axis": "x"}, C()),
        ((1.0, "fan_in", "uniform"), {"in_axis": 1.5}, C()),
        ((1.0, "fan_in", "uniform"), {"in_axis": 0, "out_axis": 0}, C()),
        ((1.0, "fan_in", "uniform"), {"batch_axis": (0, 0)}, C(shape=(3, 4, 5))),
        ((1.0, "fan_in", "truncated_normal"), {}, C(dtype=jnp.int32)),
        ((1.0, "fan_in", "uniform"), {}, C(dtype=bool)),
        ((1.0, "fan_in", "normal"), {}, C(key=None)),
    ],
    "orthogonal": [
        ((), {}, C(shape=(3,))),
        ((), {}, C(dtype=jnp.int32)),
        ((), {}, C(dtype=jnp.bfloat16)),
        ((), {}, C(dtype=jnp.float16)),
        ((1.0, 5), {}, C()),
        ((1.0, "x"), {}, C()),
        (("x",), {}, C()),
        ((nan,), {}, C()),
        ((), {}, C(out_sharding=jax.sharding.PartitionSpec())),
        ((), {}, C(key=0)),
    ],
    "delta_orthogonal": [
        ((), {}, C(shape=(3, 3))),
        ((), {}, C(shape=(1, 1, 1, 1, 3, 3))),
        ((), {}, C(shape=(3, 4, 3))),
        ((1.0, 2), {}, C(shape=(3, 3, 4))),
        ((), {}, C(shape=(3, 3, 4), dtype=jnp.int32)),
        ((), {}, C(shape=(3, 3, 4), dtype=jnp.bfloat16)),
        ((inf,), {}, C(shape=(3, 3, 4))),
        ((), {}, C(shape=(3, 3, 4), out_sharding=jax.sharding.PartitionSpec())),
    ],
}
BAD["ones"] = BAD["zeros"]
for _name in SCALED:
    BAD[_name] = [
        ((), {"in_axis": 5}, C()),
        ((), {"out_axis": "x"}, C()),
        ((), {}, C(shape=(5,))),
        ((), {}, C(shape=(0, 4))),
        ((), {"in_axis": 0, "out_axis": (0, 1)}, C(shape=(3, 4, 5))),
        ((), {}, C(dtype=jnp.int32)),
        ((), {}, C(key=0)),
        ((), {}, C(dtype="foo")),
    ]


@pytest.mark.parametrize("name", [n for n in PUBLIC if n in BAD and n not in ALIASES])
def test_error(name) -> None:
    differences = []
    for args, kwargs, call in BAD[name]:
        where = f"{name}(*{args}, **{kwargs})(**{call})"
        _, theirs = _outcome(lambda: _make(jax_init, name, args, kwargs)(**call))
        _, ours = _outcome(lambda: _make(init, name, args, kwargs)(**call))
        if theirs is None and ours is None:
            raise AssertionError(f"{where} is not a bad input for either: take it out of BAD")
        differences += _compare_outcomes(where, theirs, ours)
    _conforms(name, "error", differences)


# --------------------------------------------------------------------------- numbers

NUMBER_DTYPES = ["float32", "bfloat16", "float16", "complex64", "int32"]


def _bits(x: Any) -> bytes:
    x = np.asarray(x)
    return x.dtype.str.encode() + x.tobytes()


def _number_differences(name: str, dtypes: list[str], rest: list[str]) -> list[str]:
    differences = []
    for args, kwargs, shape, dtype in _cases(name, dtypes, rest):
        where = f"{name}(*{args}, **{kwargs})(key, {shape}, {dtype})"
        native = _make(jax_init, name, args, kwargs)
        jitted, error = _outcome(lambda: jax.jit(lambda k: native(k, shape, jnp.dtype(dtype)))(KEY))
        if error is not None:
            continue  # JAX refuses: the dtype and error aspects
        eager = native(KEY, shape, jnp.dtype(dtype))
        drop_in = _make(init, name, args, kwargs)
        ours = drop_in(KEY, shape, jnp.dtype(dtype))
        ours_jitted = jax.jit(lambda k: drop_in(k, shape, jnp.dtype(dtype)))(KEY)
        if _bits(ours) != _bits(jitted):
            differences.append(f"{where}: other values than JAX's (jitted)")
        elif _bits(ours_jitted) != _bits(ours):
            differences.append(f"{where}: jitted, other values than eager")
        elif _bits(eager) == _bits(jitted) and _bits(ours) != _bits(eager):
            differences.append(f"{where}: other values than JAX's (eager)")
    return differences


@pytest.mark.parametrize("name", DRAWN)
def test_numbers(name) -> None:
    differences = _number_differences(name, NUMBER_DTYPES, ["float32", "bfloat16", "complex64", "int32"])
    # With x64 the same code runs in wider types: the first arguments cover it (each case costs
    # two compiles, and the other arguments' float32 numbers are checked above).
    with jax.enable_x64(True):
        differences += _number_differences(name, ["float64", "complex128", "float32"], [])
    _conforms(name, "numbers", differences)


@pytest.mark.parametrize("name", [n for n in EXTRAS if _short(n) in ("zeros_init", "ones_init")])
def test_numbers_flax_extras(name) -> None:
    ours, theirs = getattr(init, _short(name))(), _native(name)()
    differences = []
    for dtype in ("float32", "int32", "bool", "complex64"):
        if _bits(ours(KEY, (3, 4), jnp.dtype(dtype))) != _bits(theirs(KEY, (3, 4), jnp.dtype(dtype))):
            differences.append(f"{name}()(key, (3, 4), {dtype}): other values")
    _conforms(name, "numbers", differences)


# --------------------------------------------------------------------------- beyond single calls


def test_the_drop_in_is_an_initializer_for_annotations_and_flax() -> None:
    import flax.linen as nn

    g = init.glorot_uniform()
    assert isinstance(g, jax_init.Initializer) and isinstance(init.zeros, jax_init.Initializer)
    assert g == init.glorot_uniform() and hash(g) == hash(init.glorot_uniform()) and g != init.glorot_normal()
    assert init.zeros_init() is init.zeros and init.ones_init() is init.ones
    layer = nn.Dense(8, kernel_init=init.lecun_normal(), bias_init=init.zeros_init())
    ours = layer.init(KEY, jnp.ones((1, 4)))["params"]
    theirs = nn.Dense(8, kernel_init=jax_init.lecun_normal(), bias_init=linen_init.zeros_init()).init(
        KEY, jnp.ones((1, 4))
    )["params"]
    for leaf in ("kernel", "bias"):
        assert _bits(ours[leaf]) == _bits(theirs[leaf])
    linear = nnx.Linear(4, 8, kernel_init=init.orthogonal(), rngs=nnx.Rngs(0))
    native = nnx.Linear(4, 8, kernel_init=nnx_init.orthogonal(), rngs=nnx.Rngs(0))
    assert _bits(linear.kernel.get_value()) == _bits(native.kernel.get_value())


def test_out_sharding_as_jax_takes_it() -> None:
    """On an explicit 4-device mesh (a subprocess: XLA's device count is fixed at start), every
    drop-in that takes ``out_sharding`` gives JAX's values with JAX's sharding."""
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import jax, numpy as np
        from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
        import jax.nn.initializers as J
        from multiinit.flax import initializers as I
        mesh = jax.make_mesh((4,), ("x",), axis_types=(AxisType.Explicit,))
        key = jax.random.key(0)
        with jax.set_mesh(mesh):
            for name, args in [
                ("glorot_uniform", ()),
                ("he_normal", ()),
                ("uniform", (0.5,)),
                ("truncated_normal", (0.1,)),
                ("constant", (2.0,)),
                ("zeros", None),
            ]:
                native = getattr(J, name) if args is None else getattr(J, name)(*args)
                ours = getattr(I, name) if args is None else getattr(I, name)(*args)
                for sharding in (P("x"), NamedSharding(mesh, P(None, "x"))):
                    a = jax.jit(lambda k: native(k, (8, 16), out_sharding=sharding))(key)
                    b = jax.jit(lambda k: ours(k, (8, 16), out_sharding=sharding))(key)
                    c = ours(key, (8, 16), out_sharding=sharding)
                    assert np.array_equal(a, b) and np.array_equal(b, c), name
                    assert a.sharding == b.sharding == c.sharding, (name, a.sharding, b.sharding, c.sharding)
        print("ok")
    """)
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
