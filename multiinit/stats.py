"""Statistics of a sample against the analytic law of a spec, and against the reference.

``law(spec, shape)`` is the elementwise distribution a spec promises for a logical shape
(atoms, continuous parts, or an exact array); ``check(sample, spec, shape)`` runs the tests
that decide whether a draw came from it. SciPy is imported only when a check runs.

Thresholds. Every check is a test at level ``ALPHA = 1e-6`` (two-sided where it applies):
z = 4.89 for the moment and atom checks, the KS p-value for the distribution checks. With the
test matrix's few thousand checks, the chance that a correct backend fails anywhere is below
1e-2 even if the fixed seeds were random; and with the matrix's sample sizes (n >= 10,000)
the checks still catch a 3% error in a std, a swapped fan, or a truncation at the wrong place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from .reference import fans_for, sample as reference_sample
from .spec import (
    TRUNCATED_STD_2,
    Constant,
    Custom,
    Dirac,
    Eye,
    Mixture,
    Normal,
    Orthogonal,
    Sparse,
    Spec,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
)

__all__ = ["ALPHA", "Law", "Check", "Verdict", "law", "check", "check_law", "check_same", "z_for"]

#: Level of every single check (see the module docstring).
ALPHA = 1e-6


def z_for(alpha: float = ALPHA) -> float:
    """The two-sided normal quantile for ``alpha`` (4.89 for 1e-6).

    >>> round(z_for(1e-6), 2)
    4.89
    """
    from scipy.stats import norm

    return float(norm.isf(alpha / 2))


@dataclass
class Law:
    """The elementwise law of a spec on one shape.

    ``atoms`` maps a value to its probability mass; ``parts`` lists continuous components as
    ``(weight, scipy frozen distribution)``; ``exact`` is the whole array of a deterministic
    spec; ``orthogonal_gain`` marks a (semi-)orthogonal matrix, also checked by its Gram matrix;
    ``zeros_per_column`` is sparse's exact minimum of zeros in each column.
    """

    atoms: dict[float, float] = field(default_factory=dict)
    parts: list[tuple[float, Any]] = field(default_factory=list)
    exact: np.ndarray | None = None
    orthogonal_gain: float | None = None
    zeros_per_column: int | None = None
    text: str = ""

    @property
    def continuous_mass(self) -> float:
        return math.fsum(w for w, _ in self.parts)

    def raw_moment(self, k: int) -> float:
        """E[X**k] of the elementwise law."""
        if self.exact is not None:
            return float(np.mean(self.exact.astype(np.float64) ** k))
        total = math.fsum(p * v**k for v, p in self.atoms.items())
        return total + math.fsum(w * float(d.moment(k)) for w, d in self.parts)

    @property
    def mean(self) -> float:
        return self.raw_moment(1)

    @property
    def variance(self) -> float:
        m1 = self.raw_moment(1)
        return max(self.raw_moment(2) - m1 * m1, 0.0)

    @property
    def central_moment_4(self) -> float:
        m1, m2, m3, m4 = (self.raw_moment(k) for k in (1, 2, 3, 4))
        return m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1**4

    def continuous_cdf(self, x: np.ndarray) -> np.ndarray:
        """CDF of the continuous part alone (conditional on not being an atom)."""
        mass = self.continuous_mass
        cdf: np.ndarray = sum(w * d.cdf(x) for w, d in self.parts) / mass
        return cdf

    @property
    def support(self) -> tuple[float, float]:
        """Smallest and largest value the law can produce."""
        lows = [*self.atoms, *(float(d.support()[0]) for _, d in self.parts)]
        highs = [*self.atoms, *(float(d.support()[1]) for _, d in self.parts)]
        if self.exact is not None:
            lows.append(float(self.exact.min(initial=0)))
            highs.append(float(self.exact.max(initial=0)))
        return (min(lows), max(highs))


def _continuous(spec: Spec, fans: tuple[int, int] | None) -> tuple[Any, str]:
    from scipy import stats

    if isinstance(spec, Uniform):
        return stats.uniform(spec.low, spec.high - spec.low), f"U[{spec.low:.4g}, {spec.high:.4g})"
    if isinstance(spec, Normal):
        return stats.norm(spec.mean, spec.std), f"N({spec.mean:.4g}, {spec.std:.4g}^2)"
    if isinstance(spec, TruncatedNormal):
        lo, hi = spec.bounds
        return (
            stats.truncnorm(spec.low, spec.high, loc=spec.mean, scale=spec.std),
            f"N({spec.mean:.4g}, {spec.std:.4g}^2) cut to [{lo:.4g}, {hi:.4g}]",
        )
    # Every other law that reaches here is fan-based, with the fans found by fans_for.
    scaled = cast("VarianceScaling", spec.as_variance_scaling())
    distribution, number = scaled.law(*cast("tuple[int, int]", fans))
    if distribution == "uniform":
        return stats.uniform(-number, 2 * number), f"U[-{number:.4g}, {number:.4g})"
    if distribution == "untruncated_normal":
        return stats.norm(0.0, number), f"N(0, {number:.4g}^2)"
    return (
        stats.truncnorm(-2.0, 2.0, loc=0.0, scale=number),
        f"N(0, {number:.4g}^2) cut at +-2 sigma (std {number * TRUNCATED_STD_2:.4g})",
    )


def law(spec: Spec, shape: Sequence[int], fans: tuple[int, int] | None = None) -> Law | None:
    """The elementwise law ``spec`` promises on a logical ``shape``; ``None`` when there is no
    analytic one (custom functions).

    >>> import multiinit as mi
    >>> law(mi.xavier_uniform(), (8, 4)).text
    'U[-0.7071, 0.7071)'
    """
    shape = tuple(int(s) for s in shape)
    if isinstance(spec, (Constant, Eye, Dirac)):
        exact = reference_sample(spec, shape, dtype="float64")
        return Law(exact=exact, text=repr(spec))
    if isinstance(spec, Custom):
        return None
    if isinstance(spec, Orthogonal):
        from scipy import stats

        # Each row (or column, whichever is longer) of a Haar (semi-)orthogonal matrix is
        # uniform on the unit sphere in m = max(rows, cols) dimensions, so an entry is
        # gain * (2Y - 1) with Y ~ Beta((m-1)/2, (m-1)/2).
        rows = shape[0]
        m = max(rows, math.prod(shape) // rows if rows else 0)
        a = (m - 1) / 2
        parts: list[tuple[float, Any]] = (
            [(1.0, stats.beta(a, a, loc=-spec.gain, scale=2 * spec.gain))] if m > 1 else []
        )
        return Law(
            parts=parts,
            orthogonal_gain=spec.gain,
            text=(
                f"orthogonal: W W^T = {spec.gain:.4g}^2 I, entries {spec.gain:.4g}*(2 Beta({a:g}, {a:g}) - 1)"
            ),
        )
    if isinstance(spec, Sparse):
        from scipy import stats

        rows = shape[0]
        k = math.ceil(spec.sparsity * rows)
        p = k / rows if rows else 0.0
        atoms: dict[float, float] = {0.0: p} if p > 0 else {}
        return Law(
            atoms=atoms,
            parts=[(1.0 - p, stats.norm(0.0, spec.std))] if p < 1 else [],
            zeros_per_column=k,
            text=f"N(0, {spec.std:.4g}^2) with {k} zeros per column",
        )
    if isinstance(spec, Mixture):
        used = fans_for(spec, shape, fans) if spec.uses_fans else None
        atoms = {}
        parts = []
        texts = []
        for weight, component in spec.components:
            if weight == 0:
                continue
            sub = law(component, shape, used)
            if sub is None or (sub.orthogonal_gain is not None and not sub.parts):
                return None
            if sub.exact is not None:
                values, counts = np.unique(sub.exact, return_counts=True)
                sub_atoms = {float(v): c / sub.exact.size for v, c in zip(values, counts, strict=True)}
            else:
                sub_atoms = sub.atoms
            for value, mass in sub_atoms.items():
                atoms[value] = atoms.get(value, 0.0) + weight * mass
            parts.extend((weight * w, d) for w, d in sub.parts)
            texts.append(f"{weight:.4g}*{sub.text}")
        return Law(atoms=atoms, parts=parts, text=" + ".join(texts))
    used = fans_for(spec, shape, fans) if spec.uses_fans else None
    dist, text = _continuous(spec, used)
    return Law(parts=[(1.0, dist)], text=text)


@dataclass
class Check:
    """One statistic against its expected value: ``passed`` when within ``tolerance``
    (for ``ks`` checks, ``value`` is the KS statistic and ``p`` must be >= alpha)."""

    name: str
    value: float
    expected: float
    tolerance: float
    passed: bool
    p: float | None = None

    def __post_init__(self) -> None:
        self.passed = bool(self.passed)

    def __str__(self) -> str:
        status = "ok" if self.passed else "FAILED"
        if self.p is not None:
            return f"{self.name}: D={self.value:.4g}, p={self.p:.3g} (needs p >= {self.tolerance:g}) {status}"
        return (
            f"{self.name}: got {self.value:.6g}, expected {self.expected:.6g} "
            f"+- {self.tolerance:.3g} {status}"
        )


@dataclass
class Verdict:
    """All checks of one sample; ``passed`` when every one passed."""

    checks: list[Check]
    law: str = ""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def __str__(self) -> str:
        return "; ".join(str(c) for c in self.checks)


def _eps(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).eps) if dtype.kind == "f" else 2.0**-8


def check_law(x: np.ndarray, the_law: Law, alpha: float = ALPHA) -> list[Check]:
    """Test a logical-layout sample ``x`` against ``the_law``; see the module docstring.

    >>> import multiinit as mi
    >>> x = mi.uniform(-1, 1).sample((64, 64), seed=0)
    >>> [(c.name, c.passed) for c in check_law(2 * x, law(mi.uniform(-1, 1), (64, 64)))]
    [('ks', False), ('mean', True), ('variance', False), ('min', False), ('max', False)]
    """
    from scipy import stats

    x = np.asarray(x)
    values = x.astype(np.float64).ravel()
    n = values.size
    z = z_for(alpha)
    checks: list[Check] = []
    if n == 0:
        return checks
    if the_law.exact is not None:
        expected = the_law.exact.astype(x.dtype).astype(np.float64).ravel()
        mismatches = int(np.count_nonzero(values != expected))
        checks.append(Check("exact", mismatches, 0, 0, mismatches == 0))
        return checks
    if the_law.orthogonal_gain is not None:
        g2 = the_law.orthogonal_gain**2
        rows = x.shape[0]
        flat = values.reshape(rows, -1)
        gram = flat @ flat.T if rows <= flat.shape[1] else flat.T @ flat
        deviation = float(np.abs(gram - g2 * np.eye(gram.shape[0])).max())
        # QR orthogonality error is O(n * eps) in float32; a non-orthogonal normal draw of the
        # same scale deviates by O(g^2 / sqrt(min dim)), orders of magnitude more.
        tolerance = g2 * (1e-3 if _eps(x.dtype) < 1e-6 else 3e-2)
        checks.append(Check("gram", deviation, 0.0, tolerance, deviation <= tolerance))
    continuous = np.ones(n, dtype=bool)
    for value, mass in sorted(the_law.atoms.items()):
        hits = values == float(np.asarray(value, dtype=x.dtype))
        continuous &= ~hits
        count = int(hits.sum())
        spread = math.sqrt(n * mass * (1 - mass))
        tolerance = z * spread + 0.5
        checks.append(
            Check(f"mass at {value:g}", count / n, mass, tolerance / n, abs(count - n * mass) <= tolerance)
        )
    if the_law.zeros_per_column:
        fewest = int((x.reshape(x.shape[0], -1) == 0).sum(axis=0).min())
        checks.append(
            Check("zeros per column", fewest, the_law.zeros_per_column, 0, fewest >= the_law.zeros_per_column)
        )
    rest = values[continuous]
    if the_law.parts and rest.size:
        # scipy calls the cdf once with the whole array; its stubs say one float at a time.
        result = stats.kstest(rest, the_law.continuous_cdf)  # type: ignore[arg-type]
        checks.append(
            Check(
                "ks", float(result.statistic), 0.0, alpha, bool(result.pvalue >= alpha), float(result.pvalue)
            )
        )
    mean, variance = the_law.mean, the_law.variance
    if variance > 0:
        tolerance = z * math.sqrt(variance / n)
        got = float(values.mean())
        checks.append(Check("mean", got, mean, tolerance, abs(got - mean) <= tolerance))
        spread = math.sqrt(max(the_law.central_moment_4 - variance**2, 0.0) / n)
        got_var = float(values.var())
        checks.append(Check("variance", got_var, variance, z * spread, abs(got_var - variance) <= z * spread))
    lo, hi = the_law.support
    # A bound is computed in float64 and the draw rounds to the sample's dtype.
    slack = 4 * _eps(x.dtype)
    if math.isfinite(lo):
        got = float(values.min())
        checks.append(Check("min", got, lo, slack * max(abs(lo), 1e-30), got >= lo - slack * abs(lo)))
    if math.isfinite(hi):
        got = float(values.max())
        checks.append(Check("max", got, hi, slack * max(abs(hi), 1e-30), got <= hi + slack * abs(hi)))
    return checks


def check_same(x: np.ndarray, reference: np.ndarray, alpha: float = ALPHA) -> Check:
    """Two-sample KS: do ``x`` and a reference draw come from one law?

    >>> import multiinit as mi
    >>> x = mi.uniform(-1, 1).sample((64, 64), seed=0)
    >>> check_same(x, mi.uniform(-1, 1).sample((64, 64), seed=1)).passed
    True
    >>> check_same(x, mi.normal().sample((64, 64), seed=1)).passed
    False
    """
    from scipy import stats

    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(reference, dtype=np.float64).ravel()
    result = stats.ks_2samp(a, b)
    return Check(
        "ks vs reference",
        float(result.statistic),
        0.0,
        alpha,
        bool(result.pvalue >= alpha),
        float(result.pvalue),
    )


def check(
    x: np.ndarray,
    spec: Spec,
    shape: Sequence[int] | None = None,
    fans: tuple[int, int] | None = None,
    reference_seed: int | None = 12345,
    alpha: float = ALPHA,
) -> Verdict:
    """Every check of a logical-layout sample ``x`` of ``spec``: the analytic law (when there
    is one) and, unless ``reference_seed`` is None, a two-sample KS against an independent
    reference draw of the same shape (exact equality for deterministic specs).

    >>> import multiinit as mi
    >>> x = mi.he_uniform().sample((256, 128), seed=1)
    >>> check(x, mi.he_uniform()).passed
    True
    """
    x = np.asarray(x)
    shape = tuple(x.shape) if shape is None else tuple(shape)
    the_law = law(spec, shape, fans)
    checks = check_law(x, the_law, alpha) if the_law is not None else []
    if reference_seed is not None and x.size and (the_law is None or the_law.exact is None):
        ref = reference_sample(spec, shape, seed=reference_seed, dtype="float64", fans=fans)
        checks.append(check_same(x, ref, alpha))
    return Verdict(checks, the_law.text if the_law is not None else "no analytic law")
