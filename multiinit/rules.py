"""Model-level selection: which parameter gets which spec, decided before anything is written.

An adapter describes a model as a list of ``Param`` (path, role, layer, logical view); this
module matches rules against them, checks every assignment can be filled, and drives the
draw-everything-then-write-everything step that keeps ``apply`` all or nothing. It knows no
framework.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .errors import RuleError, ShapeError, SpecError
from .fans import LogicalView
from .reference import check_shape
from .spec import Custom, Mixture, Spec, WithAxes, parse

__all__ = [
    "Rule",
    "Param",
    "Select",
    "select",
    "LAYER_KINDS",
    "normalize_rules",
    "plan",
    "roles_of",
    "derive_seed",
    "portable_rng",
    "execute",
    "Draw",
    "Writer",
    "needs_prepare",
    "portable_values",
]

# Names that mean the same role across frameworks: a "weight" rule also selects a Keras or
# Flax "kernel", a "gamma" rule a Flax "scale".
_ROLE_GROUPS = (
    frozenset({"weight", "kernel"}),
    frozenset({"gamma", "scale"}),
    frozenset({"beta", "offset"}),
    frozenset({"embedding", "embeddings"}),
)


def roles_of(name: str) -> frozenset[str]:
    """Every role name a parameter called ``name`` answers to.

    >>> sorted(roles_of("kernel"))
    ['kernel', 'weight']
    """
    for group in _ROLE_GROUPS:
        if name in group:
            return group
    return frozenset({name})


#: Framework-neutral kinds of layer an adapter can tell a parameter belongs to.
LAYER_KINDS = (
    "dense",
    "conv",
    "conv_transpose",
    "depthwise_conv",
    "embedding",
    "norm",
    "attention",
    "recurrent",
)


@dataclass(eq=False)
class Param:
    """One parameter of a model, as an adapter describes it to the rules.

    ``path`` is the framework's own path (``"0.weight"``, ``"params/Dense_0/kernel"``);
    ``fans`` overrides the logical view's fans (a bias gets its weight's fans); ``order`` is
    the parameter's position in the model, which seeds its stream; ``handle`` is the adapter's;
    ``kind`` is the neutral kind of its layer (one of ``LAYER_KINDS``) when the adapter knows it.
    ``known`` says whether multiinit knows the layer (a built-in layer of the framework, or one
    registered with ``multiinit.register_layer``); when False its kind and layout are the
    adapter's guess, so fans read off it are a guess too. Left None, it is ``kind is not None``.
    A view with batch axes gives its fans (one batch element's) to ``fans`` when none is given.
    ``aliases`` are the parameter's other paths (a tied weight shared by two layers is one
    parameter with two paths): a path selector selects it by any of them.
    """

    path: str
    view: LogicalView
    role: str
    layer: Any = None
    fans: tuple[int, int] | None = None
    order: int = 0
    dtype: str = "float32"
    handle: Any = None
    kind: str | None = None
    known: bool | None = None
    aliases: tuple[str, ...] = ()
    roles: frozenset[str] = field(init=False)
    # True when ``fans`` are the view's own (batch axes), not given by the adapter.
    _own_fans: bool = field(init=False, default=False, repr=False)

    def __post_init__(self) -> None:
        self.roles = roles_of(self.role)
        if self.known is None:
            self.known = self.kind is not None
        batch = getattr(self.view, "batch", 0)
        if self.fans is None and batch:
            # A drawer sees only the logical shape, whose batch axes it would count as fans.
            try:
                self.fans = self.view.fans
                self._own_fans = True
            except ShapeError:
                pass  # no in axis: the adapter gives it its weight's fans, or none

    @property
    def logical_shape(self) -> tuple[int, ...]:
        return self.view.logical_shape

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path of this parameter: ``path`` first, then its ``aliases``."""
        return (self.path, *self.aliases)

    def fans_for(self, spec: Spec) -> tuple[int, int] | None:
        """The ``(fan_in, fan_out)`` ``spec`` uses on this parameter, None if it uses no fans.

        Fans the adapter gave (a bias: its weight's) win; otherwise a ``with_axes`` spec reads
        them off the stored (native) shape by its axes; otherwise the view's. Raises
        ``ShapeError`` when there are none to use.

        >>> from multiinit import with_axes, he_normal
        >>> p = Param("q/kernel", LogicalView((32, 8, 16)), "kernel")
        >>> p.fans_for(he_normal()), p.fans_for(with_axes(he_normal(), in_axis=0, out_axis=(1, 2)))
        ((128, 512), (32, 128))
        """
        if not spec.uses_fans:
            return None
        if self.fans is not None and not self._own_fans:
            return self.fans
        if isinstance(spec, WithAxes):
            return spec.fans(self.view.native_shape)
        return self.fans if self.fans is not None else self.view.fans


def _given_fans(param: Param, spec: Spec) -> tuple[int, int] | None:
    """The fans to hand the reference for ``spec`` on ``param``: a ``with_axes`` spec's from the
    stored shape, else the adapter's (None: the reference reads them off the logical shape,
    and says why when it cannot)."""
    return param.fans_for(spec) if isinstance(spec, WithAxes) else param.fans


def _names(value: str | Sequence[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset({value}) if isinstance(value, str) else frozenset(value)


@dataclass(frozen=True)
class Select:
    """A framework-neutral selector: a layer ``kind`` and/or a ``role`` and/or a path glob,
    all of which must hold. Presets use it to say "the weight of a dense or conv layer" the
    same way in every framework. An ``optional`` selector may select nothing (a preset's
    embedding rule on a model without an embedding); any other rule that selects nothing is
    an error."""

    kind: frozenset[str] | None = None
    role: frozenset[str] | None = None
    path: str | None = None
    optional: bool = False

    def matches(self, param: Param) -> bool:
        """True when every given part holds for ``param``."""
        return (
            (self.kind is None or param.kind in self.kind)
            and (self.role is None or bool(self.role & param.roles))
            and (self.path is None or any(fnmatch.fnmatchcase(p, self.path) for p in param.paths))
        )

    def __repr__(self) -> str:
        parts = []
        for name in ("kind", "role"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={tuple(sorted(value)) if len(value) > 1 else next(iter(value))!r}")
        if self.path is not None:
            parts.append(f"path={self.path!r}")
        if self.optional:
            parts.append("optional=True")
        return f"select({', '.join(parts)})"


def select(
    kind: str | Sequence[str] | None = None,
    role: str | Sequence[str] | None = None,
    path: str | None = None,
    optional: bool = False,
) -> Select:
    """A selector on the neutral layer kind, the role and the path, in any combination.

    ``optional=True`` lets the rule select nothing without a ``RuleError``.

    >>> select(kind=("dense", "conv"), role="weight")  # a role stands for its synonyms too
    select(kind=('conv', 'dense'), role=('kernel', 'weight'))
    """
    kinds = _names(kind)
    unknown = sorted(kinds - set(LAYER_KINDS)) if kinds else []
    if unknown:
        raise RuleError(f"select: kind={kind!r} is not allowed; kinds are {', '.join(LAYER_KINDS)}")
    roles = _names(role)
    if roles is not None:
        roles = frozenset().union(*(roles_of(r) for r in roles))
    if kinds is None and roles is None and path is None:
        raise RuleError("select() needs at least one of kind=, role=, path=")
    if not isinstance(optional, bool):
        raise RuleError(f"select: optional={optional!r} is not allowed; optional must be True or False")
    return Select(kinds, roles, path, optional)


def _is_type_selector(selector: Any) -> bool:
    if isinstance(selector, type):
        return True
    return isinstance(selector, tuple) and bool(selector) and all(isinstance(s, type) for s in selector)


@dataclass(frozen=True)
class Rule:
    """``selector -> spec``. A selector is a glob on the parameter path (``"*.bias"``), a role
    (a bare name: ``"weight"``, ``"kernel"``, ``"bias"``) or a layer type (a class or a tuple of
    classes). ``spec=None`` leaves the selected parameters as they are."""

    selector: Any
    spec: Spec | None
    index: int = 0

    def matches(self, param: Param) -> bool:
        """True when this rule's selector selects ``param``."""
        selector = self.selector
        if isinstance(selector, Select):
            return selector.matches(param)
        if _is_type_selector(selector):
            return param.layer is not None and isinstance(param.layer, selector)
        if selector.isidentifier():
            return selector in param.roles or selector == param.kind or selector in param.paths
        return any(fnmatch.fnmatchcase(p, selector) for p in param.paths)

    def describe(self) -> str:
        selector = self.selector
        if _is_type_selector(selector):
            names = selector if isinstance(selector, tuple) else (selector,)
            shown = " | ".join(t.__name__ for t in names)
        else:
            shown = repr(selector)
        return f"rule {self.index} ({shown} -> {self.spec!r})"


def normalize_rules(rules: Any) -> list[Rule]:
    """Rules as an ordered list; accepts a dict or a sequence of ``(selector, spec)`` pairs.

    A spec may be given as its text (``"normal(std=0.01)"``).

    >>> [r.selector for r in normalize_rules({"weight": "normal(std=0.01)", "bias": None})]
    ['weight', 'bias']
    """
    if isinstance(rules, Mapping):
        pairs: Iterable[Any] = list(rules.items())
    elif isinstance(rules, (list, tuple)):
        pairs = rules
    else:
        raise RuleError(
            f"rules={rules!r} is not allowed; rules must be a dict or a list of (selector, spec) pairs"
        )
    normalized = []
    for index, pair in enumerate(pairs):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise RuleError(
                f"rules[{index}]={pair!r} is not allowed; each rule must be a (selector, spec) pair"
            )
        selector, spec = pair
        if isinstance(selector, str):
            if not selector:
                raise RuleError(f"rules[{index}] selector='' is not allowed; it selects nothing")
        elif not (_is_type_selector(selector) or isinstance(selector, Select)):
            raise RuleError(
                f"rules[{index}] selector={selector!r} is not allowed; a selector must be a path "
                "glob ('*.bias'), a role ('weight') or layer kind ('dense'), a layer class (or "
                "tuple of classes), or multiinit.select(kind=..., role=..., path=...)"
            )
        if isinstance(spec, str):
            try:
                spec = parse(spec)
            except SpecError as e:
                raise RuleError(f"rules[{index}] spec: {e}") from None
        if spec is not None and not isinstance(spec, Spec):
            raise RuleError(
                f"rules[{index}] spec={spec!r} is not allowed; it must be a multiinit spec, its "
                "text, or None to leave the parameters alone"
            )
        normalized.append(Rule(selector, spec, index))
    return normalized


def _nothing_matched(rule: Rule, params: Sequence[Param]) -> RuleError:
    paths = [path for p in params for path in p.paths]
    selector = rule.selector
    if _is_type_selector(selector):
        layers = sorted({type(p.layer).__name__ for p in params if p.layer is not None})
        hint = f"layer types here: {', '.join(layers) or 'none known'}"
    elif isinstance(selector, Select):
        kinds = sorted({p.kind for p in params if p.kind})
        roles = sorted({p.role for p in params})
        hint = f"layer kinds here: {', '.join(kinds) or 'none known'}; roles: {', '.join(roles)}"
    else:
        probe = selector.replace("*", "").replace("?", "")
        close = difflib.get_close_matches(probe, paths, n=3, cutoff=0.0)
        roles = sorted({p.role for p in params})
        hint = f"closest paths: {', '.join(repr(c) for c in close) or 'none'}; roles: {', '.join(roles)}"
    return RuleError(f"{rule.describe()} matches no parameter ({hint})")


def plan(params: Sequence[Param], rules: Any) -> list[tuple[Param, Spec]]:
    """Assign each parameter the spec of the first rule that selects it, and check it all.

    Raises ``RuleError`` for a rule that selects nothing and ``ShapeError`` for a spec that
    cannot fill its parameter, before anything is written. Parameters no rule selects, and
    those whose rule says ``None``, are left out.

    >>> import multiinit as mi
    >>> params = [Param("0.weight", LogicalView((4, 3)), "weight"),
    ...           Param("0.bias", LogicalView((4,)), "bias", order=1)]
    >>> [(p.path, spec) for p, spec in plan(params, {"bias": mi.zeros(), "0.*": mi.he_normal()})]
    [('0.weight', he_normal()), ('0.bias', zeros())]
    >>> plan(params, {"0.*": mi.he_normal(), "bias": mi.zeros()})  # the first rule takes the bias
    Traceback (most recent call last):
    ...
    multiinit.errors.ShapeError: he_normal() cannot fill '0.bias' of shape (4,): ...
    """
    normalized = normalize_rules(rules)
    # A rule shadowed by earlier ones is fine; a selector that selects nothing at all is a
    # mistake (usually a typo) and is reported before anything happens.
    for rule in normalized:
        optional = isinstance(rule.selector, Select) and rule.selector.optional
        if not optional and not any(rule.matches(p) for p in params):
            raise _nothing_matched(rule, params)
    assignments = []
    for param in params:
        first = next((r for r in normalized if r.matches(param)), None)
        if first is not None and first.spec is not None:
            assignments.append((param, first.spec))
    for param, spec in assignments:
        check_shape(spec, param.logical_shape, _given_fans(param, spec), param.path)
    return assignments


def derive_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed for one parameter, derived from the user's seed and the parameter's keys.

    >>> derive_seed(0, 1) == derive_seed(0, 1) != derive_seed(0, 2)
    True
    """
    return int(np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(1)[0])


def portable_rng(seed: int, order: int) -> np.random.Generator:
    """The reference stream of the parameter at position ``order`` as one generator: what
    portable mode draws a whole-tensor law (or a one-tile tensor) from. Portable mode's values
    are ``reference.sample(spec, shape, seed=(seed, order))`` (see ``multiinit.stream``).

    >>> import multiinit as mi
    >>> one_tile = mi.normal().sample((4, 3), seed=(0, 1))
    >>> bool((mi.normal().sample((4, 3), seed=portable_rng(0, 1)) == one_tile).all())
    True
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(order)]))


def _check_seed(seed: Any, portable: bool) -> None:
    if seed is None:
        if portable:
            raise RuleError("portable=True needs seed=<an integer >= 0>: the streams derive from it")
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise RuleError(f"seed={seed!r} is not allowed; seed must be None or an integer >= 0")


@dataclass(frozen=True)
class Draw:
    """Where one parameter's values come from, as ``execute`` hands it to an adapter's writer.

    ``seed`` is the user's seed (None: the framework's own global generator; never None when
    ``portable``), ``order`` the parameter's position in the model. ``key`` is the parameter's
    stream key ``(seed, order)`` (see ``multiinit.stream``).
    """

    seed: int | None
    order: int
    portable: bool

    @property
    def key(self) -> tuple[int, int]:
        if self.seed is None:
            raise RuleError("this draw has no seed: it uses the framework's global generator")
        return (int(self.seed), int(self.order))


class Writer(Protocol):
    """What an adapter gives ``execute`` to initialize its parameters in one pass.

    ``check`` raises (a ``MultiinitError`` naming ``param.path``, the value and what is
    allowed) when ``param`` cannot be written in place, or its dtype cannot hold ``spec``'s
    law; it writes nothing. ``prepare`` draws a law that can fail (a user's ``custom``
    function, see ``needs_prepare``), validates it and returns the value to write; built-in
    laws are never prepared. ``fill`` writes ``param``: the prepared value when there is one,
    else it draws ``spec`` straight into the parameter. ``fill`` is called only after every
    ``check`` and ``prepare`` succeeded, and must not fail for a reason ``check`` could have
    found.
    """

    def check(self, param: Param, spec: Spec) -> None: ...

    def prepare(self, param: Param, spec: Spec, draw: Draw) -> Any: ...

    def fill(self, param: Param, spec: Spec, draw: Draw, prepared: Any) -> None: ...


def needs_prepare(spec: Spec) -> bool:
    """True when drawing ``spec`` runs user code that can fail (a ``custom`` law, also inside a
    mixture or a wrapper): ``execute`` draws and validates those before writing anything.

    >>> import multiinit as mi
    >>> law = mi.custom(lambda r, s, d: r.random(s), name="u")
    >>> needs_prepare(mi.normal()), needs_prepare(mi.mixture([(1.0, law)]))
    (False, True)
    """
    if isinstance(spec, Custom):
        return True
    if isinstance(spec, Mixture):
        return any(needs_prepare(s) for w, s in spec.components if w > 0)
    inner = getattr(spec, "spec", None)
    return isinstance(inner, Spec) and needs_prepare(inner)


def portable_values(
    param: Param,
    spec: Spec,
    draw: Draw,
    box: Sequence[slice] | None = None,
    write: Callable[[tuple[slice, ...], np.ndarray], None] | None = None,
) -> Any:
    """The portable values of ``param`` (or of its logical region ``box``), in logical layout,
    in the parameter's dtype (float32 for a dtype the reference does not draw); with ``write``
    they are handed over tile by tile instead (see ``multiinit.stream.draw``).

    Every adapter's portable mode writes exactly these numbers.

    >>> import multiinit as mi
    >>> kernel = Param("head.weight", LogicalView((4, 3)), "weight", order=2)
    >>> values = portable_values(kernel, mi.he_normal(), Draw(seed=0, order=2, portable=True))
    >>> values.dtype, bool((values == mi.he_normal().sample((4, 3), seed=(0, 2))).all())
    (dtype('float32'), True)
    """
    from . import stream

    dtype = param.dtype if param.dtype in ("float16", "float32", "float64") else "float32"
    return stream.draw(
        spec,
        param.logical_shape,
        draw.key,
        dtype=dtype,
        fans=_given_fans(param, spec),
        box=box,
        write=write,
        path=param.path,
    )


def execute(
    params: Sequence[Param],
    rules: Any,
    *,
    seed: int | None,
    portable: bool,
    writer: Writer,
) -> list[tuple[Param, Spec]]:
    """The shared body of every adapter's ``apply``: one pass, all or nothing, no model-sized copy.

    Plan the rules (every rule selects something, every spec fits its shape), ``check`` every
    selected parameter can be written, ``prepare`` the laws that can fail, and only then
    ``fill`` each parameter (see ``Writer``) -- built-in laws straight into it. Peak memory
    above the model is one parameter's draw, plus the prepared user laws. Returns the plan.

    >>> import multiinit as mi
    >>> from multiinit.fans import LogicalView
    >>> class Portable:  # a writer that keeps each parameter's portable values
    ...     def __init__(self): self.values = {}
    ...     def check(self, param, spec): pass
    ...     def prepare(self, param, spec, draw): return portable_values(param, spec, draw)
    ...     def fill(self, param, spec, draw, prepared):
    ...         self.values[param.path] = portable_values(param, spec, draw) if prepared is None else prepared
    >>> params = [Param("0.weight", LogicalView((4, 3)), "weight"),
    ...           Param("0.bias", LogicalView((4,)), "bias", fans=(3, 4), order=1)]
    >>> writer = Portable()
    >>> rules = {"weight": mi.he_normal(), "bias": mi.zeros()}
    >>> _ = execute(params, rules, seed=0, portable=True, writer=writer)
    >>> {path: values.shape for path, values in writer.values.items()}
    {'0.weight': (4, 3), '0.bias': (4,)}
    >>> execute(params, {"kernel": mi.he_normal(), "conv": mi.zeros()}, seed=0, portable=True, writer=writer)
    Traceback (most recent call last):
    ...
    multiinit.errors.RuleError: rule 1 ('conv' -> zeros()) matches no parameter ...
    """
    _check_seed(seed, portable)
    assignments = plan(params, rules)
    for param, spec in assignments:
        writer.check(param, spec)
    draws = [Draw(None if seed is None else int(seed), param.order, portable) for param, _ in assignments]
    prepared = {
        i: writer.prepare(param, spec, draws[i])
        for i, (param, spec) in enumerate(assignments)
        if needs_prepare(spec)
    }
    for i, (param, spec) in enumerate(assignments):
        writer.fill(param, spec, draws[i], prepared.get(i))
    return assignments
