"""Framework-neutral initializer specs: immutable values, validated when built.

A spec says *which law* fills a tensor, never how a framework draws it. Specs are frozen
dataclasses: hashable, equal by value, and their ``repr`` is the call that builds them, which
``parse`` reads back. ``to_dict``/``from_dict`` give a JSON-ready form. Nothing here imports a
framework, evaluates code or unpickles anything.
"""

from __future__ import annotations

import ast
import itertools
import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, cast

from .errors import SpecError, SpecTypeError, shorten, shown
from .fans import MAX_ELEMENTS, NONLINEARITIES, calculate_gain

if TYPE_CHECKING:  # sample() returns a NumPy array; the specs themselves need no NumPy
    import numpy as np

__all__ = [
    "Spec",
    "Constant",
    "Uniform",
    "Normal",
    "TruncatedNormal",
    "VarianceScaling",
    "XavierUniform",
    "XavierNormal",
    "KaimingUniform",
    "KaimingNormal",
    "GlorotUniform",
    "GlorotNormal",
    "HeUniform",
    "HeNormal",
    "LecunUniform",
    "LecunNormal",
    "Orthogonal",
    "Eye",
    "Dirac",
    "Sparse",
    "Mixture",
    "Custom",
    "WithAxes",
    "CONSTRUCTORS",
    "TRUNCATED_STD_2",
    "zeros",
    "ones",
    "constant",
    "uniform",
    "normal",
    "truncated_normal",
    "trunc_normal",
    "variance_scaling",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "eye",
    "dirac",
    "sparse",
    "mixture",
    "custom",
    "with_axes",
    "from_dict",
    "parse",
    "registered_custom",
    "MAX_TEXT",
    "MAX_DEPTH",
    "MAX_NODES",
]

#: The longest text ``parse`` reads, in characters (longer text is refused before parsing).
MAX_TEXT = 1_000_000
#: The deepest a mixture may nest mixtures (``mixture`` itself, ``from_dict`` and ``parse``).
MAX_DEPTH = 32
#: The most specs one spec may hold, counting a mixture and all its components at every level.
MAX_NODES = 256
#: How deep ``parse`` follows brackets, calls and signs (a mixture level takes three).
_TEXT_DEPTH = 4 * MAX_DEPTH
#: The largest float whose square is finite (gains are squared into a variance scale).
_MAX_SQUARABLE = math.sqrt(1.7976931348623157e308)

#: Std of a standard normal truncated to [-2, 2]; Keras and JAX divide by it so that a
#: truncated variance-scaling draw has exactly the variance scale/fan. Same literal as theirs.
TRUNCATED_STD_2 = 0.87962566103423978

FAN_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


# --------------------------------------------------------------------------- validation


def _fail(kind: str, name: str, value: Any, allowed: str, error: type[SpecError] = SpecError) -> SpecError:
    return error(f"{kind}: {name}={shown(value)} is not allowed; {name} must be {allowed}")


def _number(
    kind: str,
    name: str,
    value: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
) -> float:
    """``value`` as a float, or a SpecError that names ``name``, the value and what is allowed."""
    allowed = "a finite number"
    if gt is not None and lt is not None:
        allowed += f" in ({gt:g}, {lt:g})"
    elif ge is not None and lt is not None:
        allowed += f" in [{ge:g}, {lt:g})"
    elif gt is not None:
        allowed += f" > {gt:g}"
    elif ge is not None:
        allowed += f" >= {ge:g}"
    # bool is an int to Python, and numpy's bool is not a number at all: both are rejected.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(kind, name, value, allowed, SpecTypeError)
    try:
        number = float(value)
    except Exception:  # noqa: BLE001 - an int too large for a float (10**400), a Real whose float() fails
        raise _fail(kind, name, value, f"{allowed} that a float holds (|{name}| <= 1.797e+308)") from None
    if (
        not math.isfinite(number)
        or (gt is not None and not number > gt)
        or (ge is not None and not number >= ge)
        or (lt is not None and not number < lt)
    ):
        raise _fail(kind, name, value, allowed)
    return number


def _choice(kind: str, name: str, value: Any, allowed: Sequence[str], hint: str = "") -> str:
    if not isinstance(value, str) or value not in allowed:
        error = SpecError if isinstance(value, str) else SpecTypeError
        raise error(
            f"{kind}: {name}={shown(value)} is not allowed; {name} must be one of "
            f"{', '.join(repr(a) for a in allowed)}{hint}"
        )
    return value


def _squarable(kind: str, name: str, value: float) -> float:
    """``value`` (a finite float > 0) if its square, the variance scale it gives, is a positive
    finite float; a SpecError naming ``name`` otherwise."""
    square = value * value
    if not (square > 0 and math.isfinite(square)):
        raise _fail(
            kind,
            name,
            value,
            f"a finite number > 0 whose square is finite and > 0 "
            f"(about 2.2e-162 <= {name} <= {_MAX_SQUARABLE:.4g})",
        )
    return value


def _tree(spec: Spec) -> tuple[int, int]:
    """``(specs, mixture levels)`` of a spec: 1 and 0 for anything but a mixture."""
    if not isinstance(spec, Mixture):
        return 1, 0
    sizes = [_tree(component) for _, component in spec.components]
    return 1 + sum(n for n, _ in sizes), 1 + max(d for _, d in sizes)


# --------------------------------------------------------------------------- the spec values


class Spec:
    """Base of every spec: a frozen value that names a law, not a framework call."""

    kind: ClassVar[str]
    #: Parameters the repr shows even at their default (a bare "uniform(low=-1.0)" misleads).
    _always_shown: ClassVar[tuple[str, ...]] = ()
    #: True when the spec draws random numbers (False for constant, eye, dirac).
    random: ClassVar[bool] = True
    #: True when the law depends on the tensor's fans.
    uses_fans: ClassVar[bool] = False

    def _params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def _call_args(self) -> str:
        parts = []
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if (
                f.name not in self._always_shown
                and f.default is not MISSING
                and value == f.default
                and type(value) is type(f.default)
            ):
                continue
            parts.append(f"{f.name}={value!r}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{self.kind}({self._call_args()})"

    def __str__(self) -> str:
        return repr(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict`` turns it back into an equal spec.

        >>> normal(std=0.01).to_dict()
        {'kind': 'normal', 'mean': 0.0, 'std': 0.01}
        """
        return {"kind": self.kind, **self._params()}

    def sample(
        self,
        shape: Sequence[int],
        seed: int | Any = 0,
        dtype: Any = "float32",
        fans: tuple[int, int] | None = None,
        *,
        path: str | None = None,
    ) -> np.ndarray:
        """Draw from the NumPy reference, in logical ``(out, in, *spatial)`` layout.

        ``seed`` is an int or a ``numpy.random.Generator``; ``fans`` overrides the fans of
        ``shape`` (model-level apply passes the weight's fans for a bias); ``path`` names the
        parameter in error messages.

        >>> uniform(5, 10).sample((2, 3), seed=0).shape
        (2, 3)
        """
        from .reference import sample

        return sample(self, shape, seed=seed, dtype=dtype, fans=fans, path=path)

    def to(self, backend: str, **options: Any) -> Any:
        """This spec in a framework's own form; the same as ``multiinit.compile(self, backend)``.

        >>> fill_ = xavier_uniform().to("torch")  # doctest: +SKIP
        """
        from .registry import compile

        return compile(self, backend, **options)

    def as_variance_scaling(self) -> VarianceScaling | None:
        """The ``variance_scaling`` form of a fan-based spec, ``None`` for any other.

        >>> xavier_normal(gain=2.0).as_variance_scaling()
        variance_scaling(scale=4.0, mode='fan_avg', distribution='untruncated_normal')
        """
        return None


def is_negative_zero(value: float) -> bool:
    """True for -0.0, which ``==`` does not tell from 0.0: a constant that must fill -0.0,
    where frameworks and caches keyed by value may give +0.0.

    >>> is_negative_zero(-0.0), is_negative_zero(0.0), is_negative_zero(-1.0)
    (True, False, False)
    """
    return value == 0 and math.copysign(1.0, value) < 0


@dataclass(frozen=True, repr=False)
class Constant(Spec):
    """Every element equal to ``value``; ``zeros()`` and ``ones()`` are constants."""

    value: float
    kind: ClassVar[str] = "constant"
    random: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _number("constant", "value", self.value))

    def __eq__(self, other: object) -> bool:
        # -0.0 is its own constant (it fills -0.0 and prints as such) though -0.0 == 0.0: equal
        # specs must fill the same values, as the adapters' caches of compiled forms and plans,
        # keyed by spec, assume.
        if not isinstance(other, Constant):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[float, bool]:
        return (self.value, is_negative_zero(self.value))

    def __repr__(self) -> str:
        if self.value == 0.0 and not is_negative_zero(self.value):
            return "zeros()"
        if self.value == 1.0:
            return "ones()"
        return f"constant(value={self.value!r})"


@dataclass(frozen=True, repr=False)
class Uniform(Spec):
    """U[low, high): ``low`` included, ``high`` excluded (never JAX's [0, scale))."""

    low: float = 0.0
    high: float = 1.0
    kind: ClassVar[str] = "uniform"
    _always_shown: ClassVar[tuple[str, ...]] = ("low", "high")

    def __post_init__(self) -> None:
        low = _number("uniform", "low", self.low)
        high = _number("uniform", "high", self.high)
        if not low < high:
            raise _fail("uniform", "high", self.high, f"a finite number > low={low!r}")
        if not math.isfinite(high - low):
            # Every sampler draws low + (high - low) * u: the width must be a float too.
            raise _fail(
                "uniform",
                "high",
                self.high,
                f"a finite number such that high - low is finite (with low={low!r}, "
                f"high - low overflows to inf)",
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)


@dataclass(frozen=True, repr=False)
class Normal(Spec):
    """N(mean, std**2), untruncated."""

    mean: float = 0.0
    std: float = 1.0
    kind: ClassVar[str] = "normal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _number("normal", "mean", self.mean))
        object.__setattr__(self, "std", _number("normal", "std", self.std, gt=0))


@dataclass(frozen=True, repr=False)
class TruncatedNormal(Spec):
    """N(mean, std**2) restricted to [mean + low*std, mean + high*std]: bounds in std units.

    ``std`` is the std of the normal before truncation (the result's std is smaller), as in
    torch, Keras and JAX. torch's ``trunc_normal_`` takes *absolute* bounds: use
    ``trunc_normal(mean, std, a, b)`` for those.
    """

    mean: float = 0.0
    std: float = 1.0
    low: float = -2.0
    high: float = 2.0
    kind: ClassVar[str] = "truncated_normal"

    def __post_init__(self) -> None:
        kind = "truncated_normal"
        object.__setattr__(self, "mean", _number(kind, "mean", self.mean))
        object.__setattr__(self, "std", _number(kind, "std", self.std, gt=0))
        low = _number(kind, "low", self.low)
        high = _number(kind, "high", self.high)
        if not low < high:
            raise _fail(kind, "high", self.high, f"a finite number > low={low!r} (std units)")
        _check_bounds(kind, self.mean, self.std, low, high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def bounds(self) -> tuple[float, float]:
        """The absolute bounds ``(mean + low*std, mean + high*std)``."""
        return (self.mean + self.low * self.std, self.mean + self.high * self.std)


def _check_bounds(kind: str, mean: float, std: float, low: float, high: float) -> None:
    """The absolute bounds and their distance must be floats: blame the parameter that overflows."""
    bounds = f"the bounds mean + low*std, mean + high*std (low={low!r}, high={high!r})"
    for bound, name in ((low, "low"), (high, "high")):
        if not math.isfinite(bound * std):
            # The product overflows: the larger factor is the culprit (std on a tie).
            culprit, value = ("std", std) if std >= abs(bound) else (name, bound)
            raise _fail(
                kind,
                culprit,
                value,
                f"small enough that {bounds} are finite: {name}*std overflows with std={std!r}",
            )
    lo, hi = mean + low * std, mean + high * std
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise _fail(kind, "mean", mean, f"small enough that {bounds} are finite with std={std!r}")
    if not math.isfinite(hi - lo):
        raise _fail(kind, "std", std, f"small enough that the distance between {bounds} is finite")


@dataclass(frozen=True, repr=False)
class VarianceScaling(Spec):
    """Keras/JAX variance scaling: variance ``scale / fan`` with fan from ``mode``.

    ``mode`` is ``fan_in``, ``fan_out``, ``fan_avg`` ((fan_in + fan_out) / 2) or JAX's
    ``fan_geo_avg`` (sqrt(fan_in * fan_out)).

    ``uniform`` is U(-sqrt(3*scale/fan), +sqrt(3*scale/fan)); ``untruncated_normal`` is
    N(0, scale/fan); ``truncated_normal`` cuts at two std of a normal whose std is
    sqrt(scale/fan) / 0.8796..., so the result has variance exactly scale/fan.
    """

    scale: float = 1.0
    mode: str = "fan_in"
    distribution: str = "truncated_normal"
    kind: ClassVar[str] = "variance_scaling"
    uses_fans: ClassVar[bool] = True

    def __post_init__(self) -> None:
        kind = "variance_scaling"
        object.__setattr__(self, "scale", _number(kind, "scale", self.scale, gt=0))
        _choice(kind, "mode", self.mode, FAN_MODES)
        hint = ""
        if isinstance(self.distribution, str) and self.distribution == "normal":
            # Keras once read "normal" as truncated and JAX reads it as untruncated: refuse to guess.
            hint = ' ("normal" is truncated in old Keras and untruncated in JAX: say which)'
        _choice(kind, "distribution", self.distribution, DISTRIBUTIONS, hint)

    def as_variance_scaling(self) -> VarianceScaling:
        return self

    def fan(self, fan_in: int, fan_out: int) -> float:
        """The fan this spec divides by, from ``mode``."""
        if self.mode == "fan_in":
            return float(fan_in)
        if self.mode == "fan_out":
            return float(fan_out)
        if self.mode == "fan_geo_avg":
            return math.sqrt(float(fan_in) * float(fan_out))
        return (fan_in + fan_out) / 2.0

    def law(self, fan_in: int, fan_out: int) -> tuple[str, float]:
        """``(distribution, number)`` for these fans.

        ``("uniform", limit)`` is U(-limit, limit); ``("untruncated_normal", std)`` is N(0, std**2);
        ``("truncated_normal", sigma)`` is N(0, sigma**2) cut at +-2 sigma.

        >>> variance_scaling(2.0, "fan_in", "uniform").law(6, 4)
        ('uniform', 1.0)
        """
        try:
            fan = self.fan(fan_in, fan_out)
        except Exception:  # noqa: BLE001 - fans too large for a float, or not numbers at all
            raise SpecError(
                f"variance_scaling: fans=({shown(fan_in)}, {shown(fan_out)}) are not allowed; "
                "fans must be two integers >= 0 of at most 2**48 (MAX_ELEMENTS)"
            ) from None
        if fan <= 0:
            # An empty dimension: nothing will be drawn, but the number must still be finite.
            fan = 1.0
        variance = self.scale / fan
        if self.distribution == "uniform":
            law = ("uniform", math.sqrt(3.0 * variance))
        elif self.distribution == "untruncated_normal":
            law = ("untruncated_normal", math.sqrt(variance))
        else:
            law = ("truncated_normal", math.sqrt(variance) / TRUNCATED_STD_2)
        if not math.isfinite(2 * law[1]):
            # scale / fan overflows when a fan is below 1 (fan_avg of fans 0 and 1 is 0.5).
            raise _fail(
                "variance_scaling",
                "scale",
                self.scale,
                f"small enough for fans (fan_in={fan_in}, fan_out={fan_out}): the {law[0]} "
                f"law's number from scale / {fan!r} overflows",
            )
        return law


class _Scaled(Spec):
    """A named member of the variance-scaling family."""

    uses_fans: ClassVar[bool] = True
    _form: ClassVar[tuple[float, str, str]]

    def as_variance_scaling(self) -> VarianceScaling:
        scale, mode, distribution = self._form
        return VarianceScaling(scale, mode, distribution)


@dataclass(frozen=True, repr=False)
class XavierUniform(_Scaled):
    """torch's xavier_uniform_: U(+-gain*sqrt(6/(fan_in+fan_out)))."""

    gain: float = 1.0
    kind: ClassVar[str] = "xavier_uniform"

    def __post_init__(self) -> None:
        gain = _squarable(self.kind, "gain", _number(self.kind, "gain", self.gain, gt=0))
        object.__setattr__(self, "gain", gain)

    def as_variance_scaling(self) -> VarianceScaling:
        return VarianceScaling(self.gain**2, "fan_avg", "uniform")


@dataclass(frozen=True, repr=False)
class XavierNormal(_Scaled):
    """torch's xavier_normal_: N(0, gain**2 * 2/(fan_in+fan_out)), untruncated."""

    gain: float = 1.0
    kind: ClassVar[str] = "xavier_normal"

    def __post_init__(self) -> None:
        gain = _squarable(self.kind, "gain", _number(self.kind, "gain", self.gain, gt=0))
        object.__setattr__(self, "gain", gain)

    def as_variance_scaling(self) -> VarianceScaling:
        return VarianceScaling(self.gain**2, "fan_avg", "untruncated_normal")


@dataclass(frozen=True, repr=False)
class KaimingUniform(_Scaled):
    """torch's kaiming_uniform_: U(+-gain*sqrt(3/fan)), gain = calculate_gain(nonlinearity, a)."""

    a: float = 0.0
    mode: str = "fan_in"
    nonlinearity: str = "leaky_relu"
    kind: ClassVar[str] = "kaiming_uniform"
    _distribution: ClassVar[str] = "uniform"

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _number(self.kind, "a", self.a))
        _choice(self.kind, "mode", self.mode, ("fan_in", "fan_out"))
        _choice(self.kind, "nonlinearity", self.nonlinearity, NONLINEARITIES)
        if self.nonlinearity == "leaky_relu" and not math.isfinite(self.a * self.a):
            # gain**2 = 2 / (1 + a**2): a square that overflows leaves no variance scale.
            raise _fail(
                self.kind,
                "a",
                self.a,
                f"a finite number whose square is finite (|a| <= {_MAX_SQUARABLE:.4g}), "
                "as the gain 2 / (1 + a**2) needs it",
            )

    @property
    def gain(self) -> float:
        """``calculate_gain(nonlinearity, a)``, as torch computes it."""
        return calculate_gain(self.nonlinearity, self.a)

    def as_variance_scaling(self) -> VarianceScaling:
        return VarianceScaling(self.gain**2, self.mode, self._distribution)


@dataclass(frozen=True, repr=False)
class KaimingNormal(KaimingUniform):
    """torch's kaiming_normal_: N(0, gain**2/fan), untruncated."""

    kind: ClassVar[str] = "kaiming_normal"
    _distribution: ClassVar[str] = "untruncated_normal"


def _named(name: str, scale: float, mode: str, distribution: str, doc: str) -> type[_Scaled]:
    """A parameterless Keras/JAX named initializer: a fixed variance_scaling form."""
    cls = type(
        "".join(part.title() for part in name.split("_")),
        (_Scaled,),
        {
            "__doc__": doc,
            "__module__": __name__,
            "__annotations__": {"kind": "ClassVar[str]"},
            "kind": name,
            "_form": (scale, mode, distribution),
        },
    )
    # type() cannot say it made a subclass of _Scaled; it did.
    return dataclass(frozen=True, repr=False)(cast("type[_Scaled]", cls))


GlorotUniform = _named("glorot_uniform", 1.0, "fan_avg", "uniform", "Keras/JAX glorot_uniform.")
GlorotNormal = _named(
    "glorot_normal",
    1.0,
    "fan_avg",
    "truncated_normal",
    "Keras/JAX glorot_normal: truncated at 2 std and variance-corrected (not torch's xavier_normal).",
)
HeUniform = _named("he_uniform", 2.0, "fan_in", "uniform", "Keras/JAX he_uniform.")
HeNormal = _named(
    "he_normal",
    2.0,
    "fan_in",
    "truncated_normal",
    "Keras/JAX he_normal: truncated and variance-corrected (not torch's kaiming_normal).",
)
LecunUniform = _named("lecun_uniform", 1.0, "fan_in", "uniform", "Keras/JAX lecun_uniform.")
LecunNormal = _named(
    "lecun_normal",
    1.0,
    "fan_in",
    "truncated_normal",
    "Keras/JAX lecun_normal: truncated and variance-corrected (Flax's default kernel init).",
)


@dataclass(frozen=True, repr=False)
class Orthogonal(Spec):
    """torch's orthogonal_: a (semi-)orthogonal matrix from the QR of a normal draw, sign-fixed,
    flattened as (rows=out, cols=everything else) in logical layout, times ``gain``."""

    gain: float = 1.0
    kind: ClassVar[str] = "orthogonal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "gain", _number(self.kind, "gain", self.gain, gt=0))


@dataclass(frozen=True, repr=False)
class Eye(Spec):
    """The identity matrix (ones on the diagonal of a 2-D (out, in) weight)."""

    kind: ClassVar[str] = "eye"
    random: ClassVar[bool] = False


@dataclass(frozen=True, repr=False)
class Dirac(Spec):
    """torch's dirac_: identity-preserving conv kernel, 1 at the spatial centre (index k//2)."""

    groups: int = 1
    kind: ClassVar[str] = "dirac"
    random: ClassVar[bool] = False

    def __post_init__(self) -> None:
        groups = self.groups
        if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
            raise _fail(self.kind, "groups", groups, "an integer >= 1", SpecTypeError)
        if not 1 <= groups <= MAX_ELEMENTS:
            raise _fail(self.kind, "groups", groups, "an integer >= 1 and <= 2**48 (MAX_ELEMENTS)")
        object.__setattr__(self, "groups", int(groups))


@dataclass(frozen=True, repr=False)
class Sparse(Spec):
    """torch's sparse_: N(0, std**2), then ceil(sparsity*rows) entries of each column set to 0."""

    sparsity: float
    std: float = 0.01
    kind: ClassVar[str] = "sparse"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", _number(self.kind, "sparsity", self.sparsity, ge=0, lt=1))
        object.__setattr__(self, "std", _number(self.kind, "std", self.std, gt=0))


@dataclass(frozen=True, repr=False)
class Mixture(Spec):
    """Each element independently takes its value from component i with probability weight_i.

    Every component is drawn for the whole tensor (so fan-based components see the tensor's
    fans) and an independent categorical choice picks one per element.
    """

    components: tuple[tuple[float, Spec], ...]
    kind: ClassVar[str] = "mixture"

    def __post_init__(self) -> None:
        kind = self.kind
        items: Any = self.components  # what the caller gave, checked below
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise _fail(kind, "components", items, "a list of (weight, spec) pairs", SpecTypeError)
        try:
            # At most MAX_NODES - 1 components fit (the mixture counts too): an endless
            # iterator is refused after that many, never followed.
            items = list(itertools.islice(items, MAX_NODES))
        except Exception:  # noqa: BLE001 - whatever a hostile iterable raises while iterating
            raise _fail(kind, "components", self.components, "a list of (weight, spec) pairs") from None
        if len(items) >= MAX_NODES:
            raise _fail(
                kind,
                "components",
                self.components,
                f"a list of fewer than {MAX_NODES} (weight, spec) pairs (MAX_NODES)",
            )
        if not items:
            raise _fail(kind, "components", items, "a non-empty list of (weight, spec) pairs")
        normalized = []
        for i, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise _fail(kind, f"components[{i}]", item, "a (weight, spec) pair", SpecTypeError)
            weight = _number(kind, f"components[{i}] weight", item[0], ge=0)
            if not isinstance(item[1], Spec):
                raise _fail(kind, f"components[{i}] spec", item[1], "a multiinit spec", SpecTypeError)
            if isinstance(item[1], WithAxes):
                # The axes say where the tensor's fans come from, which all components share.
                raise _fail(
                    kind,
                    f"components[{i}] spec",
                    item[1],
                    "a spec without axes; put the mixture inside with_axes(mixture([...]), ...)",
                )
            normalized.append((weight, item[1]))
        nodes, depth = (
            1 + sum(_tree(s)[0] for _, s in normalized),
            1 + max(_tree(s)[1] for _, s in normalized),
        )
        if depth > MAX_DEPTH:
            raise SpecError(
                f"mixture: components nest {depth} mixtures deep, which is not allowed; "
                f"mixtures nest at most {MAX_DEPTH} deep (MAX_DEPTH)"
            )
        if nodes > MAX_NODES:
            raise SpecError(
                f"mixture: components hold {nodes} specs in all, which is not allowed; "
                f"a spec holds at most {MAX_NODES} (MAX_NODES)"
            )
        try:
            total = math.fsum(w for w, _ in normalized)
        except OverflowError:  # weights near the float limit: their sum is not 1 either
            total = math.inf
        if abs(total - 1.0) > 1e-9:
            weights = [w for w, _ in normalized]
            raise _fail(kind, "weights", weights, f"non-negative numbers that sum to 1 (sum is {total!r})")
        object.__setattr__(self, "components", tuple(normalized))

    @property
    def uses_fans(self) -> bool:  # type: ignore[override]
        return any(spec.uses_fans for _, spec in self.components)

    @property
    def random(self) -> bool:  # type: ignore[override]
        live = [spec for weight, spec in self.components if weight > 0]
        return len(live) > 1 or any(spec.random for spec in live)

    def _call_args(self) -> str:
        pairs = ", ".join(f"({w!r}, {s!r})" for w, s in self.components)
        return f"[{pairs}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "components": [{"weight": w, "spec": s.to_dict()} for w, s in self.components],
        }


# Custom functions travel by name only: deserializing looks the name up here and never runs
# or imports anything it was handed.
_CUSTOM: dict[str, Callable[..., Any]] = {}


@dataclass(frozen=True, repr=False)
class Custom(Spec):
    """A user law: ``fn(rng: numpy.random.Generator, shape, dtype) -> array`` in logical layout.

    Building one registers ``fn`` under ``name`` in this process, which is how ``from_dict``
    and ``parse`` find it again; a later registration of the same name replaces the function.
    ``elementwise=True`` is the user's word that ``fn`` draws every element independently from
    one law, whatever the shape: multiinit may then call it once per tile of the stream rule
    (``multiinit.stream``), each tile with its own generator, in parallel (see ``custom``).
    """

    fn: Callable[..., Any]
    name: str
    elementwise: bool = False
    kind: ClassVar[str] = "custom"

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise _fail(self.kind, "fn", self.fn, "a callable fn(rng, shape, dtype) -> array", SpecTypeError)
        if not isinstance(self.name, str):
            raise _fail(self.kind, "name", self.name, "a non-empty string", SpecTypeError)
        if not self.name.strip():
            raise _fail(self.kind, "name", self.name, "a non-empty string")
        if not isinstance(self.elementwise, bool):
            # 0, 1, "yes" or numpy.bool_ would each read as a promise the user did not spell out.
            raise _fail(self.kind, "elementwise", self.elementwise, "True or False", SpecTypeError)
        _CUSTOM[self.name] = self.fn

    def __repr__(self) -> str:
        if self.elementwise:
            return f"custom(name={self.name!r}, elementwise=True)"
        return f"custom(name={self.name!r})"

    def to_dict(self) -> dict[str, Any]:
        # The key appears only when True, so every dict written before it existed reads the same.
        if self.elementwise:
            return {"kind": self.kind, "name": self.name, "elementwise": True}
        return {"kind": self.kind, "name": self.name}


def _axis_argument(name: str, value: Any) -> int | tuple[int, ...]:
    """An axis argument as JAX takes it: an int, or a tuple of ints (a list reads as a tuple)."""
    allowed = "an integer or a tuple of distinct integers (axes of the shape, negative allowed)"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (tuple, list)):
        if not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in value):
            raise _fail("with_axes", name, value, allowed)
        axes = tuple(int(a) for a in value)
        if len(set(axes)) != len(axes):
            raise _fail("with_axes", name, value, allowed)
        return axes
    raise _fail("with_axes", name, value, allowed)


@dataclass(frozen=True, repr=False)
class WithAxes(Spec):
    """A fan-based ``spec`` whose fans come from stated axes of the tensor, with JAX's meaning.

    ``in_axis``, ``out_axis`` and ``batch_axis`` index the shape the initializer is called on
    (an int or a tuple, negative allowed): fan_in = prod(in) x receptive field, fan_out =
    prod(out) x receptive field, where the receptive field is every axis that is none of the
    three, and batch axes count in neither (see ``fans.fans_from_axes``).

    How each backend reads the axes: relative to the shape its compiled initializer receives,
    in that framework's own layout (Keras and Flax: the kernel as stored, ``(..., in, out)``;
    torch and MXNet: ``(out, in, ...)``; NumPy: the logical shape given to ``sample``). At model
    level, the parameter's stored (native) shape; a parameter given its layer weight's fans (a
    bias) keeps them, as fans given explicitly (``sample(..., fans=)``) always win. An adapter
    draws ``spec`` with ``fans = with_axes.fans(native_shape)`` (``Param.fans_for`` does this).
    """

    spec: Spec
    in_axis: int | tuple[int, ...]
    out_axis: int | tuple[int, ...]
    batch_axis: int | tuple[int, ...] = ()
    kind: ClassVar[str] = "with_axes"
    uses_fans: ClassVar[bool] = True

    def __post_init__(self) -> None:
        kind = self.kind
        inner = self.spec
        if not isinstance(inner, Spec) or isinstance(inner, WithAxes) or not inner.uses_fans:
            raise _fail(
                kind,
                "spec",
                inner,
                "a fan-based spec (xavier_*, kaiming_*, glorot_*, he_*, lecun_*, variance_scaling, or a "
                "mixture holding one): the axes say where its fans come from",
            )
        groups = {}
        for name in ("in_axis", "out_axis", "batch_axis"):
            groups[name] = _axis_argument(name, getattr(self, name))
            object.__setattr__(self, name, groups[name])
        seen: dict[int, str] = {}
        for name, value in groups.items():
            for axis in (value,) if isinstance(value, int) else value:
                if axis in seen:
                    raise _fail(kind, name, value, f"axes that {seen[axis]} does not name too (axis {axis})")
                seen[axis] = name

    @property
    def random(self) -> bool:  # type: ignore[override]
        return self.spec.random

    def fans(self, shape: Sequence[int]) -> tuple[int, int]:
        """``(fan_in, fan_out)`` from the axes on ``shape`` (``ShapeError`` when they do not fit).

        >>> with_axes(glorot_uniform(), in_axis=0, out_axis=(1, 2)).fans((32, 8, 16))
        (32, 128)
        """
        from .fans import fans_from_axes

        return fans_from_axes(shape, self.in_axis, self.out_axis, self.batch_axis)

    def _call_args(self) -> str:
        parts = [repr(self.spec), f"in_axis={self.in_axis!r}", f"out_axis={self.out_axis!r}"]
        if self.batch_axis != ():
            parts.append(f"batch_axis={self.batch_axis!r}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        def plain(value: int | tuple[int, ...]) -> int | list[int]:
            return value if isinstance(value, int) else list(value)

        return {
            "kind": self.kind,
            "spec": self.spec.to_dict(),
            "in_axis": plain(self.in_axis),
            "out_axis": plain(self.out_axis),
            "batch_axis": plain(self.batch_axis),
        }


# --------------------------------------------------------------------------- constructors


def zeros() -> Constant:
    """Every element 0.

    >>> zeros()
    zeros()
    """
    return Constant(0.0)


def ones() -> Constant:
    """Every element 1.

    >>> ones().sample((2,)).tolist()
    [1.0, 1.0]
    """
    return Constant(1.0)


def constant(value: float) -> Constant:
    """Every element ``value``, bit for bit in every backend: ``constant(-0.0)`` fills -0.0, and
    is not equal to ``zeros()`` (though ``-0.0 == 0.0`` in Python).

    >>> constant(42)
    constant(value=42.0)
    >>> constant(-0.0) == zeros()
    False
    """
    return Constant(value)


def uniform(low: float = 0.0, high: float = 1.0) -> Uniform:
    """U[low, high).

    >>> uniform(-1, 1)
    uniform(low=-1.0, high=1.0)
    """
    return Uniform(low, high)


def normal(mean: float = 0.0, std: float = 1.0) -> Normal:
    """N(mean, std**2).

    >>> normal(std=0.01)
    normal(std=0.01)
    """
    return Normal(mean, std)


def truncated_normal(
    mean: float = 0.0, std: float = 1.0, low: float = -2.0, high: float = 2.0
) -> TruncatedNormal:
    """N(mean, std**2) cut to [mean + low*std, mean + high*std] (bounds in std units).

    >>> truncated_normal(std=0.02).bounds
    (-0.04, 0.04)
    """
    return TruncatedNormal(mean, std, low, high)


def trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> TruncatedNormal:
    """torch's ``trunc_normal_`` law: bounds ``a``, ``b`` are absolute values, not std units.

    With torch's defaults and a small std (``std=0.02, a=-2, b=2``) the cut is at +-100 std,
    i.e. no truncation at all; this returns the equivalent ``truncated_normal``.

    >>> trunc_normal(std=0.5, a=-1.0, b=1.0)
    truncated_normal(std=0.5)
    """
    kind = "trunc_normal"
    mean = _number(kind, "mean", mean)
    std = _number(kind, "std", std, gt=0)
    a = _number(kind, "a", a)
    b = _number(kind, "b", b)
    if not a < b:
        raise _fail(kind, "b", b, f"a finite number > a={a!r} (absolute value)")
    # The bounds in std units are derived: blame the parameter that makes them overflow.
    for name, bound in (("a", a), ("b", b)):
        if not math.isfinite(bound - mean):
            raise _fail(
                kind, name, bound, f"a finite number such that {name} - mean is finite (mean={mean!r})"
            )
        if not math.isfinite((bound - mean) / std):
            raise _fail(
                kind,
                "std",
                std,
                f"a finite number > 0 large enough that ({name} - mean) / std "
                f"is finite ({name}={bound!r}, mean={mean!r})",
            )
    return TruncatedNormal(mean, std, (a - mean) / std, (b - mean) / std)


def variance_scaling(
    scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal"
) -> VarianceScaling:
    """Keras/JAX ``VarianceScaling``: variance scale/fan (see ``VarianceScaling``).

    >>> variance_scaling(1/3, "fan_in", "uniform").law(fan_in=9, fan_out=1)[1]
    0.3333333333333333
    """
    return VarianceScaling(scale, mode, distribution)


def xavier_uniform(gain: float = 1.0) -> XavierUniform:
    """torch's xavier_uniform_: U(+-gain*sqrt(6/(fan_in+fan_out))).

    >>> xavier_uniform(gain=calculate_gain("relu"))
    xavier_uniform(gain=1.4142135623730951)
    """
    return XavierUniform(gain)


def xavier_normal(gain: float = 1.0) -> XavierNormal:
    """torch's xavier_normal_: N(0, 2*gain**2/(fan_in+fan_out)), untruncated.

    >>> xavier_normal(gain=2.0).as_variance_scaling().scale
    4.0
    """
    return XavierNormal(gain)


def kaiming_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> KaimingUniform:
    """torch's kaiming_uniform_ (``a=math.sqrt(5)`` is torch's default Linear/Conv weight).

    >>> kaiming_uniform(a=5 ** 0.5).as_variance_scaling().scale
    0.3333333333333333
    """
    return KaimingUniform(a, mode, nonlinearity)


def kaiming_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> KaimingNormal:
    """torch's kaiming_normal_: N(0, gain**2/fan), untruncated.

    >>> kaiming_normal(mode="fan_out", nonlinearity="relu")
    kaiming_normal(mode='fan_out', nonlinearity='relu')
    """
    return KaimingNormal(a, mode, nonlinearity)


def glorot_uniform() -> Spec:
    """Keras/JAX glorot_uniform: variance_scaling(1, fan_avg, uniform).

    >>> glorot_uniform().as_variance_scaling().mode
    'fan_avg'
    """
    return GlorotUniform()


def glorot_normal() -> Spec:
    """Keras/JAX glorot_normal: variance_scaling(1, fan_avg, truncated_normal).

    >>> glorot_normal().as_variance_scaling().distribution
    'truncated_normal'
    """
    return GlorotNormal()


def he_uniform() -> Spec:
    """Keras/JAX he_uniform: variance_scaling(2, fan_in, uniform).

    >>> he_uniform()
    he_uniform()
    """
    return HeUniform()


def he_normal() -> Spec:
    """Keras/JAX he_normal: variance_scaling(2, fan_in, truncated_normal).

    >>> he_normal().as_variance_scaling().scale
    2.0
    """
    return HeNormal()


def lecun_uniform() -> Spec:
    """Keras/JAX lecun_uniform: variance_scaling(1, fan_in, uniform).

    >>> lecun_uniform()
    lecun_uniform()
    """
    return LecunUniform()


def lecun_normal() -> Spec:
    """Keras/JAX lecun_normal: variance_scaling(1, fan_in, truncated_normal).

    >>> lecun_normal()
    lecun_normal()
    """
    return LecunNormal()


def orthogonal(gain: float = 1.0) -> Orthogonal:
    """A (semi-)orthogonal weight times ``gain`` (torch's orthogonal_, QR sign fix included).

    >>> orthogonal(gain=2.0)
    orthogonal(gain=2.0)
    """
    return Orthogonal(gain)


def eye() -> Eye:
    """The identity matrix; 2-D weights only.

    >>> eye().sample((2, 3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    return Eye()


def dirac(groups: int = 1) -> Dirac:
    """torch's dirac_ for 3-, 4- and 5-D conv weights.

    >>> dirac(groups=2)
    dirac(groups=2)
    """
    return Dirac(groups)


def sparse(sparsity: float, std: float = 0.01) -> Sparse:
    """torch's sparse_: a 2-D normal with ceil(sparsity*rows) zeros in every column.

    >>> sparse(0.1)
    sparse(sparsity=0.1)
    """
    return Sparse(sparsity, std)


def mixture(components: Iterable[tuple[float, Spec]]) -> Mixture:
    """Each element from component i with probability weight_i (weights sum to 1).

    >>> mixture([(0.25, uniform(5, 10)), (0.5, zeros()), (0.25, uniform(-10, -5))]).random
    True
    """
    return Mixture(components)  # type: ignore[arg-type]


def custom(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, elementwise: bool = False
) -> Any:
    """A law written as ``fn(rng, shape, dtype) -> numpy array`` (logical layout).

    ``name`` (default: the function's ``__name__``) is how the spec serializes; a lambda needs
    one. Also a decorator: ``@custom`` or ``@custom(name="my_init")``.

    By default ``fn`` is called once, for the whole tensor, on one thread. ``elementwise=True``
    says that ``fn`` draws each element independently from one law for any shape it is given
    (as ``rng.uniform(-1, 1, shape)`` does, and an orthogonal or a sparse law does not): a
    tensor of more than one tile of the stream rule is then drawn tile by tile, each tile from
    its own generator, on every thread, and a torch rank of a sharded parameter draws only the
    tiles of its shard (JAX and Keras draw user laws on the host, every tile, before sharding).
    The law is the same; the numbers of a tensor of more than one tile are not those of one
    call. ``fn`` may then run on several threads at once.

    >>> spec = custom(lambda rng, shape, dtype: rng.uniform(-1, 1, shape), name="sym_uniform")
    >>> spec
    custom(name='sym_uniform')
    >>> custom(spec.fn, name="sym_uniform", elementwise=True)
    custom(name='sym_uniform', elementwise=True)
    """
    if fn is None:
        return lambda f: custom(f, name=name, elementwise=elementwise)
    if name is None:
        name = getattr(fn, "__name__", None)
        if not name or name == "<lambda>":
            raise _fail("custom", "name", name, "a non-empty string (a lambda needs name=...)")
    return Custom(fn, name, elementwise)


def with_axes(
    spec: Spec,
    *,
    in_axis: int | Sequence[int],
    out_axis: int | Sequence[int],
    batch_axis: int | Sequence[int] = (),
) -> WithAxes:
    """``spec`` with its fans from stated axes, JAX's ``in_axis``/``out_axis``/``batch_axis``.

    The axes index the shape the initializer is called on, in the calling framework's own
    layout (see ``WithAxes``); there are no defaults for in and out, since JAX's (-2, -1) read
    a torch ``(out, in)`` weight backwards.

    >>> q = with_axes(lecun_normal(), in_axis=0, out_axis=(1, 2))   # Keras MHA query (32, 8, 16)
    >>> q, q.fans((32, 8, 16))
    (with_axes(lecun_normal(), in_axis=0, out_axis=(1, 2)), (32, 128))
    >>> with_axes(he_uniform(), in_axis=-2, out_axis=-1, batch_axis=0).fans((12, 64, 256))
    (64, 256)
    """
    return WithAxes(spec, in_axis, out_axis, batch_axis)  # type: ignore[arg-type]


#: Every spec constructor of the public contract, by name. The per-framework namespaces
#: (``from multiinit import torch``) are built from this table.
CONSTRUCTORS: dict[str, Callable[..., Any]] = {
    f.__name__: f
    for f in (
        zeros,
        ones,
        constant,
        uniform,
        normal,
        truncated_normal,
        trunc_normal,
        variance_scaling,
        xavier_uniform,
        xavier_normal,
        kaiming_uniform,
        kaiming_normal,
        glorot_uniform,
        glorot_normal,
        he_uniform,
        he_normal,
        lecun_uniform,
        lecun_normal,
        orthogonal,
        eye,
        dirac,
        sparse,
        mixture,
        custom,
        with_axes,
    )
}

_KINDS: dict[str, type[Spec]] = {
    cls.kind: cls
    for cls in (
        Constant,
        Uniform,
        Normal,
        TruncatedNormal,
        VarianceScaling,
        XavierUniform,
        XavierNormal,
        KaimingUniform,
        KaimingNormal,
        GlorotUniform,
        GlorotNormal,
        HeUniform,
        HeNormal,
        LecunUniform,
        LecunNormal,
        Orthogonal,
        Eye,
        Dirac,
        Sparse,
        Mixture,
        Custom,
        WithAxes,
    )
}


# --------------------------------------------------------------------------- deserialization


def registered_custom(name: str) -> Callable[..., Any]:
    """The function registered under ``name`` by ``custom(...)`` in this process.

    >>> _ = custom(lambda rng, shape, dtype: rng.random(shape), name="doc_law")
    >>> callable(registered_custom("doc_law"))
    True
    """
    try:
        return _CUSTOM[name]
    except (KeyError, TypeError):
        names = sorted(_CUSTOM)
        known = ", ".join(shown(n) for n in names[:20]) or "none"
        if len(names) > 20:
            known += f", ... ({len(names)} in all)"
        raise SpecError(
            f"custom: name={shown(name)} is not registered in this process; build "
            f"multiinit.custom(fn, name={shown(name)}) first (registered: {known})"
        ) from None


def from_dict(data: Mapping[str, Any]) -> Spec:
    """The spec a ``to_dict()`` dict describes; never runs code it was given.

    >>> from_dict({"kind": "uniform", "low": -1.0, "high": 1.0})
    uniform(low=-1.0, high=1.0)

    Mixtures nest at most ``MAX_DEPTH`` deep and hold at most ``MAX_NODES`` specs; deeper or
    larger input is refused before it is followed.
    """
    return _from_dict(data, 0)


def _from_dict(data: Mapping[str, Any], depth: int) -> Spec:
    if not isinstance(data, Mapping):
        raise _fail("from_dict", "data", data, "a dict with a 'kind' key", SpecTypeError)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise _fail("from_dict", "kind", kind, f"one of {', '.join(sorted(_KINDS))}")
    cls = _KINDS[kind]
    given = {k: v for k, v in data.items() if k != "kind"}
    allowed = {"name", "elementwise"} if cls is Custom else {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(given) - allowed, key=str)
    if unknown:
        raise _fail(kind, "keys", unknown, f"among {sorted(allowed)}")
    if cls is Mixture:
        parts = given.get("components")
        if not isinstance(parts, list):
            raise _fail(kind, "components", parts, "a list of {'weight': w, 'spec': {...}}", SpecTypeError)
        if depth >= MAX_DEPTH:
            # Refused before the next level is followed, so no input nests the reader itself.
            raise SpecError(
                f"from_dict: mixtures nest more than {MAX_DEPTH} deep, which is not allowed; "
                f"mixtures nest at most {MAX_DEPTH} deep (MAX_DEPTH)"
            )
        if len(parts) >= MAX_NODES:
            raise _fail(kind, "components", parts, f"a list of fewer than {MAX_NODES} components (MAX_NODES)")
        pairs = []
        for i, part in enumerate(parts):
            if not isinstance(part, Mapping) or set(part) != {"weight", "spec"}:
                raise _fail(kind, f"components[{i}]", part, "a dict with keys 'weight' and 'spec'")
            pairs.append((part["weight"], _from_dict(part["spec"], depth + 1)))
        return Mixture(tuple(pairs))
    if cls is Custom:
        name: Any = given.get("name")  # anything: registered_custom refuses what is not a name
        return Custom(registered_custom(name), name, given.get("elementwise", False))
    if cls is WithAxes:
        missing = sorted({"spec", "in_axis", "out_axis"} - set(given))
        if missing:
            raise _fail(kind, "keys", sorted(given), f"spec, in_axis, out_axis (missing {missing})")
        return WithAxes(
            from_dict(given["spec"]), given["in_axis"], given["out_axis"], given.get("batch_axis", ())
        )
    try:
        return cls(**given)
    except SpecError:
        raise
    except TypeError as e:  # a required field is missing
        raise _fail(kind, "keys", sorted(given), f"the fields {sorted(allowed)}: {e}") from None


def _literal(node: ast.AST, text: str, depth: int = 0) -> Any:
    if depth > _TEXT_DEPTH:
        # Checked before following the node, so no text nests this reader itself.
        raise SpecError(
            f"parse: text={shown(text)} is not allowed; brackets, calls and signs nest at most "
            f"{_TEXT_DEPTH} deep (mixtures at most {MAX_DEPTH}, MAX_DEPTH)"
        )
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, text, depth + 1)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, text, depth + 1) for e in node.elts]
    if isinstance(node, ast.Call):
        return _call(node, text, depth + 1)
    snippet = ast.get_source_segment(text, node) or type(node).__name__
    raise SpecError(
        f"parse: {shown(snippet)} is not allowed; arguments must be numbers, strings, lists or "
        "spec calls such as uniform(5, 10)"
    )


def _call(node: ast.Call, text: str, depth: int = 0) -> Spec:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else None
    # "mi.uniform(...)" and "multiinit.uniform(...)" read as well as "uniform(...)".
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("mi", "multiinit")
    ):
        name = func.attr
    if name not in CONSTRUCTORS:
        called = ast.get_source_segment(text, func) or type(func).__name__
        raise _fail("parse", "spec", called, f"one of {', '.join(CONSTRUCTORS)}")
    if name == "custom" and (
        node.args or sorted(str(kw.arg) for kw in node.keywords) not in (["name"], ["elementwise", "name"])
    ):
        raise SpecError(
            "parse: custom(...) takes only name='registered name' and elementwise=True or False; "
            "functions are never parsed from text"
        )
    args = [_literal(a, text, depth) for a in node.args]
    kwargs = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise SpecTypeError("parse: **kwargs is not allowed; write each argument as name=value")
        if kw.arg in kwargs:
            # Python refuses a repeated keyword; keeping the last one would hide a typo.
            raise SpecTypeError(
                f"parse: {name}(...) has the keyword argument {kw.arg}= twice; "
                "each argument may be given once"
            )
        kwargs[kw.arg] = _literal(kw.value, text, depth)
    if name == "custom":
        return Custom(registered_custom(kwargs["name"]), kwargs["name"], kwargs.get("elementwise", False))
    try:
        spec: Spec = CONSTRUCTORS[name](*args, **kwargs)
    except SpecError:
        raise
    except TypeError as e:  # wrong arity or an unknown keyword
        raise SpecTypeError(f"parse: {name}(...) has arguments it does not take: {e}") from None
    return spec


def parse(text: str) -> Spec:
    """Read a spec from the text of its call, e.g. ``str(spec)``; nothing is evaluated.

    >>> parse("xavier_uniform(gain=2.0)")
    xavier_uniform(gain=2.0)
    >>> parse("mixture([(0.5, zeros()), (0.5, uniform(5, 10))])")
    mixture([(0.5, zeros()), (0.5, uniform(low=5.0, high=10.0))])
    """
    if not isinstance(text, str):
        raise _fail("parse", "text", text, "a string such as 'xavier_uniform(gain=2.0)'", SpecTypeError)
    if len(text) > MAX_TEXT:
        raise _fail("parse", "text", text, f"at most {MAX_TEXT} characters long (MAX_TEXT)")
    try:
        with warnings.catch_warnings():
            # Python warns about odd literals ("1if", "\\d"); the text is refused or read anyway.
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise SpecError(
            f"parse: text={shown(text)} is not allowed; it is not a spec call ({shorten(str(e.msg))})"
        ) from None
    except ValueError as e:  # characters Python source cannot hold (lone surrogates, ...)
        raise SpecError(
            f"parse: text={shown(text)} is not allowed; it is not a spec call ({shorten(str(e))})"
        ) from None
    except (RecursionError, MemoryError):  # Python's parser gives up on long operator chains
        raise SpecError(
            f"parse: text={shown(text)} is not allowed; it nests deeper than Python's parser can "
            f"follow (a spec call nests at most {_TEXT_DEPTH} brackets, calls and signs deep)"
        ) from None
    if not isinstance(tree.body, ast.Call):
        raise _fail("parse", "text", text, "a single spec call such as 'normal(std=0.01)'")
    return _call(tree.body, text.strip())
