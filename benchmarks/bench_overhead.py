"""What ``mi.apply`` costs per parameter: a model of many small layers against the framework's
own init loop, where drawing the values costs next to nothing and the walk is the whole bill.

Run in a backend's env: ``python benchmarks/bench_overhead.py [--layers 500] [--width 64]
[--rounds 7]``. The model is ``--layers`` blocks of a dense layer (``width x width``) and a
layer norm: four parameters a block, 2000 by default, each of 64 to 4096 values. The rules are
``normal(std=0.02)`` for the dense kernels, zeros for the biases and ones for the norm scales;
the native loop writes the same laws with the framework's own calls (torch ``normal_``,
``zero_``, ``fill_``; Keras ``assign`` of its ``RandomNormal``/``Zeros``/``Ones``; MXNet
``set_data`` of ``mx.nd.random.normal``/``zeros``/``ones``). Flax is left out: a variables
dict is initialized by one jitted program, ``jax.jit(model.init)``, not by a loop over
parameters, and ``bench_apply.py`` times that against ``mi.apply``.

Each row is the fastest of ``--rounds`` rounds after a warm-up, ``mi.apply`` and the loop
alternating, and prints the two times, their ratio, and ``mi.apply``'s cost per parameter
above the loop's. For models of large parameters (``bench_apply.py``) this cost is lost in the
draw: 2000 parameters at 0.1 ms each is 0.2 s, against 1-5 s for a 67M model.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable

from common import memory_line


def _fastest(ours: Callable[[], object], theirs: Callable[[], object], rounds: int) -> tuple[float, float]:
    ours()
    theirs()
    a, b = [], []
    for i in range(rounds):
        for fn, times in ((ours, a), (theirs, b)) if i % 2 == 0 else ((theirs, b), (ours, a)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(a), min(b)


def _row(label: str, params: int, ours: float, theirs: float) -> None:
    extra = (ours - theirs) / params * 1e6
    print(
        f"  {label:<28} {params:>6} params   mi.apply {ours * 1e3:8.1f} ms   loop {theirs * 1e3:8.1f} ms"
        f"   ratio {ours / theirs:5.2f}   +{extra:6.1f} us/param"
    )


def torch_rows(layers: int, width: int, rounds: int) -> None:
    import torch
    from torch import nn

    import multiinit as mi

    net = nn.Sequential(*(nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width)) for _ in range(layers)))
    rules = [
        (mi.select(kind="dense", role="weight"), mi.normal(std=0.02)),
        ("bias", mi.zeros()),
        ("weight", mi.ones()),
    ]

    def loop() -> None:
        with torch.no_grad():
            for block in net:
                block[0].weight.normal_(0.0, 0.02)
                block[0].bias.zero_()
                block[1].weight.fill_(1.0)
                block[1].bias.zero_()

    for label, seed in (("torch, seed=0", 0), ("torch, global generator", None)):
        ours, theirs = _fastest(lambda s=seed: mi.apply(net, rules, seed=s), loop, rounds)
        _row(label, 4 * layers, ours, theirs)


def keras_rows(layers: int, width: int, rounds: int) -> None:
    import keras

    import multiinit as mi

    blocks = []
    for _ in range(layers):
        blocks += [keras.layers.Dense(width), keras.layers.LayerNormalization()]
    for block in blocks:
        block.build((None, width))

    class Stack(keras.layers.Layer):
        """The blocks as one layer (a Sequential this deep exceeds Python's recursion limit)."""

        def __init__(self) -> None:
            super().__init__()
            self.blocks = blocks

    model = Stack()
    model.built = True  # its blocks are built, above
    rules = [
        ("kernel", mi.normal(std=0.02)),
        ("bias", mi.zeros()),
        ("beta", mi.zeros()),
        ("gamma", mi.ones()),
    ]
    normal, zeros, ones = (
        keras.initializers.RandomNormal(stddev=0.02),
        keras.initializers.Zeros(),
        keras.initializers.Ones(),
    )

    def loop() -> None:
        for layer in blocks:
            if isinstance(layer, keras.layers.Dense):
                layer.kernel.assign(normal(layer.kernel.shape))
                layer.bias.assign(zeros(layer.bias.shape))
            else:
                layer.gamma.assign(ones(layer.gamma.shape))
                layer.beta.assign(zeros(layer.beta.shape))

    label = f"keras ({keras.backend.backend()}), seed=0"
    ours, theirs = _fastest(lambda: mi.apply(model, rules, seed=0), loop, rounds)
    _row(label, 4 * layers, ours, theirs)


def mxnet_rows(layers: int, width: int, rounds: int) -> None:
    import mxnet as mx
    from mxnet.gluon import nn

    import multiinit as mi

    net = nn.Sequential()
    for _ in range(layers):
        net.add(nn.Dense(width, in_units=width), nn.LayerNorm(in_channels=width))
    net.initialize()
    rules = [
        ("weight", mi.normal(std=0.02)),
        ("bias", mi.zeros()),
        ("beta", mi.zeros()),
        ("gamma", mi.ones()),
    ]
    params = list(net.collect_params().values())

    def loop() -> None:
        for p in params:
            shape = p.shape
            if p.name.endswith("weight"):
                p.set_data(mx.nd.random.normal(0, 0.02, shape=shape))
            elif p.name.endswith("gamma"):
                p.set_data(mx.nd.ones(shape))
            else:
                p.set_data(mx.nd.zeros(shape))
        mx.nd.waitall()

    def ours() -> None:
        mi.apply(net, rules, seed=0)
        mx.nd.waitall()

    a, b = _fastest(ours, loop, rounds)
    _row("mxnet, seed=0", len(params), a, b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=500, help="blocks of a dense layer and a norm")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    width = args.width
    print(f"mi.apply against the framework's init loop, {args.layers} x (dense {width}x{width} + norm)")
    print(memory_line())
    found = False
    for module, rows in (("torch", torch_rows), ("keras", keras_rows), ("mxnet", mxnet_rows)):
        if importlib.util.find_spec(module) is not None:
            found = True
            rows(args.layers, args.width, args.rounds)
    if not found:
        print("  none of torch, keras or mxnet is installed in this env")


if __name__ == "__main__":
    main()
