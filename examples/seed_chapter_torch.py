"""d2l "Parameter Initialization" (PyTorch tab), written with multiinit.

Run: python examples/seed_chapter_torch.py
"""

import numpy as np
import torch
from torch import nn

import multiinit as mi
from multiinit import torch as mit

torch.manual_seed(0)
net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(1))
X = torch.rand(size=(2, 4))
net(X)  # lazy layers get their shapes (and become nn.Linear) at the first forward pass

print("== 1. Built-in initialization: weights N(0, 0.01), biases 0")
mi.apply(net, {"weight": mi.normal(mean=0, std=0.01), "bias": mi.zeros()}, seed=0)
print(net[0].weight.data[0], net[0].bias.data[0])
assert (net[0].bias == 0).all() and (net[2].bias == 0).all()
assert net[0].weight.abs().max() < 0.05  # 5 std: a real N(0, 0.01) draw, not a leftover default

print("== 2. Constant: weights 1, biases 0")
mi.apply(net, {"weight": mi.constant(1), "bias": mi.zeros()})
print(net[0].weight.data[0], net[0].bias.data[0])
assert (net[0].weight == 1).all() and (net[2].weight == 1).all() and (net[0].bias == 0).all()

print("== 3. One initializer per block: Xavier on the first layer, 42 on the last")
bound = (6 / (4 + 8)) ** 0.5  # Xavier uniform's bound for fan_in 4, fan_out 8
mi.apply(net, {"0.weight": mi.xavier_uniform(), "2.weight": mi.constant(42)}, seed=0)
print(net[0].weight.data[0])
print(net[2].weight.data)
assert net[0].weight.abs().max() <= bound and (net[2].weight == 42).all()
# The same law as a drop-in for torch.nn.init, for code that fills tensors itself:
mit.xavier_uniform_(net[0].weight)
mit.constant_(net[2].weight, 42)
assert net[0].weight.abs().max() <= bound and (net[2].weight == 42).all()

print("== 4. Custom initialization: d2l's my_init, U(-10, 10) zeroed where |w| < 5")


def my_init(rng, shape, dtype):
    # Written once in NumPy, so the same function initializes the net in every framework.
    w = rng.uniform(-10, 10, shape)
    return np.where(np.abs(w) >= 5, w, 0.0)


MY_INIT = mi.custom(my_init, name="examples.my_init")
# The same law without code: 1/4 U(5, 10), 1/2 exactly 0, 1/4 U(-10, -5).
MY_INIT_LAW = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])
for spec in (MY_INIT, MY_INIT_LAW):
    mi.apply(net, {"weight": spec}, seed=0)
    print(spec, net[0].weight.data[:2], sep="\n")
    for w in (net[0].weight, net[2].weight):
        assert ((w == 0) | ((w.abs() >= 5) & (w.abs() <= 10))).all()

print("== 5. Setting parameters directly")
before = net[0].weight.data.clone()
net[0].weight.data[:] += 1
net[0].weight.data[0, 0] = 42
print(net[0].weight.data[0])
assert net[0].weight[0, 0] == 42
assert torch.equal(net[0].weight.data.flatten()[1:], (before + 1).flatten()[1:])
