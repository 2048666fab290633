"""``mi.apply`` on an ``nn.Module``: selectors, first match wins, logical fans for every layer
type (transposed, grouped and depthwise convs included), the bias's fans from its weight,
tied weights, seeds, portable mode, all-or-nothing, lazy and meta modules, and the
``net.apply(fn)`` idiom with compiled specs."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

import multiinit as mi
import multiinit.torch as mit
from multiinit import stats
from multiinit.rules import portable_rng


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    lazy = nn.parameter.UninitializedTensorMixin
    return {k: v for k, v in module.state_dict().items() if not isinstance(v, lazy)}


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in _state(module).items()}


def _unchanged(module: nn.Module, snapshot: dict[str, torch.Tensor]) -> bool:
    state = _state(module)
    return state.keys() == snapshot.keys() and all(torch.equal(v, snapshot[k]) for k, v in state.items())


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _transposed_logical(weight: np.ndarray, groups: int) -> np.ndarray:
    """A ConvTranspose weight (in, out/g, *k) as (out, in/g, *k), written out by hand."""
    c_in, out_g, *k = weight.shape
    grouped = weight.reshape(groups, c_in // groups, out_g, *k)
    return grouped.swapaxes(1, 2).reshape(groups * out_g, c_in // groups, *k)


# --------------------------------------------------------------------------- selectors


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 4)
    )


def _marks(net: nn.Module) -> dict[str, float]:
    """Which constant each parameter holds after a rules run with constant specs."""
    return {n: float(p.detach().reshape(-1)[0]) for n, p in net.named_parameters()}


@pytest.mark.parametrize(
    "rules, expected",
    [
        ({"3.weight": mi.constant(1)}, {"3.weight": 1}),
        ({"*.bias": mi.constant(2)}, {"0.bias": 2, "3.bias": 2, "4.bias": 2, "5.bias": 2}),
        ({"weight": mi.constant(3)}, {"0.weight": 3, "3.weight": 3, "4.weight": 3, "5.weight": 3}),
        ({nn.Linear: mi.constant(4)}, {"3.weight": 4, "3.bias": 4, "5.weight": 4, "5.bias": 4}),
        (
            {(nn.Conv2d, nn.BatchNorm1d): mi.constant(5)},
            {"0.weight": 5, "0.bias": 5, "4.weight": 5, "4.bias": 5},
        ),
        ({"dense": mi.constant(6)}, {"3.weight": 6, "3.bias": 6, "5.weight": 6, "5.bias": 6}),
        ({mi.select(kind="norm", role="weight"): mi.constant(7)}, {"4.weight": 7}),
        # First match wins; None leaves a parameter as it is.
        (
            [("5.*", None), ("*.bias", mi.constant(8)), (nn.Linear, mi.constant(9))],
            {"0.bias": 8, "3.bias": 8, "4.bias": 8, "3.weight": 9},
        ),
        ({"3.weight": "constant(value=10)"}, {"3.weight": 10}),  # a spec as text
    ],
)
def test_selectors_and_first_match_wins(rules, expected) -> None:
    net = _net()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(-1.0)
    assert mi.apply(net, rules, seed=0) is net
    assert _marks(net) == {n: expected.get(n, -1.0) for n in _marks(net)}


def test_a_rule_that_matches_nothing_names_the_closest_paths() -> None:
    net = _net()
    with pytest.raises(mi.RuleError, match=r"'3\.wieght'.*closest paths: '3\.weight'"):
        mi.apply(net, {"3.weight": mi.zeros(), "3.wieght": mi.zeros()})
    with pytest.raises(mi.RuleError, match=r"Conv1d.*layer types here: BatchNorm1d, Conv2d, Linear"):
        mi.apply(net, {nn.Conv1d: mi.zeros()})


def test_apply_refuses_what_is_not_a_module() -> None:
    with pytest.raises(mi.SpecError, match=re.escape("takes an nn.Module")):
        mit.apply(torch.empty(3), {"weight": mi.zeros()})


# --------------------------------------------------------------------------- fans and views

# (layer, hand-computed logical fans of its weight, neutral kind)
LAYERS = [
    (lambda: nn.Linear(128, 256), (128, 256), "dense"),
    (lambda: nn.Conv1d(32, 64, 5), (160, 320), "conv"),
    (lambda: nn.Conv2d(32, 64, 3), (288, 576), "conv"),
    (lambda: nn.Conv3d(16, 32, 3), (432, 864), "conv"),
    (lambda: nn.Conv2d(64, 128, 3, groups=4), (144, 1152), "conv"),
    (lambda: nn.Conv2d(256, 512, 5, groups=256), (25, 12800), "depthwise_conv"),
    # Transposed: stored (in, out/g, *k), logical (out, in/g, *k).
    (lambda: nn.ConvTranspose1d(64, 32, 5), (320, 160), "conv_transpose"),
    (lambda: nn.ConvTranspose2d(64, 96, 3, groups=2), (288, 864), "conv_transpose"),
    (lambda: nn.ConvTranspose3d(16, 32, 3), (432, 864), "conv_transpose"),
]


@pytest.mark.parametrize(
    "spec", [mi.he_uniform(), mi.variance_scaling(1.0, "fan_out", "untruncated_normal")], ids=repr
)
@pytest.mark.parametrize("make, fans, kind", LAYERS, ids=lambda v: "" if callable(v) else str(v))
def test_weight_fans_are_logical_for_every_layer_type(make, fans, kind, spec) -> None:
    layer = make()
    (weight,) = [p for p in mit.params_of(layer) if p.role == "weight"]
    assert weight.kind == kind
    mi.apply(layer, {"weight": spec}, seed=1)
    verdict = stats.check(_np(layer.weight), spec, fans=fans)
    assert verdict.passed, f"{layer}: {verdict}"


def test_a_grouped_transposed_conv_is_orthogonal_and_dirac_in_its_logical_view() -> None:
    layer = nn.ConvTranspose2d(64, 96, 3, groups=2)  # stored (64, 48, 3, 3), logical (96, 32, 3, 3)
    mi.apply(layer, {"weight": mi.orthogonal(gain=2.0)}, seed=0)
    logical = _transposed_logical(_np(layer.weight), 2).reshape(96, -1)
    assert np.abs(logical @ logical.T - 4 * np.eye(96)).max() < 1e-3

    small = nn.ConvTranspose2d(8, 12, 3, groups=2)  # stored (8, 6, 3, 3), logical (12, 4, 3, 3)
    mi.apply(small, {"weight": mi.dirac(groups=2)})
    expected = np.zeros((8, 6, 3, 3), dtype=np.float32)
    for group in range(2):
        for d in range(4):  # min(out/g = 6, in/g = 4)
            expected[group * 4 + d, d, 1, 1] = 1.0  # input channel group*4+d -> output group*6+d
    assert np.array_equal(_np(small.weight), expected)


def test_a_bias_draws_with_its_weights_fans_like_torchs_default() -> None:
    layer = nn.Linear(64, 32768)
    spec = mi.variance_scaling(1 / 3, "fan_in", "uniform")  # torch's default bias: U(+-1/sqrt(64))
    mi.apply(layer, {"bias": spec}, seed=2)
    bias = _np(layer.bias)
    verdict = stats.check(bias, spec, fans=(64, 32768))
    assert verdict.passed, str(verdict)
    assert stats.check_same(bias, _np(nn.Linear(64, 32768).bias)).passed
    assert float(np.abs(bias).max()) <= 1 / 8


def test_params_pair_biases_with_weights_and_order_weights_first() -> None:
    class BiasFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(6))
            self.weight = nn.Parameter(torch.zeros(6, 4, 3))

    net = nn.Sequential(
        nn.LSTM(10, 20), BiasFirst(), nn.BatchNorm1d(6), nn.ConvTranspose1d(4, 6, 5, groups=2)
    )
    got = [(p.path, p.order, p.fans) for p in mit.params_of(net)]
    assert got == [
        ("0.weight_ih_l0", 0, None),
        ("0.weight_hh_l0", 1, None),
        ("0.bias_ih_l0", 2, (10, 80)),
        ("0.bias_hh_l0", 3, (20, 80)),
        ("1.weight", 4, None),
        ("1.bias", 5, (12, 18)),
        ("2.weight", 6, None),
        ("2.bias", 7, None),  # a norm layer's weight is 1-D: no fans
        ("3.weight", 8, None),
        ("3.bias", 9, (10, 30)),  # logical (6, 2, 5)
    ]


def test_torch_default_preset_draws_torchs_own_default_law() -> None:
    def build() -> nn.Module:
        return nn.Sequential(nn.Linear(128, 256), nn.Conv2d(32, 64, 3), nn.Embedding(1000, 32))

    ours = mi.apply(build(), mi.presets.torch_default, seed=0)
    torch.manual_seed(1)
    theirs = build()  # torch's own reset_parameters
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        check = stats.check_same(_np(a), _np(b))
        assert check.passed, f"{name}: {check}"


def test_a_transposed_conv_gets_the_logical_fan_not_torchs_stored_one() -> None:
    # Documented difference: torch's own default, kaiming_uniform_(a=sqrt(5)), reads fan_in
    # off the stored (in, out, k) shape (32 * 9 here); at model level multiinit uses the
    # logical (out, in, k) view: 64 * 9.
    rules = {"weight": mi.kaiming_uniform(a=math.sqrt(5))}
    layer = mi.apply(nn.ConvTranspose2d(64, 32, 3), rules, seed=0)
    assert float(layer.weight.detach().abs().max()) <= 1 / math.sqrt(64 * 9)
    torch.manual_seed(0)
    assert float(nn.ConvTranspose2d(64, 32, 3).weight.detach().abs().max()) > 1 / math.sqrt(64 * 9)


# --------------------------------------------------------------------------- tied, seeds, portable


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(1000, 64)
        self.hidden = nn.Linear(64, 64)
        self.head = nn.Linear(64, 1000, bias=False)
        self.head.weight = self.embed.weight


def test_tied_weights_are_one_parameter_written_once(monkeypatch) -> None:
    from multiinit.torch import sharded

    net = Tied()
    assert [(p.path, p.aliases) for p in mit.params_of(net)] == [
        ("embed.weight", ("head.weight",)),
        ("hidden.weight", ()),
        ("hidden.bias", ()),
    ]
    writes = []
    original = sharded.fill_parameter

    def counting(tensor, view, source):
        writes.append(id(tensor))
        return original(tensor, view, source)

    monkeypatch.setattr(sharded, "fill_parameter", counting)
    mi.apply(net, {"weight": mi.normal(std=0.02)}, seed=0)
    monkeypatch.undo()
    assert writes.count(id(net.embed.weight)) == 1 and len(writes) == 2
    assert net.head.weight is net.embed.weight
    assert stats.check(_np(net.embed.weight), mi.normal(std=0.02)).passed


def test_a_tied_parameter_is_selected_by_any_of_its_paths() -> None:
    # Deliberate change (issue 15.3): "head.weight" is in state_dict(), so a rule may name it.
    for selector in ("head.weight", "head.*", mi.select(path="head.weight")):
        net = Tied()
        mi.apply(net, {selector: mi.constant(3.0)})
        assert float(net.embed.weight.detach().min()) == 3.0 == float(net.head.weight.detach().max())
        assert float(net.hidden.weight.detach().abs().max()) < 3.0
    # One parameter: the first rule that selects it by any path wins.
    net = Tied()
    mi.apply(net, [("embed.weight", mi.zeros()), ("head.weight", mi.ones())])
    assert float(net.head.weight.detach().abs().max()) == 0.0
    # A module used twice: its parameters answer to both paths too.
    shared = nn.Linear(3, 3)
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    assert [(p.path, p.aliases) for p in mit.params_of(twice)] == [
        ("0.weight", ("2.weight",)),
        ("0.bias", ("2.bias",)),
    ]
    mi.apply(twice, {"2.bias": mi.ones()})
    assert twice[0].bias.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(mi.RuleError, match=r"closest paths: .*'head\.weight'"):
        mi.apply(Tied(), {"head.wieght": mi.zeros()})


def test_seeds_reproduce_and_differ() -> None:
    rules = {"weight": mi.he_normal(), "bias": mi.uniform(-1, 1)}
    a, b, c = (mi.apply(Tied(), rules, seed=s) for s in (3, 3, 4))
    for (name, x), (_, y), (_, z) in zip(
        a.named_parameters(), b.named_parameters(), c.named_parameters(), strict=True
    ):
        assert torch.equal(x, y) and not torch.equal(x, z), name
    # No seed: torch's global RNG, so torch.manual_seed reproduces it.
    draws = []
    for _ in range(2):
        torch.manual_seed(5)
        draws.append(mi.apply(Tied(), rules))
    assert all(torch.equal(x, y) for x, y in zip(draws[0].parameters(), draws[1].parameters(), strict=True))


def test_portable_mode_writes_the_reference_numbers_in_torch_layout() -> None:
    net = nn.Sequential(nn.Linear(6, 4), nn.ConvTranspose2d(4, 6, 3, groups=2))
    specs = {
        "0.weight": mi.xavier_uniform(),
        "0.bias": mi.variance_scaling(1 / 3, "fan_in", "uniform"),
        "1.weight": mi.orthogonal(),
        "1.bias": mi.normal(),
    }
    mi.apply(net, specs, seed=7, portable=True)
    # order: 0.weight 0, 0.bias 1, 1.weight 2, 1.bias 3; logical shapes and fans by hand.
    expected = {
        "0.weight": mi.xavier_uniform().sample((4, 6), seed=portable_rng(7, 0)),
        "0.bias": specs["0.bias"].sample((4,), seed=portable_rng(7, 1), fans=(6, 4)),
        "1.weight": mi.orthogonal().sample((6, 2, 3, 3), seed=portable_rng(7, 2)),
        "1.bias": mi.normal().sample((6,), seed=portable_rng(7, 3)),
    }
    # Logical (6, 2, 3, 3) = groups of (3 out, 2 in) back to stored (4 in, 3 out/g, 3, 3).
    logical = expected["1.weight"]
    expected["1.weight"] = logical.reshape(2, 3, 2, 3, 3).swapaxes(1, 2).reshape(4, 3, 3, 3)
    assert np.array_equal(_transposed_logical(expected["1.weight"], 2), logical)
    for name, param in net.named_parameters():
        assert np.array_equal(_np(param), expected[name]), name
    with pytest.raises(mi.RuleError, match="portable=True needs seed"):
        mi.apply(net, specs, portable=True)


def test_bfloat16_and_float64_modules() -> None:
    for dtype in (torch.bfloat16, torch.float64):
        net = nn.Linear(128, 256, dtype=dtype)
        mi.apply(net, {"weight": mi.he_normal(), "bias": mi.zeros()}, seed=0)
        assert net.weight.dtype == dtype and float(net.bias.detach().abs().max()) == 0
        x = net.weight.detach().double().numpy()
        sigma = math.sqrt(2 / 128) / mi.spec.TRUNCATED_STD_2
        assert np.abs(x).max() <= 2 * sigma
        reference = mi.he_normal().sample((256, 128), seed=1, dtype="float64")
        reference = torch.from_numpy(reference).to(dtype).double().numpy()
        assert stats.check_same(x, reference).passed
        mi.apply(net, {"weight": mi.xavier_normal()}, seed=0, portable=True)
        assert net.weight.dtype == dtype


# --------------------------------------------------------------------------- all or nothing


def _custom_failure(rng, shape, dtype):
    raise RuntimeError("the user's law failed")


@pytest.mark.parametrize(
    "rules, error",
    [
        ({"weight": mi.normal(), "nothing.here": mi.zeros()}, mi.RuleError),
        ({"weight": mi.xavier_uniform(), "bias": mi.eye()}, mi.ShapeError),
        (
            [("0.weight", mi.normal()), ("3.weight", mi.custom(_custom_failure, name="torch.test.fails"))],
            mi.LawError,
        ),
        (
            [
                ("0.weight", mi.normal()),
                ("3.weight", mi.custom(lambda rng, shape, dtype: np.zeros(3), name="torch.test.bad_shape")),
            ],
            mi.ShapeError,
        ),
        ([("0.weight", mi.normal()), (nn.BatchNorm1d, mi.uniform())], None),  # control: succeeds
    ],
)
def test_an_error_leaves_the_module_exactly_as_it_was(rules, error) -> None:
    net = _net()
    before = _snapshot(net)
    if error is None:
        mi.apply(net, rules, seed=0)
        assert not _unchanged(net, before)
        return
    with pytest.raises(error):
        mi.apply(net, rules, seed=0)
    assert _unchanged(net, before)


def test_lazy_parameters_must_be_materialized_before_a_rule_fills_them() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.LazyLinear(2))
    before = _snapshot(net)
    with pytest.raises(mi.ShapeError, match=r"'2\.weight' of LazyLinear.*forward pass"):
        mi.apply(net, {"0.weight": mi.zeros(), "weight": mi.ones()})
    assert _unchanged(net, before)
    mi.apply(net, {"0.*": mi.zeros(), "2.*": None})  # rules that leave them alone are fine
    assert float(net[0].weight.detach().abs().max()) == 0
    net(torch.ones(1, 4))
    mi.apply(net, {"weight": mi.ones()})
    assert float(net[2].weight.detach().min()) == 1


def test_meta_modules_need_a_device_and_are_materialized_with_one() -> None:
    # Deliberate change (issue 12.2): a meta model without device= is an error that says what
    # to do, never a silent no-op; with device= it is materialized and initialized at once.
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    for portable in (False, True):
        with pytest.raises(mi.ShapeError, match=r"'0\.weight'.*meta device.*device="):
            mi.apply(net, {"weight": mi.orthogonal(), "bias": mi.zeros()}, seed=0, portable=portable)
    with pytest.raises(mi.ShapeError, match=r"'0\.bias'"):
        mi.apply(net, {"bias": mi.orthogonal()}, device="cpu")
    assert all(p.is_meta for p in net.parameters())
    mi.apply(net, {"weight": mi.orthogonal(), "bias": mi.zeros()}, seed=0, device="cpu")
    assert not any(p.is_meta for p in net.parameters())
    w = net[0].weight.detach()
    assert torch.allclose(w.T @ w, torch.eye(4), atol=1e-5)
    assert float(net[1].bias.detach().abs().max()) == 0


# --------------------------------------------------------------------------- the seed's idiom


def test_net_apply_with_compiled_specs_inside_the_function() -> None:
    net = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 128))
    weight_, bias_ = mi.normal(std=0.01).to("torch"), mit.zeros()

    def init_normal(module: nn.Module) -> None:
        if type(module) == nn.Linear:  # noqa: E721 - the seed chapter's own test
            weight_(module.weight)
            bias_(module.bias)

    torch.manual_seed(0)
    net.apply(init_normal)
    for layer in (net[0], net[2]):
        assert stats.check(_np(layer.weight), mi.normal(std=0.01)).passed
        assert float(layer.bias.detach().abs().max()) == 0
