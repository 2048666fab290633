"""Model level: walking a Gluon ``Block`` and ``apply`` (part of ``multiinit.mxnet``).

``mi.apply(block, rules, seed=None)`` (this file's ``apply``) initializes a Gluon ``Block``
by rules, all or nothing; ``params_of(block)`` lists what it can write. Values come from
``draw.py``.

Decisions (each one tested in ``tests/test_mxnet_*.py``):

Model level
    Parameters are a block's learnable parameters in definition order (a block's own, then
    its children's, as ``save_parameters`` walks them), each tied parameter once, excluding
    BatchNorm's running statistics. ``path`` is the structured path ``save_parameters``
    writes and users index by (``"0.weight"``, ``"features.3.bias"``), not MXNet 1.x's
    prefixed name (``"dense0_weight"``), which changes with every block built in a process.
    ``role`` is its attribute name (``"weight"``, ``"bias"``, ``"gamma"``, ``"beta"``). A
    transposed conv's weight ``(in, out/g, *k)`` (or channels-last ``(in, *k, out/g)``, and a
    channels-last conv's ``(out, *k, in/g)``) is seen through its logical view
    ``(out, in/g, *k)``: a 64 -> 128 3x3 transposed conv has fan_in 576 here, where MXNet's
    own ``Xavier`` reads the stored shape and says 1152 (as torch does). A 1-D parameter of a
    block that has a weight (the bias) gets that weight's logical fans. Layer kinds:
    ``dense``, ``conv``, ``conv_transpose``, ``embedding``, ``norm``, and ``depthwise_conv``
    for a grouped conv with one input channel per group (Keras' DepthwiseConv).
    Parameters must hold data: a block whose shapes are still deferred (``nn.Dense(8)``
    without ``in_units`` before its first forward) raises ``RuleError`` naming each selected
    parameter, as does one never initialized; nothing is written then.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

# multiinit/mxnet/__init__.py has already turned a failing mxnet import into BackendUnavailable.
import mxnet as mx
import numpy as np
from mxnet.gluon import nn as _nn

from ..errors import RuleError, UnknownBackend
from ..fans import LogicalView
from ..rules import Param, execute, normalize_rules
from ..spec import Spec
from .draw import _as_stored, _draw, _dtype_name

_TRANSPOSED = (_nn.Conv1DTranspose, _nn.Conv2DTranspose, _nn.Conv3DTranspose)
_CONV = (_nn.Conv1D, _nn.Conv2D, _nn.Conv3D)
_NORM = (_nn.BatchNorm, _nn.LayerNorm, _nn.InstanceNorm, _nn.GroupNorm)
# BatchNorm's running statistics are state, not learnable parameters.
_RUNNING = frozenset({"running_mean", "running_var", "moving_mean", "moving_var"})


def _groups(block: Any) -> int:
    return int(getattr(block, "_kwargs", {}).get("num_group", 1))


def _channels_last(block: Any) -> bool:
    layout = str(getattr(block, "_kwargs", {}).get("layout", "NC"))
    return layout.endswith("C")


def _kind(block: Any) -> str | None:
    """The neutral layer kind (``rules.LAYER_KINDS``) of ``block``, the same for all its parameters."""
    if isinstance(block, _TRANSPOSED):
        return "conv_transpose"
    if isinstance(block, _CONV):
        weight = block._reg_params.get("weight")
        shape = tuple(weight.shape) if weight is not None else ()
        in_per_group = (shape[-1] if _channels_last(block) else shape[1]) if len(shape) > 2 else 0
        # One input channel per group, weight (C*m, 1, *k): what Keras calls a DepthwiseConv.
        return "depthwise_conv" if _groups(block) > 1 and in_per_group == 1 else "conv"
    if isinstance(block, _nn.Dense):
        return "dense"
    if isinstance(block, _nn.Embedding):
        return "embedding"
    if isinstance(block, _NORM):
        return "norm"
    return None


def _view(block: Any, role: str, shape: tuple[int, ...]) -> LogicalView:
    """How ``block``'s parameter ``role`` of ``shape`` maps onto logical (out, in/g, *k)."""
    n = len(shape)
    if role != "weight" or n < 3 or not isinstance(block, _CONV + _TRANSPOSED):
        return LogicalView(shape)
    last = _channels_last(block)
    spatial = tuple(range(1, n - 1)) if last else tuple(range(2, n))
    if not isinstance(block, _TRANSPOSED):
        # channels-last (out, *k, in/g) -> (out, in/g, *k); NC* is already logical.
        return LogicalView(shape, axes=(0, n - 1) + spatial) if last else LogicalView(shape)
    # (in, out/g, *k) or (in, *k, out/g): split in into (g, in/g) and put out/g before it.
    groups = _groups(block)
    in_channels = shape[0]
    out_axis = n - 1 if last else 1
    kernel = tuple(shape[a] for a in spatial)
    pre = (groups, in_channels // groups) + tuple(shape[1:])
    # pre axes: 0 = g, 1 = in/g, then shape's axes 1.. shifted by one.
    axes = (0, out_axis + 1, 1) + tuple(a + 1 for a in spatial)
    logical = (groups * shape[out_axis], in_channels // groups) + kernel
    return LogicalView(shape, axes=axes, pre_shape=pre, logical_shape=logical)


def _known(shape: tuple[int, ...]) -> bool:
    # Unknown dims are 0 in MXNet's legacy shape semantics and -1 in numpy mode.
    return all(d > 0 for d in shape) if not mx.util.is_np_shape() else all(d >= 0 for d in shape)


def _walk(block: Any, prefix: str, seen_blocks: set[int]) -> Iterator[tuple[Any, str, str, Any]]:
    """(block, path, role, parameter) in definition order, as ``save_parameters`` names them."""
    if id(block) in seen_blocks:
        return
    seen_blocks.add(id(block))
    for role, parameter in block._reg_params.items():
        yield block, prefix + role, role, parameter
    for name, child in block._children.items():
        yield from _walk(child, f"{prefix}{name}.", seen_blocks)


def params_of(block: Any) -> list[Param]:
    """The learnable parameters of a Gluon ``Block``, as ``rules.Param``.

    ``handle`` is the ``gluon.Parameter``; ``dtype`` its dtype name. Parameters whose
    shape is still deferred are listed with their unknown dimensions as 0 (``apply``
    refuses to fill them).

    >>> from mxnet.gluon import nn
    >>> net = nn.Sequential()
    >>> net.add(nn.Dense(8, in_units=4))
    >>> [(p.path, p.role, p.view.logical_shape, p.fans) for p in params_of(net)]
    [('0.weight', 'weight', (8, 4), None), ('0.bias', 'bias', (8,), (4, 8))]
    """
    if not isinstance(block, mx.gluon.Block):
        raise UnknownBackend(
            f"model of type {type(block).__name__} is not an MXNet Gluon Block; multiinit's mxnet "
            "backend initializes mxnet.gluon.Block objects (nn.Sequential, nn.HybridSequential, ...)"
        )
    params: list[Param] = []
    seen: set[int] = set()
    owned: dict[int, list[Param]] = {}
    for owner, path, role, parameter in _walk(block, "", set()):
        if id(parameter) in seen or role in _RUNNING:
            continue  # a tied parameter appears once, under the first path that reaches it
        seen.add(id(parameter))
        shape = tuple(max(int(d), 0) for d in parameter.shape)
        param = Param(
            path=path,
            view=_view(owner, role, shape),
            role=role,
            layer=owner,
            order=len(params),
            dtype=_dtype_name(parameter.dtype),
            handle=parameter,
            kind=_kind(owner),
        )
        params.append(param)
        owned.setdefault(id(owner), []).append(param)
    for members in owned.values():
        weight = next((p for p in members if p.role == "weight" and len(p.view.native_shape) >= 2), None)
        if weight is None:
            continue
        for p in members:
            if len(p.view.native_shape) < 2:
                p.fans = weight.view.fans
    return params


def _not_ready(param: Param, uses_fans: bool, weights: Mapping[int, Param]) -> str | None:
    """Why ``param`` cannot be written now, or None when it can."""
    parameter = param.handle
    where = f"{param.path!r} ({parameter.name})"
    if not _known(tuple(int(d) for d in parameter.shape)):
        return f"{where} has shape {parameter.shape}: its initialization is deferred until the first forward pass"
    if parameter._data is None:
        return f"{where} is not initialized"
    weight = weights.get(id(param.layer))
    if uses_fans and param.fans is not None and weight is not None and not _known(tuple(weight.handle.shape)):
        return f"{where} takes its fans from {weight.path!r}, whose shape {weight.handle.shape} is not known yet"
    return None


def _check_ready(params: Sequence[Param], rules: Any) -> None:
    """``RuleError`` naming every selected parameter that holds no data of a known shape."""
    normalized = normalize_rules(rules)
    weights = {id(p.layer): p for p in params if p.role == "weight"}
    problems = []
    for param in params:
        rule = next((r for r in normalized if r.matches(param)), None)
        if rule is None or rule.spec is None:
            continue
        problem = _not_ready(param, rule.spec.uses_fans, weights)
        if problem:
            problems.append(problem)
    if problems:
        raise RuleError(
            f"multiinit.apply cannot fill {'; '.join(problems)}. Call block.initialize() and run the "
            "block once on an input (or give in_units / in_channels) first; nothing was written"
        )


def apply(model: Any, rules: Any, seed: int | None = None, portable: bool = False) -> Any:
    """Initialize a Gluon ``Block`` by rules, in place, all or nothing; returns it.

    Selectors: a glob on the structured path (``"0.weight"``, ``"*.bias"``), a role
    (``"weight"``, ``"bias"``, ``"gamma"``, ``"beta"``), a layer kind, or a block class
    (``nn.Dense``). Every rule and shape is checked and every value drawn before the first
    parameter is written. ``seed`` makes the draw reproducible (parameter k draws from
    ``derive_seed(seed, k)``); ``seed=None`` uses MXNet's global generator;
    ``portable=True`` writes the NumPy reference draw (the same numbers in every framework).

    >>> import multiinit as mi
    >>> from mxnet.gluon import nn
    >>> net = nn.Sequential()
    >>> net.add(nn.Dense(8, in_units=4))
    >>> net.initialize()
    >>> _ = mi.apply(net, {"weight": mi.normal(std=0.01), "bias": mi.constant(0.5)}, seed=0)
    >>> float(net[0].bias.data().mean().asscalar())
    0.5
    """
    params = params_of(model)
    _check_ready(params, rules)

    def draw(param: Param, spec: Spec, derived: int | None) -> Any:
        ctx = param.handle.list_ctx()[0]
        return _draw(spec, param.view, param.fans, param.dtype, ctx, derived, param.path)

    def from_numpy(param: Param, native: np.ndarray) -> Any:
        return mx.nd.array(native, dtype=param.dtype, ctx=param.handle.list_ctx()[0])

    def write(pairs: Sequence[tuple[Param, Any]]) -> None:
        # Convert everything first, so that nothing can fail between two writes.
        ready = [(param.handle, _as_stored(value, param.handle.list_data()[0])) for param, value in pairs]
        for parameter, value in ready:
            parameter.set_data(value)

    execute(params, rules, seed=seed, portable=portable, draw=draw, from_numpy=from_numpy, write=write)
    return model
