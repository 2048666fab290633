"""Sharded torch models (issue 13), tested distributed: gloo on CPU in 1, 2 and 4 processes.

One launch per world size runs every case in that world (``_worker``, this file run as a
script): a model holding one layer per spec of the contract is sharded -- FSDP2
``fully_shard`` (Shard(0), uneven), tensor parallel ``parallelize_module`` (ColwiseParallel
Shard(0), RowwiseParallel Shard(1) and Replicate biases), FSDP2 + TP on a 2x2 mesh
(``_StridedShard``), plain ``Shard(1)``, ``Shard(last)``, ``Replicate`` and a 2-D
``(Shard(1), Shard(0))`` -- built on ``meta`` or on the CPU, initialized with ``mi.apply``
(native and portable), and gathered. Here the gathered values are compared, bit for bit, with
the same model unsharded in this process. The workers also check that no collective runs
during the draw (every process group's sequence number is unchanged), and fill DTensors with
the compiled fillers and drop-ins, which must give the same values in every world.

A launch that hangs is killed (its whole process group) after ``TIMEOUT`` seconds and fails
its test; a rank that fails stops the others at once.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import multiinit as mi

#: Seconds a whole launch may take (torch imports and gloo on a busy 2-core machine are slow).
TIMEOUT = 900
WORLDS = (1, 2, 4)
ROOT = Path(__file__).resolve().parents[1]


def _law(rng, shape, dtype):
    return (rng.standard_normal(shape) * 0.1).astype(dtype)


_CUSTOM = mi.custom(_law, name="tests.torch_sharded.law")
#: The shapes the elementwise law below was called for in this process (from every thread).
TILED_CALLS: list[tuple[int, ...]] = []


def _tiled_law(rng, shape, dtype):
    TILED_CALLS.append(tuple(shape))
    return rng.uniform(-1, 1, shape)


#: Drawn tile by tile: a rank draws only the tiles its shard meets.
_TILED = mi.custom(_tiled_law, name="tests.torch_sharded.tiled", elementwise=True)

#: One dense layer per spec of the contract (dirac goes to the conv layer).
WEIGHT_SPECS = [
    mi.zeros(),
    mi.ones(),
    mi.constant(0.5),
    mi.uniform(-1, 1),
    mi.normal(std=0.02),
    mi.truncated_normal(std=0.5, low=-1.0, high=1.5),
    mi.trunc_normal(std=0.02, a=-0.03, b=0.05),
    mi.variance_scaling(0.5, "fan_avg", "untruncated_normal"),
    mi.variance_scaling(2.0, "fan_out", "uniform"),
    mi.variance_scaling(1.0, "fan_in", "truncated_normal"),
    mi.xavier_uniform(gain=2.0),
    mi.xavier_normal(),
    mi.kaiming_uniform(a=math.sqrt(5)),
    mi.kaiming_normal(mode="fan_out"),
    mi.glorot_uniform(),
    mi.glorot_normal(),
    mi.he_uniform(),
    mi.he_normal(),
    mi.lecun_uniform(),
    mi.lecun_normal(),
    mi.orthogonal(gain=1.5),
    mi.eye(),
    mi.sparse(0.25),
    mi.mixture([(0.2, mi.zeros()), (0.5, mi.normal()), (0.3, mi.uniform(2, 3))]),
    _CUSTOM,
    _TILED,
]
BIAS_SPECS = [
    mi.zeros(),
    mi.uniform(-0.5, 0.5),
    mi.normal(),
    mi.variance_scaling(1 / 3, "fan_in", "uniform"),
    mi.he_normal(),
    mi.truncated_normal(),
    mi.mixture([(0.5, mi.ones()), (0.5, mi.normal())]),
    _CUSTOM,
    _TILED,
]


class Model(nn.Module):
    """Shapes with several tiles (the dense weights: 4 tiles of (258, 265)) and uneven shards
    (515 rows over 2 or 4 ranks), a conv for dirac, a grouped transposed conv, a long 1-D
    parameter of 4 tiles."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.ModuleList(nn.Linear(530, 515) for _ in WEIGHT_SPECS)
        self.conv = nn.Conv2d(12, 18, 3)
        self.convt = nn.ConvTranspose1d(20, 12, 3, groups=2)
        self.long = nn.Parameter(torch.zeros(270_000))

    def forward(self, x: torch.Tensor, image: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        out = sum(layer(x).sum() for layer in self.dense)
        return out + self.conv(image).sum() + self.convt(seq).sum() + self.long.sum()


RULES = [
    *((f"dense.{i}.weight", s) for i, s in enumerate(WEIGHT_SPECS)),
    *((f"dense.{i}.bias", BIAS_SPECS[i % len(BIAS_SPECS)]) for i in range(len(WEIGHT_SPECS))),
    ("conv.weight", mi.dirac(groups=2)),
    ("conv.bias", mi.normal()),
    ("convt.weight", mi.he_normal()),
    ("convt.bias", mi.uniform()),
    ("long", mi.normal(std=0.1)),
]
SEED = 7

# (strategy, meta, portable) per world size
CASES = {
    1: [("fsdp", True, False), ("shard1", False, True), ("replicate", False, False)],
    2: [
        ("fsdp", True, False),
        ("fsdp", False, True),
        ("tp", True, False),
        ("tp", False, True),
        ("shard1", False, False),
        ("shard_last", True, True),
        ("replicate", False, False),
    ],
    4: [
        ("fsdp", True, False),
        ("tp", False, False),
        ("fsdp_tp", True, False),
        ("fsdp_tp", False, True),
        ("shard1", True, False),
        ("shard_last", False, False),
        ("grid", True, True),
        ("replicate", True, False),
    ],
}
#: Compiled fillers and drop-ins on DTensors, after these strategies (non-meta models), on
#: dense.0 (colwise in TP), dense.1 (rowwise), conv, convt and long.
COMPILED = {1: ["shard1"], 2: ["fsdp", "tp"], 4: ["fsdp_tp", "grid"]}


def _compiled_calls():
    """(name, applies to parameter name?, call(tensor)) for the compiled forms and drop-ins."""
    import multiinit.torch as mit

    return [
        ("compile(he_normal)", lambda n, t: t.dim() >= 2, lambda t: mi.compile(mi.he_normal(), "torch")(t)),
        ("xavier_uniform_", lambda n, t: t.dim() >= 2, lambda t: mit.xavier_uniform_(t, gain=2.0)),
        ("kaiming_normal_", lambda n, t: t.dim() >= 2, lambda t: mit.kaiming_normal_(t, mode="fan_out")),
        ("trunc_normal_", lambda n, t: True, lambda t: mit.trunc_normal_(t, std=0.02, a=-0.03, b=0.04)),
        ("orthogonal_", lambda n, t: t.dim() == 2, lambda t: mit.orthogonal_(t)),
        ("sparse_", lambda n, t: t.dim() == 2, lambda t: mit.sparse_(t, 0.3)),
        ("eye_", lambda n, t: t.dim() == 2, lambda t: mit.eye_(t)),
        ("dirac_", lambda n, t: t.dim() in (3, 4, 5) and t.shape[0] % 2 == 0, lambda t: mit.dirac_(t, 2)),
        ("normal_", lambda n, t: True, lambda t: mit.normal_(t, 1.0, 0.5)),
        ("uniform_", lambda n, t: True, lambda t: mit.uniform_(t, -2, 2)),
        ("constant_", lambda n, t: True, lambda t: mit.constant_(t, 0.75)),
        (
            "compile(mixture)",
            lambda n, t: True,
            lambda t: mi.compile(mi.mixture([(0.5, mi.zeros()), (0.5, mi.normal())]), "torch")(t),
        ),
        ("compile(custom elementwise)", lambda n, t: True, lambda t: mi.compile(_TILED, "torch")(t)),
    ]


# --------------------------------------------------------------------------- the worker


def _shard(model: nn.Module, strategy: str, world: int) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    def plan() -> dict:
        return {
            f"dense.{i}": ColwiseParallel() if i % 2 == 0 else RowwiseParallel()
            for i in range(len(WEIGHT_SPECS))
        }

    def fsdp(mesh) -> None:
        for layer in (*model.dense, model.conv, model.convt):
            fully_shard(layer, mesh=mesh)
        # The root stays unsharded after a forward pass: mi.apply must write the shards.
        fully_shard(model, mesh=mesh, reshard_after_forward=False)

    if strategy == "fsdp":
        fsdp(init_device_mesh("cpu", (world,)))
    elif strategy == "tp":
        parallelize_module(model, init_device_mesh("cpu", (world,)), plan())
    elif strategy == "fsdp_tp":
        mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("dp", "tp"))
        parallelize_module(model, mesh["tp"], plan())
        fsdp(mesh["dp"])
    else:
        grid = strategy == "grid"
        mesh = init_device_mesh("cpu", (2, world // 2) if grid else (world,))

        def placements(p: torch.Tensor) -> list:
            if strategy == "replicate":
                return [Replicate()]
            if grid:
                return [Shard(1), Shard(0)] if p.dim() >= 2 else [Replicate(), Shard(0)]
            if strategy == "shard_last":
                return [Shard(p.dim() - 1)]
            return [Shard(1)] if p.dim() >= 2 else [Replicate()]

        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is not None:
                    d = distribute_tensor(p.detach(), mesh, placements(p), src_data_rank=None)
                    module._parameters[name] = nn.Parameter(d, requires_grad=p.requires_grad)


def _sequence_numbers() -> list[int]:
    from torch.distributed import distributed_c10d as c10d

    return [pg._get_sequence_number_for_group() for pg in c10d._world.pg_map]


def _gather(model: nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.fsdp import FSDPModule

    from multiinit.torch.sharded import is_dtensor

    # FSDP2's shards are the truth: whatever an unsharded copy held is dropped here.
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
    out = {}
    for name, p in model.named_parameters():
        value = p.full_tensor() if is_dtensor(p) else p
        out[name] = value.detach().clone()
    return out


def _worker(rank: int, world: int, store: str, out: str) -> None:
    import warnings

    import torch.distributed as dist

    warnings.filterwarnings("ignore")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    results: dict = {"cases": {}, "compiled": {}}
    # The watch below must see a collective when there is one.
    before = _sequence_numbers()
    dist.all_reduce(torch.ones(1))
    assert _sequence_numbers() != before, "sequence numbers do not count collectives"
    for strategy, meta, portable in CASES[world]:
        torch.manual_seed(1234)
        with torch.device("meta" if meta else "cpu"):
            model = Model()
        _shard(model, strategy, world)
        if strategy == "fsdp" and not meta:
            # After a forward pass the root's parameters are unsharded plain tensors (its
            # reshard_after_forward=False): mi.apply must still initialize the shards.
            model(torch.ones(2, 530), torch.ones(1, 12, 5, 5), torch.ones(1, 20, 4))
        dist.barrier()
        before = _sequence_numbers()
        TILED_CALLS.clear()
        mi.apply(model, RULES, seed=SEED, portable=portable, device="cpu" if meta else None)
        assert _sequence_numbers() == before, f"{strategy}: a collective ran during the draw"
        # The elementwise law's weight, (515, 530) in 2x2 tiles of rows 258 + 257 and columns
        # 265 + 265. Halves by rows or columns, and FSDP's quarters by rows (129 rows each),
        # meet one row or one column of tiles: two tiles, never the whole. (Other quarters may
        # straddle a tile border; a replica and a world of one draw all four.)
        drawn = sum(math.prod(shape) for shape in TILED_CALLS if len(shape) == 2)
        if (world == 2 and strategy != "replicate") or (world == 4 and strategy == "fsdp"):
            assert drawn in (2 * 258 * 265, 2 * 257 * 265, 515 * 265), (strategy, drawn)
        elif world == 1 or strategy == "replicate":
            assert drawn == 515 * 530, (strategy, drawn)
        else:
            assert 0 < drawn <= 515 * 530, (strategy, drawn)
        assert not any(p.is_meta for p in model.parameters())
        if strategy == "fsdp" and meta:  # FSDP2 took the materialized shards: a step works
            model(torch.ones(2, 530), torch.ones(1, 12, 5, 5), torch.ones(1, 20, 4)).backward()
        gathered = _gather(model)
        if rank == 0:
            results["cases"][(strategy, meta, portable)] = gathered
        if strategy in COMPILED[world] and not meta:
            from multiinit.torch.sharded import is_dtensor

            compiled = {}
            calls = _compiled_calls()
            for i, (name, p) in enumerate(sorted(model.named_parameters())):
                if not is_dtensor(p) or (
                    name.split(".")[0] == "dense" and name.split(".")[1] not in ("0", "1")
                ):
                    continue
                for label, fits, call in calls:
                    if not fits(name, p):
                        continue
                    torch.manual_seed(100 + i)
                    before = _sequence_numbers()
                    call(p)
                    assert _sequence_numbers() == before, f"{label} on {name}: a collective ran"
                    value = p.full_tensor().detach().clone()
                    if rank == 0:
                        compiled[(name, label)] = value
            results["compiled"][strategy] = compiled
        dist.barrier()
    # A Partial parameter cannot be initialized: refused before anything is written.
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Partial, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    layer = nn.Linear(4, 8)
    layer.weight = nn.Parameter(distribute_tensor(torch.ones(8, 4), mesh, [Shard(0)], src_data_rank=None))
    layer.bias = nn.Parameter(distribute_tensor(torch.ones(8), mesh, [Partial()], src_data_rank=None))
    with pytest.raises(mi.ShapeError) as refused:  # a Partial parameter is not accepted
        mi.apply(layer, {"weight": mi.zeros(), "bias": mi.zeros()}, seed=0)
    assert "Partial" in str(refused.value) and "'bias'" in str(refused.value), str(refused.value)
    assert float(layer.weight.to_local().min()) == 1.0
    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()


# --------------------------------------------------------------------------- the launcher


def _launch(world: int, folder: Path) -> dict:
    store, out = folder / f"store-{world}", folder / f"results-{world}.pt"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # The logs are closed however the launch ends (pytest.fail included).
    with contextlib.ExitStack() as files:
        procs = []
        logs = []
        for rank in range(world):
            log = files.enter_context(open(folder / f"rank-{world}-{rank}.log", "w+"))
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--worker", str(rank), str(world), str(store), str(out)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=ROOT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + TIMEOUT
        failure = None
        try:
            while any(p.poll() is None for p in procs):
                failed = [r for r, p in enumerate(procs) if p.poll() not in (None, 0)]
                if failed:
                    failure = f"rank {failed[0]} of {world} failed (exit {procs[failed[0]].returncode})"
                    break
                if time.monotonic() > deadline:
                    failure = f"the launch of {world} processes did not finish in {TIMEOUT} s"
                    break
                time.sleep(0.2)
            else:
                failed = [r for r, p in enumerate(procs) if p.returncode != 0]
                if failed:
                    failure = f"rank {failed[0]} of {world} failed (exit {procs[failed[0]].returncode})"
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        if failure:
            text = []
            for rank, log in enumerate(logs):
                log.seek(0)
                text.append(f"--- rank {rank} ---\n" + log.read()[-4000:])
            pytest.fail(failure + "\n" + "\n".join(text))
    return torch.load(out, weights_only=False)


@pytest.fixture(scope="module")
def results() -> dict:
    launched: dict = {}

    def get(world: int) -> dict:
        if world not in launched:
            with tempfile.TemporaryDirectory() as folder:
                launched[world] = _launch(world, Path(folder))
        return launched[world]

    return get


@pytest.fixture(scope="module")
def unsharded() -> dict:
    out = {}
    for portable in (False, True):
        torch.manual_seed(1234)
        model = mi.apply(Model(), RULES, seed=SEED, portable=portable)
        out[portable] = {n: p.detach().clone() for n, p in model.named_parameters()}
    return out


@pytest.mark.parametrize("world", WORLDS)
def test_gathered_shards_equal_the_unsharded_model_bit_for_bit(world, results, unsharded) -> None:
    got = results(world)["cases"]
    assert set(got) == set(CASES[world])
    for (strategy, meta, portable), values in got.items():
        expected = unsharded[portable]
        assert values.keys() == expected.keys()
        for name, value in values.items():
            assert torch.equal(value, expected[name]), f"{strategy} meta={meta} portable={portable}: {name}"


def test_the_unsharded_model_draws_each_spec_by_its_law(unsharded) -> None:
    # The gathered values are compared with these: make sure they are the specs' laws.
    from multiinit import stats

    specs = dict(RULES)
    for portable, values in unsharded.items():
        for name, value in values.items():
            spec = specs[name]
            fans = (530, 515) if name.startswith("dense.") and name.endswith("bias") else None
            if name == "convt.weight":  # stored (20, 6, 3) -> logical (12, 10, 3)
                value = value.reshape(2, 10, 6, 3).transpose(1, 2).reshape(12, 10, 3)
            if name == "convt.bias":
                fans = (30, 36)
            if name == "conv.bias":
                fans = (108, 162)
            if isinstance(spec, mi.spec.Custom):
                continue  # a user law has no analytic law to test
            verdict = stats.check(value.numpy(), spec, fans=fans)
            assert verdict.passed, f"portable={portable} {name}: {verdict}"


@pytest.mark.parametrize("world", WORLDS[1:])
def test_compiled_fillers_and_drop_ins_give_the_same_values_for_any_mesh(world, results) -> None:
    reference = next(iter(results(1)["compiled"].values()))
    for strategy, values in results(world)["compiled"].items():
        assert values, strategy
        for key, value in values.items():
            if key in reference:
                assert torch.equal(value, reference[key]), f"{strategy}: {key}"
    # Every filler ran on some parameter in every world.
    labels = {label for values in results(world)["compiled"].values() for _, label in values}
    assert labels == {label for label, _, _ in _compiled_calls()}


def test_compiled_fillers_on_one_rank_follow_the_stream_rule(results) -> None:
    # World 1: the DTensor holds everything. Its values are the tile rule's from one base
    # drawn from torch's global RNG: recomputed here on plain tensors.
    from multiinit.torch import sharded

    values = next(iter(results(1)["compiled"].values()))
    checked = 0
    for (name, label), value in values.items():
        if label not in ("normal_", "uniform_", "compile(he_normal)"):
            continue
        i = sorted(n for n, _ in Model().named_parameters()).index(name)
        torch.manual_seed(100 + i)
        base = int(torch.randint(0, 1 << 32, (1,)).item())
        spec = {
            "normal_": mi.normal(1.0, 0.5),
            "uniform_": mi.uniform(-2, 2),
            "compile(he_normal)": mi.he_normal(),
        }[label]
        shape = tuple(value.shape)
        fans = sharded._stored_fans(shape) if spec.uses_fans else None
        plain = torch.empty(shape)
        with torch.no_grad():
            sharded.fill(
                sharded.Stream(spec, shape, fans, 0, base), [(tuple(slice(0, n) for n in shape), plain)]
            )
        assert torch.equal(plain, value), (name, label)
        checked += 1
    assert checked >= 3


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--worker":
    np.seterr(all="ignore")
    _worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
