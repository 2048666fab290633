"""The layer registry: registering, looking up (class, name, glob, MRO), bad registrations, the
layers taught out of the box, and that none of it imports a library."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

import multiinit as mi
from multiinit import layers
from multiinit.fans import Layout


@pytest.fixture(autouse=True)
def _isolated():
    with layers.isolated():
        yield


def fake(qualified: str, *bases: type) -> type:
    """A class whose qualified name is ``qualified``, standing for a library's class that is
    not imported (transformers, timm, keras-hub are not in this environment)."""
    module, _, name = qualified.rpartition(".")
    return type(name, bases or (object,), {"__module__": module, "__qualname__": name})


# --------------------------------------------------------------------------- registering and looking up


def test_register_by_class_and_look_up_by_instance_or_class() -> None:
    class MyDense:
        pass

    reg = mi.register_layer(MyDense, kind="dense", layout={"w": "in,out"}, fans_from="w")
    assert mi.lookup_layer(MyDense()) is reg and mi.lookup_layer(MyDense) is reg
    assert reg.cls is MyDense and reg.target == layers.qualified_name(MyDense) and not reg.builtin
    assert reg.kind == "dense" and reg.layout_for("w") == Layout("in,out") and reg.layout_for("b") is None
    assert reg.view("w", (4, 8)).logical_shape == (8, 4) and reg.view("b", (8,)) is None
    assert reg.fans_source("b") == "w" and reg.fans_source("w") is None
    assert reg in mi.registered_layers() and reg in mi.registered_layers(builtin=False)
    assert reg not in mi.registered_layers(builtin=True)


def test_register_by_name_without_the_library() -> None:
    reg = mi.register_layer("mylib.nn.layers.Conv1D", kind="dense", layout={"weight": "in,out"})
    Conv1D = fake("mylib.nn.layers.Conv1D")
    assert mi.lookup_layer(Conv1D()) is reg and reg.cls is None and not reg.is_glob
    assert mi.lookup_layer(fake("mylib.nn.other.Conv1D")()) is None
    assert mi.lookup_layer_class("mylib.nn.layers.Conv1D") is reg


def test_register_by_glob() -> None:
    reg = mi.register_layer("mylib.models.*.*RMSNorm", kind="norm")
    assert reg.is_glob
    assert mi.lookup_layer(fake("mylib.models.llama.modeling_llama.LlamaRMSNorm")()) is reg
    assert mi.lookup_layer(fake("mylib.models.llama.modeling_llama.LlamaRMSNormGated")()) is None
    assert mi.lookup_layer(fake("otherlib.models.llama.LlamaRMSNorm")()) is None


def test_subclasses_are_covered_and_the_nearest_class_in_the_mro_wins() -> None:
    Base = fake("mylib.Base")
    Child = fake("mylib.Child", Base)
    Grandchild = fake("mylib.sub.Grandchild", Child)
    base = mi.register_layer("mylib.Base", kind="dense")
    assert mi.lookup_layer(Grandchild()) is base
    child = mi.register_layer(Child, kind="conv")
    assert mi.lookup_layer(Grandchild()) is child and mi.lookup_layer(Base()) is base
    # a glob that names the grandchild itself beats the child's exact registration
    glob = mi.register_layer("mylib.sub.*", kind="norm")
    assert mi.lookup_layer(Grandchild()) is glob


def test_at_one_class_a_class_object_beats_its_name_which_beats_a_glob() -> None:
    Thing = fake("mylib.layers.Thing")
    glob = mi.register_layer("mylib.layers.*", kind="norm")
    assert mi.lookup_layer(Thing) is glob
    name = mi.register_layer("mylib.layers.Thing", kind="conv")
    assert mi.lookup_layer(Thing) is name
    by_class = mi.register_layer(Thing, kind="dense")
    assert mi.lookup_layer(Thing) is by_class
    mi.unregister_layer(Thing)
    assert mi.lookup_layer(Thing) is name


def test_the_most_specific_glob_wins_and_the_later_on_a_tie() -> None:
    Norm = fake("mylib.models.t5.T5LayerNorm")
    broad = mi.register_layer("mylib.*", kind="dense")
    narrow = mi.register_layer("mylib.models.*.*LayerNorm", kind="norm")
    assert mi.lookup_layer(Norm) is narrow
    # registered later but less literal: still the narrow one
    mi.register_layer("mylib.m*", kind="conv")
    assert mi.lookup_layer(Norm) is narrow
    assert broad in mi.registered_layers()
    # two globs with 16 literal characters each: the later registration wins the tie
    Other = fake("mylib.models.t5.T5Block")
    first = mi.register_layer("mylib.models.t5.*", kind="conv")
    second = mi.register_layer("mylib.models.*.T5*", kind="embedding")
    assert mi.lookup_layer(Other) is second
    first = mi.register_layer("mylib.models.t5.*", kind="conv")
    assert mi.lookup_layer(Other) is first


def test_registering_again_replaces_and_unregistering_forgets() -> None:
    Layer = fake("mylib.Layer")
    mi.register_layer("mylib.Layer", kind="dense")
    again = mi.register_layer("mylib.Layer", kind="conv")
    assert mi.lookup_layer(Layer).kind == "conv"
    assert [r for r in mi.registered_layers() if r.target == "mylib.Layer"] == [again]
    assert mi.unregister_layer("mylib.Layer") is again
    assert mi.lookup_layer(Layer) is None
    with pytest.raises(mi.SpecError, match=re.escape("'mylib.Layer' has no registration of its own")):
        mi.unregister_layer("mylib.Layer")


def test_unregistering_a_typo_names_the_closest_targets_not_every_builtin() -> None:
    mi.register_layer("mylib.Layer", kind="dense")
    with pytest.raises(mi.SpecError) as info:
        mi.unregister_layer("transformers.pytorch_utils.Conv1d")
    message = str(info.value)
    assert "closest: 'transformers.pytorch_utils.Conv1D'" in message
    assert "yours: 'mylib.Layer'" in message
    builtin = len(mi.registered_layers(builtin=True))
    assert builtin > 50 and f"{builtin} built in" in message
    assert len(message) < 400  # not the hundreds of built-in targets


def test_isolated_undoes_registrations_and_removals() -> None:
    conv1d = mi.lookup_layer_class("transformers.pytorch_utils.Conv1D")
    with layers.isolated():
        mi.unregister_layer("transformers.pytorch_utils.Conv1D")
        mi.register_layer("mylib.Extra", kind="dense")
        assert mi.lookup_layer_class("transformers.pytorch_utils.Conv1D") is None
    assert mi.lookup_layer_class("transformers.pytorch_utils.Conv1D") is conv1d
    assert mi.lookup_layer_class("mylib.Extra") is None


def test_parameter_names_may_be_globs_and_fans_from_may_map_them() -> None:
    reg = mi.register_layer(
        "mylib.Experts",
        kind="dense",
        layout={"*_proj": "batch,in,out", "down_proj": "batch,out,in", "*_bias": "batch,out"},
        fans_from={"up_bias": "up_proj", "*_bias": "down_proj"},
    )
    assert reg.layout_for("up_proj") == Layout("batch,in,out")
    assert reg.layout_for("down_proj") == Layout("batch,out,in")  # an exact key beats a glob
    assert reg.fans_source("up_bias") == "up_proj" and reg.fans_source("down_bias") == "down_proj"
    assert reg.fans_source("down_proj") is None
    assert reg.view("up_proj", (4, 16, 8)).fans == (16, 8)
    assert json.loads(json.dumps(reg.to_dict())) == {
        "target": "mylib.Experts",
        "by": "name",
        "kind": "dense",
        "layout": {"*_proj": "batch,in,out", "down_proj": "batch,out,in", "*_bias": "batch,out"},
        "fans_from": {"up_bias": "up_proj", "*_bias": "down_proj"},
        "builtin": False,
    }


def test_a_layout_that_does_not_fit_names_the_layer_and_parameter() -> None:
    reg = mi.register_layer("mylib.Dense", kind="dense", layout={"kernel": "in,out"})
    with pytest.raises(mi.ShapeError) as info:
        reg.view("kernel", (3, 3, 4))
    message = str(info.value)
    assert (
        "mylib.Dense" in message
        and "'kernel'" in message
        and "'in,out'" in message
        and "(3, 3, 4)" in message
    )


def test_registrations_are_plain_frozen_data() -> None:
    reg = mi.register_layer("mylib.Dense", kind="dense", layout={"w": "in,out"})
    with pytest.raises(AttributeError):
        reg.kind = "conv"  # type: ignore[misc]
    assert reg == mi.LayerRegistration("mylib.Dense", "dense", (("w", Layout("in,out")),))
    assert hash(reg) == hash(mi.LayerRegistration("mylib.Dense", "dense", (("w", Layout("in,out")),)))


# --------------------------------------------------------------------------- bad registrations


@pytest.mark.parametrize(
    "target, kwargs, said",
    [
        ("mylib.A", dict(kind="dense_layer"), "kind='dense_layer' is not allowed; kind must be one of dense"),
        ("mylib.A", dict(kind=None), "kind=None"),
        ("mylib.A", dict(kind="dense", layout={"weight": "in,outt"}), "layout['weight']: layout='in,outt'"),
        ("mylib.A", dict(kind="dense", layout={"weight": "out,..."}), "spatial axes but no in axis"),
        (
            "mylib.A",
            dict(kind="dense", layout="in,out"),
            "layout='in,out' is not allowed; layout must be a dict",
        ),
        ("mylib.A", dict(kind="dense", layout={3: "in,out"}), "layout key 3"),
        ("mylib.A", dict(kind="dense", layout={"": "in,out"}), "layout key ''"),
        ("mylib.A", dict(kind="dense", fans_from=3), "fans_from=3"),
        ("mylib.A", dict(kind="dense", fans_from={"b": "w*"}), "fans_from['b']='w*'"),
        ("mylib.A", dict(kind="dense", layout={"w": "out,out"}, fans_from="w"), "'out,out' has no in axis"),
        ("Conv1D", dict(kind="dense"), "cls_or_name='Conv1D' is not allowed"),
        ("*.Conv1D", dict(kind="dense"), "top-level module is spelled out"),
        ("mylib.", dict(kind="dense"), "cls_or_name='mylib.'"),
        ("my lib.A", dict(kind="dense"), "cls_or_name='my lib.A'"),
        (3, dict(kind="dense"), "cls_or_name=3"),
    ],
)
def test_bad_registrations_are_spec_errors(target, kwargs, said) -> None:
    before = mi.registered_layers()
    with pytest.raises(mi.SpecError) as info:
        mi.register_layer(target, **kwargs)
    assert said in str(info.value)
    assert mi.registered_layers() == before  # nothing half-registered


def test_kind_and_layout_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        mi.register_layer("mylib.A", "dense")  # type: ignore[misc]


def test_the_new_kinds_are_selectable() -> None:
    from multiinit.rules import LAYER_KINDS

    assert {
        "dense",
        "conv",
        "conv_transpose",
        "depthwise_conv",
        "embedding",
        "norm",
        "attention",
        "recurrent",
    } == set(LAYER_KINDS)
    assert mi.select(kind="attention").kind == frozenset({"attention"})
    assert mi.register_layer("mylib.Attention", kind="attention").kind == "attention"


# --------------------------------------------------------------------------- taught out of the box


@pytest.mark.parametrize(
    "qualified",
    [
        "transformers.models.llama.modeling_llama.LlamaRMSNorm",
        "transformers.models.mistral.modeling_mistral.MistralRMSNorm",
        "transformers.models.qwen2.modeling_qwen2.Qwen2RMSNorm",
        "transformers.models.gemma.modeling_gemma.GemmaRMSNorm",
        "transformers.models.gemma3.modeling_gemma3.Gemma3RMSNorm",
        "transformers.models.mamba2.modeling_mamba2.MambaRMSNormGated",
        "transformers.models.t5.modeling_t5.T5LayerNorm",
        "transformers.models.mt5.modeling_mt5.MT5LayerNorm",
        "transformers.models.cohere.modeling_cohere.CohereLayerNorm",
        "timm.layers.norm.RmsNorm",
        "keras_hub.src.models.llama.llama_layernorm.LlamaLayerNorm",
        "keras_hub.src.models.gemma.rms_normalization.RMSNormalization",
    ],
)
def test_the_popular_norms_are_norms(qualified) -> None:
    reg = mi.lookup_layer(fake(qualified)())
    assert reg is not None and reg.kind == "norm" and reg.builtin


def test_transformers_conv1d_is_a_dense_layer_stored_in_out() -> None:
    Conv1D = fake("transformers.pytorch_utils.Conv1D")
    reg = mi.lookup_layer(Conv1D())
    assert reg.kind == "dense" and reg.builtin and reg.layout_for("weight") == Layout("in,out")
    # GPT-2's c_fc: Conv1D(nf=512, nx=128), weight (128, 512): 128 -> 512
    assert reg.view("weight", (128, 512)).fans == (128, 512)
    assert reg.fans_source("bias") == "weight" and reg.view("bias", (512,)) is None


def test_a_subclass_of_a_taught_class_is_taught() -> None:
    RMSNorm = fake("transformers.models.llama.modeling_llama.LlamaRMSNorm")
    Mine = fake("myproject.MyNorm", RMSNorm)
    assert mi.lookup_layer(Mine()).kind == "norm"


@pytest.mark.parametrize(
    "qualified, name, shape, fans",
    [
        # Mixtral: gate_up_proj (experts 4, 2*intermediate 12, hidden 8), F.linear: 8 -> 12
        ("transformers.models.mixtral.modeling_mixtral.MixtralExperts", "gate_up_proj", (4, 12, 8), (8, 12)),
        ("transformers.models.mixtral.modeling_mixtral.MixtralExperts", "down_proj", (4, 8, 6), (6, 8)),
        ("transformers.models.qwen3_moe.modeling_qwen3_moe.Qwen3MoeExperts", "down_proj", (4, 8, 6), (6, 8)),
        # GPT-OSS: x @ w[e]: gate_up_proj (experts 4, hidden 8, 2*intermediate 12): 8 -> 12
        ("transformers.models.gpt_oss.modeling_gpt_oss.GptOssExperts", "gate_up_proj", (4, 8, 12), (8, 12)),
        # keras-hub Mixtral: einsum "th,ehm->etm": (experts 4, hidden 8, intermediate 6): 8 -> 6
        (
            "keras_hub.src.models.mixtral.mixtral_decoder.MixtralMoeExperts",
            "expert_feedforward_gate_dense",
            (4, 8, 6),
            (8, 6),
        ),
    ],
)
def test_mixture_of_experts_weights_are_batched_dense_kernels(qualified, name, shape, fans) -> None:
    reg = mi.lookup_layer(fake(qualified)())
    view = reg.view(name, shape)
    assert reg.kind == "dense" and view.batch == 1 and view.fans == fans


def test_gpt_oss_expert_biases_take_their_projection_fans() -> None:
    reg = mi.lookup_layer_class("transformers.models.gpt_oss.modeling_gpt_oss.GptOssExperts")
    assert reg.layout_for("gate_up_proj_bias") == Layout("batch,out")
    assert reg.fans_source("gate_up_proj_bias") == "gate_up_proj"
    assert reg.fans_source("down_proj_bias") == "down_proj"


@pytest.mark.parametrize(
    "qualified",
    [
        # transformers classes whose names contain LayerNorm but are encoders, not norms
        "transformers.models.wav2vec2.modeling_wav2vec2.Wav2Vec2EncoderStableLayerNorm",
        "transformers.models.hubert.modeling_hubert.HubertEncoderLayerStableLayerNorm",
        "transformers.models.roberta_prelayernorm.modeling_roberta_prelayernorm.RobertaPreLayerNormModel",
        "transformers.models.llama.modeling_llama.LlamaAttention",
        "transformers.models.llama.modeling_llama.LlamaRotaryEmbedding",
        "transformers.pytorch_utils.Conv1DX",
        # another library's class of the same name
        "mylib.models.llama.modeling_llama.LlamaRMSNorm",
    ],
)
def test_the_built_in_table_does_not_catch_other_classes(qualified) -> None:
    assert mi.lookup_layer(fake(qualified)()) is None


def test_the_built_in_table_lists_what_it_teaches() -> None:
    builtin = mi.registered_layers(builtin=True)
    targets = {r.target for r in builtin}
    assert "transformers.pytorch_utils.Conv1D" in targets
    assert "transformers.models.*.*RMSNorm" in targets
    assert "transformers.models.t5.modeling_t5.T5LayerNorm" in targets
    assert all(r.builtin and r.cls is None for r in builtin)  # by name: nothing imported
    assert {r.kind for r in builtin} == {"dense", "norm"}


# --------------------------------------------------------------------------- nothing imported


def test_registering_and_looking_up_import_no_library() -> None:
    code = textwrap.dedent(
        """
        import sys
        before = set(sys.modules)
        import multiinit as mi

        def fake(qualified):
            module, _, name = qualified.rpartition(".")
            return type(name, (object,), {"__module__": module, "__qualname__": name})

        found = [
            mi.lookup_layer(fake("transformers.pytorch_utils.Conv1D")()).kind,
            mi.lookup_layer(fake("transformers.models.llama.modeling_llama.LlamaRMSNorm")()).kind,
            mi.lookup_layer(fake("timm.layers.norm.RmsNorm")()).kind,
            mi.lookup_layer(fake("keras_hub.src.models.llama.llama_layernorm.LlamaLayerNorm")()).kind,
        ]
        mi.register_layer("transformers.models.bert.modeling_bert.BertSelfAttention", kind="attention")
        mi.register_layer("keras_hub.src.layers.Thing", kind="dense", layout={"kernel": "...,in,out"})
        print(mi.registered_layers()[-1].target)
        new = set(sys.modules) - before
        roots = {"transformers", "timm", "keras_hub", "torch", "keras", "tensorflow", "jax", "flax",
                 "mxnet", "scipy"}
        print(found, sorted(m for m in new if m.split(".")[0] in roots))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [
        "keras_hub.src.layers.Thing",
        "['dense', 'norm', 'norm', 'norm'] []",
    ]


def test_docstring_examples_of_the_registry() -> None:
    import doctest

    result = doctest.testmod(layers, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 10 and result.failed == 0
