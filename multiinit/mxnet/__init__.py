"""The MXNet adapter: multiinit specs as registered Gluon initializers, and rules for blocks.

``mi.compile(spec, "mxnet", seed=None)`` (or ``from multiinit import mxnet as mim``) gives a
``Multiinit``, an ``mxnet.initializer.Initializer`` subclass registered with MXNet under the
name ``"multiinit"``. It works wherever Gluon takes an initializer, with legacy ``mx.nd`` and
with ``mx.np`` arrays (after ``npx.set_np()``); the namespace constructors take the
initializer's ``seed=`` as Keras' do: ``mim.he_normal(seed=1)``. ``mi.apply(block, rules, seed=None)``
initializes a Gluon ``Block`` by rules, in one pass, all or nothing. Written for MXNet 1.9.

This package is that namespace; one file per job, each stating in its docstring the decisions
it implements (each one tested in ``tests/test_mxnet_*.py``):

``draw.py``
    spec -> values in an MXNet array: MXNet's own samplers, orthogonal, dtypes, seeds and the
    user's stream.
``host.py``
    the laws MXNet does not sample (truncated normals, mixtures, sparse, eye, dirac, custom
    laws, and every seeded law on the CPU), drawn by NumPy in threads straight into the
    array's memory; user laws fenced.
``compiled.py``
    the compiled form: ``Multiinit`` (which arrays it fills, layout and fans, its seeds,
    ``dumps()`` and ``mx.init.create``) and ``compile``.
``model.py``
    walking a Gluon ``Block``: parameters, paths, layer kinds, logical views, ``params_of``,
    ``apply`` in one pass (its writer), and MXNet's deferred initialization.

Importing this package registers ``Multiinit`` with MXNet (``multiinit.registry`` imports it
right after ``mxnet`` is imported, so saved initializers load after a bare ``import multiinit``).
"""

from __future__ import annotations

from ..errors import BackendUnavailable
from ..registry import namespace
from ..spec import CONSTRUCTORS

try:
    import mxnet as mx  # noqa: F401
    from mxnet.gluon import nn as _nn  # noqa: F401
except (ImportError, AttributeError) as e:  # mxnet 1.9 fails with AttributeError on numpy >= 1.24
    raise BackendUnavailable.missing("mxnet", "MXNet", "mxnet", e) from e

# Imported after the check above, so that a missing mxnet is reported as BackendUnavailable.
from .compiled import LAYOUT, Multiinit, compile
from .model import apply, params_of

__all__ = ["LAYOUT", "Multiinit", "compile", "apply", "params_of"]

# The framework namespace of the contract: mim.xavier_uniform() is a Multiinit instance, and
# every constructor takes the initializer's seed=, as with Keras: mim.he_normal(seed=1).
#: Each namespace constructor's example (``registry.namespace``): an MXNet initializer, on a
#: weight array as Gluon calls it.
_EXAMPLE = """>>> import mxnet as mx
>>> import multiinit as mi
>>> from multiinit import mxnet as mim
>>> weight = mx.nd.zeros({shape})
>>> mim.{call}(mx.init.InitDesc("dense0_weight"), weight)
>>> weight.shape
{shape}"""

globals().update(namespace("mxnet", compile, seeded=True, example=_EXAMPLE))

# The constructors' examples run with the others (their code lives in multiinit.registry).
__test__ = {name: globals()[name] for name in CONSTRUCTORS}
