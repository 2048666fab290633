"""``from multiinit import torch as init`` replaces ``from torch.nn import init``: the same
names and signatures, the same laws (checked against torch.nn.init's own draws) and the same
error types for tensors the function cannot fill."""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import init as torch_init

import multiinit as mi
import multiinit.torch as mit
from multiinit import stats

NAMES = [
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
    "calculate_gain",
]


HELPERS = [
    "_calculate_fan_in_and_fan_out",
    "_calculate_correct_fan",
    "_no_grad_uniform_",
    "_no_grad_normal_",
    "_no_grad_trunc_normal_",
    "_no_grad_fill_",
    "_no_grad_zero_",
]


@pytest.mark.parametrize("name", NAMES + HELPERS)
def test_same_signature_as_torch_annotations_included(name) -> None:
    # inspect.signature equal: names, defaults, kinds, and the annotations themselves
    # (Literal modes and nonlinearities, torch.Generator | None), so that tools reading them
    # see torch's function.
    assert inspect.signature(getattr(mit, name)) == inspect.signature(getattr(torch_init, name))


def _linear_reset_parameters(layer: nn.Linear, init) -> None:
    """torch 2.13's nn.Linear.reset_parameters, as code copies it, with ``init`` swapped."""
    init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
    if layer.bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(layer.weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(layer.bias, -bound, bound)


def test_code_copied_from_reset_parameters_runs_with_the_private_helpers() -> None:
    layers = [nn.Linear(20, 7) for _ in range(3)]
    for layer, init in zip(layers, (None, torch_init, mit), strict=True):
        torch.manual_seed(5)
        if init is None:
            layer.reset_parameters()  # torch's own
        else:
            _linear_reset_parameters(layer, init)
    for a, b in ((layers[0], layers[2]), (layers[1], layers[2])):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert mit._calculate_correct_fan(torch.empty(8, 3, 2), "FAN_OUT") == 16


@pytest.mark.parametrize(
    "name",
    [
        "uniform",
        "normal",
        "xavier_uniform",
        "xavier_normal",
        "kaiming_uniform",
        "kaiming_normal",
        "orthogonal",
        "sparse",
        "constant",
        "eye",
        "dirac",
    ],
)
def test_deprecated_aliases_fill_a_tensor_and_warn_as_torchs_do(name) -> None:
    args = {"constant": (0.5,), "sparse": (0.25,)}.get(name, ())
    shape = (4, 2, 3) if name == "dirac" else (8, 6)
    tensors = []
    for init in (torch_init, mit):
        torch.manual_seed(3)
        with pytest.warns(
            FutureWarning, match=rf"`nn.init.{name}` is now deprecated in favor of `nn.init.{name}_`"
        ):
            tensors.append(getattr(init, name)(torch.zeros(shape), *args))
    if name != "sparse":  # torch's sparse_ shuffles without the seed (see below)
        assert torch.equal(*tensors)
    # Without a tensor, the same name is the contract's constructor: no warning, a filler.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(getattr(mit, name)(*args), mit.TorchInitializer)


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
def test_kaiming_warns_on_a_zero_element_tensor_as_torch_does(name) -> None:
    for init in (torch_init, mit):
        with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
            out = getattr(init, name)(torch.empty(0))  # torch returns before the 1-D check
        assert out.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_integer_tensors_raise_torchs_not_implemented_error(dtype) -> None:
    for init in (torch_init, mit):
        with pytest.raises(NotImplementedError):
            init.normal_(torch.zeros(3, dtype=dtype))
    with pytest.raises(mi.ShapeError, match=r"torch\.complex64 or torch\.complex128"):
        mit.xavier_uniform_(torch.zeros(3, 3, dtype=dtype))
    assert mit.constant_(torch.zeros(2, dtype=dtype), 1).tolist() == torch.ones(2, dtype=dtype).tolist()


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize(
    "name, args",
    [
        ("uniform_", (-1.0, 2.0)),
        ("normal_", (0.5, 2.0)),
        ("xavier_uniform_", ()),
        ("xavier_normal_", (2.0,)),
        ("kaiming_uniform_", (0.2,)),
        ("kaiming_normal_", (0, "fan_out")),
    ],
)
def test_complex_tensors_get_torchs_numbers(name, args, dtype) -> None:
    ours, theirs = (
        getattr(init, name)(
            torch.zeros(64, 32, dtype=dtype), *args, generator=torch.Generator().manual_seed(8)
        )
        for init in (mit, torch_init)
    )
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "call",
    [
        lambda i: i.uniform_(torch.zeros(3), 1.0, 0.0),
        lambda i: i.normal_(torch.zeros(3), 0.0, -1.0),
        lambda i: i.uniform_(torch.zeros(3), "a", 1.0),
        lambda i: i.trunc_normal_(torch.zeros(3), 0.0, 0.0),
        lambda i: i.dirac_(torch.zeros(4, 4, 3), 0),
        lambda i: i.constant_(torch.zeros(3), 2**70),
        lambda i: i.kaiming_uniform_(torch.zeros(3, 3), 0, 3),
        lambda i: i.eye_([1, 2]),
    ],
)
def test_bad_arguments_raise_the_builtin_torch_raises_as_a_multiinit_error(call) -> None:
    with pytest.raises(Exception) as theirs:
        call(torch_init)
    with pytest.raises(type(theirs.value)) as ours:
        call(mit)
    assert isinstance(ours.value, mi.MultiinitError)


# (name, args, kwargs, shape): every drop-in with non-default parameters.
CALLS = [
    ("uniform_", (-0.5, 0.25), {}, (256, 128)),
    ("normal_", (0.5, 0.01), {}, (256, 128)),
    ("trunc_normal_", (), {}, (256, 128)),
    ("trunc_normal_", (0.5, 0.3, 0.4, 2.0), {}, (256, 128)),  # mean inside, asymmetric
    ("trunc_normal_", (0.0, 0.5, 1.0, 3.0), {}, (256, 128)),  # torch's low-acceptance branch
    ("trunc_normal_", (0.0, 0.02), {}, (256, 128)),  # torch's +-2 absolute: no cut at all
    ("xavier_uniform_", (), {"gain": math.sqrt(2)}, (64, 32, 3, 3)),
    ("xavier_normal_", (2.0,), {}, (256, 128)),
    ("kaiming_uniform_", (), {"a": math.sqrt(5)}, (64, 32, 3, 3)),
    ("kaiming_normal_", (), {"mode": "fan_out", "nonlinearity": "relu"}, (256, 128)),
    ("kaiming_uniform_", (), {"mode": "FAN_OUT"}, (256, 128)),  # torch reads mode case-blind
    ("orthogonal_", (2.0,), {}, (64, 32, 3, 3)),
    ("sparse_", (0.3,), {"std": 0.02}, (256, 128)),
    ("constant_", (0.3,), {}, (4, 5)),
    ("ones_", (), {}, (4, 5)),
    ("zeros_", (), {}, (4, 5)),
    ("eye_", (), {}, (4, 5)),
    ("dirac_", (2,), {}, (8, 4, 3, 3)),
]
RANDOM = [c for c in CALLS if c[0] not in ("constant_", "ones_", "zeros_", "eye_", "dirac_")]


def _ids(calls):
    return [f"{n}{a}{k or ''}" for n, a, k, _ in calls]


def _call(module, name, args, kwargs, shape, seed=None, dtype=torch.float32) -> torch.Tensor:
    tensor = torch.empty(shape, dtype=dtype)
    if seed is not None and name in [c[0] for c in RANDOM]:
        kwargs = {**kwargs, "generator": torch.Generator().manual_seed(seed)}
    out = getattr(module, name)(tensor, *args, **kwargs)
    assert out is tensor
    return tensor


@pytest.mark.parametrize("name, args, kwargs, shape", RANDOM, ids=_ids(RANDOM))
def test_same_law_as_torchs_own_draw(name, args, kwargs, shape) -> None:
    ours = _call(mit, name, args, kwargs, shape, seed=1).numpy()
    theirs = _call(torch_init, name, args, kwargs, shape, seed=2).numpy()
    check = stats.check_same(ours, theirs)
    assert check.passed, str(check)
    if name == "sparse_":
        assert ((ours == 0).sum(axis=0) == (theirs == 0).sum(axis=0)).all()


# torch's trunc_normal_ is a slower rejection sampler and its sparse_ ignores the generator:
# those two are multiinit's own samplers, tested for their law above.
DELEGATED = [c for c in CALLS if c[0] not in ("trunc_normal_", "sparse_")]


@pytest.mark.parametrize("name, args, kwargs, shape", DELEGATED, ids=_ids(DELEGATED))
def test_where_torchs_function_is_the_law_its_numbers_are_ours(name, args, kwargs, shape) -> None:
    # Same generator seed, same numbers: the drop-in calls torch's own function for these.
    ours = _call(mit, name, args, kwargs, shape, seed=9)
    theirs = _call(torch_init, name, args, kwargs, shape, seed=9)
    assert torch.equal(ours, theirs)


def test_trunc_normal_has_torchs_absolute_bounds_and_the_exact_law() -> None:
    generator = torch.Generator().manual_seed(4)
    x = mit.trunc_normal_(torch.empty(256, 128), mean=0.5, std=0.3, a=0.4, b=2.0, generator=generator)
    assert float(x.min()) >= 0.4 and float(x.max()) <= 2.0
    verdict = stats.check(x.numpy(), mi.truncated_normal(0.5, 0.3, low=-1 / 3, high=5.0))
    assert verdict.passed, str(verdict)


def test_sparse_honours_the_generator_unlike_torchs() -> None:
    ours = [
        mit.sparse_(torch.empty(64, 32), 0.5, generator=torch.Generator().manual_seed(3)) for _ in range(2)
    ]
    assert torch.equal(ours[0], ours[1])
    theirs = [
        torch_init.sparse_(torch.empty(64, 32), 0.5, generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]
    # torch 2.13's sparse_ shuffles rows with torch.randperm(rows) and no generator: if this
    # starts failing, torch fixed it and the module docstring should say so.
    assert not torch.equal(theirs[0] == 0, theirs[1] == 0)


def _zero_rows(columns: list[torch.Tensor], k: int) -> np.ndarray:
    zeros = (torch.cat(columns, dim=1) == 0).numpy()
    assert (zeros.sum(axis=0) == k).all()
    return zeros.sum(axis=1)


@pytest.mark.parametrize("sparsity", [0.25, 0.75])
def test_sparse_zeros_are_a_uniform_choice_of_rows(sparsity) -> None:
    # Each row is zero in a column with probability k/rows, independently across columns, so
    # a row's zero count over n columns is Binomial(n, k/rows). 40 rows, n = 4000 columns,
    # drawn in one call (Floyd's algorithm over all columns) and in 800 calls of 5 columns
    # (one randperm per column); 0.75 also takes the complement (choose the rows to keep).
    k = math.ceil(sparsity * 40)
    generator = torch.Generator().manual_seed(0)
    wide = _zero_rows([mit.sparse_(torch.empty(40, 4000), sparsity, generator=generator)], k)
    narrow = _zero_rows(
        [mit.sparse_(torch.empty(40, 5), sparsity, generator=generator) for _ in range(800)], k
    )
    n, p = 4000, k / 40
    bound = stats.z_for() * math.sqrt(n * p * (1 - p))
    for counts in (wide, narrow):
        assert np.abs(counts - n * p).max() <= bound, counts


# (name, args, shape): a tensor the function cannot fill.
BAD = [
    ("xavier_uniform_", (), (5,)),
    ("xavier_normal_", (), ()),
    ("kaiming_uniform_", (), (5,)),
    ("kaiming_normal_", (), (3,)),
    ("orthogonal_", (), (5,)),
    ("eye_", (), (2, 3, 4)),
    ("eye_", (), (5,)),
    ("sparse_", (0.1,), (2, 3, 4)),
    ("sparse_", (0.1,), (5,)),
    ("dirac_", (), (3, 3)),
    ("dirac_", (), (1, 1, 1, 1, 1, 1)),
    ("dirac_", (2,), (3, 3, 3)),  # dim 0 not divisible by groups
]


@pytest.mark.parametrize("name, args, shape", BAD, ids=[f"{n}{s}" for n, _, s in BAD])
def test_same_error_types_for_tensors_that_cannot_be_filled(name, args, shape) -> None:
    with pytest.raises(Exception) as theirs:
        getattr(torch_init, name)(torch.empty(shape), *args)
    with pytest.raises(type(theirs.value)) as ours:
        getattr(mit, name)(torch.empty(shape), *args)
    assert isinstance(ours.value, mi.ShapeError)
    assert "cannot fill a tensor of shape" in str(ours.value)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("kaiming_uniform_", {"mode": "fan_avg"}),
        ("kaiming_normal_", {"nonlinearity": "gelu"}),
        ("kaiming_uniform_", {"a": "x"}),
    ],
)
def test_same_error_types_for_bad_parameters(name, kwargs) -> None:
    with pytest.raises(ValueError):
        getattr(torch_init, name)(torch.empty(3, 3), **kwargs)
    with pytest.raises(ValueError):
        getattr(mit, name)(torch.empty(3, 3), **kwargs)


def test_calculate_gain_is_torchs() -> None:
    for nonlinearity in ("linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"):
        assert mit.calculate_gain(nonlinearity) == torch_init.calculate_gain(nonlinearity)
    assert mit.calculate_gain("leaky_relu", 0.2) == torch_init.calculate_gain("leaky_relu", 0.2)


def _reset(module: nn.Module, init) -> None:
    """Code written against torch.nn.init (torch's own Linear/Conv reset_parameters)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            init.kaiming_uniform_(m.weight, a=math.sqrt(5))
            fan_in = m.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(m.bias, -bound, bound)
        elif isinstance(m, nn.BatchNorm2d):
            init.ones_(m.weight)
            init.zeros_(m.bias)


def test_existing_code_runs_unchanged_with_the_drop_in() -> None:
    def build() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))

    ours, theirs = build(), build()
    torch.manual_seed(0)
    _reset(ours, mit)
    torch.manual_seed(0)
    _reset(theirs, torch_init)
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert torch.equal(a, b), name
