"""The compiled form: a spec as a serializable ``keras.initializers.Initializer``.

``compile(spec, seed=None)`` -- what ``mi.compile(spec, "keras")`` and every constructor of
the namespace return -- gives a ``MultiinitInitializer``. Calling it checks the shape, picks
the call's seed and dtype, and draws with ``draw._draw``; its config round-trips through
``spec.to_dict()``, and Keras finds the class by its registered name.

Decisions (each one tested in ``tests/test_keras_*.py``):

Layout and fans
    Keras kernels are ``(*spatial, in, out)``; a compiled initializer computes its fans on the
    logical ``(out, in, *spatial)`` view of the shape it is called with, which for a dense or
    a plain conv kernel are exactly Keras' own fans (a (3, 3, 64, 128) kernel has fan_in 576,
    fan_out 1152). Below two dimensions a fan-based spec raises ``ShapeError`` where Keras
    invents fans (n, n) for a bias: at single-tensor level the layer is unknown, so use
    ``mi.apply`` to give a bias its kernel's fans (``model.py``: there the layer is known, and
    the layouts that differ from Keras' own fans are decided).

Seeds
    Keras' own int-seeded (and unseeded) initializers are stateless: one instance shared by two
    layers gives both the same weights (the drop-ins of ``initializers.py`` keep that rule, as
    Keras documents it). A compiled multiinit initializer instead advances on every call:

    * ``seed=<int>``: call k of the instance draws with the stateless Keras seed
      ``derive_seed(seed, k)``. A new instance with the same seed (or ``from_config``, or a
      model rebuilt in another run) replays the same sequence: reproducible across runs and
      processes, while two layers sharing the instance get different weights. The call count
      is not part of the config: a deserialized or cloned initializer starts again at call 0.
    * ``seed=None``: every draw uses Keras' global generator (``keras.random`` with
      ``seed=None``), so calls differ and ``keras.utils.set_random_seed(s)`` makes a whole
      program reproducible, as for any Keras random op.

    ``keras.random.SeedGenerator`` seeds are refused: the int seed already advances, and a
    SeedGenerator holds a backend variable that does not belong in a config.

Serialization
    ``get_config()`` is ``{"spec": spec.to_dict(), "seed": seed}``; ``from_config`` rebuilds an
    equal spec and never runs code (a custom spec is found by its registered name, so the
    process that loads must build ``mi.custom(fn, name=...)`` first). The class is registered
    as ``"multiinit>Initializer"``; a saved ``.keras`` model loads in any process that has
    imported ``multiinit.keras`` (e.g. ``from multiinit import keras``), which registers it.
    ``multiinit.registry`` imports ``multiinit.keras`` as soon as Keras is imported, so a bare
    ``import multiinit`` is enough. The package gives the class the ``__module__``
    ``"multiinit.keras"``, the address users import it from, so a saved config says
    ``"module": "multiinit.keras"`` as it did before the adapter became a package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from ..errors import ShapeError, SpecError
from ..fans import SPATIAL_IN_OUT, LogicalView
from ..reference import check_shape
from ..rules import derive_seed
from ..spec import Spec, WithAxes, from_dict
from .draw import _draw, _resolve_dtype


def _shape(shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = (shape,)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise ShapeError(f"shape={shape!r} is not allowed; shape must be a sequence of integers >= 0")
    return tuple(int(d) for d in dims)


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError(
            f"seed={seed!r} is not allowed; seed must be None (Keras' global generator) or an "
            "integer >= 0 (a keras.random.SeedGenerator is not needed: an int seed advances per call)"
        )
    return int(seed)


@keras.saving.register_keras_serializable(package="multiinit", name="Initializer")
class MultiinitInitializer(keras.initializers.Initializer):
    """A multiinit spec as a Keras initializer: ``initializer(shape, dtype=None) -> tensor``.

    Fans come from the logical ``(out, in, *spatial)`` view of ``shape`` (Keras' layout is
    ``(*spatial, in, out)``). With ``seed=<int>`` call k draws from ``derive_seed(seed, k)``:
    reproducible, yet two layers sharing the instance differ; with ``seed=None`` it draws
    from Keras' global generator. ``get_config``/``from_config`` round-trip through
    ``spec.to_dict()``.

    >>> import multiinit as mi
    >>> init = mi.compile(mi.uniform(5, 10), "keras", seed=0)
    >>> tuple(init((3, 2)).shape)
    (3, 2)
    >>> MultiinitInitializer.from_config(init.get_config()).spec
    uniform(low=5.0, high=10.0)
    """

    def __init__(self, spec: Spec | dict[str, Any], seed: int | None = None) -> None:
        if isinstance(spec, dict):
            spec = from_dict(spec)
        if not isinstance(spec, Spec):
            raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec or its to_dict()")
        self.spec = spec
        self.seed = _check_seed(seed)
        self._calls = 0

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        shape = _shape(shape)
        resolved = _resolve_dtype(self.spec, dtype, f"a tensor of shape {shape}")
        view = LogicalView.of(shape, SPATIAL_IN_OUT)
        try:
            # A with_axes spec's fans come from its axes on the shape Keras asks for.
            fans = self.spec.fans(shape) if isinstance(self.spec, WithAxes) else None
            check_shape(self.spec, view.logical_shape, fans)
        except ShapeError as e:
            if self.spec.uses_fans and len(shape) < 2:
                raise ShapeError(
                    f"{e} (Keras would invent fans {shape * 2 or (1, 1)} here; to give a bias its "
                    "layer's kernel fans, initialize the built model with multiinit.apply)"
                ) from None
            raise
        seed = None if self.seed is None else derive_seed(self.seed, self._calls)
        self._calls += 1
        return _draw(self.spec, view, fans, resolved, seed)

    def get_config(self) -> dict[str, Any]:
        """``{"spec": spec.to_dict(), "seed": seed}``, JSON-ready."""
        return {"spec": self.spec.to_dict(), "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultiinitInitializer:
        """The initializer a ``get_config()`` describes (its call count starts again at 0)."""
        if not isinstance(config, dict) or "spec" not in config:
            raise SpecError(f"config={config!r} is not allowed; it must be a dict with a 'spec' key")
        unknown = sorted(set(config) - {"spec", "seed"})
        if unknown:
            raise SpecError(f"config keys {unknown} are not allowed; the keys are 'spec' and 'seed'")
        return cls(from_dict(config["spec"]), seed=config.get("seed"))

    def __repr__(self) -> str:
        return f"MultiinitInitializer({self.spec!r}, seed={self.seed!r})"


def compile(spec: Spec, seed: int | None = None) -> MultiinitInitializer:
    """``spec`` as a Keras initializer (see ``MultiinitInitializer`` for seeds and fans).

    >>> import multiinit as mi
    >>> import keras
    >>> layer = keras.layers.Dense(4, kernel_initializer=mi.compile(mi.ones(), "keras"))
    >>> layer.build((None, 3))
    >>> float(layer.kernel.numpy().sum())
    12.0
    """
    if not isinstance(spec, Spec):
        raise SpecError(f"spec={spec!r} is not allowed; spec must be a multiinit spec such as mi.normal()")
    return MultiinitInitializer(spec, seed=seed)
