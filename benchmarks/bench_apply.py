"""Model-level ``mi.apply`` against each framework's own init loop: time and peak memory.

Run in a backend's env: ``python benchmarks/bench_apply.py [--small] [--rounds 5]``.

Every case runs in a fresh subprocess (``--case``), so one case's memory never counts in
another's peak: the process imports everything, notes its peak RSS (``resource.getrusage``),
builds its model, times the initialization (the fastest of ``--rounds`` rounds; a meta case
builds its model again each round), and reports the time and its peak RSS above that
baseline. The parent prints each time as a ratio against the native case of the same run and
each memory figure against the bytes of the model's parameters.

torch (the issue's models: ``nn.Sequential`` of 4 and 18 ``Linear(4096, 4096)``, 67M and
302M parameters, float32):

* ``native loop``: ``normal_(0, 0.02)`` / ``zeros_`` per parameter on a built model;
* ``mi.apply seed``: ``mi.apply(net, {"weight": mi.normal(std=0.02), "bias": mi.zeros()}, seed=0)``
  on the same model (goal: at most 1.05x the native loop);
* ``mi.apply portable``: the same with ``portable=True`` (goal: at least 0.5x the native
  throughput, i.e. at most 2x its time);
* ``default + re-init``: construction with torch's own init, then the native loop (what
  people do without meta);
* ``meta + to_empty + loop``: built on ``meta``, ``to_empty(device="cpu")``, native loop;
* ``meta + mi.apply``: built on ``meta``, ``mi.apply(..., seed=0, device="cpu")`` (goal: at
  most 0.7x default + re-init, peak RSS above the baseline at most 1.15x the parameters);
* ``meta + mi.apply portable``: the same in portable mode (the same memory goal).

Keras (in a Keras env, on the backend ``KERAS_BACKEND`` names: ``keras.Sequential`` of 4 and 18
``Dense(4096)`` on 4096 features, 67M and 302M parameters, float32; one 4096x4096 kernel is a
quarter of the 67M model, so a peak of one parameter above the model reads 1.25x there; on JAX
Keras' construction holds the whole model twice while it builds):

* ``native loop``: ``variable.assign(initializer(shape))`` per variable with Keras' own
  ``RandomNormal(stddev=0.02)`` and ``Zeros`` on a built model;
* ``mi.apply seed`` / ``mi.apply portable``: as for torch, on the same model;
* ``default + re-init``: Keras' construction (its own initializers), then the native loop;
* ``deferred + mi.apply``: built inside ``keras.StatelessScope(initialize_variables=False)``
  (no value drawn), then ``mi.apply(..., seed=0)``: each variable allocated once, with its
  values; ``deferred + mi.apply portable`` the same in portable mode.

JAX/Flax (an ``nn.Sequential`` of 18 ``nn.Dense(4096)`` on 4096 inputs, 302M parameters, float32;
rules ``{"kernel": mi.normal(std=0.02), "bias": mi.zeros()}``; steady-state times, a first round
compiles):

* ``flax init``: ``jax.jit(model.init)`` with ``kernel_init=normal(0.02)``, zero biases -- Flax's
  own way to the same law, the native baseline;
* ``mi.apply seed``: ``mi.apply(variables, rules, seed=0)`` on an initialized tree (a new tree:
  the input and the output coexist, so its peak is twice the parameters);
* ``mi.apply seed donate``: the same with ``donate=True`` (goal: within 1.05x of ``flax init``,
  peak RSS at most 1.15x the parameters; JAX's random programs, Flax's init included, take 3x
  their output in temporaries, 0.17 of this model for one kernel: multiinit draws big
  parameters in row blocks of 8 MB, the same numbers, ``multiinit/flax/blocks.py``);
* ``mi.apply portable``: portable mode, ``donate=True`` (goal: at least 0.5x the native throughput);
* ``default init + re-init``: ``jax.jit(model.init)`` with Flax's default initializers, then
  ``mi.apply(..., donate=True)`` (what people do without an abstract tree);
* ``abstract + mi.apply``: ``jax.eval_shape(model.init, ...)`` then ``mi.apply(abstract, rules,
  seed=0)``: nothing allocated before the draw (goal: at most 0.7x default init + re-init, peak RSS
  at most 1.15x the parameters);
* ``abstract + mi.apply portable``: the same in portable mode.

The Flax model is small enough to build at once (Flax modules hold no arrays), so construction
does not dominate: the full 302M size is used.

``--small`` runs 2 x ``Linear(1024, 1024)`` (2 x ``Dense(1024)``, 2 x ``nn.Dense(1024)``) once, to check
the script works. Each framework's part is its ``<framework>_case``/``<framework>_report`` functions,
called from ``main`` for every framework installed in the env.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# --------------------------------------------------------------------------- torch

TORCH_CASES = (
    "native loop",
    "mi.apply seed",
    "mi.apply portable",
    "default + re-init",
    "meta + to_empty + loop",
    "meta + mi.apply",
    "meta + mi.apply portable",
)


def torch_case(name: str, layers: int, size: int, rounds: int) -> dict:
    """Run one torch case in this process; returns seconds, peak RSS above the baseline, and
    the parameters' bytes."""
    import torch
    from torch import nn

    import multiinit as mi

    rules = {"weight": mi.normal(std=0.02), "bias": mi.zeros()}

    def build(device: str = "cpu") -> nn.Module:
        with torch.device(device):
            return nn.Sequential(*(nn.Linear(size, size) for _ in range(layers)))

    def loop(net: nn.Module) -> None:
        with torch.no_grad():
            for layer in net:
                layer.weight.normal_(0.0, 0.02)
                layer.bias.zero_()

    def run_meta(init) -> None:
        net = build("meta")
        init(net)

    def meta_native(net: nn.Module) -> None:
        net.to_empty(device="cpu")
        loop(net)

    def meta_apply(net: nn.Module, portable: bool = False) -> None:
        mi.apply(net, rules, seed=0, portable=portable, device="cpu")

    torch.manual_seed(0)
    mi.apply(nn.Linear(8, 8), rules, seed=0)  # imports and thread pool ready before the baseline
    with torch.device("meta"):  # torch's first model on meta costs ~0.3 s
        tiny = nn.Linear(8, 8)
    mi.apply(tiny, rules, seed=0, device="cpu")
    baseline = peak_rss()
    param_bytes = layers * (size * size + size) * 4
    times = []
    if name in ("native loop", "mi.apply seed", "mi.apply portable"):
        net = build()
        step = {
            "native loop": lambda: loop(net),
            "mi.apply seed": lambda: mi.apply(net, rules, seed=0),
            "mi.apply portable": lambda: mi.apply(net, rules, seed=0, portable=True),
        }[name]
        step()  # warm-up
        for _ in range(rounds):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    else:
        for _ in range(rounds):
            start = time.perf_counter()
            if name == "default + re-init":
                net = build()
                loop(net)
            elif name == "meta + to_empty + loop":
                net = build("meta")
                meta_native(net)
            elif name == "meta + mi.apply":
                net = build("meta")
                meta_apply(net)
            else:
                net = build("meta")
                meta_apply(net, portable=True)
            times.append(time.perf_counter() - start)
            del net
            gc.collect()  # a model in a reference cycle would otherwise count in the next round's peak
    return {"seconds": min(times), "rss_above": peak_rss() - baseline, "param_bytes": param_bytes}


def _print_cases(results: dict[str, dict[str, Any]], cases: tuple[str, ...], params: int) -> None:
    """One line per case: its time as a ratio against the native loop (the first case) for the
    cases on a built model, against "default + re-init" from that case on, and its peak RSS
    above the baseline against the parameters' bytes."""
    split = cases.index("default + re-init")
    against = {name: cases[0] if i < split else cases[split] for i, name in enumerate(cases)}
    width = max(map(len, cases))
    rss = "RSS above baseline / params"
    header = f"{'case':<{width}} {'seconds':>8} {'vs':>{width}} {'ratio':>6} {rss:>28}"
    print(header)
    print("-" * len(header))
    for name in cases:
        r = results[name]
        base = results[against[name]]["seconds"]
        print(
            f"{name:<{width}} {r['seconds']:>8.3f} {against[name]:>{width}} {r['seconds'] / base:>6.2f} "
            f"{r['rss_above'] / params:>28.2f}"
        )


def _models(
    framework: str, cases: tuple[str, ...], args: argparse.Namespace
) -> Iterator[tuple[int, int, int, dict]]:
    """``(layers, size, rounds, results)`` of each model size (67M and 302M parameters; one
    small model with ``--small``), every case run in a fresh process."""
    models = [(2, 1024)] if args.small else [(4, 4096), (18, 4096)]
    rounds = 1 if args.small else args.rounds
    for layers, size in models:
        yield (
            layers,
            size,
            rounds,
            {name: _subprocess(framework, name, layers, size, rounds) for name in cases},
        )


def torch_report(args: argparse.Namespace) -> None:
    """Every torch case, each in a fresh process, as ratios against native."""
    for layers, size, rounds, results in _models("torch", TORCH_CASES, args):
        params = results["native loop"]["param_bytes"]
        print(
            f"\ntorch: {layers} x Linear({size}, {size}), {params / 4 / 1e6:.0f}M parameters "
            f"({params / 2**20:.0f} MiB), fastest of {rounds} round(s)"
        )
        _print_cases(results, TORCH_CASES, params)
        native, portable = results["native loop"]["seconds"], results["mi.apply portable"]["seconds"]
        meta, reinit = results["meta + mi.apply"]["seconds"], results["default + re-init"]["seconds"]
        print(
            f"portable throughput: {native / portable:.2f}x native (goal >= 0.5); "
            f"meta + mi.apply: {meta / reinit:.2f}x default + re-init (goal <= 0.7)"
        )


# --------------------------------------------------------------------------- keras

KERAS_CASES = (
    "native loop",
    "mi.apply seed",
    "mi.apply portable",
    "default + re-init",
    "deferred + mi.apply",
    "deferred + mi.apply portable",
)


def keras_case(name: str, layers: int, size: int, rounds: int) -> dict:
    """Run one Keras case in this process; returns seconds, peak RSS above the baseline, and
    the parameters' bytes."""
    import keras

    import multiinit as mi

    rules = {"kernel": mi.normal(std=0.02), "bias": mi.zeros()}
    normal = keras.initializers.RandomNormal(stddev=0.02)
    zeros = keras.initializers.Zeros()

    def build() -> keras.Model:
        return keras.Sequential([keras.Input((size,)), *(keras.layers.Dense(size) for _ in range(layers))])

    def deferred() -> keras.Model:
        with keras.StatelessScope(initialize_variables=False):
            return build()

    def loop(net: keras.Model) -> None:
        for variable in net.trainable_variables:
            init = normal if variable.name == "kernel" else zeros
            variable.assign(init(variable.shape, variable.dtype))

    def block(net: keras.Model) -> None:
        for variable in net.trainable_variables:  # asynchronous backends (JAX) finish here
            keras.ops.convert_to_numpy(variable.value[:1])

    # Imports and first calls before the baseline, on a tiny model (peak RSS only grows). JAX
    # compiles per shape: the first of the rounds pays it, and the fastest round is reported.
    warm = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8)])
    mi.apply(warm, rules, seed=0)
    loop(warm)
    del warm
    baseline = peak_rss()
    param_bytes = layers * (size * size + size) * 4
    times = []
    if name in ("native loop", "mi.apply seed", "mi.apply portable"):
        net = build()
        step = {
            "native loop": lambda: loop(net),
            "mi.apply seed": lambda: mi.apply(net, rules, seed=0),
            "mi.apply portable": lambda: mi.apply(net, rules, seed=0, portable=True),
        }[name]
        step()
        block(net)
        for _ in range(rounds):
            start = time.perf_counter()
            step()
            block(net)
            times.append(time.perf_counter() - start)
    else:
        for _ in range(rounds):
            start = time.perf_counter()
            if name == "default + re-init":
                net = build()
                loop(net)
            elif name == "deferred + mi.apply":
                net = mi.apply(deferred(), rules, seed=0)
            else:
                net = mi.apply(deferred(), rules, seed=0, portable=True)
            block(net)
            times.append(time.perf_counter() - start)
            del net
            gc.collect()  # a model in a reference cycle would otherwise count in the next round's peak
    return {
        "seconds": min(times),
        "rss_above": peak_rss() - baseline,
        "param_bytes": param_bytes,
        "backend": keras.backend.backend(),
    }


def keras_report(args: argparse.Namespace) -> None:
    """Every Keras case, each in a fresh process, as ratios against native."""
    for layers, size, rounds, results in _models("keras", KERAS_CASES, args):
        params = results["native loop"]["param_bytes"]
        print(
            f"\nkeras ({results['native loop']['backend']}): {layers} x Dense({size}) on {size} features, "
            f"{params / 4 / 1e6:.0f}M parameters ({params / 2**20:.0f} MiB), fastest of {rounds} round(s)"
        )
        _print_cases(results, KERAS_CASES, params)


# --------------------------------------------------------------------------- JAX / Flax

FLAX_CASES = (
    "flax init",
    "mi.apply seed",
    "mi.apply seed donate",
    "mi.apply portable",
    "default init + re-init",
    "abstract + mi.apply",
    "abstract + mi.apply portable",
)


def flax_case(name: str, layers: int, size: int, rounds: int) -> dict:
    """Run one JAX/Flax case in this process; returns seconds, peak RSS above the baseline, and
    the parameters' bytes."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    import multiinit as mi

    rules = {"kernel": mi.normal(std=0.02), "bias": mi.zeros()}

    def build(default: bool = False) -> nn.Module:
        if default:
            return nn.Sequential([nn.Dense(size) for _ in range(layers)])
        return nn.Sequential(
            [nn.Dense(size, kernel_init=nn.initializers.normal(0.02)) for _ in range(layers)]
        )

    key, x = jax.random.key(0), jnp.ones((1, size))

    def ready(tree) -> None:
        jax.block_until_ready(jax.tree.leaves(tree))

    # imports, kernels of another shape, thread pools: ready before the baseline
    small = nn.Dense(8).init(key, jnp.ones((1, 8)))
    ready(mi.apply(small, rules, seed=0))
    ready(mi.apply(small, rules, seed=0, portable=True))
    baseline = peak_rss()
    param_bytes = layers * (size * size + size) * 4
    native_init = jax.jit(build().init)
    default_init = jax.jit(build(default=True).init)
    times = []
    variables = None
    if name in ("mi.apply seed", "mi.apply seed donate", "mi.apply portable"):
        # an initialized tree of the model's arrays, made without random temporaries (JAX's
        # random programs need 3x their output in temporaries, which would set the peak here)
        variables = jax.jit(
            lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(build().init, key, x))
        )()
        ready(variables)
    for _ in range(rounds + 1):  # the first round compiles
        start = time.perf_counter()
        if name == "flax init":
            out = native_init(key, x)
        elif name == "mi.apply seed":
            out = mi.apply(variables, rules, seed=0)
        elif name == "mi.apply seed donate":
            out = variables = mi.apply(variables, rules, seed=0, donate=True)
        elif name == "mi.apply portable":
            out = variables = mi.apply(variables, rules, seed=0, portable=True, donate=True)
        elif name == "default init + re-init":
            out = mi.apply(default_init(key, x), rules, seed=0, donate=True)
        else:
            abstract = jax.eval_shape(build().init, key, x)
            out = mi.apply(abstract, rules, seed=0, portable=name.endswith("portable"))
        ready(out)
        times.append(time.perf_counter() - start)
        del out
    return {
        "seconds": min(times[1:]),
        "first": times[0],
        "rss_above": peak_rss() - baseline,
        "param_bytes": param_bytes,
    }


def flax_report(args: argparse.Namespace) -> None:
    """Every JAX/Flax case, each in a fresh process, as ratios against Flax's own init."""
    layers, size = (2, 1024) if args.small else (18, 4096)
    rounds = 1 if args.small else args.rounds
    results = {name: _subprocess("flax", name, layers, size, rounds) for name in FLAX_CASES}
    params = results["flax init"]["param_bytes"]
    print(
        f"\nJAX/Flax: {layers} x nn.Dense({size}), {params / 4 / 1e6:.0f}M parameters "
        f"({params / 2**20:.0f} MiB), fastest of {rounds} round(s) after a compiling one"
    )
    header = (
        f"{'case':<30} {'seconds':>8} {'first':>8} {'vs':>24} {'ratio':>6} "
        f"{'RSS above baseline / params':>28}"
    )
    print(header)
    print("-" * len(header))
    against = dict.fromkeys(FLAX_CASES, "flax init")
    against.update(
        {
            "abstract + mi.apply": "default init + re-init",
            "abstract + mi.apply portable": "default init + re-init",
        }
    )
    for name in FLAX_CASES:
        r = results[name]
        base = results[against[name]]["seconds"]
        print(
            f"{name:<30} {r['seconds']:>8.3f} {r['first']:>8.3f} {against[name]:>24} "
            f"{r['seconds'] / base:>6.2f} {r['rss_above'] / params:>28.2f}"
        )
    native = results["flax init"]["seconds"]
    donate, portable = results["mi.apply seed donate"]["seconds"], results["mi.apply portable"]["seconds"]
    abstract, reinit = results["abstract + mi.apply"]["seconds"], results["default init + re-init"]["seconds"]
    print(
        f"mi.apply donate: {donate / native:.2f}x flax init (goal <= 1.05); "
        f"portable throughput: {donate / portable:.2f}x native (goal >= 0.5); "
        f"abstract + mi.apply: {abstract / reinit:.2f}x default init + re-init (goal <= 0.7)"
    )


# --------------------------------------------------------------------------- driver


def _subprocess(framework: str, name: str, layers: int, size: int, rounds: int) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--case",
        f"{framework}:{name}",
        "--layers",
        str(layers),
        "--size",
        str(size),
        "--rounds",
        str(rounds),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"case {framework}:{name} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="2 x Linear(1024, 1024), one round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=4096, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        framework, name = args.case.split(":", 1)
        runner = {"torch": torch_case, "keras": keras_case, "flax": flax_case}[framework]
        print(json.dumps(runner(name, args.layers, args.size, args.rounds)))
        return
    import importlib.util

    print(f"{os.cpu_count()} CPU(s); MULTIINIT_THREADS={os.environ.get('MULTIINIT_THREADS', 'unset')}")
    reports = {"torch": torch_report, "keras": keras_report, "flax": flax_report}
    for framework, run in reports.items():
        if importlib.util.find_spec(framework) is not None:
            run(args)


if __name__ == "__main__":
    main()
