"""Every example in the Flax adapter's docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import multiinit.flax

#: The package and each of its files: doctest finds only what a module itself defines.
MODULES = [
    "multiinit.flax",
    *(f"multiinit.flax.{m.name}" for m in pkgutil.iter_modules(multiinit.flax.__path__)),
]


def test_docstring_examples() -> None:
    assert len(MODULES) >= 4  # __init__, draw, compiled, model
    attempted = 0
    for name in MODULES:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
        assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"
        attempted += result.attempted
    assert attempted >= 8
