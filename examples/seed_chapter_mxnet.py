"""d2l "Parameter Initialization" (MXNet tab), written with multiinit on Gluon.

Run: python examples/seed_chapter_mxnet.py
"""

import mxnet as mx
import numpy as np
from mxnet import np as mnp, npx
from mxnet.gluon import nn

import multiinit as mi
from multiinit import mxnet as mim

npx.set_np()
mx.random.seed(0)
net = nn.Sequential()
net.add(nn.Dense(8, activation="relu"))
net.add(nn.Dense(1))
net.initialize()
X = mnp.random.uniform(size=(2, 4))
net(X)  # Gluon defers the shapes until the first forward pass


def weight(layer):
    return net[layer].weight.data().asnumpy()


def bias(layer):
    return net[layer].bias.data().asnumpy()


print("== 1. Built-in initialization: weights N(0, 0.01), biases 0")
mi.apply(net, {"weight": mi.normal(mean=0, std=0.01), "bias": mi.zeros()}, seed=0)
print(net[0].weight.data()[0], net[0].bias.data()[0])
assert (bias(0) == 0).all() and (bias(1) == 0).all()
assert np.abs(weight(0)).max() < 0.05  # 5 std: a real N(0, 0.01) draw, not MXNet's default U(-0.07, 0.07)

print("== 2. Constant: weights 1, biases 0")
mi.apply(net, {"weight": mi.constant(1), "bias": mi.zeros()})
print(net[0].weight.data()[0], net[0].bias.data()[0])
assert (weight(0) == 1).all() and (weight(1) == 1).all() and (bias(0) == 0).all()

print("== 3. One initializer per block: Xavier on the first layer, 42 on the last")
bound = (6 / (4 + 8)) ** 0.5  # Xavier uniform's bound for fan_in 4, fan_out 8
mi.apply(net, {"0.weight": mi.xavier_uniform(), "1.weight": mi.constant(42)}, seed=0)
print(net[0].weight.data()[0])
print(net[1].weight.data())
assert np.abs(weight(0)).max() <= bound and (weight(1) == 42).all()
# The same laws as Gluon initializers, as the chapter passes mx.init.Xavier() and Constant(42):
net[0].weight.initialize(init=mim.xavier_uniform(), force_reinit=True)
net[1].initialize(init=mim.constant(42), force_reinit=True)
assert np.abs(weight(0)).max() <= bound and (weight(1) == 42).all()

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
    print(spec, net[0].weight.data()[:2], sep="\n")
    for w in (weight(0), weight(1)):
        assert ((w == 0) | ((np.abs(w) >= 5) & (np.abs(w) <= 10))).all()

print("== 5. Setting parameters directly")
before = weight(0)
net[0].weight.set_data(net[0].weight.data() + 1)
edited = net[0].weight.data().copy()
edited[0, 0] = 42
net[0].weight.set_data(edited)
print(net[0].weight.data()[0])
after = weight(0)
assert after[0, 0] == 42 and np.array_equal(after.ravel()[1:], (before + 1).ravel()[1:])
