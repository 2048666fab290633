"""Every backend this env is asked to test can be imported: a requested backend that is
missing fails the run here, it is never skipped."""

from __future__ import annotations

import importlib

import pytest

from multiinit import registry

from conftest import REQUESTED

FRAMEWORK_MODULES = {"torch": ["torch"], "keras": ["keras"], "flax": ["jax", "flax"], "mxnet": ["mxnet"]}


@pytest.mark.parametrize("backend", REQUESTED)
def test_requested_backend_imports(backend: str) -> None:
    for module in FRAMEWORK_MODULES.get(backend, ["numpy"]):
        importlib.import_module(module)
    adapter = registry.adapter(backend)
    assert callable(adapter.compile)
    if backend != "numpy":
        assert callable(adapter.apply)
        assert adapter.LAYOUT in ("out_in_spatial", "spatial_in_out")
