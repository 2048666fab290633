"""The compiled form: ``Multiinit``, a registered MXNet initializer (part of ``multiinit.mxnet``).

``compile(spec, seed=None)`` (what ``mi.compile(spec, "mxnet", seed=None)`` and every
constructor of the ``multiinit.mxnet`` namespace return) is a ``Multiinit``, an
``mxnet.initializer.Initializer`` subclass registered with MXNet under the name
``"multiinit"`` (MXNet registers a class by its lower-cased name). It works wherever Gluon
takes an initializer, with legacy ``mx.nd`` and with ``mx.np`` arrays (after
``npx.set_np()``). Its values come from ``draw.py``.

Decisions (each one tested in ``tests/test_mxnet_*.py``):

Which arrays a multiinit initializer fills
    MXNet's built-in initializers dispatch on the array's name when called outside Gluon
    (``..._bias`` gets zeros, ``..._gamma`` ones, whatever the initializer), while Gluon's
    ``Parameter.initialize`` always calls ``_init_weight``. A multiinit initializer draws its
    spec for every array it is asked to fill, whatever the name: one spec, one law. In Gluon
    this changes nothing (a ``Dense`` bias still keeps its own ``bias_initializer="zeros"``
    under ``net.initialize(init)``, exactly as with ``mx.init.Xavier``); only a direct call
    on a name ending in ``bias``/``gamma``/``beta`` (the symbolic ``Module`` API) differs.
    When the call carries a parameter's own initializer (``InitDesc.attrs["__init__"]``,
    Gluon's way of passing ``weight_initializer`` and friends), that one wins, as in MXNet.

Layout and fans
    MXNet stores weights ``(out, in/groups, *spatial)``, torch's layout, so a compiled
    initializer computes torch's fans from the array's own shape (a (128, 64, 3, 3) kernel
    has fan_in 576, fan_out 1152). Below two dimensions a fan-based spec raises
    ``ShapeError`` naming the parameter: MXNet's own ``Xavier`` refuses a 1-D array only
    when it is reached through ``_init_weight`` and silently writes zeros when the name ends
    in ``bias``. A single array carries no layer, so a bias gets its weight's fans only
    through ``mi.apply`` (``model.py``). In a layer whose shape Gluon defers (``nn.Dense(8)``
    without ``in_units``), the initializer runs at the first forward pass, with the shape
    then known.

Seeds
    ``seed=None``: every draw uses MXNet's global generator, as ``mx.init`` does (see
    ``draw.py``). ``seed=<int>``: call k of the instance draws from ``derive_seed(seed, k)``
    (a fresh instance, or one rebuilt by ``mx.init.create``, replays the same sequence, while
    two parameters sharing an instance differ); ``draw.py`` says which generator that seeds.

User laws
    A ``custom`` law is drawn and validated before the array is touched: an exception, a
    wrong shape or dtype, NaN or infinite values give a ``LawError`` naming the law and the
    array's name. Gluon initializes parameter by parameter (and, with ``force_reinit=True``,
    drops a parameter's arrays before calling its initializer), so a failure there stops
    ``net.initialize`` part way; ``mi.apply`` is the all-or-nothing form.

Serialization
    ``dumps()`` is ``'["multiinit", {"spec": spec.to_dict(), "seed": seed}]'`` and
    ``mx.init.create(that)`` rebuilds an equal initializer in any process that has imported
    ``multiinit.mxnet`` (``from multiinit import mxnet`` does): MXNet looks names up in its
    registry, which only an import can fill, and ``import multiinit`` alone imports no
    framework. A custom spec travels by its registered name only. The class statement
    below is the registration: the package's ``__init__`` imports this file, and
    ``multiinit.registry`` imports the package right after ``mxnet`` is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# multiinit/mxnet/__init__.py has already turned a failing mxnet import into BackendUnavailable.
import mxnet as mx
import numpy as np

from ..errors import ShapeError, SpecError
from ..fans import OUT_IN, LogicalView
from ..reference import check_shape
from ..rules import derive_seed
from ..spec import Spec, WithAxes, from_dict, parse
from .draw import check_dtype, fill

#: MXNet (NCHW) weights are (out, in/groups, *spatial): the logical layout itself.
LAYOUT = OUT_IN


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError(
            f"seed={seed!r} is not allowed; seed must be None (MXNet's global generator) or an integer >= 0"
        )
    return int(seed)


def _as_spec(spec: Any) -> Spec:
    if isinstance(spec, Mapping):
        return from_dict(spec)
    if isinstance(spec, str):
        return parse(spec)
    if not isinstance(spec, Spec):
        raise SpecError(
            f"spec={spec!r} is not allowed; spec must be a multiinit spec, its to_dict() or its text"
        )
    return spec


@mx.init.register
class Multiinit(mx.init.Initializer):
    """A multiinit spec as an MXNet initializer, registered as ``"multiinit"``.

    It fills every array it is given with ``spec`` (fans from the array's own
    ``(out, in, *spatial)`` shape). With ``seed=<int>`` call k draws from
    ``derive_seed(seed, k)``; with ``seed=None`` from MXNet's global generator. ``dumps()``
    carries the spec, so ``mx.init.create(init.dumps())`` rebuilds an equal initializer.

    >>> import multiinit as mi, mxnet as mx
    >>> init = mi.compile(mi.constant(0.5), "mxnet")
    >>> init.dumps()
    '["multiinit", {"spec": {"kind": "constant", "value": 0.5}, "seed": null}]'
    >>> mx.init.create(init.dumps()) == init
    True
    """

    def __init__(self, spec: Spec | Mapping[str, Any] | str, seed: int | None = None) -> None:
        spec = _as_spec(spec)
        seed = _check_seed(seed)
        # MXNet's dumps() and __eq__ read _kwargs: the JSON form of the spec goes there.
        super().__init__(spec=spec.to_dict(), seed=seed)
        self.spec = spec
        self.seed = seed
        self._calls = 0

    def __call__(self, desc: Any, arr: Any) -> None:
        """Fill ``arr`` with the spec, whatever ``desc`` names (see the module docstring)."""
        if isinstance(desc, mx.init.InitDesc):
            if desc.global_init is None:
                desc.global_init = self
            own = desc.attrs.get("__init__", "")
            if own:
                # Gluon passes a parameter's own initializer this way: it wins, as in MXNet.
                mx.init.create(own)._init_weight(desc, arr)
                self._verbose_print(desc, own, arr)
                return
        self._init_weight(desc, arr)
        self._verbose_print(desc, "multiinit", arr)

    def _init_weight(self, name: Any, arr: Any) -> None:
        path = str(name)
        shape = tuple(int(d) for d in arr.shape)
        if any(d < 0 for d in shape):
            raise ShapeError(f"{self.spec!r} cannot fill {path!r}: its shape {shape} is not known yet")
        # A spec that states its fan axes reads them off the array's own shape (MXNet's layout).
        fans = self.spec.fans(shape) if isinstance(self.spec, WithAxes) else None
        check_shape(self.spec, shape, fans, path=path)
        check_dtype(self.spec, arr.dtype, path)
        seed = None if self.seed is None else derive_seed(self.seed, self._calls)
        self._calls += 1
        # A user law is drawn and validated before the array is touched (a LawError leaves it).
        fill(arr, self.spec, LogicalView(shape), fans, seed, path)

    # Whatever MXNet's name dispatch would pick, the spec is what fills the array.
    _init_bias = _init_gamma = _init_beta = _init_default = _init_weight

    def reset(self) -> Multiinit:
        """Start a seeded initializer's sequence again at call 0; returns ``self``.

        >>> import multiinit as mi
        >>> mi.compile(mi.normal(), "mxnet", seed=3).reset().seed
        3
        """
        self._calls = 0
        return self

    def __repr__(self) -> str:
        return f"Multiinit({self.spec!r}, seed={self.seed!r})"


def compile(spec: Spec, seed: int | None = None) -> Multiinit:
    """``spec`` as a registered MXNet initializer (see ``Multiinit`` for seeds and fans).

    >>> import multiinit as mi, mxnet as mx
    >>> from mxnet.gluon import nn
    >>> layer = nn.Dense(4, in_units=3, weight_initializer=mi.compile(mi.ones(), "mxnet"))
    >>> layer.initialize()
    >>> float(layer.weight.data().sum().asscalar())
    12.0
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec such as mi.normal()")
    return Multiinit(spec, seed=seed)
