"""d2l "Parameter Initialization" (TensorFlow tab), written with multiinit on Keras 3.

Run: python examples/seed_chapter_keras.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up logs would bury the output

import keras
import numpy as np

import multiinit as mi
from multiinit import keras as mik

keras.utils.set_random_seed(0)


def chapter_net(**first_layer):
    # Named layers give stable paths ("net/hidden/kernel") for rules, whatever else was built.
    net = keras.Sequential([keras.layers.Dense(8, activation="relu", name="hidden", **first_layer),
                            keras.layers.Dense(1, name="output")], name="net")
    net(keras.random.uniform((2, 4), seed=0))  # builds the variables: 4 input features
    return net


net = chapter_net()
hidden, output = net.layers

print("== 1. Built-in initialization: weights N(0, 0.01), biases 0")
mi.apply(net, {"weight": mi.normal(mean=0, std=0.01), "bias": mi.zeros()}, seed=0)
# Keras kernels are (in, out): column 0 is what torch calls weight[0].
print(hidden.kernel.numpy()[:, 0], hidden.bias.numpy()[0])
assert (hidden.bias.numpy() == 0).all() and (output.bias.numpy() == 0).all()
assert np.abs(hidden.kernel.numpy()).max() < 0.05  # 5 std: a real N(0, 0.01) draw, not Glorot

print("== 2. Constant: weights 1, biases 0")
mi.apply(net, {"weight": mi.constant(1), "bias": mi.zeros()})
print(hidden.kernel.numpy()[:, 0], hidden.bias.numpy()[0])
assert (hidden.kernel.numpy() == 1).all() and (output.kernel.numpy() == 1).all()
assert (hidden.bias.numpy() == 0).all()

print("== 3. One initializer per block: Xavier on the first layer, 42 on the last")
bound = (6 / (4 + 8)) ** 0.5  # Xavier uniform's bound for fan_in 4, fan_out 8
mi.apply(net, {"*hidden/kernel": mi.xavier_uniform(), "*output/kernel": mi.constant(42)}, seed=0)
print(hidden.kernel.numpy()[:, 0])
print(output.kernel.numpy().T)
assert np.abs(hidden.kernel.numpy()).max() <= bound and (output.kernel.numpy() == 42).all()
# The same law as a Keras initializer, for layers that take their initializer themselves:
other = chapter_net(kernel_initializer=mik.xavier_uniform(seed=0))
assert np.abs(other.layers[0].kernel.numpy()).max() <= bound

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
    print(spec, hidden.kernel.numpy()[:, :2].T, sep="\n")
    for w in (hidden.kernel.numpy(), output.kernel.numpy()):
        assert ((w == 0) | ((np.abs(w) >= 5) & (np.abs(w) <= 10))).all()

print("== 5. Setting parameters directly")
before = hidden.kernel.numpy()
hidden.kernel.assign(hidden.kernel + 1)
hidden.kernel.assign(keras.ops.slice_update(hidden.kernel.value, (0, 0), keras.ops.full((1, 1), 42.0)))
print(hidden.kernel.numpy()[:, 0])
after = hidden.kernel.numpy()
assert after[0, 0] == 42 and np.array_equal(after.ravel()[1:], (before + 1).ravel()[1:])
