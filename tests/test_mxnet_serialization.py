"""dumps() carries the spec; mx.init.create rebuilds an equal initializer, in this process and in
a fresh one that imports only multiinit's mxnet module (and mxnet)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import multiinit as mi
from multiinit import mxnet as mim

from matrix import SPECS


def test_dumps_is_mxnet_form_with_the_spec_dict() -> None:
    init = mi.compile(mi.normal(std=0.01), "mxnet", seed=7)
    assert json.loads(init.dumps()) == [
        "multiinit",
        {"spec": {"kind": "normal", "mean": 0.0, "std": 0.01}, "seed": 7},
    ]


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@pytest.mark.parametrize("seed", [None, 3])
def test_create_rebuilds_an_equal_initializer(spec, seed) -> None:
    init = mi.compile(spec, "mxnet", seed=seed)
    again = mx.init.create(init.dumps())
    assert isinstance(again, mim.Multiinit)
    assert again == init and again.spec == spec and again.seed == seed
    assert again.dumps() == init.dumps()


def test_a_rebuilt_initializer_starts_its_sequence_again() -> None:
    init = mi.compile(mi.uniform(), "mxnet", seed=1)
    first = mx.nd.zeros((4, 5))
    init(mx.init.InitDesc("w_weight"), first)
    init(mx.init.InitDesc("w_weight"), mx.nd.zeros((4, 5)))  # call 1
    again = mx.nd.zeros((4, 5))
    mx.init.create(init.dumps())(mx.init.InitDesc("w_weight"), again)
    np.testing.assert_array_equal(first.asnumpy(), again.asnumpy())


def test_create_needs_a_custom_law_to_be_registered_by_name() -> None:
    text = '["multiinit", {"spec": {"kind": "custom", "name": "never.registered"}, "seed": null}]'
    with pytest.raises(mi.SpecError, match=re.escape("'never.registered' is not registered")):
        mx.init.create(text)


FRESH = r"""
import json, sys
import numpy as np
import multiinit as mi   # only this: importing mxnet afterwards registers "multiinit" with it
import mxnet as mx

def my_init(rng, shape, dtype):      # the seed chapter's law, registered under the same name
    w = rng.uniform(-10, 10, shape)
    return w * (np.abs(w) >= 5)

mi.custom(my_init, name="fresh.my_init")
out = []
for text in json.loads(sys.stdin.read()):
    init = mx.init.create(text)
    arr = mx.nd.zeros((6, 4))
    init(mx.init.InitDesc("fc_weight"), arr)
    out.append({"type": type(init).__name__, "dumps": init.dumps(), "values": arr.asnumpy().tolist()})
frameworks = sorted(m for m in ("torch", "tensorflow", "keras", "jax", "flax") if m in sys.modules)
print(json.dumps({"out": out, "frameworks": frameworks}))
"""


def test_a_fresh_process_rebuilds_the_same_initializers_and_values() -> None:
    def my_init(rng, shape, dtype):
        w = rng.uniform(-10, 10, shape)
        return w * (np.abs(w) >= 5)

    specs = [
        mi.he_normal(),
        mi.truncated_normal(0.1, 0.02, -1.0, 2.5),
        mi.orthogonal(gain=2.0),
        mi.mixture([(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]),
        mi.custom(my_init, name="fresh.my_init"),
    ]
    inits = [mi.compile(spec, "mxnet", seed=i) for i, spec in enumerate(specs)]
    texts = [init.dumps() for init in inits]
    done = subprocess.run(
        [sys.executable, "-c", FRESH], input=json.dumps(texts), capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["frameworks"] == []
    for init, text, got in zip(inits, texts, result["out"], strict=True):
        assert got["type"] == "Multiinit" and got["dumps"] == text
        here = mx.nd.zeros((6, 4))
        init(mx.init.InitDesc("fc_weight"), here)
        # Same seed, same spec: the same float32 numbers in both processes.
        np.testing.assert_array_equal(np.asarray(got["values"], dtype=np.float32), here.asnumpy())


def test_a_gluon_parameter_keeps_its_initializer_through_its_symbol() -> None:
    # Gluon records a parameter's initializer on its variable as dumps() text.
    layer = mx.gluon.nn.Dense(3, in_units=2, weight_initializer=mim.lecun_normal())
    attr = layer.weight.var().attr("__init__")
    assert mx.init.create(attr) == mim.lecun_normal()
