"""Walking a torch module: layer kinds, logical views, ``params_of`` and ``apply``.

``mi.apply(net, rules, seed=...)`` lands here: every parameter becomes a ``rules.Param``, the
rules engine (``multiinit.rules``) plans and checks everything, values are drawn on each
parameter's logical view (``draw.py``, after the checks of ``compiled.py``) and written last.

Decisions implemented here:

* **Model level.** Fans come from the logical view ``(out, in/groups, *k)``: a
  ``ConvTranspose`` weight stored ``(in, out/groups, *k)`` is viewed through a
  reshape-transpose-reshape, so its fan_in is ``in/groups * prod(k)``. (torch's own default
  init reads the stored shape and uses ``out/groups * prod(k)``: ``kaiming_uniform(a=sqrt(5))``
  applied to a transposed conv by rules is the logical law, not torch's quirk; filling the
  tensor with the compiled form keeps torch's stored-shape fans.) A 1-D parameter gets
  its layer's weight fans (``bias_ih_l0`` pairs with ``weight_ih_l0``), so
  ``variance_scaling(1/3, "fan_in", "uniform")`` on a bias is torch's default bias. A conv
  with ``groups == in_channels > 1`` is of kind ``"depthwise_conv"``, as Keras' DepthwiseConv2D.
* **Order and seeds.** Parameters are numbered in ``named_modules()`` order, each module's
  own parameters with weights before biases, each shared parameter once (under its first
  path, as ``named_parameters()`` reports it). ``seed=s`` gives parameter ``i`` a generator
  seeded with ``rules.derive_seed(s, i)`` on its own device; ``seed=None`` uses torch's global
  RNG (so ``torch.manual_seed`` makes it reproducible).
* **Uninitialized lazy parameters** are listed (empty view, no handle) but ``apply`` raises
  ``ShapeError`` only when a rule would fill one: their shape is unknown until one forward
  pass has run.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .. import rules as _rules
from ..errors import ShapeError, SpecError
from ..fans import LogicalView
from ..spec import Spec
from .compiled import _is_uninitialized, _prepare
from .draw import _fill

_DENSE = (nn.Linear,)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_EMBEDDING = (nn.Embedding, nn.EmbeddingBag)
_NORM = tuple(
    getattr(nn, name)
    for name in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "InstanceNorm1d",
                 "InstanceNorm2d", "InstanceNorm3d", "LayerNorm", "GroupNorm", "RMSNorm")
    if hasattr(nn, name)
)


def _kind(module: nn.Module) -> str | None:
    """The neutral layer kind (``rules.LAYER_KINDS``) of a torch module."""
    if isinstance(module, _CONV_TRANSPOSE):
        return "conv_transpose"
    if isinstance(module, _CONV):
        # torch has no depthwise class: a conv with one input channel per group is one.
        groups = module.groups
        return "depthwise_conv" if groups > 1 and groups == module.in_channels else "conv"
    if isinstance(module, _DENSE):
        return "dense"
    if isinstance(module, _EMBEDDING):
        return "embedding"
    if isinstance(module, _NORM):
        return "norm"
    return None


def _view(module: nn.Module, name: str, shape: tuple[int, ...]) -> LogicalView:
    """How ``module``'s parameter ``name`` of ``shape`` maps onto logical (out, in/g, *k)."""
    if isinstance(module, _CONV_TRANSPOSE) and name == "weight" and len(shape) >= 3:
        # (in, out/g, *k) = (g, in/g, out/g, *k) -> (g, out/g, in/g, *k) -> (out, in/g, *k).
        groups = module.groups
        channels_in, per_group_out, kernel = shape[0], shape[1], shape[2:]
        return LogicalView(
            shape,
            axes=(0, 2, 1, *range(3, 3 + len(kernel))),
            pre_shape=(groups, channels_in // groups, per_group_out, *kernel),
            logical_shape=(groups * per_group_out, channels_in // groups, *kernel),
        )
    return LogicalView(shape)


def _weight_for(name: str, own: dict[str, Any]) -> Any:
    """The >=2-D weight whose fans a 1-D parameter ``name`` uses, or None."""
    for candidate in (name.replace("bias", "weight"), "weight"):
        weight = own.get(candidate)
        if (candidate != name and weight is not None and not _is_uninitialized(weight)
                and weight.dim() >= 2):
            return candidate
    return None


def params_of(module: nn.Module) -> list[_rules.Param]:
    """Every parameter of ``module`` as a ``rules.Param``, in the order that seeds its stream.

    ``path`` is ``named_parameters()``'s; ``role`` the leaf name; ``layer`` the owning module;
    ``view`` the logical view; ``fans`` the layer weight's fans for a 1-D parameter; each
    shared parameter appears once. Uninitialized lazy parameters get an empty view and
    ``handle`` None (``apply`` refuses to fill them).

    >>> from torch import nn
    >>> [(p.path, p.order, p.fans) for p in params_of(nn.Sequential(nn.Linear(4, 8)))]
    [('0.weight', 0, None), ('0.bias', 1, (4, 8))]
    """
    params: list[_rules.Param] = []
    seen: set[int] = set()
    for prefix, owner in module.named_modules():
        own = {n: p for n, p in owner._parameters.items() if p is not None}
        views = {}
        for name, p in own.items():
            if not _is_uninitialized(p):
                views[name] = _view(owner, name, tuple(p.shape))
        # Weights before biases within a layer, whatever order the module registered them in.
        for name in sorted(own, key=lambda n: "bias" in n):
            p = own[name]
            if id(p) in seen:
                continue
            seen.add(id(p))
            path = f"{prefix}.{name}" if prefix else name
            if _is_uninitialized(p):
                params.append(_rules.Param(path, LogicalView(()), name, layer=owner, order=len(params),
                                           kind=_kind(owner), handle=None))
                continue
            fans = None
            if p.dim() < 2:
                weight = _weight_for(name, own)
                if weight is not None:
                    fans = views[weight].fans
            params.append(
                _rules.Param(path, views[name], name, layer=owner, fans=fans, order=len(params),
                             dtype=str(p.dtype).replace("torch.", ""), handle=p, kind=_kind(owner))
            )
    return params


def _to_native(view: LogicalView, logical: torch.Tensor) -> torch.Tensor:
    permuted = tuple(view.pre_shape[a] for a in view.axes)
    inverse = [0] * len(view.axes)
    for position, axis in enumerate(view.axes):
        inverse[axis] = position
    return logical.reshape(permuted).permute(inverse).reshape(view.native_shape)


def _draw(param: _rules.Param, spec: Spec, seed: int | None) -> torch.Tensor | None:
    target = param.handle
    logical = torch.empty(param.view.logical_shape, dtype=target.dtype, device=target.device)
    if not _prepare(spec, logical, None, param.fans, param.path):
        return None  # meta or empty: nothing to draw
    generator = None if seed is None else torch.Generator(device=target.device).manual_seed(seed)
    with torch.no_grad():
        _fill(spec, logical, generator, param.fans)
    return logical if param.view.is_plain else _to_native(param.view, logical)


def _from_numpy(param: _rules.Param, native: np.ndarray) -> torch.Tensor | None:
    target = param.handle
    if target.is_meta:
        return None
    return torch.from_numpy(np.ascontiguousarray(native)).to(device=target.device, dtype=target.dtype)


def _write(pairs: Sequence[tuple[_rules.Param, torch.Tensor | None]]) -> None:
    with torch.no_grad():
        for param, value in pairs:
            if value is not None:
                param.handle.copy_(value)


def apply(model: nn.Module, rules: Any, seed: int | None = None, portable: bool = False) -> nn.Module:
    """Initialize ``model``'s parameters by ``rules``, in place, all or nothing; returns it.

    Selectors: a glob on the ``named_parameters()`` path (``"0.weight"``, ``"*.bias"``), a
    role (``"weight"``, ``"bias"``, any leaf name), a layer kind (``"dense"``, ``"conv"``, ...),
    a module class or tuple of classes (``nn.Linear``, ``(nn.Conv1d, nn.Conv2d)``), or
    ``mi.select(...)``; first match wins; ``None`` as spec leaves a parameter alone. Every
    rule and shape is checked and every value drawn before the first is written.

    >>> import torch, multiinit as mi
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    >>> net = mi.apply(net, {nn.Linear: mi.ones(), "bias": mi.zeros()}, seed=0)
    >>> net[2].weight.tolist(), net[2].bias.tolist()
    ([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]], [1.0])
    >>> net = mi.apply(net, [("*.bias", mi.zeros()), (nn.Linear, mi.ones())])
    >>> net[2].bias.tolist()
    [0.0]
    """
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"model of type {type(model).__name__} is not allowed; the torch backend's apply takes "
            "an nn.Module (fill one tensor with mi.compile(spec, 'torch')(tensor))"
        )
    params = params_of(model)
    lazy = [p for p in params if p.handle is None]
    if lazy:
        normalized = _rules.normalize_rules(rules)
        for param in lazy:
            rule = next((r for r in normalized if r.matches(param)), None)
            if rule is not None and rule.spec is not None:
                raise ShapeError(
                    f"{rule.describe()} cannot fill {param.path!r} of {type(param.layer).__name__}: "
                    "it is an uninitialized lazy parameter, so its shape is unknown; run one "
                    "forward pass (e.g. net(x)) to materialize it before mi.apply"
                )
    _rules.execute(params, rules, seed=seed, portable=portable, draw=_draw,
                   from_numpy=_from_numpy, write=_write)
    return model

