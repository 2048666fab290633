"""Every example in the neutral modules' docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib

import pytest

NEUTRAL = [
    "multiinit",
    "multiinit.errors",
    "multiinit.fans",
    "multiinit.spec",
    "multiinit.reference",
    "multiinit.rules",
    "multiinit.registry",
    "multiinit.stats",
    "multiinit.presets",
    "multiinit.explain",
    "multiinit.report",
]


@pytest.mark.parametrize("name", NEUTRAL)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"
