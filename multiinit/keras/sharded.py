"""Where a Keras variable's values go: layouts, deferred variables, and what refuses a write.

``model.py`` decides which values each variable gets; this file puts them there on every Keras
backend, and is the one place that knows how Keras variables are stored. Keras has no public
API for some of it (a deferred variable, the list of variables Keras will initialize later):
those private attributes are read here only, each behind a check that names the Keras version
when it is missing (tested with Keras 3.15.1).

Decisions (each one tested in ``tests/test_keras_*.py``):

Native draws on the JAX backend: always jitted
    Every native draw is one jitted function with the variable's sharding as
    ``out_shardings``: each device computes only its shard (JAX's partitionable threefry makes
    the values independent of the mesh) and no device ever holds the whole tensor. The same
    jitted function draws an unsharded variable, so a sharded model holds bit for bit the values
    of the same model unsharded (an eager draw can differ from a jitted one in the last bit:
    XLA fuses a multiply-add into one FMA). The seed enters as an argument, so there is one
    compilation per law, shape, dtype, fans and sharding -- no slower than eager JAX, which
    compiles each random primitive per shape anyway -- except for laws that split their seed in
    Python (mixtures, sparse): those compile per variable. On TensorFlow and torch (no Keras
    distribution) every draw is eager.
Layouts
    A variable keeps its layout: a value for a sharded JAX variable is put on the variable's
    own sharding (``jax.device_put``, a no-op for a jitted draw that is already there) before
    ``variable.assign``, which Keras' distribution keeps too. A deferred variable gets the
    layout Keras' active distribution gives it (``distribution.get_variable_layout``) when it is
    initialized, as Keras' own deferred initialization does: call ``mi.apply`` inside the
    distribution's scope.
Deferred variables (Keras' deferred initialization)
    A model built inside ``keras.StatelessScope(initialize_variables=False)`` holds variables
    with a shape, a dtype and an initializer but no value (no memory). ``mi.apply`` gives each
    one its value in one step (the variable's first and only allocation), initializes those no
    rule selects with their own Keras initializers (as Keras would), and takes all of them off
    Keras' list of variables still to initialize (else Keras would initialize them a second
    time, and raise, when a later scope exits).
What refuses a write (found before the first write)
    Inside a ``keras.StatelessScope`` ``variable.assign`` only records the value in the scope;
    on JAX inside a trace (``mi.apply`` inside ``jax.jit``) a variable could only take a traced
    value; on torch a variable created under ``torch.inference_mode()`` holds an
    inference tensor, which ``copy_`` refuses outside inference mode. Constraints
    (``kernel_constraint``), ``trainable=False`` and frozen layers refuse nothing: Keras applies
    constraints only after optimizer steps, and initializers are never constrained.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops as _ops

from ..errors import RuleError
from ..spec import Mixture, Sparse, Spec, WithAxes

_KERAS_INTERNALS = (
    "multiinit needs Keras 3's deferred-variable internals ({what}), which this Keras ({version}) "
    "does not have; multiinit is tested with Keras 3.15.1"
)


def backend() -> str:
    """The Keras backend in use: "tensorflow", "jax", "torch", ..."""
    name: str = keras.backend.backend()
    return name


# --------------------------------------------------------------------------- scopes and refusals


def in_stateless_scope() -> bool:
    """True inside a ``keras.StatelessScope`` (where ``assign`` changes no variable)."""
    from keras.src.backend.common import stateless_scope

    inside: bool = stateless_scope.in_stateless_scope()
    return inside


def is_variable(variable: Any) -> bool:
    return isinstance(variable, keras.Variable)


def is_deferred(variable: Any) -> bool:
    """True for a variable created inside a ``StatelessScope`` and not initialized yet: it has
    an initializer and a shape, no value."""
    return getattr(variable, "_value", 0) is None and getattr(variable, "_initializer", None) is not None


def refusal(variable: Any) -> str | None:
    """Why ``variable`` cannot be written in place now, or None."""
    if not is_variable(variable):
        return f"it is a {type(variable).__name__}, not a keras.Variable"
    if in_stateless_scope():
        return (
            "mi.apply is running inside a keras.StatelessScope, where variable.assign only records "
            "the value in the scope and changes no variable; call mi.apply outside the scope"
        )
    name = backend()
    if name == "jax":
        import jax
        import jax.numpy as jnp

        # Inside a trace every new array is a tracer: values drawn there would leak into the
        # variables as tracers.
        if isinstance(jnp.zeros(()), jax.core.Tracer):
            return (
                "mi.apply is running inside a JAX trace (jax.jit, jax.grad, ...), where a variable can "
                "only take a traced value; call mi.apply outside the trace"
            )
        if not is_deferred(variable) and isinstance(variable._value, jax.core.Tracer):
            return (
                "it holds a traced value (a Keras stateless call left it there); call mi.apply outside "
                "the trace"
            )
    if is_deferred(variable):
        return None
    if name == "torch":
        torch = sys.modules.get("torch")
        value = variable._value
        if (
            torch is not None
            and isinstance(value, torch.Tensor)
            and value.is_inference()
            and not torch.is_inference_mode_enabled()
        ):
            return (
                "it holds an inference tensor (the layer was built under torch.inference_mode()), "
                "which cannot be changed in place outside inference mode; build the layer outside "
                "inference_mode, or call mi.apply inside torch.inference_mode()"
            )
    return None


# --------------------------------------------------------------------------- layouts


def sharding_of(variable: Any) -> Any:
    """The JAX sharding ``variable`` keeps (over more than one device), or None: not JAX, not
    sharded. A deferred variable's layout is resolved from Keras' active distribution here."""
    if backend() != "jax":
        return None
    import jax

    if is_deferred(variable):
        if hasattr(variable, "_initialize_layout"):
            variable._initialize_layout()  # what Keras does when it initializes the variable
        layout = getattr(variable, "_layout", None)
        sharding = getattr(layout, "backend_layout", layout)
    else:
        sharding = getattr(variable._value, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding) or len(sharding.device_set) < 2:
        return None
    return sharding


# --------------------------------------------------------------------------- native draws

_JITTED: OrderedDict[tuple[Any, ...], Callable[..., Any]] = OrderedDict()
_JITTED_MAX = 256


def _splits_seed(spec: Spec) -> bool:
    """True when drawing ``spec`` derives child seeds in Python (it needs a concrete seed)."""
    if isinstance(spec, WithAxes):
        return _splits_seed(spec.spec)
    return isinstance(spec, (Mixture, Sparse))


def draw(
    make: Callable[[Any], Any],
    key: tuple[Any, ...],
    spec: Spec,
    shape: tuple[int, ...],
    seed: int,
    sharding: Any,
) -> Any:
    """``make(seed)`` (a native tensor of ``shape``): on JAX by one jitted function onto
    ``sharding`` (each device draws its shard), elsewhere eagerly. ``key`` identifies
    ``make``'s law, shape, dtype and fans."""
    if backend() != "jax":
        return make(seed)
    import jax
    import jax.numpy as jnp

    static = _splits_seed(spec)
    cache_key = (*key, sharding, seed if static else None)
    jitted = _JITTED.get(cache_key)
    if jitted is None:
        if static:
            jitted = jax.jit(lambda: make(seed), out_shardings=sharding)
        else:
            # Keras turns an int seed s into the key [s, 0] (uint32): the same key, traced.
            jitted = jax.jit(make, out_shardings=sharding)
        _JITTED[cache_key] = jitted
        while len(_JITTED) > _JITTED_MAX:
            _JITTED.popitem(last=False)
    else:
        _JITTED.move_to_end(cache_key)
    if static:
        return jitted()
    return jitted(jnp.asarray(np.array([seed, 0], dtype=np.uint32)))


# --------------------------------------------------------------------------- writing


def place(value: Any, dtype: str, sharding: Any) -> Any:
    """``value`` (a NumPy array or a tensor) as a tensor of ``dtype`` on ``sharding``."""
    tensor = _ops.convert_to_tensor(value, dtype=dtype)
    if sharding is not None:
        import jax

        tensor = jax.device_put(tensor, sharding)
    return tensor


def write(variable: Any, value: Any) -> None:
    """Give ``variable`` ``value``: ``assign``, or a deferred variable's first value."""
    if is_deferred(variable):
        if not hasattr(variable, "_initialize"):  # pragma: no cover - a Keras without it
            raise RuleError(_KERAS_INTERNALS.format(what="Variable._initialize", version=keras.__version__))
        variable._initialize(value)
        variable._initializer = None
    else:
        variable.assign(value)


def initialize_deferred(variables: list[Any]) -> None:
    """Initialize the deferred ones of ``variables`` with their own Keras initializers."""
    for variable in variables:
        if is_deferred(variable):
            variable._deferred_initialize()


def forget_deferred(variables: list[Any]) -> None:
    """Take ``variables`` off Keras' list of variables to initialize when a scope exits."""
    from keras.src.backend.common import global_state

    pending = global_state.get_global_attribute("uninitialized_variables")
    if pending:
        ours = {id(v) for v in variables}
        pending[:] = [v for v in pending if id(v) not in ours]
