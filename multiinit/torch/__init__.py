"""The PyTorch adapter: specs become in-place ``torch.nn.init``-style calls, rules fill modules.

Three ways in, one law each::

    import multiinit as mi
    fill_ = mi.compile(mi.xavier_uniform(gain=2.0), "torch")   # fn(tensor, generator=None)
    fill_(net[0].weight, generator=torch.Generator().manual_seed(0))

    from multiinit import torch as init                       # a drop-in for torch.nn.init
    init.kaiming_uniform_(net[0].weight, a=math.sqrt(5))

    mi.apply(net, {nn.Linear: mi.normal(std=0.01), "bias": mi.zeros()}, seed=0)

This package is the namespace users import (``from multiinit import torch as mit``): the
contract's constructors returning compiled initializers, the drop-ins, ``apply``. One file per
job, each importing only the ones above it, and each docstring states the decisions its file
implements:

    draw.py          spec -> values in torch: torch's own function where its law is the spec's,
                     else the samplers (truncated normals that never leave their bounds,
                     orthogonal in half precision, sparse, mixture, custom); devices, dtypes
    compiled.py      the compiled form, ``TorchInitializer`` and ``compile``, and the checks
                     before one tensor is filled: errors, meta tensors, lazy parameters,
                     zero-element tensors
    initializers.py  the ``torch.nn.init`` drop-ins (``uniform_`` ... ``sparse_``,
                     ``calculate_gain``): same names, signatures, laws and error types
    sharded.py       any part of a parameter drawn alone: the stream rule's torch half (tile
                     seeds), DTensor shards (FSDP2, tensor parallel, _StridedShard), the
                     transposed-conv view written box by box, compiled fillers on DTensors
    model.py         walking an ``nn.Module``: layer kinds, logical views (transposed convs,
                     bias fans), ``params_of``, ``apply`` (one pass, all or nothing, meta
                     models with ``device=``), parameter order, aliases and seeds

Decisions implemented here:

* **Deprecated names, both meanings.** ``torch.nn.init.normal`` (no underscore, deprecated
  since torch 0.4) fills a tensor; here ``normal`` is also the contract's constructor. The
  call decides: with a tensor first (or as ``tensor=``), ``normal(t, 0.0, 1.0)`` warns
  ``FutureWarning`` with torch's message and fills ``t`` as ``normal_`` does, as torch's
  alias does; without one, ``normal(std=0.1)`` returns the compiled filler. The same holds
  for every deprecated alias torch keeps (``uniform``, ``constant``, ``eye``, ``dirac``,
  ``xavier_*``, ``kaiming_*``, ``orthogonal``, ``sparse``); their signature is the
  constructor's (torch's alias shows ``(*args, **kwargs)``).
* **``calculate_gain``** here is the drop-in's (torch's argument rules over the neutral
  table), and the private helpers code copies from torch's ``reset_parameters``
  (``_calculate_fan_in_and_fan_out``, ``_calculate_correct_fan``, ``_no_grad_*_``) are here
  too, so ``init`` can stand for ``torch.nn.init`` in such code.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

try:
    # Everything the files below import from torch: a missing or broken torch raises
    # BackendUnavailable here, never a bare ImportError from one of them.
    import torch
    from torch import nn  # noqa: F401
    from torch.nn import init as _init  # noqa: F401
except ImportError as e:  # the exact pip command is in the message
    from ..errors import BackendUnavailable

    raise BackendUnavailable.missing("torch", "PyTorch", "torch", e) from e

from .. import spec as _spec
from ..fans import OUT_IN
from ..registry import namespace
from . import initializers as _initializers
from .compiled import (
    DtypeError,
    SpecAttributeError,
    SpecOverflowError,
    SpecRuntimeError,
    SpecTypeError,
    SpecZeroDivisionError,
    TorchInitializer,
    compile,
)
from .draw import COMPLEX_DTYPES, FLOAT_DTYPES  # noqa: F401 - the dtypes random specs fill
from .initializers import (  # noqa: F401 - torch.nn.init's private helpers, for copied code
    _calculate_correct_fan,
    _calculate_fan_in_and_fan_out,
    _no_grad_fill_,
    _no_grad_normal_,
    _no_grad_trunc_normal_,
    _no_grad_uniform_,
    _no_grad_zero_,
    calculate_gain,
    constant_,
    dirac_,
    eye_,
    kaiming_normal_,
    kaiming_uniform_,
    normal_,
    ones_,
    orthogonal_,
    sparse_,
    spec_of,
    trunc_normal_,
    uniform_,
    xavier_normal_,
    xavier_uniform_,
    zeros_,
)
from .model import apply, params_of

__all__ = [  # noqa: PLE0604 - *CONSTRUCTORS unpacks a dict keyed by the constructors' names
    "LAYOUT",
    "TorchInitializer",
    "compile",
    "apply",
    "params_of",
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
    "spec_of",
    "DtypeError",
    "SpecAttributeError",
    "SpecOverflowError",
    "SpecRuntimeError",
    "SpecTypeError",
    "SpecZeroDivisionError",
    # The constructors join the namespace at import (namespace() below), so their names do too.
    *_spec.CONSTRUCTORS,
]

#: torch stores kernels as (out, in/groups, *spatial): the logical layout itself.
LAYOUT = OUT_IN

# The public functions belong to this namespace, wherever their code lives: help(), pickle and
# doctest name them multiinit.torch.<name>, the path users import, like the constructors below.
# (calculate_gain is the neutral one, left alone. The class keeps its true module, which
# inspect.getsource needs to find its source; __test__ runs its examples with this module's.)
for _name in ("compile", "apply", "params_of", *_initializers.__all__):
    if globals()[_name].__module__.startswith(__name__ + "."):
        globals()[_name].__module__ = __name__
del _name

__test__ = {"TorchInitializer": TorchInitializer}


#: Each namespace constructor's example (``registry.namespace``): fill a tensor in place.
_EXAMPLE = """>>> import torch
>>> import multiinit as mi
>>> from multiinit import torch as mit
>>> init = mit.{call}
>>> tuple(init(torch.empty{shape}).shape)
{shape}"""

# calculate_gain stays the drop-in's (imported above), not the namespace's neutral one.
globals().update(
    {k: v for k, v in namespace("torch", compile, example=_EXAMPLE).items() if k != "calculate_gain"}
)

# torch.nn.init's deprecated aliases (uniform, normal, ...), which the contract's constructors
# of the same names also answer to: a tensor first means torch's alias.
_DEPRECATED_TORCH = (
    "uniform",
    "normal",
    "constant",
    "eye",
    "dirac",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "sparse",
)


def _either(name: str, constructor: Callable[..., Any], dropin: Callable[..., Any]) -> Callable[..., Any]:
    message = f"`nn.init.{name}` is now deprecated in favor of `nn.init.{name}_`."

    @functools.wraps(constructor)
    def either(*args: Any, **kwargs: Any) -> Any:
        if (args and isinstance(args[0], torch.Tensor)) or "tensor" in kwargs:
            warnings.warn(message, FutureWarning, stacklevel=2)
            return dropin(*args, **kwargs)
        return constructor(*args, **kwargs)

    either.__doc__ = (
        f"{constructor.__doc__}\n\nWith a tensor first, torch's deprecated "
        f"``torch.nn.init.{name}(tensor, ...)``: warns ``FutureWarning`` and fills it as "
        f"``{name}_`` does."
    )
    return either


for _name in _DEPRECATED_TORCH:
    globals()[_name] = _either(_name, globals()[_name], globals()[_name + "_"])
del _name

# The constructors' examples run with the others (their code lives in multiinit.registry).
__test__.update({name: globals()[name] for name in _spec.CONSTRUCTORS})
