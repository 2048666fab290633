"""Big models (issue 12) in torch: ``mi.apply`` in one pass -- every failure found before the
first write leaves every parameter and buffer bit-identical; meta models are materialized
with ``device=`` and come out with the right law; and the stream rule's torch half: any part
of a parameter, drawn alone, equals that part of the whole, whatever the threads."""

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


def _fits(t: torch.Tensor) -> bool:
    # A tensor whose storage was freed cannot be read (reading it would crash the process).
    if not t.numel():
        return True
    last = t.storage_offset() + sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))
    return (last + 1) * t.element_size() <= t.untyped_storage().nbytes()


def _snapshot(module: nn.Module) -> dict[str, tuple]:
    """Every parameter and buffer: its object, device, dtype, and values (or storage size)."""
    out = {}
    for kind, items in (
        ("p", module.named_parameters(remove_duplicate=False)),
        ("b", module.named_buffers(remove_duplicate=False)),
    ):
        for name, t in items:
            values = t.detach().clone() if (not t.is_meta and _fits(t)) else t.untyped_storage().nbytes()
            out[f"{kind}:{name}"] = (id(t), t.device, t.dtype, tuple(t.shape), values)
    return out


def _unchanged(module: nn.Module, before: dict[str, tuple]) -> bool:
    after = _snapshot(module)
    if after.keys() != before.keys():
        return False
    for key, (ident, device, dtype, shape, values) in before.items():
        a = after[key]
        if a[:4] != (ident, device, dtype, shape):
            return False
        if isinstance(values, torch.Tensor):
            if not (isinstance(a[4], torch.Tensor) and torch.equal(a[4], values)):
                return False
        elif a[4] != values:
            return False
    return True


# --------------------------------------------------------------------------- all or nothing


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 600), nn.BatchNorm1d(600), nn.ReLU(), nn.Linear(600, 300), nn.Linear(300, 8)
    )


class _Sub(torch.Tensor):
    pass


def _inference_layer(net: nn.Module) -> None:
    with torch.inference_mode():
        net[4] = nn.Linear(300, 8)


def _expanded_bias(net: nn.Module) -> None:
    net[4].bias = nn.Parameter(torch.zeros(1).expand(8))


def _freed_storage(net: nn.Module) -> None:
    net[4].weight.untyped_storage().resize_(0)


def _subclass(net: nn.Module) -> None:
    net[4].bias = nn.Parameter(_Sub(torch.zeros(8)))


def _int_bias(net: nn.Module) -> None:
    net[4].bias = nn.Parameter(torch.zeros(8, dtype=torch.int32), requires_grad=False)


def _meta_layer(net: nn.Module) -> None:
    with torch.device("meta"):
        net[4] = nn.Linear(300, 8)


def _raises(rng, shape, dtype):
    raise RuntimeError("the user's law failed")


def _nan(rng, shape, dtype):
    out = rng.standard_normal(shape).astype(dtype)
    out[0, 0] = np.nan
    return out


def _wrong_shape(rng, shape, dtype):
    return np.zeros((3,), dtype=dtype)


def _strings(rng, shape, dtype):
    return np.full(shape, "x")


_ALL = [("1.*", mi.constant(0.5)), ("weight", mi.he_normal()), ("bias", mi.uniform(-0.1, 0.1))]
_LAST_CUSTOM = [
    ("4.weight", None),
    ("1.*", mi.constant(0.5)),
    ("weight", mi.he_normal()),
    ("bias", mi.zeros()),
]

# (name, how to break the model or None, rules, error, text the message must hold). The broken
# parameter is the last one in order, so every other one would have been written first.
FAULTS = [
    ("inference tensor", _inference_layer, _ALL, mi.ShapeError, r"'4\.weight'.*inference"),
    ("expanded bias", _expanded_bias, _ALL, mi.ShapeError, r"'4\.bias'.*share memory"),
    ("freed storage", _freed_storage, _ALL, mi.ShapeError, r"'4\.weight'.*storage is smaller"),
    ("tensor subclass", _subclass, _ALL, mi.ShapeError, r"'4\.bias'.*_Sub"),
    ("int dtype", _int_bias, _ALL, mi.ShapeError, r"'4\.bias'.*torch\.int32"),
    ("meta without device", _meta_layer, _ALL, mi.ShapeError, r"'4\.weight'.*meta.*device="),
    ("rule selects nothing", None, [*_ALL, ("5.weight", mi.zeros())], mi.RuleError, r"'5\.weight'"),
    ("shape misfit", None, [("4.bias", mi.eye()), *_ALL], mi.ShapeError, r"'4\.bias'"),
    (
        "custom law raises",
        None,
        [("4.weight", mi.custom(_raises, name="t.big.raises")), *_LAST_CUSTOM[1:]],
        mi.MultiinitError,
        r"t\.big\.raises.*'4\.weight'",
    ),
    (
        "custom law NaN",
        None,
        [("4.weight", mi.custom(_nan, name="t.big.nan")), *_LAST_CUSTOM[1:]],
        mi.MultiinitError,
        r"t\.big\.nan.*(finite|NaN)",
    ),
    (
        "custom law shape",
        None,
        [("4.weight", mi.custom(_wrong_shape, name="t.big.shape")), *_LAST_CUSTOM[1:]],
        mi.MultiinitError,
        r"t\.big\.shape",
    ),
    (
        "custom law strings",
        None,
        [("4.weight", mi.custom(_strings, name="t.big.strings")), *_LAST_CUSTOM[1:]],
        mi.MultiinitError,
        r"t\.big\.strings",
    ),
    (
        "mixture with a failing law",
        None,
        [
            ("4.weight", mi.mixture([(0.5, mi.normal()), (0.5, mi.custom(_raises, name="t.big.raises2"))])),
            *_LAST_CUSTOM[1:],
        ],
        mi.MultiinitError,
        r"t\.big\.raises2",
    ),
]


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
@pytest.mark.parametrize("name, breaks, rules, error, text", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_fault_leaves_every_parameter_and_buffer_bit_identical(
    name, breaks, rules, error, text, portable
) -> None:
    torch.manual_seed(0)
    net = _net()
    net(torch.randn(4, 64))  # the norm layer's running stats are no longer their defaults
    if breaks is not None:
        breaks(net)
    before = _snapshot(net)
    with pytest.raises(error, match=text):
        mi.apply(net, rules, seed=3, portable=portable)
    assert _unchanged(net, before)


def test_the_same_rules_succeed_without_the_fault() -> None:
    net = _net()
    before = _snapshot(net)
    mi.apply(
        net,
        [
            ("4.weight", mi.custom(lambda r, s, d: r.standard_normal(s).astype(d), name="t.big.ok")),
            *_LAST_CUSTOM[1:],
        ],
        seed=3,
    )
    assert not _unchanged(net, before)
    mi.apply(net, _ALL, seed=3, portable=True)


def test_an_inference_model_is_filled_inside_inference_mode() -> None:
    # The tile threads take the caller's inference mode with them.
    with torch.inference_mode():
        net = nn.Linear(600, 600)
        mi.apply(net, {"weight": mi.normal(std=0.02), "bias": mi.zeros()}, seed=0)
    assert stats.check(net.weight.detach().numpy(), mi.normal(std=0.02)).passed


def test_a_failing_law_raises_a_multiinit_error_chaining_the_users() -> None:
    net = _net()
    with pytest.raises(mi.MultiinitError) as info:
        mi.apply(net, {"4.weight": mi.custom(_raises, name="t.big.chain")}, seed=0)
    cause = info.value.__cause__
    while cause is not None and not isinstance(cause, RuntimeError):
        cause = cause.__cause__
    assert isinstance(cause, RuntimeError) and "the user's law failed" in str(cause)


# --------------------------------------------------------------------------- meta models


def _meta_net(device: str = "meta") -> nn.Module:
    with torch.device(device):
        return nn.Sequential(
            nn.Linear(128, 700),
            nn.BatchNorm1d(700),
            nn.ReLU(),
            nn.Conv1d(700, 96, 3),
            nn.LayerNorm(94),
            nn.ConvTranspose1d(96, 64, 5, groups=2),
        )


_META_RULES = [
    ("0.weight", mi.he_normal()),
    ("3.weight", mi.xavier_uniform(gain=2.0)),
    ("5.weight", mi.variance_scaling(2.0, "fan_in", "truncated_normal")),
    ("1.weight", mi.ones()),
    ("4.weight", mi.ones()),
    ("1.bias", mi.zeros()),
    ("4.bias", mi.zeros()),
    ("*.bias", mi.variance_scaling(1 / 3, "fan_in", "uniform")),
]
# logical fans by hand: 0.weight (700, 128); 3.weight (96, 700, 3); 5.weight stored (96, 32, 5),
# logical (64, 48, 5).
_FANS = {
    "0.weight": (128, 700),
    "3.weight": (2100, 288),
    "5.weight": (240, 320),
    "0.bias": (128, 700),
    "3.bias": (2100, 288),
    "5.bias": (240, 320),
}


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_a_meta_model_is_materialized_and_initialized_in_one_pass(portable) -> None:
    net = _meta_net()
    assert all(t.is_meta for t in (*net.parameters(), *net.buffers()))
    assert mi.apply(net, _META_RULES, seed=11, portable=portable, device="cpu") is net
    for name, t in (*net.named_parameters(), *net.named_buffers()):
        assert t.device == torch.device("cpu") and not t.is_meta, name
    # Norm statistics: torch's construction values.
    assert float(net[1].running_mean.abs().max()) == 0 and float(net[1].running_var.min()) == 1
    assert int(net[1].num_batches_tracked) == 0
    specs = dict(_META_RULES)
    for name, p in net.named_parameters():
        spec = specs.get(name, specs["*.bias"])
        values = p.detach().numpy()
        if name == "5.weight":  # stored (in, out/g, k) -> logical (out, in/g, k)
            values = values.reshape(2, 48, 32, 5).swapaxes(1, 2).reshape(64, 48, 5)
        verdict = stats.check(values, spec, fans=_FANS.get(name))
        assert verdict.passed, f"{name}: {verdict}"
    # Bit for bit the model built on the CPU and initialized with the same seed.
    plain = mi.apply(_meta_net("cpu"), _META_RULES, seed=11, portable=portable)
    for (name, a), (_, b) in zip(net.state_dict().items(), plain.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_meta_model_in_half_precision_and_with_a_user_law() -> None:
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(64, 600, dtype=torch.bfloat16), nn.Linear(600, 32, dtype=torch.float16))
    law = mi.custom(lambda rng, shape, dtype: rng.uniform(-1, 1, shape).astype(dtype), name="t.big.meta_law")
    mi.apply(net, {"0.*": mi.lecun_normal(), "1.weight": law, "1.bias": mi.zeros()}, seed=2, device="cpu")
    assert net[0].weight.dtype == torch.bfloat16 and net[1].weight.dtype == torch.float16
    assert stats.check(net[0].weight.detach().float().numpy(), mi.lecun_normal(), fans=(64, 600)).passed
    w = net[1].weight.detach().float()
    assert float(w.abs().max()) <= 1 and float(w.std()) > 0.5


def test_meta_parameters_no_rule_initializes_are_an_error_before_anything() -> None:
    net = _meta_net()
    with pytest.raises(mi.RuleError, match=r"'3\.weight'.*'5\.weight'.*not initialized by any rule"):
        mi.apply(net, {"0.*": mi.zeros(), "*.bias": mi.zeros(), "norm": mi.ones()}, device="cpu")
    with pytest.raises(mi.RuleError, match=r"'0\.weight'.*not initialized"):  # None leaves it alone
        mi.apply(net, [("0.weight", None), ("*", mi.zeros())], device="cpu")
    assert all(t.is_meta for t in (*net.parameters(), *net.buffers()))


def test_meta_buffers_multiinit_cannot_know_are_an_error() -> None:
    class Rotary(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(8, 8)
            self.register_buffer("freqs", torch.arange(4.0), persistent=False)

    with torch.device("meta"):
        net = nn.Sequential(Rotary(), nn.BatchNorm1d(8))
    with pytest.raises(mi.RuleError, match=r"meta buffers '0\.freqs'.*register_buffer.*to_empty"):
        mi.apply(net, {"*": mi.zeros()}, device="cpu")
    assert all(t.is_meta for t in (*net.parameters(), *net.buffers()))
    net[0].register_buffer("freqs", torch.arange(4.0), persistent=False)  # the user sets it first
    net[1].running_mean = torch.full((8,), 3.0)  # a statistic already set is kept
    mi.apply(net, {"*": mi.zeros()}, device="cpu")
    assert net[0].freqs.tolist() == [0.0, 1.0, 2.0, 3.0] and float(net[1].running_var.min()) == 1
    assert net[1].running_mean.tolist() == [3.0] * 8 and int(net[1].num_batches_tracked) == 0


@pytest.mark.parametrize(
    "device, text", [("meta", "device='meta'"), ("nonsense", "device='nonsense'"), (3.5, "device=3.5")]
)
def test_a_bad_device_is_a_spec_error(device, text) -> None:
    net = _meta_net()
    with pytest.raises(mi.SpecError, match=text):
        mi.apply(net, {"*": mi.zeros()}, device=device)
    assert all(t.is_meta for t in net.parameters())


def test_device_leaves_materialized_tensors_where_they_are() -> None:
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    net[1] = nn.Linear(4, 2)  # already on the CPU: initialized, not moved, not replaced
    kept = net[1].weight
    mi.apply(net, {"*": mi.ones()}, device="cpu")
    assert net[1].weight is kept and float(kept.detach().min()) == 1
    assert float(net[0].weight.detach().min()) == 1


def test_device_is_refused_by_adapters_without_it(monkeypatch) -> None:
    import types

    from multiinit import registry

    calls = []
    fake = types.SimpleNamespace(apply=lambda model, rules, seed=None, portable=False: calls.append(model))
    monkeypatch.setattr(registry, "detect", lambda model: "fake")
    monkeypatch.setattr(registry, "adapter", lambda name: fake)
    with pytest.raises(mi.SpecError, match=r"device='cpu'.*fake backend's apply takes no device="):
        mi.apply("a model", {"w": mi.zeros()}, device="cpu")
    assert calls == []
    mi.apply("a model", {"w": mi.zeros()})
    assert calls == ["a model"]


def test_seed_none_draws_one_base_from_torchs_global_rng() -> None:
    rules = {"weight": mi.he_normal(), "bias": mi.uniform(-1, 1)}
    draws = []
    for _ in range(2):
        torch.manual_seed(5)
        draws.append(mi.apply(_meta_net(), _META_RULES, device="cpu"))
    assert all(
        torch.equal(a, b)
        for a, b in zip(draws[0].state_dict().values(), draws[1].state_dict().values(), strict=True)
    )
    torch.manual_seed(5)
    a = mi.apply(nn.Linear(700, 600), rules)
    b = mi.apply(nn.Linear(700, 600), rules)  # the global RNG moved on: another base
    assert not torch.equal(a.weight, b.weight)


# --------------------------------------------------------------------------- any part alone

SPECS = [
    mi.normal(std=0.02),
    mi.uniform(-1, 1),
    mi.truncated_normal(std=0.5, low=-0.3, high=1.0),
    mi.xavier_normal(),
    mi.kaiming_uniform(a=math.sqrt(5)),
    mi.he_normal(),
    mi.glorot_uniform(),
    mi.variance_scaling(0.5, "fan_avg", "untruncated_normal"),
    mi.constant(0.25),
    mi.mixture([(0.3, mi.zeros()), (0.5, mi.normal()), (0.2, mi.uniform(5, 6))]),
    mi.orthogonal(gain=2.0),
    mi.sparse(0.3),
    mi.eye(),
    mi.custom(lambda rng, shape, dtype: rng.standard_normal(shape).astype(dtype), name="t.big.parts"),
]
# (logical shape, native layout of the module that holds it)
SHAPES = [(520, 530), (1030, 300), (300, 1030)]


def _param(net: nn.Module) -> tuple:
    (param,) = [p for p in mit.params_of(net) if p.role == "weight"]
    return param


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
    """Ways a parameter of ``shape`` is cut across ranks, as each rank's runs: Shard(0) and
    Shard(1) over 3 (uneven) and 4 ranks, FSDP2+TP's _StridedShard over a 2x2 mesh."""
    full = [[(0, n)] for n in shape]
    out = []
    for dim in (0, 1):
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


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_any_shard_drawn_alone_equals_that_part_of_the_whole(spec, shape, portable) -> None:
    net = nn.Linear(shape[1], shape[0], bias=False)
    mi.apply(net, {"weight": spec}, seed=9, portable=portable)
    whole = net.weight.detach()
    param = _param(nn.Linear(shape[1], shape[0], bias=False))
    writer = _model._Writer(net, 9, None)
    draw = Draw(9, param.order, portable)
    prepared = writer.prepare(param, spec, draw) if mi.rules.needs_prepare(spec) else None
    source = writer.source(param, spec, draw, prepared)
    # Every rank's shard in one call (a whole-tensor law is then drawn once, not per rank).
    shards, pieces = [], []
    for cut in _shardings(shape):
        runs = _runs_of(cut)
        local = torch.full(tuple(sum(n for _, _, n in r) for r in runs), float("nan"))
        shards.append((cut, runs, local))
        pieces.extend(sharded._pieces(param.view, runs, local))
    with torch.no_grad():
        sharded.fill(source, pieces)
    for cut, runs, local in shards:
        assert torch.equal(local, _local(whole, runs)), cut


def test_portable_shards_are_the_reference_numbers() -> None:
    spec = mi.he_uniform()
    whole = mi.he_uniform().sample((1030, 300), seed=(4, 0))
    net = mi.apply(nn.Linear(300, 1030, bias=False), {"weight": spec}, seed=4, portable=True)
    assert np.array_equal(net.weight.detach().numpy(), whole)


def test_a_transposed_conv_is_written_in_its_logical_view_part_by_part() -> None:
    # Stored (in=256, out/g=128, 3, 3) with groups=2, logical (256, 128, 3, 3): shards of the
    # stored rows cross a group border, so one shard is two logical boxes.
    layer = nn.ConvTranspose2d(256, 256, 3, groups=2)
    for portable in (False, True):
        mi.apply(layer, {"weight": mi.glorot_normal()}, seed=1, portable=portable)
        whole = layer.weight.detach().clone()
        param = _param(layer)
        writer = _model._Writer(layer, 1, None)
        source = writer.source(param, mi.glorot_normal(), Draw(1, param.order, portable))
        for rows in ((0, 100), (100, 200), (200, 256), (0, 256)):
            runs = [[(rows[0], 0, rows[1] - rows[0])], [(0, 0, 128)], [(0, 0, 3)], [(0, 0, 3)]]
            local = torch.full((rows[1] - rows[0], 128, 3, 3), float("nan"))
            with torch.no_grad():
                sharded.fill(source, sharded._pieces(param.view, runs, local))
            assert torch.equal(local, whole[rows[0] : rows[1]]), rows
        logical = whole.reshape(2, 128, 128, 3, 3).transpose(1, 2).reshape(256, 128, 3, 3)
        assert stats.check(logical.numpy(), mi.glorot_normal()).passed


@pytest.mark.parametrize(
    "spec",
    [mi.normal(std=0.02), mi.truncated_normal(), mi.mixture([(0.5, mi.constant(2)), (0.5, mi.he_uniform())])],
    ids=repr,
)
def test_threads_change_nothing(spec, monkeypatch) -> None:
    net = nn.Sequential(nn.Linear(700, 600), nn.Linear(300, 300_000 // 300))
    results = []
    for threads in (None, "1"):
        if threads:
            monkeypatch.setenv("MULTIINIT_THREADS", threads)
        for portable in (False, True):
            mi.apply(net, {"weight": spec, "bias": mi.normal()}, seed=6, portable=portable)
            results.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(results[:2], results[2:], strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_shard_arithmetic_is_torchs_own() -> None:
    # Shard is torch.chunk; _StridedShard is torch's right-to-left split: compared with the
    # placements' own splitting of an index tensor.
    from torch.distributed.tensor.placement_types import Shard, _StridedShard

    for n in (0, 1, 5, 10, 13, 64):
        for chunks in (1, 2, 3, 4):
            expected = Shard(0)._split_tensor(torch.arange(n), chunks, with_padding=False)[0]
            for r in range(chunks):
                got = [
                    i
                    for g, length in sharded._chunk([(0, n)] if n else [], chunks, r)
                    for i in range(g, g + length)
                ]
                assert got == expected[r].tolist(), (n, chunks, r)
            for factor in (1, 2, 3):
                expected = _StridedShard(0, split_factor=factor)._split_tensor(
                    torch.arange(n), chunks, with_padding=False
                )[0]
                for r in range(chunks):
                    got = [
                        i
                        for g, length in sharded._strided([(0, n)] if n else [], factor, chunks, r)
                        for i in range(g, g + length)
                    ]
                    assert got == expected[r].tolist(), (n, factor, chunks, r)


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_apply_leaves_storages_resizable(portable) -> None:
    # FSDP2 frees an unsharded parameter by resizing its storage to 0; a write through NumPy
    # (tensor.numpy()) would have made it non-resizable for good.
    net = nn.Sequential(nn.Linear(700, 600), nn.Linear(600, 8))
    mi.apply(net, {"weight": mi.normal(std=0.02), "bias": mi.zeros()}, seed=0, portable=portable)
    for p in net.parameters():
        storage = p.detach().untyped_storage()
        storage.resize_(storage.nbytes())
