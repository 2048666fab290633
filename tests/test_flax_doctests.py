"""Every example in the Flax adapter's docstrings runs and prints what it says."""

from __future__ import annotations

import doctest

import multiinit.flax


def test_docstring_examples() -> None:
    result = doctest.testmod(multiinit.flax, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 8
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in multiinit.flax"
