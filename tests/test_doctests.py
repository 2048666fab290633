"""Every example in the neutral modules' docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import multiinit

#: The framework adapters' examples run in their own envs (test_*_doctests and the like).
ADAPTERS = {"torch", "keras", "flax", "mxnet"}

#: Every module of the package but the adapters: a new module's examples run without a list
#: to remember (host and stream had been missed by the hand-written one).
NEUTRAL = ["multiinit"] + [
    f"multiinit.{m.name}" for m in pkgutil.iter_modules(multiinit.__path__) if m.name not in ADAPTERS
]


def test_every_neutral_module_is_collected() -> None:
    assert {"multiinit.host", "multiinit.stream", "multiinit.reference", "multiinit.layers"} <= set(NEUTRAL)


@pytest.mark.parametrize("name", NEUTRAL)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"
