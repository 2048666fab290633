"""multiinit: one parameter initializer, the same law in PyTorch, Keras, Flax and MXNet.

>>> import multiinit as mi
>>> spec = mi.xavier_uniform(gain=mi.calculate_gain("relu"))
>>> mi.parse(str(spec)) == spec
True

Importing multiinit imports no framework; ``mi.compile(spec, "torch")`` (or
``from multiinit import torch``) imports that one framework, when asked.
"""

from __future__ import annotations

from typing import Any

from . import layers, presets
from .errors import (
    BackendUnavailable,
    LawError,
    LawShapeError,
    MultiinitError,
    RuleError,
    ShapeError,
    SpecError,
    SpecTypeError,
    UnknownBackend,
)
from .explain import Explanation, Plan, PlanRow, explain, plan_params
from .fans import Layout, LogicalView, calculate_gain, compute_fans, fans_from_axes
from .layers import (
    LayerRegistration,
    lookup_layer,
    lookup_layer_class,
    register_layer,
    registered_layers,
    unregister_layer,
)
from .registry import BACKENDS, compile, detect, install_registration_hook as _install_registration_hook
from .rules import select
from .spec import (
    CONSTRUCTORS,
    Spec,
    constant,
    custom,
    dirac,
    eye,
    from_dict,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    kaiming_normal,
    kaiming_uniform,
    lecun_normal,
    lecun_uniform,
    mixture,
    normal,
    ones,
    orthogonal,
    parse,
    sparse,
    trunc_normal,
    truncated_normal,
    uniform,
    variance_scaling,
    with_axes,
    xavier_normal,
    xavier_uniform,
    zeros,
)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "CONSTRUCTORS",
    "BackendUnavailable",
    "LawError",
    "LawShapeError",
    "LogicalView",
    "MultiinitError",
    "RuleError",
    "ShapeError",
    "Spec",
    "SpecError",
    "SpecTypeError",
    "UnknownBackend",
    "apply",
    "calculate_gain",
    "compile",
    "compute_fans",
    "detect",
    "explain",
    "Explanation",
    "fans_from_axes",
    "from_dict",
    "LayerRegistration",
    "Layout",
    "layers",
    "lookup_layer",
    "lookup_layer_class",
    "parse",
    "plan",
    "plan_params",
    "Plan",
    "PlanRow",
    "presets",
    "register_layer",
    "registered_layers",
    "select",
    "unregister_layer",
    # The spec constructors (CONSTRUCTORS), written out so that type checkers and editors see
    # what `import multiinit` exports (tests/test_spec.py checks the two lists agree).
    "zeros",
    "ones",
    "constant",
    "uniform",
    "normal",
    "truncated_normal",
    "trunc_normal",
    "variance_scaling",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "eye",
    "dirac",
    "sparse",
    "mixture",
    "custom",
    "with_axes",
]


def apply(
    model: Any,
    rules: Any,
    seed: int | None = None,
    portable: bool = False,
    device: Any = None,
    **options: Any,
) -> Any:
    """Initialize a whole model by rules, all or nothing; the backend is read off the model.

    ``rules`` is a dict or a list of ``(selector, spec)`` pairs, first match wins; a selector
    is a path glob (``"0.weight"``, ``"*.bias"``), a role (``"weight"``, ``"kernel"``,
    ``"bias"``) or a layer class. torch, Keras and MXNet models are changed in place and
    returned; a Flax variables dict is returned new (the input is not changed). ``seed``
    makes the draw reproducible; ``portable=True`` writes the NumPy reference draw, the same
    numbers in every framework. ``device=`` materializes a torch model built on ``meta``
    (each rank's shard only, for FSDP2/tensor-parallel models) and initializes it in one pass.
    Other ``options`` go to the backend's ``apply`` (Flax: ``donate=``, ``shardings=``,
    ``layers=``); an option the backend does not take is a ``SpecError``.

    >>> import torch.nn as nn                                   # doctest: +SKIP
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))  # doctest: +SKIP
    >>> mi.apply(net, {"weight": mi.normal(std=0.01), "bias": mi.zeros()}, seed=0)  # doctest: +SKIP
    """
    from .registry import apply as _apply

    return _apply(model, rules, seed=seed, portable=portable, device=device, **options)


def plan(model: Any, rules: Any, **options: Any) -> Plan:
    """What ``apply(model, rules)`` would do, parameter by parameter, without doing it.

    For every parameter: the rule that selects it (or none), its spec, its layer's kind (or
    "unknown"), its logical shape and the fans the law would use; a parameter of a layer
    multiinit does not know (no built-in kind, no ``register_layer``) that a fan-based law
    would fill is flagged, since its fans are a guess. ``options`` go to the adapter's
    ``params_of`` (e.g. Flax's ``layers=``). See ``plan_params`` for the neutral part.

    >>> import torch.nn as nn                                   # doctest: +SKIP
    >>> print(mi.plan(nn.Linear(4, 8), {"weight": mi.he_normal()}))  # doctest: +SKIP
    """
    from .registry import adapter, detect

    params = adapter(detect(model)).params_of(model, **options)
    return plan_params(params, rules)


# Saved Keras models and MXNet initializer strings name multiinit's registered classes: make
# them loadable after a bare ``import multiinit`` (this imports no framework; see registry).
_install_registration_hook()
