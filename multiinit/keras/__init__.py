"""The Keras 3 adapter: multiinit specs as serializable Keras initializers, and rules for models.

``mi.compile(spec, "keras", seed=None)`` (or ``from multiinit import keras as mik``) gives a
``MultiinitInitializer``, a ``keras.initializers.Initializer`` subclass written with
``keras.ops`` and ``keras.random`` only, so it runs on any Keras 3 backend (tested on
TensorFlow, JAX and torch). ``mi.apply(model, rules, seed=None)`` initializes a built Keras
``Model`` or ``Layer`` by rules, all or nothing, in one pass; a model built inside
``keras.StatelessScope(initialize_variables=False)`` (Keras' deferred initialization) gets each
variable's value once, and variables under a Keras distribution keep their layout. Every
constructor of the namespace also takes Keras' ``seed=`` keyword: ``mik.he_normal(seed=1)``.

This module is the namespace; the work is done in five files, each importing only those
listed before it. Each file's docstring states the decisions it implements.

``draw.py``
    spec -> values with ``keras.ops`` and ``keras.random``: truncated normals, the other laws
    on the logical view, dtypes.
``compiled.py``
    the compiled form, ``MultiinitInitializer`` and ``compile``: fans of a lone tensor, seeds,
    serialization, and the registration with Keras as ``"multiinit>Initializer"`` (done when
    this package is imported, which ``multiinit.registry`` does as soon as Keras is imported,
    so saved models load after a bare ``import multiinit``).
``initializers.py``
    the drop-in for ``keras.initializers`` (``from multiinit.keras import initializers``):
    Keras' names, signatures, laws, seeds and configs, each with its neutral ``spec``;
    ``spec_of`` is the table from Keras' names and arguments to specs. Imported here, so
    its classes are registered with Keras as ``"multiinit>ClassName"`` whenever this package is.
``sharded.py``
    where a variable's values go: layouts under Keras distribution (JAX), deferred variables,
    what refuses a write.
``model.py``
    walking a built model: parameters, layer kinds and the layer registry, logical views
    (transposed, depthwise, embedding, einsum/attention), a bias's fans, ``params_of`` and
    ``apply`` (a ``rules.Writer``).
"""

from __future__ import annotations

from ..errors import BackendUnavailable
from ..fans import SPATIAL_IN_OUT
from ..registry import namespace
from ..spec import CONSTRUCTORS

try:
    import keras
    from keras import ops as _ops  # noqa: F401  (Keras 2 has no ops: it is a missing Keras 3 too)
except ImportError as e:  # the exact pip command is in the message
    raise BackendUnavailable.missing("keras", "Keras 3", "tensorflow", e) from e

if not str(getattr(keras, "__version__", "0")).startswith("3"):  # pragma: no cover - env guard
    raise BackendUnavailable.missing(
        "keras",
        "Keras 3",
        "tensorflow",
        ImportError(f"keras {getattr(keras, '__version__', '?')} is installed; multiinit needs Keras 3"),
    )

# After the guard: these need Keras 3.
from . import initializers  # noqa: F401  (registers the drop-ins with Keras' serialization)
from .compiled import MultiinitInitializer, compile
from .model import apply, params_of

__all__ = [  # noqa: PLE0604 - *CONSTRUCTORS unpacks a dict keyed by the constructors' names
    "LAYOUT",
    "MultiinitInitializer",
    "compile",
    "apply",
    "params_of",
    "calculate_gain",
    *CONSTRUCTORS,
]

#: Keras kernels are (*spatial, in, out).
LAYOUT = SPATIAL_IN_OUT

# The public objects keep the module they are imported from, as before the adapter became a
# package: Keras writes the class's __module__ into every saved config ("module":
# "multiinit.keras"), and pickle, doctest and help() find objects by it.
for _public in (MultiinitInitializer, compile, apply, params_of):
    _public.__module__ = __name__
del _public

#: Each namespace constructor's example (``registry.namespace``): a Keras initializer, called.
_EXAMPLE = """>>> import multiinit as mi
>>> from multiinit import keras as mik
>>> init = mik.{call}
>>> tuple(init({shape}).shape)
{shape}"""

globals().update(namespace("keras", compile, seeded=True, example=_EXAMPLE))

# The constructors' examples run with the others (their code lives in multiinit.registry).
__test__ = {name: globals()[name] for name in CONSTRUCTORS}
