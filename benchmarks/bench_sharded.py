"""Sharded models: each rank's draw time and peak memory against the unsharded draw.

Run in a backend's env: ``python benchmarks/bench_sharded.py [--small] [--rounds 3]``.

torch: an ``nn.Sequential`` of 8 ``Linear(4096, 4096)`` (134M parameters) built on ``meta``,
sharded with FSDP2 ``fully_shard`` (Shard(0)) or tensor parallel (ColwiseParallel and
RowwiseParallel alternating: Shard(0) and Shard(1) weights), materialized and initialized by
``mi.apply(model, rules, seed=0, device="cpu")`` -- gloo on CPU, 2 and 4 ranks, against the
same model unsharded in one process. Ranks draw one at a time (a barrier between them: the
draw needs no communication), so a rank's time is its own work even where ranks outnumber
cores; every process runs with ``MULTIINIT_THREADS=1``, so the times compare one thread's work.
Per rank: time and peak RSS above the process's baseline, each as a ratio against the
unsharded figure scaled to the rank's share of the parameters (goal for elementwise laws: at
most 1.1), and a check that no collective ran during the draw (every process group's
sequence number unchanged).

JAX/Flax: the same 8 x 4096 x 4096 kernels (an ``nn.Sequential`` of ``nn.Dense(4096)``) as an
abstract tree (``jax.eval_shape``), materialized by ``mi.apply(abstract, rules, seed=0,
shardings=...)`` on 1 (the unsharded draw), 2, 4 and 8 simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``, one fresh process per case), kernels
sharded ``P(None, "model")`` and biases ``P("model")``, native and portable. Per case: the time
of the whole draw against the unsharded one (the simulated devices share the machine's cores, so
equal total work shows as a ratio near 1: no device repeats another's work), the peak RSS above
the baseline against the parameters (near 1 plus the temporaries: no device holds more than
its shard), and, from XLA's own account of the compiled program of one kernel, each device's
output and temporary bytes against its shard (goal for elementwise laws: at most 1.1x the
shard for the output; JAX's random programs take 3x their output in temporaries, sharded or
not) and the collectives in it (goal: none).

``--small`` runs 4 x ``Linear(1024, 1024)`` and one round, to check the script works. Each
framework's part runs when its framework is installed; ``--framework`` picks one.
Another framework's part goes in its own functions, called from ``main``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES_TEXT = {"weight": "normal(std=0.02)", "bias": "zeros()"}


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# --------------------------------------------------------------------------- torch


def _torch_model(layers: int, size: int):
    import torch
    from torch import nn

    with torch.device("meta"):
        return nn.Sequential(*(nn.Linear(size, size) for _ in range(layers)))


def _sequence_numbers() -> list[int]:
    from torch.distributed import distributed_c10d as c10d

    return [pg._get_sequence_number_for_group() for pg in c10d._world.pg_map]


def torch_unsharded(layers: int, size: int, rounds: int) -> dict:
    """The unsharded draw in this process: seconds (fastest round) and peak RSS above the
    baseline."""
    from torch import nn

    import multiinit as mi

    mi.apply(nn.Linear(8, 8), RULES_TEXT, seed=0)
    baseline = peak_rss()
    times = []
    for _ in range(rounds):
        model = _torch_model(layers, size)
        start = time.perf_counter()
        mi.apply(model, RULES_TEXT, seed=0, device="cpu")
        times.append(time.perf_counter() - start)
        del model
    return {
        "seconds": min(times),
        "rss_above": peak_rss() - baseline,
        "param_bytes": layers * (size * size + size) * 4,
    }


def torch_rank(rank: int, world: int, store: str, strategy: str, layers: int, size: int, rounds: int) -> dict:
    """One rank: shard, then draw in turn with the other ranks; its time, memory, shard bytes."""
    import warnings

    import torch.distributed as dist
    from torch import nn
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    import multiinit as mi

    warnings.filterwarnings("ignore")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))

    def shard(model: nn.Module) -> nn.Module:
        if strategy == "fsdp":
            for layer in model:
                fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
        else:
            parallelize_module(
                model,
                mesh,
                {str(i): ColwiseParallel() if i % 2 == 0 else RowwiseParallel() for i in range(len(model))},
            )
        return model

    # The same steps on a tiny model first: imports and caches are in the baseline.
    mi.apply(shard(_torch_model(2, 16)), RULES_TEXT, seed=0, device="cpu")
    baseline = peak_rss()
    times, collectives, local_bytes = [], 0, 0
    for _ in range(rounds):
        model = shard(_torch_model(layers, size))
        for turn in range(world):
            dist.barrier()
            if turn == rank:
                before = _sequence_numbers()
                start = time.perf_counter()
                mi.apply(model, RULES_TEXT, seed=0, device="cpu")
                times.append(time.perf_counter() - start)
                collectives += sum(_sequence_numbers()) - sum(before)
        dist.barrier()
        local_bytes = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
        # FSDP2's state and the module refer to each other: only the cycle collector frees the
        # round's model, and without it the next round's shards would count on top of it.
        del model
        gc.collect()
    dist.destroy_process_group()
    return {
        "seconds": min(times),
        "rss_above": peak_rss() - baseline,
        "local_bytes": local_bytes,
        "collectives": collectives,
    }


def torch_report(args: argparse.Namespace) -> None:
    layers, size = (4, 1024) if args.small else (8, 4096)
    rounds = 1 if args.small else args.rounds
    unsharded = _run(
        ["--case", "torch-unsharded", "--layers", str(layers), "--size", str(size), "--rounds", str(rounds)]
    )
    total = unsharded["param_bytes"]
    print(
        f"\ntorch: {layers} x Linear({size}, {size}) on meta, {total / 4 / 1e6:.0f}M parameters; "
        f"unsharded draw {unsharded['seconds']:.3f} s, RSS above baseline "
        f"{unsharded['rss_above'] / total:.2f}x the parameters"
    )
    header = (
        f"{'strategy':<8} {'ranks':>5} {'rank':>4} {'shard':>7} {'seconds':>8} "
        f"{'time / (unsharded x share)':>27} {'RSS above / shard':>18} {'collectives':>11}"
    )
    print(header)
    print("-" * len(header))
    for strategy in ("fsdp", "tp"):
        for world in (2, 4):
            for rank, r in enumerate(_launch(strategy, world, layers, size, rounds)):
                share = r["local_bytes"] / total
                print(
                    f"{strategy:<8} {world:>5} {rank:>4} {share:>7.1%} {r['seconds']:>8.3f} "
                    f"{r['seconds'] / (unsharded['seconds'] * share):>27.2f} "
                    f"{r['rss_above'] / r['local_bytes']:>18.2f} {r['collectives']:>11}"
                )


# --------------------------------------------------------------------------- JAX / Flax


def flax_case(devices: int, portable: bool, layers: int, size: int, rounds: int) -> dict:
    """One JAX case in this process (started with ``devices`` simulated devices)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    import multiinit as mi
    from multiinit.fans import LogicalView
    from multiinit.flax import sharded

    assert jax.device_count() == devices, jax.devices()
    rules = {"kernel": mi.normal(std=0.02), "bias": mi.zeros()}
    mesh = jax.make_mesh((devices,), ("model",))
    model = nn.Sequential([nn.Dense(size) for _ in range(layers)])
    x, key = jnp.ones((1, size)), jax.random.key(0)
    abstract = jax.eval_shape(model.init, key, x)
    spec = {"kernel": P(None, "model"), "bias": P("model")}
    shardings = jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(mesh, spec[path[-1].key]), abstract
    )

    def ready(tree) -> None:
        jax.block_until_ready(jax.tree.leaves(tree))

    small = jax.eval_shape(nn.Sequential([nn.Dense(8 * devices)]).init, key, jnp.ones((1, 8)))
    small_shardings = jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(mesh, spec[path[-1].key]), small
    )
    ready(mi.apply(small, rules, seed=0, portable=portable, shardings=small_shardings))
    baseline = peak_rss()
    times = []
    for _ in range(rounds + 1):  # the first round compiles
        start = time.perf_counter()
        out = mi.apply(abstract, rules, seed=0, portable=portable, shardings=shardings)
        ready(out)
        times.append(time.perf_counter() - start)
        local = sum(
            s.data.nbytes
            for leaf in jax.tree.leaves(out)
            for s in leaf.addressable_shards
            if s.device == jax.devices()[0]
        )
        del out
    view = LogicalView.of((size, size), "...,in,out")
    kernel, numbers = sharded.program(
        mi.normal(std=0.02), view, None, np.dtype("float32"), NamedSharding(mesh, P(None, "model"))
    )
    with jax.threefry_partitionable(True):
        compiled = kernel.lower(key, np.uint32(0), *numbers).compile()
    memory = compiled.memory_analysis()
    shard = size * size * 4 // devices
    return {
        "seconds": min(times[1:]),
        "rss_above": peak_rss() - baseline,
        "param_bytes": layers * (size * size + size) * 4,
        "device0_bytes": local,
        "out_per_shard": memory.output_size_in_bytes / shard,
        "temp_per_shard": memory.temp_size_in_bytes / shard,
        "collectives": sharded.collectives(
            mi.normal(std=0.02), view, None, np.dtype("float32"), NamedSharding(mesh, P(None, "model"))
        ),
    }


def flax_report(args: argparse.Namespace) -> None:
    layers, size = (4, 1024) if args.small else (8, 4096)
    rounds = 1 if args.small else args.rounds
    print(
        f"\nJAX/Flax: {layers} x nn.Dense({size}) abstract, {layers * size * size / 1e6:.0f}M parameters, "
        "kernels P(None, 'model'), biases P('model'); simulated CPU devices"
    )
    header = (
        f"{'mode':<9} {'devices':>7} {'seconds':>8} {'time / unsharded':>17} {'RSS above / params':>19} "
        f"{'device 0 / params':>18} {'out / shard':>12} {'temp / shard':>13} {'collectives':>12}"
    )
    print(header)
    print("-" * len(header))
    for portable in (False, True):
        results = {}
        for devices in (1, 2, 4, 8):
            results[devices] = _run(
                [
                    "--case",
                    "flax",
                    "--world",
                    str(devices),
                    "--layers",
                    str(layers),
                    "--size",
                    str(size),
                    "--rounds",
                    str(rounds),
                ]
                + (["--portable"] if portable else []),
                devices=devices,
            )
        for devices, r in results.items():
            print(
                f"{'portable' if portable else 'native':<9} {devices:>7} {r['seconds']:>8.3f} "
                f"{r['seconds'] / results[1]['seconds']:>17.2f} {r['rss_above'] / r['param_bytes']:>19.2f} "
                f"{r['device0_bytes'] / r['param_bytes']:>18.3f} {r['out_per_shard']:>12.2f} "
                f"{r['temp_per_shard']:>13.2f} {len(r['collectives']):>12}"
            )


# --------------------------------------------------------------------------- driver


def _env(devices: int | None = None) -> dict:
    env = dict(os.environ)
    if devices is not None:  # JAX: simulated CPU devices, set before jax is imported
        env["XLA_FLAGS"] = (
            f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
        )
        env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), *filter(None, [env.get("PYTHONPATH")])])
    env["MULTIINIT_THREADS"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def _run(arguments: list[str], devices: int | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *arguments],
        capture_output=True,
        text=True,
        env=_env(devices),
        check=False,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"{arguments} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _launch(strategy: str, world: int, layers: int, size: int, rounds: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        store = os.path.join(folder, "store")
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--case",
                    "torch-rank",
                    "--rank",
                    str(rank),
                    "--world",
                    str(world),
                    "--store",
                    store,
                    "--strategy",
                    strategy,
                    "--layers",
                    str(layers),
                    "--size",
                    str(size),
                    "--rounds",
                    str(rounds),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(),
            )
            for rank in range(world)
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=3600)
            if proc.returncode != 0:
                for other in procs:
                    other.kill()
                raise SystemExit(f"{strategy}, {world} ranks failed:\n{out}\n{err}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="4 x Linear(1024, 1024), one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--framework", choices=("torch", "flax"), help="only this framework's part")
    parser.add_argument("--portable", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--case", "--store", "--strategy"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    for hidden, default in (("--rank", 0), ("--world", 1), ("--layers", 8), ("--size", 4096)):
        parser.add_argument(hidden, type=int, default=default, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case == "torch-unsharded":
        print(json.dumps(torch_unsharded(args.layers, args.size, args.rounds)))
        return
    if args.case == "torch-rank":
        print(
            json.dumps(
                torch_rank(
                    args.rank, args.world, args.store, args.strategy, args.layers, args.size, args.rounds
                )
            )
        )
        return
    if args.case == "flax":
        print(json.dumps(flax_case(args.world, args.portable, args.layers, args.size, args.rounds)))
        return
    print(f"{os.cpu_count()} CPU(s); each process draws on one thread")
    import importlib.util

    for framework, module, report in (("torch", "torch", torch_report), ("flax", "flax", flax_report)):
        if args.framework in (None, framework) and importlib.util.find_spec(module) is not None:
            report(args)


if __name__ == "__main__":
    main()
