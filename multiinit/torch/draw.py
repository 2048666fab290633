"""Spec -> values in torch: for each spec, decided once, the torch call or sampler that fills
a tensor in place, ``fill(tensor, generator, fans)``.

The samplers make no checks: their callers (``compiled.py``, ``model.py``) hold ``no_grad``
and have checked shape, dtype, meta and emptiness first. ``fans`` overrides the tensor's own
fans (a bias at model level); ``None`` means torch's rule on the tensor's stored shape.

Decisions implemented here:

* **torch's own function where its law is the spec's.** ``constant``, ``uniform``, ``normal``,
  ``xavier_*``, ``kaiming_*``, ``orthogonal`` (float32/float64), ``eye`` and ``dirac`` call
  ``torch.nn.init``: same generator stream, so with the same generator seed they give torch's
  numbers exactly. The rest are torch ops on the tensor's device: Keras/JAX's truncated,
  variance-corrected ``he/glorot/lecun_normal`` and ``variance_scaling``, ``truncated_normal``
  (bounds in std units), ``sparse`` (torch's ``sparse_`` ignores the generator for its row
  shuffle), ``mixture``.
* **Truncated normals** never leave their bounds, in any dtype: the bounds are first rounded
  *inward* to the tensor's dtype. When at least half the mass lies inside (every default and
  every variance-scaling form), spare normals are drawn, then the tensor's, and each value
  outside takes the next spare inside (and, if the spares ran short, which happens about once
  in 10**9, the rest are redrawn until none is outside): exact, about 1.05 draws in all at
  +-2 std, where torch 2.13's own rejection ``trunc_normal_`` redraws the whole tensor each
  round, about 6 draws. Narrower or off-centre bounds invert the CDF as the NumPy reference
  does: a float64 uniform on ``[Phi(low), Phi(high)]`` in the lower tail, where the CDF keeps
  its precision, ``ndtri``, then a clamp.
* **What a truncated normal costs above a normal** (float32 4096x4096: ``normal_`` 130-180 ms
  here, on one thread -- torch's CPU ``normal_`` never uses more -- mostly its mt19937 draw):
  the spares' draw (~4.8% more values), one pass comparing every value with the bounds and
  finding the ~4.6% outside (as long again as the spares' draw, on one thread:
  ``multiinit.host.outside``), and their writes. None of it fuses with torch or NumPy
  primitives, so on CPU the tensor is drawn in chunks (the same numbers as one ``normal_``)
  and each chunk is searched and written on a pool thread while the next one is drawn, in
  cache: about 1.1x ``normal_`` with two threads. Writing the replacements after the whole
  draw instead costs a scattered pass over the tensor's memory (1.2x in all). The inverse CDF
  costs more (``uniform_`` plus ``erfinv``, about 1.5x). Bounds that hold less mass cost more
  draws: at 84% inside (``truncated_normal(mean=0.1, std=0.02, low=-1, high=2.5)``) about
  1.2x more values. The old cost (1.77x) came from torch's bool comparisons and ``nonzero``,
  three times NumPy's, and an ``aminmax`` pass now made only where fewer than one value is
  expected outside (torch's ``trunc_normal_(std=0.02)`` cuts at +-100 std).
* **CPU tensors are also computed on through NumPy views of their own memory** (no copy,
  ``_host_view``) where NumPy's comparisons, index searches and bit operations cost a third of
  torch's: the truncated normals' search for values outside, the one-draw mixture. Any other
  device runs the same IEEE operations as torch ops, so the two paths give the same numbers
  (``tests/test_torch_compile.py`` checks it); random numbers always come from the torch
  generator.
* **Mixtures of uniforms and constants take one draw** (the seed chapter's ``my_init`` law,
  at the hand-written code's cost): one random integer per element picks the component and,
  rescaled, gives a uniform component's value; its resolution is argued at ``_PIECE_DTYPES``
  (probabilities exact to 2**-31, values at torch's own float32 uniform resolution or finer,
  never a component's open upper bound). On the CPU the integers are drawn chunk by chunk
  while a pool thread writes the chunk before (``_pieces_behind_draw``). Other mixtures draw
  a float64 choice and every component for the whole tensor, as the reference does.
* **dtypes.** Random specs fill float16, bfloat16, float32 and float64 tensors
  (``FLOAT_DTYPES``, which ``compiled.py`` checks); deterministic ones (constant, eye, dirac)
  any dtype torch can fill, as torch does. float16/bfloat16 orthogonal is computed in float32
  (torch's QR has no half kernels) and rounded.
* **Complex tensors (complex64, complex128) follow torch's own convention**, so that a spec
  and the ``torch.nn.init`` function it stands for draw the same law, and the same numbers
  wherever torch's function is called:

  - a law given by its *bounds* draws the real and the imaginary parts independently from
    it: ``uniform(low, high)`` and the uniform variance-scaling forms (``xavier_uniform``,
    ``kaiming_uniform``, ``he/glorot/lecun_uniform``, ``variance_scaling(..., "uniform")``)
    give each part U[low, high), so ``E|z|**2`` is *twice* the real law's variance, as
    ``torch.nn.init.uniform_``/``xavier_uniform_`` give on a complex tensor;
  - a *normal* law is the circular complex normal with the law's total variance:
    ``normal(mean, std)`` gives each part N(mean, std**2/2) (torch adds ``mean`` to both
    parts), and so do ``xavier_normal``, ``kaiming_normal``, ``variance_scaling(...,
    "untruncated_normal")`` and ``sparse``'s non-zero values: ``E|z - mean*(1+1j)|**2`` is the
    real law's variance;
  - ``orthogonal`` is a Haar-distributed (semi-)unitary matrix times ``gain``: the QR of a
    circular complex normal draw, each column's phase fixed by ``sgn`` of R's diagonal (the
    complex form of torch's sign fix; torch 2.13's own ``orthogonal_`` raises here because
    ``torch.sign`` refuses complex numbers);
  - ``constant``, ``eye`` and ``dirac`` write their real values (imaginary part 0);
  - a mixture mixes its components' complex forms element by element.

  Truncated normals (``truncated_normal``, ``trunc_normal``, ``he/glorot/lecun_normal``,
  truncated ``variance_scaling``) have no complex form in torch (``trunc_normal_`` raises
  ``NotImplementedError`` on a complex tensor) and a ``custom`` law's NumPy function draws
  real numbers: those raise ``DtypeError`` (``complex_problem`` says why). complex32 is
  refused by every random spec (torch marks ComplexHalf experimental).
* **Devices.** Built-in specs draw on the tensor's device with the given generator (whose
  device must be the tensor's, as in torch) and never copy data to the host (a CPU tensor's
  NumPy view, above, is its own memory). ``custom`` is
  the exception by nature: its NumPy function runs on the host, seeded from two 62-bit words
  drawn from the generator (``custom_key``), and the result is copied to the tensor. A law
  built with ``elementwise=True`` is called once per tile of the stream rule over those words,
  on the pool's threads (``reference.law_values``); a tensor of one tile keeps one call.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
from torch.nn import init as _init

from .. import host as _host, stream as _stream
from ..errors import SpecError
from ..reference import law_values
from ..spec import (
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
    VarianceScaling,
    WithAxes,
    XavierNormal,
    XavierUniform,
)

#: The dtypes random specs fill.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: The complex dtypes random specs fill where their law has a complex form (``complex_problem``).
COMPLEX_DTYPES = (torch.complex64, torch.complex128)

_NO_COMPLEX_TRUNCATED = (
    "a truncated normal has no complex form in torch (torch.nn.init.trunc_normal_ refuses "
    "complex tensors); fill the real and imaginary parts separately, e.g. through "
    "torch.view_as_real(tensor)"
)


def complex_problem(spec: Spec) -> str | None:
    """Why ``spec`` has no law on a complex tensor, or None when it has one (torch's
    convention, see the module docstring).

    >>> import multiinit as mi
    >>> complex_problem(mi.xavier_normal()) is None, complex_problem(mi.he_normal())[:33]
    (True, 'a truncated normal has no complex')
    """
    if isinstance(spec, TruncatedNormal):
        return _NO_COMPLEX_TRUNCATED
    if isinstance(spec, WithAxes):
        return complex_problem(spec.spec)
    scaled = spec.as_variance_scaling()
    if scaled is not None:
        return _NO_COMPLEX_TRUNCATED if scaled.distribution == "truncated_normal" else None
    if isinstance(spec, Mixture):
        for weight, component in spec.components:
            problem = complex_problem(component) if weight > 0 else None
            if problem is not None:
                return f"its component {component!r}: {problem}"
        return None
    if isinstance(spec, Custom):
        return "a custom law's NumPy function draws real numbers"
    return None


# (What a filler returns, torch's in-place functions return their tensor, is not used.)
_Filler = Callable[["torch.Tensor", "torch.Generator | None", "tuple[int, int] | None"], object]
#: One piece of a one-draw mixture: ``(start, component, scale, offset, lo, hi)``.
_Piece = tuple[int, Spec, float, float, float, float]


# --------------------------------------------------------------------------- the samplers
# Each _fill_* writes into ``t`` in place (the caller holds no_grad and has checked shape,
# dtype, meta and emptiness); ``fans`` overrides the tensor's own fans (a bias at model level).


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@functools.lru_cache(maxsize=256)
def _inward(a: float, b: float, dtype: torch.dtype, open_high: bool = False) -> tuple[float, float]:
    """The smallest and largest values of ``dtype`` inside ``[a, b]`` (``[a, b)`` with
    ``open_high``; nearest ones when the interval holds none), so that rounding a clamped
    float64 value to ``dtype`` never crosses a bound."""
    if dtype == torch.float64 and not open_high:
        return a, b
    lo = torch.tensor(a, dtype=torch.float64).to(dtype)
    hi = torch.tensor(b, dtype=torch.float64).to(dtype)
    if float(lo) < a:
        lo = torch.nextafter(lo, torch.tensor(math.inf, dtype=dtype))
    if float(hi) > b or (open_high and float(hi) == b):
        hi = torch.nextafter(hi, torch.tensor(-math.inf, dtype=dtype))
    if float(lo) > float(hi):  # the interval is narrower than one step of dtype
        return float(torch.tensor(a, dtype=torch.float64).to(dtype)), float(
            torch.tensor(b, dtype=torch.float64).to(dtype)
        )
    return float(lo), float(hi)


def _fill_truncated(
    t: torch.Tensor, g: torch.Generator | None, mean: float, std: float, a: float, b: float
) -> None:
    """N(mean, std**2) restricted to the absolute bounds [a, b]; no value outside them, in
    ``t``'s dtype."""
    low, high = (a - mean) / std, (b - mean) / std
    lo, hi = _inward(a, b, t.dtype)
    inside = _phi(high) - _phi(low)
    if inside >= 0.5 and _fill_by_rejection(t, g, mean, std, lo, hi, inside):
        return
    _fill_by_inverse_cdf(t, g, mean, std, low, high, lo, hi)


#: Rounds of redrawing before the inverse CDF takes over (only a bounds interval narrower than
#: the dtype's grid near the mean gets there).
_REJECTION_ROUNDS = 64

#: dtypes whose CPU tensors the samplers also compute on through a NumPy view of their own
#: memory (no copy), where NumPy's comparisons and masked writes cost a third of torch's.
_HOST_DTYPES = {
    torch.float16: np.float16,
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.int32: np.int32,
    torch.int64: np.int64,
}


def _host_view(t: torch.Tensor) -> np.ndarray | None:
    """A NumPy view of ``t``'s own memory (no copy) when ``t`` is a contiguous CPU tensor of a
    dtype NumPy computes on, else None. Callers compute the same IEEE operations either way,
    so the two paths give the same numbers (``tests/test_torch_compile.py`` checks it)."""
    if t.device.type != "cpu" or t.dtype not in _HOST_DTYPES or not t.is_contiguous():
        return None
    try:
        view = t.detach().numpy()
    except (RuntimeError, TypeError):  # conjugate/negative views, exotic subclasses
        return None
    return view if view.dtype == _HOST_DTYPES[t.dtype] else None


def _outside(values: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """The positions of ``values`` (1-D) outside [lo, hi], in increasing order (int64)."""
    host = _host_view(values)
    if host is not None:
        return torch.from_numpy(_host.outside(host, lo, hi).astype(np.int64, copy=False))
    return ((values < lo) | (values > hi)).nonzero().squeeze(1)


def _redraw_rounds(
    values: torch.Tensor,
    bad: torch.Tensor,
    g: torch.Generator | None,
    mean: float,
    std: float,
    lo: float,
    hi: float,
) -> bool:
    """Redraw ``values[bad]`` (1-D; ``bad``, the positions of a first draw outside [lo, hi])
    in rounds until every value is inside: False if some still are after ``_REJECTION_ROUNDS``
    draws in all."""
    for _ in range(_REJECTION_ROUNDS - 1):
        if not bad.numel():
            return True
        redraw = torch.empty(bad.numel(), dtype=values.dtype, device=values.device).normal_(
            mean, std, generator=g
        )
        values.index_copy_(0, bad, redraw)
        bad = bad[_outside(redraw, lo, hi)]
    return not bad.numel()


def _redraws(
    count: int, like: torch.Tensor, g: torch.Generator | None, mean: float, std: float, lo: float, hi: float
) -> torch.Tensor | None:
    """``count`` draws of N(mean, std**2) restricted to [lo, hi] (None after
    ``_REJECTION_ROUNDS`` rounds): the values that replace the ``count`` values of a first draw
    that fell outside, in their order."""
    values = torch.empty(count, dtype=like.dtype, device=like.device).normal_(mean, std, generator=g)
    return values if _redraw_rounds(values, _outside(values, lo, hi), g, mean, std, lo, hi) else None


#: Elements per chunk when a CPU tensor's normals are drawn chunk by chunk while another thread
#: works on the chunk drawn before (``_host_rejection``): the first chunks are the largest,
#: and each later one a quarter of what is left, down to the smallest. Handing a chunk to the
#: other thread costs about 0.1 ms here (a wake-up across vCPUs), so few chunks early; the
#: last chunk's work is the one not hidden behind a draw, so a small one late. A 4096x4096
#: tensor takes 20 chunks (2M down to 64k values). Over 30 rounds, 18 chunks shrinking to 128k
#: against 64 of 256k read 1.02 against 1.10 of one ``normal_`` with nothing done on the other
#: thread; with the search (before the spares), 2M-64k read 1.21, 2M-128k 1.24, 4M-64k 1.25
#: and 64 of 256k 1.28.
#: All are multiples of 16: torch's CPU ``normal_`` turns uniforms into normals in blocks of
#: 16 (and redraws the last 16 of a tensor whose size is not a multiple), so such chunks, the
#: last one taking the remainder, give the numbers of one ``normal_`` over the whole tensor
#: exactly (``tests/test_torch_compile.py`` checks it, dtype by dtype).
_LARGEST_CHUNK = 8 * _host.BLOCK
_SMALLEST_CHUNK = _host.BLOCK // 4


def _chunks(count: int, largest: int, smallest: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` covering ``range(count)``: each a quarter of what is left,
    between ``smallest`` and ``largest`` elements and a multiple of 16 (both bounds are), the
    last one taking the rest (so it has at least ``smallest``, or all of a smaller ``count``)."""
    pieces, start = [], 0
    while count - start >= 2 * smallest:
        size = min(largest, max(smallest, (count - start) // 4 // 16 * 16))
        pieces.append((start, start + size))
        start += size
    pieces.append((start, count))
    return pieces


def _spare_count(count: int, inside: float) -> int:
    """How many normals to draw before a tensor of ``count``: enough that the ones inside the
    bounds replace every value of the tensor's draw outside them but about once in 10**9 (the
    mean number outside plus 6 of its standard deviations, and 16; the count outside and the
    spares inside are binomial). Running short costs a redraw of the rest, not exactness."""
    expected = count * (1.0 - inside)
    return math.ceil((expected + 6.0 * math.sqrt(expected) + 16.0) / inside)


def _host_rejection(
    flat: torch.Tensor,
    host: np.ndarray,
    g: torch.Generator | None,
    mean: float,
    std: float,
    lo: float,
    hi: float,
    spares: int,
) -> np.ndarray:
    """``_fill_by_rejection``'s spares and first draw on a CPU tensor through ``host``, its
    memory: the same numbers as the torch-op path, with each chunk of the tensor searched for
    values outside and its replacements written on a pool thread while the next chunk is
    drawn, so that the writes land in a chunk still in cache (written after the whole draw,
    the same writes cost a pass over the tensor's memory: 8-15 ms for a 4096x4096 float32).
    Returns the positions still outside once the spares have run out (almost always none)."""
    pool = torch.empty(spares, dtype=flat.dtype)
    drawn = pool.numpy()
    kept: list[np.ndarray] = []
    used = 0
    pieces = _chunks(flat.numel(), _LARGEST_CHUNK, _SMALLEST_CHUNK)
    # The spares go to the values outside in the order of their positions, so the chunks take
    # theirs in turn: each job waits for the one before it to have taken its share.
    turns = [threading.Event() for _ in range(len(pieces) + 1)]

    def keep() -> np.ndarray:
        try:
            kept.append(drawn[(drawn >= lo) & (drawn <= hi)])
        finally:
            turns[0].set()
        return _NOWHERE

    def settle(turn: int, start: int, stop: int) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            nonlocal used
            try:
                positions = _host.outside(host[start:stop], lo, hi) + start
                turns[turn - 1].wait()
                first, spare = used, kept[0]
                taken = min(positions.size, spare.size - first)
                used = first + taken
            finally:
                # Even after a failure: the jobs after this one wait for it, and the error
                # reaches the caller once they have all ended.
                turns[turn - 1].wait()
                turns[turn].set()
            host[positions[:taken]] = spare[first : first + taken]
            return positions[taken:]

        return run

    def draw(values: torch.Tensor) -> Callable[[], object]:
        return lambda: values.normal_(mean, std, generator=g)

    steps = [(draw(pool), keep)]
    steps += [(draw(flat[a:b]), settle(i, a, b)) for i, (a, b) in enumerate(pieces, start=1)]
    if len(pieces) > 1:
        return np.concatenate(_stream.overlapped(steps))
    found = []  # a small tensor: waking a thread for its one chunk costs more than the chunk
    for first, then in steps:
        first()
        found.append(then())
    return np.concatenate(found)


_NOWHERE = np.empty(0, dtype=np.intp)


def _fill_by_rejection(
    t: torch.Tensor, g: torch.Generator | None, mean: float, std: float, lo: float, hi: float, inside: float
) -> bool:
    """Normals restricted to [lo, hi] by replacing only the ones outside: exact, and with at
    least half the mass ``inside``, about 1.05 normal draws in all at +-2 std (torch 2.13's
    trunc_normal_ redraws the whole tensor each round).

    The generator draws, in this order: spare normals (``_spare_count``; none where fewer than
    one value is expected outside), the tensor's normals, then, only if the spares inside ran
    short, rounds of redraws of the rest (``_redraws``). The k-th value outside (in position
    order) takes the k-th spare inside. The cost above one ``normal_`` is the spares' draw and
    one comparison pass; on CPU the search and the writes run on a NumPy view of the tensor's
    memory, chunk by chunk behind the draw. False if values are still outside after
    ``_REJECTION_ROUNDS`` rounds (the caller then draws the tensor by the inverse CDF)."""
    work = t if t.is_contiguous() else torch.empty(t.shape, dtype=t.dtype, device=t.device)
    flat = work.view(-1)
    host = _host_view(flat)
    # Comparisons happen in t's dtype, where lo and hi are exact (see _inward). Where fewer
    # than one value is expected outside (torch's trunc_normal_(std=0.02) cuts at +-100 std),
    # the extremes alone settle it at a fraction of the cost of a mask.
    few = flat.numel() * (1.0 - inside) < 1.0
    if host is not None and not few:
        rest = torch.from_numpy(
            _host_rejection(flat, host, g, mean, std, lo, hi, _spare_count(flat.numel(), inside)).astype(
                np.int64, copy=False
            )
        )
    else:
        spare = _inside_spares(flat, g, mean, std, lo, hi, 0 if few else _spare_count(flat.numel(), inside))
        flat.normal_(mean, std, generator=g)
        if few:
            smallest, largest = torch.aminmax(flat)
            if float(smallest) >= lo and float(largest) <= hi:
                if work is not t:
                    t.copy_(work)
                return True
        outside = _outside(flat, lo, hi)
        taken = min(outside.numel(), spare.numel())
        flat.index_copy_(0, outside[:taken], spare[:taken])
        rest = outside[taken:]
    if rest.numel():
        values = _redraws(rest.numel(), flat, g, mean, std, lo, hi)
        if values is None:
            return False
        flat.index_copy_(0, rest, values)
    if work is not t:
        t.copy_(work)
    return True


def _inside_spares(
    like: torch.Tensor, g: torch.Generator | None, mean: float, std: float, lo: float, hi: float, count: int
) -> torch.Tensor:
    """The ones inside [lo, hi] of ``count`` normals drawn now, in their order."""
    drawn = torch.empty(count, dtype=like.dtype, device=like.device)
    if count:
        drawn.normal_(mean, std, generator=g)
    return drawn[(drawn >= lo) & (drawn <= hi)]


def _fill_by_inverse_cdf(
    t: torch.Tensor,
    g: torch.Generator | None,
    mean: float,
    std: float,
    low: float,
    high: float,
    lo: float,
    hi: float,
) -> None:
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


def _fill_scaled(
    spec: VarianceScaling, t: torch.Tensor, g: torch.Generator | None, fans: tuple[int, int]
) -> None:
    distribution, number = spec.law(*fans)
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
    if t.is_complex():
        _fill_unitary(gain, t, g)
        return
    # torch's QR has no float16/bfloat16 kernels, and orthogonal_ needs a contiguous tensor.
    work_dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    work = torch.empty(t.shape, dtype=work_dtype, device=t.device)
    _init.orthogonal_(work, gain, generator=g)
    t.copy_(work)


def _fill_unitary(gain: float, t: torch.Tensor, g: torch.Generator | None) -> None:
    """torch's orthogonal_ for a complex tensor: the same steps with ``sgn`` (z/|z|) where
    torch calls ``sign``, which refuses complex numbers. The QR of a circular complex normal
    draw with each column's phase fixed this way is Haar-distributed on the unitary group
    (Mezzadri, arXiv:math-ph/0609050, the paper torch cites)."""
    rows = t.shape[0]
    cols = t.numel() // rows
    flat = torch.empty((rows, cols), dtype=t.dtype, device=t.device).normal_(0.0, 1.0, generator=g)
    if rows < cols:
        flat.t_()
    q, r = torch.linalg.qr(flat)
    q *= torch.diagonal(r).sgn()
    if rows < cols:
        q.t_()
    t.copy_(q.reshape(t.shape))
    t.mul_(gain)


def _random_rows(
    rows: int, cols: int, k: int, g: torch.Generator | None, device: torch.device
) -> torch.Tensor:
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
    k = math.ceil(spec.sparsity * rows)
    if k:
        t.masked_fill_(_random_rows(rows, cols, k, g, t.device), 0.0)


def _fill_mixture(
    live: list[tuple[float, Spec, _Filler]],
    t: torch.Tensor,
    g: torch.Generator | None,
    fans: tuple[int, int] | None,
) -> None:
    """``live`` holds the components of positive weight, each with its filler."""
    if len(live) == 1:
        live[0][2](t, g, fans)
        return
    if any(_runs_user_code(spec) for _, spec, _ in live):
        # A user law can fail after other components were drawn: draw aside, write once.
        work = torch.empty(t.shape, dtype=t.dtype, device=t.device)
        _fill_mixture_into(live, work, g, fans)
        t.copy_(work)
        return
    _fill_mixture_into(live, t, g, fans)


def _runs_user_code(spec: Spec) -> bool:
    if isinstance(spec, Custom):
        return True
    return isinstance(spec, Mixture) and any(_runs_user_code(s) for w, s in spec.components if w > 0)


def _fill_mixture_into(
    live: list[tuple[float, Spec, _Filler]],
    t: torch.Tensor,
    g: torch.Generator | None,
    fans: tuple[int, int] | None,
) -> None:
    pieces = _pieces(tuple((w, spec) for w, spec, _ in live), t.dtype)
    if pieces is not None:
        _fill_pieces(pieces, t, g)
        return
    # One categorical choice per element from a float64 uniform (the weights are exact to
    # 1e-16), then every component drawn for the whole tensor, as the reference does. Writing
    # the components in order wherever u >= the cumulative weight before each leaves every
    # element with the component whose interval holds its u, one comparison per component.
    starts = np.cumsum([w for w, _, _ in live])[:-1]
    u = torch.rand(t.shape, dtype=torch.float64, device=t.device, generator=g)
    live[0][2](t, g, fans)
    for start, (_, component, fill) in zip(starts, live[1:], strict=True):
        mask = u >= float(start)
        if isinstance(component, Constant):
            t.masked_fill_(mask, component.value)
        else:
            draw = torch.empty_like(t)
            fill(draw, g, fans)
            torch.where(mask, draw, t, out=t)


# One draw for a mixture of uniforms and constants (the seed chapter's law and its kin): each
# element gets one random integer r, uniform on [0, 2**bits); the component is the one whose
# interval [start, stop) of integers holds r, and a uniform component's value is
# low + (r - start) * (high - low) / (stop - start): r's remaining bits, rescaled.
#
# Resolution. The component probabilities are (stop - start) / 2**bits, exact to 2**-31 (float
# dtypes up to float32) or 2**-63 (float64): far below the dtype's own resolution. A uniform
# component of weight w keeps bits + log2(w) bits for its value, which is at least the 24 bits
# of torch's own float32 uniform_ when w >= 2**-7 (53 bits for float64 when w >= 2**-10); a
# mixture with a lighter uniform component takes the two-draw path above instead. r - start is
# exact in integers, so a component at the top of the range is as fine as one at the bottom
# (one float32 uniform cut in pieces would leave a quarter-weight component 22 bits). Each
# value is clamped into the component's [low, high) as rounded inward to the dtype, so no
# rounding ever returns high.
#: (random integer dtype, bits, compute dtype) per dtype the one-draw path fills.
_PIECE_DTYPES = {
    torch.float16: (torch.int32, 31, torch.float32),
    torch.bfloat16: (torch.int32, 31, torch.float32),
    torch.float32: (torch.int32, 31, torch.float32),
    torch.float64: (torch.int64, 63, torch.float64),
}
#: The lightest uniform component the one-draw path takes, per integer width: it must keep the
#: dtype's uniform resolution (24 bits for float32 and below, 53 for float64).
_LIGHTEST = {31: 2.0**-7, 63: 2.0**-10}


@functools.lru_cache(maxsize=256)
def _pieces(live: tuple[tuple[float, Spec], ...], dtype: torch.dtype) -> tuple[_Piece, ...] | None:
    """``((start, component, scale, offset, lo, hi), ...)`` on [0, 2**bits) for a mixture of
    uniform and constant components (weight > 0) drawn in ``dtype`` with one integer per
    element, or None. Uniform components come first and constants last, where selecting them
    is cheapest (a zero costs one bit operation)."""
    if dtype not in _PIECE_DTYPES or not all(isinstance(s, (Uniform, Constant)) for _, s in live):
        return None
    _, bits, _ = _PIECE_DTYPES[dtype]
    total = math.fsum(w for w, _ in live)
    if any(isinstance(s, Uniform) and w / total < _LIGHTEST[bits] for w, s in live):
        return None
    ordered = sorted(live, key=lambda item: isinstance(item[1], Constant))
    edges = [round(math.fsum(w for w, _ in ordered[: i + 1]) / total * 2**bits) for i in range(len(ordered))]
    edges[-1] = 2**bits
    pieces: list[_Piece] = []
    start = 0
    for stop, (_, spec) in zip(edges, ordered, strict=True):
        if stop > start:
            if isinstance(spec, Uniform):
                lo, hi = _inward(spec.low, spec.high, dtype, open_high=True)
                pieces.append((start, spec, (spec.high - spec.low) / (stop - start), spec.low, lo, hi))
            else:
                value = cast("Constant", spec).value  # uniform and constant components only (above)
                pieces.append((start, spec, 0.0, value, value, value))
        start = stop
    return tuple(pieces)


def _fill_pieces(pieces: tuple[_Piece, ...], t: torch.Tensor, g: torch.Generator | None) -> None:
    """The one-draw mixture: each piece's values, written wherever r >= its start, in order,
    so that every element ends with the piece that holds its r.

    The writes are branch-free bit selections, ``out = (out & keep) | (values & ~keep)`` with
    ``keep = (r - start) >> (bits)`` all ones where r < start: masked writes with a random mask
    cost five to ten times as much (the branch predictor loses half the time). The same
    operations run on NumPy views of CPU tensors' memory, block by block in cache, or as torch
    ops on any device: the same numbers either way."""
    int_dtype, _, compute = _PIECE_DTYPES[t.dtype]
    direct = t.dtype == compute and t.is_contiguous()
    out = t.view(-1) if direct else torch.empty(t.numel(), dtype=compute, device=t.device)
    host = _host_view(out)
    if host is not None:
        _pieces_behind_draw(pieces, host, int_dtype, g)
    else:
        r = torch.empty(t.numel(), dtype=int_dtype, device=t.device).random_(generator=g)
        _pieces_on_device(pieces, out, r)
    if not direct:
        t.copy_(out.view(t.shape))


#: Elements per chunk of a one-draw mixture on the CPU, and how many chunks' integers can be
#: held at once (one being drawn, the others being written into the tensor).
_MIXTURE_CHUNK = _host.BLOCK
_MIXTURE_SLOTS = 3


def _pieces_behind_draw(
    pieces: tuple[_Piece, ...], host: np.ndarray, int_dtype: torch.dtype, g: torch.Generator | None
) -> None:
    """``_fill_pieces`` on a CPU tensor's memory ``host``: each chunk's integers are drawn into
    one of ``_MIXTURE_SLOTS`` reused buffers while a pool thread writes the chunk before into
    ``host``. torch's CPU ``random_`` fills a tensor's elements in order on one thread, so
    drawing the chunks in turn gives the integers of one draw over the whole tensor; the
    writes then cost the second core's time, not the caller's, and the reused buffers no fresh
    pages: 0.72-0.83x the seed chapter's own ``my_init`` on two threads, where a whole draw
    into a fresh tensor followed by the writes cost 1.09-1.19x (``bench_torch.py``). A slot
    is drawn into again only once its chunk has been written. A tensor of one chunk is drawn
    and written on the calling thread (a 16x16 mixture: 177 us, where the slots and a thread
    hand-off cost 240)."""
    if host.size <= _MIXTURE_CHUNK:  # one chunk: drawn and written here, no buffers to share
        _pieces_on_host(pieces, host, torch.empty(host.size, dtype=int_dtype).random_(generator=g).numpy())
        return
    spans = [(a, min(a + _MIXTURE_CHUNK, host.size)) for a in range(0, host.size, _MIXTURE_CHUNK)]
    width = _MIXTURE_CHUNK
    slots = []
    for _ in range(min(_MIXTURE_SLOTS, len(spans))):
        r = torch.empty(width, dtype=int_dtype)
        ints = r.numpy()
        slots.append((r, ints, (np.empty_like(ints), np.empty_like(ints), np.empty(width, dtype=host.dtype))))
    free = [threading.Event() for _ in slots]
    for event in free:
        event.set()

    def draw(index: int, size: int) -> Callable[[], object]:
        def run() -> object:
            free[index].wait()
            free[index].clear()
            return slots[index][0][:size].random_(generator=g)

        return run

    def write(index: int, start: int, stop: int) -> Callable[[], None]:
        def run() -> None:
            _, ints, scratch = slots[index]
            try:
                _pieces_on_host(pieces, host[start:stop], ints[: stop - start], scratch)
            finally:
                # Even after a failure: the draw waiting for this slot must not hang.
                free[index].set()

        return run

    _stream.overlapped(
        (draw(i % len(slots), b - a), write(i % len(slots), a, b)) for i, (a, b) in enumerate(spans)
    )


def _bits_of(value: float, dtype: torch.dtype) -> int:
    """The bit pattern of ``value`` in the float ``dtype``, as the same-width signed integer."""
    # NumPy's cast rounds as torch's does; a torch scalar tensor cost 13 us a call, a sixth of
    # a small tensor's whole mixture.
    kind, same_width = (np.float32, np.int32) if dtype == torch.float32 else (np.float64, np.int64)
    with np.errstate(over="ignore"):  # beyond float32's range is inf, as in torch
        return int(np.array(value, dtype=kind).view(same_width))


def _pieces_on_device(pieces: tuple[_Piece, ...], out: torch.Tensor, r: torch.Tensor) -> None:
    out_bits = out.view(r.dtype)
    shift = r.element_size() * 8 - 1
    for i, (start, spec, scale, offset, lo, hi) in enumerate(pieces):
        shifted = r - start if start else r
        values = out if i == 0 else torch.empty_like(out)
        if isinstance(spec, Uniform):
            values.copy_(shifted)
            values.mul_(scale).add_(offset).clamp_(lo, hi)
        elif i == 0:
            out.fill_(offset)
        if i == 0:
            continue
        keep = torch.bitwise_right_shift(shifted, shift)
        out_bits.bitwise_and_(keep)
        fresh = values.view(r.dtype) if isinstance(spec, Uniform) else _bits_of(offset, out.dtype)
        if isinstance(fresh, torch.Tensor) or fresh:  # a zero is written by the AND alone
            out_bits.bitwise_or_(keep.bitwise_not_().bitwise_and_(fresh))


def _pieces_on_host(
    pieces: tuple[_Piece, ...],
    out: np.ndarray,
    r: np.ndarray,
    scratch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> None:
    """``_pieces_on_device`` on one block of NumPy views (the same operations); ``scratch``
    holds two integer arrays and one float array at least the block's size."""
    kind = out.dtype.type
    out_bits = out.view(r.dtype)
    shift = r.dtype.itemsize * 8 - 1
    if scratch is None:
        scratch = (np.empty_like(r), np.empty_like(r), np.empty_like(out))
    shifted, keep, values = (a[: r.size] for a in scratch)
    for i, (start, spec, scale, offset, lo, hi) in enumerate(pieces):
        source = np.subtract(r, r.dtype.type(start), out=shifted) if start else r
        target = out if i == 0 else values
        if isinstance(spec, Uniform):
            np.copyto(target, source, casting="unsafe")
            np.multiply(target, kind(scale), out=target)
            np.add(target, kind(offset), out=target)
            np.clip(target, kind(lo), kind(hi), out=target)
        elif i == 0:
            out.fill(kind(offset))
        if i == 0:
            continue
        np.right_shift(source, shift, out=keep)
        np.bitwise_and(out_bits, keep, out=out_bits)
        fresh = (
            values.view(r.dtype)
            if isinstance(spec, Uniform)
            else r.dtype.type(_bits_of(offset, _TORCH_OF[out.dtype.type]))
        )
        if isinstance(fresh, np.ndarray) or fresh:  # a zero is written by the AND alone
            np.invert(keep, out=keep)
            np.bitwise_and(keep, fresh, out=keep)
            np.bitwise_or(out_bits, keep, out=out_bits)


_TORCH_OF = {np.float32: torch.float32, np.float64: torch.float64}


_NUMPY_DTYPE = {torch.float16: "float16", torch.float32: "float32", torch.float64: "float64"}


def _fill_custom(
    spec: Custom,
    t: torch.Tensor,
    g: torch.Generator | None,
    fans: tuple[int, int] | None,
    path: str | None = None,
) -> None:
    """A user law, fenced: its NumPy function runs on the host behind ``reference.call_law``
    (an exception in it, a result of the wrong shape or dtype, or a non-finite value is a
    ``LawError`` naming the law and ``path``), and ``t`` is written only once the result has
    passed, so a failing law leaves the tensor as it was."""
    # An elementwise law over more than one tile is drawn tile by tile on the pool's threads
    # (``law_values``); the generator gives the same key either way.
    values = law_values(spec, custom_key(g), tuple(t.shape), _NUMPY_DTYPE.get(t.dtype, "float32"), path=path)
    t.copy_(torch.from_numpy(np.ascontiguousarray(values)))


def custom_key(g: torch.Generator | None) -> list[int]:
    """The NumPy stream key of a user law, two words drawn from ``g`` (torch's global RNG
    without one), so ``torch.manual_seed`` and generator seeds make the law reproducible."""
    device = g.device if g is not None else torch.device("cpu")
    words: list[int] = torch.randint(0, 2**62, (2,), generator=g, device=device).tolist()
    return words


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
        custom = spec

        def fill_custom(
            t: torch.Tensor, g: torch.Generator | None, fans: tuple[int, int] | None, path: str | None = None
        ) -> None:
            _fill_custom(custom, t, g, fans, path)

        return fill_custom
    if isinstance(spec, WithAxes):
        # Its axes index the shape the compiled filler is called on (torch's own layout);
        # fans given by the caller (a tile, a model-level parameter) already came from them.
        inner = _filler(spec.spec)
        return lambda t, g, fans: inner(t, g, fans if fans is not None else spec.fans(tuple(t.shape)))
    raise SpecError(f"spec={spec!r} is not allowed; it is not a multiinit spec")  # pragma: no cover


def _scaled_filler(spec: Spec, scaled: VarianceScaling) -> _Filler:
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


def _kaiming(
    function: Callable[..., Any],
    a: float,
    mode: str,
    nonlinearity: str,
    t: torch.Tensor,
    g: torch.Generator | None,
) -> None:
    function(t, a, mode, nonlinearity, generator=g)


def _fill(
    spec: Spec,
    t: torch.Tensor,
    g: torch.Generator | None,
    fans: tuple[int, int] | None,
    path: str | None = None,
) -> None:
    """Fill ``t`` in place with ``spec``'s law (no checks: the caller has made them); ``path``
    names the parameter in a user law's ``LawError``."""
    if path is not None and isinstance(spec, Custom):
        _fill_custom(spec, t, g, fans, path)
        return
    _filler(spec)(t, g, fans)
