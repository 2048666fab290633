"""The MXNet adapter: multiinit specs as registered Gluon initializers, and rules for blocks.

``mi.compile(spec, "mxnet", seed=None)`` (or ``from multiinit import mxnet as mim``) gives a
``Multiinit``, an ``mxnet.initializer.Initializer`` subclass registered with MXNet under the
name ``"multiinit"``. It works wherever Gluon takes an initializer, with legacy ``mx.nd`` and
with ``mx.np`` arrays (after ``npx.set_np()``); the namespace constructors take the
initializer's ``seed=`` as Keras' do: ``mim.he_normal(seed=1)``. ``mi.apply(block, rules, seed=None)``
initializes a Gluon ``Block`` by rules, all or nothing. Written for MXNet 1.9.

Decisions (each one tested in ``tests/test_mxnet_*.py``):

Which arrays a multiinit initializer fills
    MXNet's built-in initializers dispatch on the array's name when called outside Gluon
    (``..._bias`` gets zeros, ``..._gamma`` ones, whatever the initializer), while Gluon's
    ``Parameter.initialize`` always calls ``_init_weight``. A multiinit initializer draws its
    spec for every array it is asked to fill, whatever the name: one spec, one law. In Gluon
    this changes nothing (a ``Dense`` bias still keeps its own ``bias_initializer="zeros"``
    under ``net.initialize(init)``, exactly as with ``mx.init.Xavier``); only a direct call
    on a name ending in ``bias``/``gamma``/``beta`` (the symbolic ``Module`` API) differs.
    When the call carries a parameter's own initializer (``InitDesc.attrs["__init__"]``,
    Gluon's way of passing ``weight_initializer`` and friends), that one wins, as in MXNet.

Layout and fans
    MXNet stores weights ``(out, in/groups, *spatial)``, torch's layout, so a compiled
    initializer computes torch's fans from the array's own shape (a (128, 64, 3, 3) kernel
    has fan_in 576, fan_out 1152). Below two dimensions a fan-based spec raises
    ``ShapeError`` naming the parameter: MXNet's own ``Xavier`` refuses a 1-D array only
    when it is reached through ``_init_weight`` and silently writes zeros when the name ends
    in ``bias``. A single array carries no layer, so a bias gets its weight's fans only
    through ``mi.apply``. In a layer whose shape Gluon defers (``nn.Dense(8)`` without
    ``in_units``), the initializer runs at the first forward pass, with the shape then known.

Seeds (MXNet has one global generator per device and no way to read its state)
    * ``seed=None``: every draw uses MXNet's global generator, as ``mx.init`` does, so
      ``mx.random.seed(s)`` makes a program reproducible; uniform, normal and the Xavier
      forms then give exactly the numbers of the matching ``mx.init`` class (drawn with
      ``mx.np``'s samplers in numpy mode, as MXNet's own initializers are there, and, on a
      float32 array, straight into it as they do).
    * ``seed=<int>``: call k of the instance draws after seeding the array's device with
      ``derive_seed(seed, k)`` (a fresh instance, or one rebuilt by ``mx.init.create``,
      replays the same sequence, while two parameters sharing an instance differ). The
      generator is then reseeded with an integer drawn from the user's own stream just
      before: the user's stream is never left at multiinit's seed, and a program seeded
      with ``mx.random.seed`` stays reproducible, although its later draws are not the
      ones it would have made without the seeded initialization. Deterministic specs
      (constants, eye, dirac) never touch the generator.

Laws MXNet does not have
    Truncated normals invert the normal CDF on U(Phi(low), Phi(high)) and are clipped to
    the bounds, so values never escape them (float32 when both bounds are within 3 std,
    else float64; a window lying wholly in one tail uses the tail expansion of the normal
    quantile, so a cut at [4, 6] std is as exact as one at [-2, 2]). Orthogonal is QR by
    LAPACK's LQ factorization (``mx.nd.linalg.gelqf`` of the transposed tall matrix) with
    the sign fix, torch's flattening (rows = out). Sparse zeroes the k smallest of a
    uniform key per column (``topk``). A mixture picks per element among full-shape draws
    of its components. A custom spec calls the user's NumPy ``fn(rng, shape, dtype)`` with
    ``numpy.random.default_rng`` seeded by an integer drawn from MXNet's (possibly just
    seeded) generator, so it is reproducible both ways. Everything else draws natively.

Serialization
    ``dumps()`` is ``'["multiinit", {"spec": spec.to_dict(), "seed": seed}]'`` and
    ``mx.init.create(that)`` rebuilds an equal initializer in any process that has imported
    ``multiinit.mxnet`` (``from multiinit import mxnet`` does): MXNet looks names up in its
    registry, which only an import can fill, and ``import multiinit`` alone imports no
    framework. A custom spec travels by its registered name only.

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

import contextlib
import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .errors import BackendUnavailable, RuleError, ShapeError, SpecError, UnknownBackend
from .fans import OUT_IN, LogicalView
from .reference import TAIL_BELOW as _P_LOW
from .reference import TAIL_DENOMINATOR as _D
from .reference import TAIL_NUMERATOR as _C
from .reference import check_shape
from .reference import sample as _reference_sample
from .registry import namespace
from .rules import Param, derive_seed, execute, normalize_rules
from .spec import (
    Constant,
    Custom,
    Dirac,
    Eye,
    Mixture,
    Normal,
    Orthogonal,
    Sparse,
    Spec,
    TruncatedNormal,
    Uniform,
    from_dict,
    parse,
)

try:
    import mxnet as mx
    from mxnet.gluon import nn as _nn
except (ImportError, AttributeError) as e:  # mxnet 1.9 fails with AttributeError on numpy >= 1.24
    raise BackendUnavailable.missing("mxnet", "MXNet", "mxnet", e) from e

__all__ = ["LAYOUT", "Multiinit", "compile", "apply", "params_of"]

#: MXNet (NCHW) weights are (out, in/groups, *spatial): the logical layout itself.
LAYOUT = OUT_IN

_FLOATS = ("float16", "float32", "float64")
_SQRT2 = math.sqrt(2.0)
# Within this many std on both sides, float32 resolves the normal CDF far below any test.
_FLOAT32_TRUNCATION_LIMIT = 3.0
_INT31 = 2**31 - 1


# --------------------------------------------------------------------------- drawing
# Every function here returns a legacy NDArray in logical layout on ``ctx``; the numpy-mode
# conversion happens once, when a value is stored.


def _np_mode() -> bool:
    return bool(mx.util.is_np_array())


def _work_dtype(dtype: str) -> str:
    return "float64" if dtype == "float64" else "float32"


# mx.np's samplers give other numbers than mx.nd's: draw with the one MXNet's own
# initializers use in the current mode, so that the same global seed gives their numbers.


def _uniform(low: float, high: float, shape: tuple[int, ...], dtype: str, ctx: Any) -> Any:
    if _np_mode():
        return mx.np.random.uniform(low, high, size=shape, dtype=dtype, ctx=ctx).as_nd_ndarray()
    return mx.nd.random.uniform(low, high, shape=shape, dtype=dtype, ctx=ctx)


def _normal(mean: float, std: float, shape: tuple[int, ...], dtype: str, ctx: Any) -> Any:
    if _np_mode():
        return mx.np.random.normal(mean, std, size=shape, dtype=dtype, ctx=ctx).as_nd_ndarray()
    return mx.nd.random.normal(mean, std, shape=shape, dtype=dtype, ctx=ctx)


def _random_int(ctx: Any) -> int:
    """An integer in [0, 2**31 - 1) from MXNet's generator on ``ctx``."""
    return int(mx.nd.random.randint(0, _INT31, shape=(1,), ctx=ctx).asscalar())


@contextlib.contextmanager
def _seeded(seed: int | None, ctx: Any) -> Iterator[None]:
    """Draw from ``seed`` on ``ctx``'s generator, then resume the user's stream (see module doc)."""
    if seed is None:
        yield
        return
    resume = _random_int(ctx)
    mx.random.seed(int(seed), ctx=ctx)
    try:
        yield
    finally:
        mx.random.seed(resume, ctx=ctx)


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / _SQRT2)


def _poly(coefficients: Sequence[float], x: Any, monic_tail: bool = False) -> Any:
    out = x * 0 + coefficients[0]
    for c in coefficients[1:]:
        out = out * x + c
    return out * x + 1 if monic_tail else out


def _lower_tail_quantile(p: Any) -> Any:
    """The standard normal quantile of ``p`` < 0.02425 (Acklam's tail form, as the reference)."""
    q = mx.nd.sqrt(-2.0 * mx.nd.log(p))
    return _poly(_C, q) / _poly(_D, q, monic_tail=True)


def _truncated(shape: tuple[int, ...], mean: float, std: float, low: float, high: float,
               dtype: str, ctx: Any) -> Any:
    """N(mean, std**2) cut to [mean + low*std, mean + high*std]; never outside the bounds."""
    flip = low > 0  # work in the lower tail, where the CDF keeps its relative precision
    a, b = (-high, -low) if flip else (low, high)
    lo, hi = _phi(a), _phi(b)
    if hi < _P_LOW:
        # The whole window is in the far tail: 2u - 1 would round to -1 there, so invert
        # the tail directly.
        u = _uniform(lo, hi, shape, "float64", ctx)
        # lo underflows to 0 beyond about 38 std: keep log(u) finite.
        x = _lower_tail_quantile(mx.nd.maximum(u, max(lo, 1e-300)))
    else:
        wide = max(abs(low), abs(high)) > _FLOAT32_TRUNCATION_LIMIT
        work = "float64" if dtype == "float64" or wide else "float32"
        u = _uniform(lo, hi, shape, work, ctx)
        x = _SQRT2 * mx.nd.erfinv(2.0 * u - 1.0)
    x = mx.nd.clip(x, a, b)
    if flip:
        x = -x
    y = (mean + std * x).astype(dtype)
    # Again with the bounds as the output dtype rounds them: the arithmetic may round across.
    return mx.nd.clip(y, mean + low * std, mean + high * std)


def _orthogonal(spec: Orthogonal, shape: tuple[int, ...], dtype: str, ctx: Any) -> Any:
    # torch's flattening: rows = out, cols = the rest. QR of the tall side is the LQ of its
    # transpose (gelqf: a = L Q, so a.T = Q.T L.T); the sign fix makes the result Haar.
    rows = shape[0]
    cols = math.prod(shape) // rows
    work = _work_dtype(dtype)
    a = _normal(0.0, 1.0, (min(rows, cols), max(rows, cols)), work, ctx)
    q, lower = mx.nd.linalg.gelqf(a)
    q = q * mx.nd.sign(mx.nd.diag(lower)).reshape((-1, 1))
    if rows >= cols:
        q = q.T
    return (spec.gain * q.reshape(shape)).astype(dtype)


def _dirac(spec: Dirac, shape: tuple[int, ...], dtype: str, ctx: Any) -> Any:
    out_channels, in_channels, *kernel = shape
    per_group = out_channels // spec.groups
    # Row g*per_group + d has its 1 in column d (d < min(per_group, in)), at the centre k//2.
    channels = mx.nd.tile(mx.nd.eye(per_group, in_channels, dtype=dtype, ctx=ctx), reps=(spec.groups, 1))
    centre = int(np.ravel_multi_index(tuple(k // 2 for k in kernel), kernel))
    spot = mx.nd.one_hot(mx.nd.full((1,), centre, ctx=ctx), depth=math.prod(kernel), dtype=dtype)
    return (channels.reshape((out_channels, in_channels, 1)) * spot.reshape((1, 1, -1))).reshape(shape)


def _sparse(spec: Sparse, shape: tuple[int, ...], dtype: str, ctx: Any) -> Any:
    rows, _ = shape
    values = _normal(0.0, spec.std, shape, _work_dtype(dtype), ctx)
    zeros_per_column = int(math.ceil(spec.sparsity * rows))
    if zeros_per_column:
        # A uniformly random set of rows per column: those whose key is among the k smallest.
        keys = _uniform(0.0, 1.0, shape, "float32", ctx)
        picked = mx.nd.topk(keys, axis=0, k=zeros_per_column, ret_typ="mask", is_ascend=True)
        values = mx.nd.where(picked, mx.nd.zeros_like(values), values)
    return values.astype(dtype)


def _mixture(spec: Mixture, shape: tuple[int, ...], fans: tuple[int, int] | None, dtype: str,
             ctx: Any) -> Any:
    live = [(w, s) for w, s in spec.components if w > 0]
    total = math.fsum(w for w, _ in live)
    # Component i wins where u falls in its slice of [0, 1); applying the wheres from the last
    # to the first makes the smallest such i win, as a categorical draw does.
    u = _uniform(0.0, 1.0, shape, "float32", ctx)
    out = _draw_logical(live[-1][1], shape, fans, dtype, ctx)
    edges = np.cumsum([w / total for w, _ in live])
    for edge, (_, component) in reversed(list(zip(edges[:-1], live[:-1]))):
        out = mx.nd.where(u < float(edge), _draw_logical(component, shape, fans, dtype, ctx), out)
    return out


def _custom(spec: Custom, shape: tuple[int, ...], fans: tuple[int, int] | None, dtype: str,
            ctx: Any) -> Any:
    rng = np.random.default_rng(_random_int(ctx))
    logical = _reference_sample(spec, shape, seed=rng, dtype=dtype, fans=fans)
    return mx.nd.array(logical, dtype=dtype, ctx=ctx)


def _draw_logical(spec: Spec, shape: tuple[int, ...], fans: tuple[int, int] | None, dtype: str,
                  ctx: Any) -> Any:
    """A logical-layout NDArray of ``spec`` (``fans`` already resolved for fan-based specs)."""
    if isinstance(spec, Constant):
        return mx.nd.full(shape, spec.value, dtype=dtype, ctx=ctx)
    work = _work_dtype(dtype)
    if isinstance(spec, Uniform):
        return _uniform(spec.low, spec.high, shape, work, ctx).astype(dtype)
    if isinstance(spec, Normal):
        return _normal(spec.mean, spec.std, shape, work, ctx).astype(dtype)
    if isinstance(spec, TruncatedNormal):
        return _truncated(shape, spec.mean, spec.std, spec.low, spec.high, dtype, ctx)
    scaling = spec.as_variance_scaling()
    if scaling is not None:
        distribution, number = scaling.law(*fans)
        if distribution == "uniform":
            return _uniform(-number, number, shape, work, ctx).astype(dtype)
        if distribution == "untruncated_normal":
            return _normal(0.0, number, shape, work, ctx).astype(dtype)
        return _truncated(shape, 0.0, number, -2.0, 2.0, dtype, ctx)
    if isinstance(spec, Orthogonal):
        return _orthogonal(spec, shape, dtype, ctx)
    if isinstance(spec, Eye):
        return mx.nd.eye(shape[0], shape[1], dtype=dtype, ctx=ctx)
    if isinstance(spec, Dirac):
        return _dirac(spec, shape, dtype, ctx)
    if isinstance(spec, Sparse):
        return _sparse(spec, shape, dtype, ctx)
    if isinstance(spec, Mixture):
        return _mixture(spec, shape, fans, dtype, ctx)
    if isinstance(spec, Custom):
        return _custom(spec, shape, fans, dtype, ctx)
    raise SpecError(f"spec={spec!r} is not allowed; it is not a multiinit spec")  # pragma: no cover


def _to_native(view: LogicalView, logical: Any) -> Any:
    """A logical NDArray in the parameter's native layout (NDArrays reshape and transpose
    like NumPy arrays, so the view's own mapping applies as is)."""
    if view.is_plain and view.axes == tuple(range(len(view.axes))):
        return logical
    return view.to_native(logical)


def _draw(spec: Spec, view: LogicalView, fans: tuple[int, int] | None, dtype: str, ctx: Any,
          seed: int | None, path: str) -> Any:
    """A native-layout NDArray of ``spec`` for ``view``, drawn from ``seed`` (None: global)."""
    if spec.uses_fans and fans is None:
        fans = view.fans
    if dtype not in _FLOATS and spec.random:
        raise SpecError(
            f"{spec!r} cannot fill {path!r}: dtype={dtype!r} is not allowed; a random spec draws "
            f"one of {', '.join(_FLOATS)}"
        )
    work = dtype if dtype in _FLOATS else "float32"
    with _seeded(seed if spec.random else None, ctx):
        logical = _draw_logical(spec, view.logical_shape, fans, work, ctx)
    return _to_native(view, logical).astype(dtype, copy=False)


def _fill_in_place(spec: Spec, arr: Any, seed: int | None) -> bool:
    """Fill ``arr`` directly when the law is one MXNet samples natively (a constant, uniform
    or normal, fan-based ones included), as ``mx.init`` does: no temporary, no copy. Returns
    False, having done nothing, for every other law, dtype or array kind."""
    if isinstance(spec, Constant):
        arr[:] = spec.value
        return True
    numpy_array = isinstance(arr, mx.np.ndarray)
    # MXNet's samplers write float32 into `out`; and the sampler must be the current mode's.
    if _dtype_name(arr.dtype) != "float32" or numpy_array != _np_mode():
        return False
    if isinstance(spec, Uniform):
        law = ("uniform", spec.low, spec.high)
    elif isinstance(spec, Normal):
        law = ("normal", spec.mean, spec.std)
    elif spec.as_variance_scaling() is not None:
        distribution, number = spec.as_variance_scaling().law(*LogicalView(tuple(arr.shape)).fans)
        if distribution == "truncated_normal":
            return False
        law = ("uniform", -number, number) if distribution == "uniform" else ("normal", 0.0, number)
    else:
        return False
    sampler = getattr(mx.np.random if numpy_array else mx.nd.random, law[0])
    with _seeded(seed, arr.context):
        sampler(law[1], law[2], arr.shape, out=arr)
    return True


def _as_stored(value: Any, like: Any) -> Any:
    """``value`` (an NDArray) in the array type of ``like`` (mx.np refuses legacy NDArrays)."""
    if isinstance(like, mx.np.ndarray):
        return value.as_np_ndarray()
    return value


def _dtype_name(dtype: Any) -> str:
    return np.dtype(dtype).name


# --------------------------------------------------------------------------- the initializer


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError(
            f"seed={seed!r} is not allowed; seed must be None (MXNet's global generator) or an "
            "integer >= 0"
        )
    return int(seed)


def _as_spec(spec: Any) -> Spec:
    if isinstance(spec, Mapping):
        return from_dict(spec)
    if isinstance(spec, str):
        return parse(spec)
    if not isinstance(spec, Spec):
        raise SpecError(
            f"spec={spec!r} is not allowed; spec must be a multiinit spec, its to_dict() or its text"
        )
    return spec


@mx.init.register
class Multiinit(mx.init.Initializer):
    """A multiinit spec as an MXNet initializer, registered as ``"multiinit"``.

    It fills every array it is given with ``spec`` (fans from the array's own
    ``(out, in, *spatial)`` shape). With ``seed=<int>`` call k draws from
    ``derive_seed(seed, k)``; with ``seed=None`` from MXNet's global generator. ``dumps()``
    carries the spec, so ``mx.init.create(init.dumps())`` rebuilds an equal initializer.

    >>> import multiinit as mi, mxnet as mx
    >>> init = mi.compile(mi.constant(0.5), "mxnet")
    >>> init.dumps()
    '["multiinit", {"spec": {"kind": "constant", "value": 0.5}, "seed": null}]'
    >>> mx.init.create(init.dumps()) == init
    True
    """

    def __init__(self, spec: Spec | Mapping[str, Any] | str, seed: int | None = None) -> None:
        spec = _as_spec(spec)
        seed = _check_seed(seed)
        # MXNet's dumps() and __eq__ read _kwargs: the JSON form of the spec goes there.
        super().__init__(spec=spec.to_dict(), seed=seed)
        self.spec = spec
        self.seed = seed
        self._calls = 0

    def __call__(self, desc: Any, arr: Any) -> None:
        """Fill ``arr`` with the spec, whatever ``desc`` names (see the module docstring)."""
        if isinstance(desc, mx.init.InitDesc):
            if desc.global_init is None:
                desc.global_init = self
            own = desc.attrs.get("__init__", "")
            if own:
                # Gluon passes a parameter's own initializer this way: it wins, as in MXNet.
                mx.init.create(own)._init_weight(desc, arr)
                self._verbose_print(desc, own, arr)
                return
        self._init_weight(desc, arr)
        self._verbose_print(desc, "multiinit", arr)

    def _init_weight(self, name: Any, arr: Any) -> None:
        path = str(name)
        shape = tuple(int(d) for d in arr.shape)
        if any(d < 0 for d in shape):
            raise ShapeError(f"{self.spec!r} cannot fill {path!r}: its shape {shape} is not known yet")
        check_shape(self.spec, shape, None, path=path)
        seed = None if self.seed is None else derive_seed(self.seed, self._calls)
        self._calls += 1
        if math.prod(shape) == 0 or _fill_in_place(self.spec, arr, seed):
            return
        value = _draw(self.spec, LogicalView(shape), None, _dtype_name(arr.dtype), arr.context, seed, path)
        # A shallow legacy view of an mx.np array shares its memory: one write for both kinds.
        target = arr.as_nd_ndarray() if isinstance(arr, mx.np.ndarray) else arr
        target[:] = value

    # Whatever MXNet's name dispatch would pick, the spec is what fills the array.
    _init_bias = _init_gamma = _init_beta = _init_default = _init_weight

    def reset(self) -> "Multiinit":
        """Start a seeded initializer's sequence again at call 0; returns ``self``.

        >>> import multiinit as mi
        >>> mi.compile(mi.normal(), "mxnet", seed=3).reset().seed
        3
        """
        self._calls = 0
        return self

    def __repr__(self) -> str:
        return f"Multiinit({self.spec!r}, seed={self.seed!r})"


def compile(spec: Spec, seed: int | None = None) -> Multiinit:
    """``spec`` as a registered MXNet initializer (see ``Multiinit`` for seeds and fans).

    >>> import multiinit as mi, mxnet as mx
    >>> from mxnet.gluon import nn
    >>> layer = nn.Dense(4, in_units=3, weight_initializer=mi.compile(mi.ones(), "mxnet"))
    >>> layer.initialize()
    >>> float(layer.weight.data().sum().asscalar())
    12.0
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec such as mi.normal()")
    return Multiinit(spec, seed=seed)


# --------------------------------------------------------------------------- model level

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


# The framework namespace of the contract: mim.xavier_uniform() is a Multiinit instance, and
# every constructor takes the initializer's seed=, as with Keras: mim.he_normal(seed=1).
globals().update(namespace("mxnet", compile, seeded=True))
