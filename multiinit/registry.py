"""Backend names -> adapter modules, imported only when asked for.

Nothing here imports a framework. ``detect`` tells a model's framework from the modules its
class comes from (and which are already in ``sys.modules``, since the model exists), never by
importing a framework to try.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.abc
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .errors import SpecError, SpecTypeError, UnknownBackend, shown
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
        Backend(
            "keras",
            "multiinit.keras",
            "Keras 3",
            "tensorflow",
            ("keras", "tensorflow", "tf_keras"),
            SPATIAL_IN_OUT,
        ),
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
    # Only a string can name a backend (a list or dict is not even hashable).
    key = ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else None
    if key not in BACKENDS:
        known = ", ".join(list(BACKENDS) + [f"{a} (= {t})" for a, t in ALIASES.items()])
        raise UnknownBackend(f"backend={shown(name)} is not allowed; backend must be one of {known}")
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
        raise SpecError(
            f"spec={shown(spec)} is not allowed; spec must be a multiinit spec such as mi.normal()"
        )
    name = resolve(backend)
    module = adapter(name)
    _check_options(name, module.compile, spec, options)
    return module.compile(spec, **options)


def _check_options(
    backend: str, compile_spec: Callable[..., Any], spec: Spec, options: dict[str, Any]
) -> None:
    """Refuse options an adapter's ``compile`` does not take, by name, before calling it."""
    if not options:
        return
    try:
        signature = inspect.signature(compile_spec)
    except (TypeError, ValueError):  # not introspectable: let the adapter judge
        return
    try:
        signature.bind(spec, **options)
    except TypeError:
        taken = [
            p.name
            for p in list(signature.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        given = ", ".join(f"{k}={shown(v)}" for k, v in options.items())
        allowed = f"only {', '.join(f'{t}=' for t in taken)}" if taken else "no options"
        raise SpecTypeError(
            f"compile: {given} is not allowed for the {backend!r} backend; it takes {allowed}"
            + (" (the numpy backend's function takes seed= when it is called)" if backend == "numpy" else "")
        ) from None


def _jax_leaves(tree: Any, depth: int = 0) -> bool:
    if isinstance(tree, Mapping) and depth < 64:
        return any(_jax_leaves(v, depth + 1) for v in tree.values())
    root = type(tree).__module__.split(".")[0]
    return root in ("jax", "jaxlib", "flax")  # flax: boxed leaves (nn.Partitioned), abstract or not


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


def apply(
    model: Any,
    rules: Any,
    seed: int | None = None,
    portable: bool = False,
    device: Any = None,
    **options: Any,
) -> Any:
    """Initialize a whole model by rules; see ``multiinit.apply``.

    ``device=`` and ``options`` go to adapters whose ``apply`` takes them (Flax: ``donate=``,
    ``shardings=``, ``layers=``); for the others each one is a ``SpecError`` naming it.

    >>> apply([1.0, 2.0], {"weight": "he_normal"})  # a model of no known framework
    Traceback (most recent call last):
    ...
    multiinit.errors.UnknownBackend: model of type list is not a model multiinit knows; ...
    """
    backend = detect(model)
    module = adapter(backend)
    if device is not None:
        options = {"device": device, **options}
    if options:
        taken = inspect.signature(module.apply).parameters
        for name, value in options.items():
            if name not in taken:
                allowed = [p for p in taken if p not in ("model", "rules", "seed", "portable")]
                raise SpecError(
                    f"{name}={shown(value)} is not allowed for a {backend} model; the {backend} backend's "
                    f"apply takes no {name}= (it takes {', '.join(f'{p}=' for p in allowed) or 'no options'})"
                    + ("; device= materializes meta models in torch" if name == "device" else "")
                )
    return module.apply(model, rules, seed=seed, portable=portable, **options)


def namespace(
    backend: str, compile_spec: Callable[..., Any], seeded: bool = False, example: str | None = None
) -> dict[str, Callable[..., Any]]:
    """Every spec constructor of the contract, returning ``backend``'s native form.

    An adapter module does ``globals().update(namespace("torch", compile))``: a constructor
    added to ``multiinit.spec.CONSTRUCTORS`` appears in every framework's namespace with no
    per-framework line. With ``seeded=True`` (Keras, MXNet: frameworks whose initializer
    objects carry their own seed) every constructor also takes ``seed=`` and passes it on,
    ``compile_spec(spec, seed=seed)``, as ``keras.initializers.HeNormal(seed=1)`` does.
    ``example`` is the adapter's doctest of one constructor, with ``{call}`` where the call
    goes (``he_normal()``) and ``{shape}`` for a shape it fills: each constructor's docstring
    shows it with its own call (``EXAMPLE_CALLS``), and the adapter's doctests run them all.

    >>> ns = namespace("numpy", adapter("numpy").compile)
    >>> ns["uniform"](5, 10)((3,)).shape
    (3,)
    """
    table: dict[str, Callable[..., Any]] = {}
    for name, constructor in CONSTRUCTORS.items():
        table[name] = _native(backend, constructor, compile_spec, seeded, example)
    table["calculate_gain"] = calculate_gain
    return table


#: A call of each constructor with arguments worth showing, and the shape its example fills
#: (the default (4, 3) where none is given); ``mi`` is ``multiinit``. A dirac kernel is
#: (3, 3, 3), the same in every framework's layout.
EXAMPLE_CALLS: dict[str, tuple[str, tuple[int, ...]]] = {
    "constant": ("constant(0.5)", (4, 3)),
    "uniform": ("uniform(-0.1, 0.1)", (4, 3)),
    "normal": ("normal(std=0.02)", (4, 3)),
    "truncated_normal": ("truncated_normal(std=0.02)", (4, 3)),
    "trunc_normal": ("trunc_normal(std=0.02, a=-0.04, b=0.04)", (4, 3)),
    "variance_scaling": ("variance_scaling(2.0, 'fan_in', 'truncated_normal')", (4, 3)),
    "xavier_uniform": ("xavier_uniform(gain=2.0)", (4, 3)),
    "xavier_normal": ("xavier_normal(gain=2.0)", (4, 3)),
    "kaiming_uniform": ("kaiming_uniform(a=2.236, nonlinearity='leaky_relu')", (4, 3)),
    "kaiming_normal": ("kaiming_normal(mode='fan_out', nonlinearity='relu')", (4, 3)),
    "orthogonal": ("orthogonal(gain=2.0)", (4, 3)),
    "eye": ("eye()", (3, 3)),
    "dirac": ("dirac()", (3, 3, 3)),
    "sparse": ("sparse(0.5, std=0.01)", (4, 3)),
    "mixture": ("mixture([(0.5, mi.zeros()), (0.5, mi.uniform(5, 10))])", (4, 3)),
    "custom": ("custom(lambda rng, shape, dtype: rng.uniform(-1, 1, shape), name='doc.uniform')", (4, 3)),
    "with_axes": ("with_axes(mi.he_normal(), in_axis=1, out_axis=0)", (4, 3)),
}


def _example(template: str, name: str) -> str:
    call, shape = EXAMPLE_CALLS.get(name, (f"{name}()", (4, 3)))
    return template.format(call=call, shape=shape)


def _native(
    backend: str,
    constructor: Callable[..., Any],
    compile_spec: Callable[..., Any],
    seeded: bool,
    example: str | None = None,
) -> Callable[..., Any]:
    @functools.wraps(constructor)
    def native(*args: Any, **kwargs: Any) -> Any:
        extra = {"seed": kwargs.pop("seed", None)} if seeded else {}
        made = constructor(*args, **kwargs)
        if isinstance(made, Spec):
            return compile_spec(made, **extra)
        # custom(name=...) used as a decorator factory: compile what it decorates.
        return lambda fn: compile_spec(made(fn), **extra)

    first = (constructor.__doc__ or "").strip().splitlines()[0] if constructor.__doc__ else ""
    native.__doc__ = (
        f"{first}\n\nReturns the {backend} native form of ``multiinit.{constructor.__name__}(...)``."
        + ("\n\n``seed=`` is the initializer's own seed (see ``mi.compile``)." if seeded else "")
        + (f"\n\n{_example(example, constructor.__name__)}" if example else "")
    )
    native.__module__ = f"multiinit.{backend}"
    native.__annotations__ = {k: v for k, v in native.__annotations__.items() if k != "return"}
    return native


# --------------------------------------------------------------------------- registration on import
#
# Keras and MXNet find a saved initializer by a name registered in their own registries, and
# multiinit registers its classes when its adapter is imported. So that a model saved with
# multiinit initializers loads in a process that only did ``import multiinit``, the adapter is
# imported right after its framework is, whichever of the two comes first -- without
# multiinit ever importing a framework itself.

#: framework top-level module -> the adapter that registers with it.
REGISTER_ON_IMPORT = {"keras": "multiinit.keras", "mxnet": "multiinit.mxnet"}


def _register(adapter: str) -> None:
    # The framework imported but the adapter cannot run with it (e.g. Keras 2): leave the
    # user's import alone; mi.compile reports the problem when it is asked for.
    with contextlib.suppress(ImportError):
        importlib.import_module(adapter)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Imports the adapter right after its framework module has finished executing."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        adapter = REGISTER_ON_IMPORT.get(fullname)
        if adapter is None or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _ThenRegister(spec.loader, adapter)
        return spec


class _ThenRegister(importlib.abc.Loader):
    """The framework's own loader (everything delegated to it), then the adapter's import."""

    def __init__(self, loader: Any, adapter: str) -> None:
        self._loader = loader
        self._adapter = adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, module_spec: Any) -> Any:
        return self._loader.create_module(module_spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _register(self._adapter)


def install_registration_hook() -> None:
    """Register multiinit with Keras and MXNet as soon as they are imported (idempotent)."""
    if not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
    for framework, adapter in REGISTER_ON_IMPORT.items():
        if sys.modules.get(framework) is not None:
            _register(adapter)
