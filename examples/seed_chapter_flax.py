"""d2l "Parameter Initialization" (JAX tab), written with multiinit on flax.linen.

Run: python examples/seed_chapter_flax.py
"""

import flax.linen as nn
import jax
import numpy as np
from flax import nnx

import multiinit as mi
from multiinit import flax as mif

net = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(1)])
X = jax.random.uniform(jax.random.key(1), (2, 4))
params = net.init(jax.random.key(0), X)


def weights(tree, layer):
    # Flax kernels are (in, out): the transpose is torch's weight, rows = output units.
    return np.asarray(tree["params"][layer]["kernel"]).T


def bias(tree, layer):
    return np.asarray(tree["params"][layer]["bias"])


print("== 1. Built-in initialization: weights N(0, 0.01), biases 0")
# A linen tree is immutable: apply returns a new tree and leaves `params` as it was.
new = mi.apply(params, {"weight": mi.normal(mean=0, std=0.01), "bias": mi.zeros()}, seed=0)
print(weights(new, "layers_0")[0], bias(new, "layers_0")[0])
assert (bias(new, "layers_0") == 0).all() and (bias(new, "layers_2") == 0).all()
assert np.abs(weights(new, "layers_0")).max() < 0.05  # 5 std: a real N(0, 0.01) draw
assert not np.array_equal(weights(params, "layers_0"), weights(new, "layers_0"))

print("== 2. Constant: weights 1, biases 0")
new = mi.apply(params, {"weight": mi.constant(1), "bias": mi.zeros()})
print(weights(new, "layers_0")[0], bias(new, "layers_0")[0])
assert (weights(new, "layers_0") == 1).all() and (weights(new, "layers_2") == 1).all()
assert (bias(new, "layers_0") == 0).all()

print("== 3. One initializer per block: Xavier on the first layer, 42 on the last")
bound = (6 / (4 + 8)) ** 0.5  # Xavier uniform's bound for fan_in 4, fan_out 8
rules = {"params/layers_0/kernel": mi.xavier_uniform(), "params/layers_2/kernel": mi.constant(42)}
new = mi.apply(params, rules, seed=0)
print(weights(new, "layers_0")[0])
print(weights(new, "layers_2"))
assert np.abs(weights(new, "layers_0")).max() <= bound and (weights(new, "layers_2") == 42).all()
# The same laws as kernel_init functions, for layers that take their initializer themselves:
native = nn.Sequential([nn.Dense(8, kernel_init=mif.xavier_uniform()), nn.relu,
                        nn.Dense(1, kernel_init=mif.constant(42))]).init(jax.random.key(0), X)
assert np.abs(weights(native, "layers_0")).max() <= bound and (weights(native, "layers_2") == 42).all()

print("== 4. Custom initialization: d2l's my_init, U(-10, 10) zeroed where |w| < 5")


def my_init(rng, shape, dtype):
    # Written once in NumPy, so the same function initializes the net in every framework.
    w = rng.uniform(-10, 10, shape)
    return np.where(np.abs(w) >= 5, w, 0.0)


MY_INIT = mi.custom(my_init, name="examples.my_init")
# The same law without code: 1/4 U(5, 10), 1/2 exactly 0, 1/4 U(-10, -5).
MY_INIT_LAW = mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))])
for spec in (MY_INIT, MY_INIT_LAW):
    new = mi.apply(params, {"weight": spec}, seed=0)
    print(spec, weights(new, "layers_0")[:2], sep="\n")
    for w in (weights(new, "layers_0"), weights(new, "layers_2")):
        assert ((w == 0) | ((np.abs(w) >= 5) & (np.abs(w) <= 10))).all()

print("== 5. Setting parameters directly")
# JAX arrays are immutable: the edit is a new kernel in a new tree.
kernel = new["params"]["layers_0"]["kernel"]
edited = (kernel + 1).at[0, 0].set(42)
new = {"params": {**new["params"], "layers_0": {**new["params"]["layers_0"], "kernel": edited}}}
print(weights(new, "layers_0")[0])
after, before = np.asarray(edited), np.asarray(kernel)
assert after[0, 0] == 42 and np.array_equal(after.ravel()[1:], (before + 1).ravel()[1:])
# flax.nnx modules hold their variables: apply and set_value change them in place.
layer = nnx.Linear(4, 8, rngs=nnx.Rngs(0))
mi.apply(layer, {"weight": MY_INIT_LAW, "bias": mi.zeros()}, seed=0)
layer.kernel.set_value((layer.kernel[...] + 1).at[0, 0].set(42))
assert layer.kernel[0, 0] == 42 and (layer.bias[...] == 0).all()
