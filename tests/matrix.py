"""The cross-backend matrix: which specs, which shapes, and how each backend draws one cell.

Each backend draws through its *public* compiled form (what a user writes), in its own native
layout; the cell is then viewed in logical layout and checked with ``multiinit.stats``. The
attention case is a multi-axis kernel stated with ``mi.with_axes`` in each backend's own
layout (``attention_form``): one spec, one law, whatever the framework stores.
Frameworks are imported inside the drawing functions, so this module loads in every env.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import multiinit as mi
from multiinit import stats
from multiinit.fans import LogicalView, from_logical_shape
from multiinit.registry import adapter


def seed_chapter_my_init(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """d2l's custom initializer: U(-10, 10), then zero where |w| < 5."""
    w = rng.uniform(-10, 10, shape)
    return w * (np.abs(w) >= 5)


#: Every spec kind of the contract, with parameters that make mistakes visible (asymmetric
#: bounds, gains != 1, fan_out modes).
SPECS: list[mi.Spec] = [
    mi.zeros(),
    mi.ones(),
    mi.constant(42),
    mi.uniform(-0.5, 0.25),
    mi.normal(0.5, 0.01),
    mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5),
    mi.trunc_normal(std=0.02),  # torch's trunc_normal_ defaults: no truncation at all
    mi.xavier_uniform(gain=mi.calculate_gain("relu")),
    mi.xavier_normal(gain=2.0),
    mi.kaiming_uniform(a=math.sqrt(5)),
    mi.kaiming_normal(mode="fan_out", nonlinearity="relu"),
    mi.glorot_uniform(),
    mi.glorot_normal(),
    mi.he_uniform(),
    mi.he_normal(),
    mi.lecun_uniform(),
    mi.lecun_normal(),
    mi.variance_scaling(0.5, "fan_avg", "truncated_normal"),
    mi.orthogonal(gain=2.0),
    mi.eye(),
    mi.dirac(groups=2),
    mi.sparse(0.3, std=0.01),
    mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
    mi.custom(seed_chapter_my_init, name="matrix.my_init"),
]

#: Logical shapes: a dense weight (out 256, in 128) and a 3x3 conv (out 64, in 32): n >= 18,432.
SHAPES = {"dense": (256, 128), "conv": (64, 32, 3, 3)}

#: A multi-axis attention kernel: the query projection of a 64-wide model onto 8 heads of 32
#: (Keras' ``MultiHeadAttention`` and Flax's ``DenseGeneral`` store it ``(64, 8, 32)``), n = 16,384.
#: Its in and out axes, each in order; a backend stores them in its own layout
#: (``ATTENTION_LAYOUTS``) and states them with ``mi.with_axes`` (``attention_form``).
ATTENTION_IN, ATTENTION_OUT = (64,), (8, 32)
#: The fans every framework gives one such projection: (in, out) = (64, 8 x 32).
ATTENTION_FANS = (math.prod(ATTENTION_IN), math.prod(ATTENTION_OUT))
#: Each native layout's reading of the kernel: out axes first where weights are (out, in, ...)
#: (torch, MXNet, and the NumPy reference's logical layout), in first where kernels are
#: (..., in, out) (Keras, Flax).
ATTENTION_LAYOUTS = {mi.fans.OUT_IN: "out,out,in", mi.fans.SPATIAL_IN_OUT: "in,out,out"}
#: The attention case is about fans: every fan-based spec, stated with the kernel's axes.
#: (Whole-tensor laws such as orthogonal or sparse have no single meaning on a 3-D kernel
#: across frameworks -- each flattens it its own way -- so they are not drawn on it.)
ATTENTION_SPECS: list[mi.Spec] = [s for s in SPECS if s.uses_fans]

#: Seeds: the backend's draw and the independent reference draw it is compared with.
BACKEND_SEED = 1
REFERENCE_SEED = 12345


@dataclass
class Cell:
    backend: str
    spec: mi.Spec
    case: str

    @property
    def logical_shape(self) -> tuple[int, ...]:
        if self.case == "attention":
            return (ATTENTION_FANS[1], ATTENTION_FANS[0])
        return SHAPES[self.case]

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.spec!r}-{self.case}"


def _draw_numpy(spec: mi.Spec, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return mi.compile(spec, "numpy")(shape, seed=seed)


def _draw_torch(spec: mi.Spec, shape: tuple[int, ...], seed: int) -> np.ndarray:
    import torch

    tensor = torch.empty(shape, dtype=torch.float32)
    mi.compile(spec, "torch")(tensor, generator=torch.Generator().manual_seed(seed))
    return tensor.numpy()


def _draw_keras(spec: mi.Spec, shape: tuple[int, ...], seed: int) -> np.ndarray:
    import keras

    initializer = mi.compile(spec, "keras", seed=seed)
    return np.asarray(keras.ops.convert_to_numpy(initializer(shape, dtype="float32")))


def _draw_flax(spec: mi.Spec, shape: tuple[int, ...], seed: int) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    return np.asarray(mi.compile(spec, "flax")(jax.random.key(seed), shape, jnp.float32))


def _draw_mxnet(spec: mi.Spec, shape: tuple[int, ...], seed: int) -> np.ndarray:
    import mxnet as mx

    array = mx.nd.zeros(shape, dtype="float32")
    mi.compile(spec, "mxnet", seed=seed)(mx.init.InitDesc("matrix_weight"), array)
    return array.asnumpy()


DRAW: dict[str, Callable[[mi.Spec, tuple[int, ...], int], np.ndarray]] = {
    "numpy": _draw_numpy,
    "torch": _draw_torch,
    "keras": _draw_keras,
    "flax": _draw_flax,
    "mxnet": _draw_mxnet,
}


def cells(backends: list[str]) -> list[Cell]:
    cases = [*SHAPES, "attention"]
    return [
        Cell(b, spec, case)
        for b in backends
        for spec in SPECS
        for case in cases
        if case != "attention" or spec in ATTENTION_SPECS
    ]


def native_layout(backend: str) -> str:
    """The named layout a backend stores weights in (the NumPy reference's is logical)."""
    return adapter(backend).LAYOUT if backend != "numpy" else mi.fans.OUT_IN


def attention_form(spec: mi.Spec, backend: str) -> tuple[mi.Layout, tuple[int, ...], mi.Spec]:
    """The attention kernel in ``backend``'s own layout: its axis roles, its native shape, and
    ``spec`` stated with ``mi.with_axes`` on those axes (what a user of that framework writes).

    >>> layout, shape, stated = attention_form(mi.he_normal(), "numpy")
    >>> layout, shape, stated
    (Layout('out,out,in'), (8, 32, 64), with_axes(he_normal(), in_axis=2, out_axis=(0, 1)))
    """
    layout = mi.Layout(ATTENTION_LAYOUTS[native_layout(backend)])
    sizes = {"in": list(ATTENTION_IN), "out": list(ATTENTION_OUT)}
    shape = tuple(sizes[role].pop(0) for role in layout.roles)
    ins = tuple(i for i, role in enumerate(layout.roles) if role == "in")
    outs = tuple(i for i, role in enumerate(layout.roles) if role == "out")
    stated = mi.with_axes(
        spec, in_axis=ins[0] if len(ins) == 1 else ins, out_axis=outs[0] if len(outs) == 1 else outs
    )
    return layout, shape, stated


def framework_versions(backend: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    packages = {
        "numpy": ["numpy"],
        "torch": ["torch"],
        "keras": ["keras", "tensorflow-cpu", "tensorflow", "jax", "jaxlib", "torch"],
        "flax": ["jax", "jaxlib", "flax"],
        "mxnet": ["mxnet"],
    }[backend]
    found = {"numpy": version("numpy")}
    for package in packages:
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def histogram_range(spec: mi.Spec, shape: tuple[int, ...]) -> tuple[float, float] | None:
    """Where to bin a cell's values, the same in every env (from the law, not the data)."""
    law = stats.law(spec, shape)
    if law is None:
        ref = mi.reference.sample(spec, shape, seed=REFERENCE_SEED, dtype="float64")
        return float(ref.min()), float(ref.max())
    if law.exact is not None:
        return None
    if law.orthogonal_gain is not None:
        half = 4.5 * law.orthogonal_gain / math.sqrt(max(shape[0], math.prod(shape[1:])))
        return -half, half
    lo, hi = law.support
    spread = 4.5 * math.sqrt(law.variance)
    lo = lo if math.isfinite(lo) else law.mean - spread
    hi = hi if math.isfinite(hi) else law.mean + spread
    pad = 0.02 * (hi - lo)
    return lo - pad, hi + pad


def run_cell(cell: Cell) -> dict[str, Any]:
    """Draw one cell natively and check it; returns the JSON-ready record."""
    if cell.case == "attention":
        return _run_attention_cell(cell)
    layout = native_layout(cell.backend)
    native_shape = from_logical_shape(cell.logical_shape, layout)
    record: dict[str, Any] = {
        "backend": cell.backend,
        "spec": repr(cell.spec),
        "spec_dict": cell.spec.to_dict(),
        "case": cell.case,
        "shape": list(native_shape),
        "logical_shape": list(cell.logical_shape),
        "layout": layout,
        "versions": framework_versions(cell.backend),
    }
    try:
        mi.reference.check_shape(cell.spec, cell.logical_shape)
    except mi.ShapeError as expected:
        # The reference refuses this shape: the backend must refuse it too, with ShapeError.
        try:
            DRAW[cell.backend](cell.spec, native_shape, BACKEND_SEED)
        except mi.ShapeError as raised:
            record.update(verdict="pass", refused=str(raised), checks=[], law=f"refused: {expected}")
        except Exception as other:  # noqa: BLE001 - any other outcome is the failure to report
            record.update(
                verdict="fail",
                refused=f"{type(other).__name__}: {other}",
                checks=[],
                law=f"refused: {expected}",
            )
        else:
            record.update(
                verdict="fail",
                refused="drew values instead of raising ShapeError",
                checks=[],
                law=f"refused: {expected}",
            )
        return record
    native = DRAW[cell.backend](cell.spec, native_shape, BACKEND_SEED)
    if tuple(native.shape) != native_shape:
        record.update(verdict="fail", checks=[], law="", refused=f"drew shape {native.shape}")
        return record
    logical = LogicalView.of(native_shape, layout).to_logical(native)
    _judge(record, cell, logical, stats.check(logical, cell.spec, reference_seed=REFERENCE_SEED), None)
    return record


def _run_attention_cell(cell: Cell) -> dict[str, Any]:
    """The attention kernel, stated with ``with_axes`` in the backend's own layout, drawn through
    its compiled form, viewed as logical (out 8 x 32, in 64) and checked against the law with
    the fans (64, 256) every framework gives one query projection."""
    layout, native_shape, stated = attention_form(cell.spec, cell.backend)
    record: dict[str, Any] = {
        "backend": cell.backend,
        "spec": repr(cell.spec),  # the same on every backend: one row of the report
        "spec_dict": cell.spec.to_dict(),
        "stated": repr(stated),
        "case": cell.case,
        "shape": list(native_shape),
        "logical_shape": list(cell.logical_shape),
        "layout": layout.text,
        "versions": framework_versions(cell.backend),
    }
    try:
        native = DRAW[cell.backend](stated, native_shape, BACKEND_SEED)
    except Exception as raised:  # noqa: BLE001 - a backend that cannot draw it is the failure to report
        record.update(
            verdict="fail",
            checks=[],
            law=f"{cell.spec!r} with fans {ATTENTION_FANS}",
            refused=f"{type(raised).__name__}: {raised}",
        )
        return record
    if tuple(native.shape) != native_shape:
        record.update(verdict="fail", checks=[], law="", refused=f"drew shape {native.shape}")
        return record
    logical = layout.view(native_shape).to_logical(native)
    verdict = stats.check(logical, cell.spec, fans=ATTENTION_FANS, reference_seed=REFERENCE_SEED)
    _judge(record, cell, logical, verdict, ATTENTION_FANS)
    return record


def _judge(
    record: dict[str, Any],
    cell: Cell,
    logical: np.ndarray,
    verdict: stats.Verdict,
    fans: tuple[int, int] | None,
) -> None:
    """Fill ``record`` with the verdict, the summary, the analytic law (with ``fans`` when the
    cell states them) and the histogram."""
    values = logical.astype(np.float64).ravel()
    summary = {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "zeros": float((values == 0).mean()),
    }
    the_law = stats.law(cell.spec, cell.logical_shape, fans)
    analytic = None
    if the_law is not None:
        analytic = {
            "mean": the_law.mean,
            "std": math.sqrt(the_law.variance),
            "zeros": the_law.atoms.get(0.0, 0.0)
            if the_law.exact is None
            else float((the_law.exact == 0).mean()),
        }
    bins = histogram_range(cell.spec, cell.logical_shape)
    histogram = None
    if bins is not None:
        counts, edges = np.histogram(values, bins=60, range=bins)
        histogram = {
            "counts": counts.tolist(),
            "edges": edges.tolist(),
            "outside": int(values.size - counts.sum()),
        }
    record.update(
        verdict="pass" if verdict.passed else "fail",
        law=verdict.law,
        checks=[
            {
                "name": c.name,
                "value": c.value,
                "expected": c.expected,
                "tolerance": c.tolerance,
                "p": c.p,
                "passed": c.passed,
            }
            for c in verdict.checks
        ],
        summary=summary,
        analytic=analytic,
        histogram=histogram,
        n=int(values.size),
    )


def failure_message(record: dict[str, Any]) -> str:
    """Names the backend, the spec, the statistic and the two values."""
    head = (
        f"backend {record['backend']}, spec {record.get('stated', record['spec'])}, "
        f"{record['case']} shape {tuple(record['shape'])}"
    )
    if record.get("refused") is not None and not record["checks"]:
        return f"{head}: {record['law']}; the backend: {record['refused']}"
    failed = [c for c in record["checks"] if not c["passed"]]
    parts = []
    for c in failed:
        if c["p"] is not None:
            parts.append(f"{c['name']}: D={c['value']:.4g} with p={c['p']:.3g} < alpha {c['tolerance']:g}")
        else:
            parts.append(
                f"{c['name']}: got {c['value']:.6g}, expected {c['expected']:.6g} +- {c['tolerance']:.3g}"
            )
    return f"{head} disagrees with {record['law']}: " + "; ".join(parts)


# --------------------------------------------------------------------------- native equivalents
# mi.explain names the native call that draws the same law; running that code is the proof.


def _native_torch(code: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    import torch

    torch.manual_seed(seed)
    w = torch.empty(shape)
    eval(code, {"torch": torch, "w": w})  # code generated by multiinit.explain, not user input
    return w.numpy()


def _native_keras(code: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    import keras

    keras.utils.set_random_seed(seed)
    initializer = eval(code, {"keras": keras})
    return np.asarray(keras.ops.convert_to_numpy(initializer(shape, dtype="float32")))


def _native_flax(code: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    initializer = eval(code, {"jax": jax})
    return np.asarray(initializer(jax.random.key(seed), shape, jnp.float32))


def _native_mxnet(code: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    import mxnet as mx

    mx.random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - some mx.init classes draw with NumPy's global generator
    array = mx.nd.zeros(shape, dtype="float32")
    eval(code, {"mx": mx})._init_weight("matrix_weight", array)
    return array.asnumpy()


NATIVE = {"torch": _native_torch, "keras": _native_keras, "flax": _native_flax, "mxnet": _native_mxnet}
