"""Walking a torch module: layer kinds, logical views, ``params_of`` and ``apply``.

``mi.apply(net, rules, seed=..., device=...)`` lands here: every parameter becomes a
``rules.Param`` and the rules engine (``multiinit.rules.execute``) drives this file's writer
in one pass: ``check`` everything that can fail, ``prepare`` (draw and validate) the user laws,
then ``fill`` each parameter in place -- built-in laws drawn straight into it, tile by tile
(``sharded.py``), so no model-sized copy is ever made.

Decisions implemented here:

* **Model level.** Fans come from the logical view ``(out, in/groups, *k)``: a
  ``ConvTranspose`` weight stored ``(in, out/groups, *k)`` is viewed through a
  reshape-transpose-reshape, so its fan_in is ``in/groups * prod(k)``. (torch's own default
  init reads the stored shape and uses ``out/groups * prod(k)``: ``kaiming_uniform(a=sqrt(5))``
  applied to a transposed conv by rules is the logical law, not torch's quirk; filling the
  tensor with the compiled form keeps torch's stored-shape fans.) A 1-D parameter gets
  its layer's weight fans (``bias_ih_l0`` pairs with ``weight_ih_l0``), so
  ``variance_scaling(1/3, "fan_in", "uniform")`` on a bias is torch's default bias. A conv
  with ``groups == in_channels > 1`` is of kind ``"depthwise_conv"``, as Keras' DepthwiseConv2D;
  RNNs and RNN cells are ``"recurrent"``.
* **Layers torch does not define: the registry.** ``multiinit.lookup_layer(module)`` is asked
  first: a registered kind wins over torch's class (a subclass of ``nn.Linear`` registered as
  ``"attention"`` is attention), a registered layout gives a parameter its logical view
  (transformers' ``Conv1D`` weight ``"in,out"`` is read in -> out; ``"batch,in,out"`` experts
  keep the batch axis out of the fans), and a bias-like parameter (1-D, or a layout without an
  in axis) takes its fans from the parameter ``fans_from`` names, else from the weight that
  pairs with it. ``Param.known`` is False only for a layer with neither a registration nor a
  torch class multiinit knows: ``mi.plan`` flags a fan-based law there. Values follow the
  stream rule on the logical view, so a registered layout holds the transpose of what an
  ``nn.Linear`` at the same position holds, portable mode included, and a sharded one is
  written shard by shard through views of its local tensor (``sharded.py``).
* **``nn.MultiheadAttention``** is kind ``"attention"``; its ``out_proj`` is an ``nn.Linear``
  (dense). Its packed ``in_proj_weight`` (3E, E) is viewed as three (E, E) matrices, q, k and
  v, behind one batch axis: each projection E -> E has fans (E, E), as Keras' and Flax's
  per-projection query/key/value kernels do, so one spec is one law on the same attention
  layer in every framework. This differs from torch's own ``_reset_parameters``, which calls
  ``xavier_uniform_`` on the packed matrix (fan_out 3E, a bound of sqrt(6 / 4E) instead of
  sqrt(6 / 2E)): ``mi.xavier_uniform()`` applied by rules is the per-projection law, on
  purpose; to reproduce torch's law, state the packed fans:
  ``mi.with_axes(mi.xavier_uniform(), in_axis=1, out_axis=0)`` reads them off the stored
  (3E, E). ``in_proj_bias`` takes the fans (E, E) of
  one projection; ``bias_k``/``bias_v`` (1, 1, E) are vectors in the key/value space with the
  fans of the k/v projection. With separate ``kdim``/``vdim`` the three projections are
  plain (E, kdim) weights, and ``in_proj_bias``, which spans three different fans, has none
  (a fan-based law there is a ``ShapeError``). Whole-tensor laws (orthogonal, sparse) see
  the logical (3, E, E) tensor as the core defines for batch axes.
* **``with_axes``** at model level reads its axes off the stored shape (``Param.fans_for``):
  the fans go with every tile and with the whole-tensor draws.
* **Order.** Parameters are numbered in ``named_modules()`` order, each module's own
  parameters with weights before biases, each shared parameter once, under its first path
  (the one ``named_parameters()`` reports); its other paths are its ``aliases``, and a path
  selector selects it by any of them (``"head.weight"`` tied to ``"emb.weight"``).
* **Seeds: the stream rule's torch half.** ``seed=s``: tile ``t`` of the parameter at
  position ``i`` is drawn from a ``torch.Generator`` on the parameter's device seeded with
  ``stream.tile_seed(stream.seed_base(s), i, t)`` (see ``sharded.py``); the values do not
  depend on how the parameter is sharded. ``seed=None`` draws one base from torch's global
  RNG per call, so ``torch.manual_seed`` makes it reproducible and ranks seeded alike agree.
* **All or nothing, without a copy.** Before the first write: every rule and shape, and
  whether each selected parameter can be written in place -- not an inference tensor outside
  inference mode, not overlapping/expanded storage, storage as large as the tensor, a strided
  plain tensor or a DTensor (other tensor subclasses are refused), a dtype the law can fill,
  not an uninitialized lazy parameter, not on ``meta`` without ``device=``; user laws
  (``custom``) are drawn and validated (finite values) first. Then nothing can fail but the
  machine (running out of memory).
* **Meta models** (``device=``). Every meta tensor of the model is materialized on ``device``
  (``torch.empty_like``, through ``nn.Module._apply``, so FSDP2 re-registers its sharded
  parameters as ``to_empty`` does; a DTensor gets its local shard only) and each selected
  parameter is then drawn into, in the same pass: pages are touched once. Found first: meta
  parameters that no rule initializes (a ``RuleError`` listing them: they would hold garbage),
  and meta buffers other than the running statistics of batch/instance norm layers, which are
  reset to torch's construction values (mean 0, var 1, no batches); any other meta buffer
  (a rotary table, a mask) is a ``RuleError`` listing them, since only the model knows their
  values: set them first, or ``to_empty`` the model, recompute them and apply without
  ``device=``. ``device=`` never moves a tensor that is already materialized.
* **Uninitialized lazy parameters** are listed (empty view, no handle) but ``apply`` raises
  ``ShapeError`` only when a rule would fill one: their shape is unknown until one forward
  pass has run.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from .. import errors as _errors, rules as _rules, stream as _stream
from ..errors import MultiinitError, RuleError, ShapeError, SpecError
from ..fans import LogicalView, compute_fans
from ..layers import lookup_layer
from ..reference import law_values
from ..spec import Custom, Spec, WithAxes
from . import sharded as _sharded
from .compiled import _is_uninitialized
from .draw import _NUMPY_DTYPE, FLOAT_DTYPES, _filler, custom_key

_DENSE = (nn.Linear,)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_EMBEDDING = (nn.Embedding, nn.EmbeddingBag)
_ATTENTION = (nn.MultiheadAttention,)
_RECURRENT = (nn.RNNBase, nn.RNNCellBase)
_NORM = tuple(
    getattr(nn, name)
    for name in (
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "SyncBatchNorm",
        "InstanceNorm1d",
        "InstanceNorm2d",
        "InstanceNorm3d",
        "LayerNorm",
        "GroupNorm",
        "RMSNorm",
    )
    if hasattr(nn, name)
)


def _builtin_kind(module: nn.Module) -> str | None:
    """The neutral layer kind (``rules.LAYER_KINDS``) torch's own module classes have, or None."""
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
    if isinstance(module, _ATTENTION):
        return "attention"
    if isinstance(module, _RECURRENT):
        return "recurrent"
    return None


def _kind(module: nn.Module) -> str | None:
    """The neutral layer kind of a torch module: its registration's (``mi.register_layer``,
    including the layers multiinit teaches itself, such as transformers' ``Conv1D``), else
    torch's own class's, else None (a layer multiinit does not know)."""
    registration = lookup_layer(module)
    return registration.kind if registration is not None else _builtin_kind(module)


def _known(module: nn.Module) -> bool:
    """True when multiinit knows ``module``'s layer: registered, or one of torch's own."""
    return lookup_layer(module) is not None or _builtin_kind(module) is not None


def _builtin_view(module: nn.Module, name: str, shape: tuple[int, ...]) -> LogicalView:
    """How torch's own ``module`` stores parameter ``name`` of ``shape``, as a view onto
    logical (out, in/g, *k)."""
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
    if isinstance(module, _ATTENTION):
        if name == "in_proj_weight" and len(shape) == 2 and shape[0] == 3 * shape[1]:
            # The packed (3E, E) projections are three (E, E) matrices, q, k and v: one
            # batch axis over them, so each has the fans (E, E) of its own projection.
            embed = shape[1]
            return LogicalView(shape, pre_shape=(3, embed, embed), logical_shape=(3, embed, embed), batch=1)
        if name in ("bias_k", "bias_v") and len(shape) == 3:
            # (1, 1, E): one learned key (value) vector appended to the sequence, a bias-like
            # vector in the key (value) space, with no fans of its own.
            return LogicalView(shape, logical_shape=(math.prod(shape),))
    return LogicalView(shape)


def _view(module: nn.Module, name: str, shape: tuple[int, ...]) -> LogicalView:
    """How ``module``'s parameter ``name`` of ``shape`` maps onto logical (out, in/g, *k): the
    layout its registration gives it, else torch's own storage."""
    registration = lookup_layer(module)
    view = registration.view(name, shape) if registration is not None else None
    return view if view is not None else _builtin_view(module, name, shape)


def _has_fans(view: LogicalView) -> bool:
    """True when a parameter has fans of its own (a weight); False for a bias-like one (1-D,
    or a layout without an in axis such as ``"batch,out"``)."""
    if len(view.native_shape) < 2:
        return False
    try:
        _ = view.fans  # raises for a view without fans
    except ShapeError:
        return False
    return True


def _weight_for(
    module: nn.Module, name: str, own: dict[str, Any], views: dict[str, LogicalView]
) -> str | None:
    """The parameter whose fans the bias-like parameter ``name`` takes: the one its layer's
    registration names (``fans_from``), else the weight that pairs with it (``bias_ih_l0``
    with ``weight_ih_l0``, an attention's ``in_proj_bias`` with ``in_proj_weight``), else
    the layer's ``weight``; None when there is none with fans of its own."""
    registration = lookup_layer(module)
    named = registration.fans_source(name) if registration is not None else None
    if named is not None:
        candidates: tuple[str, ...] = (named,)
    else:
        candidates = (name.replace("bias", "weight"), "weight")
        if isinstance(module, _ATTENTION) and name in ("bias_k", "bias_v"):
            # a learned key (value) lives in the key (value) projection's output space
            candidates = (f"{name[-1]}_proj_weight", "in_proj_weight")
    for candidate in candidates:
        if candidate != name and candidate in views and _has_fans(views[candidate]):
            return candidate
    return None


def params_of(module: nn.Module) -> list[_rules.Param]:
    """Every parameter of ``module`` as a ``rules.Param``, in the order that seeds its stream.

    ``path`` is ``named_parameters()``'s; ``aliases`` the other paths of a shared parameter;
    ``role`` the leaf name; ``layer`` the owning module; ``kind`` its layer's neutral kind
    (a registration's, ``mi.register_layer``, else torch's own class's) and ``known`` whether
    multiinit knows the layer at all; ``view`` the logical view (the registered layout, else
    torch's storage; of the global shape, for a DTensor); ``fans`` the layer weight's fans for
    a bias-like parameter (1-D, or a layout without an in axis). Each shared parameter
    appears once. Uninitialized lazy parameters get an empty view and ``handle`` None
    (``apply`` refuses to fill them).

    >>> from torch import nn
    >>> [(p.path, p.order, p.fans) for p in params_of(nn.Sequential(nn.Linear(4, 8)))]
    [('0.weight', 0, None), ('0.bias', 1, (4, 8))]
    """
    params: list[_rules.Param] = []
    seen: dict[int, _rules.Param] = {}
    # remove_duplicate=False: a module used twice shows its parameters' second paths too.
    for prefix, owner in module.named_modules(remove_duplicate=False):
        own = {n: p for n, p in owner._parameters.items() if p is not None}
        if not own:
            continue
        kind, known = _kind(owner), _known(owner)
        views = {}
        for name, p in own.items():
            if not _is_uninitialized(p):
                try:
                    views[name] = _view(owner, name, tuple(p.shape))
                except ShapeError as e:
                    path = f"{prefix}.{name}" if prefix else name
                    raise ShapeError(f"{path!r} ({type(owner).__name__}): {e}") from None
        # Weights before biases within a layer, whatever order the module registered them in.
        for name in sorted(own, key=lambda n: "bias" in n):
            p = own[name]
            path = f"{prefix}.{name}" if prefix else name
            if id(p) in seen:
                first = seen[id(p)]
                if path not in first.paths:
                    first.aliases = (*first.aliases, path)
                continue
            if _is_uninitialized(p):
                param = _rules.Param(
                    path,
                    LogicalView(()),
                    name,
                    layer=owner,
                    order=len(params),
                    kind=kind,
                    known=known,
                    handle=None,
                )
            else:
                fans = None
                if not _has_fans(views[name]):
                    weight = _weight_for(owner, name, own, views)
                    if weight is not None:
                        fans = views[weight].fans
                param = _rules.Param(
                    path,
                    views[name],
                    name,
                    layer=owner,
                    fans=fans,
                    order=len(params),
                    dtype=str(p.dtype).replace("torch.", ""),
                    handle=p,
                    kind=kind,
                    known=known,
                )
            seen[id(p)] = param
            params.append(param)
    return params


# --------------------------------------------------------------------------- the writer

_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")
#: A user law that fails or lies: LawError where the fence (multiinit.errors.LawError) exists.
_LAW_ERROR = getattr(_errors, "LawError", SpecError)


def _where(param: _rules.Param) -> str:
    return f"{param.path!r} ({type(param.layer).__name__})"


def _storage_problem(t: torch.Tensor) -> str | None:
    """Why ``copy_``/``normal_`` would refuse to write ``t`` in place, or None."""
    if t.layout != torch.strided:
        return f"its layout is {t.layout}; only strided (dense) tensors are filled in place"
    if t.is_inference() and not torch.is_inference_mode_enabled():
        return (
            "it is an inference tensor (created under torch.inference_mode()), which cannot "
            "be changed in place outside inference mode; rebuild the layer outside "
            "inference_mode, or call mi.apply inside torch.inference_mode()"
        )
    if t.numel() > 1 and torch._debug_has_internal_overlap(t) == 1:
        return (
            f"its elements share memory (strides {tuple(t.stride())}, e.g. an expanded "
            "tensor), so it cannot be written element by element; give it its own storage "
            "(e.g. nn.Parameter(t.clone()))"
        )
    if t.numel():
        last = t.storage_offset() + sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))
        if (last + 1) * t.element_size() > t.untyped_storage().nbytes():
            return (
                "its storage is smaller than the tensor (freed or resized by a wrapper); "
                "materialize the parameter first"
            )
    return None


class _Writer:
    """The torch ``rules.Writer``: check everything, prepare user laws, fill in place."""

    def __init__(self, model: nn.Module, seed: int | None, device: torch.device | None) -> None:
        self.model = model
        self.seed = seed
        self.device = device
        self._base: int | None = None
        self._meta = device is not None and any(t.is_meta for t in _tensors(model))
        self._norms: list[tuple[nn.Module, list[str]]] = []

    # ---- before anything: what a meta model needs

    def plan_meta(self, params: list[_rules.Param], rules: Any) -> None:
        """With ``device=``: every meta parameter is selected by a rule that initializes it,
        and every meta buffer is one multiinit knows how to reset (``RuleError`` otherwise)."""
        if not self._meta:
            return
        selected = {id(p) for p, _ in _rules.plan(params, rules)}
        left = [p.path for p in params if p.handle is not None and p.handle.is_meta and id(p) not in selected]
        if left:
            raise RuleError(
                f"meta parameters {_listed(left)} are not initialized by any rule: materialized on "
                f"{self.device} they would hold garbage; add rules for them (or a catch-all such "
                "as ('*', mi.zeros()) last)"
            )
        unknown: list[str] = []
        for prefix, module in self.model.named_modules():
            metas = [n for n, b in module._buffers.items() if b is not None and b.is_meta]
            if not metas:
                continue
            if isinstance(module, nn.modules.batchnorm._NormBase) and set(metas) <= set(_NORM_STATS):
                self._norms.append((module, metas))
                continue
            unknown.extend(
                f"{prefix}.{n}" if prefix else n
                for n in metas
                if n not in _NORM_STATS or not isinstance(module, nn.modules.batchnorm._NormBase)
            )
        if unknown:
            raise RuleError(
                f"meta buffers {_listed(unknown)} have values only the model knows (multiinit resets "
                "batch/instance norm running statistics, nothing else); set them on the device "
                "before mi.apply (module.register_buffer(name, value)), or call "
                "model.to_empty(device=...), recompute them, and mi.apply without device="
            )

    # ---- the Writer protocol

    def check(self, param: _rules.Param, spec: Spec) -> None:
        t = param.handle
        if t is None:  # apply() reported the lazy ones already; kept for a direct caller
            raise ShapeError(f"{spec!r} cannot fill {_where(param)}: it is an uninitialized lazy parameter")
        if spec.random and t.dtype not in FLOAT_DTYPES:
            raise ShapeError(
                f"{spec!r} cannot fill {_where(param)} of dtype {t.dtype}: a random spec fills "
                "torch.float16, torch.bfloat16, torch.float32 or torch.float64 tensors"
            )
        dtensor = _sharded.is_dtensor(t)
        if not dtensor and type(t) not in (torch.Tensor, nn.Parameter):
            raise ShapeError(
                f"{spec!r} cannot fill {_where(param)}: it is a {type(t).__name__}, a tensor subclass "
                "multiinit cannot write in place (it fills plain tensors and DTensors)"
            )
        if t.is_meta:
            if self.device is None:
                raise ShapeError(
                    f"{spec!r} cannot fill {_where(param)}: it is on the meta device (no storage); "
                    "pass device= to materialize and initialize the model in one pass, e.g. "
                    "mi.apply(model, rules, seed=0, device='cpu')"
                )
            if dtensor and t.device_mesh.device_type != self.device.type:
                raise ShapeError(
                    f"{spec!r} cannot fill {_where(param)}: it is sharded on a "
                    f"{t.device_mesh.device_type!r} mesh, and device={str(self.device)!r} is another "
                    "device type; pass the mesh's device"
                )
            if dtensor:
                _sharded.check_dtensor(t, param.path)
            return
        if dtensor:
            _sharded.check_dtensor(t, param.path)
            t = t._local_tensor
        problem = _storage_problem(t)
        if problem:
            raise ShapeError(f"{spec!r} cannot fill {_where(param)}: {problem}")

    def prepare(
        self, param: _rules.Param, spec: Spec, draw: _rules.Draw
    ) -> torch.Tensor | _sharded.Staged | None:
        t = param.handle
        device = self.device if t.is_meta else _sharded._local(t).device
        try:
            if isinstance(spec, Custom) and spec.elementwise and _sharded.is_dtensor(t):
                return self._staged(param, spec, draw, device)
            if draw.portable:
                values = _rules.portable_values(param, spec, draw)
                whole = torch.from_numpy(np.ascontiguousarray(values)).to(device=device, dtype=t.dtype)
            else:
                whole = torch.empty(param.logical_shape, dtype=t.dtype, device=device)
                generator = torch.Generator(device=device).manual_seed(
                    _stream.tile_seed(self.base(), param.order, 0)
                )
                with torch.no_grad():
                    _filler(spec)(whole, generator, _fans(param, spec))
        except MultiinitError as e:
            if param.path in str(e):
                raise
            raise type(e)(f"{spec!r} on {_where(param)}: {e}") from e
        except Exception as e:  # the user's law failed: never a foreign exception, never a write
            raise _LAW_ERROR(f"{spec!r} failed on {_where(param)}: {type(e).__name__}: {e}") from e
        if whole.is_floating_point() and not bool(torch.isfinite(whole).all()):
            raise _LAW_ERROR(f"{spec!r} returned non-finite values (NaN or inf) for {_where(param)}")
        return whole

    def _staged(
        self, param: _rules.Param, spec: Custom, draw: _rules.Draw, device: torch.device | None
    ) -> _sharded.Staged | None:
        """An elementwise user law on a DTensor: this rank's region only, tile by tile -- the
        part of the whole tensor an unsharded parameter gets (the same key, the same tiles)."""
        t = param.handle
        region = _sharded.local_region(t, param.view)
        if region is None:
            return None
        if draw.portable:
            values = _rules.portable_values(param, spec, draw, box=region)
        else:
            generator = torch.Generator(device=device).manual_seed(
                _stream.tile_seed(self.base(), param.order, 0)
            )
            dtype = _NUMPY_DTYPE.get(t.dtype, "float32")
            values = law_values(
                spec, custom_key(generator), param.logical_shape, dtype, param.path, box=region
            )
        part = torch.from_numpy(np.ascontiguousarray(values)).to(device=device, dtype=t.dtype)
        if part.is_floating_point() and not bool(torch.isfinite(part).all()):
            raise _LAW_ERROR(f"{spec!r} returned non-finite values (NaN or inf) for {_where(param)}")
        return _sharded.Staged(region, part)

    def fill(self, param: _rules.Param, spec: Spec, draw: _rules.Draw, prepared: Any) -> None:
        self.materialize()
        tensor = param.layer._parameters[param.role]  # materializing may have swapped it
        with torch.no_grad():
            _sharded.fill_parameter(tensor, param.view, self.source(param, spec, draw, prepared))

    def source(
        self, param: _rules.Param, spec: Spec, draw: _rules.Draw, prepared: Any = None
    ) -> _sharded.Stream:
        """Where ``param``'s values come from: its tile seeds, or portable mode's reference."""
        if draw.portable:

            def portable(box: Any, write: Any) -> Any:
                return _rules.portable_values(param, spec, draw, box=box, write=write)

            return _sharded.Stream(
                spec,
                param.logical_shape,
                _fans(param, spec),
                param.order,
                portable=portable,
                prepared=prepared,
                path=param.path,
            )
        return _sharded.Stream(
            spec,
            param.logical_shape,
            _fans(param, spec),
            param.order,
            base=self.base(),
            prepared=prepared,
            path=param.path,
        )

    # ---- helpers

    def base(self) -> int:
        """The 32-bit base of this call's tile seeds (drawn once from torch's global RNG
        when there is no seed)."""
        if self._base is None:
            if self.seed is None:
                self._base = int(torch.randint(0, 1 << 32, (1,)).item())
            else:
                self._base = _stream.seed_base(self.seed)
        return self._base

    def materialize(self) -> None:
        """Allocate every meta tensor on ``device`` (once), and reset norm running stats."""
        if not self._meta:
            return
        self._meta = False
        device = self.device

        def empty(t: torch.Tensor) -> torch.Tensor:
            return torch.empty_like(t, device=device) if t.is_meta else t

        with torch.no_grad():
            self.model._apply(empty)
            for module, names in self._norms:
                # torch's construction values (what reset_running_stats writes), for the
                # statistics that were on meta only.
                for name in names:
                    buffer = cast(torch.Tensor, module._buffers[name])  # a meta tensor, above
                    buffer.fill_(1 if name == "running_var" else 0)


def _listed(paths: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(p) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    yield from model.parameters()
    yield from model.buffers()


def _fans(param: _rules.Param, spec: Spec | None = None) -> tuple[int, int] | None:
    """The whole tensor's fans, for a tile drawn alone (a bias: its weight's; a ``with_axes``
    spec: from its axes on the stored shape, ``Param.fans_for``)."""
    if isinstance(spec, WithAxes):
        return param.fans_for(spec)
    if param.fans is not None:
        return param.fans
    if spec is not None and not spec.uses_fans:  # zeros, normal, ...: nothing to compute
        return None
    shape = param.logical_shape
    return compute_fans(shape) if len(shape) >= 2 else None


def _reshard(model: nn.Module) -> None:
    """FSDP2 modules left unsharded by a forward pass (``reshard_after_forward=False``) hold
    plain all-gathered copies that FSDP2 drops at its next reshard: reshard them first, as
    torch's own ``to()``/``to_empty()`` do, so the shards -- FSDP2's truth -- are written.
    (It frees the copies and changes no value; no communication.)"""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    fsdp_module = getattr(fsdp, "FSDPModule", None) if fsdp is not None else None
    if fsdp_module is None:
        return
    for module in model.modules():
        if isinstance(module, fsdp_module):
            module.reshard()


def _device(device: Any) -> torch.device | None:
    if device is None:
        return None
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise SpecError(
            f"device={device!r} is not allowed; device must be a torch device such as 'cpu' or 'cuda' ({e})"
        ) from None
    if resolved.type == "meta":
        raise SpecError("device='meta' is not allowed; device= is where meta parameters are materialized")
    try:
        torch.empty(1, device=resolved)
    except Exception as e:  # noqa: BLE001 - any failure means the device cannot hold the model
        raise SpecError(
            f"device={device!r} is not allowed here: torch cannot allocate on it ({type(e).__name__}: {e})"
        ) from None
    return resolved


def apply(
    model: nn.Module, rules: Any, seed: int | None = None, portable: bool = False, device: Any = None
) -> nn.Module:
    """Initialize ``model``'s parameters by ``rules``, in place, all or nothing; returns it.

    Selectors: a glob on the ``named_parameters()`` path (``"0.weight"``, ``"*.bias"``; a
    tied parameter answers to each of its paths), a role (``"weight"``, ``"bias"``, any leaf
    name), a layer kind (``"dense"``, ``"conv"``, ...), a module class or tuple of classes
    (``nn.Linear``, ``(nn.Conv1d, nn.Conv2d)``), or ``mi.select(...)``; first match wins;
    ``None`` as spec leaves a parameter alone. Everything that can fail is checked before the
    first write; then each parameter is drawn into in place (no model-sized copy).
    ``device=`` materializes a model built on ``meta`` (each DTensor's local shard only).
    Sharded parameters (FSDP2, tensor parallel) keep their placements, each rank drawing only
    its shard, with the values of the unsharded model.

    >>> import torch, multiinit as mi
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    >>> net = mi.apply(net, {nn.Linear: mi.ones(), "bias": mi.zeros()}, seed=0)
    >>> net[2].weight.tolist(), net[2].bias.tolist()
    ([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]], [1.0])
    >>> with torch.device("meta"):
    ...     big = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    >>> big = mi.apply(big, {"weight": mi.he_normal(), "bias": mi.zeros()}, seed=0, device="cpu")
    >>> big[1].bias.device, big[1].bias.tolist()
    (device(type='cpu'), [0.0, 0.0])
    """
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"model of type {type(model).__name__} is not allowed; the torch backend's apply takes "
            "an nn.Module (fill one tensor with mi.compile(spec, 'torch')(tensor))"
        )
    target = _device(device)
    _reshard(model)
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
    writer = _Writer(model, seed, target)
    writer.plan_meta(params, rules)
    _rules.execute(params, rules, seed=seed, portable=portable, writer=writer)
    writer.materialize()  # meta buffers of a model whose rules selected nothing meta
    return model
