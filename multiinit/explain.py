"""``explain``: what a spec means for one shape in one framework, and how each framework would
say it natively.

    >>> import multiinit as mi
    >>> print(mi.explain(mi.xavier_normal(gain=2.0), (300, 400), "torch"))
    xavier_normal(gain=2.0) on a torch weight of shape (300, 400)
      logical (out, in, *spatial): (300, 400); fan_in 400, fan_out 300
      law: N(0, 0.106904^2), untruncated; as variance_scaling(scale=4.0, mode='fan_avg', distribution='untruncated_normal')
      torch: torch.nn.init.xavier_normal_(w, gain=2)
      keras: keras.initializers.VarianceScaling(scale=4, mode="fan_avg", distribution="untruncated_normal")
      flax:  jax.nn.initializers.variance_scaling(4, "fan_avg", "normal")
      mxnet: mx.init.Xavier(rnd_type="gaussian", factor_type="avg", magnitude=4)

Native equivalents are written for a plain weight of that shape (a dense or conv kernel in
the framework's layout); at model level, multiinit also handles transposed and depthwise
convolutions, where the frameworks' own fans differ. A weight read with other axis roles
(``explain(..., layout="in,out,out")``, or a ``with_axes`` spec) gets, in its own backend, the
native call that reads its stored shape with those axes (JAX's ``in_axis``/``out_axis``/
``batch_axis``, Keras' ``input_axes``/``output_axes``, else the numbers written out), and in
the other frameworks the call for a plain weight of the same logical shape. Numbers are
printed to 6 significant digits. Nothing here imports a framework.

``plan_params`` (and ``multiinit.plan`` on a model) shows, for every parameter of a model,
the rule that selects it, its layer's kind, its logical shape and the fans its law uses.
"""  # noqa: E501 - doctest output lines, as printed

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from .errors import ShapeError
from .fans import Layout, LogicalView, as_layout, as_shape, compute_fans
from .registry import BACKENDS, resolve
from .spec import (
    TRUNCATED_STD_2,
    Constant,
    Custom,
    Dirac,
    Eye,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    KaimingNormal,
    KaimingUniform,
    LecunNormal,
    LecunUniform,
    Mixture,
    Normal,
    Orthogonal,
    Sparse,
    Spec,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
    WithAxes,
    XavierNormal,
    XavierUniform,
    is_negative_zero,
)

if TYPE_CHECKING:  # for the annotation only: plan_params imports rules when it is called
    from .rules import Param

__all__ = ["Explanation", "explain", "FRAMEWORKS", "Plan", "PlanRow", "plan_params"]

#: The four frameworks native equivalents are given for.
FRAMEWORKS = ("torch", "keras", "flax", "mxnet")
_NONE = "no native equivalent"


def _n(x: float) -> str:
    return f"{x:.6g}"


@dataclass
class Explanation:
    """What ``spec`` means on ``shape`` in ``backend``: fans, law, and native equivalents.

    ``native[framework]`` is the equivalent native call as code (``w`` stands for the tensor
    in torch), or None, with the reason in ``why_not[framework]``.
    """

    spec: Spec
    backend: str
    shape: tuple[int, ...]
    logical_shape: tuple[int, ...]
    fans: tuple[int, int] | None
    law: str
    native: dict[str, str | None] = field(default_factory=dict)
    why_not: dict[str, str] = field(default_factory=dict)
    #: The axis roles the weight was read with (``explain(..., layout=)``), or None.
    layout: str | None = None
    #: How many leading logical axes are batch axes (not counted in the fans).
    batch: int = 0
    #: Where the fans came from when the spec states axes (``with_axes``), or None.
    axes: str | None = None

    def __str__(self) -> str:
        stored = f" stored as {self.layout!r}" if self.layout else ""
        lines = [f"{self.spec!r} on a {self.backend} weight of shape {self.shape}{stored}"]
        fans = f"; fan_in {self.fans[0]}, fan_out {self.fans[1]}" if self.fans else ""
        if self.axes:
            fans += f" (from {self.axes} of {self.shape})"
        names = "(*batch, out, in, *spatial)" if self.batch else "(out, in, *spatial)"
        batch = f", {self.batch} batch axes" if self.batch else ""
        lines.append(f"  logical {names}: {self.logical_shape}{batch}{fans}")
        lines.append(f"  law: {self.law}")
        for framework in FRAMEWORKS:
            code = self.native.get(framework)
            shown = code if code is not None else f"{_NONE} ({self.why_not.get(framework, '')})"
            lines.append(f"  {framework + ':':<6} {shown}")
        return "\n".join(lines)


def _truncated_std(low: float, high: float) -> float:
    """Std of N(0, 1) restricted to [low, high]."""

    def phi(t: float) -> float:
        return math.exp(-t * t / 2) / math.sqrt(2 * math.pi)

    def cdf(t: float) -> float:
        return 0.5 * math.erfc(-t / math.sqrt(2))

    mass = cdf(high) - cdf(low)
    if not mass > 0:
        # Both bounds so far out in one tail that the mass underflows: integrate the density
        # relative to its value at the inner bound a, exp(-u - (u/a)**2/2) for u = a*(|x| - a),
        # over the part of the interval where it is not negligible (Simpson's rule).
        a = min(abs(low), abs(high))
        width = min((high - low) * a, 60.0)
        n = 4000
        step = width / n
        moments = [0.0, 0.0, 0.0]
        for i in range(n + 1):
            u = i * step
            weight = (1 if i in (0, n) else 4 if i % 2 else 2) * math.exp(-u - (u / a) ** 2 / 2)
            moments[0] += weight
            moments[1] += weight * u
            moments[2] += weight * u * u
        mean = moments[1] / moments[0]
        return math.sqrt(max(moments[2] / moments[0] - mean * mean, 0.0)) / a
    first = (phi(low) - phi(high)) / mass
    second = (low * phi(low) - high * phi(high)) / mass
    return math.sqrt(max(1 + second - first * first, 0.0))


def _law_of(vs: VarianceScaling, fans: tuple[int, int] | None) -> tuple[str, float]:
    # A fan-based spec has fans here: check_shape refused it for a shape without them.
    return vs.law(*cast("tuple[int, int]", fans))


def _law_text(spec: Spec, logical: tuple[int, ...], fans: tuple[int, int] | None) -> str:
    if isinstance(spec, Constant):
        return f"every element {_n(spec.value)}"
    if isinstance(spec, Uniform):
        return f"U[{_n(spec.low)}, {_n(spec.high)})"
    if isinstance(spec, Normal):
        return f"N({_n(spec.mean)}, {_n(spec.std)}^2)"
    if isinstance(spec, TruncatedNormal):
        lo, hi = spec.bounds
        std = spec.std * _truncated_std(spec.low, spec.high)
        return f"N({_n(spec.mean)}, {_n(spec.std)}^2) cut to [{_n(lo)}, {_n(hi)}] (std {_n(std)})"
    vs = spec.as_variance_scaling()
    if vs is not None:
        distribution, number = _law_of(vs, fans)
        if distribution == "uniform":
            text = f"U(-{_n(number)}, {_n(number)})"
        elif distribution == "untruncated_normal":
            text = f"N(0, {_n(number)}^2), untruncated"
        else:
            text = (
                f"N(0, {_n(number)}^2) cut to +-{_n(2 * number)} (2 sigma), "
                f"std {_n(number * TRUNCATED_STD_2)}"
            )
        return text if vs is spec else f"{text}; as {vs!r}"
    if isinstance(spec, Orthogonal):
        rows = logical[0]
        cols = math.prod(logical) // rows if rows else 0
        return (
            f"orthogonal: flattened to ({rows}, {cols}), W W^T = {_n(spec.gain)}^2 I on the shorter side, "
            f"entries of std {_n(spec.gain / math.sqrt(max(rows, cols, 1)))}"
        )
    if isinstance(spec, Eye):
        return "the identity: ones on the diagonal of (out, in)"
    if isinstance(spec, Dirac):
        centre = tuple(k // 2 for k in logical[2:])
        return (
            f"dirac: 1 at [g*out/groups + d, d, *{centre}] for d < min(out/groups, in), groups={spec.groups}"
        )
    if isinstance(spec, Sparse):
        rows = logical[0]
        return (
            f"N(0, {_n(spec.std)}^2) with ceil({_n(spec.sparsity)}*{rows}) = "
            f"{math.ceil(spec.sparsity * rows)} zeros in each column"
        )
    if isinstance(spec, Mixture):
        return " + ".join(f"{_n(w)} x [{_law_text(s, logical, fans)}]" for w, s in spec.components)
    if isinstance(spec, Custom):
        called = "once per tile of the stream rule" if spec.elementwise else "once for the whole tensor"
        return f"the user function {spec.name!r} (NumPy, logical layout, called {called}): no analytic law"
    return repr(spec)


_KERAS_NAMES: dict[type[Spec], str] = {
    GlorotUniform: "GlorotUniform",
    GlorotNormal: "GlorotNormal",
    HeUniform: "HeUniform",
    HeNormal: "HeNormal",
    LecunUniform: "LecunUniform",
    LecunNormal: "LecunNormal",
}
_JAX_NAMES = {cls: cls.kind for cls in _KERAS_NAMES}
_JAX_DISTRIBUTION = {
    "uniform": "uniform",
    "untruncated_normal": "normal",
    "truncated_normal": "truncated_normal",
}
_MX_FACTOR = {"fan_in": "in", "fan_out": "out", "fan_avg": "avg"}


def _fixed(framework: str, vs: VarianceScaling, fans: tuple[int, int] | None) -> tuple[str | None, str]:
    """The native call with this shape's numbers written out (the framework cannot compute
    these fans itself: JAX's fan_geo_avg, or fans from stated axes)."""
    distribution, number = _law_of(vs, fans)
    n, lo, hi = _n(number), _n(-number), _n(2 * number)
    if framework == "torch":
        f = "torch.nn.init."
        if distribution == "uniform":
            return f"{f}uniform_(w, a={lo}, b={n})", ""
        if distribution == "untruncated_normal":
            return f"{f}normal_(w, mean=0, std={n})", ""
        return f"{f}trunc_normal_(w, std={n}, a={_n(-2 * number)}, b={hi})", ""
    if framework == "keras":
        k = "keras.initializers."
        if distribution == "uniform":
            return f"{k}RandomUniform(minval={lo}, maxval={n})", ""
        if distribution == "untruncated_normal":
            return f"{k}RandomNormal(mean=0, stddev={n})", ""
        return f"{k}TruncatedNormal(mean=0, stddev={n})", ""
    if framework == "flax":
        j = "jax.nn.initializers."
        if distribution == "uniform":
            return None, "jax's uniform(scale) is U[0, scale): it cannot start below 0"
        if distribution == "untruncated_normal":
            return f"{j}normal(stddev={n})", ""
        return f"{j}truncated_normal(stddev={n}, lower=-2, upper=2)", ""
    m = "mx.init."
    if distribution == "uniform":
        return f"{m}Uniform(scale={n})", ""
    if distribution == "untruncated_normal":
        return f"{m}Normal(sigma={n})", ""
    return None, "MXNet 1.9 has no truncated normal, so no truncated variance scaling"


def _torch(spec: Spec, fans: tuple[int, int] | None) -> tuple[str | None, str]:
    f = "torch.nn.init."
    if isinstance(spec, Constant):
        if is_negative_zero(spec.value):  # not zeros; and _n writes -0.0 as -0, an int
            return f"{f}constant_(w, -0.0)", ""
        if spec.value == 0:
            return f"{f}zeros_(w)", ""
        return (f"{f}ones_(w)", "") if spec.value == 1 else (f"{f}constant_(w, {_n(spec.value)})", "")
    if isinstance(spec, Uniform):
        return f"{f}uniform_(w, a={_n(spec.low)}, b={_n(spec.high)})", ""
    if isinstance(spec, Normal):
        return f"{f}normal_(w, mean={_n(spec.mean)}, std={_n(spec.std)})", ""
    if isinstance(spec, TruncatedNormal):
        lo, hi = spec.bounds
        return f"{f}trunc_normal_(w, mean={_n(spec.mean)}, std={_n(spec.std)}, a={_n(lo)}, b={_n(hi)})", ""
    if isinstance(spec, XavierUniform):
        return f"{f}xavier_uniform_(w, gain={_n(spec.gain)})", ""
    if isinstance(spec, XavierNormal):
        return f"{f}xavier_normal_(w, gain={_n(spec.gain)})", ""
    if isinstance(spec, KaimingUniform):  # KaimingNormal is a subclass
        name = "kaiming_normal_" if isinstance(spec, KaimingNormal) else "kaiming_uniform_"
        return f'{f}{name}(w, a={_n(spec.a)}, mode="{spec.mode}", nonlinearity="{spec.nonlinearity}")', ""
    vs = spec.as_variance_scaling()
    if vs is not None and vs.mode == "fan_geo_avg":
        return _fixed("torch", vs, fans)
    if vs is not None:
        distribution, number = _law_of(vs, fans)
        if distribution == "truncated_normal":
            # torch cuts at absolute values: the bounds must be computed for this shape.
            return f"{f}trunc_normal_(w, std={_n(number)}, a={_n(-2 * number)}, b={_n(2 * number)})", ""
        kind = "uniform" if distribution == "uniform" else "normal"
        if vs.mode == "fan_avg":
            return f"{f}xavier_{kind}_(w, gain={_n(math.sqrt(vs.scale))})", ""
        if vs.scale <= 2:  # kaiming's leaky_relu gain^2 = 2/(1+a^2) reaches any scale <= 2
            a = math.sqrt(2 / vs.scale - 1)
            return f'{f}kaiming_{kind}_(w, a={_n(a)}, mode="{vs.mode}", nonlinearity="leaky_relu")', ""
        if distribution == "uniform":
            return f"{f}uniform_(w, a={_n(-number)}, b={_n(number)})", ""
        return f"{f}normal_(w, mean=0, std={_n(number)})", ""
    if isinstance(spec, Orthogonal):
        return f"{f}orthogonal_(w, gain={_n(spec.gain)})", ""
    if isinstance(spec, Eye):
        return f"{f}eye_(w)", ""
    if isinstance(spec, Dirac):
        return f"{f}dirac_(w, groups={spec.groups})", ""
    if isinstance(spec, Sparse):
        return f"{f}sparse_(w, sparsity={_n(spec.sparsity)}, std={_n(spec.std)})", ""
    return None, "torch has no mixture or custom-law initializer"


def _keras(spec: Spec, fans: tuple[int, int] | None) -> tuple[str | None, str]:
    k = "keras.initializers."
    if isinstance(spec, Constant):
        if is_negative_zero(spec.value):
            return None, (
                "Keras' Constant(-0.0) fills +0.0 on TensorFlow once a 0.0 went through "
                "TensorFlow's cache of converted scalars, which takes -0.0 for 0.0"
            )
        if spec.value == 0:
            return f"{k}Zeros()", ""
        return (f"{k}Ones()", "") if spec.value == 1 else (f"{k}Constant({_n(spec.value)})", "")
    if isinstance(spec, Uniform):
        return f"{k}RandomUniform(minval={_n(spec.low)}, maxval={_n(spec.high)})", ""
    if isinstance(spec, Normal):
        return f"{k}RandomNormal(mean={_n(spec.mean)}, stddev={_n(spec.std)})", ""
    if isinstance(spec, TruncatedNormal):
        if (spec.low, spec.high) == (-2.0, 2.0):
            return f"{k}TruncatedNormal(mean={_n(spec.mean)}, stddev={_n(spec.std)})", ""
        return None, "Keras' TruncatedNormal always cuts at +-2 stddev"
    if type(spec) in _KERAS_NAMES:
        return f"{k}{_KERAS_NAMES[type(spec)]}()", ""
    vs = spec.as_variance_scaling()
    if vs is not None and vs.mode == "fan_geo_avg":
        return _fixed("keras", vs, fans)  # Keras' VarianceScaling has no fan_geo_avg
    if vs is not None:
        return (
            f'{k}VarianceScaling(scale={_n(vs.scale)}, mode="{vs.mode}", distribution="{vs.distribution}")',
            "",
        )
    if isinstance(spec, Orthogonal):
        return f"{k}Orthogonal(gain={_n(spec.gain)})", ""
    if isinstance(spec, Eye):
        return f"{k}Identity()", ""
    if isinstance(spec, Dirac):
        return None, "Keras has no dirac (identity conv) initializer"
    if isinstance(spec, Sparse):
        return None, "Keras has no sparse initializer"
    return None, "Keras has no mixture or custom-law initializer built in"


def _flax(spec: Spec, fans: tuple[int, int] | None) -> tuple[str | None, str]:
    j = "jax.nn.initializers."
    if isinstance(spec, Constant):
        if is_negative_zero(spec.value):  # not zeros; and _n writes -0.0 as -0, an int
            return f"{j}constant(-0.0)", ""
        if spec.value == 0:
            return f"{j}zeros", ""
        return (f"{j}ones", "") if spec.value == 1 else (f"{j}constant({_n(spec.value)})", "")
    if isinstance(spec, Uniform):
        if spec.low == 0:
            return f"{j}uniform(scale={_n(spec.high)})", ""
        return None, "jax's uniform(scale) is U[0, scale): it cannot start below 0"
    if isinstance(spec, Normal):
        if spec.mean == 0:
            return f"{j}normal(stddev={_n(spec.std)})", ""
        return None, "jax's normal(stddev) has mean 0"
    if isinstance(spec, TruncatedNormal):
        if spec.mean == 0:
            return (
                f"{j}truncated_normal(stddev={_n(spec.std)}, lower={_n(spec.low)}, upper={_n(spec.high)})",
                "",
            )
        return None, "jax's truncated_normal has mean 0"
    if type(spec) in _JAX_NAMES:
        return f"{j}{_JAX_NAMES[type(spec)]}()", ""
    vs = spec.as_variance_scaling()
    if vs is not None:
        return f'{j}variance_scaling({_n(vs.scale)}, "{vs.mode}", "{_JAX_DISTRIBUTION[vs.distribution]}")', ""
    if isinstance(spec, Orthogonal):
        return f"{j}orthogonal(scale={_n(spec.gain)})", ""
    if isinstance(spec, Eye):
        return None, "jax.nn.initializers has no identity initializer"
    if isinstance(spec, Dirac):
        return None, "jax's delta_orthogonal puts an orthogonal matrix at index (k-1)//2, not torch's dirac"
    if isinstance(spec, Sparse):
        return None, "jax has no sparse initializer"
    return None, "jax has no mixture or custom-law initializer built in"


def _mxnet(spec: Spec, fans: tuple[int, int] | None) -> tuple[str | None, str]:
    m = "mx.init."
    if isinstance(spec, Constant):
        if is_negative_zero(spec.value):
            return None, "MXNet writes a scalar -0.0 as +0.0 (its Constant(-0.0) too)"
        if spec.value == 0:
            return f"{m}Zero()", ""
        return (f"{m}One()", "") if spec.value == 1 else (f"{m}Constant({_n(spec.value)})", "")
    if isinstance(spec, Uniform):
        if spec.low == -spec.high:
            return f"{m}Uniform(scale={_n(spec.high)})", ""
        return None, "mx.init.Uniform(scale) is symmetric, U(-scale, scale)"
    if isinstance(spec, Normal):
        if spec.mean == 0:
            return f"{m}Normal(sigma={_n(spec.std)})", ""
        return None, "mx.init.Normal(sigma) has mean 0"
    if isinstance(spec, TruncatedNormal):
        return None, "MXNet 1.9 has no truncated normal initializer"
    vs = spec.as_variance_scaling()
    if vs is not None and vs.mode == "fan_geo_avg":
        return _fixed("mxnet", vs, fans)  # Xavier's factor_type has no geometric mean
    if vs is not None:
        factor = _MX_FACTOR[vs.mode]
        if vs.distribution == "uniform":  # Xavier's bound is sqrt(magnitude / fan)
            return f'{m}Xavier(rnd_type="uniform", factor_type="{factor}", magnitude={_n(3 * vs.scale)})', ""
        if vs.distribution == "untruncated_normal":
            return f'{m}Xavier(rnd_type="gaussian", factor_type="{factor}", magnitude={_n(vs.scale)})', ""
        return None, "MXNet 1.9 has no truncated normal, so no truncated variance scaling"
    if isinstance(spec, Orthogonal):
        return None, "mx.init.Orthogonal orthogonalizes by SVD without the QR sign fix"
    if isinstance(spec, (Eye, Dirac, Sparse)):
        return None, f"MXNet has no {spec.kind} initializer"
    return None, "MXNet has no mixture or custom-law initializer built in"


_NATIVE = {"torch": _torch, "keras": _keras, "flax": _flax, "mxnet": _mxnet}


def _axes_text(spec: WithAxes) -> str:
    text = f"in_axis={spec.in_axis!r}, out_axis={spec.out_axis!r}"
    return text + (f", batch_axis={spec.batch_axis!r}" if spec.batch_axis != () else "")


def _group(value: int | tuple[int, ...], ndim: int) -> tuple[int, ...]:
    return tuple(a % ndim for a in ((value,) if isinstance(value, int) else value))


def _axes_native(
    framework: str,
    inner: Spec,
    axes: tuple[tuple[int, ...], ...],
    shape: tuple[int, ...],
    fans: tuple[int, int] | None,
) -> tuple[str | None, str]:
    """The backend's own native form for a weight of stored ``shape`` whose fans come from
    stated axes (in, out, batch), not from the framework's plain reading of the shape."""
    vs = inner.as_variance_scaling()
    if vs is None:
        return _NATIVE[framework](inner, fans)
    ins, outs, batch = axes
    if framework == "flax":
        # JAX takes in/out/batch axes with the same meaning.
        def shown(a: tuple[int, ...]) -> str:
            return repr(a[0]) if len(a) == 1 else repr(a)

        text = f"in_axis={shown(ins)}, out_axis={shown(outs)}" + (
            f", batch_axis={shown(batch)}" if batch else ""
        )
        if type(inner) in _JAX_NAMES:
            return f"jax.nn.initializers.{_JAX_NAMES[type(inner)]}({text})", ""
        return (
            f'jax.nn.initializers.variance_scaling({_n(vs.scale)}, "{vs.mode}", '
            f'"{_JAX_DISTRIBUTION[vs.distribution]}", {text})'
        ), ""
    if framework == "keras" and vs.mode != "fan_geo_avg" and len(ins) + len(outs) + len(batch) == len(shape):
        # Keras' input_axes/output_axes ignore every other axis: JAX's meaning when the rest
        # are all batch axes (no receptive field).
        text = f"input_axes={list(ins)}, output_axes={list(outs)}"
        if type(inner) in _KERAS_NAMES:
            return f"keras.initializers.{_KERAS_NAMES[type(inner)]}({text})", ""
        return (
            f'keras.initializers.VarianceScaling(scale={_n(vs.scale)}, mode="{vs.mode}", '
            f'distribution="{vs.distribution}", {text})'
        ), ""
    return _fixed(framework, vs, fans)


def explain(
    spec: Spec, shape: Sequence[int], backend: str = "torch", *, layout: str | Layout | None = None
) -> Explanation:
    """What ``spec`` means for a weight of ``shape`` in ``backend``'s own layout.

    Gives the logical shape, the fans used, the law with its numbers, and the equivalent
    native call in each of the four frameworks (or why there is none). ``layout`` reads the
    weight with other axis roles than the backend's plain kernel (see ``fans.Layout``), as a
    registered layer's parameter is read; a ``with_axes`` spec takes its fans from its axes
    of ``shape``.

    >>> import multiinit as mi
    >>> e = mi.explain(mi.he_normal(), (3, 3, 64, 128), "keras")
    >>> e.fans, e.native["mxnet"] is None, e.native["flax"]
    ((576, 1152), True, 'jax.nn.initializers.he_normal()')
    >>> mi.explain(mi.lecun_normal(), (32, 8, 16), "keras", layout="in,out,out").fans
    (32, 128)
    """
    from .errors import SpecError
    from .reference import check_shape

    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec")
    name = resolve(backend)
    shape = as_shape(shape)
    plain = LogicalView.of(shape, BACKENDS[name].layout)
    dims = plain.native_shape
    inner = spec.spec if isinstance(spec, WithAxes) else spec
    stated = None  # (in, out, batch) axes of the stored shape, when not the plain reading
    if isinstance(spec, WithAxes):
        try:
            fans: tuple[int, int] | None = spec.fans(dims)
        except ShapeError as e:
            raise ShapeError(f"{spec!r} cannot fill a {name} weight of shape {tuple(shape)}: {e}") from None
        ndim = len(dims)
        stated = (_group(spec.in_axis, ndim), _group(spec.out_axis, ndim), _group(spec.batch_axis, ndim))
        roles = ["spatial"] * ndim
        for role, group in zip(("in", "out", "batch"), stated, strict=True):
            for axis in group:
                roles[axis] = role
        try:
            view = Layout(",".join(roles)).view(dims) if layout is None else LogicalView.of(dims, layout)
        except SpecError:  # no in or no out axis: no logical (out, in) reading
            view = plain
    else:
        view = plain if layout is None else LogicalView.of(dims, layout)
        own = view.logical_shape[view.batch :]
        fans = compute_fans(own) if len(own) >= 2 else None
        if view != plain and layout is not None:
            by_role = as_layout(layout).axes(dims)
            stated = (by_role["in"], by_role["out"], by_role["batch"])
    logical = view.logical_shape
    check_shape(spec, logical, fans if (view.batch or isinstance(spec, WithAxes)) else None)
    explanation = Explanation(
        spec,
        name,
        tuple(dims),
        logical,
        fans,
        _law_text(inner, logical, fans),
        layout=None if layout is None else as_layout(layout).text,
        batch=view.batch,
        axes=_axes_text(spec) if isinstance(spec, WithAxes) else None,
    )
    for framework in FRAMEWORKS:
        vs = inner.as_variance_scaling()
        if stated is not None and framework == name:
            # The backend's own call must read the stored shape itself with these axes.
            code, why = _axes_native(framework, inner, stated, explanation.shape, fans)
        elif view.batch and vs is not None:
            # Another framework, a plain weight of this logical shape: it would count the
            # batch axes in its fans, so the numbers are written out.
            code, why = _fixed(framework, vs, fans)
        else:
            code, why = _NATIVE[framework](inner, fans)
        explanation.native[framework] = code
        if code is None:
            explanation.why_not[framework] = why
    return explanation


# --------------------------------------------------------------------------- plan


@dataclass
class PlanRow:
    """One parameter in a ``Plan``: what ``apply`` would do to it, and with which fans.

    ``rule`` is the index of the rule that selects it (None: no rule does) and ``spec`` that
    rule's spec (None: left as it is); ``kind`` its layer's kind ("unknown" when the adapter
    does not know it); ``fans`` the ``(fan_in, fan_out)`` the law uses (for a law without fans,
    the layer's fans, shown for reference; None when there are none); ``guessed`` is True when
    a fan-based law fills a parameter of a layer multiinit does not know, so those fans are a
    guess; ``problem`` is why ``apply`` would refuse the parameter, or None.
    """

    path: str
    role: str
    layer: str | None
    kind: str
    known: bool
    shape: tuple[int, ...]
    logical_shape: tuple[int, ...]
    batch: int
    fans: tuple[int, int] | None
    rule: int | None
    spec: Spec | None
    uses_fans: bool
    guessed: bool
    problem: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the spec as its text, which ``multiinit.parse`` reads back)."""
        return {
            "path": self.path,
            "role": self.role,
            "layer": self.layer,
            "kind": self.kind,
            "known": self.known,
            "shape": list(self.shape),
            "logical_shape": list(self.logical_shape),
            "batch": self.batch,
            "fans": None if self.fans is None else list(self.fans),
            "rule": self.rule,
            "spec": None if self.spec is None else repr(self.spec),
            "uses_fans": self.uses_fans,
            "guessed": self.guessed,
            "problem": self.problem,
        }


class Plan(list[PlanRow]):
    """The rows of ``plan``/``plan_params``, one per parameter in model order, printed as a table.

    ``unmatched`` lists the rules that select no parameter (``apply`` raises ``RuleError`` for
    them unless they are optional); ``guesses`` the rows whose fans are a guess.
    """

    def __init__(self, rows: Sequence[PlanRow] = (), unmatched: Sequence[str] = ()) -> None:
        super().__init__(rows)
        self.unmatched: list[str] = list(unmatched)

    @property
    def guesses(self) -> list[PlanRow]:
        """The rows a fan-based law fills on a layer multiinit does not know."""
        return [row for row in self if row.guessed]

    def to_dict(self) -> dict[str, object]:
        """``{"rows": [...], "unmatched": [...]}``, JSON-ready."""
        return {"rows": [row.to_dict() for row in self], "unmatched": list(self.unmatched)}

    def __str__(self) -> str:
        header = ("path", "layer", "kind", "shape", "logical", "fans in -> out", "rule", "spec")
        table = [header]
        for row in self:
            fans = "" if row.fans is None else f"{row.fans[0]} -> {row.fans[1]}"
            if row.fans is not None and row.spec is not None and not row.uses_fans:
                fans = f"({fans})"
            if row.guessed:
                fans += " ?"
            if row.rule is None:
                spec = "not selected"
            elif row.spec is None:
                spec = "left as it is"
            else:
                spec = repr(row.spec)
            if row.problem:
                spec += f"  !! {row.problem}"
            logical = str(row.logical_shape) + (f" ({row.batch} batch)" if row.batch else "")
            table.append(
                (
                    row.path,
                    row.layer or "",
                    row.kind,
                    str(row.shape),
                    logical,
                    fans,
                    "" if row.rule is None else str(row.rule),
                    spec,
                )
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
            for line in table
        ]
        notes = []
        if any(row.fans is not None and row.spec is not None and not row.uses_fans for row in self):
            notes.append("(fans) the law does not use fans; the layer's are shown")
        if self.guesses:
            notes.append(
                "? fans guessed: the layer is unknown to multiinit (teach it with multiinit.register_layer)"
            )
        for rule in self.unmatched:
            notes.append(f"{rule} selects no parameter")
        return "\n".join(lines + notes)

    def __repr__(self) -> str:
        return (
            f"<Plan of {len(self)} parameters, {len(self.guesses)} guessed, "
            f"{len(self.unmatched)} unmatched rules>"
        )


def plan_params(params: Sequence[Param], rules: object) -> Plan:
    """The ``Plan`` of applying ``rules`` to ``params`` (an adapter's ``params_of(model)``).

    Malformed rules raise ``RuleError`` as ``apply`` would; a rule that selects nothing is
    listed in ``plan.unmatched`` and a spec that cannot fill its parameter gets the reason
    in its row's ``problem``, so the whole plan is seen at once. Nothing is drawn.

    >>> import multiinit as mi
    >>> from multiinit.rules import Param
    >>> from multiinit.fans import LogicalView
    >>> params = [Param("c_fc.weight", LogicalView.of((128, 512), "in,out"), "weight", kind="dense"),
    ...           Param("c_fc.bias", LogicalView((512,)), "bias", fans=(128, 512), kind="dense"),
    ...           Param("pos", LogicalView((1, 16, 128)), "pos")]
    >>> p = mi.plan_params(params, [("weight", mi.kaiming_uniform(a=5 ** 0.5)), ("pos", mi.he_normal())])
    >>> [(row.path, row.fans, row.rule, row.guessed) for row in p]
    [('c_fc.weight', (128, 512), 0, False), ('c_fc.bias', (128, 512), None, False), ('pos', (2048, 128), 1, True)]
    """  # noqa: E501 - doctest output lines, as printed
    from .reference import check_shape
    from .rules import normalize_rules

    normalized = normalize_rules(rules)
    rows = []
    for param in params:
        rule = next((r for r in normalized if r.matches(param)), None)
        spec = rule.spec if rule is not None else None
        problem = None
        fans = None
        uses_fans = bool(spec is not None and spec.uses_fans)
        try:
            fans = (
                param.fans_for(spec)
                if spec is not None and uses_fans
                else (param.fans if param.fans is not None else param.view.fans)
            )
        except ShapeError as e:
            if uses_fans:
                problem = str(e)
        if spec is not None and problem is None:
            try:
                check_shape(spec, param.logical_shape, fans if uses_fans else param.fans, param.path)
            except ShapeError as e:
                problem = str(e)
        known = bool(param.known)
        rows.append(
            PlanRow(
                path=param.path,
                role=param.role,
                layer=None if param.layer is None else type(param.layer).__name__,
                kind=param.kind or "unknown",
                known=known,
                shape=tuple(param.view.native_shape),
                logical_shape=tuple(param.logical_shape),
                batch=getattr(param.view, "batch", 0),
                fans=fans,
                rule=None if rule is None else rule.index,
                spec=spec,
                uses_fans=uses_fans,
                guessed=uses_fans and not known,
                problem=problem,
            )
        )
    unmatched = []
    for rule in normalized:
        optional = getattr(rule.selector, "optional", False)
        if not optional and not any(rule.matches(p) for p in params):
            unmatched.append(rule.describe())
    return Plan(rows, unmatched)
