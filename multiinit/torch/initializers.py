"""The ``torch.nn.init`` drop-ins: ``from multiinit import torch as init`` replaces
``from torch.nn import init``, e.g. ``init.kaiming_uniform_(net[0].weight, a=math.sqrt(5))``.

Every public name of ``torch.nn.init`` (torch 2.13) with the same signature (annotations
included), law, dtypes, warnings and exception types: ``uniform_``, ``normal_``,
``trunc_normal_``, ``constant_``, ``ones_``, ``zeros_``, ``eye_``, ``dirac_``, ``xavier_*_``,
``kaiming_*_``, ``orthogonal_``, ``sparse_``, ``calculate_gain``; the deprecated
un-underscored names live in the namespace (``__init__.py``), which dispatches on whether a
tensor is passed. Also the private helpers that code copied from torch's
``reset_parameters`` calls: ``_calculate_fan_in_and_fan_out``, ``_calculate_correct_fan`` and
the ``_no_grad_*_`` fills. ``tests/test_torch_conformance.py`` checks all of it against torch
itself, and ``docs/known-differences.md`` lists every deliberate difference with its reason.

Behind every drop-in is a neutral spec: ``spec_of(name, *args, **kwargs)`` is the one table
from torch's names and arguments to specs (``spec_of("kaiming_uniform_", a=math.sqrt(5))``);
each drop-in builds its spec there (validating its parameters) and fills through the
compiled form (``compiled.py``), so the compiled form's decisions hold here too.

Decisions implemented here:

* **Arguments as torch parses them.** Numbers may be bools and 0-d tensors, as torch
  accepts; a parameter torch would refuse raises a ``SpecError`` that is also the builtin
  torch raises for it (``compiled.py``): ``TypeError`` for the wrong type, ``RuntimeError``
  for values its kernels refuse (``a > b``, ``std < 0``, non-finite bounds),
  ``ZeroDivisionError`` for ``trunc_normal_(std=0)`` and ``dirac_(groups=0)``, ``ValueError``
  where torch raises that. Everything is checked before the tensor is touched.
* **Degenerate parameters are the law they degenerate to**, as torch fills them:
  ``uniform_(a=b)``, ``normal_(std=0)`` and ``trunc_normal_(a=b)`` are ``constant``;
  ``xavier_*_(gain=0)``, ``orthogonal_(gain=0)``, ``sparse_(sparsity>=1)`` and
  ``sparse_(std=0)`` are ``zeros`` (after torch's shape and dtype checks for the function);
  ``trunc_normal_`` with an infinite bound cuts 40 std away, where the normal has no mass a
  float64 can hold (both infinite: ``normal``); ``orthogonal_(gain<0)`` is
  ``orthogonal(|gain|)`` negated, torch's numbers; ``kaiming_*_(a=None)`` is leaky_relu's
  default slope 0.01, and ``a`` is ignored for other nonlinearities, as in torch. Where
  torch's own function is called for the law, the degenerate cases call it too: the same
  values, and the generator advanced as torch advances it.
* **Refused where torch fills nonsense:** non-finite parameters (torch fills nan/inf, or
  zeros for ``kaiming_*_(a=inf)``), ``trunc_normal_(std<0)``, ``sparse_(sparsity<0)`` and
  ``dirac_(groups<0)`` raise ``SpecError`` (see docs/known-differences.md).
* **``trunc_normal_``** takes torch's *absolute* bounds and never leaves them, in any dtype:
  the given bounds themselves go to the sampler (``draw.py``), not ``mean + low*std``
  recomputed. It draws the same law as torch's with a faster exact sampler (other numbers
  for the same generator) and does not warn when the mean is far from [a, b] (the law is
  exact there). ``truncated_normal`` takes bounds in std units instead.
* **Warnings as torch's:** ``kaiming_*_`` on a zero-element tensor warn "Initializing
  zero-element tensors is a no-op" (``UserWarning``) and return before looking at their
  arguments; the deprecated names warn ``FutureWarning`` (``__init__.py``).
* **``kaiming_*_``** read ``mode`` case-blind, as torch does.
* **``sparse_``** draws its zero rows with ``generator`` too (torch's uses ``torch.randperm``
  without it), so it is reproducible.
* **``orthogonal_``** also fills float16/bfloat16 tensors, computed in float32, and complex
  ones (a Haar unitary, ``draw.py``), where torch 2.13 raises ``NotImplementedError``.
* **``__torch_function__``**: ``uniform_``, ``normal_``, ``constant_`` and
  ``kaiming_uniform_`` hand a tensor-like with a ``__torch_function__`` override to it, as
  torch's do, passing torch's own function as ``func``.
"""

# No ``from __future__ import annotations`` here: ``inspect.signature`` of each drop-in must
# equal torch's, annotations included, so they are the same objects, evaluated.

import functools
import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any, Literal, cast

import torch
from torch import Tensor
from torch.nn import init as _torch_init

from .. import spec as _spec
from ..errors import SpecError
from ..fans import calculate_gain as _neutral_gain, compute_fans
from ..spec import Spec
from .compiled import (
    SpecAttributeError,
    SpecOverflowError,
    SpecRuntimeError,
    SpecTypeError,
    SpecZeroDivisionError,
    TorchInitializer,
    _prepare,
)
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
    "spec_of",
]

#: The private helpers of ``torch.nn.init`` that user code calls (copied ``reset_parameters``).
PRIVATE_HELPERS = (
    "_calculate_fan_in_and_fan_out",
    "_calculate_correct_fan",
    "_no_grad_uniform_",
    "_no_grad_normal_",
    "_no_grad_trunc_normal_",
    "_no_grad_fill_",
    "_no_grad_zero_",
)

# torch.nn.init's own annotation types, so that the signatures compare equal.
_NonlinearityType = Literal[
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]
_FanMode = Literal["fan_in", "fan_out"]

#: Where torch's normal has no mass a float64 can hold: an infinite trunc_normal_ bound is cut
#: here (in std units), so the law stays a neutral truncated_normal (Phi(-40) < 1e-300).
_FAR = 40.0

# --------------------------------------------------------------------------- arguments


def _number(function: str, name: str, value: Any) -> float:
    """``value`` as torch's argument parser reads a float (bools and 0-d tensors included), or
    a ``SpecTypeError`` naming it."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_complex():
        return float(value.item())
    if isinstance(value, numbers.Real):  # bool and NumPy scalars included, as torch takes them
        return float(value)
    raise SpecTypeError(f"{function}: {name}={value!r} is not allowed; {name} must be a real number")


def _finite(function: str, name: str, value: float, original: Any) -> float:
    if not math.isfinite(value):
        raise SpecRuntimeError(
            f"{function}: {name}={original!r} is not allowed; {name} must be a finite number"
        )
    return value


def _tensor(function: str, tensor: Any) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise SpecAttributeError(
            f"{function}: tensor={tensor!r} is not allowed; tensor must be a torch.Tensor"
        )


@functools.lru_cache(maxsize=256)
def _compiled(spec: Spec) -> TorchInitializer:
    # Drop-ins are called again and again with the same few specs: their compiled forms (and
    # the shape checks those remember) are kept.
    return TorchInitializer(spec)


def _run(
    spec: Spec,
    tensor: Tensor,
    generator: Any,
    checked_as: Spec | None = None,
    native: Callable[[], Any] | None = None,
) -> Tensor:
    """Fill ``tensor`` with ``spec``. When ``spec`` is what a degenerate parameter made of a
    random law (``uniform_(a=b)`` is a constant), ``checked_as`` is that law, whose shape and
    dtype rules still apply (torch's uniform_ refuses an integer tensor whatever a and b),
    and ``native`` fills the tensor with torch's own function, which writes the same values
    and advances the generator just as torch does."""
    if checked_as is None or type(checked_as) is type(spec):
        filled: Tensor = _compiled(spec)(tensor, generator)
        return filled
    if _prepare(checked_as, tensor, generator, None):
        if native is None:
            _compiled(spec)(tensor, generator)
        else:
            with torch.no_grad():
                native()
    return tensor


def _dispatch(function: Callable[..., Any], tensor: Any, **kwargs: Any) -> Tensor:
    """torch's own ``__torch_function__`` hand-off, with torch's function as ``func``."""
    # What the tensor-like's __torch_function__ returns, as torch.nn.init's own functions say.
    result: Tensor = torch.overrides.handle_torch_function(function, (tensor,), tensor=tensor, **kwargs)
    return result


# --------------------------------------------------------------------------- the table


def _uniform_spec(a: Any, b: Any, function: str = "uniform_") -> Spec:
    low = _finite(function, "a", _number(function, "a", a), a)
    high = _finite(function, "b", _number(function, "b", b), b)
    if low > high:
        raise SpecRuntimeError(f"{function}: b={b!r} is not allowed; b must be >= a={a!r} (U[a, b) is drawn)")
    return _spec.constant(low) if low == high else _spec.uniform(low, high)


def _normal_spec(mean: Any, std: Any, function: str = "normal_") -> Spec:
    mean_ = _finite(function, "mean", _number(function, "mean", mean), mean)
    std_ = _number(function, "std", std)
    if not std_ >= 0:
        raise SpecRuntimeError(f"{function}: std={std!r} is not allowed; std must be >= 0")
    _finite(function, "std", std_, std)
    return _spec.constant(mean_) if std_ == 0 else _spec.normal(mean_, std_)


def _trunc_normal_spec(
    mean: Any, std: Any, a: Any, b: Any, function: str = "trunc_normal_"
) -> tuple[Spec, tuple[float, float] | None]:
    """The spec, and the absolute bounds to hand the sampler (None: no truncation left)."""
    mean_ = _finite(function, "mean", _number(function, "mean", mean), mean)
    std_ = _finite(function, "std", _number(function, "std", std), std)
    low, high = _number(function, "a", a), _number(function, "b", b)
    for name, value, original in (("a", low, a), ("b", high, b)):
        if math.isnan(value):
            raise SpecRuntimeError(f"{function}: {name}={original!r} is not allowed; {name} must be a number")
    if std_ == 0:
        raise SpecZeroDivisionError(f"{function}: std={std!r} is not allowed; std must be > 0")
    if std_ < 0:
        raise SpecError(f"{function}: std={std!r} is not allowed; std must be > 0")
    if low > high:
        raise SpecRuntimeError(f"{function}: b={b!r} is not allowed; b must be >= a={a!r}")
    if low == high:
        return _spec.constant(low), None
    if low == -math.inf and high == math.inf:
        return _spec.normal(mean_, std_), None
    if low == -math.inf:
        low = min(high, mean_) - _FAR * std_
    if high == math.inf:
        high = max(low, mean_) + _FAR * std_
    return _spec.trunc_normal(mean_, std_, low, high), (low, high)


def _constant_spec(val: Any, function: str = "constant_") -> Spec:
    if isinstance(val, numbers.Complex) and not isinstance(val, numbers.Real):
        raise SpecRuntimeError(
            f"{function}: val={val!r} is not allowed; val must be a real number (the spec's "
            "value is real; fill a complex tensor with tensor.fill_)"
        )
    # (type: ignore: typeshed's numbers.Integral has no __ge__; every real Integral compares.)
    if isinstance(val, numbers.Integral) and not isinstance(val, bool) and not -(2**63) <= val < 2**64:  # type: ignore[operator]
        raise SpecOverflowError(f"{function}: val={val!r} is not allowed; val must fit in 64 bits")
    value = _number(function, "val", val)
    return _spec.constant(_finite(function, "val", value, val))


def _gain(function: str, gain: Any) -> float:
    return _finite(function, "gain", _number(function, "gain", gain), gain)


def _xavier_spec(gain: Any, normal: bool) -> Spec:
    function = "xavier_normal_" if normal else "xavier_uniform_"
    gain_ = _gain(function, gain)
    if gain_ < 0:
        raise SpecRuntimeError(f"{function}: gain={gain!r} is not allowed; gain must be >= 0")
    if gain_ == 0:
        return _spec.zeros()
    return _spec.xavier_normal(gain_) if normal else _spec.xavier_uniform(gain_)


def _mode(function: str, mode: Any) -> str:
    if not isinstance(mode, str):
        raise SpecAttributeError(
            f"{function}: mode={mode!r} is not allowed; mode must be 'fan_in' or 'fan_out'"
        )
    return mode.lower()  # torch reads mode case-blind


def _slope(function: str, a: Any, nonlinearity: Any) -> float:
    """``a`` as torch's calculate_gain reads it: only leaky_relu's; None is its 0.01."""
    if nonlinearity != "leaky_relu":
        return 0.0  # ignored by torch for every other nonlinearity
    if a is None:
        return 0.01
    if isinstance(a, bool) or not isinstance(a, (int, float)):
        raise SpecError(
            f"{function}: a={a!r} is not allowed; a (leaky_relu's negative slope) must be an int or a float"
        )
    return _finite(function, "a", float(a), a)


def _kaiming_spec(a: Any, mode: Any, nonlinearity: Any, normal: bool) -> Spec:
    function = "kaiming_normal_" if normal else "kaiming_uniform_"
    mode_ = _mode(function, mode)
    build = _spec.kaiming_normal if normal else _spec.kaiming_uniform
    return build(_slope(function, a, nonlinearity), mode_, nonlinearity)


def _orthogonal_spec(gain: Any) -> Spec:
    gain_ = _gain("orthogonal_", gain)
    return _spec.zeros() if gain_ == 0 else _spec.orthogonal(abs(gain_))


def _sparse_spec(sparsity: Any, std: Any) -> Spec:
    function = "sparse_"
    fraction = _number(function, "sparsity", sparsity)
    if math.isinf(fraction):
        raise SpecOverflowError(
            f"{function}: sparsity={sparsity!r} is not allowed; sparsity must be in [0, 1]"
        )
    if not fraction >= 0:
        raise SpecError(f"{function}: sparsity={sparsity!r} is not allowed; sparsity must be in [0, 1]")
    std_ = _number(function, "std", std)
    if not std_ >= 0:
        raise SpecRuntimeError(f"{function}: std={std!r} is not allowed; std must be >= 0")
    _finite(function, "std", std_, std)
    if fraction >= 1 or std_ == 0:
        return _spec.zeros()
    return _spec.sparse(fraction, std_)


def _groups(groups: Any) -> int:
    function = "dirac_"
    if isinstance(groups, bool):
        groups = int(groups)
    if not isinstance(groups, numbers.Integral):
        raise SpecTypeError(f"{function}: groups={groups!r} is not allowed; groups must be an int >= 1")
    if groups == 0:
        raise SpecZeroDivisionError(f"{function}: groups=0 is not allowed; groups must be an int >= 1")
    if groups < 0:
        raise SpecError(f"{function}: groups={groups!r} is not allowed; groups must be an int >= 1")
    return int(groups)


def spec_of(name: str, *args: Any, **kwargs: Any) -> Spec:
    """The neutral spec behind ``torch.nn.init.<name>(tensor, *args, **kwargs)``: torch's
    arguments without the tensor and the generator (the table every drop-in builds from).

    >>> import math
    >>> spec_of("kaiming_uniform_", a=math.sqrt(5))
    kaiming_uniform(a=2.23606797749979)
    >>> spec_of("uniform_", 0.5, 0.5), spec_of("sparse_", 1.0)
    (constant(value=0.5), zeros())
    """
    table: dict[str, Callable[..., Spec]] = {
        "uniform_": lambda a=0.0, b=1.0: _uniform_spec(a, b),
        "normal_": lambda mean=0.0, std=1.0: _normal_spec(mean, std),
        "trunc_normal_": lambda mean=0.0, std=1.0, a=-2.0, b=2.0: _trunc_normal_spec(mean, std, a, b)[0],
        "constant_": lambda val: _constant_spec(val),
        "ones_": _spec.ones,
        "zeros_": _spec.zeros,
        "eye_": _spec.eye,
        "dirac_": lambda groups=1: _spec.dirac(_groups(groups)),
        "xavier_uniform_": lambda gain=1.0: _xavier_spec(gain, normal=False),
        "xavier_normal_": lambda gain=1.0: _xavier_spec(gain, normal=True),
        "kaiming_uniform_": lambda a=0, mode="fan_in", nonlinearity="leaky_relu": _kaiming_spec(
            a, mode, nonlinearity, normal=False
        ),
        "kaiming_normal_": lambda a=0, mode="fan_in", nonlinearity="leaky_relu": _kaiming_spec(
            a, mode, nonlinearity, normal=True
        ),
        "orthogonal_": lambda gain=1: _orthogonal_spec(gain),
        "sparse_": lambda sparsity, std=0.01: _sparse_spec(sparsity, std),
    }
    if name not in table:
        raise SpecError(f"name={name!r} is not allowed; name must be one of {', '.join(table)}")
    return table[name](*args, **kwargs)


# --------------------------------------------------------------------------- the drop-ins


def calculate_gain(nonlinearity: _NonlinearityType, param: int | float | None = None) -> float:
    """torch.nn.init.calculate_gain: the recommended gain for a nonlinearity (the neutral
    ``multiinit.calculate_gain`` table, with torch's argument rules: ``param`` only for
    leaky_relu, an int or a float, an infinite slope giving gain 0).

    >>> calculate_gain("leaky_relu", 0.2)
    1.3867504905630728
    """
    if nonlinearity != "leaky_relu" or param is None:
        return _neutral_gain(nonlinearity)
    if isinstance(param, bool) or not isinstance(param, (int, float)):
        raise SpecError(
            f"calculate_gain: param={param!r} is not allowed; leaky_relu's param (negative "
            "slope) must be an int or a float"
        )
    if not math.isfinite(param):
        return math.sqrt(2.0 / (1 + param**2))  # torch's arithmetic: 0.0 for +-inf, nan for nan
    return _neutral_gain(nonlinearity, param)


def uniform_(
    tensor: Tensor,
    a: float = 0.0,
    b: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init.uniform_: U[a, b).

    >>> import torch
    >>> bool((uniform_(torch.empty(100), -1, 1) < 1).all())
    True
    """
    if torch.overrides.has_torch_function_variadic(tensor):
        return _dispatch(_torch_init.uniform_, tensor, a=a, b=b, generator=generator)
    return _no_grad_uniform_(tensor, a, b, generator)


def normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init.normal_: N(mean, std**2) (on a complex tensor each part N(mean, std**2/2),
    as torch draws it).

    >>> import torch
    >>> normal_(torch.empty(3, 5), std=0.01).shape
    torch.Size([3, 5])
    """
    if torch.overrides.has_torch_function_variadic(tensor):
        return _dispatch(_torch_init.normal_, tensor, mean=mean, std=std, generator=generator)
    return _no_grad_normal_(tensor, mean, std, generator)


def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init.trunc_normal_: N(mean, std**2) restricted to the *absolute* bounds [a, b]
    (no value ever outside them). ``truncated_normal`` takes bounds in std units instead.

    >>> import torch
    >>> w = trunc_normal_(torch.empty(1000), std=1.0, a=-0.5, b=0.5)
    >>> bool(w.min() >= -0.5 and w.max() <= 0.5)
    True
    """
    return _no_grad_trunc_normal_(tensor, mean, std, a, b, generator)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """torch.nn.init.constant_: every element ``val``.

    >>> import torch
    >>> constant_(torch.empty(2, dtype=torch.float64), 0.3).tolist()
    [0.3, 0.3]
    """
    if torch.overrides.has_torch_function_variadic(tensor):
        return _dispatch(_torch_init.constant_, tensor, val=val)
    return _no_grad_fill_(tensor, val)


def ones_(tensor: Tensor) -> Tensor:
    """torch.nn.init.ones_.

    >>> import torch
    >>> ones_(torch.empty(2)).tolist()
    [1.0, 1.0]
    """
    _tensor("ones_", tensor)
    return _run(_spec.ones(), tensor, None)


def zeros_(tensor: Tensor) -> Tensor:
    """torch.nn.init.zeros_.

    >>> import torch
    >>> zeros_(torch.empty(2)).tolist()
    [0.0, 0.0]
    """
    return _no_grad_zero_(tensor)


def eye_(tensor: Tensor) -> Tensor:
    """torch.nn.init.eye_: the identity on a 2-D tensor (``ShapeError``, a ValueError, otherwise).

    >>> import torch
    >>> eye_(torch.empty(2, 3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    _tensor("eye_", tensor)
    return _run(_spec.eye(), tensor, None)


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """torch.nn.init.dirac_: identity-preserving 3-, 4- or 5-D conv kernel, 1 at index k//2.

    >>> import torch
    >>> dirac_(torch.empty(2, 2, 3))[0].tolist()
    [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    _tensor("dirac_", tensor)
    _spec_check_shape(_spec.dirac(), tensor)  # torch checks the dimensions before groups
    return _run(spec_of("dirac_", groups), tensor, None)


def xavier_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init.xavier_uniform_: U(+-gain*sqrt(6/(fan_in+fan_out))).

    >>> import torch
    >>> bool(xavier_uniform_(torch.empty(300, 400)).abs().max() <= (6 / 700) ** 0.5)
    True
    """
    _tensor("xavier_uniform_", tensor)
    return _run(
        _xavier_spec(gain, normal=False),
        tensor,
        generator,
        _spec.xavier_uniform(),
        lambda: _torch_init.xavier_uniform_(tensor, 0.0, generator),
    )


def xavier_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init.xavier_normal_: N(0, 2*gain**2/(fan_in+fan_out)), untruncated.

    >>> import torch
    >>> xavier_normal_(torch.empty(3, 5)).shape
    torch.Size([3, 5])
    """
    _tensor("xavier_normal_", tensor)
    return _run(
        _xavier_spec(gain, normal=True),
        tensor,
        generator,
        _spec.xavier_normal(),
        lambda: _torch_init.xavier_normal_(tensor, 0.0, generator),
    )


def _empty_kaiming(tensor: Any) -> bool:
    """torch's kaiming_*_ warn and return on a zero-element tensor before anything else."""
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: _FanMode = "fan_in",
    nonlinearity: _NonlinearityType = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init.kaiming_uniform_: U(+-gain*sqrt(3/fan)); ``mode`` is read case-blind, as
    torch does.

    >>> import math, torch
    >>> w = kaiming_uniform_(torch.empty(8, 9), a=math.sqrt(5))  # torch's Linear default
    >>> bool(w.abs().max() <= 1 / 3)
    True
    """
    if torch.overrides.has_torch_function_variadic(tensor):
        return _dispatch(
            _torch_init.kaiming_uniform_,
            tensor,
            a=a,
            mode=mode,
            nonlinearity=nonlinearity,
            generator=generator,
        )
    _tensor("kaiming_uniform_", tensor)
    if _empty_kaiming(tensor):
        return tensor
    return _run(_kaiming_spec(a, mode, nonlinearity, normal=False), tensor, generator)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: _FanMode = "fan_in",
    nonlinearity: _NonlinearityType = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init.kaiming_normal_: N(0, gain**2/fan), untruncated.

    >>> import torch
    >>> kaiming_normal_(torch.empty(3, 5), mode="fan_out", nonlinearity="relu").shape
    torch.Size([3, 5])
    """
    _tensor("kaiming_normal_", tensor)
    if _empty_kaiming(tensor):
        return tensor
    return _run(_kaiming_spec(a, mode, nonlinearity, normal=True), tensor, generator)


def orthogonal_(
    tensor: Tensor,
    gain: float = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init.orthogonal_ (also on float16/bfloat16, computed in float32, and on
    complex tensors, a Haar unitary).

    >>> import torch
    >>> w = orthogonal_(torch.empty(3, 5, dtype=torch.float64))
    >>> torch.allclose(w @ w.T, torch.eye(3, dtype=torch.float64))
    True
    """
    _tensor("orthogonal_", tensor)
    spec = _orthogonal_spec(gain)
    gain_ = _number("orthogonal_", "gain", gain)
    if gain_ > 0:
        return _run(spec, tensor, generator)
    # gain * Q as torch computes it, from the same draw: -Q is as Haar-distributed as Q, and
    # 0 * Q is the zeros the spec says.
    if _prepare(_spec.orthogonal(), tensor, generator, None):
        _compiled(_spec.orthogonal(abs(gain_) or 1.0))(tensor, generator)
        with torch.no_grad():
            tensor.mul_(-1.0 if gain_ < 0 else 0.0)
    return tensor


def sparse_(
    tensor: Tensor,
    sparsity: float,
    std: float = 0.01,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init.sparse_: N(0, std**2) with ceil(sparsity*rows) zeros in every column.
    Unlike torch's, the zero rows are drawn with ``generator`` too, so it is reproducible.

    >>> import torch
    >>> w = sparse_(torch.empty(10, 4), 0.3)
    >>> (w == 0).sum(dim=0).tolist()
    [3, 3, 3, 3]
    """
    _tensor("sparse_", tensor)
    return _run(_sparse_spec(sparsity, std), tensor, generator, _spec.sparse(0.5))


# --------------------------------------------------------------------------- private helpers


def _spec_check_shape(spec: Spec, tensor: Tensor) -> None:
    from ..reference import check_shape

    check_shape(spec, tuple(tensor.shape))


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """torch.nn.init's private fan helper, which code copied from ``reset_parameters`` calls:
    ``(fan_in, fan_out)`` of a torch-layout tensor (``ShapeError``, a ValueError, below 2-D).

    >>> import torch
    >>> _calculate_fan_in_and_fan_out(torch.empty(128, 64, 3, 3))
    (576, 1152)
    """
    _tensor("_calculate_fan_in_and_fan_out", tensor)
    return compute_fans(tuple(tensor.shape))


def _calculate_correct_fan(tensor: Tensor, mode: _FanMode) -> int:
    """torch.nn.init's private helper: the fan ``mode`` ("fan_in"/"fan_out", case-blind) picks.

    >>> import torch
    >>> _calculate_correct_fan(torch.empty(8, 3), "FAN_OUT")
    8
    """
    picked = _mode("_calculate_correct_fan", mode)
    if picked not in ("fan_in", "fan_out"):
        raise SpecError(
            f"_calculate_correct_fan: mode={picked!r} is not allowed; mode must be 'fan_in' or 'fan_out'"
        )
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if picked == "fan_in" else fan_out


def _no_grad_uniform_(tensor: Tensor, a: float, b: float, generator: torch.Generator | None = None) -> Tensor:
    """torch.nn.init's private ``uniform_`` without the ``__torch_function__`` hand-off.

    >>> import torch
    >>> _no_grad_uniform_(torch.empty(2), 3.0, 3.0).tolist()
    [3.0, 3.0]
    """
    _tensor("uniform_", tensor)
    spec = _uniform_spec(a, b)

    def native() -> Tensor:  # run by _run only for the constant that a == b makes
        value = cast("_spec.Constant", spec).value
        return _torch_init.uniform_(tensor, value, value, generator)

    return _run(spec, tensor, generator, _spec.uniform(), native)


def _no_grad_normal_(
    tensor: Tensor,
    mean: float,
    std: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init's private ``normal_`` without the ``__torch_function__`` hand-off.

    >>> import torch
    >>> _no_grad_normal_(torch.empty(2), 0.5, 0.0).tolist()
    [0.5, 0.5]
    """
    _tensor("normal_", tensor)
    spec = _normal_spec(mean, std)

    def native() -> Tensor:  # run by _run only for the constant that std == 0 makes
        return _torch_init.normal_(tensor, cast("_spec.Constant", spec).value, 0.0, generator)

    return _run(spec, tensor, generator, _spec.normal(), native)


def _no_grad_trunc_normal_(
    tensor: Tensor,
    mean: float,
    std: float,
    a: float,
    b: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torch.nn.init's private ``trunc_normal_`` (absolute bounds).

    >>> import torch
    >>> bool(_no_grad_trunc_normal_(torch.empty(100), 0.0, 1.0, 0.0, 0.1).max() <= 0.1)
    True
    """
    _tensor("trunc_normal_", tensor)
    spec, bounds = _trunc_normal_spec(mean, std, a, b)
    if bounds is None:
        return _run(spec, tensor, generator, _spec.trunc_normal())
    truncated = cast("_spec.TruncatedNormal", spec)  # what _trunc_normal_spec makes when it gives bounds
    if _prepare(spec, tensor, generator, None):
        with torch.no_grad():
            # The given bounds themselves, not mean + low*std recomputed (one rounding less).
            if is_dtensor(tensor):  # this rank's shard by the stream rule (sharded.py)
                fill_compiled(
                    tensor,
                    spec,
                    generator,
                    lambda t, g, f: _fill_truncated(t, g, truncated.mean, truncated.std, *bounds),
                )
            else:
                _fill_truncated(tensor, generator, truncated.mean, truncated.std, *bounds)
    return tensor


def _no_grad_fill_(tensor: Tensor, val: float) -> Tensor:
    """torch.nn.init's private ``constant_`` without the ``__torch_function__`` hand-off.

    >>> import torch
    >>> _no_grad_fill_(torch.empty(2, dtype=torch.int32), 7).tolist()
    [7, 7]
    """
    _tensor("constant_", tensor)
    return _run(_constant_spec(val), tensor, None)


def _no_grad_zero_(tensor: Tensor) -> Tensor:
    """torch.nn.init's private ``zeros_``.

    >>> import torch
    >>> _no_grad_zero_(torch.ones(2)).tolist()
    [0.0, 0.0]
    """
    _tensor("zeros_", tensor)
    return _run(_spec.zeros(), tensor, None)
