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
convolutions, where the frameworks' own fans differ. Numbers are printed to 6 significant
digits. Nothing here imports a framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from .fans import LogicalView, as_shape, compute_fans
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
    XavierNormal,
    XavierUniform,
)

__all__ = ["Explanation", "explain", "FRAMEWORKS"]

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

    def __str__(self) -> str:
        lines = [f"{self.spec!r} on a {self.backend} weight of shape {self.shape}"]
        fans = f"; fan_in {self.fans[0]}, fan_out {self.fans[1]}" if self.fans else ""
        lines.append(f"  logical (out, in, *spatial): {self.logical_shape}{fans}")
        lines.append(f"  law: {self.law}")
        for framework in FRAMEWORKS:
            code = self.native.get(framework)
            shown = code if code is not None else f"{_NONE} ({self.why_not.get(framework, '')})"
            lines.append(f"  {framework + ':':<6} {shown}")
        return "\n".join(lines)


def _truncated_std(low: float, high: float) -> float:
    """Std of N(0, 1) restricted to [low, high]."""
    phi = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda t: 0.5 * math.erfc(-t / math.sqrt(2))  # noqa: E731
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
        distribution, number = vs.law(*fans)
        if distribution == "uniform":
            text = f"U(-{_n(number)}, {_n(number)})"
        elif distribution == "untruncated_normal":
            text = f"N(0, {_n(number)}^2), untruncated"
        else:
            text = (f"N(0, {_n(number)}^2) cut to +-{_n(2 * number)} (2 sigma), "
                    f"std {_n(number * TRUNCATED_STD_2)}")
        return text if vs is spec else f"{text}; as {vs!r}"
    if isinstance(spec, Orthogonal):
        rows = logical[0]
        cols = math.prod(logical) // rows if rows else 0
        return (f"orthogonal: flattened to ({rows}, {cols}), W W^T = {_n(spec.gain)}^2 I on the shorter side, "
                f"entries of std {_n(spec.gain / math.sqrt(max(rows, cols, 1)))}")
    if isinstance(spec, Eye):
        return "the identity: ones on the diagonal of (out, in)"
    if isinstance(spec, Dirac):
        centre = tuple(k // 2 for k in logical[2:])
        return f"dirac: 1 at [g*out/groups + d, d, *{centre}] for d < min(out/groups, in), groups={spec.groups}"
    if isinstance(spec, Sparse):
        rows = logical[0]
        return (f"N(0, {_n(spec.std)}^2) with ceil({_n(spec.sparsity)}*{rows}) = "
                f"{math.ceil(spec.sparsity * rows)} zeros in each column")
    if isinstance(spec, Mixture):
        return " + ".join(f"{_n(w)} x [{_law_text(s, logical, fans)}]" for w, s in spec.components)
    if isinstance(spec, Custom):
        return f"the user function {spec.name!r} (NumPy, logical layout): no analytic law"
    return repr(spec)


_KERAS_NAMES = {GlorotUniform: "GlorotUniform", GlorotNormal: "GlorotNormal", HeUniform: "HeUniform",
                HeNormal: "HeNormal", LecunUniform: "LecunUniform", LecunNormal: "LecunNormal"}
_JAX_NAMES = {cls: cls.kind for cls in _KERAS_NAMES}
_JAX_DISTRIBUTION = {"uniform": "uniform", "untruncated_normal": "normal", "truncated_normal": "truncated_normal"}
_MX_FACTOR = {"fan_in": "in", "fan_out": "out", "fan_avg": "avg"}


def _torch(spec: Spec, fans) -> tuple[str | None, str]:
    f = "torch.nn.init."
    if isinstance(spec, Constant):
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
    if vs is not None:
        distribution, number = vs.law(*fans)
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


def _keras(spec: Spec, fans) -> tuple[str | None, str]:
    k = "keras.initializers."
    if isinstance(spec, Constant):
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
    if vs is not None:
        return f'{k}VarianceScaling(scale={_n(vs.scale)}, mode="{vs.mode}", distribution="{vs.distribution}")', ""
    if isinstance(spec, Orthogonal):
        return f"{k}Orthogonal(gain={_n(spec.gain)})", ""
    if isinstance(spec, Eye):
        return f"{k}Identity()", ""
    if isinstance(spec, Dirac):
        return None, "Keras has no dirac (identity conv) initializer"
    if isinstance(spec, Sparse):
        return None, "Keras has no sparse initializer"
    return None, "Keras has no mixture or custom-law initializer built in"


def _flax(spec: Spec, fans) -> tuple[str | None, str]:
    j = "jax.nn.initializers."
    if isinstance(spec, Constant):
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
            return f"{j}truncated_normal(stddev={_n(spec.std)}, lower={_n(spec.low)}, upper={_n(spec.high)})", ""
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


def _mxnet(spec: Spec, fans) -> tuple[str | None, str]:
    m = "mx.init."
    if isinstance(spec, Constant):
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


def explain(spec: Spec, shape: Sequence[int], backend: str = "torch") -> Explanation:
    """What ``spec`` means for a weight of ``shape`` in ``backend``'s own layout.

    Gives the logical shape, the fans used, the law with its numbers, and the equivalent
    native call in each of the four frameworks (or why there is none).

    >>> import multiinit as mi
    >>> e = mi.explain(mi.he_normal(), (3, 3, 64, 128), "keras")
    >>> e.fans, e.native["mxnet"] is None, e.native["flax"]
    ((576, 1152), True, 'jax.nn.initializers.he_normal()')
    """
    from .errors import SpecError
    from .reference import check_shape

    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec")
    name = resolve(backend)
    layout = BACKENDS[name].layout
    shape = as_shape(shape)
    view = LogicalView.of(shape, layout)
    logical = view.logical_shape
    check_shape(spec, logical)
    fans = compute_fans(logical) if len(logical) >= 2 else None
    explanation = Explanation(spec, name, tuple(int(s) for s in shape), logical, fans, _law_text(spec, logical, fans))
    for framework in FRAMEWORKS:
        code, why = _NATIVE[framework](spec, fans)
        explanation.native[framework] = code
        if code is None:
            explanation.why_not[framework] = why
    return explanation
