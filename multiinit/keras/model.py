"""Walking a built Keras model: its parameters, their layer kinds and logical views, and rules.

``params_of(model)`` describes a built ``Model`` or ``Layer`` as ``rules.Param`` (path, role,
layer kind, logical view, bias fans); ``apply(model, rules, seed=None, portable=False)`` lets
``multiinit.rules`` match the rules, draws every value with ``draw._draw``, then assigns them.

Decisions (each one tested in ``tests/test_keras_*.py``):

Layout and fans (model level)
    At model level the adapter knows the layer, and three layouts differ from Keras' own fans:

    * transposed convs store ``(*k, out, in)``; the logical view is ``(out, in, *k)``, so
      fan_in = in * k (Keras, like torch, says out * k: a 2x swap for 64 -> 128);
    * depthwise convs (and a separable conv's ``depthwise_kernel``) store ``(*k, C, m)``; the
      logical view is ``(C*m, 1, *k)`` (output channel c*m + j, as TF computes it), so
      fan_in = k (Keras says C * k: a C-fold difference in variance for he/lecun);
    * embeddings ``(num, dim)`` are already logical (torch and Flax store them alike), so
      fan_in = dim (Keras says num).

    A 0-D or 1-D parameter of a layer that has a kernel (the bias) gets that kernel's logical
    fans, so ``variance_scaling(1/3, "fan_in", "uniform")`` on it is torch's default bias.
    Layers the adapter does not know keep Keras' convention (last axis out, the one before
    it in, the rest receptive field).

Model level
    Parameters are the variables each layer created trainable (a frozen layer's weights stay
    parameters; BatchNorm's moving statistics and seed-generator states never are), in layer
    order (a layer's own variables in creation order, then its sublayers depth first), each
    variable once. ``path`` is Keras' ``variable.path``: ``"net/dense/kernel"`` in a Sequential
    named "net", ``"dense/kernel"`` in a functional model and in a Sequential loaded with
    ``keras.models.load_model`` (Keras drops the model's name there), so a glob such as
    ``"*dense/kernel"`` holds in both. ``role`` is the variable's name (``"kernel"``
    also answers to ``"weight"``; a separable conv's ``"depthwise_kernel"`` and
    ``"pointwise_kernel"`` and an LSTM's ``"recurrent_kernel"`` keep their own names).
    Every value is drawn before any variable is assigned.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops as _ops

from ..errors import RuleError, UnknownBackend
from ..fans import SPATIAL_IN_OUT, LogicalView
from ..rules import Param, execute
from ..spec import Spec
from .draw import _draw, _resolve_dtype

_LAYERS = keras.layers
_TRANSPOSED = (_LAYERS.Conv1DTranspose, _LAYERS.Conv2DTranspose, _LAYERS.Conv3DTranspose)
_DEPTHWISE = (_LAYERS.DepthwiseConv1D, _LAYERS.DepthwiseConv2D)
_SEPARABLE = (_LAYERS.SeparableConv1D, _LAYERS.SeparableConv2D)
_CONV = (_LAYERS.Conv1D, _LAYERS.Conv2D, _LAYERS.Conv3D)
_NORM = tuple(
    getattr(_LAYERS, name)
    for name in ("BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization")
    if hasattr(_LAYERS, name)
)


def _kind(layer: Any, name: str) -> str | None:
    """The neutral layer kind (``rules.LAYER_KINDS``) of ``layer``'s variable ``name``."""
    if isinstance(layer, _TRANSPOSED):
        return "conv_transpose"
    if isinstance(layer, _DEPTHWISE):
        return "depthwise_conv"
    if isinstance(layer, _SEPARABLE):
        return "depthwise_conv" if name == "depthwise_kernel" else "conv"
    if isinstance(layer, _CONV):
        return "conv"
    if isinstance(layer, _LAYERS.Dense):
        return "dense"
    if isinstance(layer, _LAYERS.Embedding):
        return "embedding"
    if isinstance(layer, _NORM):
        return "norm"
    return None


def _view(layer: Any, name: str, shape: tuple[int, ...]) -> LogicalView:
    """How ``layer``'s variable ``name`` of ``shape`` maps onto logical (out, in, *spatial)."""
    n = len(shape)
    if n < 2:
        return LogicalView(shape)
    to_front = (n - 2, n - 1) + tuple(range(n - 2))
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


def _weight_of(owned: list[tuple[Any, LogicalView]]) -> LogicalView | None:
    """The view of a layer's weight (its "kernel", else "pointwise_kernel", else first >= 2-D)."""
    by_name = {variable.name: view for variable, view in owned}
    for name in ("kernel", "pointwise_kernel"):
        if name in by_name and len(by_name[name].native_shape) >= 2:
            return by_name[name]
    return next((view for _, view in owned if len(view.native_shape) >= 2), None)


def _walk(layer: Any, seen_layers: set[int]):
    """Layers depth first: each layer, then its sublayers in the order it holds them."""
    if id(layer) in seen_layers:
        return
    seen_layers.add(id(layer))
    yield layer
    for sub in getattr(layer, "_layers", []):
        yield from _walk(sub, seen_layers)


def params_of(model: Any) -> list[Param]:
    """The learnable parameters of a built Keras ``Model`` or ``Layer``, as ``rules.Param``.

    >>> import keras
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden")], name="net")
    >>> [(p.path, p.role, p.view.logical_shape, p.fans) for p in params_of(net)]
    [('net/hidden/kernel', 'kernel', (8, 4), None), ('net/hidden/bias', 'bias', (8,), (4, 8))]
    """
    if not isinstance(model, _LAYERS.Layer):
        raise UnknownBackend(
            f"model of type {type(model).__name__} is not a Keras Model or Layer; multiinit's keras "
            "backend initializes keras.Model and keras.layers.Layer objects"
        )
    if not model.built:
        raise RuleError(
            f"{type(model).__name__} {model.name!r} is not built, so it has no parameters yet; build "
            "it first (give it a keras.Input, call it on data, or call model.build(input_shape))"
        )
    params: list[Param] = []
    seen: set[int] = set()
    for layer in _walk(model, set()):
        owned = []
        # Variables the layer created trainable: its learnable parameters, kept even while the
        # layer is frozen (freezing moves nothing between these lists).
        for variable in getattr(layer, "_trainable_variables", []):
            if id(variable) in seen:
                continue  # shared with a layer met earlier: it appears once
            seen.add(id(variable))
            shape = tuple(int(d) for d in variable.shape)
            owned.append((variable, _view(layer, variable.name, shape)))
        weight = _weight_of(owned)
        for variable, view in owned:
            fans = weight.fans if weight is not None and len(view.native_shape) < 2 else None
            params.append(Param(
                path=variable.path,
                view=view,
                role=variable.name,
                layer=layer,
                fans=fans,
                order=len(params),
                dtype=keras.backend.standardize_dtype(variable.dtype),
                handle=variable,
                kind=_kind(layer, variable.name),
            ))
    return params


def apply(model: Any, rules: Any, seed: int | None = None, portable: bool = False) -> Any:
    """Initialize a built Keras ``Model`` or ``Layer`` by rules, in place, all or nothing.

    Selectors: a glob on ``variable.path`` (``"*/dense/kernel"``), a role (``"kernel"`` or
    ``"weight"``, ``"bias"``, ``"gamma"``, ...), a layer kind, or a layer class
    (``keras.layers.Dense``). Every rule and shape is checked and every value drawn before the
    first variable is assigned. ``seed`` makes the draw reproducible (parameter k draws with
    ``derive_seed(seed, k)``); ``seed=None`` uses Keras' global generator; ``portable=True``
    writes the NumPy reference draw (the same numbers in every framework).

    >>> import multiinit as mi, keras
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> _ = mi.apply(net, {"kernel": mi.normal(std=0.01), "bias": mi.constant(0.5)}, seed=0)
    >>> float(net.layers[0].bias.numpy().mean())
    0.5
    """
    params = params_of(model)

    def draw(param: Param, spec: Spec, derived: int | None) -> Any:
        dtype = _resolve_dtype(spec, param.dtype, repr(param.path))
        return _draw(spec, param.view, param.fans, dtype, derived)

    def from_numpy(param: Param, array: np.ndarray) -> Any:
        return _ops.convert_to_tensor(array, dtype=param.dtype)

    def write(pairs: Sequence[tuple[Param, Any]]) -> None:
        for param, value in pairs:
            if tuple(value.shape) != tuple(param.handle.shape):  # pragma: no cover - a bug guard
                raise RuleError(f"{param.path!r}: drew shape {tuple(value.shape)} for {tuple(param.handle.shape)}")
        for param, value in pairs:
            param.handle.assign(value)

    execute(params, rules, seed=seed, portable=portable, draw=draw, from_numpy=from_numpy, write=write)
    return model
