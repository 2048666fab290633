"""The ``torch.nn.init`` drop-ins: ``from multiinit import torch as init`` replaces
``from torch.nn import init``, e.g. ``init.kaiming_uniform_(net[0].weight, a=math.sqrt(5))``.

Same names, signatures, laws and error types as ``torch.nn.init`` (torch 2.13): ``uniform_``,
``normal_``, ``trunc_normal_``, ``constant_``, ``ones_``, ``zeros_``, ``eye_``, ``dirac_``,
``xavier_*_``, ``kaiming_*_``, ``orthogonal_``, ``sparse_``, and ``calculate_gain`` (the neutral
``multiinit.fans.calculate_gain``: torch's table and values). Each builds the spec (validating
its parameters) and fills through the compiled form (``compiled.py``), so the compiled form's
decisions hold here too.

Decisions implemented here:

* **Errors.** Bad parameters raise ``SpecError`` (a ``ValueError``) when the spec is built,
  before the tensor is touched, including some torch accepts or reports later as
  ``RuntimeError``: ``std=0``, ``gain <= 0``, ``a >= b``, non-finite values. A spec that
  cannot fill the tensor raises ``ShapeError`` (a ``ValueError``, the type torch raises) with
  torch's wording.
* **``trunc_normal_``** takes torch's *absolute* bounds and never leaves them, in any dtype:
  the given bounds themselves go to the sampler (``draw.py``), not ``mean + low*std``
  recomputed. ``truncated_normal`` takes bounds in std units instead.
* **``kaiming_*_``** read ``mode`` case-blind, as torch does.
* **``sparse_``** draws its zero rows with ``generator`` too (torch's uses ``torch.randperm``
  without it), so it is reproducible.
* **``orthogonal_``** also fills float16/bfloat16 tensors, computed in float32 (``draw.py``).
"""

from __future__ import annotations

import torch

from .. import spec as _spec
from ..fans import calculate_gain
from ..spec import Spec
from .compiled import TorchInitializer, _prepare
from .draw import _fill_truncated
from .sharded import fill_compiled, is_dtensor

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
]


def _run(spec: Spec, tensor: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return TorchInitializer(spec)(tensor, generator)


def uniform_(tensor: torch.Tensor, a: float = 0.0, b: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.uniform_: U[a, b).

    >>> import torch
    >>> bool((uniform_(torch.empty(100), -1, 1) < 1).all())
    True
    """
    return _run(_spec.uniform(a, b), tensor, generator)


def normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.normal_: N(mean, std**2).

    >>> import torch
    >>> normal_(torch.empty(3, 5), std=0.01).shape
    torch.Size([3, 5])
    """
    return _run(_spec.normal(mean, std), tensor, generator)


def trunc_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.trunc_normal_: N(mean, std**2) restricted to the *absolute* bounds [a, b]
    (no value ever outside them). ``truncated_normal`` takes bounds in std units instead.

    >>> import torch
    >>> w = trunc_normal_(torch.empty(1000), std=1.0, a=-0.5, b=0.5)
    >>> bool(w.min() >= -0.5 and w.max() <= 0.5)
    True
    """
    spec = _spec.trunc_normal(mean, std, a, b)  # validates mean, std, a < b
    if _prepare(spec, tensor, generator, None):
        with torch.no_grad():
            # The given bounds themselves, not mean + low*std recomputed (one rounding less).
            if is_dtensor(tensor):  # this rank's shard by the stream rule (sharded.py)
                fill_compiled(tensor, spec, generator, lambda t, g, f: _fill_truncated(
                    t, g, float(mean), float(std), float(a), float(b)))
            else:
                _fill_truncated(tensor, generator, float(mean), float(std), float(a), float(b))
    return tensor


def constant_(tensor: torch.Tensor, val: float) -> torch.Tensor:
    """torch.nn.init.constant_: every element ``val``.

    >>> import torch
    >>> constant_(torch.empty(2, dtype=torch.float64), 0.3).tolist()
    [0.3, 0.3]
    """
    return _run(_spec.constant(val), tensor, None)


def ones_(tensor: torch.Tensor) -> torch.Tensor:
    """torch.nn.init.ones_.

    >>> import torch
    >>> ones_(torch.empty(2)).tolist()
    [1.0, 1.0]
    """
    return _run(_spec.ones(), tensor, None)


def zeros_(tensor: torch.Tensor) -> torch.Tensor:
    """torch.nn.init.zeros_.

    >>> import torch
    >>> zeros_(torch.empty(2)).tolist()
    [0.0, 0.0]
    """
    return _run(_spec.zeros(), tensor, None)


def eye_(tensor: torch.Tensor) -> torch.Tensor:
    """torch.nn.init.eye_: the identity on a 2-D tensor (``ShapeError``, a ValueError, otherwise).

    >>> import torch
    >>> eye_(torch.empty(2, 3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    return _run(_spec.eye(), tensor, None)


def dirac_(tensor: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """torch.nn.init.dirac_: identity-preserving 3-, 4- or 5-D conv kernel, 1 at index k//2.

    >>> import torch
    >>> dirac_(torch.empty(2, 2, 3))[0].tolist()
    [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    return _run(_spec.dirac(groups), tensor, None)


def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.xavier_uniform_: U(+-gain*sqrt(6/(fan_in+fan_out))).

    >>> import torch
    >>> bool(xavier_uniform_(torch.empty(300, 400)).abs().max() <= (6 / 700) ** 0.5)
    True
    """
    return _run(_spec.xavier_uniform(gain), tensor, generator)


def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.xavier_normal_: N(0, 2*gain**2/(fan_in+fan_out)), untruncated.

    >>> import torch
    >>> xavier_normal_(torch.empty(3, 5)).shape
    torch.Size([3, 5])
    """
    return _run(_spec.xavier_normal(gain), tensor, generator)


def kaiming_uniform_(tensor: torch.Tensor, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.kaiming_uniform_: U(+-gain*sqrt(3/fan)); ``mode`` is read case-blind, as
    torch does.

    >>> import math, torch
    >>> w = kaiming_uniform_(torch.empty(8, 9), a=math.sqrt(5))  # torch's Linear default
    >>> bool(w.abs().max() <= 1 / 3)
    True
    """
    mode = mode.lower() if isinstance(mode, str) else mode
    return _run(_spec.kaiming_uniform(a, mode, nonlinearity), tensor, generator)


def kaiming_normal_(tensor: torch.Tensor, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.kaiming_normal_: N(0, gain**2/fan), untruncated.

    >>> import torch
    >>> kaiming_normal_(torch.empty(3, 5), mode="fan_out", nonlinearity="relu").shape
    torch.Size([3, 5])
    """
    mode = mode.lower() if isinstance(mode, str) else mode
    return _run(_spec.kaiming_normal(a, mode, nonlinearity), tensor, generator)


def orthogonal_(tensor: torch.Tensor, gain: float = 1,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.orthogonal_ (also on float16/bfloat16, computed in float32).

    >>> import torch
    >>> w = orthogonal_(torch.empty(3, 5, dtype=torch.float64))
    >>> torch.allclose(w @ w.T, torch.eye(3, dtype=torch.float64))
    True
    """
    return _run(_spec.orthogonal(gain), tensor, generator)


def sparse_(tensor: torch.Tensor, sparsity: float, std: float = 0.01,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """torch.nn.init.sparse_: N(0, std**2) with ceil(sparsity*rows) zeros in every column.
    Unlike torch's, the zero rows are drawn with ``generator`` too, so it is reproducible.

    >>> import torch
    >>> w = sparse_(torch.empty(10, 4), 0.3)
    >>> (w == 0).sum(dim=0).tolist()
    [3, 3, 3, 3]
    """
    return _run(_spec.sparse(sparsity, std), tensor, generator)

