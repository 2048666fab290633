"""The PyTorch adapter: specs become in-place ``torch.nn.init``-style calls, rules fill modules.

Three ways in, one law each::

    import multiinit as mi
    fill_ = mi.compile(mi.xavier_uniform(gain=2.0), "torch")   # fn(tensor, generator=None)
    fill_(net[0].weight, generator=torch.Generator().manual_seed(0))

    from multiinit import torch as init                       # a drop-in for torch.nn.init
    init.kaiming_uniform_(net[0].weight, a=math.sqrt(5))

    mi.apply(net, {nn.Linear: mi.normal(std=0.01), "bias": mi.zeros()}, seed=0)

Decisions (each also stated where it is implemented):

* **torch's own function where its law is the spec's.** ``constant``, ``uniform``, ``normal``,
  ``xavier_*``, ``kaiming_*``, ``orthogonal`` (float32/float64), ``eye`` and ``dirac`` call
  ``torch.nn.init``: same generator stream, so with the same generator seed they give torch's
  numbers exactly. The rest are torch ops on the tensor's device: Keras/JAX's truncated,
  variance-corrected ``he/glorot/lecun_normal`` and ``variance_scaling``, ``truncated_normal``
  (bounds in std units), ``sparse`` (torch's ``sparse_`` ignores the generator for its row
  shuffle), ``mixture``.
* **Truncated normals** never leave their bounds, in any dtype: the bounds are first rounded
  *inward* to the tensor's dtype. When at least half the mass lies inside (every default and
  every variance-scaling form), normals are drawn and only those outside redrawn until none is
  (exact; about 1.1 draws in all, where torch 2.13's own rejection ``trunc_normal_`` redraws
  the whole tensor each round, about 6 draws at +-2 std). Narrower or off-centre bounds invert
  the CDF as the NumPy reference does: a float64 uniform on ``[Phi(low), Phi(high)]`` in the
  lower tail, where the CDF keeps its precision, ``ndtri``, then a clamp.
* **dtypes.** Random specs fill float16, bfloat16, float32 and float64 tensors; deterministic
  ones (constant, eye, dirac) any dtype torch can fill, as torch does. float16/bfloat16
  orthogonal is computed in float32 (torch's QR has no half kernels) and rounded.
* **Devices.** Built-in specs draw on the tensor's device with the given generator (whose
  device must be the tensor's, as in torch) and never copy data to the host. ``custom`` is
  the exception by nature: its NumPy function runs on the host, seeded from two 62-bit words
  drawn from the generator, and the result is copied to the tensor.
* **Meta tensors are left for later, like torch's own init functions:** the shape is still
  checked (a bad spec raises ``ShapeError`` at once), nothing is drawn, the tensor is
  returned. Fill it after ``module.to_empty(device=...)``.
* **Uninitialized lazy parameters are an error** (``ShapeError``, a ValueError like torch's
  own): their shape is unknown, so no law can be checked or drawn; run one forward pass
  first. ``apply`` raises only when a rule would fill one.
* **Errors.** A spec that cannot fill the tensor raises ``ShapeError`` (a ``ValueError``,
  the type torch raises) with torch's wording. Bad parameters raise ``SpecError`` (also a
  ``ValueError``) when the spec is built, including some torch accepts or reports later as
  ``RuntimeError``: ``std=0``, ``gain <= 0``, ``a >= b``, non-finite values.
* **Zero-element tensors** are a no-op for every spec (torch warns for kaiming and divides
  by zero for xavier on ``(0, 0)``), after the shape check.
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
* **Deprecated names.** ``torch.nn.init.normal`` (no underscore, deprecated since torch 0.4)
  filled a tensor; here ``normal(...)`` is the contract's constructor and returns a filler.
  Passing a tensor to it raises a ``SpecError`` that says to use ``normal_``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

try:
    import torch
    from torch import nn
    from torch.nn import init as _init
except ImportError as e:  # the exact pip command is in the message
    from .errors import BackendUnavailable

    raise BackendUnavailable.missing("torch", "PyTorch", "torch", e) from e

import numpy as np

from . import rules as _rules
from .errors import ShapeError, SpecError
from .fans import OUT_IN, LogicalView
from .reference import check_shape
from .reference import sample as _reference_sample
from .registry import namespace
from .spec import (
    Constant,
    Custom,
    Dirac,
    Eye,
    KaimingNormal,
    KaimingUniform,
    Mixture,
    Normal,
    Orthogonal,
    Sparse,
    Spec,
    TruncatedNormal,
    Uniform,
    XavierNormal,
    XavierUniform,
)
from . import spec as _spec

__all__ = [
    "LAYOUT",
    "TorchInitializer",
    "compile",
    "apply",
    "params_of",
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
    *_spec.CONSTRUCTORS,
]

#: torch stores kernels as (out, in/groups, *spatial): the logical layout itself.
LAYOUT = OUT_IN

#: The dtypes random specs fill.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_Filler = Callable[["torch.Tensor", "torch.Generator | None", "tuple[int, int] | None"], None]


# --------------------------------------------------------------------------- the samplers
# Each _fill_* writes into ``t`` in place (the caller holds no_grad and has checked shape,
# dtype, meta and emptiness); ``fans`` overrides the tensor's own fans (a bias at model level).


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@functools.lru_cache(maxsize=256)
def _inward(a: float, b: float, dtype: torch.dtype) -> tuple[float, float]:
    """The smallest and largest values of ``dtype`` inside ``[a, b]`` (nearest ones when the
    interval holds none), so that rounding a clamped float64 value to ``dtype`` never crosses
    a bound."""
    if dtype == torch.float64:
        return a, b
    lo = torch.tensor(a, dtype=torch.float64).to(dtype)
    hi = torch.tensor(b, dtype=torch.float64).to(dtype)
    if float(lo) < a:
        lo = torch.nextafter(lo, torch.tensor(math.inf, dtype=dtype))
    if float(hi) > b:
        hi = torch.nextafter(hi, torch.tensor(-math.inf, dtype=dtype))
    if float(lo) > float(hi):  # the interval is narrower than one step of dtype
        return float(torch.tensor(a, dtype=torch.float64).to(dtype)), float(
            torch.tensor(b, dtype=torch.float64).to(dtype)
        )
    return float(lo), float(hi)


def _fill_truncated(t: torch.Tensor, g: torch.Generator | None, mean: float, std: float,
                    a: float, b: float) -> None:
    """N(mean, std**2) restricted to the absolute bounds [a, b]; no value outside them, in
    ``t``'s dtype."""
    low, high = (a - mean) / std, (b - mean) / std
    lo, hi = _inward(a, b, t.dtype)
    if _phi(high) - _phi(low) >= 0.5 and _fill_by_rejection(t, g, mean, std, lo, hi):
        return
    _fill_by_inverse_cdf(t, g, mean, std, low, high, lo, hi)


#: Rounds of redrawing before the inverse CDF takes over (only a bounds interval narrower than
#: the dtype's grid near the mean gets there).
_REJECTION_ROUNDS = 64


def _fill_by_rejection(t: torch.Tensor, g: torch.Generator | None, mean: float, std: float,
                       lo: float, hi: float) -> bool:
    """Draw normals and redraw only the ones outside [lo, hi] until none is: exact, and with
    at least half the mass inside, about 1.1 normal draws in all (torch 2.13's trunc_normal_
    redraws the whole tensor each round). False if values are still outside after
    ``_REJECTION_ROUNDS`` rounds (the caller then draws the tensor by the inverse CDF)."""
    work = t if t.is_contiguous() else torch.empty(t.shape, dtype=t.dtype, device=t.device)
    flat = work.view(-1)
    flat.normal_(mean, std, generator=g)
    # Comparisons happen in t's dtype, where lo and hi are exact (see _inward). The extremes
    # alone settle the common wide-bounds case at a fraction of the cost of a mask.
    smallest, largest = torch.aminmax(flat)
    if float(smallest) >= lo and float(largest) <= hi:
        outside = flat.new_empty(0, dtype=torch.long)
    else:
        outside = ((flat < lo) | (flat > hi)).nonzero().squeeze(1)
    for _ in range(_REJECTION_ROUNDS):
        if not outside.numel():
            break
        redraw = torch.empty(outside.numel(), dtype=t.dtype, device=t.device).normal_(mean, std, generator=g)
        flat.index_copy_(0, outside, redraw)
        outside = outside[(redraw < lo) | (redraw > hi)]
    else:
        if outside.numel():
            return False
    if work is not t:
        t.copy_(work)
    return True


def _fill_by_inverse_cdf(t: torch.Tensor, g: torch.Generator | None, mean: float, std: float,
                         low: float, high: float, lo: float, hi: float) -> None:
    """The reference's method, for narrow or off-centre bounds where rejection would be slow:
    a float64 uniform on [Phi(low), Phi(high)], ``ndtri``, then a clamp to [lo, hi]."""
    # The lower tail keeps the CDF's relative precision: an interval above the mean is drawn
    # mirrored and flipped back.
    flip = low > 0
    if flip:
        low, high = -high, -low
    work = t if t.dtype == torch.float64 else torch.empty(t.shape, dtype=torch.float64, device=t.device)
    work.uniform_(_phi(low), _phi(high), generator=g)
    torch.special.ndtri(work, out=work)
    if flip:
        work.neg_()
    work.mul_(std).add_(mean)
    work.clamp_(lo, hi)
    if work is not t:
        t.copy_(work)


def _fill_scaled(spec: Spec, t: torch.Tensor, g: torch.Generator | None, fans: tuple[int, int]) -> None:
    distribution, number = spec.as_variance_scaling().law(*fans)
    if distribution == "uniform":
        t.uniform_(-number, number, generator=g)
    elif distribution == "untruncated_normal":
        t.normal_(0.0, number, generator=g)
    else:
        _fill_truncated(t, g, 0.0, number, -2.0 * number, 2.0 * number)


def _fans(t: torch.Tensor, fans: tuple[int, int] | None) -> tuple[int, int]:
    if fans is not None:
        return fans
    # torch's own rule on the stored shape: dim 1 times the receptive field is fan_in.
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def _fill_orthogonal(gain: float, t: torch.Tensor, g: torch.Generator | None) -> None:
    if t.dtype in (torch.float32, torch.float64) and t.is_contiguous():
        _init.orthogonal_(t, gain, generator=g)
        return
    # torch's QR has no float16/bfloat16 kernels, and orthogonal_ needs a contiguous tensor.
    work_dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    work = torch.empty(t.shape, dtype=work_dtype, device=t.device)
    _init.orthogonal_(work, gain, generator=g)
    t.copy_(work)


def _random_rows(rows: int, cols: int, k: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """A (rows, cols) bool mask with a uniformly random set of exactly ``k`` rows per column,
    drawn with ``g`` (torch's sparse_ uses torch.randperm without its generator)."""
    m = min(k, rows - k)
    complement = m < k  # choosing the rows to keep is cheaper than choosing the zeros
    if cols <= m:
        mask = torch.zeros(rows, cols, dtype=torch.bool, device=device)
        for c in range(cols):
            mask[torch.randperm(rows, generator=g, device=device)[:m], c] = True
    else:
        # Floyd's algorithm, every column at once: after step j the set is a uniform
        # (j - rows + m + 1)-subset of range(j + 1).
        # (cols, rows) flattened: one index per column, which index_select and index_fill_
        # handle much faster than two-tensor advanced indexing.
        taken = torch.zeros(cols * rows, dtype=torch.bool, device=device)
        starts = torch.arange(cols, device=device) * rows
        for j in range(rows - m, rows):
            pick = torch.randint(0, j + 1, (cols,), generator=g, device=device).add_(starts)
            pick = torch.where(taken.index_select(0, pick), starts + j, pick)
            taken.index_fill_(0, pick, True)
        mask = taken.view(cols, rows).t()
    return ~mask if complement else mask


def _fill_sparse(spec: Sparse, t: torch.Tensor, g: torch.Generator | None) -> None:
    rows, cols = t.shape
    t.normal_(0.0, spec.std, generator=g)
    k = int(math.ceil(spec.sparsity * rows))
    if k:
        t.masked_fill_(_random_rows(rows, cols, k, g, t.device), 0.0)


def _fill_mixture(live: list[tuple[float, Spec, _Filler]], t: torch.Tensor, g: torch.Generator | None,
                  fans: tuple[int, int] | None) -> None:
    """``live`` holds the components of positive weight, each with its filler."""
    if len(live) == 1:
        live[0][2](t, g, fans)
        return
    # One categorical choice per element from a float64 uniform (the weights are exact to
    # 1e-16), then every component drawn for the whole tensor, as the reference does. Writing
    # the components in order wherever u >= the cumulative weight before each leaves every
    # element with the component whose interval holds its u, one comparison per component.
    starts = np.cumsum([w for w, _, _ in live])[:-1]
    u = torch.rand(t.shape, dtype=torch.float64, device=t.device, generator=g)
    live[0][2](t, g, fans)
    for start, (_, component, fill) in zip(starts, live[1:]):
        mask = u >= float(start)
        if isinstance(component, Constant):
            t.masked_fill_(mask, component.value)
        else:
            draw = torch.empty_like(t)
            fill(draw, g, fans)
            torch.where(mask, draw, t, out=t)


_NUMPY_DTYPE = {torch.float16: "float16", torch.float32: "float32", torch.float64: "float64"}


def _fill_custom(spec: Custom, t: torch.Tensor, g: torch.Generator | None,
                 fans: tuple[int, int] | None) -> None:
    # The user's NumPy function runs on the host; its rng is seeded from the torch generator
    # (or torch's global RNG), so torch.manual_seed / generator seeds make it reproducible.
    device = g.device if g is not None else torch.device("cpu")
    words = torch.randint(0, 2**62, (2,), generator=g, device=device).tolist()
    rng = np.random.default_rng(words)
    values = _reference_sample(spec, tuple(t.shape), seed=rng,
                               dtype=_NUMPY_DTYPE.get(t.dtype, "float32"), fans=fans)
    t.copy_(torch.from_numpy(np.ascontiguousarray(values)))


def _filler(spec: Spec) -> _Filler:
    """``fill(t, generator, fans)`` for ``spec``, decided once: which torch call or sampler, with
    which numbers (no checks: the caller has made them)."""
    if isinstance(spec, Constant):
        value = spec.value
        return lambda t, g, fans: _init.constant_(t, value)
    if isinstance(spec, Uniform):
        low, high = spec.low, spec.high
        return lambda t, g, fans: _init.uniform_(t, low, high, generator=g)
    if isinstance(spec, Normal):
        mean, std = spec.mean, spec.std
        return lambda t, g, fans: _init.normal_(t, mean, std, generator=g)
    if isinstance(spec, TruncatedNormal):
        mean, std, (lo, hi) = spec.mean, spec.std, spec.bounds
        return lambda t, g, fans: _fill_truncated(t, g, mean, std, lo, hi)
    scaled = spec.as_variance_scaling()
    if scaled is not None:
        return _scaled_filler(spec, scaled)
    if isinstance(spec, Orthogonal):
        gain = spec.gain
        return lambda t, g, fans: _fill_orthogonal(gain, t, g)
    if isinstance(spec, Eye):
        return lambda t, g, fans: _init.eye_(t)
    if isinstance(spec, Dirac):
        groups = spec.groups
        return lambda t, g, fans: _init.dirac_(t, groups)
    if isinstance(spec, Sparse):
        return lambda t, g, fans: _fill_sparse(spec, t, g)
    if isinstance(spec, Mixture):
        live = [(w, s, _filler(s)) for w, s in spec.components if w > 0]
        return lambda t, g, fans: _fill_mixture(live, t, g, fans)
    if isinstance(spec, Custom):
        return lambda t, g, fans: _fill_custom(spec, t, g, fans)
    raise SpecError(f"spec={spec!r} is not allowed; it is not a multiinit spec")  # pragma: no cover


def _scaled_filler(spec: Spec, scaled: Any) -> _Filler:
    # torch's own function when the fans are the tensor's own (a compiled call, a weight);
    # the variance-scaling law with the given fans otherwise (a bias at model level).
    native: Callable[[torch.Tensor, torch.Generator | None], Any] | None = None
    if isinstance(spec, XavierUniform):
        native = functools.partial(_xavier, _init.xavier_uniform_, spec.gain)
    elif isinstance(spec, XavierNormal):
        native = functools.partial(_xavier, _init.xavier_normal_, spec.gain)
    elif isinstance(spec, KaimingUniform):  # KaimingNormal is a subclass
        function = _init.kaiming_normal_ if isinstance(spec, KaimingNormal) else _init.kaiming_uniform_
        native = functools.partial(_kaiming, function, spec.a, spec.mode, spec.nonlinearity)

    def fill(t: torch.Tensor, g: torch.Generator | None, fans: tuple[int, int] | None) -> None:
        if fans is None and native is not None:
            native(t, g)
        else:
            _fill_scaled(scaled, t, g, _fans(t, fans))

    return fill


def _xavier(function: Callable[..., Any], gain: float, t: torch.Tensor, g: torch.Generator | None) -> None:
    function(t, gain, generator=g)


def _kaiming(function: Callable[..., Any], a: float, mode: str, nonlinearity: str,
             t: torch.Tensor, g: torch.Generator | None) -> None:
    function(t, a, mode, nonlinearity, generator=g)


def _fill(spec: Spec, t: torch.Tensor, g: torch.Generator | None, fans: tuple[int, int] | None) -> None:
    """Fill ``t`` in place with ``spec``'s law (no checks: the caller has made them)."""
    _filler(spec)(t, g, fans)


# --------------------------------------------------------------------------- one tensor


def _where(path: str | None) -> str:
    return repr(path) if path else "a tensor"


def _is_uninitialized(tensor: Any) -> bool:
    return isinstance(tensor, nn.parameter.UninitializedTensorMixin)


def _prepare(spec: Spec, tensor: Any, generator: Any, fans: tuple[int, int] | None,
             path: str | None = None) -> bool:
    """Check that ``spec`` can fill ``tensor``; True when there is something to draw."""
    if not isinstance(tensor, torch.Tensor):
        raise SpecError(
            f"{spec!r}: tensor={tensor!r} is not allowed; tensor must be a torch.Tensor "
            "(use mi.apply for a whole nn.Module)"
        )
    if _is_uninitialized(tensor):
        raise ShapeError(
            f"{spec!r} cannot fill {_where(path)}: it is an uninitialized lazy parameter, so "
            "its shape is unknown; run one forward pass (e.g. net(x)) to materialize it first"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise SpecError(
            f"{spec!r}: generator={generator!r} is not allowed; generator must be None or a "
            "torch.Generator on the tensor's device"
        )
    check_shape(spec, tuple(tensor.shape), fans, path)
    if spec.random and tensor.dtype not in FLOAT_DTYPES:
        raise ShapeError(
            f"{spec!r} cannot fill {_where(path)} of dtype {tensor.dtype}: a random spec fills "
            "torch.float16, torch.bfloat16, torch.float32 or torch.float64 tensors"
        )
    # A meta tensor has no storage: the shape is checked, the values are left for later.
    return not tensor.is_meta and tensor.numel() > 0


class TorchInitializer:
    """A spec compiled for torch: ``fill_(tensor, generator=None) -> tensor``, in place under
    ``no_grad``, like the functions of ``torch.nn.init``. Equal when the specs are equal.

    >>> import torch, multiinit as mi
    >>> fill_ = mi.compile(mi.constant(42), "torch")
    >>> fill_
    multiinit.torch.compile(constant(value=42.0))
    >>> fill_(torch.empty(2, 3)).tolist()
    [[42.0, 42.0, 42.0], [42.0, 42.0, 42.0]]
    """

    __slots__ = ("spec", "_fill", "_checked")

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._fill = _filler(spec)
        #: (shape, dtype) pairs already checked: a repeated call costs a set lookup.
        self._checked: set[tuple[tuple[int, ...], torch.dtype]] = set()

    def __call__(self, tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Fill ``tensor`` in place with the spec's law and return it; fans come from its own
        (torch-layout) shape; ``generator`` makes the draw reproducible."""
        if type(tensor) in (torch.Tensor, nn.Parameter) and (generator is None or type(generator) is torch.Generator):
            key = (tuple(tensor.shape), tensor.dtype)
            if key not in self._checked:
                _prepare(self.spec, tensor, generator, None)
                if len(self._checked) < 64:
                    self._checked.add(key)
            if tensor.is_meta or not tensor.numel():
                return tensor
        elif not _prepare(self.spec, tensor, generator, None):
            return tensor
        with torch.no_grad():
            self._fill(tensor, generator, None)
        return tensor

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TorchInitializer) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(("torch", self.spec))

    def __repr__(self) -> str:
        return f"multiinit.torch.compile({self.spec!r})"


def compile(spec: Spec, **options: Any) -> TorchInitializer:
    """``spec`` as ``fill_(tensor, generator=None) -> tensor`` (see ``TorchInitializer``).

    No options: seed a call with ``generator=``.

    >>> import torch, multiinit as mi
    >>> w = mi.compile(mi.xavier_uniform(), "torch")(torch.empty(300, 400))
    >>> bool(w.abs().max() <= (6 / 700) ** 0.5)
    True
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec such as mi.normal()")
    if options:
        raise SpecError(
            f"options={options!r} are not allowed; the torch backend takes no compile options "
            "(pass generator= when calling the compiled initializer)"
        )
    return TorchInitializer(spec)


# --------------------------------------------------------------------------- the namespace

globals().update(namespace("torch", compile))

# torch.nn.init's deprecated aliases (uniform, normal, ...) took a tensor; here those names are
# the contract's constructors. A tensor passed to one gets a pointer to the right function.
_DEPRECATED_TORCH = ("uniform", "normal", "constant", "eye", "dirac", "xavier_uniform",
                     "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse")


def _refuse_tensors(name: str, constructor: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(constructor)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, torch.Tensor) for a in (*args, *kwargs.values())):
            raise SpecError(
                f"multiinit.torch.{name}(...) builds an initializer and takes no tensor; to fill a "
                f"tensor in place as torch.nn.init.{name} did, call {name}_(tensor, ...) or "
                f"{name}(...)(tensor)"
            )
        return constructor(*args, **kwargs)

    return checked


for _name in _DEPRECATED_TORCH:
    globals()[_name] = _refuse_tensors(_name, globals()[_name])
del _name


# --------------------------------------------------------------------------- torch.nn.init drop-ins
# Same names, signatures, laws and error types as torch.nn.init (torch 2.13). Each builds the
# spec (validating its parameters) and fills through the compiled form.


def _run(spec: Spec, tensor: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return TorchInitializer(spec)(tensor, generator)


def uniform_(tensor: torch.Tensor, a: float = 0.0, b: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.uniform_: U[a, b).

    >>> import torch
    >>> bool((uniform_(torch.empty(100), -1, 1) < 1).all())
    True
    """
    return _run(_spec.uniform(a, b), tensor, generator)


def normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.normal_: N(mean, std**2).

    >>> import torch
    >>> normal_(torch.empty(3, 5), std=0.01).shape
    torch.Size([3, 5])
    """
    return _run(_spec.normal(mean, std), tensor, generator)


def trunc_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.trunc_normal_: N(mean, std**2) restricted to the *absolute* bounds [a, b]
    (no value ever outside them). ``truncated_normal`` takes bounds in std units instead.

    >>> import torch
    >>> w = trunc_normal_(torch.empty(1000), std=1.0, a=-0.5, b=0.5)
    >>> bool(w.min() >= -0.5 and w.max() <= 0.5)
    True
    """
    spec = _spec.trunc_normal(mean, std, a, b)  # validates mean, std, a < b
    if _prepare(spec, tensor, generator, None):
        with torch.no_grad():
            # The given bounds themselves, not mean + low*std recomputed (one rounding less).
            _fill_truncated(tensor, generator, float(mean), float(std), float(a), float(b))
    return tensor


def constant_(tensor: torch.Tensor, val: float) -> torch.Tensor:
    """torch.nn.init.constant_: every element ``val``.

    >>> import torch
    >>> constant_(torch.empty(2, dtype=torch.float64), 0.3).tolist()
    [0.3, 0.3]
    """
    return _run(_spec.constant(val), tensor, None)


def ones_(tensor: torch.Tensor) -> torch.Tensor:
    """torch.nn.init.ones_.

    >>> import torch
    >>> ones_(torch.empty(2)).tolist()
    [1.0, 1.0]
    """
    return _run(_spec.ones(), tensor, None)


def zeros_(tensor: torch.Tensor) -> torch.Tensor:
    """torch.nn.init.zeros_.

    >>> import torch
    >>> zeros_(torch.empty(2)).tolist()
    [0.0, 0.0]
    """
    return _run(_spec.zeros(), tensor, None)


def eye_(tensor: torch.Tensor) -> torch.Tensor:
    """torch.nn.init.eye_: the identity on a 2-D tensor (``ShapeError``, a ValueError, otherwise).

    >>> import torch
    >>> eye_(torch.empty(2, 3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    return _run(_spec.eye(), tensor, None)


def dirac_(tensor: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """torch.nn.init.dirac_: identity-preserving 3-, 4- or 5-D conv kernel, 1 at index k//2.

    >>> import torch
    >>> dirac_(torch.empty(2, 2, 3))[0].tolist()
    [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    return _run(_spec.dirac(groups), tensor, None)


def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.xavier_uniform_: U(+-gain*sqrt(6/(fan_in+fan_out))).

    >>> import torch
    >>> bool(xavier_uniform_(torch.empty(300, 400)).abs().max() <= (6 / 700) ** 0.5)
    True
    """
    return _run(_spec.xavier_uniform(gain), tensor, generator)


def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.xavier_normal_: N(0, 2*gain**2/(fan_in+fan_out)), untruncated.

    >>> import torch
    >>> xavier_normal_(torch.empty(3, 5)).shape
    torch.Size([3, 5])
    """
    return _run(_spec.xavier_normal(gain), tensor, generator)


def kaiming_uniform_(tensor: torch.Tensor, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.kaiming_uniform_: U(+-gain*sqrt(3/fan)); ``mode`` is read case-blind, as
    torch does.

    >>> import math, torch
    >>> w = kaiming_uniform_(torch.empty(8, 9), a=math.sqrt(5))  # torch's Linear default
    >>> bool(w.abs().max() <= 1 / 3)
    True
    """
    mode = mode.lower() if isinstance(mode, str) else mode
    return _run(_spec.kaiming_uniform(a, mode, nonlinearity), tensor, generator)


def kaiming_normal_(tensor: torch.Tensor, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.kaiming_normal_: N(0, gain**2/fan), untruncated.

    >>> import torch
    >>> kaiming_normal_(torch.empty(3, 5), mode="fan_out", nonlinearity="relu").shape
    torch.Size([3, 5])
    """
    mode = mode.lower() if isinstance(mode, str) else mode
    return _run(_spec.kaiming_normal(a, mode, nonlinearity), tensor, generator)


def orthogonal_(tensor: torch.Tensor, gain: float = 1,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.orthogonal_ (also on float16/bfloat16, computed in float32).

    >>> import torch
    >>> w = orthogonal_(torch.empty(3, 5, dtype=torch.float64))
    >>> torch.allclose(w @ w.T, torch.eye(3, dtype=torch.float64))
    True
    """
    return _run(_spec.orthogonal(gain), tensor, generator)


def sparse_(tensor: torch.Tensor, sparsity: float, std: float = 0.01,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.sparse_: N(0, std**2) with ceil(sparsity*rows) zeros in every column.
    Unlike torch's, the zero rows are drawn with ``generator`` too, so it is reproducible.

    >>> import torch
    >>> w = sparse_(torch.empty(10, 4), 0.3)
    >>> (w == 0).sum(dim=0).tolist()
    [3, 3, 3, 3]
    """
    return _run(_spec.sparse(sparsity, std), tensor, generator)


# --------------------------------------------------------------------------- a whole module

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
