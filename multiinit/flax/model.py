"""Walking a model: linen trees, nnx modules and states, layers and logical views, ``apply``.

``multiinit.apply(variables, rules, seed=0)`` initializes a whole linen variables tree (and
returns a new one), an ``nnx.Module`` (changed in place) or an ``nnx.State`` (a new one). This
file finds each parameter, the layer that owns it, its logical view, fans and order
(``params_of``); ``multiinit.rules.execute`` matches the rules and drives this file's writer in
one pass; ``sharded.py`` draws each parameter where it lives; ``draw.py`` holds the laws.

Decisions (each one is tested in ``tests/test_flax_*.py``):

Model level: ``apply(model, rules, seed=None, portable=False, *, layers=None, donate=False, shardings=None)``
    * A linen variables dict (plain dict or ``FrozenDict``): only the ``"params"`` collection
      is initialized (``batch_stats`` and other collections are copied unchanged); a dict
      without a ``"params"`` key is taken as a params tree itself. A NEW tree of the same
      structure is returned; the input tree and its arrays are not touched (but see
      ``donate``). Leaves may be arrays (JAX or NumPy), ``jax.ShapeDtypeStruct`` (an abstract
      tree from ``jax.eval_shape(model.init, ...)``: drawn directly, nothing is allocated
      first) or Flax boxed metadata (``nn.Partitioned``: the box is kept, its value replaced).
    * An ``nnx.Module``: its ``nnx.Param`` variables are set in place (not ``BatchStat`` or
      other variables) and the module is returned; a module from ``nnx.eval_shape`` (abstract
      variables) is materialized in place. An ``nnx.State`` (from ``nnx.split``) is treated as
      a tree: a new State is returned, its ``Param`` variables replaced; its layers are not
      known (kinds are guessed from names, as for a linen tree without ``layers=``).
    * Paths are ``"params/Dense_0/kernel"`` (linen; ``"layers_0"`` inside ``nn.Sequential``)
      and ``"layers/0/kernel"`` (nnx attribute paths joined by ``/``); a role is the leaf
      name (``kernel``, ``bias``, ``scale``, ``embedding``; ``"weight"`` also selects a
      ``kernel``); a layer class selects the parameters of its instances (nnx always; linen
      when ``layers=`` gives instances, see below); neutral kinds (``"dense"``, ``"conv"``,
      ``"conv_transpose"``, ``"embedding"``, ``"norm"``, ``"attention"``) select by layer kind.
    * Tied parameters: an nnx ``Param`` reachable by several paths (a module or a variable
      shared by two attributes), or one ``jax.Array`` object at several paths of a linen tree,
      is one parameter, drawn once, selectable by any of its paths (``Param.aliases``); a
      linen tree gets the new array at every path.
Layers, kinds and layouts
    * Which layer a linen parameter belongs to: a linen tree has no layer objects, so the
      layer is read, in this order, from ``layers=`` (a mapping of module-path globs, with or
      without the ``params/`` prefix, to a Flax module instance, a module class or a kind
      name; ``modules(model, *inputs)`` builds it for every submodule by tracing
      ``model.init`` abstractly), else from Flax's automatic name (``ConvTranspose_0`` is a
      ``ConvTranspose``; ``MyBlock_0`` is a class registered with ``mi.register_layer`` whose
      name is ``MyBlock``, when only one registered class has that name), else from the leaves
      (a 2-D ``kernel``: dense; more dims: conv; ``embedding``: embedding; ``scale`` without
      ``kernel``: norm), which is a guess: such parameters are ``known=False`` and
      ``mi.plan`` flags fan-based laws on them.
    * The layer registry (``mi.register_layer``) comes first for an instance or class it
      covers: its kind, and the layout of each parameter it names (others keep the default
      below); a parameter without fans of its own (a bias) takes them from the parameter the
      registration names, by default from the layer's kernel.
    * Layouts: a kernel is ``(*spatial, in, out)`` (logical ``(out, in, *spatial)``).
      ``ConvTranspose(transpose_kernel=True)`` stores ``(*k, out, in)`` (its logical view
      swaps the last two axes; this needs an instance, by ``layers=`` or ``modules()``; with
      ``transpose_kernel=False`` Flax's ``(*k, in, out)`` is the plain view, so fan_in is
      in * prod(k) as Flax computes it). An ``Embed`` table ``(num, features)`` is already
      logical (fan_in = features, as torch's Embedding).
    * Multi-axis kernels get the fans Flax's own initializer sees: ``nn.DenseGeneral`` and
      ``nnx.LinearGeneral`` hand their ``kernel_init`` the flat ``(batch * in, out)`` shape,
      so their kernel has the axis-role layout ``"in,...,in,out,...,out"`` (batch axes count
      as in, as Flax counts them) and their bias ``"out,...,out"`` (fans from the kernel).
      The axis counts come from the instance (``features``/``axis``/``batch_dims``,
      ``in_features``/``out_features``/``batch_axis``), else from the bias's rank, else one
      in axis (``out`` of an attention: one out axis). The query/key/value/out projections of
      ``nn.MultiHeadDotProductAttention`` (and ``nn.SelfAttention``, ``nn.MultiHeadAttention``)
      and ``nnx.MultiHeadAttention`` are of kind ``"attention"``: query ``(in, heads,
      head_dim)`` is ``"in,out,out"`` (fans (in, heads*head_dim)), out ``(heads, head_dim,
      out)`` is ``"in,in,out"`` -- the fans Keras' ``EinsumDense`` gets for the same layer. A
      linen submodule with ``query``, ``key``, ``value`` and ``out`` children is taken for an
      attention block of another name (a guess: ``known=False``).
    * A bias (any parameter without fans of its own of a layer that has a kernel) gets its
      kernel's fans, so ``variance_scaling(1/3, "fan_in", "uniform")`` on it is torch's
      default bias.
Order
    ``order`` (the stream of a parameter) follows definition order: layers in the order of
    ``layers=`` when it lists every module that holds parameters (as ``modules()`` does), else
    the dict's insertion order, which ``model.init`` gives in definition order, with Flax's
    numbered names put back in numeric order (``Dense_2`` before ``Dense_10``: trees rebuilt by
    ``jax.tree_util``, e.g. from a jitted ``init``, sort their keys); within a layer the
    weight (``kernel``/``scale``/``embedding``) comes first, then the rest. A parent's own
    parameters come before its children's, as in torch's ``named_parameters``.
Seeds
    ``seed=s``: parameter ``order`` is drawn from ``jax.random.fold_in(jax.random.key(s),
    order)`` (``sharded.root_key``; no two parameters of a model share a stream). Values drawn
    with a seed before this rule (``key(derive_seed(s, order))``) changed. ``seed=None`` draws
    from fresh OS entropy (JAX has no global generator): not reproducible.
All or nothing (``rules.execute`` with this file's ``_Writer``)
    Before anything is produced: rules and shapes; each selected leaf is an array JAX can
    replace (not a deleted or donated ``jax.Array``, not an nnx variable of another trace
    level); its dtype is one a law fills (bfloat16, float16, float32, float64) and can hold
    a bounded law's values; its sharding fits its shape; abstract parameters no rule fills,
    and abstract leaves that are not parameters, are refused (see below); user laws
    (``custom``, also inside a mixture) are drawn first through ``reference.call_law`` (a
    ``LawError`` naming the law and the path; under ``jax.jit`` the host callback raises it
    and JAX's runtime error carries its text). Then each parameter is drawn, straight into
    its place. On any error the input is left as it was: every leaf and variable identical.
Abstract models (nothing allocated, then overwritten)
    An abstract leaf (``ShapeDtypeStruct``) that no rule fills would stay without values: a
    ``RuleError`` lists them (add a catch-all rule last). Abstract batch-norm statistics
    (linen ``batch_stats`` ``mean``/``var``, nnx ``BatchStat`` ``mean``/``var``) get Flax's
    construction values (0 and 1); abstract nnx RNG state (``RngCount``, ``RngKey``, e.g. of
    a ``Dropout``) gets count 0 and a key derived from the seed (``fold_in(root_key(s),
    2**32 - 1)``, then the state's position) -- the constructor that would have drawn it never
    ran; any other abstract leaf is a ``RuleError`` listing them (only the model knows them).
Donation (``donate=True``)
    Each selected ``jax.Array`` is given up as its replacement is drawn: donated to the
    kernel when shape, dtype and sharding match (XLA writes into its buffers), else deleted
    once the new array exists. A linen tree then never costs twice its size; the input
    tree's drawn leaves are deleted (``is_deleted()``), so use the returned tree. Nothing is
    donated before every check passed.
Sharding: see ``sharded.py`` (``shardings=``, keys, native and portable per-shard draws).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import FrozenDict, meta as _meta
from flax.linen.spmd import logical_to_mesh_axes  # nn's own, which flax.linen does not re-export
from jax.sharding import Mesh, PartitionSpec, Sharding

from .. import rules as _rules, stream as _stream
from ..errors import MultiinitError, RuleError, ShapeError, SpecError
from ..fans import SPATIAL_IN_OUT, Layout, LogicalView
from ..layers import lookup_layer, registered_layers
from ..rules import LAYER_KINDS, Param, roles_of
from ..spec import Custom, Mixture, Spec, WithAxes
from . import sharded as _sharded
from .draw import _custom_host, _draw, _dtype, _is_tracer, _key_words, _mixture

__all__ = ["Modules", "apply", "modules", "params_of"]


# --------------------------------------------------------------------------- layers

_LINEN_KINDS: tuple[tuple[type, str], ...] = tuple(
    (cls, kind)
    for name, kind in (
        ("ConvTranspose", "conv_transpose"),
        ("Conv", "conv"),
        ("ConvLocal", "conv"),
        ("DenseGeneral", "dense"),
        ("Dense", "dense"),
        ("Embed", "embedding"),
        ("BatchNorm", "norm"),
        ("LayerNorm", "norm"),
        ("GroupNorm", "norm"),
        ("RMSNorm", "norm"),
        ("InstanceNorm", "norm"),
    )
    if (cls := getattr(nn, name, None)) is not None
)
_NNX_KINDS: tuple[tuple[type, str], ...] = tuple(
    (cls, kind)
    for name, kind in (
        ("ConvTranspose", "conv_transpose"),
        ("Conv", "conv"),
        ("ConvLocal", "conv"),
        ("LinearGeneral", "dense"),
        ("Linear", "dense"),
        ("Embed", "embedding"),
        ("BatchNorm", "norm"),
        ("LayerNorm", "norm"),
        ("GroupNorm", "norm"),
        ("RMSNorm", "norm"),
        ("InstanceNorm", "norm"),
    )
    if (cls := getattr(nnx, name, None)) is not None
)
_LINEN_ATTENTION = tuple(
    c
    for c in (
        getattr(nn, n, None) for n in ("MultiHeadDotProductAttention", "MultiHeadAttention", "SelfAttention")
    )
    if c is not None
)
_NNX_ATTENTION = tuple(c for c in (getattr(nnx, "MultiHeadAttention", None),) if c is not None)
#: The projections of Flax's attention blocks, by child name.
_PROJECTIONS = ("query", "key", "value", "out")
#: Flax's automatic submodule names are "<ClassName>_<n>".
_BY_NAME = {cls.__name__: cls for cls, _ in _LINEN_KINDS} | {cls.__name__: cls for cls in _LINEN_ATTENTION}
_GENERAL = tuple(c for c in (getattr(nn, "DenseGeneral", None), getattr(nnx, "LinearGeneral", None)) if c)
_AUTO_NAME = re.compile(r"^(.+)_(\d+)$")
#: Roles that come first within a layer (torch's "weight", Keras' "kernel"/"gamma").
_FIRST_ROLES = roles_of("weight") | roles_of("gamma") | roles_of("embedding")
_WEIGHT_ROLES = roles_of("weight")


class _Layer:
    """What is known of the layer that owns some parameters.

    ``kind`` is the neutral kind, ``known`` whether it is multiinit's knowledge (a built-in
    Flax layer, a registration, or the user's ``layers=``) rather than a guess from the leaves;
    ``general`` the ``(n_in, n_out)`` axis counts of a multi-axis kernel when known, or
    ``"general"`` when the layer is one but its counts must be read off its leaves;
    ``projection`` is the child name of an attention projection (``"out"``, ...).
    """

    __slots__ = ("instance", "cls", "kind", "known", "reg", "general", "projection")

    def __init__(self, instance: Any = None, cls: type | None = None, kind: str | None = None) -> None:
        self.instance = instance
        self.cls = cls if cls is not None else (type(instance) if instance is not None else None)
        self.reg = lookup_layer(self.cls) if self.cls is not None else None
        self.projection: str | None = None
        self.general: Any = None
        self.kind: str | None  # None: a module whose kind neither a registration nor its class gives
        if kind is not None:
            self.kind, self.known = kind, True
        elif self.reg is not None:
            self.kind, self.known = self.reg.kind, True
        else:
            self.kind = _kind_of(self.cls)
            self.known = self.kind is not None
        if self.cls is not None and issubclass(self.cls, _GENERAL) and (self.reg is None):
            self.general = _general_counts(self.instance) if instance is not None else "general"

    def attr(self, name: str, default: Any = None) -> Any:
        return getattr(self.instance, name, default) if self.instance is not None else default

    def as_projection(self, name: str, known: bool) -> None:
        """Mark this layer as the ``name`` projection of an attention block."""
        if self.reg is not None:
            return  # a registration says what the layer is
        self.projection = name
        self.kind = "attention"
        self.known = known
        if self.general is None:
            self.general = "general"


def _kind_of(cls: type | None) -> str | None:
    if cls is None:
        return None
    for known, kind in _LINEN_KINDS + _NNX_KINDS:
        if issubclass(cls, known):
            return kind
    return None


def _tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(value)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _general_counts(instance: Any) -> tuple[int, int] | str:
    """``(n_in, n_out)`` of a DenseGeneral/LinearGeneral instance's kernel (batch axes count as
    in, as Flax's flat ``(batch * in, out)`` counts them)."""
    if isinstance(instance, nnx.Module):
        n_in = len(_tuple(getattr(instance, "in_features", ()))) + len(
            _tuple(getattr(instance, "batch_axis", ()))
        )
        n_out = len(_tuple(getattr(instance, "out_features", ())))
    else:
        n_in = len(_tuple(getattr(instance, "axis", -1))) + len(_tuple(getattr(instance, "batch_dims", ())))
        n_out = len(_tuple(getattr(instance, "features", ())))
    return (n_in, n_out) if n_in and n_out else "general"


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


def _registered_by_short_name() -> dict[str, type]:
    """Registered classes (by class object or exact qualified name) by their ``__name__``,
    for Flax's automatic names; a name two registrations share is left out."""
    found: dict[str, Any] = {}
    for reg in registered_layers():
        if reg.is_glob:
            continue
        short = reg.cls.__name__ if reg.cls is not None else reg.target.rsplit(".", 1)[-1]
        found[short] = None if short in found else reg
    return {k: v for k, v in found.items() if v is not None}


def _layout_counts(
    layer: _Layer, name: str, shape: tuple[int, ...], leaves: dict[str, Any]
) -> tuple[int, int]:
    """``(n_in, n_out)`` of a multi-axis kernel of ``shape``."""
    n = len(shape)
    if isinstance(layer.general, tuple) and sum(layer.general) == n:
        return layer.general
    bias = leaves.get("bias")
    if bias is not None and 0 < len(bias.shape) < n:
        n_out = len(bias.shape)
    elif layer.projection == "out":
        n_out = 1
    else:
        n_out = n - 1
    n_out = min(max(n_out, 1), n - 1)
    return n - n_out, n_out


def _builtin_view(layer: _Layer, name: str, shape: tuple[int, ...], leaves: dict[str, Any]) -> LogicalView:
    """How parameter ``name`` of ``layer`` maps onto logical ``(out, in, *spatial)``."""
    n = len(shape)
    if n < 2:
        return LogicalView(shape)
    if layer.kind == "embedding" and name in roles_of("embedding"):
        return LogicalView(shape)  # (num, features) is torch's Embedding layout already
    kernel = leaves.get(next((k for k in leaves if k in _WEIGHT_ROLES), ""))
    if layer.general is not None:
        if name in _WEIGHT_ROLES:
            n_in, n_out = _layout_counts(layer, name, shape, leaves)
            return Layout(",".join(["in"] * n_in + ["out"] * n_out)).view(shape)
        if kernel is not None:
            return Layout(",".join(["out"] * n)).view(shape)  # a multi-axis bias: the kernel's fans
    if name in _WEIGHT_ROLES and layer.kind == "conv_transpose" and layer.attr("transpose_kernel", False):
        # (*k, out, in) -> (out, in, *k)
        return LogicalView(shape, axes=(n - 2, n - 1, *range(n - 2)))
    return LogicalView.of(shape, SPATIAL_IN_OUT)


def _has_fans(view: LogicalView) -> bool:
    return len(view.logical_shape) - view.batch >= 2


def _ordered_leaves(names: Iterable[str]) -> list[str]:
    names = list(names)
    return [n for n in names if n in _FIRST_ROLES] + [n for n in names if n not in _FIRST_ROLES]


def _numbered_order(names: list[str]) -> list[str]:
    """``names`` with each family of Flax auto names (``Dense_2``, ``Dense_10``) put back in
    numeric order within the places the family holds; other names keep their place."""
    families: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        match = _AUTO_NAME.match(str(name))
        if match:
            families.setdefault(match.group(1), []).append((int(match.group(2)), name))
    sorted_family = {prefix: iter(sorted(members)) for prefix, members in families.items()}
    out = []
    for name in names:
        match = _AUTO_NAME.match(str(name))
        out.append(next(sorted_family[match.group(1)])[1] if match else name)
    return out


class _Slot:
    """Where a parameter lives: its tree paths (linen, State) or its nnx variable, and its
    current value (an array, a ``ShapeDtypeStruct`` or a tracer), unboxed."""

    __slots__ = ("paths", "variable", "value", "box")

    def __init__(self, path: tuple[Any, ...], value: Any, variable: Any = None, box: Any = None) -> None:
        self.paths = [path]
        self.variable = variable
        self.value = value
        self.box = box


def _layer_params(path: tuple[Any, ...], layer: _Layer, slots: dict[str, _Slot], start: int) -> list[Param]:
    """The Params of one layer's own leaves."""
    values = {name: slot.value for name, slot in slots.items()}
    views = {}
    for name, value in values.items():
        shape = tuple(int(d) for d in value.shape)
        view = layer.reg.view(name, shape) if layer.reg is not None else None
        views[name] = view if view is not None else _builtin_view(layer, name, shape, values)
    weight = next((n for n in values if n in _WEIGHT_ROLES and _has_fans(views[n])), None)
    out: list[Param] = []
    for name in _ordered_leaves(slots):
        fans = None
        if not _has_fans(views[name]):
            source = layer.reg.fans_source(name) if layer.reg is not None else None
            source = source if source in views and _has_fans(views[source]) else weight
            if source is not None:
                fans = views[source].fans
        slot = slots[name]
        out.append(
            Param(
                path="/".join(str(p) for p in (*path, name)),
                view=views[name],
                role=str(name),
                layer=layer.instance,
                fans=fans,
                order=start + len(out),
                dtype=np.dtype(slot.value.dtype).name,
                handle=slot,
                kind=layer.kind,
                known=layer.known if layer.kind is not None else False,
            )
        )
    return out


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _unbox(value: Any) -> Any:
    if isinstance(value, _meta.AxisMetadata):
        return value.unbox(apply_constraint=False) if isinstance(value, _meta.Partitioned) else value.unbox()
    return value


def _is_abstract(value: Any) -> bool:
    return isinstance(value, jax.ShapeDtypeStruct)


# --------------------------------------------------------------------------- linen trees


class Modules(dict[str, Any]):
    """What ``modules()`` returns: module path -> bound linen module, in call order. As
    ``layers=`` it may list modules that hold no parameters (``Dropout``), which a
    hand-written mapping may not (there a key that matches nothing is a typo)."""


class _Layers:
    """The ``layers=`` mapping, checked: module-path glob -> what the user says it is."""

    def __init__(self, layers: Mapping[str, Any] | None) -> None:
        self.entries: list[tuple[str, Callable[[], _Layer]]] = []
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
    def _layer(key: str, value: Any) -> Callable[[], _Layer]:
        if isinstance(value, str):
            if value not in LAYER_KINDS:
                raise RuleError(
                    f"layers[{key!r}]={value!r} is not allowed; a kind is one of {', '.join(LAYER_KINDS)}"
                )
            return lambda: _Layer(kind=value)
        if isinstance(value, type) and issubclass(value, (nn.Module, nnx.Module)):
            return lambda: _Layer(cls=value)
        if isinstance(value, (nn.Module, nnx.Module)):
            return lambda: _Layer(instance=value)
        raise RuleError(
            f"layers[{key!r}]={value!r} is not allowed; a layer is a flax module instance (e.g. "
            "nn.ConvTranspose(8, (3, 3), transpose_kernel=True)), a module class, or a kind name "
            f"({', '.join(LAYER_KINDS)})"
        )

    def find(self, full: str, short: str) -> _Layer | None:
        for key, make in self.entries:
            if fnmatch.fnmatchcase(full, key) or fnmatch.fnmatchcase(short, key):
                self.used.add(key)
                return make()
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


def _auto_layer(name: Any, registered: dict[str, Any]) -> _Layer | None:
    """The layer a Flax automatic name says (``Dense_0``, ``MyBlock_3``), or None."""
    match = _AUTO_NAME.match(str(name))
    if not match:
        return None
    cls = _BY_NAME.get(match.group(1))
    if cls is not None:
        return _Layer(cls=cls)
    reg = registered.get(match.group(1))
    if reg is not None:
        layer = _Layer(cls=reg.cls) if reg.cls is not None else _Layer(kind=reg.kind)
        if reg.cls is None:
            layer.reg = reg
        return layer
    return None


def _is_attention_block(layer: _Layer | None, node: Mapping[str, Any]) -> tuple[bool, bool]:
    """``(is attention, known)`` for a linen module holding ``node``."""
    if (
        layer is not None
        and layer.cls is not None
        and issubclass(layer.cls, _LINEN_ATTENTION + _NNX_ATTENTION)
    ):
        return True, True
    if layer is not None and layer.reg is not None:
        return False, True
    children = {str(k) for k, v in node.items() if isinstance(v, Mapping) and "kernel" in v}
    return set(_PROJECTIONS) <= children, False


def _tree_params(
    tree: Mapping[str, Any], layers: _Layers, nnx_state: bool = False
) -> tuple[list[Param], tuple[str, ...]]:
    """The Params of a linen tree's learnable collection (or of an nnx State's ``Param``
    variables), and the key path of that collection."""
    prefix: tuple[str, ...]
    if not nnx_state and "params" in tree and isinstance(tree["params"], Mapping):
        root, prefix = tree["params"], ("params",)
    else:
        root, prefix = tree, ()
    found: list[tuple[str, list[Param]]] = []
    module_paths: list[str] = []
    registered = _registered_by_short_name()
    arrays: dict[int, _Slot] = {}  # one jax.Array object at several paths: one tied parameter

    def leaf(value: Any, key: tuple[Any, ...]) -> _Slot | None:
        if nnx_state:
            if not isinstance(value, nnx.Param):
                return None
            raw = value.get_value()
            return _Slot(key, raw, box=value) if _is_array(raw) else None
        raw = _unbox(value)
        if isinstance(raw, Mapping) or not _is_array(raw):
            return None
        return _Slot(key, raw, box=value if value is not raw else None)

    def visit(
        node: Mapping[str, Any], path: tuple[Any, ...], parent: tuple[_Layer | None, Mapping[str, Any]] | None
    ) -> None:
        slots: dict[str, _Slot] = {}
        children = []
        for name in node:
            value = node[name]
            if isinstance(value, Mapping) and not isinstance(value, nnx.Variable):
                children.append(name)
                continue
            slot = leaf(value, (*prefix, *path, name))
            if slot is None:
                continue
            if isinstance(slot.value, jax.Array) and not _is_tracer(slot.value):
                first = arrays.get(id(slot.value))
                if first is not None:
                    first.paths.append(slot.paths[0])
                    continue
                arrays[id(slot.value)] = slot
            slots[name] = slot
        short = "/".join(str(p) for p in path)
        layer = layers.find("/".join(str(p) for p in (*prefix, *path)), short)
        if layer is None and path:
            layer = _auto_layer(path[-1], registered)
        if (slots or children) and parent is not None and path and str(path[-1]) in _PROJECTIONS:
            attention, known = _is_attention_block(*parent)
            if attention:
                if layer is None:
                    layer = _Layer(cls=_GENERAL[0] if not nnx_state else _GENERAL[-1])
                    layer.general = "general"
                layer.as_projection(str(path[-1]), known and layer.known)
        if slots:
            module_paths.append(short)
            if layer is None:
                layer = _Layer()
            if layer.kind is None:
                layer.kind = _guess_kind({k: s.value for k, s in slots.items()})
                layer.known = False
            found.append((short, _layer_params((*prefix, *path), layer, slots, 0)))
        for name in _numbered_order(children):
            visit(node[name], (*path, name), (layer, node))

    visit(root, (), None)
    layers.check_used(module_paths)
    ranks = [layers.rank(short) for short, _ in found]
    known = [r for r in ranks if r is not None]
    if layers.entries and len(known) == len(ranks):
        # layers= lists every module (as modules() does, in call order): that is the order.
        found = [entry for _, entry in sorted(zip(known, found, strict=True), key=lambda pair: pair[0])]
    params = [p for _, group in found for p in group]
    for i, p in enumerate(params):
        p.order = i
        p.aliases = tuple("/".join(str(k) for k in other) for other in p.handle.paths[1:])
    return params, prefix


def _rebuild(node: Any, values: dict[tuple[Any, ...], Any], path: tuple[Any, ...] = ()) -> Any:
    """A new tree like ``node``, with the leaves at ``values``' paths replaced."""
    if isinstance(node, Mapping) and not isinstance(node, nnx.Variable):
        built = {name: _rebuild(node[name], values, (*path, name)) for name in node}
        if isinstance(node, FrozenDict):
            return FrozenDict(built)
        if isinstance(node, nnx.State):
            return type(node)(built)
        return built
    if path in values:
        new = values[path]
        if isinstance(node, nnx.Variable):
            return node.replace(new)
        # The box's own method: flax.core.meta.replace_boxed unboxes under the context mesh first.
        return node.replace_boxed(new) if isinstance(node, _meta.AxisMetadata) else new
    return node


def _tree_others(
    tree: Mapping[str, Any], prefix: tuple[Any, ...], nnx_state: bool
) -> list[tuple[tuple[Any, ...], Any, Any]]:
    """Every abstract leaf of ``tree`` outside the learnable collection: ``(key path, value,
    leaf)`` (the leaf is the box or the nnx variable)."""
    out: list[tuple[tuple[Any, ...], Any, Any]] = []
    if not nnx_state and not prefix:
        return out  # a bare params tree: every leaf is a parameter

    def visit(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, Mapping) and not isinstance(node, nnx.Variable):
            if not nnx_state and path == prefix:
                return
            for name in node:
                visit(node[name], (*path, name))
            return
        if nnx_state:
            if (
                isinstance(node, nnx.Variable)
                and not isinstance(node, nnx.Param)
                and _is_abstract(node.get_value())
            ):
                out.append((path, node.get_value(), node))
            return
        raw = _unbox(node)
        if _is_abstract(raw):
            out.append((path, raw, node))

    visit(tree, ())
    return out


# --------------------------------------------------------------------------- nnx modules


def _nnx_children(node: Any) -> list[tuple[Any, Any]]:
    """A graph node's children in definition (insertion) order."""
    if isinstance(node, (nnx.List, list, tuple)):
        return list(enumerate(node))
    if isinstance(node, Mapping):
        return list(node.items())
    if isinstance(node, (nnx.Module, nnx.Pytree)):
        return [(k, v) for k, v in vars(node).items() if not k.startswith(("_pytree__", "_object__"))]
    return []


def _is_node(value: Any) -> bool:
    return isinstance(value, (nnx.Module, nnx.Pytree, list, tuple, Mapping)) and not isinstance(
        value, nnx.Variable
    )


def _nnx_walk(model: Any) -> tuple[list[Param], list[tuple[tuple[Any, ...], Any, Any]]]:
    """The Params of an nnx module (each shared variable once, with every path it has), and
    its other variables holding abstract values ``(path, value, variable)``."""
    params: list[Param] = []
    by_variable: dict[int, Param] = {}
    others: dict[int, tuple[tuple[Any, ...], Any, Any]] = {}
    visited: set[int] = set()

    def visit(node: Any, path: tuple[Any, ...], parent: Any, stack: tuple[int, ...]) -> None:
        first_time = id(node) not in visited
        visited.add(id(node))
        children = _nnx_children(node)
        slots: dict[str, _Slot] = {}
        for name, value in children:
            if not isinstance(value, nnx.Variable):
                continue
            if isinstance(value, nnx.Param):
                seen = by_variable.get(id(value))
                if seen is not None:
                    where = "/".join(str(p) for p in (*path, name))
                    if where not in seen.paths:
                        seen.aliases = (*seen.aliases, where)
                    continue
                raw = value.get_value()
                if _is_array(raw):
                    slots[name] = _Slot((*path, name), raw, variable=value)
            elif id(value) not in others and _is_abstract(value.get_value()):
                others[id(value)] = ((*path, name), value.get_value(), value)
        if slots and first_time:
            layer = _Layer(instance=node) if isinstance(node, nnx.Module) else _Layer()
            if (
                isinstance(parent, _NNX_ATTENTION)
                and path
                and str(path[-1]) in _PROJECTIONS
                and isinstance(node, _GENERAL)
            ):
                layer.as_projection(str(path[-1]), True)
            if layer.kind is None:
                layer.kind = _guess_kind({k: s.value for k, s in slots.items()})
                layer.known = False
            group = _layer_params(path, layer, slots, len(params))
            for p in group:
                by_variable[id(p.handle.variable)] = p
            params.extend(group)
        for name, value in children:
            if _is_node(value) and id(value) not in stack:
                visit(value, (*path, name), node, (*stack, id(value)))

    visit(model, (), None, (id(model),))
    return params, list(others.values())


# --------------------------------------------------------------------------- params_of


def _kind_of_model(model: Any) -> str:
    if isinstance(model, nnx.Module):
        return "nnx"
    if isinstance(model, nnx.State):
        return "state"
    if isinstance(model, nn.Module):
        raise RuleError(
            f"model={type(model).__name__}(...) is a flax.linen Module, which holds no parameters; "
            "pass its variables: multiinit.apply(model.init(key, x), rules, seed=0), or an abstract "
            "tree: jax.eval_shape(model.init, key, x)"
        )
    if not isinstance(model, Mapping):
        raise RuleError(
            f"model of type {type(model).__name__} is not allowed; the flax backend takes a linen "
            "variables dict (from model.init or jax.eval_shape(model.init, ...)), an nnx.Module or an "
            "nnx.State"
        )
    return "linen"


def _walk(
    model: Any, layers: Mapping[str, Any] | None
) -> tuple[str, list[Param], tuple[Any, ...], list[Any]]:
    kind = _kind_of_model(model)
    if kind == "nnx":
        if layers is not None:
            raise RuleError("layers= is for linen variable trees; an nnx module knows its own layers")
        params, others = _nnx_walk(model)
        return kind, params, (), others
    if kind == "state" and layers is not None:
        raise RuleError("layers= is for linen variable trees; pass the nnx module itself to use its layers")
    params, prefix = _tree_params(model, _Layers(layers), nnx_state=kind == "state")
    return kind, params, prefix, _tree_others(model, prefix, kind == "state")


def params_of(model: Any, layers: Mapping[str, Any] | None = None) -> list[Param]:
    """Every parameter of a linen variables tree, an nnx module or an nnx State, as a
    ``rules.Param``, in the order that seeds its stream (what ``mi.plan`` lists).

    ``layers`` (linen trees only) says which module owns the parameters under a module path
    (see ``apply``). Tied parameters appear once, their other paths in ``aliases``.

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> tree = jax.eval_shape(nn.Dense(8).init, jax.random.key(0), jnp.ones((1, 4)))
    >>> [(p.path, p.kind, p.fans) for p in params_of(tree)]
    [('params/kernel', 'dense', None), ('params/bias', 'dense', (4, 8))]
    """
    return _walk(model, layers)[1]


# --------------------------------------------------------------------------- the writer


def _where(param: Param) -> str:
    layer = f" ({type(param.layer).__name__})" if param.layer is not None else ""
    return f"{param.path!r}{layer}"


def _inner(spec: Spec) -> Spec:
    """The law to draw: a ``with_axes`` spec only says where the fans come from."""
    return spec.spec if isinstance(spec, WithAxes) else spec


class _Shardings:
    """The ``shardings=`` argument, checked: a Mesh, one Sharding, or a tree of them by path."""

    def __init__(self, value: Any) -> None:
        self.mesh: Mesh | None = None
        self.one: Sharding | None = None
        self.by_path: dict[str, Any] | None = None
        self.used: set[str] = set()
        if value is None:
            return
        if isinstance(value, Mesh):
            self.mesh = value
        elif isinstance(value, Sharding):
            self.one = value
        elif isinstance(value, Mapping):
            self.by_path = {}
            self._flatten(value, (), self.by_path)
        else:
            raise RuleError(
                f"shardings={value!r} is not allowed; shardings must be a jax.sharding.Mesh (each "
                "parameter sharded by its partitioning names), one Sharding for every parameter, or a "
                "tree like the model's of Sharding, PartitionSpec or None (e.g. from nn.get_partition_spec)"
            )

    def _flatten(self, node: Any, path: tuple[Any, ...], by_path: dict[str, Any]) -> None:
        """Every leaf of the shardings tree ``node`` (at ``path``) into ``by_path``."""
        if isinstance(node, Mapping) and not isinstance(node, nnx.Variable):
            for name in node:
                self._flatten(node[name], (*path, name), by_path)
            return
        value = node.get_value() if isinstance(node, nnx.Variable) else node
        if isinstance(value, _meta.AxisMetadata):
            value = value.unbox()
        if value is not None and not isinstance(value, (Sharding, PartitionSpec)):
            raise RuleError(
                f"shardings at {'/'.join(map(str, path))!r} is {value!r}; the leaves of a shardings tree are "
                "jax.sharding.Sharding, PartitionSpec or None"
            )
        by_path["/".join(str(p) for p in path)] = value

    def lookup(self, paths: Iterable[str], prefix: tuple[Any, ...]) -> tuple[bool, Any]:
        if self.by_path is None:
            return False, None
        for path in paths:
            short = path[len(prefix[0]) + 1 :] if prefix and path.startswith(f"{prefix[0]}/") else None
            for candidate in (path, short):
                if candidate is not None and candidate in self.by_path:
                    self.used.add(candidate)
                    return True, self.by_path[candidate]
        return False, None

    def check_used(self, leaf_paths: set[str]) -> None:
        if self.by_path is None:
            return
        for path in self.by_path:
            if path not in self.used and path not in leaf_paths:
                raise RuleError(
                    f"shardings has an entry at {path!r}, which is no leaf of the model; the shardings "
                    "tree must have the model's structure (e.g. nn.get_partition_spec(variables))"
                )


def _names_spec(leaf: Any, value: Any) -> tuple[PartitionSpec | None, Mesh | None]:
    """The partition spec a leaf's metadata gives, and the metadata's mesh."""
    if isinstance(leaf, _meta.Partitioned):
        if isinstance(leaf, nn.LogicallyPartitioned):
            # A PartitionSpec: None comes only for names=None, and a partitioned leaf has its names.
            axes = cast(PartitionSpec, logical_to_mesh_axes(leaf.names, leaf.rules))
            return PartitionSpec(*axes), leaf.mesh
        return leaf.get_partition_spec(), leaf.mesh
    if (
        isinstance(leaf, nnx.Variable)
        and leaf.has_metadata("out_sharding")
        and leaf.get_metadata("out_sharding")
    ):
        from flax.nnx.spmd import get_var_pspec

        mesh = leaf.get_metadata("mesh") if leaf.has_metadata("mesh") else None
        return get_var_pspec(leaf), mesh
    return None, None


def _target(
    value: Any, leaf: Any, paths: Iterable[str], prefix: tuple[Any, ...], given: _Shardings
) -> Sharding | None:
    """Where the new array of a leaf goes (see ``sharded.py``)."""
    path = next(iter(paths))
    if given.one is not None:
        return _sharded.concrete(given.one, None, path)
    found, entry = given.lookup(paths, prefix)
    if found:
        if entry is None or isinstance(entry, Sharding):
            return _sharded.concrete(entry, None, path)
        mesh = _sharded.context_mesh()
        if mesh is None:
            raise RuleError(
                f"shardings gives {path!r} the PartitionSpec {entry}, which needs a mesh: call mi.apply "
                "inside jax.set_mesh(mesh), or give NamedShardings"
            )
        return _sharded.named(mesh, entry, path)
    own = None
    if isinstance(value, jax.Array) and not _is_tracer(value):
        own = value.sharding if getattr(value, "committed", True) else None
    elif _is_abstract(value):
        own = getattr(value, "sharding", None)
    spec, mesh = _names_spec(leaf, value)
    if given.mesh is not None:
        if spec is None and own is not None and isinstance(own, jax.sharding.NamedSharding):
            spec = own.spec
        return _sharded.named(given.mesh, spec if spec is not None else PartitionSpec(), path)
    if own is not None:
        return _sharded.concrete(own, mesh, path)
    return _sharded.named(mesh, spec, path)


def _bounded_problem(spec: Spec, fans: Any, dtype: np.dtype, where: str) -> str | None:
    """Why ``dtype`` cannot hold a bounded law's values (it would write infinities), or None."""
    from ..reference import _leaves, _reach, _too_large

    top = float(jnp.finfo(dtype).max)
    for leaf in _leaves(_inner(spec)):
        try:
            reach, exact = _reach(leaf, fans)
        except SpecError as e:
            return str(e)
        if exact and reach > top:
            return _too_large(spec, leaf, reach, dtype, where)
    return None


class _Writer:
    """The Flax ``rules.Writer``: check everything, prepare user laws, draw each parameter."""

    def __init__(
        self, kind: str, seed: int | None, donate: bool, shardings: _Shardings, prefix: tuple[Any, ...]
    ) -> None:
        self.kind = kind
        self.seed = seed
        self.donate = donate
        self.shardings = shardings
        self.prefix = prefix
        self.written: dict[tuple[Any, ...], Any] = {}
        self.targets: dict[int, Sharding | None] = {}
        self.extras: list[tuple[Any, str, Sharding | None, tuple[Any, ...], Any]] = []
        self.traced = _is_tracer(jnp.zeros((), jnp.int8))  # called inside jax.jit (or another transform)
        self._root: Any = None

    # ---- before anything

    def plan_abstract(
        self, params: list[Param], others: list[tuple[tuple[Any, ...], Any, Any]], rules: Any
    ) -> None:
        """Abstract parameters that no rule fills, and abstract leaves that are not parameters
        multiinit knows how to fill, are a ``RuleError``; the others are noted (and their
        shardings checked) for ``finish``."""
        abstract = [p for p in params if _is_abstract(p.handle.value)]
        if abstract:
            selected = {id(p) for p, _ in _rules.plan(params, rules)}
            left = [p.path for p in abstract if id(p) not in selected]
            if left:
                raise RuleError(
                    f"abstract parameters {_listed(left)} (ShapeDtypeStruct, from eval_shape) are not "
                    "initialized by any rule: they would stay without values; add rules for them (or "
                    "a catch-all such as ('*', mi.zeros()) last)"
                )
        unknown = []
        for path, value, leaf in others:
            name = str(path[-1])
            fill = None
            if (self.kind == "linen" and path[0] == "batch_stats" and name in ("mean", "var")) or (
                isinstance(leaf, nnx.BatchStat) and name in ("mean", "var")
            ):
                fill = "zeros" if name == "mean" else "ones"
            elif isinstance(leaf, nnx.RngCount):
                fill = "zeros"
            elif isinstance(leaf, nnx.RngKey) and value.dtype == jax.random.key(0).dtype:
                fill = "key"
            text = "/".join(str(p) for p in path)
            if fill is None:
                unknown.append(text)
                continue
            target = _target(value, leaf, [text], (), self.shardings)
            _sharded.check_sharding(target, tuple(value.shape), text)
            self.extras.append((leaf, fill, target, path, value))
        if unknown:
            raise RuleError(
                f"abstract leaves {_listed(unknown)} (ShapeDtypeStruct) are not parameters, and only the "
                "model knows their values (multiinit fills batch-norm statistics and nnx RNG state, "
                "nothing else); give them values before mi.apply, or build the model concretely"
            )

    # ---- the Writer protocol

    def check(self, param: Param, spec: Spec) -> None:
        slot: _Slot = param.handle
        value = slot.value
        if isinstance(value, jax.Array) and not _is_tracer(value) and value.is_deleted():
            raise ShapeError(
                f"{spec!r} cannot fill {_where(param)}: its array was deleted or donated (e.g. by an "
                "earlier mi.apply(..., donate=True)); use the tree that call returned"
            )
        if not (
            isinstance(value, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)) or _is_tracer(value)
        ):
            raise ShapeError(
                f"{spec!r} cannot fill {_where(param)}: it is a {type(value).__name__}; multiinit replaces "
                "JAX and NumPy arrays and ShapeDtypeStructs"
            )
        try:
            dtype = _dtype(param.dtype)
        except SpecError:
            raise ShapeError(
                f"{spec!r} cannot fill {_where(param)} of dtype {param.dtype}: multiinit fills bfloat16, "
                "float16, float32 or float64 parameters"
            ) from None
        problem = _bounded_problem(
            spec,
            _rules._given_fans(param, spec) or _safe_fans(param),
            dtype,
            f"{_where(param)} of dtype {dtype.name}",
        )
        if problem:
            raise SpecError(problem)
        if slot.variable is not None and not getattr(slot.variable, "_can_update", True):
            raise ShapeError(
                f"{spec!r} cannot fill {_where(param)}: the nnx variable cannot be set here (it belongs to "
                "another trace level, e.g. a module made outside jax.jit and changed inside it); use "
                "nnx.jit, or call mi.apply outside the transform"
            )
        leaf = slot.variable if slot.variable is not None else slot.box
        target = _target(value, leaf, param.paths, self.prefix, self.shardings)
        _sharded.check_sharding(target, param.view.native_shape, param.path)
        self.targets[id(param)] = target

    def prepare(self, param: Param, spec: Spec, draw: _rules.Draw) -> Any:
        try:
            if draw.portable:
                if self.traced:
                    return self._callback(lambda: self._portable_host(param, spec, draw), param)
                return self._portable_host(param, spec, draw)
            return self._native_user(param, spec)
        except MultiinitError as e:
            if param.path in str(e):
                raise
            raise type(e)(f"{spec!r} on {_where(param)}: {e}") from e

    def fill(self, param: Param, spec: Spec, draw: _rules.Draw, prepared: Any) -> None:
        slot: _Slot = param.handle
        target = self.targets[id(param)]
        old = (
            slot.value
            if (
                self.donate
                and isinstance(slot.value, jax.Array)
                and not _is_tracer(slot.value)
                and not slot.value.is_deleted()
            )
            else None
        )
        dtype = _dtype(param.dtype)
        if prepared is not None:
            new = _sharded.place(prepared, target)
        elif draw.portable:
            new = self._portable(param, spec, draw, target, dtype)
        else:
            new = _sharded.native(
                _inner(spec),
                param.view,
                _rules._given_fans(param, spec),
                dtype,
                self.root(),
                param.order,
                target,
                old,
            )
        if old is not None and not old.is_deleted():
            old.delete()  # not donated to the kernel (another sharding, a host draw): given up now
        self.store(slot, new)

    # ---- drawing

    def root(self) -> Any:
        """The key of this call (``sharded.root_key``; fresh OS entropy without a seed)."""
        if self._root is None:
            # (A SeedSequence made without entropy draws an int of OS entropy.)
            seed = self.seed if self.seed is not None else int(cast(int, np.random.SeedSequence().entropy))
            self._root = _sharded.root_key(seed)
        return self._root

    def _portable_host(self, param: Param, spec: Spec, draw: _rules.Draw) -> np.ndarray:
        values = _rules.portable_values(param, spec, draw)
        return np.ascontiguousarray(param.view.to_native(values)).astype(_dtype(param.dtype), copy=False)

    def _callback(self, host: Callable[[], np.ndarray], param: Param) -> Any:
        result = jax.ShapeDtypeStruct(param.view.native_shape, _dtype(param.dtype))
        return jax.pure_callback(host, result)

    def _portable(self, param: Param, spec: Spec, draw: _rules.Draw, target: Any, dtype: np.dtype) -> Any:
        if self.traced:
            return _sharded.place(
                self._callback(lambda: self._portable_host(param, spec, draw), param), target
            )

        def region(box: Any) -> np.ndarray:
            values: np.ndarray = _rules.portable_values(param, spec, draw, box=box)
            return values

        return _sharded.portable(
            param.view.native_shape, param.view, dtype, target, region, _stream.is_elementwise(spec)
        )

    def _native_user(self, param: Param, spec: Spec) -> Any:
        """A native draw of a spec holding a user law: the law through the fence, on the host,
        from the parameter's key (the key words seed a NumPy generator)."""
        key = _sharded.param_key(self.root(), param.order)
        fans = _rules._given_fans(param, spec)
        dtype = _dtype(param.dtype)

        def component(s: Spec, k: Any, view: LogicalView, f: Any, d: np.dtype) -> Any:
            if isinstance(s, Custom):
                return _fenced_custom(s, k, view, f, d, param.path)
            if isinstance(s, Mixture) and _rules.needs_prepare(s):
                return _mixture(s, k, view, f, d, component)
            return _draw(s, k, view, f, d)

        with jax.threefry_partitionable(True):
            return component(_inner(spec), key, param.view, fans, dtype)

    # ---- writing

    def store(self, slot: _Slot, new: Any) -> None:
        if slot.variable is not None:
            slot.variable.set_value(new)
        else:
            for path in slot.paths:
                self.written[path] = new

    def finish(self) -> None:
        """Fill the abstract leaves ``plan_abstract`` noted (norm statistics, RNG state)."""
        rng_base = None
        for index, (leaf, fill, target, path, value) in enumerate(self.extras):
            shape, dtype = tuple(value.shape), value.dtype
            if fill == "key":
                if rng_base is None:
                    rng_base = jax.random.fold_in(self.root(), 0xFFFFFFFF)
                base = jax.random.fold_in(rng_base, index)
                keys = jax.random.split(base, math.prod(shape)).reshape(shape) if shape else base
                new = _sharded.place(keys, target)
            else:
                new = _sharded.full(shape, dtype, 0 if fill == "zeros" else 1, target)
            if isinstance(leaf, nnx.Variable) and self.kind == "nnx":
                leaf.set_value(new)
            else:
                self.written[path] = new


def _safe_fans(param: Param) -> tuple[int, int] | None:
    try:
        return param.fans if param.fans is not None else param.view.fans
    except ShapeError:
        return None


def _fenced_custom(spec: Custom, key: Any, view: LogicalView, fans: Any, dtype: np.dtype, path: str) -> Any:
    """A user law drawn from ``key`` through the fence (``reference.call_law``): eagerly on
    the host, or through a host callback under a trace (the ``LawError`` text then reaches
    the caller inside JAX's runtime error)."""

    def host(words: Any) -> np.ndarray:
        return _custom_host(spec, view, dtype, path, words).astype(dtype, copy=False)

    words = _key_words(key)
    if not _is_tracer(words):
        return host(words)
    return jax.pure_callback(host, jax.ShapeDtypeStruct(view.native_shape, dtype), words)


def _listed(paths: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(p) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


# --------------------------------------------------------------------------- apply


def apply(
    model: Any,
    rules: Any,
    seed: int | None = None,
    portable: bool = False,
    *,
    layers: Mapping[str, Any] | None = None,
    donate: bool = False,
    shardings: Any = None,
) -> Any:
    """Initialize a linen variables tree (a new tree is returned), an nnx module (in place) or
    an nnx State (a new one), all or nothing; concrete, abstract or sharded.

    ``rules`` are ``(selector, spec)`` pairs or a dict, first match wins (see
    ``multiinit.apply``). ``layers`` (linen trees only) says which flax module owns the
    parameters under a module path: ``{"Up_0": nn.ConvTranspose(8, (3, 3),
    transpose_kernel=True)}`` or ``layers=modules(model, x)``. ``donate=True`` gives up each
    drawn input array as its replacement is made (a linen tree then never costs twice its
    size). ``shardings`` places the new arrays: a ``Mesh`` (each parameter by its
    partitioning names), one ``Sharding``, or a tree of them; by default each array keeps its
    own sharding, an abstract one its ``ShapeDtypeStruct.sharding`` or partitioning names.
    See the module docstrings of ``model.py`` and ``sharded.py``.

    >>> import jax, jax.numpy as jnp, flax.linen as nn, multiinit as mi
    >>> net = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(1)])
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 4)))
    >>> new = apply(variables, {"kernel": mi.normal(std=0.01), "bias": mi.zeros()}, seed=0)
    >>> float(new["params"]["layers_0"]["bias"].sum()), new is variables
    (0.0, False)
    >>> abstract = jax.eval_shape(net.init, jax.random.key(0), jnp.ones((2, 4)))  # nothing allocated
    >>> drawn = apply(abstract, {"kernel": mi.he_normal(), "bias": mi.zeros()}, seed=0)
    >>> drawn["params"]["layers_2"]["kernel"].shape
    (8, 1)
    """
    if not isinstance(donate, bool):
        raise RuleError(f"donate={donate!r} is not allowed; donate must be True or False")
    kind, params, prefix, others = _walk(model, layers)
    given = _Shardings(shardings)
    writer = _Writer(kind, seed, donate, given, prefix)
    known_paths = {path for p in params for path in p.paths} | {"/".join(map(str, o[0])) for o in others}
    if kind == "nnx":
        known_paths |= {
            "/".join(map(str, path)) for path, v in nnx.iter_graph(model) if isinstance(v, nnx.Variable)
        }
    else:
        known_paths |= _all_leaf_paths(model)
        if prefix:
            known_paths |= {p[len(prefix[0]) + 1 :] for p in known_paths if p.startswith(f"{prefix[0]}/")}
    given.check_used(known_paths)
    _rules._check_seed(seed, portable)
    writer.plan_abstract(params, others, rules)
    _rules.execute(params, rules, seed=seed, portable=portable, writer=writer)
    writer.finish()
    if kind == "nnx":
        return model
    return _rebuild(model, writer.written)


def _all_leaf_paths(tree: Any) -> set[str]:
    out: set[str] = set()

    def visit(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, Mapping) and not isinstance(node, nnx.Variable):
            for name in node:
                visit(node[name], (*path, name))
        else:
            out.add("/".join(str(p) for p in path))

    visit(tree, ())
    return out


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
