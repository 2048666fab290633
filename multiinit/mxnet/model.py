"""Model level: walking a Gluon ``Block`` and ``apply`` (part of ``multiinit.mxnet``).

``mi.apply(block, rules, seed=None)`` (this file's ``apply``) initializes a Gluon ``Block``
by rules, all or nothing; ``params_of(block)`` lists what it can write. Values come from
``draw.py``.

Decisions (each one tested in ``tests/test_mxnet_*.py``):

Model level
    Parameters are a block's learnable parameters in definition order (a block's own, then
    its children's, as ``save_parameters`` walks them), each tied parameter once (its other
    paths are its aliases: any of them selects it), excluding BatchNorm's running
    statistics. ``path`` is the structured path ``save_parameters`` writes and users index by
    (``"0.weight"``, ``"features.3.bias"``), not MXNet 1.x's prefixed name
    (``"dense0_weight"``), which changes with every block built in a process; a fused RNN
    layer's parameters go by their attribute names (``"0.l0_i2h_weight"``), which
    ``save_parameters`` renames.
    ``role`` is its attribute name (``"weight"``, ``"bias"``, ``"gamma"``, ``"beta"``). A
    transposed conv's weight ``(in, out/g, *k)`` (or channels-last ``(in, *k, out/g)``, and a
    channels-last conv's ``(out, *k, in/g)``) is seen through its logical view
    ``(out, in/g, *k)``: a 64 -> 128 3x3 transposed conv has fan_in 576 here, where MXNet's
    own ``Xavier`` reads the stored shape and says 1152 (as torch does). A parameter without
    fans of its own (a bias) gets the logical fans of its block's weight: the one of the same
    name with "weight" for "bias" (a recurrent layer's ``l0_i2h_bias`` and ``l0_i2h_weight``),
    else ``weight``. Layer kinds: ``dense``, ``conv``, ``conv_transpose``, ``embedding``,
    ``norm``, ``recurrent`` (Gluon's RNN, LSTM, GRU and their cells), and ``depthwise_conv``
    for a grouped conv with one input channel per group (Keras' DepthwiseConv).

Layers multiinit does not know
    A block class registered with ``mi.register_layer`` gets its registration's kind, layouts
    (a weight stored ``(in, out)`` is read as such) and bias fans, ahead of the built-in
    table above; a parameter of any other block is ``known=False``, and ``mi.plan`` flags it
    when a fan-based law would fill it (its fans are read off the stored shape: a guess).

One pass, all or nothing, no copy (``apply`` drives ``rules.execute`` with ``_Writer``)
    Before the first write, ``check`` refuses (naming the parameter, its MXNet name and what
    to do) every parameter a rule would fill that cannot be filled: one never initialized, a
    dtype the law cannot fill (``draw.check_dtype``), an array whose shape differs from the
    parameter's, an array MXNet marks read-only (``writable=False``, which its in-place
    arithmetic refuses), a parameter whose Trainer keeps it on a distributed kvstore
    (``set_data`` would have to reset it, which MXNet refuses). User laws are drawn
    and validated next (``LawError``). Then each parameter is drawn straight into its
    array (``draw.fill``: MXNet's samplers write in place, host draws write into the
    array's memory) and copied to its other contexts; nothing model-sized is held. As
    ``Parameter.set_data`` does, a Trainer that updates on its kvstore is reset so that the
    kvstore takes the new values. Portable mode writes ``rules.portable_values`` tile by
    tile into the array (a transposed or channels-last conv's weight is rearranged once).

MXNet's deferred initialization (the big-model idiom)
    Blocks built without input sizes (``nn.Dense(8)``) and ``initialize()``d before their first
    forward have no arrays yet; MXNet allocates and initializes each parameter at the first
    forward pass, once its shape is known. ``apply`` on such a block checks what it can now
    (rules, dimensions, dtypes), then gives each deferred parameter its rule as the
    initializer that first forward pass runs: one allocation and one draw per parameter,
    the same values as ``apply`` after the forward (same seed, same order). A bias that
    already holds data but takes its fans from a deferred weight is filled by the weight's
    initializer, right after it. At the forward pass a parameter whose law fails (a user
    law's ``LawError``, a shape the law cannot fill) stays deferred, unwritten, and the error
    says which; parameters MXNet finished before it keep their values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

# multiinit/mxnet/__init__.py has already turned a failing mxnet import into BackendUnavailable.
import mxnet as mx
import numpy as np
from mxnet.gluon import nn as _nn, rnn as _rnn

from .. import rules as _rules
from ..errors import RuleError, ShapeError, UnknownBackend
from ..fans import LogicalView
from ..layers import lookup_layer
from ..reference import check_shape, law_values
from ..rules import Draw, Param, derive_seed, execute, needs_prepare
from ..spec import Custom, Spec, WithAxes
from . import host
from .draw import _dtype_name, base_seed, check_dtype, fill

_TRANSPOSED = (_nn.Conv1DTranspose, _nn.Conv2DTranspose, _nn.Conv3DTranspose)
_CONV = (_nn.Conv1D, _nn.Conv2D, _nn.Conv3D)
_NORM = (_nn.BatchNorm, _nn.LayerNorm, _nn.InstanceNorm, _nn.GroupNorm)
# Recurrent layers and the cells with input-to-hidden and hidden-to-hidden weights.
_RECURRENT = (_rnn.rnn_layer._RNNLayer, _rnn.RNNCell, _rnn.LSTMCell, _rnn.GRUCell)
# Whether the rules select a parameter by its other paths too (a tied parameter's), and
# whether they tell layers multiinit knows from guesses (mi.plan flags the latter).
_ALIASES = "aliases" in getattr(Param, "__dataclass_fields__", {})
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
    if isinstance(block, _RECURRENT):
        return "recurrent"
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
        return LogicalView(shape, axes=(0, n - 1, *spatial)) if last else LogicalView(shape)
    # (in, out/g, *k) or (in, *k, out/g): split in into (g, in/g) and put out/g before it.
    groups = _groups(block)
    in_channels = shape[0]
    out_axis = n - 1 if last else 1
    kernel = tuple(shape[a] for a in spatial)
    pre = (groups, in_channels // groups, *shape[1:])
    # pre axes: 0 = g, 1 = in/g, then shape's axes 1.. shifted by one.
    axes = (0, out_axis + 1, 1, *(a + 1 for a in spatial))
    logical = (groups * shape[out_axis], in_channels // groups, *kernel)
    return LogicalView(shape, axes=axes, pre_shape=pre, logical_shape=logical)


def _registration(block: Any) -> Any:
    """What ``multiinit.register_layer`` says about ``block``'s class, or None."""
    return lookup_layer(block) if block is not None else None


def _layer_kind(block: Any) -> tuple[str | None, bool]:
    """``block``'s kind and whether multiinit knows it (a registration wins over the built-ins)."""
    registration = _registration(block)
    if registration is not None:
        return registration.kind, True
    kind = _kind(block)
    return kind, kind is not None


def _view_of(block: Any, role: str, shape: tuple[int, ...]) -> LogicalView:
    """The logical view of ``block``'s parameter ``role``: its registered layout, else Gluon's."""
    registration = _registration(block)
    view = registration.view(role, shape) if registration is not None else None
    return view if view is not None else _view(block, role, shape)


def _own_fans(view: LogicalView) -> bool:
    """True when a parameter has fans of its own (a weight), False for a bias-like one."""
    if len(view.native_shape) < 2:
        return False
    try:
        _ = view.fans  # raises for a view without fans
    except ShapeError:
        return False
    return True


def _fan_sources(members: Sequence[Param]) -> dict[int, Param]:
    """For each parameter of one block without fans of its own, the parameter it takes them
    from: the one its registration names, else the block's >= 2-D ``weight``."""
    if not members:
        return {}
    registration = _registration(members[0].layer)
    by_role = {p.role: p for p in members}
    default = _fan_weight(members)
    sources = {}
    for p in members:
        if _own_fans(p.view):
            continue
        named = registration.fans_source(p.role) if registration is not None else None
        if named is None and "bias" in p.role:
            # A recurrent layer's l0_i2h_bias pairs with its l0_i2h_weight (torch's rule too).
            named = p.role.replace("bias", "weight") if p.role.replace("bias", "weight") in by_role else None
        source = by_role.get(named) if named is not None else default
        if source is not None and source is not p and _own_fans(source.view):
            sources[id(p)] = source
    return sources


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
    shape is still deferred are listed with their unknown dimensions as 0 (``apply`` gives
    them their rules for the first forward pass). A tied parameter is listed once, under the
    first path that reaches it; its other paths are its ``aliases`` where the rules know them.

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
    seen: dict[int, Param] = {}
    owned: dict[int, list[Param]] = {}
    for owner, path, role, parameter in _walk(block, "", set()):
        if role in _RUNNING:
            continue
        if id(parameter) in seen:
            # A tied parameter appears once, under the first path that reaches it.
            first = seen[id(parameter)]
            if _ALIASES:
                first.aliases = (*first.aliases, path)
            continue
        shape = tuple(max(int(d), 0) for d in parameter.shape)
        kind, known = _layer_kind(owner)
        param = Param(
            path=path,
            view=_view_of(owner, role, shape),
            role=role,
            layer=owner,
            order=len(params),
            dtype=_dtype_name(parameter.dtype),
            handle=parameter,
            kind=kind,
            known=known,
        )
        seen[id(parameter)] = param
        params.append(param)
        owned.setdefault(id(owner), []).append(param)
    for members in owned.values():
        sources = _fan_sources(members)
        for p in members:
            if id(p) in sources:
                p.fans = sources[id(p)].view.fans
    return params


def _fan_weight(members: Sequence[Param]) -> Param | None:
    """The weight a block's 1-D parameters take their fans from (its >= 2-D ``weight``)."""
    return next((p for p in members if p.role == "weight" and len(p.view.native_shape) >= 2), None)


def _deferred(parameter: Any) -> bool:
    """True when MXNet will allocate and initialize ``parameter`` at the first forward pass."""
    return parameter._data is None and bool(parameter._deferred_init)


def _where(param: Param) -> str:
    return f"{param.path!r} ({param.handle.name})"


def _fans_of(param: Param, spec: Spec) -> tuple[int, int] | None:
    """The fans ``spec`` uses on ``param``: the rules' own answer when the core has one (a spec
    that states its fan axes), else the fans the walker gave (a bias: its weight's)."""
    fans_for = getattr(param, "fans_for", None)
    return fans_for(spec) if fans_for is not None and spec.uses_fans else param.fans


def _derived(draw: Draw) -> int | None:
    return None if draw.seed is None else derive_seed(draw.seed, draw.order)


def _prepare_values(
    param: Param,
    view: LogicalView,
    fans: tuple[int, int] | None,
    spec: Spec,
    draw: Draw,
    dtype: str,
    ctx: Any,
) -> np.ndarray:
    """A user law's logical values for ``param``, drawn and validated (``LawError``)."""
    work = np.dtype(dtype if dtype in ("float16", "float32", "float64") else "float32")
    if draw.portable:
        if isinstance(spec, Custom):
            # The stream rule's draw of a user law (whole, or tile by tile when elementwise).
            return law_values(spec, draw.key, view.logical_shape, work, param.path)
        drawn = Param(param.path, view, param.role, param.layer, fans, param.order, work.name)
        return host.fenced(spec, param.path, lambda: _rules.portable_values(drawn, spec, draw))
    if spec.uses_fans and fans is None:
        fans = view.fans
    base = base_seed(_derived(draw), ctx)
    return host.logical_values(spec, view.logical_shape, fans, work, base, param.path)


def _fill_array(
    arr: Any,
    param: Param,
    view: LogicalView,
    fans: tuple[int, int] | None,
    spec: Spec,
    draw: Draw,
    prepared: np.ndarray | None,
) -> None:
    """``spec`` into ``arr`` (one array of ``param``), natively or in portable mode."""
    if not draw.portable or prepared is not None:
        fill(arr, spec, view, fans, _derived(draw), param.path, prepared)
        return
    drawn = Param(param.path, view, param.role, param.layer, fans, param.order, param.dtype)
    with host.host_target(arr) as out:
        if view.is_plain and view.axes == tuple(range(len(view.axes))):

            def write(box: tuple[slice, ...], values: np.ndarray) -> None:
                out[box] = values

            _rules.portable_values(drawn, spec, draw, write=write)
        else:
            host.write_logical(out, view, _rules.portable_values(drawn, spec, draw))


def _write_param(
    param: Param, fans: tuple[int, int] | None, spec: Spec, draw: Draw, prepared: np.ndarray | None
) -> None:
    """Fill an initialized parameter: its first array drawn, its other contexts copied from it."""
    parameter = param.handle
    trainer = parameter._trainer
    if (
        trainer is not None
        and trainer._kv_initialized
        and trainer._update_on_kvstore
        and parameter not in trainer._params_to_init
    ):
        trainer._reset_kvstore()  # as set_data does: the kvstore then takes the new values
    arrays = parameter._data
    _fill_array(arrays[0], param, param.view, fans, spec, draw, prepared)
    for other in arrays[1:]:
        arrays[0].copyto(other)


class _Armed(mx.init.Initializer):
    """The initializer MXNet runs for a deferred parameter at the first forward pass: the
    parameter's own rule (or, when no rule selects it, the initializer it had), then the rules
    of the initialized 1-D parameters that take their fans from it. Any failure puts the
    parameter back in its deferred state before the error goes on."""

    def __init__(self, param: Param, saved: tuple[Any, ...]) -> None:
        super().__init__()
        self.param = param
        self.saved = saved  # the parameter's _deferred_init before multiinit touched it
        self.own: tuple[Spec, Draw] | None = None
        self.dependents: list[tuple[Param, Spec, Draw]] = []
        parameter = param.handle
        self.armed = (self, saved[1], self, None)
        parameter._deferred_init = self.armed

    def _init_weight(self, name: Any, arr: Any) -> None:
        parameter = self.param.handle
        try:
            self._run(arr)
        except BaseException:
            parameter._deferred_init = self.armed  # still deferred: a later forward retries
            raise

    def _run(self, arr: Any) -> None:
        param = self.param
        shape = tuple(int(d) for d in arr.shape)
        view = _view_of(param.layer, param.role, shape)
        fans = _fans_now(param) if param.fans is not None else None
        if self.own is not None and isinstance(self.own[0], WithAxes) and fans is None:
            fans = self.own[0].fans(shape)  # its axes index the stored shape
        # Everything that can fail first (shapes, user laws), then the writes.
        if self.own is not None:
            spec, draw = self.own
            check_shape(spec, view.logical_shape, fans, param.path)
            check_dtype(spec, arr.dtype, param.path)
            own = (
                _prepare_values(param, view, fans, spec, draw, _dtype_name(arr.dtype), arr.ctx)
                if needs_prepare(spec)
                else None
            )
        dependents = []
        for dependent, spec, draw in self.dependents:
            dfans = view.fans
            check_shape(spec, dependent.logical_shape, dfans, dependent.path)
            first = dependent.handle._data[0]
            values = (
                _prepare_values(
                    dependent, dependent.view, dfans, spec, draw, _dtype_name(first.dtype), first.ctx
                )
                if needs_prepare(spec)
                else None
            )
            dependents.append((dependent, dfans, spec, draw, values))
        if self.own is not None:
            _fill_array(arr, param, view, fans, *self.own, own)
        else:
            init, _, default_init, data = self.saved
            if data is not None:
                arr[:] = data
            else:
                mx.init.create(default_init)(mx.init.InitDesc(param.handle.name, {"__init__": init}), arr)
        for dependent, dfans, spec, draw, values in dependents:
            _write_param(dependent, dfans, spec, draw, values)


def _fans_now(param: Param) -> tuple[int, int] | None:
    """The fans a bias-like parameter of a deferred block takes from its weight, once known."""
    if param.layer is None:
        return None
    now = next((p for p in params_of(param.layer) if p.layer is param.layer and p.role == param.role), None)
    return now.fans if now is not None else None


class _Writer:
    """``rules.execute``'s writer for Gluon parameters (see the module docstring)."""

    def __init__(self, params: Sequence[Param]) -> None:
        owned: dict[int, list[Param]] = {}
        for p in params:
            owned.setdefault(id(p.layer), []).append(p)
        self.sources: dict[int, Param] = {}
        for members in owned.values():
            self.sources.update(_fan_sources(members))
        self.armed: dict[int, _Armed] = {}

    def _fan_source(self, param: Param) -> Param | None:
        return self.sources.get(id(param))

    def check(self, param: Param, spec: Spec) -> None:
        parameter = param.handle
        check_dtype(spec, parameter.dtype, param.path)
        if _deferred(parameter):
            return  # filled at the first forward pass; dimensions were checked by the plan
        if parameter._data is None:
            raise RuleError(
                f"multiinit.apply cannot fill {_where(param)}: it is not initialized. Call "
                "block.initialize() first (with shapes still unknown too: the rules then run at "
                "the first forward pass); nothing was written"
            )
        for arr in parameter._data:
            if tuple(int(d) for d in arr.shape) != param.view.native_shape:
                raise RuleError(
                    f"multiinit.apply cannot fill {_where(param)}: its array on {arr.ctx} has "
                    f"shape {tuple(arr.shape)}, not the parameter's {param.view.native_shape}; "
                    "nothing was written"
                )
            if not arr.writable:
                raise RuleError(
                    f"multiinit.apply cannot fill {_where(param)}: its array on {arr.ctx} is "
                    "read-only; nothing was written"
                )
            check_dtype(spec, arr.dtype, param.path)
        trainer = parameter._trainer
        if (
            trainer is not None
            and trainer._kv_initialized
            and trainer._update_on_kvstore
            and parameter not in trainer._params_to_init
            and trainer._kvstore is not None
            and "dist" in trainer._kvstore.type
        ):
            raise RuleError(
                f"multiinit.apply cannot fill {_where(param)}: its Trainer keeps it on a distributed "
                f"kvstore ({trainer._kvstore.type}), which MXNet cannot reset to take new values; "
                "initialize the block before creating the Trainer. Nothing was written"
            )
        weight = self._fan_source(param)
        if (
            spec.uses_fans
            and weight is not None
            and not _deferred(weight.handle)
            and not _known(tuple(int(d) for d in weight.handle.shape))
        ):
            raise RuleError(
                f"multiinit.apply cannot fill {_where(param)}: it takes its fans from "
                f"{weight.path!r}, whose shape {weight.handle.shape} is not known yet; nothing was written"
            )

    def prepare(self, param: Param, spec: Spec, draw: Draw) -> Any:
        parameter = param.handle
        if _deferred(parameter) or self._waits_for_weight(param, spec):
            return None  # drawn at the first forward pass, when the shape is known
        arr = parameter._data[0]
        return _prepare_values(
            param, param.view, _fans_of(param, spec), spec, draw, _dtype_name(arr.dtype), arr.ctx
        )

    def _waits_for_weight(self, param: Param, spec: Spec) -> bool:
        weight = self._fan_source(param)
        return spec.uses_fans and weight is not None and _deferred(weight.handle)

    def _arm(self, param: Param) -> _Armed:
        armed = self.armed.get(id(param.handle))
        if armed is None:
            armed = self.armed[id(param.handle)] = _Armed(param, param.handle._deferred_init)
        return armed

    def fill(self, param: Param, spec: Spec, draw: Draw, prepared: Any) -> None:
        parameter = param.handle
        if _deferred(parameter):
            self._arm(param).own = (spec, draw)
            return
        if self._waits_for_weight(param, spec):
            # _waits_for_weight found the fan source.
            self._arm(cast(Param, self._fan_source(param))).dependents.append((param, spec, draw))
            return
        _write_param(param, _fans_of(param, spec), spec, draw, prepared)


def apply(model: Any, rules: Any, seed: int | None = None, portable: bool = False) -> Any:
    """Initialize a Gluon ``Block`` by rules, in place, in one pass, all or nothing; returns it.

    Selectors: a glob on the structured path (``"0.weight"``, ``"*.bias"``), a role
    (``"weight"``, ``"bias"``, ``"gamma"``, ``"beta"``), a layer kind, or a block class
    (``nn.Dense``). Every rule, shape, dtype and array is checked and every user law drawn
    before the first parameter is written; then each is drawn straight into its array.
    ``seed`` makes the draw reproducible (parameter k draws from ``derive_seed(seed, k)``);
    ``seed=None`` uses MXNet's global generator; ``portable=True`` writes the NumPy reference
    draw (the same numbers in every framework). Parameters whose shapes MXNet has deferred
    are initialized by their rules at the first forward pass (see the module docstring).

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
    execute(params, rules, seed=seed, portable=portable, writer=_Writer(params))
    return model
