"""The compiled form: ``mi.compile(spec, "torch")`` is a ``TorchInitializer``, an in-place
``fill_(tensor, generator=None) -> tensor`` like the functions of ``torch.nn.init``; and the
checks made before one tensor is filled (``_prepare``), which the drop-ins and ``apply`` share.

Decisions implemented here:

* **Fans** of a compiled call come from the tensor's own stored shape, by torch's rule (dim 1
  times the receptive field is fan_in): filling a ``ConvTranspose`` weight with the compiled
  form keeps torch's stored-shape fans, where ``apply`` reads the logical view (``model.py``).
* **dtypes.** A random spec fills float16, bfloat16, float32 and float64 tensors
  (``draw.FLOAT_DTYPES``), and complex64/complex128 ones where its law has a complex form
  (``draw.complex_problem``, torch's convention: see ``draw.py``); any other dtype raises
  ``DtypeError``, a ``ShapeError`` that is also the ``NotImplementedError`` torch raises
  there. Deterministic specs (constant, eye, dirac) fill any dtype torch can fill, as torch
  does.
* **Meta tensors are left for later, like torch's own init functions:** the shape is still
  checked (a bad spec raises ``ShapeError`` at once), nothing is drawn, the tensor is
  returned. Fill it after ``module.to_empty(device=...)``.
* **Uninitialized lazy parameters are an error** (``ShapeError``, a ValueError like torch's
  own): their shape is unknown, so no law can be checked or drawn; run one forward pass
  first. (``apply`` raises only when a rule would fill one: ``model.py``.)
* **Errors.** A spec that cannot fill the tensor raises ``ShapeError`` (a ``ValueError``,
  the type torch raises) with torch's wording. Bad parameters raise ``SpecError`` (also a
  ``ValueError``) when the spec is built, before anything is compiled (``multiinit.spec``); a
  tensor that is not a ``torch.Tensor``, a generator that is not a ``torch.Generator`` and
  compile options raise ``SpecError`` here. Where torch itself raises another builtin for
  the same input, the error is a ``SpecError`` (or ``ShapeError``) that is *also* that
  builtin, so code written against ``torch.nn.init`` keeps catching what it caught:
  ``SpecAttributeError`` for a non-tensor (torch fails on a missing method),
  ``SpecTypeError`` for an argument of the wrong type (a generator that is not one),
  ``DtypeError`` (``NotImplementedError``) for a dtype the law cannot fill; the drop-ins
  (``initializers.py``) also use ``SpecRuntimeError``, ``SpecZeroDivisionError`` and
  ``SpecOverflowError`` where torch raises those.
* **DTensors** (FSDP2, tensor parallel): the spec is checked against the global shape, then
  one 32-bit base is drawn from ``generator`` (torch's global RNG without one) and this
  rank's shard is filled by the stream rule (``sharded.py``): the same values for any mesh
  and placement when ranks are seeded alike; no collective. (torch's own init functions on a
  DTensor give mesh-dependent values, pytorch/pytorch#168058.)
* **Zero-element tensors** are a no-op for every spec (torch warns for kaiming and divides
  by zero for xavier on ``(0, 0)``), after the shape check.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ShapeError, SpecError
from ..reference import check_shape
from ..spec import Spec
from .draw import COMPLEX_DTYPES, FLOAT_DTYPES, _filler, complex_problem
from .sharded import fill_compiled, is_dtensor

# --------------------------------------------------------------------------- errors
# Each is a multiinit error *and* the builtin torch raises for the same bad input, so that
# ``except RuntimeError`` around code written for torch.nn.init still catches it.


class SpecTypeError(SpecError, TypeError):
    """A parameter of the wrong type (torch raises ``TypeError`` when parsing it)."""


class SpecRuntimeError(SpecError, RuntimeError):
    """A parameter value torch's kernels refuse with ``RuntimeError`` (``a > b``, ``std < 0``,
    bounds out of range, ...)."""


class SpecAttributeError(SpecError, AttributeError):
    """Not a tensor where a tensor is needed (torch fails on the missing method)."""


class SpecZeroDivisionError(SpecError, ZeroDivisionError):
    """A parameter torch divides by when it is zero (``trunc_normal_(std=0)``,
    ``dirac_(groups=0)``)."""


class SpecOverflowError(SpecError, OverflowError):
    """A number torch cannot convert (an int beyond int64, an infinite sparsity)."""


class DtypeError(ShapeError, NotImplementedError):
    """A tensor whose dtype the law cannot fill (torch raises ``NotImplementedError``)."""


# --------------------------------------------------------------------------- one tensor


def _where(path: str | None) -> str:
    return repr(path) if path else "a tensor"


def _is_uninitialized(tensor: Any) -> bool:
    # torch's own stub of nn.parameter leaves out the mixin (both lazy kinds derive from it).
    return isinstance(tensor, nn.parameter.UninitializedTensorMixin)  # type: ignore[attr-defined]


def _prepare(
    spec: Spec, tensor: Any, generator: Any, fans: tuple[int, int] | None, path: str | None = None
) -> bool:
    """Check that ``spec`` can fill ``tensor``; True when there is something to draw."""
    if not isinstance(tensor, torch.Tensor):
        raise SpecAttributeError(
            f"{spec!r}: tensor={tensor!r} is not allowed; tensor must be a torch.Tensor "
            "(use mi.apply for a whole nn.Module)"
        )
    if _is_uninitialized(tensor):
        raise ShapeError(
            f"{spec!r} cannot fill {_where(path)}: it is an uninitialized lazy parameter, so "
            "its shape is unknown; run one forward pass (e.g. net(x)) to materialize it first"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise SpecTypeError(
            f"{spec!r}: generator={generator!r} is not allowed; generator must be None or a "
            "torch.Generator on the tensor's device"
        )
    check_shape(spec, tuple(tensor.shape), fans, path)
    if spec.random and tensor.dtype not in FLOAT_DTYPES:
        _check_dtype(spec, tensor.dtype, path)
    # A meta tensor has no storage: the shape is checked, the values are left for later.
    return not tensor.is_meta and tensor.numel() > 0


def _check_dtype(spec: Spec, dtype: torch.dtype, path: str | None) -> None:
    """Raise ``DtypeError`` unless the random ``spec`` has a law on ``dtype`` (not a float
    dtype: that one the caller has allowed)."""
    if dtype in COMPLEX_DTYPES:
        problem = complex_problem(spec)
        if problem is None:
            return
        raise DtypeError(f"{spec!r} cannot fill {_where(path)} of dtype {dtype}: {problem}")
    raise DtypeError(
        f"{spec!r} cannot fill {_where(path)} of dtype {dtype}: a random spec fills "
        "torch.float16, torch.bfloat16, torch.float32 or torch.float64 tensors, and "
        "torch.complex64 or torch.complex128 ones where its law has a complex form"
    )


class TorchInitializer:
    """A spec compiled for torch: ``fill_(tensor, generator=None) -> tensor``, in place under
    ``no_grad``, like the functions of ``torch.nn.init``. Equal when the specs are equal.

    >>> import torch, multiinit as mi
    >>> fill_ = mi.compile(mi.constant(42), "torch")
    >>> fill_
    multiinit.torch.compile(constant(value=42.0))
    >>> fill_(torch.empty(2, 3)).tolist()
    [[42.0, 42.0, 42.0], [42.0, 42.0, 42.0]]
    """

    __slots__ = ("spec", "_fill", "_checked")

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._fill = _filler(spec)
        #: (shape, dtype) pairs already checked: a repeated call costs a set lookup.
        self._checked: set[tuple[tuple[int, ...], torch.dtype]] = set()

    def __call__(self, tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Fill ``tensor`` in place with the spec's law and return it; fans come from its own
        (torch-layout) shape; ``generator`` makes the draw reproducible."""
        if type(tensor) in (torch.Tensor, nn.Parameter) and (
            generator is None or type(generator) is torch.Generator
        ):
            key = (tuple(tensor.shape), tensor.dtype)
            if key not in self._checked:
                _prepare(self.spec, tensor, generator, None)
                if len(self._checked) < 64:
                    self._checked.add(key)
            if tensor.is_meta or not tensor.numel():
                return tensor
        elif not _prepare(self.spec, tensor, generator, None):
            return tensor
        elif is_dtensor(tensor):
            # torch's own init on a DTensor gives values that depend on the mesh (and fails
            # for ops without a sharding rule): this rank's shard by the stream rule instead.
            with torch.no_grad():
                fill_compiled(tensor, self.spec, generator)
            return tensor
        with torch.no_grad():
            self._fill(tensor, generator, None)
        return tensor

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TorchInitializer) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(("torch", self.spec))

    def __repr__(self) -> str:
        return f"multiinit.torch.compile({self.spec!r})"


def compile(spec: Spec, **options: Any) -> TorchInitializer:
    """``spec`` as ``fill_(tensor, generator=None) -> tensor`` (see ``TorchInitializer``).

    No options: seed a call with ``generator=``.

    >>> import torch, multiinit as mi
    >>> w = mi.compile(mi.xavier_uniform(), "torch")(torch.empty(300, 400))
    >>> bool(w.abs().max() <= (6 / 700) ** 0.5)
    True
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec such as mi.normal()")
    if options:
        raise SpecError(
            f"options={options!r} are not allowed; the torch backend takes no compile options "
            "(pass generator= when calling the compiled initializer)"
        )
    return TorchInitializer(spec)
