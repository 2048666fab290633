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

``--small`` runs 4 x ``Linear(1024, 1024)`` and one round, to check the script works.
Another framework's part goes in its own functions, called from ``main``.
"""

from __future__ import annotations

import argparse
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
    import multiinit as mi
    from torch import nn

    mi.apply(nn.Linear(8, 8), RULES_TEXT, seed=0)
    baseline = peak_rss()
    times = []
    for _ in range(rounds):
        model = _torch_model(layers, size)
        start = time.perf_counter()
        mi.apply(model, RULES_TEXT, seed=0, device="cpu")
        times.append(time.perf_counter() - start)
        del model
    return {"seconds": min(times), "rss_above": peak_rss() - baseline,
            "param_bytes": layers * (size * size + size) * 4}


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
            parallelize_module(model, mesh, {str(i): ColwiseParallel() if i % 2 == 0 else RowwiseParallel()
                                             for i in range(len(model))})
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
        del model
    dist.destroy_process_group()
    return {"seconds": min(times), "rss_above": peak_rss() - baseline, "local_bytes": local_bytes,
            "collectives": collectives}


def torch_report(args: argparse.Namespace) -> None:
    layers, size = (4, 1024) if args.small else (8, 4096)
    rounds = 1 if args.small else args.rounds
    unsharded = _run(["--case", "torch-unsharded", "--layers", str(layers), "--size", str(size),
                      "--rounds", str(rounds)])
    total = unsharded["param_bytes"]
    print(f"\ntorch: {layers} x Linear({size}, {size}) on meta, {total / 4 / 1e6:.0f}M parameters; "
          f"unsharded draw {unsharded['seconds']:.3f} s, RSS above baseline "
          f"{unsharded['rss_above'] / total:.2f}x the parameters")
    header = (f"{'strategy':<8} {'ranks':>5} {'rank':>4} {'shard':>7} {'seconds':>8} "
              f"{'time / (unsharded x share)':>27} {'RSS above / shard':>18} {'collectives':>11}")
    print(header)
    print("-" * len(header))
    for strategy in ("fsdp", "tp"):
        for world in (2, 4):
            for rank, r in enumerate(_launch(strategy, world, layers, size, rounds)):
                share = r["local_bytes"] / total
                print(f"{strategy:<8} {world:>5} {rank:>4} {share:>7.1%} {r['seconds']:>8.3f} "
                      f"{r['seconds'] / (unsharded['seconds'] * share):>27.2f} "
                      f"{r['rss_above'] / r['local_bytes']:>18.2f} {r['collectives']:>11}")


# --------------------------------------------------------------------------- driver


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), *filter(None, [env.get("PYTHONPATH")])])
    env["MULTIINIT_THREADS"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def _run(arguments: list[str]) -> dict:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *arguments], capture_output=True,
                          text=True, env=_env(), check=False, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{arguments} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _launch(strategy: str, world: int, layers: int, size: int, rounds: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        store = os.path.join(folder, "store")
        procs = [subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--case", "torch-rank", "--rank", str(rank),
             "--world", str(world), "--store", store, "--strategy", strategy, "--layers", str(layers),
             "--size", str(size), "--rounds", str(rounds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()) for rank in range(world)]
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
    for hidden in ("--case", "--store", "--strategy"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    for hidden, default in (("--rank", 0), ("--world", 1), ("--layers", 8), ("--size", 4096)):
        parser.add_argument(hidden, type=int, default=default, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case == "torch-unsharded":
        print(json.dumps(torch_unsharded(args.layers, args.size, args.rounds)))
        return
    if args.case == "torch-rank":
        print(json.dumps(torch_rank(args.rank, args.world, args.store, args.strategy, args.layers, args.size,
                                    args.rounds)))
        return
    print(f"{os.cpu_count()} CPU(s); each process draws on one thread")
    torch_report(args)


if __name__ == "__main__":
    main()
