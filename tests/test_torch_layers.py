"""Layers the torch walker knows through the registry (issue 18) and torch's own attention
(issue 14.2): kinds, logical views and fans from ``mi.register_layer``, ``known`` for
``mi.plan``, values that land in a registered layout (native, portable, and shard by shard),
and ``nn.MultiheadAttention``'s packed projections read as three (E, E) matrices.

The layers here are defined in this file (transformers' own are tested in
test_torch_transformers.py). Statistical checks use ``multiinit.stats`` (every check at
level 1e-6); the fans they check against are written out from the layer's sizes, never
taken from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import multiinit as mi
import multiinit.torch as mit
from multiinit import stats
from multiinit.rules import Draw
from multiinit.torch import model as _model, sharded


class TransposedLinear(nn.Module):
    """A dense layer stored (in, out), like transformers' Conv1D: y = x @ w + b."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class HeadsProjection(nn.Module):
    """A query projection stored (dim, heads, head_dim), as Keras' and Flax's kernels are,
    with a per-head bias (heads, head_dim)."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.zeros(dim, heads, head_dim))
        self.head_bias = nn.Parameter(torch.zeros(heads, head_dim))


class Interleaved(nn.Module):
    """A weight stored (heads, in, head_dim): its out axes are not next to each other."""

    def __init__(self, heads: int, n_in: int, head_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(heads, n_in, head_dim))


class Experts(nn.Module):
    """Stacked experts, x @ w[e] + b[e]: (experts, in, out) and a per-expert bias."""

    def __init__(self, experts: int, n_in: int, n_out: int) -> None:
        super().__init__()
        self.up_proj = nn.Parameter(torch.zeros(experts, n_in, n_out))
        self.up_bias = nn.Parameter(torch.zeros(experts, n_out))


class Mystery(nn.Module):
    """A layer multiinit does not know."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.zeros(16, 128))


@pytest.fixture(autouse=True)
def _isolated():
    # Every registration made by a test is undone after it.
    with mi.layers.isolated():
        yield


def _register_all() -> None:
    mi.register_layer(TransposedLinear, kind="dense", layout={"weight": "in,out"})
    mi.register_layer(
        HeadsProjection,
        kind="attention",
        layout={"kernel": "in,out,out", "head_bias": "out,out"},
        fans_from="kernel",
    )
    mi.register_layer(Interleaved, kind="dense", layout={"weight": "out,in,out"})
    mi.register_layer(
        Experts,
        kind="dense",
        layout={"up_proj": "batch,in,out", "up_bias": "batch,out"},
        fans_from={"up_bias": "up_proj"},
    )


def _params(module: nn.Module) -> dict[str, mi.rules.Param]:
    return {p.path: p for p in mit.params_of(module)}


# --------------------------------------------------------------------------- kinds, views, fans


def test_a_registered_layer_has_its_kind_layout_and_fans() -> None:
    net = nn.ModuleDict(
        {
            "t": TransposedLinear(128, 512),
            "q": HeadsProjection(32, 8, 16),
            "e": Experts(4, 24, 40),
            "m": Mystery(),
        }
    )
    before = _params(net)
    assert before["t.weight"].kind is None and not before["t.weight"].known
    assert before["t.weight"].view.fans == (512, 128)  # read as (out, in): the wrong fans
    _register_all()
    params = _params(net)
    got = {path: (p.kind, p.known, p.logical_shape, p.fans_for(mi.he_normal())) for path, p in params.items()}
    assert got == {
        "t.weight": ("dense", True, (512, 128), (128, 512)),
        "t.bias": ("dense", True, (512,), (128, 512)),
        "q.kernel": ("attention", True, (128, 32), (32, 8 * 16)),
        "q.head_bias": ("attention", True, (128,), (32, 8 * 16)),
        "e.up_proj": ("dense", True, (4, 40, 24), (24, 40)),
        "e.up_bias": ("dense", True, (4, 40), (24, 40)),
        "m.proj": (None, False, (16, 128), (128, 16)),
    }


def test_a_registration_wins_over_torchs_own_class_and_its_subclasses_follow() -> None:
    class Gate(nn.Linear):
        pass

    class GateChild(Gate):
        pass

    assert _params(Gate(4, 6))["weight"].kind == "dense"
    mi.register_layer(Gate, kind="attention", layout={"weight": "in,out"})
    params = _params(nn.Sequential(Gate(4, 6), GateChild(4, 6), nn.Linear(4, 6)))
    assert [(p.path, p.kind, p.logical_shape) for p in params.values() if p.role == "weight"] == [
        ("0.weight", "attention", (4, 6)),
        ("1.weight", "attention", (4, 6)),
        ("2.weight", "dense", (6, 4)),
    ]


def test_selectors_and_presets_reach_registered_layers() -> None:
    net = nn.Sequential(TransposedLinear(64, 256), nn.Linear(256, 8), Mystery())
    plan = mi.plan(net, [(mi.select(kind="dense", role="weight"), mi.he_normal()), ("*", None)])
    assert [r.path for r in plan if r.rule == 0] == ["1.weight"]
    _register_all()
    plan = mi.plan(net, [(mi.select(kind="dense", role="weight"), mi.he_normal()), ("*", None)])
    assert [r.path for r in plan if r.rule == 0] == ["0.weight", "1.weight"]
    preset = mi.plan(net, mi.presets.torch_default)
    assert {r.path for r in preset if r.spec is not None} == {"0.weight", "0.bias", "1.weight", "1.bias"}
    mi.apply(net, mi.presets.torch_default, seed=0)
    # torch's default on a 64 -> 256 dense layer: U(+-1/sqrt(64)) for weight and bias.
    for t in (net[0].weight, net[0].bias):
        assert 0.9 / 8 < float(t.detach().abs().max()) <= 1 / 8


def test_plan_flags_a_fan_based_law_on_an_unknown_layer() -> None:
    _register_all()
    net = nn.Sequential(TransposedLinear(128, 512), Mystery())
    plan = mi.plan(
        net, [("0.weight", mi.kaiming_uniform(a=math.sqrt(5))), ("1.proj", mi.he_normal()), ("*", None)]
    )
    rows = {r.path: r for r in plan}
    assert rows["0.weight"].fans == (128, 512) and not rows["0.weight"].guessed
    assert rows["1.proj"].kind == "unknown" and rows["1.proj"].guessed
    assert [r.path for r in plan.guesses] == ["1.proj"]
    text = str(plan)
    assert "128 -> 512" in text and "register_layer" in text
    # A law that uses no fans is no guess, even on an unknown layer.
    assert not mi.plan(net, [("1.proj", mi.normal()), ("*", None)]).guesses


def test_a_layout_that_does_not_fit_names_the_parameter() -> None:
    mi.register_layer(Mystery, kind="dense", layout={"proj": "in,out,out"})
    with pytest.raises(mi.ShapeError, match=r"'1\.proj' \(Mystery\).*in,out,out.*\(16, 128\)"):
        mit.params_of(nn.Sequential(nn.Linear(2, 2), Mystery()))


def test_recurrent_layers_are_known_and_their_biases_take_their_weights_fans() -> None:
    params = _params(nn.LSTM(10, 20, num_layers=2))
    assert {p.kind for p in params.values()} == {"recurrent"} and all(p.known for p in params.values())
    assert params["bias_ih_l0"].fans == (10, 80) and params["bias_hh_l1"].fans == (20, 80)


# --------------------------------------------------------------------------- values in a layout


LAWS = [
    mi.kaiming_uniform(a=math.sqrt(5)),
    mi.glorot_normal(),
    mi.orthogonal(gain=2.0),
    mi.eye(),
    mi.sparse(0.3),
    mi.normal(std=0.02),
    mi.mixture([(0.5, mi.zeros()), (0.5, mi.he_uniform())]),
]


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
@pytest.mark.parametrize("spec", LAWS, ids=repr)
def test_a_registered_layout_holds_the_transposed_values_of_its_logical_twin(spec, portable) -> None:
    # The stream rule defines values on the logical (out, in) array: an (in, out) layer at
    # the same position holds exactly the transpose of an nn.Linear's.
    _register_all()
    ours = mi.apply(
        TransposedLinear(300, 520), {"weight": spec, "bias": mi.zeros()}, seed=4, portable=portable
    )
    twin = mi.apply(nn.Linear(300, 520), {"weight": spec, "bias": mi.zeros()}, seed=4, portable=portable)
    assert torch.equal(ours.weight.detach().T, twin.weight.detach())
    if portable:
        expected = mi.reference.sample(spec, (520, 300), seed=(4, 0))
        assert np.array_equal(ours.weight.detach().numpy().T, expected.astype(np.float32))


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_multi_axis_layouts_are_drawn_in_their_logical_view(portable) -> None:
    _register_all()
    net = nn.Sequential(HeadsProjection(64, 8, 32), Interleaved(8, 64, 32), Experts(3, 48, 80))
    spec = mi.he_uniform()
    mi.apply(net, {"*bias": mi.he_normal(), "*": spec}, seed=2, portable=portable)
    logical = {
        # (dim, heads, head_dim) -> (heads * head_dim, dim)
        "0.kernel": net[0].kernel.detach().numpy().reshape(64, 256).T,
        # (heads, in, head_dim) -> (heads * head_dim, in)
        "0.weight": net[1].weight.detach().numpy().transpose(0, 2, 1).reshape(256, 64),
        # (experts, in, out) -> (experts, out, in)
        "2.up_proj": net[2].up_proj.detach().numpy().transpose(0, 2, 1),
    }
    assert stats.check(logical["0.kernel"], spec, fans=(64, 256)).passed
    assert stats.check(logical["0.weight"], spec, fans=(64, 256)).passed
    assert stats.check(logical["2.up_proj"].reshape(3 * 80, 48), spec, fans=(48, 80)).passed
    # the per-head bias and the experts' biases take their kernel's fans
    assert stats.check(net[0].head_bias.detach().numpy().ravel(), mi.he_normal(), fans=(64, 256)).passed
    assert stats.check(net[2].up_bias.detach().numpy().ravel(), mi.he_normal(), fans=(48, 80)).passed
    if portable:
        params = _params(net)
        for path in ("0.kernel", "1.weight", "2.up_proj"):
            order = params[path].order
            want = mi.reference.sample(
                spec, params[path].logical_shape, seed=(2, order), fans=params[path].fans_for(spec)
            )
            got = logical["0.weight" if path == "1.weight" else path]
            assert np.array_equal(got, want.astype(np.float32)), path


# --------------------------------------------------------------------------- shard by shard


def _runs_of(per_dim: list[list[tuple[int, int]]]) -> list[list[tuple[int, int, int]]]:
    out = []
    for runs in per_dim:
        local, position = [], 0
        for first, length in runs:
            local.append((first, position, length))
            position += length
        out.append(local)
    return out


def _local(whole: torch.Tensor, runs: list[list[tuple[int, int, int]]]) -> torch.Tensor:
    part = whole
    for dim, dim_runs in enumerate(runs):
        index = torch.cat([torch.arange(g, g + n) for g, _, n in dim_runs]) if dim_runs else torch.arange(0)
        part = part.index_select(dim, index)
    return part


def _shardings(shape: tuple[int, ...]) -> list[list[list[tuple[int, int]]]]:
    """Shard(d) over 3 (uneven) and 4 ranks on every dim, and FSDP2+TP's _StridedShard(0)."""
    full = [[(0, n)] for n in shape]
    out = []
    for dim in range(len(shape)):
        for ranks in (3, 4):
            for r in range(ranks):
                cut = list(full)
                cut[dim] = sharded._chunk(full[dim], ranks, r)
                out.append(cut)
    for dp in range(2):
        for tp in range(2):
            cut = list(full)
            cut[0] = sharded._chunk(sharded._strided(full[0], 2, 2, dp), 2, tp)
            out.append(cut)
    return out


def _check_shards(layer: nn.Module, role: str, spec: mi.Spec, portable: bool) -> None:
    """Each rank's shard, drawn alone through the writer, equals that part of the whole."""
    mi.apply(layer, {role: spec, "*": None}, seed=9, portable=portable)
    (param,) = [p for p in mit.params_of(layer) if p.role == role]
    whole = param.handle.detach().clone()
    writer = _model._Writer(layer, 9, None)
    draw = Draw(9, param.order, portable)
    prepared = writer.prepare(param, spec, draw) if mi.rules.needs_prepare(spec) else None
    source = writer.source(param, spec, draw, prepared)
    shards, pieces = [], []
    for cut in _shardings(tuple(whole.shape)):
        runs = _runs_of(cut)
        local = torch.full(tuple(sum(n for _, _, n in r) for r in runs), float("nan"))
        shards.append((cut, runs, local))
        pieces.extend(sharded._pieces(param.view, runs, local))
    with torch.no_grad():
        sharded.fill(source, pieces)
    for cut, runs, local in shards:
        assert torch.equal(local, _local(whole, runs)), cut


SHARD_LAWS = [
    mi.he_normal(),
    mi.orthogonal(),
    mi.eye(),
    mi.normal(std=0.02),
    mi.custom(lambda rng, shape, dtype: rng.standard_normal(shape).astype(dtype), name="t.layers.parts"),
]


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
@pytest.mark.parametrize("spec", SHARD_LAWS, ids=repr)
def test_a_transposed_layout_is_drawn_shard_by_shard(spec, portable) -> None:
    _register_all()
    # (in 530, out 515): more than one tile, uneven shards, both dims cut.
    _check_shards(TransposedLinear(530, 515), "weight", spec, portable)


@pytest.mark.parametrize(
    "layer, role",
    [
        (lambda: HeadsProjection(40, 6, 50), "kernel"),
        (lambda: Interleaved(6, 40, 50), "weight"),
        (lambda: Experts(3, 70, 90), "up_proj"),
        (lambda: nn.MultiheadAttention(60, 4), "in_proj_weight"),
        (lambda: nn.MultiheadAttention(60, 4, add_bias_kv=True), "bias_k"),
    ],
    ids=["in,out,out", "out,in,out", "batch,in,out", "packed-qkv", "bias_k"],
)
@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_multi_axis_views_are_drawn_shard_by_shard(layer, role, portable) -> None:
    _register_all()
    spec = mi.normal() if role == "bias_k" else mi.glorot_uniform()
    _check_shards(layer(), role, spec, portable)


def test_layout_pieces_are_views_of_the_destination() -> None:
    # No piece is a copy: writing through each one fills the local tensor completely.
    view = mi.Layout("out,in,out").view((6, 40, 50))
    local = torch.zeros(6, 20, 50)
    runs = [[(0, 0, 6)], [(10, 0, 20)], [(0, 0, 50)]]
    pieces = sharded._pieces(view, runs, local)
    covered = 0
    for box, target in pieces:
        assert target.data_ptr() >= local.data_ptr() and tuple(target.shape) == tuple(
            s.stop - s.start for s in box
        )
        target.fill_(1)
        covered += target.numel()
    assert covered == local.numel() and bool((local == 1).all())


# --------------------------------------------------------------------------- nn.MultiheadAttention


E, HEADS = 96, 8


def test_multihead_attention_kinds_views_and_fans() -> None:
    mha = nn.MultiheadAttention(E, HEADS, add_bias_kv=True)
    params = _params(mha)
    got = {
        path: (p.kind, p.known, p.logical_shape, p.view.batch, p.fans_for(mi.glorot_uniform()))
        for path, p in params.items()
    }
    assert got == {
        "in_proj_weight": ("attention", True, (3, E, E), 1, (E, E)),
        "in_proj_bias": ("attention", True, (3 * E,), 0, (E, E)),
        "bias_k": ("attention", True, (E,), 0, (E, E)),
        "bias_v": ("attention", True, (E,), 0, (E, E)),
        "out_proj.weight": ("dense", True, (E, E), 0, (E, E)),
        "out_proj.bias": ("dense", True, (E,), 0, (E, E)),
    }
    # One query projection E -> E (HEADS heads of E // HEADS): the fans of Keras' and Flax's
    # per-projection query kernel (E, HEADS, E // HEADS), read with the same layout roles.
    assert got["in_proj_weight"][-1] == mi.Layout("in,out,out").fans((E, HEADS, E // HEADS))


def test_multihead_attention_with_its_own_key_and_value_sizes() -> None:
    mha = nn.MultiheadAttention(E, HEADS, kdim=40, vdim=24, add_bias_kv=True)
    params = _params(mha)
    fans = {path: p.fans_for(mi.he_normal()) for path, p in params.items() if path != "in_proj_bias"}
    assert (
        fans["q_proj_weight"] == (E, E)
        and fans["k_proj_weight"] == (40, E)
        and fans["v_proj_weight"] == (24, E)
    )
    assert fans["bias_k"] == (40, E) and fans["bias_v"] == (24, E)
    # The packed bias of three projections with three different fans has none of its own:
    # a fan-based law on it is refused before anything is written.
    assert params["in_proj_bias"].fans is None
    plan = mi.plan(mha, [("in_proj_bias", mi.he_normal()), ("*", None)])
    (row,) = [r for r in plan if r.path == "in_proj_bias"]
    assert "fewer than 2 dimensions" in row.problem
    with pytest.raises(mi.ShapeError, match="in_proj_bias"):
        mi.apply(mha, [("in_proj_bias", mi.he_normal()), ("*", None)], seed=0)


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_each_packed_projection_is_its_own_e_by_e_law(portable) -> None:
    mha = nn.MultiheadAttention(E, HEADS)
    spec = mi.xavier_uniform()
    mi.apply(mha, {"in_proj_weight": spec, "*": None}, seed=5, portable=portable)
    q, k, v = mha.in_proj_weight.detach().numpy().reshape(3, E, E)
    bound = math.sqrt(6 / (E + E))  # each projection E -> E
    for block in (q, k, v):
        assert stats.check(block, spec, fans=(E, E)).passed
    assert float(np.abs(q).max()) > 0.95 * bound > math.sqrt(6 / (E + 3 * E))  # not torch's packed (E, 3E)
    if portable:
        want = mi.reference.sample(spec, (3, E, E), seed=(5, 0), fans=(E, E))
        assert np.array_equal(np.stack([q, k, v]), want.astype(np.float32))


def test_torchs_own_attention_init_reads_the_packed_matrix() -> None:
    # The deliberate difference, measured on torch itself: its reset uses xavier_uniform_ on
    # (3E, E), fan_out 3E, so its bound is sqrt(6 / 4E), half of multiinit's variance.
    torch.manual_seed(0)
    packed = nn.MultiheadAttention(E, HEADS).in_proj_weight.detach().numpy()
    assert stats.check(packed, mi.xavier_uniform(), fans=(E, 3 * E)).passed
    assert not stats.check(packed, mi.xavier_uniform(), fans=(E, E)).passed


def test_torchs_own_packed_law_is_one_with_axes_away() -> None:
    # The recipe the docs give to reproduce torch's reset: fans read off the stored (3E, E).
    mha = nn.MultiheadAttention(E, HEADS)
    packed = mi.with_axes(mi.xavier_uniform(), in_axis=1, out_axis=0)
    assert mi.plan(mha, [("in_proj_weight", packed), ("*", None)])[0].fans == (E, 3 * E)
    mi.apply(mha, [("in_proj_weight", packed), ("*", None)], seed=0)
    assert stats.check(mha.in_proj_weight.detach().numpy(), mi.xavier_uniform(), fans=(E, 3 * E)).passed
