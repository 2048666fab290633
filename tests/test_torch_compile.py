"""``mi.compile(spec, "torch")``: every spec in every float dtype draws the reference's law,
generators make it reproducible, truncated normals never leave their bounds, built-in specs
never copy data to the host, and meta tensors, lazy parameters and bad tensors are handled
as documented in multiinit/torch/. (float32 on the dense and conv shapes of every spec is
the shared matrix's job: tests/test_matrix.py.)"""

from __future__ import annotations

import doctest
import importlib
import math
import os
import pkgutil
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import multiinit as mi
import multiinit.torch as mit
from multiinit import stats

from matrix import SHAPES, SPECS

REFERENCE_SEED = 12345
RANDOM = [s for s in SPECS if s.random]


def _fill(spec: mi.Spec, shape, dtype=torch.float32, seed=1) -> torch.Tensor:
    tensor = torch.empty(shape, dtype=dtype)
    out = mi.compile(spec, "torch")(tensor, generator=torch.Generator().manual_seed(seed))
    assert out is tensor
    return tensor


def _fits(spec: mi.Spec, shape) -> bool:
    try:
        mi.reference.check_shape(spec, shape)
    except mi.ShapeError:
        return False
    return True


def _ids(cases):
    return [f"{s!r}-{c}" for s, c in cases]


FLOAT64_CASES = [(s, c) for s in SPECS for c in SHAPES if _fits(s, SHAPES[c])]


@pytest.mark.parametrize("spec, case", FLOAT64_CASES, ids=_ids(FLOAT64_CASES))
def test_float64_draws_the_law(spec, case) -> None:
    x = _fill(spec, SHAPES[case], torch.float64).numpy()
    verdict = stats.check(x, spec, reference_seed=REFERENCE_SEED)
    assert verdict.passed, str(verdict)


def _rounded(values: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    return torch.from_numpy(np.asarray(values, dtype=np.float64)).to(dtype).double().numpy()


HALF_CASES = [(s, "dense" if _fits(s, SHAPES["dense"]) else "conv") for s in SPECS]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("spec, case", HALF_CASES, ids=_ids(HALF_CASES))
def test_half_dtypes_draw_the_law_rounded(spec, case, dtype) -> None:
    # A continuous law rounded to 8 or 11 significant bits: compared with the reference draw
    # rounded the same way (two-sample KS), and within the law's support rounded to dtype.
    shape = SHAPES[case]
    x = _fill(spec, shape, dtype).double().numpy()
    reference = _rounded(spec.sample(shape, seed=REFERENCE_SEED, dtype="float64"), dtype)
    the_law = stats.law(spec, shape)
    if the_law is not None and the_law.exact is not None:
        assert np.array_equal(x, reference)
        return
    check = stats.check_same(x, reference)
    assert check.passed, str(check)
    if the_law is not None:
        lo, hi = _rounded(np.array(the_law.support), dtype)
        assert x.min() >= lo and x.max() <= hi
    if isinstance(spec, mi.spec.Orthogonal):
        flat = x.reshape(shape[0], -1)
        gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
        assert np.abs(gram - spec.gain**2 * np.eye(len(gram))).max() < 3e-2 * spec.gain**2
    if isinstance(spec, mi.spec.Sparse):
        assert ((x == 0).sum(axis=0) >= math.ceil(spec.sparsity * shape[0])).all()


TRUNCATED = [
    mi.truncated_normal(std=1.0, low=-0.01, high=0.01),  # bounds fall between grid points
    mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5),
    mi.truncated_normal(mean=-3.0, std=0.7, low=1.5, high=4.0),  # above the mean only
    mi.trunc_normal(std=0.3, a=-0.1, b=0.7),
    mi.he_normal(),
    mi.variance_scaling(0.5, "fan_avg", "truncated_normal"),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("spec", TRUNCATED, ids=repr)
def test_truncated_normals_never_leave_their_bounds(spec, dtype) -> None:
    shape = (256, 128)
    x = _fill(spec, shape, dtype, seed=2).double().numpy()
    if isinstance(spec, mi.spec.TruncatedNormal):
        lo, hi = spec.bounds
    else:
        sigma = spec.as_variance_scaling().law(*mi.compute_fans(shape))[1]
        lo, hi = -2 * sigma, 2 * sigma
    # Exact comparison in float64: a value rounded to its dtype may not cross a bound either.
    assert lo <= x.min() and x.max() <= hi, (x.min(), x.max(), lo, hi)
    # ... and the values do reach the edges where the density there is not negligible (the
    # clamp is not cutting the law short).
    if isinstance(spec, mi.spec.TruncatedNormal) and max(abs(spec.low), abs(spec.high)) > 2.5:
        return
    width = hi - lo
    assert x.min() < lo + 0.02 * width and x.max() > hi - 0.02 * width


@pytest.mark.parametrize(
    "spares, rounds",
    [(None, 64), (0, 64), (5, 64), (0, 0)],
    ids=["spares", "redraws-only", "spares-short", "inverse-cdf"],
)
@pytest.mark.parametrize("spec", TRUNCATED, ids=repr)
def test_truncated_laws_by_rejection_and_by_the_inverse_cdf(spec, spares, rounds, monkeypatch) -> None:
    # Wide bounds replace the values outside by spare normals drawn first, and redraw the rest
    # when the spares run short (here: none or 5 spares). With no rounds of redraws left, the
    # sampler gives up and inverts the CDF for the whole tensor, as narrow bounds always do.
    if spares is not None:
        monkeypatch.setattr(mit.draw, "_spare_count", lambda count, inside: spares)
    monkeypatch.setattr(mit.draw, "_REJECTION_ROUNDS", rounds)
    inverse = []
    real_inverse = mit.draw._fill_by_inverse_cdf
    monkeypatch.setattr(mit.draw, "_fill_by_inverse_cdf", lambda *a: inverse.append(1) or real_inverse(*a))
    x = _fill(spec, (256, 128), torch.float64, seed=3).numpy()
    verdict = stats.check(x, spec)
    assert verdict.passed, str(verdict)
    lo, hi = -2.0, 2.0  # the variance-scaling forms' bounds, in std units
    if isinstance(spec, mi.spec.TruncatedNormal):
        lo, hi = spec.low, spec.high
    narrow = mit.draw._phi(hi) - mit.draw._phi(lo) < 0.5
    assert bool(inverse) == (narrow or rounds == 0)


@pytest.mark.parametrize("shape", [(256, 128), (64, 32, 3, 3)])
def test_a_mixture_of_four_with_fans_and_a_zero_weight(shape) -> None:
    spec = mi.mixture(
        [
            (0.1, mi.he_normal()),
            (0.0, mi.normal(100.0)),
            (0.2, mi.constant(3)),
            (0.3, mi.uniform(-1, 1)),
            (0.4, mi.xavier_normal(gain=3.0)),
        ]
    )
    verdict = stats.check(_fill(spec, shape, torch.float64).numpy(), spec)
    assert verdict.passed, str(verdict)


@pytest.mark.parametrize("spec", RANDOM, ids=repr)
def test_the_same_generator_seed_gives_the_same_tensor(spec) -> None:
    shape = (16, 8, 3, 3) if isinstance(spec, mi.spec.Dirac) else (64, 32)
    a, b, c = (_fill(spec, shape, seed=s) for s in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("spec", RANDOM, ids=repr)
def test_the_global_rng_is_used_without_a_generator(spec) -> None:
    fill_ = mi.compile(spec, "torch")
    draws = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        draws.append(fill_(torch.empty(64, 32)))
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])


def test_compiled_fans_are_the_tensors_own_torch_layout() -> None:
    # A ConvTranspose weight filled as one tensor: fans read off its stored shape, as torch
    # does (in=64 is dim 0 here): fan_in = 32 * 9, fan_out = 64 * 9.
    w = _fill(mi.he_uniform(), (64, 32, 3, 3))
    assert stats.check(w.numpy(), mi.he_uniform(), fans=(288, 576)).passed
    assert float(w.abs().max()) <= math.sqrt(6 / 288)
    assert float(w.abs().max()) > 0.99 * math.sqrt(6 / 288)


def test_fills_in_place_without_grad_and_returns_the_tensor() -> None:
    layer = nn.Linear(64, 32)
    before = layer.weight.data_ptr()
    out = mi.compile(mi.xavier_normal(), "torch")(layer.weight)
    assert out is layer.weight and out.data_ptr() == before
    assert out.requires_grad and out.grad_fn is None


def test_a_non_contiguous_view_is_filled_in_place() -> None:
    base = torch.zeros(64, 128)
    view = base.t()[:, ::2]  # (128, 32), not contiguous
    for spec in (
        mi.he_normal(),
        mi.orthogonal(),
        mi.sparse(0.5),
        mi.mixture([(0.5, mi.ones()), (0.5, mi.normal())]),
    ):
        base.zero_()
        mi.compile(spec, "torch")(view, generator=torch.Generator().manual_seed(0))
        assert (base[::2] != 0).any() and (base[1::2] == 0).all(), spec


# --------------------------------------------------------------------------- devices


def test_built_in_specs_copy_nothing_to_the_host(monkeypatch) -> None:
    # On a device other than the CPU, no NumPy view exists (_host_view gives None): then
    # nothing may leave the device. (On the CPU the samplers may also compute through a NumPy
    # view of the tensor's own memory, which is no copy: see the test below.)
    def refuse(*args, **kwargs):
        raise AssertionError("a built-in spec moved tensor data to the host")

    monkeypatch.setattr(mit.draw, "_host_view", lambda t: None)
    for name in ("numpy", "cpu", "tolist", "__array__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    monkeypatch.setattr(torch, "from_numpy", refuse)
    monkeypatch.setattr(mit.draw, "law_values", refuse)  # the NumPy reference, for user laws only
    for spec in SPECS:
        if isinstance(spec, mi.spec.Custom):
            continue
        shape = (8, 4, 3, 3) if isinstance(spec, mi.spec.Dirac) else (64, 32)
        mi.compile(spec, "torch")(torch.empty(shape), generator=torch.Generator().manual_seed(0))


HOST_PATH_SPECS = [
    mi.he_normal(),
    mi.truncated_normal(mean=0.1, std=0.02, low=-1.0, high=2.5),
    mi.trunc_normal(std=1.0, a=-0.5, b=3.0),
    mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
    mi.mixture([(0.3, mi.uniform(-1, 1)), (0.1, mi.constant(2)), (0.6, mi.uniform(0, 1e-3))]),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("largest, smallest", [(1024, 1024), (4096, 64), (512, 16)])
def test_torchs_cpu_normal_drawn_in_chunks_equals_one_draw(dtype, largest, smallest) -> None:
    # What the truncated normals' chunked draw rests on (mit.draw._chunks): torch's CPU
    # normal_ over consecutive pieces whose sizes are multiples of 16, the last one >= 16
    # taking the rest, gives the numbers of one normal_ over the whole, from the same generator.
    for size in (16, 31, 1024, 1029, 2063, 3073, 5120, 20001):
        whole = torch.empty(size, dtype=dtype).normal_(0.1, 2.0, generator=torch.Generator().manual_seed(3))
        pieces = torch.empty(size, dtype=dtype)
        g = torch.Generator().manual_seed(3)
        chunks = mit.draw._chunks(size, largest, smallest)
        assert [a for a, _ in chunks] == [0] + [b for _, b in chunks[:-1]] and chunks[-1][1] == size
        assert all((b - a) % 16 == 0 and smallest <= b - a <= largest for a, b in chunks[:-1])
        for start, stop in chunks:
            pieces[start:stop].normal_(0.1, 2.0, generator=g)
        assert torch.equal(whole, pieces), (dtype, size)


@pytest.mark.parametrize("spares", [None, 40], ids=["spares", "spares-short"])
@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("spec", HOST_PATH_SPECS[:3], ids=repr)
def test_the_chunked_host_path_gives_the_numbers_of_the_device_path(
    spec, dtype, threads, spares, monkeypatch
) -> None:
    # Small chunks, so that a small tensor is drawn, searched and written in many pieces, each
    # taking its share of the spares in turn (with 40, they run out in an early chunk and the
    # rest are redrawn): still the torch-op path's numbers.
    monkeypatch.setenv("MULTIINIT_THREADS", threads)
    if spares is not None:
        monkeypatch.setattr(mit.draw, "_spare_count", lambda count, inside: spares)
    monkeypatch.setattr(mit.draw, "_LARGEST_CHUNK", 4096)
    monkeypatch.setattr(mit.draw, "_SMALLEST_CHUNK", 256)
    host = _fill(spec, (256, 129), dtype, seed=5)
    monkeypatch.setattr(mit.draw, "_host_view", lambda t: None)
    device = _fill(spec, (256, 129), dtype, seed=5)
    assert torch.equal(host, device)


_FAILING_SEARCH = """
import sys
import torch
import multiinit as mi
import multiinit.torch as mit

mit.draw._LARGEST_CHUNK, mit.draw._SMALLEST_CHUNK = 4096, 256
failing, calls, real_outside = int(sys.argv[1]), [], mit.draw._host.outside


def outside(values, lo, hi):
    calls.append(1)
    if len(calls) == failing:
        raise MemoryError("no room for the search")
    return real_outside(values, lo, hi)


mit.draw._host.outside = outside
try:
    mi.compile(mi.he_normal(), "torch")(torch.empty(256, 129))
except MemoryError:
    print("raised after", len(calls), "searches")
"""


@pytest.mark.parametrize("failing", [1, 3])
def test_a_chunk_whose_search_fails_raises_and_leaves_no_job_waiting(failing, tmp_path) -> None:
    # Each chunk's job waits for the one before it to take its spares: a job that fails must
    # still let the next ones through, so the error reaches the caller instead of a hang (in
    # a process of its own, so that a hang fails this test alone).
    searches = int(_two_threads(tmp_path, _FAILING_SEARCH, failing).split()[2])
    assert searches > failing  # the chunks after the failing one ran too


def _two_threads(tmp_path, script: str, *args: object) -> str:
    """The standard output of ``script`` run with ``args`` in a process of its own on two
    threads, which must exit 0 within two minutes."""
    path = tmp_path / "script.py"
    path.write_text(script)
    env = {**os.environ, "MULTIINIT_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, str(path), *map(str, args)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("spec", HOST_PATH_SPECS, ids=repr)
def test_the_host_path_and_the_device_path_give_the_same_numbers(spec, dtype, monkeypatch) -> None:
    # CPU tensors are drawn partly through NumPy views of their memory; any other device by
    # torch ops alone. Both do the same IEEE operations in the same order: same numbers.
    shares = []
    real_view = mit.draw._host_view

    def watched(t):
        view = real_view(t)
        if view is not None:
            shares.append(view.ctypes.data == t.data_ptr())  # a view of t, not a copy
        return view

    monkeypatch.setattr(mit.draw, "_host_view", watched)
    host = _fill(spec, (256, 128), dtype, seed=11)
    monkeypatch.setattr(mit.draw, "_host_view", lambda t: None)
    device = _fill(spec, (256, 128), dtype, seed=11)
    assert torch.equal(host, device)
    # NumPy has no bfloat16: a bfloat16 truncated normal stays on torch ops (a mixture
    # computes in a float32 buffer, which NumPy does view).
    on_host = dtype != torch.bfloat16 or isinstance(spec, mi.spec.Mixture)
    assert all(shares) and bool(shares) == on_host


@pytest.mark.parametrize("dtype, same_width", [(torch.float32, torch.int32), (torch.float64, torch.int64)])
def test_a_constant_pieces_bits_are_torchs_own(dtype, same_width) -> None:
    # A mixture's constant is written as its bit pattern; NumPy computes it, torch is the judge
    # (ties, subnormals, -0.0, and beyond float32's range, where both give inf).
    values = [0.0, -0.0, 0.1, -5.0, 1 / 3, 16777217.0, 2.0**-149 * 1.5, 1e-46, 3.4028236e38, 1e300, -math.inf]
    for value in values:
        expected = int(torch.tensor(value, dtype=dtype).view(same_width))
        assert mit.draw._bits_of(value, dtype) == expected, value


def test_custom_is_seeded_by_the_generator_of_the_tensor() -> None:
    spec = mi.custom(lambda rng, shape, dtype: rng.standard_normal(shape), name="torch.test.std_normal")
    a, b = (_fill(spec, (32, 8), seed=5) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, _fill(spec, (32, 8), seed=6))


def test_meta_tensors_are_checked_and_left_for_later() -> None:
    for spec in SPECS:
        shape = (8, 4, 3, 3) if isinstance(spec, mi.spec.Dirac) else (64, 32)
        meta = torch.empty(shape, device="meta")
        assert mi.compile(spec, "torch")(meta) is meta
    with pytest.raises(mi.ShapeError, match="only tensors with 2 dimensions"):
        mi.compile(mi.eye(), "torch")(torch.empty(2, 3, 4, device="meta"))
    layer = nn.Linear(4, 3, device="meta")
    mit.kaiming_uniform_(layer.weight, a=math.sqrt(5))
    layer.to_empty(device="cpu")
    mit.kaiming_uniform_(layer.weight, a=math.sqrt(5))
    assert float(layer.weight.detach().abs().max()) <= 0.5


def test_an_uninitialized_lazy_parameter_is_a_clear_error() -> None:
    lazy = nn.LazyLinear(3)
    with pytest.raises(mi.ShapeError, match="forward pass") as caught:
        mi.compile(mi.normal(), "torch")(lazy.weight)
    assert isinstance(caught.value, ValueError)  # torch raises ValueError here too
    with pytest.raises(ValueError):  # noqa: PT011 - torch's own error; its wording is torch's
        torch.nn.init.normal_(lazy.weight)
    lazy(torch.ones(2, 5))
    mi.compile(mi.normal(), "torch")(lazy.weight)


# --------------------------------------------------------------------------- errors and edges


@pytest.mark.parametrize("shape", [(0, 5), (7, 0), (0, 0)])
def test_empty_tensors_are_a_no_op(shape) -> None:
    for spec in SPECS:
        if not isinstance(spec, mi.spec.Dirac):  # 2-D is not a dirac shape, empty or not
            tensor = torch.empty(shape)
            assert mi.compile(spec, "torch")(tensor) is tensor


def test_a_random_spec_refuses_an_integer_tensor() -> None:
    with pytest.raises(mi.ShapeError, match=r"dtype torch.int64.*float16, torch.bfloat16"):
        mi.compile(mi.normal(), "torch")(torch.empty(3, 3, dtype=torch.int64))
    # Deterministic fills work on any dtype, as torch's do.
    assert mi.compile(mi.constant(7), "torch")(torch.empty(2, dtype=torch.int64)).tolist() == [7, 7]
    assert mit.eye_(torch.empty(2, 2, dtype=torch.int32)).tolist() == [[1, 0], [0, 1]]


def test_bad_arguments_name_what_is_allowed() -> None:
    fill_ = mi.compile(mi.normal(), "torch")
    with pytest.raises(mi.SpecError, match=r"tensor=\[1, 2\] is not allowed; tensor must be a torch.Tensor"):
        fill_([1, 2])
    with pytest.raises(mi.SpecError, match=r"generator=0 is not allowed"):
        fill_(torch.empty(2), generator=0)
    with pytest.raises(mi.SpecError, match=r"seed.*no compile options"):
        mi.compile(mi.normal(), "torch", seed=1)
    with pytest.raises(mi.SpecError, match="must be a multiinit spec"):
        mit.compile("normal()")
    with pytest.raises(mi.ShapeError, match=r"xavier_uniform\(\) cannot fill a tensor of shape \(5,\)"):
        mi.compile(mi.xavier_uniform(), "torch")(torch.empty(5))


def test_checks_are_remembered_per_shape_and_dtype_only() -> None:
    fill_ = mi.compile(mi.xavier_uniform(), "torch")
    fill_(torch.empty(4, 3))
    with pytest.raises(mi.ShapeError):
        fill_(torch.empty(4))
    with pytest.raises(mi.ShapeError, match=re.escape("dtype torch.int32")):
        fill_(torch.empty(4, 3, dtype=torch.int32))
    with pytest.raises(mi.ShapeError, match="lazy"):
        fill_(nn.LazyLinear(3).weight)
    meta = torch.empty(4, 3, device="meta")
    assert fill_(meta) is meta


def test_compiled_forms_are_values() -> None:
    assert mi.compile(mi.normal(std=2.0), "torch") == mi.normal(std=2.0).to("torch") == mit.normal(std=2.0)
    assert hash(mit.normal(std=2.0)) == hash(mi.compile(mi.normal(std=2.0), "torch"))
    assert mit.normal(std=2.0) != mit.normal(std=3.0)
    assert repr(mit.he_normal()) == "multiinit.torch.compile(he_normal())"


def test_the_namespace_holds_every_constructor() -> None:
    for name in mi.CONSTRUCTORS:
        assert callable(getattr(mit, name))
    assert isinstance(mit.mixture([(1.0, mit.zeros().spec)]), mit.TorchInitializer)

    @mit.custom(name="torch.test.decorated")
    def decorated(rng, shape, dtype):
        return np.full(shape, 3.0)

    assert decorated(torch.empty(2)).tolist() == [3.0, 3.0]


def test_adapter_docstring_examples() -> None:
    # The adapter is a package: its examples live in its files as well as in __init__.
    files = [importlib.import_module(f"{mit.__name__}.{m.name}") for m in pkgutil.iter_modules(mit.__path__)]
    modules = [mit, *files]
    results = [doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False) for module in modules]
    attempted, failed = sum(r.attempted for r in results), sum(r.failed for r in results)
    assert attempted > 40 and failed == 0, f"{failed} doctest example(s) failed"


# --------------------------------------------------------------------------- complex tensors

SQRT_HALF = math.sqrt(0.5)


def _complex(spec: mi.Spec, shape, dtype=torch.complex128, seed=1) -> tuple[np.ndarray, np.ndarray]:
    z = _fill(spec, shape, dtype, seed=seed)
    return z.real.double().numpy(), z.imag.double().numpy()


@pytest.mark.parametrize(
    "spec",
    [
        mi.uniform(-0.5, 0.25),
        mi.xavier_uniform(gain=2.0),
        mi.he_uniform(),
        mi.kaiming_uniform(a=math.sqrt(5)),
        mi.variance_scaling(0.5, "fan_out", "uniform"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_a_law_given_by_bounds_draws_each_part_from_it(spec, dtype) -> None:
    # torch's convention (uniform_ and xavier_uniform_ on a complex tensor): real and
    # imaginary parts each follow the real law, independently.
    real, imag = _complex(spec, (256, 128), dtype)
    for part in (real, imag):
        verdict = stats.check(part, spec, reference_seed=REFERENCE_SEED)
        assert verdict.passed, str(verdict)
    assert abs(np.corrcoef(real.ravel(), imag.ravel())[0, 1]) < stats.z_for() / math.sqrt(real.size)


@pytest.mark.parametrize(
    "spec",
    [
        mi.normal(0.5, 2.0),
        mi.xavier_normal(gain=2.0),
        mi.kaiming_normal(mode="fan_out", nonlinearity="relu"),
        mi.variance_scaling(3.0, "fan_avg", "untruncated_normal"),
    ],
    ids=repr,
)
def test_a_normal_law_is_the_circular_complex_normal_of_its_variance(spec) -> None:
    # torch's normal_ on a complex tensor: each part N(mean, std**2 / 2).
    shape = (256, 128)
    if isinstance(spec, mi.spec.Normal):
        mean, std = spec.mean, spec.std
    else:
        mean, std = 0.0, spec.as_variance_scaling().law(*mi.compute_fans(shape))[1]
    real, imag = _complex(spec, shape)
    for part in (real, imag):
        verdict = stats.check(part, mi.normal(mean, std * SQRT_HALF), reference_seed=REFERENCE_SEED)
        assert verdict.passed, str(verdict)


def test_sparse_and_mixtures_mix_complex_forms_element_by_element() -> None:
    real, imag = _complex(mi.sparse(0.25, std=0.5), (64, 300))
    assert ((real == 0) & (imag == 0)).sum(axis=0).min() >= 16
    assert stats.check(real[real != 0], mi.normal(0.0, 0.5 * SQRT_HALF), reference_seed=REFERENCE_SEED).passed
    spec = mi.mixture([(0.5, mi.uniform(-1, 1)), (0.25, mi.constant(3)), (0.25, mi.normal(0, 2.0))])
    real, imag = _complex(spec, (256, 128))
    threes = real == 3
    assert (imag[threes] == 0).all()  # a constant is real
    assert abs(threes.mean() - 0.25) < stats.z_for() * math.sqrt(0.25 * 0.75 / real.size)
    # In the unit square: the uniform component always, the normal one (each part N(0, 2))
    # when both parts land there.
    in_square = (np.abs(real) < 1) & (np.abs(imag) < 1)
    p = 0.5 + 0.25 * math.erf(1 / (2.0 * SQRT_HALF) / math.sqrt(2)) ** 2
    assert abs(in_square.mean() - p) < stats.z_for() * math.sqrt(p * (1 - p) / real.size)


@pytest.mark.parametrize("shape", [(8, 16), (16, 8), (4, 2, 2, 3)])
def test_complex_orthogonal_is_a_haar_unitary(shape) -> None:
    # A Haar (semi-)unitary's rows are uniform on the complex unit sphere of C^m (m = the
    # longer side): one entry z has |z|**2 ~ Beta(1, m - 1) and a uniform phase. Entry [0, 0]
    # of 400 independent draws is an i.i.d. sample of it.
    from scipy import stats as scipy_stats

    rows, cols = shape[0], math.prod(shape[1:])
    m = max(rows, cols)
    generator = torch.Generator().manual_seed(0)
    fill_ = mi.compile(mi.orthogonal(gain=3.0), "torch")
    entries = []
    for _ in range(400):
        w = fill_(torch.empty(shape, dtype=torch.complex128), generator=generator)
        flat = w.reshape(rows, cols) / 3.0
        gram = flat @ flat.conj().T if rows <= cols else flat.conj().T @ flat
        assert torch.allclose(gram, torch.eye(min(rows, cols), dtype=torch.complex128), atol=1e-12)
        entries.append(complex(flat[0, 0]))
    z = np.array(entries)
    assert scipy_stats.kstest(np.abs(z) ** 2, scipy_stats.beta(1, m - 1).cdf).pvalue >= stats.ALPHA
    assert (
        scipy_stats.kstest(np.angle(z), scipy_stats.uniform(-math.pi, 2 * math.pi).cdf).pvalue >= stats.ALPHA
    )
    low = mi.compile(mi.orthogonal(), "torch")(torch.empty(shape, dtype=torch.complex64))
    assert low.dtype == torch.complex64


@pytest.mark.parametrize(
    "spec",
    [
        mi.he_normal(),
        mi.truncated_normal(),
        mi.trunc_normal(std=0.02),
        mi.variance_scaling(distribution="truncated_normal"),
        mi.mixture([(0.5, mi.zeros()), (0.5, mi.glorot_normal())]),
        mi.custom(lambda rng, shape, dtype: rng.random(shape), name="torch.test.real"),
    ],
    ids=repr,
)
def test_laws_without_a_complex_form_raise_torchs_not_implemented_error(spec) -> None:
    tensor = torch.zeros(4, 3, dtype=torch.complex64)
    with pytest.raises(mit.DtypeError, match="complex") as caught:
        mi.compile(spec, "torch")(tensor)
    assert isinstance(caught.value, NotImplementedError) and isinstance(caught.value, mi.ShapeError)
    assert (tensor == 0).all()
    with pytest.raises(NotImplementedError):
        torch.nn.init.trunc_normal_(torch.zeros(4, 3, dtype=torch.complex64))  # torch's own


def test_deterministic_laws_fill_complex_tensors_with_real_values() -> None:
    assert (
        mi.compile(mi.constant(2.5), "torch")(torch.zeros(2, dtype=torch.complex64)).tolist()
        == [2.5 + 0j] * 2
    )
    assert torch.equal(
        mit.eye_(torch.zeros(2, 2, dtype=torch.complex128)), torch.eye(2, dtype=torch.complex128)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(mit.DtypeError, match=r"complex32|ComplexHalf|complex64 or torch\.complex128"):
            mi.compile(mi.normal(), "torch")(torch.zeros(2, dtype=torch.complex32))


# --------------------------------------------------------------------------- one-draw mixtures

SIMPLE_MIXTURES = [
    mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
    mi.mixture([(0.3, mi.uniform(-1, 1)), (0.1, mi.constant(2)), (0.6, mi.uniform(0, 1e-3))]),
    mi.mixture([(0.5, mi.constant(-1)), (0.5, mi.uniform(0, 3))]),
    mi.mixture([(0.995, mi.uniform(-1, 1)), (0.005, mi.uniform(100, 101))]),  # too light: two draws
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("spec", SIMPLE_MIXTURES, ids=repr)
def test_mixtures_of_uniforms_and_constants_draw_their_law(spec, dtype) -> None:
    x = _fill(spec, (256, 128), dtype, seed=21).double().numpy()
    if dtype == torch.float16:
        reference = _rounded(spec.sample((256, 128), seed=REFERENCE_SEED, dtype="float64"), dtype)
        check = stats.check_same(x, reference)
        assert check.passed, str(check)
    else:
        verdict = stats.check(x, spec, reference_seed=REFERENCE_SEED)
        assert verdict.passed, str(verdict)
    for _, component in spec.components:  # never a component's open upper bound
        if isinstance(component, mi.spec.Uniform):
            assert not (x == component.high).any()


@pytest.mark.parametrize("dtype, ulp_bits", [(torch.float32, 23), (torch.float64, 52)])
def test_a_one_draw_mixture_keeps_the_dtypes_resolution_in_every_component(dtype, ulp_bits) -> None:
    # U[-10, -5) holds the second quarter of the integers; its values come from r - start,
    # exact, so the 2**20 largest r of it hit every value of the dtype down from the top of
    # U[-10, -5): no gap, no value -5. (One float32 uniform cut in four would leave a
    # component one value in four of [-8, -5].)
    spec = SIMPLE_MIXTURES[0]
    pieces = mit.draw._pieces(spec.components, dtype)
    bits = 31 if dtype == torch.float32 else 63
    quarter = 2 ** (bits - 2)
    assert [(p[0], p[1]) for p in pieces] == [
        (0, mi.uniform(5, 10)),
        (quarter, mi.uniform(-10, -5)),
        (2 * quarter, mi.zeros()),
    ]  # exact weights
    numpy_int = np.int32 if bits == 31 else np.int64
    r = np.arange(2 * quarter - 2**20, 2 * quarter, dtype=numpy_int)
    out = np.empty(r.size, dtype=np.float32 if bits == 31 else np.float64)
    mit.draw._pieces_on_host(pieces, out, r)
    values = np.unique(out)
    assert values.max() < -5.0
    steps = np.diff(values)
    assert (steps == steps.min()).all() and steps.min() == 2.0 ** (2 - ulp_bits)  # one ulp in [-8, -4)
    device = torch.empty(r.size, dtype=dtype)
    mit.draw._pieces_on_device(pieces, device, torch.from_numpy(r))
    assert np.array_equal(device.numpy(), out)


@pytest.mark.parametrize("chunk, slots", [(1000, 3), (4096, 2), (777, 1)])
@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("spec", SIMPLE_MIXTURES[:3], ids=repr)
def test_a_one_draw_mixture_drawn_in_chunks_gives_the_numbers_of_one_whole_draw(
    spec, dtype, threads, chunk, slots, monkeypatch
) -> None:
    # On the CPU the integers are drawn chunk by chunk into a few reused buffers while a pool
    # thread writes the chunk before; on any other device (no host view) in one draw over the
    # tensor. Small chunks, fewer slots than chunks and a short last chunk: the same numbers.
    monkeypatch.setenv("MULTIINIT_THREADS", threads)
    monkeypatch.setattr(mit.draw, "_MIXTURE_CHUNK", chunk)
    monkeypatch.setattr(mit.draw, "_MIXTURE_SLOTS", slots)
    drawn = []
    real = mit.draw._pieces_on_host
    monkeypatch.setattr(mit.draw, "_pieces_on_host", lambda *a: drawn.append(1) or real(*a))
    law, chunked, whole = (
        mi.compile(spec, "torch"),
        torch.empty(97, 103, dtype=dtype),
        torch.empty(97, 103, dtype=dtype),
    )
    g_chunked, g_whole = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    law(chunked, generator=g_chunked)
    assert len(drawn) == -(-97 * 103 // chunk)  # the chunked path ran, once per chunk
    monkeypatch.setattr(mit.draw, "_host_view", lambda t: None)
    law(whole, generator=g_whole)
    assert torch.equal(chunked, whole)
    # and the generator is left where the whole draw leaves it: the next tensor's numbers too
    assert torch.equal(g_chunked.get_state(), g_whole.get_state())


_FAILING_WRITE = """
import sys
import torch
import multiinit as mi
import multiinit.torch as mit

mit.draw._MIXTURE_CHUNK, mit.draw._MIXTURE_SLOTS = 1000, 2
failing, calls, real = int(sys.argv[1]), [], mit.draw._pieces_on_host


def pieces_on_host(*args):
    calls.append(1)
    if len(calls) == failing:
        raise MemoryError("no room for the write")
    return real(*args)


mit.draw._pieces_on_host = pieces_on_host
spec = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])
try:
    mi.compile(spec, "torch")(torch.empty(97, 103))
except MemoryError:
    print("raised after", len(calls), "writes")
"""


@pytest.mark.parametrize("failing", [1, 4])
def test_a_mixture_chunk_whose_write_fails_raises_and_leaves_no_draw_waiting(failing, tmp_path) -> None:
    # A draw waits for its buffer's last chunk to be written: a write that fails must still free
    # the buffer, so that the error reaches the caller instead of a hang (in a process of its
    # own, so that a hang fails this test alone).
    out = _two_threads(tmp_path, _FAILING_WRITE, failing)
    assert out.startswith("raised after"), out
    assert int(out.split()[2]) == -(-97 * 103 // 1000)  # every chunk was still drawn and written


# --------------------------------------------------------------------------- user laws, fenced

#: The fence's error: ``multiinit.LawError`` (a SpecError) where the shared fence exists.
LAW_ERROR = getattr(mi, "LawError", mi.SpecError)


def _raises(rng, shape, dtype):
    raise ZeroDivisionError("the user's own bug")


BAD_LAWS = {
    "raises": (
        mi.custom(_raises, name="torch.test.raises"),
        LAW_ERROR,
        "ZeroDivisionError: the user's own bug",
    ),
    "nan": (
        mi.custom(lambda rng, shape, dtype: np.full(shape, np.nan), name="torch.test.nan"),
        LAW_ERROR,
        "NaN|non-finite",
    ),
    "inf": (
        mi.custom(lambda rng, shape, dtype: np.full(shape, -np.inf), name="torch.test.inf"),
        LAW_ERROR,
        "infinite|non-finite",
    ),
    "shape": (
        mi.custom(lambda rng, shape, dtype: np.zeros(3), name="torch.test.shape"),
        mi.MultiinitError,
        r"shape \(3,\)",
    ),
    "dtype": (
        mi.custom(lambda rng, shape, dtype: np.full(shape, "x"), name="torch.test.strings"),
        mi.MultiinitError,
        "dtype|numbers",
    ),
}


@pytest.mark.parametrize("how", list(BAD_LAWS))
@pytest.mark.parametrize("wrap", ["alone", "in a mixture"])
def test_a_failing_user_law_is_a_multiinit_error_naming_it_and_writes_nothing(how, wrap) -> None:
    law, error, message = BAD_LAWS[how]
    spec = law if wrap == "alone" else mi.mixture([(0.5, mi.normal()), (0.5, law)])
    for shape, dtype in (((6, 4), torch.float32), ((6, 4), torch.bfloat16), ((8, 2, 3), torch.float64)):
        tensor = torch.full(shape, 7.0, dtype=dtype)
        with pytest.raises(error, match=message) as caught:
            mi.compile(spec, "torch")(tensor, generator=torch.Generator().manual_seed(0))
        assert "torch.test." in str(caught.value)  # the law's name
        assert (tensor == 7).all(), "a failing user law wrote into the tensor"
        if how == "raises":
            assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_a_user_law_is_named_with_the_parameter_path_when_there_is_one() -> None:
    law = BAD_LAWS["nan"][0]
    tensor = torch.full((3, 2), 7.0)
    with pytest.raises(LAW_ERROR, match=re.escape("'head.weight'")):
        mit.draw._fill(law, tensor, None, None, path="head.weight")
    assert (tensor == 7).all()
