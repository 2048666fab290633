"""The Keras 3 adapter: multiinit specs as serializable Keras initializers, and rules for models.

``mi.compile(spec, "keras", seed=None)`` (or ``from multiinit import keras as mik``) gives a
``MultiinitInitializer``, a ``keras.initializers.Initializer`` subclass written with
``keras.ops`` and ``keras.random`` only, so it runs on any Keras 3 backend (TensorFlow is the
one tested). ``mi.apply(model, rules, seed=None)`` initializes a built Keras ``Model`` or
``Layer`` by rules, all or nothing. Every constructor of the namespace also takes Keras'
``seed=`` keyword: ``mik.he_normal(seed=1)``.

Decisions (each one tested in ``tests/test_keras_*.py``):

Layout and fans
    Keras kernels are ``(*spatial, in, out)``; a compiled initializer computes its fans on the
    logical ``(out, in, *spatial)`` view of the shape it is called with, which for a dense or
    a plain conv kernel are exactly Keras' own fans (a (3, 3, 64, 128) kernel has fan_in 576,
    fan_out 1152). Below two dimensions a fan-based spec raises ``ShapeError`` where Keras
    invents fans (n, n) for a bias: at single-tensor level the layer is unknown, so use
    ``mi.apply`` to give a bias its kernel's fans.

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

Seeds
    Keras' own int-seeded (and unseeded) initializers are stateless: one instance shared by two
    layers gives both the same weights. A multiinit initializer instead advances on every call:

    * ``seed=<int>``: call k of the instance draws with the stateless Keras seed
      ``derive_seed(seed, k)``. A new instance with the same seed (or ``from_config``, or a
      model rebuilt in another run) replays the same sequence: reproducible across runs and
      processes, while two layers sharing the instance get different weights. The call count
      is not part of the config: a deserialized or cloned initializer starts again at call 0.
    * ``seed=None``: every draw uses Keras' global generator (``keras.random`` with
      ``seed=None``), so calls differ and ``keras.utils.set_random_seed(s)`` makes a whole
      program reproducible, as for any Keras random op.

    ``keras.random.SeedGenerator`` seeds are refused: the int seed already advances, and a
    SeedGenerator holds a backend variable that does not belong in a config.

Truncated normals
    Drawn by inverting the normal CDF on U(Phi(low), Phi(high)) and clipped to the bounds, so
    values never escape them, for any bounds in std units and on every backend (Keras' torch
    backend keeps an out-of-bounds candidate about 4e-6 of the time; Keras only cuts at 2 std).
    At +-2 std on the TensorFlow and JAX backends, whose own truncated normal is exact, that
    one is used (the inversion takes about 1.5x as long as TF's own), then the same clip.
    The inversion runs in float32 when both bounds are within 3 std (float32 resolves
    CDF values there far below any statistical test), in float64 otherwise (in float32 a far
    tail would be quantized and a cut at +-100 std would put the rare u = 0 on the bound); the
    result is clipped to the bounds as rounded to the output dtype.

Other laws
    Built-in specs draw natively with ``keras.random`` (no host round trip); elementwise laws
    draw directly in the native shape; orthogonal, eye, dirac and sparse are drawn on the
    logical view and rearranged with ``keras.ops``; a mixture picks per element among full
    draws of its components. A custom spec calls the user's NumPy ``fn(rng, shape, dtype)`` in
    logical layout with ``numpy.random.default_rng`` seeded from the call's derived seed (or,
    with ``seed=None``, from an integer drawn from Keras' global generator), then converts.
    Random specs need a floating dtype (float16, bfloat16, float32, float64); constant, eye and
    dirac also fill integer variables. Half-precision draws are made in float32 and cast.

Serialization
    ``get_config()`` is ``{"spec": spec.to_dict(), "seed": seed}``; ``from_config`` rebuilds an
    equal spec and never runs code (a custom spec is found by its registered name, so the
    process that loads must build ``mi.custom(fn, name=...)`` first). The class is registered
    as ``"multiinit>Initializer"``; a saved ``.keras`` model loads in any process that has
    imported ``multiinit.keras`` (e.g. ``from multiinit import keras``), which registers it.

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

import math
from typing import Any, Sequence

import numpy as np

from .errors import BackendUnavailable, RuleError, ShapeError, SpecError, UnknownBackend
from .fans import SPATIAL_IN_OUT, LogicalView
from .reference import check_shape
from .reference import sample as _reference_sample
from .registry import namespace
from .rules import Param, derive_seed, execute
from .spec import (
    CONSTRUCTORS,
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
)

try:
    import keras
    from keras import ops as _ops
except ImportError as e:  # the exact pip command is in the message
    raise BackendUnavailable.missing("keras", "Keras 3", "tensorflow", e) from e

if not str(getattr(keras, "__version__", "0")).startswith("3"):  # pragma: no cover - env guard
    raise BackendUnavailable.missing(
        "keras", "Keras 3", "tensorflow",
        ImportError(f"keras {getattr(keras, '__version__', '?')} is installed; multiinit needs Keras 3"),
    )

__all__ = ["LAYOUT", "MultiinitInitializer", "compile", "apply", "params_of", "calculate_gain", *CONSTRUCTORS]

#: Keras kernels are (*spatial, in, out).
LAYOUT = SPATIAL_IN_OUT

_FLOATS = ("float16", "bfloat16", "float32", "float64")
_SQRT2 = math.sqrt(2.0)
# Below this many std on both sides, float32 resolves the normal CDF well enough to invert it.
_FLOAT32_TRUNCATION_LIMIT = 3.0
# Backends whose keras.random.truncated_normal (cut at 2 std) never lets a value out: TF
# re-draws outside values, JAX inverts the CDF and clamps. Keras' torch backend keeps its first
# of 4 candidates when none is inside, so there (and elsewhere) the CDF inversion below is used.
_EXACT_TWO_SIGMA = ("tensorflow", "jax")


# --------------------------------------------------------------------------- drawing


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / _SQRT2)


def _work_dtype(dtype: str) -> str:
    """The dtype random draws are made in: float64 stays, everything else draws in float32."""
    return "float64" if dtype == "float64" else "float32"


def _cast(x: Any, dtype: str) -> Any:
    return x if keras.backend.standardize_dtype(x.dtype) == dtype else _ops.cast(x, dtype)


def _child(seed: int | None, index: int) -> int | None:
    """The seed of the ``index``-th draw inside one call (None stays None: the global RNG)."""
    return None if seed is None else derive_seed(seed, index)


def _truncated(shape: tuple[int, ...], mean: float, std: float, low: float, high: float,
               dtype: str, seed: int | None) -> Any:
    """N(mean, std**2) cut to [mean + low*std, mean + high*std]; never outside, any backend."""
    if (low, high) == (-2.0, 2.0) and keras.backend.backend() in _EXACT_TWO_SIGMA:
        # This backend's own two-sigma truncated normal is exact (rejection or clamped inversion).
        work = _work_dtype(dtype)
        y = _cast(keras.random.truncated_normal(shape, mean=mean, stddev=std, dtype=work, seed=seed), dtype)
        if mean == 0.0 and dtype == work:
            # The backend computes draw * std with |draw| <= 2; rounding is monotone and doubling
            # exact, so |y| <= 2 * std as this dtype rounds it: the bound itself. The clip (a
            # fifth of the cost on 4096x4096) is needed only for a mean, or a second rounding.
            return y
        return _ops.clip(y, mean + low * std, mean + high * std)
    flip = low > 0  # work in the lower tail, where the CDF keeps its relative precision
    a, b = (-high, -low) if flip else (low, high)
    work = "float64" if dtype == "float64" or max(abs(low), abs(high)) > _FLOAT32_TRUNCATION_LIMIT else "float32"
    u = keras.random.uniform(shape, minval=_phi(a), maxval=_phi(b), dtype=work, seed=seed)
    x = _SQRT2 * _ops.erfinv(2.0 * u - 1.0)
    if flip:
        x = -x
    y = _cast(mean + std * x, dtype)
    # One clip, to the bounds as the output dtype rounds them, catches everything: u on Phi(a)
    # = 0 (erfinv(-1) = -inf), an inverse that rounds past a bound, and the affine map above
    # rounding across it (e.g. 0.2133 + 0.7298 * 1.86 in float32).
    return _ops.clip(y, mean + low * std, mean + high * std)


def _elementwise(spec: Spec) -> bool:
    """True when every element is drawn independently (so the native shape can be drawn as is)."""
    if isinstance(spec, (Constant, Uniform, Normal, TruncatedNormal)):
        return True
    if isinstance(spec, Mixture):
        return all(_elementwise(s) for _, s in spec.components)
    return spec.as_variance_scaling() is not None


def _draw_elementwise(spec: Spec, shape: tuple[int, ...], fans: tuple[int, int] | None,
                      dtype: str, seed: int | None) -> Any:
    if isinstance(spec, Constant):
        return _ops.full(shape, spec.value, dtype=dtype)
    work = _work_dtype(dtype)
    if isinstance(spec, Uniform):
        x = keras.random.uniform(shape, minval=spec.low, maxval=spec.high, dtype=work, seed=seed)
    elif isinstance(spec, Normal):
        x = keras.random.normal(shape, mean=spec.mean, stddev=spec.std, dtype=work, seed=seed)
    elif isinstance(spec, TruncatedNormal):
        return _truncated(shape, spec.mean, spec.std, spec.low, spec.high, dtype, seed)
    else:
        distribution, number = spec.as_variance_scaling().law(*fans)
        if distribution == "uniform":
            x = keras.random.uniform(shape, minval=-number, maxval=number, dtype=work, seed=seed)
        elif distribution == "untruncated_normal":
            x = keras.random.normal(shape, mean=0.0, stddev=number, dtype=work, seed=seed)
        else:
            return _truncated(shape, 0.0, number, -2.0, 2.0, dtype, seed)
    return _cast(x, dtype)


def _orthogonal(spec: Orthogonal, shape: tuple[int, ...], dtype: str, seed: int | None) -> Any:
    # Logical (rows=out, cols=in*k), as torch flattens; QR of the tall side, with the sign fix
    # that makes the result Haar-distributed.
    rows = shape[0]
    cols = math.prod(shape) // rows
    work = _work_dtype(dtype)
    a = keras.random.normal((max(rows, cols), min(rows, cols)), dtype=work, seed=seed)
    q, r = _ops.qr(a)
    q = q * _ops.sign(_ops.diagonal(r))
    if rows < cols:
        q = _ops.transpose(q)
    return _cast(spec.gain * _ops.reshape(q, shape), dtype)


def _dirac(spec: Dirac, shape: tuple[int, ...], dtype: str) -> Any:
    out_channels, in_channels, *kernel = shape
    per_group = out_channels // spec.groups
    # Channel part: row g*per_group + d has its 1 in column d (d < min(per_group, in)).
    channels = _ops.tile(_ops.eye(per_group, in_channels, dtype=dtype), (spec.groups, 1))
    centre = None
    for k in kernel:  # the 1 sits at index k // 2 of every spatial axis, as in torch
        hot = _ops.one_hot(k // 2, k, dtype=dtype)
        centre = hot if centre is None else _ops.reshape(centre, (-1, 1)) * _ops.reshape(hot, (1, -1))
    centre = _ops.reshape(centre, (1, 1, *kernel))
    return _ops.reshape(channels, (out_channels, in_channels) + (1,) * len(kernel)) * centre


def _sparse(spec: Sparse, shape: tuple[int, ...], dtype: str, seed: int | None) -> Any:
    rows, cols = shape
    work = _work_dtype(dtype)
    values = keras.random.normal(shape, stddev=spec.std, dtype=work, seed=_child(seed, 0))
    zeros_per_column = int(math.ceil(spec.sparsity * rows))
    if zeros_per_column:
        # A uniformly random set of exactly k rows per column: the top k of iid keys (top_k
        # returns k distinct indices even on ties), scattered into a mask.
        keys = keras.random.uniform((cols, rows), dtype="float32", seed=_child(seed, 1))
        picked = _ops.top_k(keys, zeros_per_column, sorted=False)[1]
        column = _ops.broadcast_to(_ops.arange(cols, dtype=picked.dtype)[:, None], (cols, zeros_per_column))
        pairs = _ops.reshape(_ops.stack([picked, column], axis=-1), (-1, 2))
        hits = _ops.scatter(pairs, _ops.ones((cols * zeros_per_column,), dtype=work), shape)
        values = _ops.where(hits > 0, _ops.zeros_like(values), values)
    return _cast(values, dtype)


def _mixture(spec: Mixture, view: LogicalView, fans: tuple[int, int] | None, dtype: str,
             seed: int | None) -> Any:
    live = [(w, s, i) for i, (w, s) in enumerate(spec.components) if w > 0]
    total = math.fsum(w for w, _, _ in live)
    # Per element, component i wins when u falls in its slice of [0, 1); later wheres go first
    # so that the smallest such i wins, as a categorical draw does.
    u = keras.random.uniform(view.native_shape, dtype="float32", seed=_child(seed, 0))
    weight, component, index = live[-1]
    out = _draw(component, view, fans, dtype, _child(seed, index + 1))
    edges = np.cumsum([w / total for w, _, _ in live])
    for edge, (weight, component, index) in reversed(list(zip(edges[:-1], live[:-1]))):
        draw = _draw(component, view, fans, dtype, _child(seed, index + 1))
        out = _ops.where(u < float(edge), draw, out)
    return out


def _custom(spec: Custom, view: LogicalView, fans: tuple[int, int] | None, dtype: str,
            seed: int | None) -> Any:
    if seed is None:
        # Keras' global generator picks the NumPy seed, so set_random_seed reproduces it.
        drawn = keras.random.randint((), 0, 2**31 - 1, dtype="int32", seed=None)
        seed = int(_ops.convert_to_numpy(drawn))
    host = dtype if dtype in ("float16", "float32", "float64") else "float32"
    logical = _reference_sample(spec, view.logical_shape, seed=np.random.default_rng(seed),
                                dtype=host, fans=fans)
    return _ops.convert_to_tensor(view.to_native(logical), dtype=dtype)


def _to_native(view: LogicalView, logical: Any) -> Any:
    if view.is_plain and view.axes == tuple(range(len(view.axes))):
        return logical
    permuted = tuple(view.pre_shape[a] for a in view.axes)
    inverse = [0] * len(view.axes)
    for position, axis in enumerate(view.axes):
        inverse[axis] = position
    x = _ops.transpose(_ops.reshape(logical, permuted), inverse)
    return _ops.reshape(x, view.native_shape)


def _draw(spec: Spec, view: LogicalView, fans: tuple[int, int] | None, dtype: str,
          seed: int | None) -> Any:
    """A native-layout tensor of ``spec`` for ``view`` (fans default to the view's)."""
    if spec.uses_fans and fans is None:
        fans = view.fans
    if math.prod(view.native_shape) == 0:
        return _ops.zeros(view.native_shape, dtype=dtype)
    if isinstance(spec, Mixture):
        return _mixture(spec, view, fans, dtype, seed)
    if _elementwise(spec):
        return _draw_elementwise(spec, view.native_shape, fans, dtype, seed)
    if isinstance(spec, Custom):
        return _custom(spec, view, fans, dtype, seed)
    if isinstance(spec, Eye) and view.is_plain:
        # A 2-D plain view is the identity or the transpose, and eye(a, b).T is eye(b, a).
        return _ops.eye(*view.native_shape, dtype=dtype)
    shape = view.logical_shape
    if isinstance(spec, Orthogonal):
        logical = _orthogonal(spec, shape, dtype, seed)
    elif isinstance(spec, Eye):
        logical = _ops.eye(shape[0], shape[1], dtype=dtype)
    elif isinstance(spec, Dirac):
        logical = _dirac(spec, shape, dtype)
    elif isinstance(spec, Sparse):
        logical = _sparse(spec, shape, dtype, seed)
    else:  # pragma: no cover - every Spec kind is handled above
        raise SpecError(f"spec={spec!r} is not allowed; it is not a multiinit spec")
    return _to_native(view, logical)


def _resolve_dtype(spec: Spec, dtype: Any, where: str) -> str:
    resolved = keras.backend.standardize_dtype(keras.backend.floatx() if dtype is None else dtype)
    if resolved not in _FLOATS and (spec.random or isinstance(spec, Custom)):
        raise SpecError(
            f"{spec!r} cannot fill {where}: dtype={resolved!r} is not allowed; a random spec "
            f"draws one of {', '.join(_FLOATS)}"
        )
    return resolved


def _shape(shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = (shape,)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise ShapeError(f"shape={shape!r} is not allowed; shape must be a sequence of integers >= 0")
    return tuple(int(d) for d in dims)


# --------------------------------------------------------------------------- the initializer


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError(
            f"seed={seed!r} is not allowed; seed must be None (Keras' global generator) or an "
            "integer >= 0 (a keras.random.SeedGenerator is not needed: an int seed advances per call)"
        )
    return int(seed)


@keras.saving.register_keras_serializable(package="multiinit", name="Initializer")
class MultiinitInitializer(keras.initializers.Initializer):
    """A multiinit spec as a Keras initializer: ``initializer(shape, dtype=None) -> tensor``.

    Fans come from the logical ``(out, in, *spatial)`` view of ``shape`` (Keras' layout is
    ``(*spatial, in, out)``). With ``seed=<int>`` call k draws from ``derive_seed(seed, k)``:
    reproducible, yet two layers sharing the instance differ; with ``seed=None`` it draws
    from Keras' global generator. ``get_config``/``from_config`` round-trip through
    ``spec.to_dict()``.

    >>> import multiinit as mi
    >>> init = mi.compile(mi.uniform(5, 10), "keras", seed=0)
    >>> tuple(init((3, 2)).shape)
    (3, 2)
    >>> MultiinitInitializer.from_config(init.get_config()).spec
    uniform(low=5.0, high=10.0)
    """

    def __init__(self, spec: Spec | dict, seed: int | None = None) -> None:
        if isinstance(spec, dict):
            spec = from_dict(spec)
        if not isinstance(spec, Spec):
            raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec or its to_dict()")
        self.spec = spec
        self.seed = _check_seed(seed)
        self._calls = 0

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        shape = _shape(shape)
        resolved = _resolve_dtype(self.spec, dtype, f"a tensor of shape {shape}")
        view = LogicalView.of(shape, SPATIAL_IN_OUT)
        try:
            check_shape(self.spec, view.logical_shape)
        except ShapeError as e:
            if self.spec.uses_fans and len(shape) < 2:
                raise ShapeError(
                    f"{e} (Keras would invent fans {shape * 2 or (1, 1)} here; to give a bias its "
                    "layer's kernel fans, initialize the built model with multiinit.apply)"
                ) from None
            raise
        seed = None if self.seed is None else derive_seed(self.seed, self._calls)
        self._calls += 1
        return _draw(self.spec, view, None, resolved, seed)

    def get_config(self) -> dict[str, Any]:
        """``{"spec": spec.to_dict(), "seed": seed}``, JSON-ready."""
        return {"spec": self.spec.to_dict(), "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MultiinitInitializer":
        """The initializer a ``get_config()`` describes (its call count starts again at 0)."""
        if not isinstance(config, dict) or "spec" not in config:
            raise SpecError(f"config={config!r} is not allowed; it must be a dict with a 'spec' key")
        unknown = sorted(set(config) - {"spec", "seed"})
        if unknown:
            raise SpecError(f"config keys {unknown} are not allowed; the keys are 'spec' and 'seed'")
        return cls(from_dict(config["spec"]), seed=config.get("seed"))

    def __repr__(self) -> str:
        return f"MultiinitInitializer({self.spec!r}, seed={self.seed!r})"


def compile(spec: Spec, seed: int | None = None) -> MultiinitInitializer:
    """``spec`` as a Keras initializer (see ``MultiinitInitializer`` for seeds and fans).

    >>> import multiinit as mi
    >>> import keras
    >>> layer = keras.layers.Dense(4, kernel_initializer=mi.compile(mi.ones(), "keras"))
    >>> layer.build((None, 3))
    >>> float(layer.kernel.numpy().sum())
    12.0
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec such as mi.normal()")
    return MultiinitInitializer(spec, seed=seed)


# --------------------------------------------------------------------------- model level

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


globals().update(namespace("keras", compile, seeded=True))
