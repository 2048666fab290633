"""Walking a built Keras model: its parameters, their layer kinds and logical views, and apply.

``params_of(model)`` describes a built ``Model`` or ``Layer`` as ``rules.Param`` (path, role,
layer kind, logical view, bias fans); ``apply(model, rules, seed=None, portable=False)`` hands
them to ``multiinit.rules.execute`` with this file's writer: ``check`` everything that can fail,
``prepare`` (draw and validate) the user laws, then ``fill`` each variable -- drawn and assigned
at once, so the only temporary is one variable's value. ``sharded.py`` puts each value where
its variable keeps it (layouts, deferred variables).

Decisions (each one tested in ``tests/test_keras_*.py``):

Layout and fans (model level)
    At model level the adapter knows the layer, and these layouts differ from Keras' own fans:

    * transposed convs store ``(*k, out, in)``; the logical view is ``(out, in, *k)``, so
      fan_in = in * k (Keras, like torch, says out * k: a 2x swap for 64 -> 128);
    * depthwise convs (and a separable conv's ``depthwise_kernel``) store ``(*k, C, m)``; the
      logical view is ``(C*m, 1, *k)`` (output channel c*m + j, as TF computes it), so
      fan_in = k (Keras says C * k: a C-fold difference in variance for he/lecun);
    * embeddings ``(num, dim)`` are already logical (torch and Flax store them alike), so
      fan_in = dim (Keras says num).

    ``EinsumDense`` kernels (and so every ``MultiHeadAttention``/``GroupQueryAttention``
    kernel) take their axis roles from the layer's equation, as Keras' own ``build`` does when
    it hands ``input_axes``/``output_axes`` to a variance-scaling initializer: a kernel axis
    that appears in the output is an out axis, any other an in axis (Keras has no third kind:
    a kernel axis shared by input and output counts as out, in Keras and here). The logical
    view flattens each group in order (``mi.Layout``): the query kernel ``(dim, heads,
    head_dim)`` is ``"in,out,out"``, logical ``(heads*head_dim, dim)``, fan_in = dim -- the
    fans Keras gives it, and the fans and logical layout Flax's ``MultiHeadDotProductAttention``
    gives the same kernel. An einsum bias has only out axes: it is flattened to 1-D and takes
    its kernel's fans.

    A parameter without fans of its own (a bias, a per-head bias) gets its layer's weight's
    logical fans (``"kernel"``, else ``"pointwise_kernel"``, else the first one with fans; a
    registered layer's ``fans_from`` first), so ``variance_scaling(1/3, "fan_in", "uniform")``
    on it is torch's default bias. Layers the adapter does not know keep Keras' convention
    (last axis out, the one before it in, the rest receptive field).

Layer kinds and the layer registry
    A layer registered with ``multiinit.register_layer`` (by class, by qualified name, or a
    built-in registration such as keras-hub's norms) takes its kind, and its parameters'
    layouts and fan sources, from the registration; that wins over everything below. Keras'
    own layers: ``Dense``/``EinsumDense`` dense, ``Conv*`` conv (depthwise_conv when it
    has one input channel per group, ``groups == channels > 1``), ``Conv*Transpose``
    conv_transpose, ``DepthwiseConv*`` (and a separable conv's depthwise kernel)
    depthwise_conv, ``Embedding`` embedding, the normalization layers norm, RNN cells
    recurrent. The dense layers inside an attention layer (``MultiHeadAttention``,
    ``GroupQueryAttention``, their subclasses, and layers registered with kind
    ``"attention"``) are of kind ``"attention"`` and belong to it: their ``layer`` is the
    attention layer, so a rule ``keras.layers.MultiHeadAttention: spec`` selects its kernels
    and biases. A layer multiinit does not know gets a guessed kind (a 2-D ``kernel``: dense,
    more dims: conv; ``embeddings``: embedding) with ``known=False``, which ``multiinit.plan``
    flags where a fan-based law fills it.

Model level
    Parameters are the variables each layer created trainable (a frozen layer's weights stay
    parameters; BatchNorm's moving statistics, seed-generator states and float8 scaling
    statistics -- variables Keras overwrites with a computed value, ``overwrite_with_gradient``
    -- never are), in layer order (a layer's own variables in creation order, then its
    sublayers depth first), each variable once. ``path`` is Keras' ``variable.path``:
    ``"net/dense/kernel"`` in a Sequential named "net", ``"dense/kernel"`` in a functional
    model and in a Sequential loaded with ``keras.models.load_model`` (Keras drops the model's
    name there), so a glob such as ``"*dense/kernel"`` holds in both. A variable that another
    layer holds too (a tied weight) is listed once, under its own path, with
    ``"<that layer's path>/<variable name>"`` as an alias: a path selector selects it by
    either. ``role`` is the variable's name (``"kernel"`` also answers to ``"weight"``; a
    separable conv's ``"depthwise_kernel"`` and ``"pointwise_kernel"`` and an LSTM's
    ``"recurrent_kernel"`` keep their own names).

Seeds
    ``seed=s``: the variable at position ``order`` draws with the stateless Keras seed
    ``derive_seed(s, order)`` (on the JAX backend, by ``sharded.py``'s size rule). ``seed=None``
    draws one base seed from Keras' global generator per call and derives the same way, so
    ``keras.utils.set_random_seed`` makes it reproducible. ``portable=True`` writes the NumPy
    reference's values (``rules.portable_values``), each tile of the stream rule straight
    into the host buffer that becomes the variable's value (``draw.filled_in_place``).

Host buffers and TensorFlow's assign
    A value drawn on the host reaches a deferred variable as the host buffer itself, and a
    built variable as a copy in TensorFlow's memory (``draw.host_copied``): TensorFlow's assign
    adopts the value's buffer and keeps the variable's old one in its allocator, which would
    otherwise hold the model's size again after the call.

All or nothing, one variable at a time
    Before the first write: every rule and shape, each selected variable's dtype (a random law
    needs a float variable), whether each can be written (``sharded.refusal``: a
    ``StatelessScope``, a traced value, a torch inference tensor), and every user law
    (``custom``, alone or in a mixture) drawn and validated (shape, dtype, finite values) and
    held. Then each variable is drawn and assigned in turn: peak memory above the model is one
    variable's value (plus the held user laws).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras

from .. import errors as _errors, rules as _rules
from ..errors import MultiinitError, RuleError, SpecError, UnknownBackend
from ..fans import SPATIAL_IN_OUT, Layout, LogicalView
from ..layers import lookup_layer
from ..rules import Param, execute
from ..spec import Spec, WithAxes
from . import sharded as _sharded
from .draw import _draw, _resolve_dtype, filled_in_place, host_copied

_LAYERS = keras.layers
_TRANSPOSED = (_LAYERS.Conv1DTranspose, _LAYERS.Conv2DTranspose, _LAYERS.Conv3DTranspose)
_DEPTHWISE = (_LAYERS.DepthwiseConv1D, _LAYERS.DepthwiseConv2D)
_SEPARABLE = (_LAYERS.SeparableConv1D, _LAYERS.SeparableConv2D)
_CONV = (_LAYERS.Conv1D, _LAYERS.Conv2D, _LAYERS.Conv3D)
_EINSUM = (_LAYERS.EinsumDense,)
_DENSE = (_LAYERS.Dense, _LAYERS.EinsumDense)
_NORM = tuple(
    getattr(_LAYERS, name)
    for name in ("BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization")
    if hasattr(_LAYERS, name)
)
_ATTENTION = tuple(
    getattr(_LAYERS, name) for name in ("MultiHeadAttention", "GroupQueryAttention") if hasattr(_LAYERS, name)
)


def _recurrent_cells() -> tuple[type, ...]:
    cells = [
        getattr(_LAYERS, name) for name in ("SimpleRNNCell", "LSTMCell", "GRUCell") if hasattr(_LAYERS, name)
    ]
    try:  # ConvLSTM's cell is not exported; its kernel is a conv kernel of a recurrent layer
        from keras.src.layers.rnn.conv_lstm import ConvLSTMCell
    except ImportError:  # pragma: no cover - another Keras layout
        pass
    else:
        cells.append(ConvLSTMCell)
    return tuple(cells)


_RECURRENT = _recurrent_cells()
#: Variable names that hold a layer's weight (its fans go to the layer's bias).
_WEIGHT_NAMES = ("kernel", "pointwise_kernel")


def _builtin_kind(layer: Any, name: str, shape: tuple[int, ...] = ()) -> str | None:
    """The neutral layer kind (``rules.LAYER_KINDS``) of a Keras layer's variable ``name``
    (``shape``: the layer's kernel's, which tells a depthwise conv built with ``groups``)."""
    if isinstance(layer, _TRANSPOSED):
        return "conv_transpose"
    if isinstance(layer, _DEPTHWISE):
        return "depthwise_conv"
    if isinstance(layer, _SEPARABLE):
        return "depthwise_conv" if name == "depthwise_kernel" else "conv"
    if isinstance(layer, _CONV):
        # A grouped conv with one input channel per group is a depthwise conv (ConvNeXt builds
        # its depthwise convs so), as torch's adapter reads nn.Conv2d(groups=in_channels).
        groups = getattr(layer, "groups", 1)
        depthwise = groups > 1 and len(shape) >= 2 and shape[-2] == 1
        return "depthwise_conv" if depthwise else "conv"
    if isinstance(layer, _DENSE):
        return "dense"
    if isinstance(layer, _LAYERS.Embedding):
        return "embedding"
    if isinstance(layer, _NORM):
        return "norm"
    if isinstance(layer, _RECURRENT):
        return "recurrent"
    if isinstance(layer, _ATTENTION):
        return "attention"
    return None


def _guessed_kind(variables: dict[str, tuple[int, ...]]) -> str | None:
    """The kind of a layer multiinit does not know, from its variables' names and shapes."""
    kernel = variables.get("kernel")
    if kernel is not None and len(kernel) >= 2:
        return "dense" if len(kernel) == 2 else "conv"
    if "embeddings" in variables:
        return "embedding"
    return None


def _einsum_layout(layer: Any, name: str, ndim: int) -> Layout | None:
    """The axis roles of an ``EinsumDense`` variable, read off the layer's equation as Keras'
    ``build`` reads them: a kernel axis in the output is out, any other in; a bias is all out."""
    if name == "bias":
        return Layout(",".join(["out"] * ndim)) if ndim else None
    if name != "kernel":
        return None
    equation = str(getattr(layer, "equation", "")).replace(" ", "")
    try:
        inputs, output = equation.split("->")
        source, weight = inputs.split(",")
    except ValueError:
        return None
    source, weight, output = (part.replace(".", "") for part in (source, weight, output))
    if len(weight) != ndim or not all(c in output or c in source for c in weight):
        return None  # not an equation Keras would have built; keep the default view
    roles = ["out" if c in output else "in" for c in weight]
    if "out" not in roles:
        return None
    return Layout(",".join(roles))


def _builtin_view(layer: Any, name: str, shape: tuple[int, ...]) -> LogicalView:
    """How a Keras layer's variable ``name`` of ``shape`` maps onto logical (out, in, *spatial)."""
    n = len(shape)
    if isinstance(layer, _EINSUM):
        layout = _einsum_layout(layer, name, n)
        if layout is not None:
            return layout.view(shape)
    if n < 2:
        return LogicalView(shape)
    to_front = (n - 2, n - 1, *range(n - 2))
    if isinstance(layer, _TRANSPOSED) and name == "kernel":
        # (*k, out, in) -> (out, in, *k)
        return LogicalView(shape, axes=to_front)
    if (isinstance(layer, _DEPTHWISE) and name == "kernel") or (
        isinstance(layer, _SEPARABLE) and name == "depthwise_kernel"
    ):
        # (*k, C, m) -> (C, m, *k) -> (C*m, 1, *k): output channel c*m + j sees input c only.
        channels, multiplier = shape[-2], shape[-1]
        return LogicalView(shape, axes=to_front, logical_shape=(channels * multiplier, 1, *shape[:-2]))
    if isinstance(layer, _LAYERS.Embedding):
        return LogicalView(shape)  # (num, dim) is torch's and Flax's layout too
    return LogicalView.of(shape, SPATIAL_IN_OUT)


def _has_fans(view: LogicalView) -> bool:
    """True when a parameter of this view has fans of its own (an in axis, besides batch axes)."""
    return len(view.logical_shape) - view.batch >= 2


def _own_variables(layer: Any) -> list[Any]:
    """The learnable variables ``layer`` itself created: trainable ones, except the statistics
    Keras overwrites with a computed value (float8 scales and amax histories)."""
    return [
        v
        for v in getattr(layer, "_trainable_variables", [])
        if not getattr(v, "overwrite_with_gradient", False)
    ]


def _walk(layer: Any, seen: set[int], parent: Any = None) -> Iterator[tuple[Any, Any]]:
    """``(layer, attention layer it belongs to or None)``, depth first: each layer, then its
    sublayers in the order it holds them."""
    if id(layer) in seen:
        return
    seen.add(id(layer))
    yield layer, parent
    registration = lookup_layer(layer)
    kind = registration.kind if registration is not None else _builtin_kind(layer, "")
    inner = layer if kind == "attention" else None
    for sub in getattr(layer, "_layers", []):
        yield from _walk(sub, seen, inner if isinstance(sub, _DENSE) else None)


def _layers(model: Any) -> list[tuple[Any, Any]]:
    return list(_walk(model, set()))


def params_of(model: Any) -> list[Param]:
    """The learnable parameters of a built Keras ``Model`` or ``Layer``, as ``rules.Param``.

    >>> import keras
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden")], name="net")
    >>> [(p.path, p.role, p.view.logical_shape, p.fans) for p in params_of(net)]
    [('net/hidden/kernel', 'kernel', (8, 4), None), ('net/hidden/bias', 'bias', (8,), (4, 8))]
    >>> mha = keras.layers.MultiHeadAttention(num_heads=8, key_dim=16, name="mha")
    >>> mha.build((None, 10, 32), (None, 10, 32))
    >>> q = params_of(mha)[0]
    >>> q.path, q.kind, q.view.native_shape, q.view.logical_shape, q.view.fans
    ('mha/query/kernel', 'attention', (32, 8, 16), (128, 32), (32, 128))
    """
    if not isinstance(model, _LAYERS.Layer):
        raise UnknownBackend(
            f"model of type {type(model).__name__} is not a Keras Model or Layer; multiinit's keras "
            "backend initializes keras.Model and keras.layers.Layer objects"
        )
    if not model.built:
        raise RuleError(
            f"{type(model).__name__} {model.name!r} is not built, so it has no parameters yet; build "
            "it first (give it a keras.Input, call it on data, or call model.build(input_shape)); "
            "to build a big model without drawing its weights twice, build it inside "
            "keras.StatelessScope(initialize_variables=False) and then call multiinit.apply"
        )
    params: list[Param] = []
    seen: dict[int, Param] = {}
    for layer, attention in _layers(model):
        owned = []
        for variable in _own_variables(layer):
            if id(variable) in seen:
                # Held by a layer met earlier (a tied weight): one parameter, another path.
                first = seen[id(variable)]
                alias = f"{getattr(layer, 'path', layer.name)}/{variable.name}"
                if alias not in first.paths:
                    first.aliases = (*first.aliases, alias)
                continue
            owned.append(variable)
        if not owned:
            continue
        registration = lookup_layer(layer)
        shapes = {v.name: tuple(int(d) for d in v.shape) for v in owned}
        views = {}
        for variable in owned:
            view = (
                registration.view(variable.name, shapes[variable.name]) if registration is not None else None
            )
            views[variable.name] = (
                view if view is not None else _builtin_view(layer, variable.name, shapes[variable.name])
            )
        fans_of = {name: view.fans for name, view in views.items() if _has_fans(view)}
        weight = next((n for n in _WEIGHT_NAMES if n in fans_of), next(iter(fans_of), None))
        owner = attention if attention is not None else layer
        for variable in owned:
            name = variable.name
            kind: str | None  # None: a layer whose kind neither Keras' classes nor its variables give
            if registration is not None:
                kind, known = registration.kind, True
            elif attention is not None:
                kind, known = "attention", True
            else:
                kind = _builtin_kind(layer, name, shapes.get("kernel", ()))
                known = kind is not None
                if kind is None:
                    kind = _guessed_kind(shapes)
            fans = None
            if not _has_fans(views[name]):
                source = registration.fans_source(name) if registration is not None else None
                source = source if source in fans_of else weight
                fans = fans_of.get(source) if source is not None else None
            param = Param(
                path=variable.path,
                view=views[name],
                role=name,
                layer=owner,
                fans=fans,
                order=len(params),
                dtype=keras.backend.standardize_dtype(variable.dtype),
                handle=variable,
                kind=kind,
                known=known,
            )
            seen[id(variable)] = param
            params.append(param)
    return params


# --------------------------------------------------------------------------- the writer

#: A user law that fails or lies: LawError (the fence, multiinit.errors), SpecError before it existed.
_LAW_ERROR = getattr(_errors, "LawError", SpecError)


def _where(param: Param) -> str:
    return f"{param.path!r} ({type(param.layer).__name__})"


def _inner(spec: Spec) -> Spec:
    """The law ``spec`` draws (a ``with_axes`` spec only says where its fans come from)."""
    return spec.spec if isinstance(spec, WithAxes) else spec


class _Writer:
    """The Keras ``rules.Writer``: check everything, prepare user laws, then draw and assign
    one variable at a time."""

    def __init__(self, model: Any, seed: int | None) -> None:
        self.model = model
        self.seed = seed
        self._base: int | None = None
        self._rest_done = False
        #: ids of the variables some rule fills (the others, when deferred, get Keras' own init).
        self.selected: set[int] = set()

    # ---- the Writer protocol

    def check(self, param: Param, spec: Spec) -> None:
        _resolve_dtype(_inner(spec), param.dtype, repr(param.path))
        problem = _sharded.refusal(param.handle)
        if problem:
            raise _errors.ShapeError(f"{spec!r} cannot fill {_where(param)}: {problem}")

    def prepare(self, param: Param, spec: Spec, draw: _rules.Draw) -> Any:
        try:
            return self._value(param, spec, draw, eager=True)
        except MultiinitError as e:
            if param.path in str(e):
                raise
            raise type(e)(f"{spec!r} on {_where(param)}: {e}") from e
        except Exception as e:  # the user's law failed: never a foreign exception, never a write
            raise _LAW_ERROR(f"{spec!r} failed on {_where(param)}: {type(e).__name__}: {e}") from e

    def fill(self, param: Param, spec: Spec, draw: _rules.Draw, prepared: Any) -> None:
        self.initialize_rest()
        variable = param.handle
        sharding = _sharded.sharding_of(variable)
        value = prepared if prepared is not None else self._value(param, spec, draw, sharding=sharding)
        _sharded.write(variable, _sharded.place(value, param.dtype, sharding))

    # ---- helpers

    def _value(
        self, param: Param, spec: Spec, draw: _rules.Draw, sharding: Any = None, eager: bool = False
    ) -> Any:
        """``param``'s value, portable or native; a built variable's reaches TensorFlow as a
        copy in its own memory, a deferred one's as the host buffer (``host_copied``)."""
        with host_copied(not _sharded.is_deferred(param.handle)):
            if draw.portable:
                return _portable(param, spec, draw)
            return self._native(param, spec, sharding=sharding, eager=eager)

    def _native(self, param: Param, spec: Spec, sharding: Any = None, eager: bool = False) -> Any:
        inner = _inner(spec)
        dtype = _resolve_dtype(inner, param.dtype, repr(param.path))
        fans = param.fans_for(spec)
        view = param.view
        seed = _rules.derive_seed(self.base(), param.order)

        def make(s: Any) -> Any:
            return _draw(inner, view, fans, dtype, s)

        if eager:
            return make(seed)
        return _sharded.draw(make, (inner, view, fans, dtype), inner, view.native_shape, seed, sharding)

    def base(self) -> int:
        """The user's seed, or one drawn from Keras' global generator (once per call)."""
        if self.seed is not None:
            return int(self.seed)
        if self._base is None:
            drawn = keras.random.randint((), 0, 2**31 - 1, dtype="int32", seed=None)
            self._base = int(keras.ops.convert_to_numpy(drawn))
        return self._base

    def initialize_rest(self) -> None:
        """Deferred variables of the model that no rule fills get their own Keras initializers
        (once, before the first write); all of the model's leave Keras' pending list."""
        if self._rest_done:
            return
        self._rest_done = True
        variables = list(self.model.variables)
        if not any(_sharded.is_deferred(v) for v in variables):
            return
        _sharded.initialize_deferred([v for v in variables if id(v) not in self.selected])
        _sharded.forget_deferred(variables)


def _portable(param: Param, spec: Spec, draw: _rules.Draw) -> Any:
    """The portable values of ``param`` in Keras' layout. A plain layout takes each tile of the
    stream rule straight into the buffer TensorFlow is handed: converting the transposed
    logical array instead cost TensorFlow a one-thread copy (125 ms of a 4096x4096 kernel)."""
    view = param.view
    if not view.is_plain:
        return view.to_native(_rules.portable_values(param, spec, draw))
    dtype = param.dtype if param.dtype in ("float16", "float32", "float64") else "float32"

    def fill(logical: Any) -> None:
        _rules.portable_values(param, spec, draw, write=logical.__setitem__)

    return filled_in_place(view, dtype, fill)


def apply(model: Any, rules: Any, seed: int | None = None, portable: bool = False) -> Any:
    """Initialize a built Keras ``Model`` or ``Layer`` by rules, in place, all or nothing.

    Selectors: a glob on ``variable.path`` (``"*/dense/kernel"``; a tied variable answers to
    each of its paths), a role (``"kernel"`` or ``"weight"``, ``"bias"``, ``"gamma"``, ...), a
    layer kind (``"dense"``, ``"attention"``, ...), a layer class (``keras.layers.Dense``), or
    ``mi.select(...)``; first match wins. Everything that can fail is checked (and every user
    law drawn) before the first variable is assigned; then each variable is drawn and assigned
    in turn. ``seed`` makes the draw reproducible (parameter k draws with
    ``derive_seed(seed, k)``); ``seed=None`` derives from one draw of Keras' global generator;
    ``portable=True`` writes the NumPy reference draw (the same numbers in every framework).
    Sharded variables (Keras distribution on JAX) keep their layout. A model built inside
    ``keras.StatelessScope(initialize_variables=False)`` gets each variable's value in one step.

    >>> import multiinit as mi, keras
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> _ = mi.apply(net, {"kernel": mi.normal(std=0.01), "bias": mi.constant(0.5)}, seed=0)
    >>> float(net.layers[0].bias.numpy().mean())
    0.5
    """
    params = params_of(model)
    writer = _Writer(model, seed)
    try:
        assignments = _rules.plan(params, rules)
    except RuleError as e:
        raise _with_unbuilt_hint(e, model) from None
    writer.selected = {id(p.handle) for p, _ in assignments}
    execute(params, rules, seed=seed, portable=portable, writer=writer)
    writer.initialize_rest()  # deferred variables of a model whose rules filled nothing
    return model


def _with_unbuilt_hint(error: RuleError, model: Any) -> RuleError:
    """``error`` with the model's unbuilt sublayers named, when a rule selected nothing."""
    unbuilt = [layer.name for layer, _ in _layers(model) if not getattr(layer, "built", True)]
    if not unbuilt or "matches no parameter" not in str(error):
        return error
    names = ", ".join(repr(n) for n in unbuilt[:8]) + (
        f" and {len(unbuilt) - 8} more" if len(unbuilt) > 8 else ""
    )
    return RuleError(f"{error}; layers not built yet (no variables until they are built or called): {names}")
