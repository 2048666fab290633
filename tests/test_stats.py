"""The statistical checks themselves: they pass correct draws and catch the porting mistakes
they exist to catch (a swapped fan, an untruncated normal, a 5% std error, escaped bounds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import multiinit as mi
from multiinit import stats

SHAPE = (256, 128)


def draw(spec, seed=21, shape=SHAPE, dtype="float32"):
    return mi.reference.sample(spec, shape, seed=seed, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_correct_draws_pass(dtype) -> None:
    for spec in (
        mi.he_normal(),
        mi.xavier_uniform(),
        mi.sparse(0.2),
        mi.orthogonal(),
        mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
        mi.eye(),
        mi.constant(42),
    ):
        verdict = stats.check(draw(spec, dtype=dtype), spec)
        assert verdict.passed, f"{spec!r}: {verdict}"


def test_swapped_fans_are_caught() -> None:
    # kaiming fan_in on (256, 128) is 128; a port that used the fan_out (256) draws too narrow.
    wrong = draw(mi.kaiming_normal(mode="fan_out"))
    verdict = stats.check(wrong, mi.kaiming_normal())
    assert not verdict.passed and {"ks", "variance", "ks vs reference"} <= {c.name for c in verdict.failures}


def test_untruncated_instead_of_truncated_is_caught() -> None:
    verdict = stats.check(draw(mi.xavier_normal()), mi.glorot_normal())  # same variance, other law
    failed = {c.name for c in verdict.failures}
    assert "ks" in failed and ("min" in failed or "max" in failed)


def test_a_five_percent_std_error_is_caught() -> None:
    verdict = stats.check(draw(mi.normal(std=0.01)) * np.float32(1.05), mi.normal(std=0.01))
    assert "variance" in {c.name for c in verdict.failures}


def test_uniform_on_zero_scale_is_caught() -> None:
    # jax.nn.initializers.uniform(scale) is U[0, scale): not U[-scale, scale).
    x = draw(mi.uniform(0, 0.1))
    verdict = stats.check(x, mi.uniform(-0.1, 0.1))
    assert not verdict.passed


def test_escaped_bounds_and_missing_zeros_are_caught() -> None:
    x = draw(mi.truncated_normal(std=0.02)).copy()
    x[0, 0] = 0.05
    assert "max" in {c.name for c in stats.check(x, mi.truncated_normal(std=0.02)).failures}
    x = draw(mi.sparse(0.3)).copy()
    x[:, 3] = 0.01
    assert "zeros per column" in {c.name for c in stats.check(x, mi.sparse(0.3)).failures}


def test_not_orthogonal_and_wrong_deterministic_values_are_caught() -> None:
    x = draw(mi.normal(std=1 / math.sqrt(128)))
    assert stats.check(x, mi.orthogonal()).failures[0].name == "gram"
    x = draw(mi.eye()).copy()
    x[1, 1] = 0
    assert stats.check(x, mi.eye()).failures[0].name == "exact"


def test_wrong_mixture_weights_are_caught() -> None:
    spec = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])
    wrong = mi.mixture([(0.3, mi.uniform(5, 10)), (0.45, mi.zeros()), (0.25, mi.uniform(-10, -5))])
    failed = {c.name for c in stats.check(draw(wrong), spec).failures}
    assert "mass at 0" in failed


def test_custom_specs_are_checked_against_the_reference_only() -> None:
    spec = mi.custom(lambda rng, shape, dtype: rng.standard_normal(shape) ** 2, name="tests.chi2")
    verdict = stats.check(draw(spec), spec)
    assert verdict.passed and [c.name for c in verdict.checks] == ["ks vs reference"]
    assert not stats.check(draw(mi.normal()), spec).passed


def test_law_text_and_failure_message_name_the_statistic_and_both_values() -> None:
    verdict = stats.check(draw(mi.normal(std=0.01)) * np.float32(2), mi.normal(std=0.01))
    message = str(verdict.get("variance"))
    assert (
        message.startswith("variance: got 0.000") and "expected 0.0001 +-" in message and "FAILED" in message
    )
    assert stats.law(mi.he_normal(), (8, 2, 3, 3)).text.startswith("N(0, 0.3")


def test_thresholds() -> None:
    assert stats.ALPHA == 1e-6
    assert stats.z_for() == pytest.approx(4.8916, abs=1e-4)
