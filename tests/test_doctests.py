"""Every example in the neutral modules' docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import inspect
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


@pytest.mark.parametrize("name", NEUTRAL)
def test_every_public_function_shows_an_example(name: str) -> None:
    module = importlib.import_module(name)
    public = [getattr(module, n) for n in getattr(module, "__all__", ())]
    functions = [f for f in public if inspect.isfunction(f) and f.__module__.startswith("multiinit")]
    bare = [f.__qualname__ for f in functions if ">>>" not in (inspect.getdoc(f) or "")]
    assert not bare, f"{name}: public functions without an example in their docstring: {bare}"
