"""Teaching multiinit a layer class: its kind, the layout of its parameters, where a bias's fans
come from -- and the popular layers taught out of the box.

A registration is plain data (``LayerRegistration``, a frozen dataclass), checked when it is
made. It names its class either by the class object or by its qualified name
``"module.path.ClassName"`` (or a glob of such names), so a library's layers are taught
without importing the library: ``lookup`` compares names of classes that already exist.
Nothing here imports a framework or a library.

    >>> import multiinit as mi
    >>> reg = mi.lookup_layer_class("transformers.pytorch_utils.Conv1D")
    >>> reg.kind, str(reg.layout_for("weight")), reg.view("weight", (128, 512)).fans
    ('dense', 'in,out', (128, 512))

How an adapter uses it (in its model walker): ``reg = lookup_layer(layer)``; when ``reg`` is
not None, the layer's kind is ``reg.kind``, a parameter's view is ``reg.view(name, shape)``
(None: the adapter's own default for that parameter), and a parameter without fans of its own
takes them from the parameter ``reg.fans_source(name)`` names (None: the adapter's default,
its weight/kernel).
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ShapeError, SpecError
from .fans import Layout, LogicalView

__all__ = [
    "LayerRegistration",
    "register_layer",
    "unregister_layer",
    "registered_layers",
    "lookup_layer",
    "lookup_layer_class",
    "qualified_name",
    "isolated",
]

_GLOB = set("*?[")


def qualified_name(cls: type) -> str:
    """``f"{cls.__module__}.{cls.__qualname__}"``: the name registrations match.

    >>> qualified_name(LayerRegistration)
    'multiinit.layers.LayerRegistration'
    """
    return f"{cls.__module__}.{cls.__qualname__}"


def _literal_length(pattern: str) -> int:
    """How much of a glob is literal: a longer literal part is a more specific pattern."""
    length, inside = 0, False
    for ch in pattern:
        if ch == "[":
            inside = True
        elif ch == "]" and inside:
            inside = False
        elif not inside and ch not in "*?":
            length += 1
    return length


@dataclass(frozen=True)
class LayerRegistration:
    """What multiinit knows about a layer class (see ``register_layer``).

    ``target`` is the class's qualified name, or the name or glob it was registered under;
    ``cls`` the class object when it was registered by class (matched first); ``layout`` the
    axis roles of parameters, as ``(name or glob, Layout)`` pairs; ``fans_from`` the parameter
    a parameter without fans of its own takes them from, as a name or as ``(name or glob,
    source)`` pairs; ``builtin`` is True for the layers multiinit teaches itself.
    """

    target: str
    kind: str
    layout: tuple[tuple[str, Layout], ...] = ()
    fans_from: str | tuple[tuple[str, str], ...] | None = None
    cls: type | None = field(default=None, repr=False)
    builtin: bool = False

    @property
    def is_glob(self) -> bool:
        """True when ``target`` is a glob of qualified names."""
        return self.cls is None and bool(_GLOB & set(self.target))

    def layout_for(self, name: str) -> Layout | None:
        """The layout of parameter ``name``: an exact key first, then the first glob that matches.

        >>> register = LayerRegistration("x.Experts", "dense", (("*_proj", Layout("batch,out,in")),))
        >>> register.layout_for("down_proj"), register.layout_for("bias")
        (Layout('batch,out,in'), None)
        """
        for key, layout in self.layout:
            if key == name:
                return layout
        for key, layout in self.layout:
            if fnmatch.fnmatchcase(name, key):
                return layout
        return None

    def view(self, name: str, shape: tuple[int, ...]) -> LogicalView | None:
        """The logical view of parameter ``name`` of native ``shape``; None when the
        registration gives no layout for it (the adapter's own default applies).

        Raises ``ShapeError`` naming the layer, the parameter, its layout and its shape when the
        layout does not fit.
        """
        layout = self.layout_for(name)
        if layout is None:
            return None
        try:
            return layout.view(shape)
        except ShapeError as e:
            raise ShapeError(f"{self.target} parameter {name!r}: {e}") from None

    def fans_source(self, name: str) -> str | None:
        """The parameter whose fans ``name`` takes when it has none of its own (a bias), or
        None for the adapter's default (the layer's weight/kernel)."""
        if self.fans_from is None or isinstance(self.fans_from, str):
            return None if self.fans_from == name else self.fans_from
        for key, source in self.fans_from:
            if key == name:
                return source
        for key, source in self.fans_from:
            if fnmatch.fnmatchcase(name, key):
                return source
        return None

    def matches(self, cls: type) -> bool:
        """True when this registration names ``cls`` itself (not one of its bases)."""
        if self.cls is not None:
            return cls is self.cls
        name = qualified_name(cls)
        return fnmatch.fnmatchcase(name, self.target) if self.is_glob else name == self.target

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (what ``registered_layers`` lists).

        >>> lookup_layer_class("transformers.pytorch_utils.Conv1D").to_dict()["layout"]
        {'weight': 'in,out'}
        """
        fans_from = self.fans_from if not isinstance(self.fans_from, tuple) else dict(self.fans_from)
        return {
            "target": self.target,
            "by": "class" if self.cls is not None else ("glob" if self.is_glob else "name"),
            "kind": self.kind,
            "layout": {key: layout.text for key, layout in self.layout},
            "fans_from": fans_from,
            "builtin": self.builtin,
        }


# --------------------------------------------------------------------------- the registry

_BY_CLASS: dict[type, LayerRegistration] = {}
_BY_NAME: dict[str, LayerRegistration] = {}
_GLOBS: dict[str, LayerRegistration] = {}
_ORDER: list[tuple[str, Any]] = []  # registration order, for listing and for ties between globs
_CACHE: dict[type, LayerRegistration | None] = {}


def _where(target: Any) -> str:
    shown = qualified_name(target) if isinstance(target, type) else repr(target)
    return f"register_layer({shown})"


def _check_target(target: Any) -> tuple[str, Any]:
    if isinstance(target, type):
        return "class", target
    if not isinstance(target, str):
        raise SpecError(
            f"register_layer: cls_or_name={target!r} is not allowed; it must be a class or its qualified "
            "name 'module.path.ClassName' (globs allowed after the top-level module, e.g. "
            "'transformers.models.*.*RMSNorm')"
        )
    root, _, rest = target.partition(".")
    if not root.isidentifier() or not rest or any(c.isspace() for c in target) or target.endswith("."):
        raise SpecError(
            f"register_layer: cls_or_name={target!r} is not allowed; a name must be a qualified class name "
            "'module.path.ClassName' whose top-level module is spelled out (globs allowed after it, e.g. "
            "'transformers.models.*.*RMSNorm')"
        )
    return ("glob" if _GLOB & set(target) else "name"), target


def _check_kind(where: str, kind: Any) -> str:
    from .rules import LAYER_KINDS

    if not isinstance(kind, str) or kind not in LAYER_KINDS:
        raise SpecError(
            f"{where}: kind={kind!r} is not allowed; kind must be one of {', '.join(LAYER_KINDS)}"
        )
    return kind


def _check_name(where: str, what: str, key: Any) -> str:
    if not isinstance(key, str) or not key.strip() or key != key.strip():
        raise SpecError(
            f"{where}: {what} key {key!r} is not allowed; keys are parameter names (or globs of them), "
            "such as 'weight' or '*_proj'"
        )
    return key


def _check_layout(where: str, layout: Any) -> tuple[tuple[str, Layout], ...]:
    if layout is None:
        return ()
    if not isinstance(layout, Mapping):
        raise SpecError(
            f"{where}: layout={layout!r} is not allowed; layout must be a dict of parameter name -> axis "
            "roles, e.g. {'weight': 'in,out'}"
        )
    pairs = []
    for key, value in layout.items():
        _check_name(where, "layout", key)
        try:
            parsed = Layout(value)
        except SpecError as e:
            raise SpecError(f"{where}: layout[{key!r}]: {e}") from None
        pairs.append((key, parsed))
    return tuple(pairs)


def _check_fans_from(
    where: str, fans_from: Any, layout: tuple[tuple[str, Layout], ...]
) -> str | tuple[tuple[str, str], ...] | None:
    if fans_from is None:
        return None
    if isinstance(fans_from, str):
        sources = {_check_name(where, "fans_from", fans_from)}
        normalized: str | tuple[tuple[str, str], ...] = fans_from
    elif isinstance(fans_from, Mapping):
        pairs = []
        for key, source in fans_from.items():
            _check_name(where, "fans_from", key)
            if not isinstance(source, str) or not source.strip() or _GLOB & set(source):
                raise SpecError(
                    f"{where}: fans_from[{key!r}]={source!r} is not allowed; it must name one parameter "
                    "of the layer (no glob), e.g. 'weight'"
                )
            pairs.append((key, source))
        sources = {source for _, source in pairs}
        normalized = tuple(pairs)
    else:
        raise SpecError(
            f"{where}: fans_from={fans_from!r} is not allowed; fans_from must be a parameter name "
            "('weight') or a dict of parameter name -> parameter name ({'bias_ih': 'weight_ih'})"
        )
    table = LayerRegistration("", "dense", layout)
    for source in sorted(sources):
        given = table.layout_for(source)
        if given is not None and not given.has_fans:
            raise SpecError(
                f"{where}: fans_from names {source!r}, whose layout {given.text!r} has no in axis, so it "
                "has no fans to give"
            )
    return normalized


def register_layer(
    cls_or_name: type | str,
    *,
    kind: str,
    layout: Mapping[str, str | Layout] | None = None,
    fans_from: str | Mapping[str, str] | None = None,
) -> LayerRegistration:
    """Teach multiinit a layer class: its kind, its parameters' layouts, its biases' fans.

    ``cls_or_name`` is the class, or its qualified name ``"module.path.ClassName"``, or a glob
    of such names (``"transformers.models.*.*RMSNorm"``): a name needs no import of the
    library. ``kind`` is one of ``rules.LAYER_KINDS``; it is what ``select(kind=...)`` and the
    presets see. ``layout`` maps parameter names (or globs of them) to axis roles (see
    ``fans.Layout``: ``"in,out"``, ``"...,in,out"``, ``"in,out,out"``, ``"batch,out,in"``);
    parameters it leaves out keep the adapter's default for the framework. ``fans_from``
    names the parameter whose fans a parameter without fans of its own (a bias, a per-head
    bias) takes, or maps such parameters to it; by default the adapter's (the layer's
    weight/kernel).

    Registering the same class or name again replaces the registration. Subclasses are
    covered (``lookup_layer`` walks the MRO). A bad registration is a ``SpecError``.

    >>> import multiinit as mi
    >>> with mi.layers.isolated():
    ...     reg = mi.register_layer("mylib.layers.Dense", kind="dense", layout={"w": "in,out"}, fans_from="w")
    ...     reg.view("w", (4, 8)).logical_shape
    (8, 4)
    """
    where = _where(cls_or_name)
    by, key = _check_target(cls_or_name)
    kind = _check_kind(where, kind)
    pairs = _check_layout(where, layout)
    source = _check_fans_from(where, fans_from, pairs)
    target = qualified_name(key) if by == "class" else key
    registration = LayerRegistration(
        target, kind, pairs, source, key if by == "class" else None, builtin=_BUILTIN_PHASE
    )
    _store(by, key, registration)
    return registration


def _table(by: str) -> dict[Any, LayerRegistration]:
    tables: dict[str, dict[Any, LayerRegistration]] = {"class": _BY_CLASS, "name": _BY_NAME, "glob": _GLOBS}
    return tables[by]


def _store(by: str, key: Any, registration: LayerRegistration) -> None:
    table = _table(by)
    if key in table:
        _ORDER.remove((by, key))
    table[key] = registration
    _ORDER.append((by, key))
    _CACHE.clear()


def unregister_layer(cls_or_name: type | str) -> LayerRegistration:
    """Forget the registration made for exactly this class or name; returns it.

    A class or name with no registration of its own is a ``SpecError`` (a typo would
    otherwise pass in silence) naming the closest registered targets and the user's own.

    >>> import multiinit as mi
    >>> with mi.layers.isolated():
    ...     _ = mi.register_layer("mylib.Dense", kind="dense", layout={"w": "in,out"})
    ...     mi.unregister_layer("mylib.Dense").kind
    'dense'
    >>> with mi.layers.isolated():
    ...     _ = mi.register_layer("mylib.Dense", kind="dense", layout={"w": "in,out"})
    ...     mi.unregister_layer("mylib.Dence")
    Traceback (most recent call last):
    ...
    multiinit.errors.SpecError: unregister_layer: 'mylib.Dence' has no registration of its own; closest: 'mylib.Dense'; yours: ...'mylib.Dense'; ...
    """  # noqa: E501 - a doctest output line, as printed
    by, key = _check_target(cls_or_name)
    table = _table(by)
    if key not in table:
        # The built-in registrations number in the hundreds: name the likely ones, not all.
        every = [r.target for r in registered_layers()]
        closest = difflib.get_close_matches(key if isinstance(key, str) else qualified_name(key), every, n=3)
        yours = [r.target for r in registered_layers(builtin=False)]
        raise SpecError(
            f"unregister_layer: {cls_or_name!r} has no registration of its own; "
            f"closest: {', '.join(map(repr, closest)) or 'none'}; "
            f"yours: {', '.join(map(repr, yours)) or 'none'}; "
            f"{len(every) - len(yours)} built in (multiinit.registered_layers(builtin=True))"
        )
    _ORDER.remove((by, key))
    _CACHE.clear()
    return table.pop(key)


def registered_layers(builtin: bool | None = None) -> tuple[LayerRegistration, ...]:
    """Every registration, in the order made (multiinit's own first); ``builtin=True`` or
    ``False`` lists only those multiinit teaches, or only the user's.

    >>> any(r.target == "transformers.pytorch_utils.Conv1D" for r in registered_layers(builtin=True))
    True
    """
    out = tuple(_table(by)[key] for by, key in _ORDER)
    return out if builtin is None else tuple(r for r in out if r.builtin == builtin)


def _lookup_class(cls: type) -> LayerRegistration | None:
    if cls in _CACHE:
        return _CACHE[cls]
    found = None
    for klass in getattr(cls, "__mro__", (cls,)):
        if klass is object:
            continue
        found = _BY_CLASS.get(klass)
        if found is not None:
            break
        name = qualified_name(klass)
        found = _BY_NAME.get(name)
        if found is not None:
            break
        best, best_rank = None, None
        for position, (by, key) in enumerate(_ORDER):
            if by == "glob" and fnmatch.fnmatchcase(name, key):
                rank = (_literal_length(key), position)
                if best_rank is None or rank > best_rank:
                    best, best_rank = _GLOBS[key], rank
        if best is not None:
            found = best
            break
    with contextlib.suppress(TypeError):  # pragma: no cover - an unhashable class object
        _CACHE[cls] = found
    return found


def lookup_layer(layer: Any) -> LayerRegistration | None:
    """The registration that covers ``layer`` (an instance, or a class), or None.

    The class's MRO is walked from the class itself to its bases; at each class, a
    registration of the class object wins, then one of its exact qualified name, then the
    most specific glob (the longest literal part; the later one on a tie). The first class in
    the MRO with any registration decides, so a registration of a subclass beats one of its
    base. Nothing is imported.

    >>> class Conv1D:  # stands for transformers' class, which is not imported here
    ...     pass
    >>> Conv1D.__module__ = "transformers.pytorch_utils"
    >>> lookup_layer(Conv1D()).kind
    'dense'
    """
    cls = layer if isinstance(layer, type) else type(layer)
    return _lookup_class(cls)


def lookup_layer_class(name: str) -> LayerRegistration | None:
    """The registration a class of qualified ``name`` would get, for a class with no bases
    (what ``lookup_layer`` finds at the first step of the MRO).

    >>> lookup_layer_class("transformers.models.llama.modeling_llama.LlamaRMSNorm").kind
    'norm'
    """
    if not isinstance(name, str):
        raise SpecError(
            f"lookup_layer_class: name={name!r} is not allowed; it must be a qualified class name"
        )
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    best, best_rank = None, None
    for position, (by, key) in enumerate(_ORDER):
        if by == "glob" and fnmatch.fnmatchcase(name, key):
            rank = (_literal_length(key), position)
            if best_rank is None or rank > best_rank:
                best, best_rank = _GLOBS[key], rank
    return best


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """A ``with`` block whose registrations (and removals) are undone when it ends.

    >>> with isolated():
    ...     _ = unregister_layer("transformers.pytorch_utils.Conv1D")
    >>> lookup_layer_class("transformers.pytorch_utils.Conv1D") is not None
    True
    """
    tables: tuple[dict[Any, LayerRegistration], ...] = (_BY_CLASS, _BY_NAME, _GLOBS)
    saved, saved_order = tuple(dict(table) for table in tables), list(_ORDER)
    try:
        yield
    finally:
        for table, copy in zip(tables, saved, strict=True):
            table.clear()
            table.update(copy)
        _ORDER[:] = saved_order
        _CACHE.clear()


# --------------------------------------------------------------------------- taught out of the box
#
# By qualified name, so none of these libraries is imported; a name that a library's version
# does not have simply matches nothing. Each entry was checked against the library's source
# (transformers 5.23, timm 1.0.31, keras-hub 0.32): the class's parameters, their shapes and
# how its forward uses them. Layers that subclass a framework's own (nn.Linear, nn.LayerNorm,
# keras.layers.Embedding, ...) are known to the adapters already and are not listed.

_BUILTIN_PHASE = True

_TRANSFORMERS = "transformers.models"

# Hugging Face: GPT-2's (and OpenAI GPT's, ...) Conv1D is a dense layer stored (in, out).
register_layer(
    "transformers.pytorch_utils.Conv1D", kind="dense", layout={"weight": "in,out"}, fans_from="weight"
)

# Every transformers class named ...RMSNorm or ...RMSNormGated is a norm with a 1-D weight (or
# none): checked on all 200-odd of them. "*LayerNorm" is not safe as a glob (it also names
# encoders, e.g. Wav2Vec2EncoderStableLayerNorm), so those are listed one by one below.
register_layer(f"{_TRANSFORMERS}.*.*RMSNorm", kind="norm")
register_layer(f"{_TRANSFORMERS}.*.*RMSNormGated", kind="norm")

# T5LayerNorm-style norms (nn.Module, 1-D weight and maybe bias) that do not subclass nn.LayerNorm.
for _package, _module, _name in (
    ("t5", "modeling_t5", "T5LayerNorm"),
    ("mt5", "modeling_mt5", "MT5LayerNorm"),
    ("umt5", "modeling_umt5", "UMT5LayerNorm"),
    ("longt5", "modeling_longt5", "LongT5LayerNorm"),
    ("switch_transformers", "modeling_switch_transformers", "SwitchTransformersLayerNorm"),
    ("pop2piano", "modeling_pop2piano", "Pop2PianoLayerNorm"),
    ("udop", "modeling_udop", "UdopLayerNorm"),
    ("pix2struct", "modeling_pix2struct", "Pix2StructLayerNorm"),
    ("kosmos2_5", "modeling_kosmos2_5", "Kosmos2_5LayerNorm"),
    ("cohere", "modeling_cohere", "CohereLayerNorm"),
    ("cohere2", "modeling_cohere2", "Cohere2LayerNorm"),
    ("cohere2_moe", "modeling_cohere2_moe", "Cohere2MoeLayerNorm"),
    ("cohere_compass", "modeling_cohere_compass", "CohereCompassLayerNorm"),
    ("deberta", "modeling_deberta", "DebertaLayerNorm"),
    ("imagegpt", "modeling_imagegpt", "ImageGPTLayerNorm"),
    ("cpmant", "modeling_cpmant", "CpmAntLayerNorm"),
    ("vitdet", "modeling_vitdet", "VitDetLayerNorm"),
    ("esm", "modeling_esmfold", "EsmFoldLayerNorm"),
    ("moonshine_streaming", "modeling_moonshine_streaming", "MoonshineStreamingLayerNorm"),
    ("olmo", "modeling_olmo", "OlmoLayerNorm"),
    ("xlstm", "modeling_xlstm", "xLSTMMultiHeadLayerNorm"),
    ("mobilebert", "modeling_mobilebert", "NoNorm"),
    # Other plain norms with a 1-D scale (checked on transformers 5.24 by building every
    # class whose name ends in Norm): a cumulative group norm, two variance norms, a QK norm.
    ("gemma3n", "modeling_gemma3n", "Gemma3nAudioCumulativeGroupNorm"),
    ("gradium_phonon_tts", "modeling_gradium_phonon_tts", "GradiumPhononTTSTimestepNorm"),
    ("pocket_tts", "modeling_pocket_tts", "PocketTTSTimestepNorm"),
    ("zaya", "modeling_zaya", "ZayaQKNorm"),
):
    register_layer(f"{_TRANSFORMERS}.{_package}.{_module}.{_name}", kind="norm")

# Mixture-of-experts blocks hold every expert's weight in one 3-D parameter. These use
# F.linear(x, w[e]): (experts, out, in).
_EXPERTS_OUT_IN = (
    ("afmoe", "AfmoeExperts"),
    ("axk1", "AXK1Experts"),
    ("axk2", "AXK2Experts"),
    ("bailing_hybrid", "BailingHybridExperts"),
    ("beam", "BeamExperts"),
    ("cohere2_moe", "Cohere2MoeExperts"),
    ("deepseek_ocr2", "DeepseekOcr2TextExperts"),
    ("deepseek_v2", "DeepseekV2Experts"),
    ("deepseek_v3", "DeepseekV3Experts"),
    ("deepseek_v32", "DeepseekV32Experts"),
    ("deepseek_v4", "DeepseekV4Experts"),
    ("diffusion_gemma", "DiffusionGemmaTextExperts"),
    ("dots1", "Dots1Experts"),
    ("dots3_note", "Dots3NoteExperts"),
    ("ernie4_5_moe", "Ernie4_5_MoeExperts"),
    ("ernie4_5_vl_moe", "Ernie4_5_VLMoeMoeExperts"),
    ("exaone_moe", "ExaoneMoeExperts"),
    ("flex_olmo", "FlexOlmoExperts"),
    ("flint", "FlintExperts"),
    ("gemma4", "Gemma4TextExperts"),
    ("glm4_moe", "Glm4MoeExperts"),
    ("glm4_moe_lite", "Glm4MoeLiteExperts"),
    ("glm4v_moe", "Glm4vMoeTextExperts"),
    ("glm5_next", "Glm5NextTextExperts"),
    ("glm_moe_dsa", "GlmMoeDsaExperts"),
    ("granitemoe", "GraniteMoeExperts"),
    ("granitemoe_swa", "GraniteMoeSWAExperts"),
    ("granitemoehybrid", "GraniteMoeHybridExperts"),
    ("granitemoeshared", "GraniteMoeSharedExperts"),
    ("hunyuan_v1_moe", "HunYuanMoEV1Experts"),
    ("hy_v3", "HYV3Experts"),
    ("hy_v4", "HYV4Experts"),
    ("inkling", "InklingExperts"),
    ("inkling2", "Inkling2Experts"),
    ("jamba", "JambaExperts"),
    ("kimi_linear", "KimiLinearExperts"),
    ("kolibri1", "Kolibri1Experts"),
    ("laguna", "LagunaExperts"),
    ("lfm2_moe", "Lfm2MoeExperts"),
    ("mellum", "MellumExperts"),
    ("mimo_v2_flash", "MiMoV2FlashExperts"),
    ("minimax", "MiniMaxExperts"),
    ("minimax_m2", "MiniMaxM2Experts"),
    ("minimax_m3_vl", "MiniMaxM3VLExperts"),
    ("mistral4", "Mistral4Experts"),
    ("mistral_large4", "MistralLarge4TextExperts"),
    ("mixtral", "MixtralExperts"),
    ("muse_spark", "MuseSparkExperts"),
    ("olmoe", "OlmoeExperts"),
    ("phimoe", "PhimoeExperts"),
    ("qwen2_moe", "Qwen2MoeExperts"),
    ("qwen3_5_moe", "Qwen3_5MoeExperts"),
    ("qwen3_moe", "Qwen3MoeExperts"),
    ("qwen3_next", "Qwen3NextExperts"),
    ("qwen3_omni_moe", "Qwen3OmniMoeThinkerTextExperts"),
    ("qwen3_omni_moe", "Qwen3OmniMoeTalkerTextExperts"),
    ("qwen3_vl_moe", "Qwen3VLMoeTextExperts"),
    ("qwen4_exp", "Qwen4ExpTextExperts"),
    ("solar_open", "SolarOpenExperts"),
    ("step3p7", "Step3p7Experts"),
    ("unlimited_ocr", "UnlimitedOcrTextExperts"),
    ("zaya", "ZayaExperts"),
    ("longcat_flash", "LongcatFlashExperts"),
    ("nemotron_h", "NemotronHExperts"),
)
for _package, _name in _EXPERTS_OUT_IN:
    register_layer(
        f"{_TRANSFORMERS}.{_package}.modeling_{_package}.{_name}",
        kind="dense",
        layout={"gate_up_proj": "batch,out,in", "up_proj": "batch,out,in", "down_proj": "batch,out,in"},
    )
register_layer(
    f"{_TRANSFORMERS}.jetmoe.modeling_jetmoe.JetMoeParallelExperts",
    kind="dense",
    layout={"weight": "batch,out,in"},
)
# These compute x @ w[e]: (experts, in, out), and a per-expert bias (experts, out).
for _package, _name in (
    ("gpt_oss", "GptOssExperts"),
    ("openai_privacy_filter", "OpenAIPrivacyFilterExperts"),
    ("aria", "AriaExperts"),
    ("llama4", "Llama4TextExperts"),
):
    register_layer(
        f"{_TRANSFORMERS}.{_package}.modeling_{_package}.{_name}",
        kind="dense",
        layout={
            "gate_up_proj": "batch,in,out",
            "down_proj": "batch,in,out",
            "gate_up_proj_bias": "batch,out",
            "down_proj_bias": "batch,out",
        },
        fans_from={"gate_up_proj_bias": "gate_up_proj", "down_proj_bias": "down_proj"},
    )

# timm: norms that are plain nn.Modules (its LayerNorm, GroupNorm, BatchNormAct2d, ... subclass
# torch's and are known already). Subclasses (RmsNormAct, EvoNorm2dS0a, ...) follow by MRO.
for _module, _names in (
    (
        "norm",
        (
            "RmsNorm",
            "RmsNorm2d",
            "RmsNormFp32",
            "RmsNorm2dFp32",
            "SimpleNorm",
            "SimpleNorm2d",
            "SimpleNormFp32",
            "SimpleNorm2dFp32",
        ),
    ),
    ("evo_norm", ("EvoNorm2dB0", "EvoNorm2dB1", "EvoNorm2dB2", "EvoNorm2dS0", "EvoNorm2dS1", "EvoNorm2dS2")),
    ("filter_response_norm", ("FilterResponseNormAct2d", "FilterResponseNormTlu2d")),
    ("grn", ("GlobalResponseNorm",)),
):
    for _name in _names:
        register_layer(f"timm.layers.{_module}.{_name}", kind="norm")

# keras-hub: its models' own norm layers (a 1-D "scale", T5's "weight"), plain keras Layers.
for _path in (
    "layers.modeling.rms_normalization.RMSNormalization",
    "models.gemma.rms_normalization.RMSNormalization",
    "models.gemma3.gemma3_layers.RMSNormalization",
    "models.gemma4.gemma4_layers.RMSNormalization",
    "models.gemma3n.rms_normalization.Gemma3nRMSNorm",
    "models.stable_diffusion_3.mmdit.RMSNormalization",
    "models.llama.llama_layernorm.LlamaLayerNorm",
    "models.mistral.mistral_layer_norm.MistralLayerNormalization",
    "models.mixtral.mixtral_layer_norm.MixtralLayerNormalization",
    "models.phi3.phi3_layernorm.Phi3LayerNorm",
    "models.qwen.qwen_layernorm.QwenLayerNorm",
    "models.qwen_moe.qwen_moe_layernorm.QwenMoeLayerNorm",
    "models.qwen3.qwen3_layernorm.Qwen3LayerNorm",
    "models.qwen3_moe.qwen3_moe_layernorm.Qwen3MoeLayerNorm",
    "models.qwen3_5.qwen3_5_layers.Qwen3_5LayerNorm",
    "models.qwen3_5.qwen3_5_layers.Qwen3_5RMSNormGated",
    "models.gpt_oss.gpt_oss_layer_norm.GptOssLayerNormalization",
    "models.t5.t5_layer_norm.T5LayerNorm",
    "models.roformer_v2.roformer_v2_attention.RoformerNorm",
    "models.mobilenetv5.mobilenetv5_layers.RmsNorm2d",
    "models.edrec.edrec_layers.EdRecRMSNormalization",
):
    register_layer(f"keras_hub.src.{_path}", kind="norm")

# keras-hub's mixture-of-experts blocks: einsum "th,ehm->etm", so (experts, in, out).
for _path in (
    "models.mixtral.mixtral_decoder.MixtralMoeExperts",
    "models.qwen_moe.qwen_moe_decoder.QwenMoeExperts",
    "models.qwen3_moe.qwen3_moe_decoder.Qwen3MoeExperts",
    "models.qwen3_5_moe.qwen3_5_moe_decoder.Qwen3_5MoeExperts",
):
    register_layer(f"keras_hub.src.{_path}", kind="dense", layout={"expert_feedforward_*": "batch,in,out"})
register_layer(
    "keras_hub.src.models.gpt_oss.gpt_oss_decoder.GptOssExperts",
    kind="dense",
    layout={
        "gate_up_proj": "batch,in,out",
        "down_proj": "batch,in,out",
        "gate_up_proj_bias": "batch,out",
        "down_proj_bias": "batch,out",
    },
    fans_from={"gate_up_proj_bias": "gate_up_proj", "down_proj_bias": "down_proj"},
)
register_layer(
    "keras_hub.src.models.gemma4.gemma4_moe.Gemma4MoEBlock",
    kind="dense",
    layout={"gate_proj": "batch,in,out", "up_proj": "batch,in,out", "down_proj": "batch,in,out"},
)

_BUILTIN_PHASE = False
del _package, _module, _name, _names, _path
