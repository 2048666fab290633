"""Backend registry: names, lazy adapters, the missing-framework message, model detection,
the per-framework namespaces built from the contract, and import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest

import multiinit as mi
from multiinit import registry
from multiinit.spec import CONSTRUCTORS

FRAMEWORK_ROOTS = ("torch", "tensorflow", "keras", "jax", "jaxlib", "flax", "mxnet")


def test_unknown_backend_lists_the_known_names() -> None:
    with pytest.raises(mi.UnknownBackend) as info:
        mi.compile(mi.zeros(), "caffe")
    message = str(info.value)
    assert "backend='caffe' is not allowed" in message
    for name in ("numpy", "torch", "keras", "flax", "mxnet", "jax (= flax)", "tensorflow (= keras)"):
        assert name in message
    assert isinstance(info.value, ValueError)


def test_aliases_resolve() -> None:
    assert [registry.resolve(n) for n in ("PyTorch", "tf", "jax", "gluon", "reference")] == [
        "torch",
        "keras",
        "flax",
        "mxnet",
        "numpy",
    ]


def test_compile_refuses_what_is_not_a_spec() -> None:
    with pytest.raises(mi.SpecError, match="spec='normal\\(\\)' is not allowed"):
        mi.compile("normal()", "numpy")


def test_the_numpy_backend_is_the_reference() -> None:
    draw = mi.compile(mi.normal(std=2.0), "numpy")
    assert np.array_equal(draw((3, 4), seed=5), mi.normal(std=2.0).sample((3, 4), seed=5))
    assert np.array_equal(mi.normal().to("numpy")((2,), seed=1), mi.normal().sample((2,), seed=1))


@pytest.mark.parametrize(
    "backend, module, framework, extra",
    [
        ("torch", "torch", "PyTorch", "torch"),
        ("keras", "keras", "Keras 3", "tensorflow"),
        ("flax", "jax", "JAX and Flax", "jax"),
        ("mxnet", "mxnet", "MXNet", "mxnet"),
    ],
)
def test_a_missing_framework_says_the_exact_pip_command(backend, module, framework, extra) -> None:
    # A fresh interpreter in which the framework cannot be imported (None in sys.modules makes
    # "import x" raise ImportError), whatever this environment has installed.
    code = f"""
import sys
for name in {FRAMEWORK_ROOTS!r}:
    sys.modules[name] = None
import multiinit as mi
try:
    mi.compile(mi.zeros(), {backend!r})
except mi.BackendUnavailable as e:
    assert isinstance(e, ImportError)
    print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f'the multiinit "{backend}" backend needs {framework}' in out
    assert f'pip install "multiinit[{extra}]"' in out


def _fake_framework(monkeypatch, root: str, class_name: str) -> type:
    monkeypatch.setitem(sys.modules, root, types.ModuleType(root))
    cls = type(class_name, (), {"__module__": f"{root}.fake"})
    return type("UserModel", (cls,), {"__module__": "__main__"})


@pytest.mark.parametrize(
    "root, expected",
    [("torch", "torch"), ("keras", "keras"), ("flax", "flax"), ("mxnet", "mxnet"), ("tensorflow", "keras")],
)
def test_detect_reads_the_model_class_modules(monkeypatch, root, expected) -> None:
    model_cls = _fake_framework(monkeypatch, root, "Module")
    assert registry.detect(model_cls()) == expected


def test_detect_never_imports_a_framework_to_guess(monkeypatch) -> None:
    cls = type("Module", (), {"__module__": "torch.nn.modules.module"})
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    with pytest.raises(mi.UnknownBackend):
        registry.detect(cls())
    assert "torch" not in sys.modules or sys.modules["torch"] is not None


def test_detect_recognizes_a_jax_pytree(monkeypatch) -> None:
    leaf_cls = type("ArrayImpl", (), {"__module__": "jaxlib._jax"})
    tree = {"params": {"Dense_0": {"kernel": leaf_cls(), "bias": leaf_cls()}}}
    assert registry.detect(tree) == "flax"
    with pytest.raises(mi.UnknownBackend, match="model of type dict is not a model multiinit knows"):
        registry.detect({"params": {"w": np.zeros(3)}})
    with pytest.raises(mi.UnknownBackend, match="model of type int"):
        mi.apply(3, {"weight": mi.zeros()})


def test_namespace_has_every_constructor_returning_the_native_form() -> None:
    compiled = []

    def fake_compile(spec):
        compiled.append(spec)
        return ("native", spec)

    ns = registry.namespace("fake", fake_compile)
    assert set(CONSTRUCTORS) <= set(ns) and ns["calculate_gain"] is mi.calculate_gain
    assert ns["xavier_uniform"](gain=2.0) == ("native", mi.xavier_uniform(gain=2.0))
    assert ns["mixture"]([(0.5, mi.zeros()), (0.5, mi.ones())])[1] == mi.mixture(
        [(0.5, mi.zeros()), (0.5, mi.ones())]
    )
    assert ns["xavier_uniform"].__name__ == "xavier_uniform"
    assert ns["xavier_uniform"].__module__ == "multiinit.fake"
    assert "fake native form" in ns["xavier_uniform"].__doc__

    @ns["custom"](name="tests.ns_law")
    def law(rng, shape, dtype):
        return np.zeros(shape)

    assert law == (
        "native",
        mi.custom(law_fn := mi.spec.registered_custom("tests.ns_law"), name="tests.ns_law"),
    )
    assert callable(law_fn)
    with pytest.raises(mi.SpecError):
        ns["normal"](std=-1)


def test_a_seeded_namespace_passes_seed_to_compile_and_an_unseeded_one_refuses_it() -> None:
    seeded = registry.namespace("fake", lambda spec, seed=None: ("native", spec, seed), seeded=True)
    assert seeded["he_normal"](seed=3) == ("native", mi.he_normal(), 3)
    assert seeded["uniform"](-1, 1) == ("native", mi.uniform(-1, 1), None)
    assert seeded["custom"](name="tests.ns_seeded", seed=2)(lambda rng, shape, dtype: np.zeros(shape))[2] == 2
    assert "seed=" in seeded["he_normal"].__doc__
    plain = registry.namespace("fake", lambda spec: ("native", spec))
    with pytest.raises(TypeError, match="seed"):
        plain["he_normal"](seed=3)


def test_a_constructor_added_to_the_contract_appears_in_every_namespace(monkeypatch) -> None:
    def tests_only_spec():
        return mi.zeros()

    monkeypatch.setitem(CONSTRUCTORS, "tests_only_spec", tests_only_spec)
    ns = registry.namespace("fake", lambda spec: ("native", spec))
    assert ns["tests_only_spec"]() == ("native", mi.zeros())


def test_import_multiinit_and_every_spec_import_no_framework() -> None:
    code = f"""
import json, sys
import multiinit as mi
from multiinit import stats, rules, reference
specs = [c() for c in (mi.zeros, mi.ones, mi.glorot_uniform, mi.glorot_normal, mi.he_uniform,
         mi.he_normal, mi.lecun_uniform, mi.lecun_normal, mi.eye, mi.dirac, mi.orthogonal)]
specs += [mi.constant(1), mi.uniform(), mi.normal(), mi.truncated_normal(), mi.trunc_normal(),
          mi.xavier_uniform(), mi.xavier_normal(), mi.kaiming_uniform(), mi.kaiming_normal(),
          mi.variance_scaling(), mi.sparse(0.1),
          mi.mixture([(0.5, mi.zeros()), (0.5, mi.ones())]),
          mi.custom(lambda rng, shape, dtype: rng.random(shape), name="x")]
for s in specs:
    mi.parse(str(s)); mi.from_dict(s.to_dict())
    s.sample((3, 4, 3) if s.kind == "dirac" else (4, 3))
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({FRAMEWORK_ROOTS!r} + ("scipy",)))
print(json.dumps(loaded))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_adapter_modules_import_no_other_framework() -> None:
    # Read the sources rather than import them: this runs in every env, whatever is installed.
    import pathlib
    import re

    package = pathlib.Path(mi.__file__).parent
    pattern = re.compile(r"^\s*(?:import|from)\s+(\w+)", re.MULTILINE)
    # Keras' adapter reaches the framework Keras runs on (jax for its layouts, torch for its
    # tensors), only inside functions that run when Keras runs on it.
    own = {
        "torch": {"torch"},
        "keras": {"keras", "tensorflow", "jax", "torch"},
        "flax": {"flax", "jax", "jaxlib", "optax"},
        "mxnet": {"mxnet"},
    }
    frameworks = set().union(*own.values())
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).parts
        owner = relative[0].removesuffix(".py")
        imported = set(pattern.findall(path.read_text())) & frameworks
        allowed = own.get(owner, set())
        assert imported <= allowed, f"{path.name} imports {sorted(imported - allowed)}"
