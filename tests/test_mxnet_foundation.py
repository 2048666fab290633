"""The neutral fans equal MXNet's Xavier fans on MXNet's (out, in, *spatial) layout."""

from __future__ import annotations

import numpy as np
import pytest

import multiinit as mi


@pytest.mark.parametrize("shape", [(300, 400), (128, 64, 3, 3), (16, 4, 5), (8, 2, 3, 3, 3)])
def test_fans_equal_mxnet_xavier(shape) -> None:
    import mxnet as mx

    # Xavier("uniform", "in", magnitude=3) draws U(+-sqrt(3/fan_in)): read fan_in back off the draw.
    mx.random.seed(0)
    arr = mx.nd.zeros(shape)
    mx.init.Xavier("uniform", "in", 3)._init_weight("weight", arr)
    bound = float(np.abs(arr.asnumpy()).max())
    fan_in, _ = mi.compute_fans(shape)
    assert bound <= np.sqrt(3 / fan_in) * (1 + 1e-6)
    # The largest |draw| of n >= 320 is below 0.95*bound with probability 0.95**n < 1e-7.
    assert bound >= np.sqrt(3 / fan_in) * 0.95
