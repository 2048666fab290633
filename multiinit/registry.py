"""Backend names -> adapter modules, imported only when asked for.

Nothing here imports a framework. ``detect`` tells a model's framework from the modules its
class comes from (and which are already in ``sys.modules``, since the model exists), never by
importing a framework to try.
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Mapping

from .errors import UnknownBackend
from .fans import OUT_IN, SPATIAL_IN_OUT, calculate_gain
from .spec import CONSTRUCTORS, Spec

__all__ = ["BACKENDS", "ALIASES", "resolve", "adapter", "compile", "detect", "apply", "namespace"]


@dataclass(frozen=True)
class Backend:
    """One backend: its adapter module, the framework it needs, the pip extra that installs it,
    the top-level modules its models come from, and its native kernel layout."""

    name: str
    module: str
    framework: str
    extra: str | None
    roots: tuple[str, ...]
    layout: str


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("numpy", "multiinit.reference", "NumPy", None, (), OUT_IN),
        Backend("torch", "multiinit.torch", "PyTorch", "torch", ("torch",), OUT_IN),
        Backend("keras", "multiinit.keras", "Keras 3", "tensorflow", ("keras", "tensorflow", "tf_keras"),
                SPATIAL_IN_OUT),
        Backend("flax", "multiinit.flax", "JAX and Flax", "jax", ("flax", "jax", "jaxlib"), SPATIAL_IN_OUT),
        Backend("mxnet", "multiinit.mxnet", "MXNet", "mxnet", ("mxnet",), OUT_IN),
    )
}

#: Other names people use for the same backends.
ALIASES = {
    "pytorch": "torch",
    "tensorflow": "keras",
    "tf": "keras",
    "jax": "flax",
    "gluon": "mxnet",
    "mx": "mxnet",
    "reference": "numpy",
}


def resolve(name: str) -> str:
    """The canonical backend name for ``name`` (aliases such as "jax" -> "flax" accepted).

    >>> resolve("tensorflow")
    'keras'
    """
    key = name.lower() if isinstance(name, str) else name
    key = ALIASES.get(key, key)
    if key not in BACKENDS:
        known = ", ".join(list(BACKENDS) + [f"{a} (= {t})" for a, t in ALIASES.items()])
        raise UnknownBackend(f"backend={name!r} is not allowed; backend must be one of {known}")
    return key


def adapter(name: str) -> ModuleType:
    """The adapter module of a backend, imported now (``BackendUnavailable`` if it cannot be).

    >>> adapter("numpy").__name__
    'multiinit.reference'
    """
    return importlib.import_module(BACKENDS[resolve(name)].module)


def compile(spec: Spec, backend: str, **options: Any) -> Any:
    """``spec`` in ``backend``'s own form (see each adapter for what that form is).

    ``options`` go to the adapter (for example ``seed=`` for Keras and MXNet initializers).

    >>> import multiinit as mi
    >>> compile(mi.uniform(5, 10), "numpy")((2, 2), seed=0).shape
    (2, 2)
    """
    from .errors import SpecError

    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec such as mi.normal()")
    return adapter(backend).compile(spec, **options)


def _jax_leaves(tree: Any, depth: int = 0) -> bool:
    if isinstance(tree, Mapping) and depth < 64:
        return any(_jax_leaves(v, depth + 1) for v in tree.values())
    root = type(tree).__module__.split(".")[0]
    return root in ("jax", "jaxlib")


def detect(model: Any) -> str:
    """The backend a model belongs to, from its class's modules; imports nothing.

    >>> detect({"params": {}})
    Traceback (most recent call last):
    ...
    multiinit.errors.UnknownBackend: model of type dict is not a model multiinit knows; ...
    """
    for cls in type(model).__mro__:
        root = cls.__module__.split(".")[0]
        for backend in BACKENDS.values():
            if root in backend.roots and root in sys.modules:
                return backend.name
    if isinstance(model, Mapping) and _jax_leaves(model):
        return "flax"
    raise UnknownBackend(
        f"model of type {type(model).__name__} is not a model multiinit knows; expected a "
        "torch nn.Module, a Keras Model or Layer, a Flax variables dict or nnx.Module, or an "
        "MXNet Gluon Block"
    )


def apply(model: Any, rules: Any, seed: int | None = None, portable: bool = False) -> Any:
    """Initialize a whole model by rules; see ``multiinit.apply``."""
    return adapter(detect(model)).apply(model, rules, seed=seed, portable=portable)


def namespace(backend: str, compile_spec: Callable[[Spec], Any]) -> dict[str, Callable[..., Any]]:
    """Every spec constructor of the contract, returning ``backend``'s native form.

    An adapter module does ``globals().update(namespace("torch", compile))``: a constructor
    added to ``multiinit.spec.CONSTRUCTORS`` appears in every framework's namespace with no
    per-framework line.

    >>> ns = namespace("numpy", adapter("numpy").compile)
    >>> ns["uniform"](5, 10)((3,)).shape
    (3,)
    """
    table: dict[str, Callable[..., Any]] = {}
    for name, constructor in CONSTRUCTORS.items():
        table[name] = _native(backend, constructor, compile_spec)
    table["calculate_gain"] = calculate_gain
    return table


def _native(backend: str, constructor: Callable[..., Any], compile_spec: Callable[[Spec], Any]):
    @functools.wraps(constructor)
    def native(*args: Any, **kwargs: Any) -> Any:
        made = constructor(*args, **kwargs)
        if isinstance(made, Spec):
            return compile_spec(made)
        # custom(name=...) used as a decorator factory: compile what it decorates.
        return lambda fn: compile_spec(made(fn))

    first = (constructor.__doc__ or "").strip().splitlines()[0] if constructor.__doc__ else ""
    native.__doc__ = (
        f"{first}\n\nReturns the {backend} native form of ``multiinit.{constructor.__name__}(...)``."
    )
    native.__module__ = f"multiinit.{backend}"
    native.__annotations__ = {k: v for k, v in native.__annotations__.items() if k != "return"}
    return native
