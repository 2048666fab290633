"""The JAX/Flax adapter: jittable ``kernel_init`` functions and rules for Flax parameters.

``multiinit.compile(spec, "flax")`` (or ``spec.to("flax")``, or any constructor of
``from multiinit import flax as mif``) returns an :class:`Initializer`, a function
``init(key, shape, dtype=jnp.float32) -> jax.Array`` that ``flax.linen`` and ``flax.nnx``
layers take as ``kernel_init`` / ``bias_init``::

    import flax.linen as nn
    from multiinit import flax as mif
    layer = nn.Dense(8, kernel_init=mif.xavier_uniform(), bias_init=mif.zeros())

``multiinit.apply(variables, rules, seed=0)`` initializes a whole linen variables tree (and
returns a new one), an ``nnx.Module`` (changed in place) or an ``nnx.State`` -- concrete,
abstract (``jax.eval_shape``, ``nnx.eval_shape``) or sharded over a ``Mesh``, all or nothing;
``donate=True`` gives up the input's buffers, ``shardings=`` places the new arrays.
``multiinit.plan(model, rules)`` shows what it would do (``params_of``).

``from multiinit.flax import initializers as init`` is the drop-in for ``jax.nn.initializers``
(and ``flax.linen.initializers`` / ``flax.nnx.initializers``): JAX's names, signatures and
meanings (``init.uniform(scale)`` is U[0, scale)), a neutral spec behind each (``.spec``).

This package is the namespace; one file per job, each docstring stating the decisions that
file implements (each one is tested in ``tests/test_flax_*.py``):

``draw.py``
    spec -> values in JAX: the laws (bounds kept in every dtype, JAX's own primitives, the
    lower-tail truncated normal), the dtypes filled, host-side plans run by cached jitted
    kernels (``jax.jit`` gives the eager values), custom NumPy functions through
    ``jax.pure_callback``.
``compiled.py``
    the compiled form: :class:`Initializer` (``init(key, shape, dtype)``: the keys it takes,
    fans on the logical view of the shape or from ``with_axes``, ``fans=`` for a bias), its
    errors, and :func:`compile`.
``initializers.py``
    the ``jax.nn.initializers`` drop-in and the one table from JAX's names and arguments to
    specs (``spec_of``).
``model.py``
    walking parameters: linen variable trees (:func:`modules`, ``layers=``), nnx modules and
    states, layer kinds and logical views (the layer registry, multi-axis and attention
    kernels), definition order, tied parameters, :func:`params_of`, and :func:`apply`: the
    one-pass writer (checks, user laws first, each parameter drawn), abstract models, donation.
``sharded.py``
    one parameter drawn where it lives: the keys (``fold_in(key(seed), order)``), one compiled
    kernel per law and sharding (``out_shardings``: each device its shard, no collective for an
    elementwise law), portable draws per shard (``make_array_from_callback``), and where each
    new array goes (``shardings=``, the leaf's own sharding, partitioning metadata).

Importing it without JAX and Flax raises ``BackendUnavailable`` with the pip command to run.
"""

from __future__ import annotations

from ..errors import BackendUnavailable
from ..registry import namespace
from ..spec import CONSTRUCTORS

# Every framework import of draw.py, compiled.py and model.py, tried before any of them runs
# (Python imports this file first, whichever of them is asked for): a missing or too old
# framework is one error with the exact pip command in the message.
try:
    import flax.linen
    import jax
    import jax.numpy
    from flax import nnx
    from flax.core import FrozenDict, meta
    from jax.scipy.special import ndtri
except ImportError as e:
    raise BackendUnavailable.missing("flax", "JAX and Flax", "jax", e) from e
del flax, jax, nnx, FrozenDict, meta, ndtri

from .compiled import (  # noqa: E402
    LAYOUT,
    AxisError,
    DtypeError,
    DtypeTypeError,
    Initializer,
    KeyTypeError,
    ShapeTypeError,
    compile,
)
from .model import Modules, apply, modules, params_of  # noqa: E402

__all__ = [
    "LAYOUT",
    "Initializer",
    "Modules",
    "compile",
    "apply",
    "modules",
    "params_of",
    "AxisError",
    "DtypeError",
    "DtypeTypeError",
    "KeyTypeError",
    "ShapeTypeError",
]

#: Each namespace constructor's example (``registry.namespace``): a JAX initializer, called.
_EXAMPLE = """>>> import jax
>>> import multiinit as mi
>>> from multiinit import flax as mif
>>> init = mif.{call}
>>> init(jax.random.key(0), {shape}).shape
{shape}"""

globals().update(namespace("flax", compile, example=_EXAMPLE))

# The constructors' examples run with the others (their code lives in multiinit.registry).
__test__ = {name: globals()[name] for name in CONSTRUCTORS}
