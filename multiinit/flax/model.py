"""Walking a model: linen trees and nnx modules, layers and logical views, ``apply``.

``multiinit.apply(variables, rules, seed=0)`` initializes a whole linen variables tree (and
returns a new one) or an ``nnx.Module`` (changed in place). This file finds each parameter,
the layer that owns it, its logical view, fans and order; ``multiinit.rules.execute`` matches
the rules and keeps it all or nothing; ``draw.py`` draws.

Decisions (each one is tested in ``tests/test_flax_*.py``):

Model level: ``apply(variables_or_module, rules, seed=None, portable=False, *, layers=None)``
    * A linen variables dict (plain dict or ``FrozenDict``): only the ``"params"`` collection
      is initialized (``batch_stats`` and other collections are copied unchanged); a dict
      without a ``"params"`` key is taken as a params tree itself. A NEW tree of the same
      structure is returned; the input tree and its arrays are not touched. Leaves may be
      arrays, ``jax.ShapeDtypeStruct`` (from ``jax.eval_shape(model.init, ...)``: apply then
      materializes the parameters without running ``init``) or Flax boxed metadata
      (``nn.Partitioned``: the box is kept, its value replaced).
    * An ``nnx.Module``: its ``nnx.Param`` variables are set in place (not ``BatchStat``
      or other variables) and the module is returned. Shared variables are set once.
    * Paths are ``"params/Dense_0/kernel"`` (linen; ``"layers_0"`` inside ``nn.Sequential``)
      and ``"layers/0/kernel"`` (nnx attribute paths joined by ``/``); a role is the leaf
      name (``kernel``, ``bias``, ``scale``, ``embedding``; ``"weight"`` also selects a
      ``kernel``); a layer class selects the parameters of its instances (nnx always;
      linen when ``layers=`` gives instances, see below); neutral kinds (``"dense"``,
      ``"conv"``, ``"conv_transpose"``, ``"embedding"``, ``"norm"``) select by layer kind.
    * Which layer a linen parameter belongs to: a linen tree has no layer objects, so the
      layer is read, in this order, from ``layers=`` (a mapping of module-path globs, with or
      without the ``params/`` prefix, to a Flax module instance, a module class or a kind
      name; ``modules(model, *inputs)`` builds it for every submodule by tracing
      ``model.init`` abstractly), else from Flax's automatic name (``ConvTranspose_0`` is a
      ``ConvTranspose``), else from the leaves (a 2-D ``kernel``: dense; more dims: conv;
      ``embedding``: embedding; ``scale`` without ``kernel``: norm). It matters for three
      layouts: ``ConvTranspose(transpose_kernel=True)`` stores ``(*k, out, in)`` (its logical
      view swaps the last two axes; this needs an instance, by ``layers=`` or ``modules()``;
      with ``transpose_kernel=False`` Flax's ``(*k, in, out)`` is the plain view, so fan_in
      is in * prod(k) as Flax computes it, not torch's ``(in, out, *k)``-storage fan);
      ``DenseGeneral``/``LinearGeneral`` kernels are flattened as Flax flattens them for
      their initializer, (batch * in, out); an ``Embed`` table ``(num, features)`` is
      already logical (fan_in = features, as torch's Embedding).
    * A bias (any parameter below 2-D of a layer that has a kernel) gets its kernel's fans,
      so ``variance_scaling(1/3, "fan_in", "uniform")`` on it is torch's default bias.
    * ``order`` (the portable stream of a parameter) follows definition order: layers in
      the order of ``layers=`` when it lists every module that holds parameters (as
      ``modules()`` does), else the dict's insertion order, which ``model.init`` gives in
      definition order, with Flax's numbered names put back in numeric order (``Dense_2``
      before ``Dense_10``: trees rebuilt by ``jax.tree_util``, e.g. from a jitted ``init``,
      sort their keys); within a layer the weight (``kernel``/``scale``/``embedding``)
      comes first, then the rest. A parent's own parameters come before its children's, as
      in torch's ``named_parameters``.
    * ``seed=None`` draws from fresh OS entropy (JAX has no global generator): not
      reproducible. An int seed gives each parameter the key
      ``jax.random.key(derive_seed(seed, order))``.
    * All or nothing: rules, shapes and every draw (custom functions included) are checked
      and done before anything is written; on error the input is left as it was.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import FrozenDict
from flax.core import meta as _meta

from ..errors import RuleError
from ..fans import SPATIAL_IN_OUT, LogicalView
from ..rules import LAYER_KINDS, Param, derive_seed, execute, roles_of
from ..spec import Spec
from .draw import _draw, _dtype

__all__ = ["Modules", "apply", "modules"]


# --------------------------------------------------------------------------- layers

_LINEN_KINDS: tuple[tuple[type, str], ...] = tuple(
    (cls, kind)
    for name, kind in (
        ("ConvTranspose", "conv_transpose"), ("Conv", "conv"), ("ConvLocal", "conv"),
        ("DenseGeneral", "dense"), ("Dense", "dense"), ("Embed", "embedding"),
        ("BatchNorm", "norm"), ("LayerNorm", "norm"), ("GroupNorm", "norm"),
        ("RMSNorm", "norm"), ("InstanceNorm", "norm"),
    )
    if (cls := getattr(nn, name, None)) is not None
)
_NNX_KINDS: tuple[tuple[type, str], ...] = tuple(
    (cls, kind)
    for name, kind in (
        ("ConvTranspose", "conv_transpose"), ("Conv", "conv"), ("ConvLocal", "conv"),
        ("LinearGeneral", "dense"), ("Linear", "dense"), ("Embed", "embedding"),
        ("BatchNorm", "norm"), ("LayerNorm", "norm"), ("GroupNorm", "norm"),
        ("RMSNorm", "norm"), ("InstanceNorm", "norm"),
    )
    if (cls := getattr(nnx, name, None)) is not None
)
#: Flax's automatic submodule names are "<ClassName>_<n>".
_BY_NAME = {cls.__name__: cls for cls, _ in _LINEN_KINDS}
_GENERAL = tuple(c for c in (getattr(nn, "DenseGeneral", None), getattr(nnx, "LinearGeneral", None)) if c)
_AUTO_NAME = re.compile(r"^(.+)_(\d+)$")
#: Roles that come first within a layer (torch's "weight", Keras' "kernel"/"gamma").
_FIRST_ROLES = roles_of("weight") | roles_of("gamma") | roles_of("embedding")
_WEIGHT_ROLES = roles_of("weight")


class _Layer:
    """What is known of the layer that owns some parameters."""

    __slots__ = ("instance", "cls", "kind")

    def __init__(self, instance: Any = None, cls: type | None = None, kind: str | None = None) -> None:
        self.instance = instance
        self.cls = cls if cls is not None else (type(instance) if instance is not None else None)
        self.kind = kind if kind is not None else _kind_of(self.cls)

    def attr(self, name: str, default: Any = None) -> Any:
        return getattr(self.instance, name, default) if self.instance is not None else default


def _kind_of(cls: type | None) -> str | None:
    if cls is None:
        return None
    for known, kind in _LINEN_KINDS + _NNX_KINDS:
        if issubclass(cls, known):
            return kind
    return None


def _guess_kind(leaves: dict[str, Any]) -> str | None:
    """The kind of an unknown layer, from its parameters' names and shapes."""
    kernel = next((v for k, v in leaves.items() if k in _WEIGHT_ROLES), None)
    if kernel is not None:
        return "dense" if len(kernel.shape) == 2 else ("conv" if len(kernel.shape) > 2 else None)
    if "embedding" in leaves:
        return "embedding"
    if "scale" in leaves:
        return "norm"
    return None


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(value)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _view(layer: _Layer, name: str, shape: tuple[int, ...], leaves: dict[str, Any]) -> LogicalView:
    """How parameter ``name`` of ``layer`` maps onto logical ``(out, in, *spatial)``."""
    n = len(shape)
    if n < 2:
        return LogicalView(shape)
    if layer.kind == "embedding" and name in roles_of("embedding"):
        return LogicalView(shape)  # (num, features) is torch's Embedding layout already
    if name in _WEIGHT_ROLES:
        if layer.kind == "conv_transpose" and layer.attr("transpose_kernel", False):
            # (*k, out, in) -> (out, in, *k)
            return LogicalView(shape, axes=(n - 2, n - 1, *range(n - 2)))
        if layer.cls is not None and issubclass(layer.cls, _GENERAL):
            # Flax hands the initializer (batch * in, out): the same flattening here.
            n_out = len(_as_tuple(layer.attr("features", layer.attr("out_features"))))
            if not n_out:
                bias = leaves.get("bias")
                n_out = len(bias.shape) if bias is not None and len(bias.shape) else 1
            n_out = min(n_out, n - 1)
            flat = (math.prod(shape[: n - n_out]), math.prod(shape[n - n_out:]))
            return LogicalView(shape, axes=(1, 0), pre_shape=flat)
    return LogicalView.of(shape, SPATIAL_IN_OUT)


def _ordered_leaves(names: Iterable[str]) -> list[str]:
    names = list(names)
    return [n for n in names if n in _FIRST_ROLES] + [n for n in names if n not in _FIRST_ROLES]


def _numbered_order(names: list[str]) -> list[str]:
    """``names`` with each family of Flax auto names (``Dense_2``, ``Dense_10``) put back in
    numeric order within the places the family holds; other names keep their place."""
    families: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        match = _AUTO_NAME.match(name)
        if match:
            families.setdefault(match.group(1), []).append((int(match.group(2)), name))
    sorted_family = {prefix: iter(sorted(members)) for prefix, members in families.items()}
    out = []
    for name in names:
        match = _AUTO_NAME.match(name)
        out.append(next(sorted_family[match.group(1)])[1] if match else name)
    return out


def _layer_params(path: tuple[Any, ...], layer: _Layer, leaves: dict[str, Any],
                  start: int, sep: str = "/") -> list[Param]:
    """The Params of one layer's own leaves (``leaves``: name -> (array-like, handle))."""
    shapes = {name: value[0] for name, value in leaves.items()}
    views = {name: _view(layer, name, tuple(int(d) for d in arr.shape), shapes) for name, arr in shapes.items()}
    weight = next((name for name in shapes if name in _WEIGHT_ROLES and len(shapes[name].shape) >= 2), None)
    weight_fans = views[weight].fans if weight is not None else None
    out = []
    for name in _ordered_leaves(leaves):
        arr, handle = leaves[name]
        fans = weight_fans if weight_fans is not None and len(arr.shape) < 2 else None
        out.append(Param(
            path=sep.join(str(p) for p in (*path, name)),
            view=views[name],
            role=str(name),
            layer=layer.instance,
            fans=fans,
            order=start + len(out),
            dtype=np.dtype(arr.dtype).name,
            handle=handle,
            kind=layer.kind,
        ))
    return out


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _unbox(value: Any) -> Any:
    return value.unbox() if isinstance(value, _meta.AxisMetadata) else value


# --------------------------------------------------------------------------- linen trees


class Modules(dict):
    """What ``modules()`` returns: module path -> bound linen module, in call order. As
    ``layers=`` it may list modules that hold no parameters (``Dropout``), which a
    hand-written mapping may not (there a key that matches nothing is a typo)."""


class _Layers:
    """The ``layers=`` mapping, checked: module-path glob -> what the user says it is."""

    def __init__(self, layers: Mapping[str, Any] | None) -> None:
        self.entries: list[tuple[str, _Layer]] = []
        self.used: set[str] = set()
        self.strict = not isinstance(layers, Modules)
        if layers is None:
            return
        if not isinstance(layers, Mapping):
            raise RuleError(
                f"layers={layers!r} is not allowed; layers must be a dict of module path -> flax "
                "module (instance or class) or kind name, e.g. multiinit.flax.modules(model, x)"
            )
        for key, value in layers.items():
            if not isinstance(key, str):
                raise RuleError(f"layers key {key!r} is not allowed; keys are module paths such as 'Conv_0'")
            self.entries.append((key.strip("/"), self._layer(key, value)))

    @staticmethod
    def _layer(key: str, value: Any) -> _Layer:
        if isinstance(value, str):
            if value not in LAYER_KINDS:
                raise RuleError(
                    f"layers[{key!r}]={value!r} is not allowed; a kind is one of {', '.join(LAYER_KINDS)}"
                )
            return _Layer(kind=value)
        if isinstance(value, type) and issubclass(value, (nn.Module, nnx.Module)):
            return _Layer(cls=value)
        if isinstance(value, (nn.Module, nnx.Module)):
            return _Layer(instance=value)
        raise RuleError(
            f"layers[{key!r}]={value!r} is not allowed; a layer is a flax module instance (e.g. "
            "nn.ConvTranspose(8, (3, 3), transpose_kernel=True)), a module class, or a kind name "
            f"({', '.join(LAYER_KINDS)})"
        )

    def find(self, full: str, short: str) -> _Layer | None:
        for key, layer in self.entries:
            if fnmatch.fnmatchcase(full, key) or fnmatch.fnmatchcase(short, key):
                self.used.add(key)
                return layer
        return None

    def rank(self, short: str) -> int | None:
        return next((i for i, (key, _) in enumerate(self.entries) if key == short), None)

    def check_used(self, module_paths: list[str]) -> None:
        import difflib

        if not self.strict:
            return
        for key, _ in self.entries:
            if key not in self.used:
                close = difflib.get_close_matches(key, module_paths, n=3, cutoff=0.0)
                raise RuleError(
                    f"layers key {key!r} matches no module holding parameters (closest module paths: "
                    f"{', '.join(repr(c) for c in close) or 'none'})"
                )


def _linen_params(tree: Mapping[str, Any], layers: _Layers) -> tuple[list[Param], tuple[str, ...]]:
    """The Params of a linen tree's learnable collection, and the key path of that collection."""
    if "params" in tree and isinstance(tree["params"], Mapping):
        root, prefix = tree["params"], ("params",)
    else:
        root, prefix = tree, ()
    found: list[tuple[str, list[Param]]] = []
    module_paths: list[str] = []

    def visit(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        leaves = {}
        children = []
        for name in node:
            value = node[name]
            if isinstance(value, Mapping):
                children.append(name)
            elif _is_array(_unbox(value)):
                leaves[name] = (_unbox(value), (*prefix, *path, name))
        short = "/".join(path)
        layer = layers.find("/".join((*prefix, *path)), short)
        if leaves:
            module_paths.append(short)
            if layer is None:
                match = _AUTO_NAME.match(path[-1]) if path else None
                cls = _BY_NAME.get(match.group(1)) if match else None
                layer = _Layer(cls=cls) if cls is not None else _Layer()
            if layer.kind is None:
                layer.kind = _guess_kind({k: v[0] for k, v in leaves.items()})
            found.append((short, _layer_params((*prefix, *path), layer, leaves, 0)))
        for name in _numbered_order(children):
            visit(node[name], (*path, name))

    visit(root, ())
    layers.check_used(module_paths)
    ranks = [layers.rank(short) for short, _ in found]
    if layers.entries and all(r is not None for r in ranks):
        # layers= lists every module (as modules() does, in call order): that is the order.
        found = [entry for _, entry in sorted(zip(ranks, found), key=lambda pair: pair[0])]
    params = [p for _, group in found for p in group]
    for i, p in enumerate(params):
        p.order = i
    return params, prefix


def _rebuild(node: Any, values: dict[tuple[str, ...], Any], path: tuple[str, ...] = ()) -> Any:
    """A new tree like ``node``, with the leaves at ``values``' paths replaced."""
    if isinstance(node, Mapping):
        built = {name: _rebuild(node[name], values, (*path, name)) for name in node}
        return FrozenDict(built) if isinstance(node, FrozenDict) else built
    if path in values:
        new = values[path]
        return _meta.replace_boxed(node, new) if isinstance(node, _meta.AxisMetadata) else new
    return node


# --------------------------------------------------------------------------- nnx modules


def _nnx_children(node: Any) -> list[tuple[Any, Any]]:
    """A graph node's children in definition (insertion) order."""
    if isinstance(node, nnx.List) or isinstance(node, (list, tuple)):
        return list(enumerate(node))
    if isinstance(node, Mapping):
        return list(node.items())
    if isinstance(node, (nnx.Module, nnx.Pytree)):
        return [(k, v) for k, v in vars(node).items() if not k.startswith(("_pytree__", "_object__"))]
    return []


def _nnx_params(model: Any) -> list[Param]:
    seen_nodes: set[int] = set()
    seen_vars: set[int] = set()
    params: list[Param] = []

    def visit(node: Any, path: tuple[Any, ...]) -> None:
        if id(node) in seen_nodes:
            return
        seen_nodes.add(id(node))
        children = _nnx_children(node)
        leaves = {}
        for name, value in children:
            if isinstance(value, nnx.Param) and id(value) not in seen_vars and _is_array(value.get_value()):
                seen_vars.add(id(value))
                leaves[name] = (value.get_value(), value)
        if leaves:
            layer = _Layer(instance=node) if isinstance(node, nnx.Module) else _Layer()
            if layer.kind is None:
                layer.kind = _guess_kind({k: v[0] for k, v in leaves.items()})
            params.extend(_layer_params(path, layer, leaves, len(params)))
        for name, value in children:
            if isinstance(value, (nnx.Module, nnx.Pytree, list, tuple, Mapping)) and not isinstance(
                value, nnx.Variable
            ):
                visit(value, (*path, name))

    visit(model, ())
    return params


# --------------------------------------------------------------------------- apply


def _keyed_draw(entropy: int | None) -> Callable[[Param, Spec, int | None], Any]:
    def draw(param: Param, spec: Spec, seed: int | None) -> Any:
        if seed is None:
            seed = derive_seed(entropy, param.order)
        key = jax.random.key(seed)
        return _draw(spec, key, param.view, param.fans, _dtype(param.dtype))

    return draw


def _from_numpy(param: Param, native: np.ndarray) -> Any:
    return jnp.asarray(native, dtype=np.dtype(param.dtype))


def apply(model: Any, rules: Any, seed: int | None = None, portable: bool = False, *,
          layers: Mapping[str, Any] | None = None) -> Any:
    """Initialize a linen variables tree (a new tree is returned) or an nnx module (in place).

    ``rules`` are ``(selector, spec)`` pairs or a dict, first match wins (see
    ``multiinit.apply``). ``layers`` (linen trees only) says which flax module owns the
    parameters under a module path: ``{"Up_0": nn.ConvTranspose(8, (3, 3),
    transpose_kernel=True)}`` or ``layers=modules(model, x)``; see the module docstring.

    >>> import jax, jax.numpy as jnp, flax.linen as nn, multiinit as mi
    >>> net = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(1)])
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 4)))
    >>> new = apply(variables, {"kernel": mi.normal(std=0.01), "bias": mi.zeros()}, seed=0)
    >>> float(new["params"]["layers_0"]["bias"].sum()), new is variables
    (0.0, False)
    """
    entropy = None if seed is not None else int(np.random.SeedSequence().entropy)
    draw = _keyed_draw(entropy)
    if isinstance(model, nnx.Module):
        if layers is not None:
            raise RuleError("layers= is for linen variable trees; an nnx module knows its own layers")
        params = _nnx_params(model)

        def write_nnx(pairs: Sequence[tuple[Param, Any]]) -> None:
            for param, value in pairs:
                param.handle.set_value(value)

        execute(params, rules, seed=seed, portable=portable, draw=draw, from_numpy=_from_numpy, write=write_nnx)
        return model
    if isinstance(model, nn.Module):
        raise RuleError(
            f"model={type(model).__name__}(...) is a flax.linen Module, which holds no parameters; "
            "pass its variables: multiinit.apply(model.init(key, x), rules, seed=0)"
        )
    if not isinstance(model, Mapping):
        raise RuleError(
            f"model of type {type(model).__name__} is not allowed; the flax backend takes a linen "
            "variables dict (from model.init) or an nnx.Module"
        )
    params, _ = _linen_params(model, _Layers(layers))
    written: dict[tuple[str, ...], Any] = {}

    def write_linen(pairs: Sequence[tuple[Param, Any]]) -> None:
        for param, value in pairs:
            written[param.handle] = value

    execute(params, rules, seed=seed, portable=portable, draw=draw, from_numpy=_from_numpy, write=write_linen)
    return _rebuild(model, written)


def modules(model: Any, *args: Any, method: Any = None, **kwargs: Any) -> Modules:
    """Every submodule of a linen ``model`` by module path, in call order, for ``layers=``.

    Traces ``model.init(key, *args, **kwargs)`` abstractly (``jax.eval_shape``: nothing is
    computed) and records each module the first time one of its methods is called. The
    root module is under ``""``.

    >>> import jax.numpy as jnp, flax.linen as nn
    >>> net = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(1)])
    >>> list(modules(net, jnp.ones((2, 4))))
    ['', 'layers_0', 'layers_2']
    """
    if not isinstance(model, nn.Module):
        raise RuleError(f"model={model!r} is not allowed; modules() takes a flax.linen Module")
    found = Modules()

    def record(next_fun: Callable[..., Any], fargs: Any, fkwargs: Any, context: Any) -> Any:
        found.setdefault("/".join(str(p) for p in context.module.path), context.module)
        return next_fun(*fargs, **fkwargs)

    extra = {} if method is None else {"method": method}
    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **extra, **kwargs))
    return found
