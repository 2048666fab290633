"""plan_params: what apply would do to each parameter, on hand-made Params (the neutral part of
``multiinit.plan``; walking real models is each adapter's ``params_of``, tested with them)."""

from __future__ import annotations

import json
import math

import pytest

import multiinit as mi
from multiinit import layers, rules
from multiinit.fans import SPATIAL_IN_OUT, LogicalView
from multiinit.rules import Param


def fake(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")
    return type(name, (object,), {"__module__": module, "__qualname__": name})


Conv1D = fake("transformers.pytorch_utils.Conv1D")
LlamaRMSNorm = fake("transformers.models.llama.modeling_llama.LlamaRMSNorm")
Mystery = fake("myproject.blocks.Mystery")


def gpt2_like() -> list[Param]:
    """A GPT-2 MLP block as a torch adapter that uses the registry describes it."""
    c_fc, norm, mystery = Conv1D(), LlamaRMSNorm(), Mystery()
    reg = layers.lookup_layer(c_fc)
    weight = reg.view("weight", (128, 512))
    params = [
        Param("h.0.mlp.c_fc.weight", weight, "weight", layer=c_fc, kind=reg.kind, order=0),
        Param(
            "h.0.mlp.c_fc.bias",
            LogicalView((512,)),
            "bias",
            layer=c_fc,
            fans=weight.fans,
            kind=reg.kind,
            order=1,
        ),
        Param(
            "h.0.ln.weight",
            LogicalView((128,)),
            "weight",
            layer=norm,
            kind=layers.lookup_layer(norm).kind,
            order=2,
        ),
        # a layer nobody taught multiinit: the adapter reads its (16, 128) as (out, in)
        Param("h.0.mystery.proj", LogicalView((16, 128)), "proj", layer=mystery, kind=None, order=3),
        Param("h.0.mystery.scale", LogicalView((16,)), "scale", layer=mystery, kind=None, order=4),
    ]
    return params


def test_every_parameter_gets_its_rule_spec_kind_and_fans() -> None:
    torch_default = mi.kaiming_uniform(a=math.sqrt(5))
    plan = mi.plan_params(
        gpt2_like(),
        [
            (mi.select(kind="dense", role="weight"), torch_default),
            (mi.select(kind="dense", role="bias"), None),
            ("proj", mi.he_normal()),
            ("scale", mi.ones()),
        ],
    )
    rows = {row.path: row for row in plan}
    assert [row.path for row in plan] == [p.path for p in gpt2_like()]
    c_fc = rows["h.0.mlp.c_fc.weight"]
    # GPT-2's c_fc is read 128 -> 512, so kaiming's bound is 1/sqrt(128), not 1/sqrt(512)
    assert (c_fc.kind, c_fc.rule, c_fc.spec, c_fc.fans, c_fc.known, c_fc.guessed) == (
        "dense",
        0,
        torch_default,
        (128, 512),
        True,
        False,
    )
    assert (c_fc.shape, c_fc.logical_shape, c_fc.layer) == ((128, 512), (512, 128), "Conv1D")
    bias = rows["h.0.mlp.c_fc.bias"]
    assert (bias.rule, bias.spec, bias.fans) == (1, None, (128, 512))  # left as it is
    norm = rows["h.0.ln.weight"]
    assert (norm.kind, norm.rule, norm.spec, norm.fans) == ("norm", None, None, None)  # selected by no rule
    proj = rows["h.0.mystery.proj"]
    assert (proj.kind, proj.known, proj.fans, proj.guessed) == ("unknown", False, (128, 16), True)
    scale = rows["h.0.mystery.scale"]
    assert (scale.spec, scale.uses_fans, scale.guessed, scale.fans) == (mi.ones(), False, False, None)
    assert plan.guesses == [proj] and plan.unmatched == []
    assert all(row.problem is None for row in plan)


def test_the_table_reads_as_a_table() -> None:
    plan = mi.plan_params(
        gpt2_like(),
        [
            ("weight", mi.kaiming_uniform(a=math.sqrt(5))),
            ("proj", mi.he_normal()),
            ("*.bias", mi.normal(std=0.02)),
        ],
    )
    lines = str(plan).splitlines()
    assert lines[0].split() == [
        "path",
        "layer",
        "kind",
        "shape",
        "logical",
        "fans",
        "in",
        "->",
        "out",
        "rule",
        "spec",
    ]
    c_fc = next(line for line in lines if line.startswith("h.0.mlp.c_fc.weight"))
    assert "Conv1D" in c_fc and "dense" in c_fc and "128 -> 512" in c_fc and "kaiming_uniform" in c_fc
    bias = next(line for line in lines if line.startswith("h.0.mlp.c_fc.bias"))
    assert "(128 -> 512)" in bias  # shown, but the normal law does not use them
    proj = next(line for line in lines if line.startswith("h.0.mystery.proj"))
    assert "unknown" in proj and "128 -> 16 ?" in proj
    assert "not selected" in next(line for line in lines if line.startswith("h.0.mystery.scale"))
    assert any("fans guessed" in line and "register_layer" in line for line in lines)
    # the ln weight: the "weight" rule selects it, and kaiming cannot fill a 1-D tensor
    ln = next(line for line in lines if line.startswith("h.0.ln.weight"))
    assert "!!" in ln and "fewer than 2 dimensions" in ln
    assert repr(plan) == "<Plan of 5 parameters, 1 guessed, 0 unmatched rules>"


def test_problems_and_unmatched_rules_are_listed_not_raised() -> None:
    plan = mi.plan_params(
        gpt2_like(),
        [
            ("*.c_fc.weight", mi.eye()),
            ("h.0.ln.weight", mi.he_normal()),
            ("*.typo", mi.zeros()),
            (mi.select(kind="embedding", optional=True), mi.normal()),
        ],
    )
    rows = {row.path: row for row in plan}
    assert rows["h.0.mlp.c_fc.weight"].problem is None  # eye on the (512, 128) logical weight
    assert "fewer than 2 dimensions" in rows["h.0.ln.weight"].problem
    assert plan.unmatched == ["rule 2 ('*.typo' -> zeros())"]  # the optional rule 3 is not listed
    assert "rule 2 ('*.typo' -> zeros()) selects no parameter" in str(plan)
    with pytest.raises(mi.RuleError):
        mi.plan_params(gpt2_like(), "weight")  # malformed rules raise as apply would


def test_the_plan_selects_what_apply_would() -> None:
    params = gpt2_like()
    chosen = [("*.c_fc.*", mi.xavier_uniform()), ("proj", mi.orthogonal()), ("scale", mi.zeros())]
    planned = {row.path: row.spec for row in mi.plan_params(params, chosen) if row.spec is not None}
    assert planned == {p.path: s for p, s in rules.plan(params, chosen)}


def test_with_axes_reads_the_stored_shape_and_batches_stay_out_of_the_fans() -> None:
    kernel = Param("mha/query/kernel", LogicalView.of((32, 8, 16), SPATIAL_IN_OUT), "kernel", kind="dense")
    experts = Param(
        "moe.experts.down_proj", mi.Layout("batch,out,in").view((4, 8, 6)), "down_proj", kind="dense"
    )
    stated = mi.with_axes(mi.lecun_normal(), in_axis=0, out_axis=(1, 2))
    plan = mi.plan_params([kernel, experts], [("kernel", stated), ("down_proj", mi.he_uniform())])
    assert plan[0].fans == (32, 128)  # not Keras' plain (256, 512)
    assert (plan[1].fans, plan[1].batch, plan[1].logical_shape) == ((6, 8), 1, (4, 8, 6))
    assert "(4, 8, 6) (1 batch)" in str(plan)
    bad = mi.plan_params([kernel], [("kernel", mi.with_axes(mi.he_normal(), in_axis=0, out_axis=3))])
    assert "out_axis=3 is not allowed for shape (32, 8, 16)" in bad[0].problem


def test_a_known_kind_can_still_be_a_guess() -> None:
    # An adapter that guessed a kind from parameter names (Flax's unknown modules) says known=False.
    guessed = Param(
        "Block_0/kernel", LogicalView.of((4, 8), SPATIAL_IN_OUT), "kernel", kind="dense", known=False
    )
    plan = mi.plan_params([guessed], {"kernel": mi.glorot_uniform()})
    assert plan[0].kind == "dense" and plan[0].guessed
    assert not mi.plan_params([guessed], {"kernel": mi.normal()})[0].guessed


def test_to_dict_is_json_ready_and_the_spec_reads_back() -> None:
    plan = mi.plan_params(
        gpt2_like(), [("weight", mi.kaiming_uniform(a=math.sqrt(5))), ("*.typo", mi.zeros())]
    )
    data = json.loads(json.dumps(plan.to_dict()))
    first = data["rows"][0]
    assert first == {
        "path": "h.0.mlp.c_fc.weight",
        "role": "weight",
        "layer": "Conv1D",
        "kind": "dense",
        "known": True,
        "shape": [128, 512],
        "logical_shape": [512, 128],
        "batch": 0,
        "fans": [128, 512],
        "rule": 0,
        "spec": "kaiming_uniform(a=2.23606797749979)",
        "uses_fans": True,
        "guessed": False,
        "problem": None,
    }
    assert mi.parse(first["spec"]) == mi.kaiming_uniform(a=math.sqrt(5))
    assert data["unmatched"] == ["rule 1 ('*.typo' -> zeros())"]


def test_plan_on_a_model_detects_its_backend() -> None:
    with pytest.raises(mi.UnknownBackend, match="not a model multiinit knows"):
        mi.plan({"params": {}}, {"weight": mi.zeros()})
