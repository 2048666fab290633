"""Hugging Face ``transformers`` models that no one here wrote (issue 18): small GPT-2, BERT and
Llama built from configs (no weights are downloaded: ``HF_HUB_OFFLINE=1``), walked by the torch
adapter.

Checked: every ``nn.Linear`` and GPT-2 ``Conv1D`` is of kind dense and every norm (LayerNorm,
``LlamaRMSNorm``) of kind norm; the fans a law uses (KS against the law with the fans written
out from the config: GPT-2's ``c_fc`` is n_embd -> 4 n_embd); that ``mi.presets.torch_default``,
``mi.select(kind="dense")`` and ``mi.select(kind="norm")`` reach every such layer; what
``mi.plan`` shows; that portable values land transposed in a Conv1D, also shard by shard; and
that multiinit's by-name registrations for transformers name classes this version has.

Statistical checks use ``multiinit.stats`` (level 1e-6; n = 16,384 values per weight).
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the models are built from configs
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import importlib

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.pytorch_utils import Conv1D

import multiinit as mi
import multiinit.torch as mit
from multiinit import stats
from multiinit.rules import Draw
from multiinit.torch import model as _model, sharded

N = 64  # the models' width: GPT-2's c_fc weight is (64, 256), 16,384 values
LAYERS = 2


def gpt2() -> nn.Module:
    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(
            n_embd=N, n_layer=LAYERS, n_head=4, vocab_size=100, n_positions=16, bos_token_id=0, eos_token_id=0
        )
    )


def bert() -> nn.Module:
    torch.manual_seed(0)
    return BertModel(
        BertConfig(
            hidden_size=N,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            intermediate_size=4 * N,
            vocab_size=100,
            max_position_embeddings=16,
        )
    )


def llama() -> nn.Module:
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            hidden_size=N,
            intermediate_size=3 * N,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=100,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        )
    )


MODELS = {"gpt2": gpt2, "bert": bert, "llama": llama}
DENSE = (nn.Linear, Conv1D)
NORMS = (nn.LayerNorm, LlamaRMSNorm)


def _owned(model: nn.Module, classes: tuple[type, ...]) -> set[str]:
    """The paths of the parameters of every module of ``classes``, found by torch alone. A
    tied parameter (GPT-2's and Llama's ``lm_head.weight`` is the token embedding's when
    tied) is one parameter, under its first path and its first layer's kind: here the
    embedding's, so it is left out of the other classes' sets."""
    names = {id(p): n for n, p in model.named_parameters()}
    first: dict[int, nn.Module] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            first.setdefault(id(p), m)
    return {
        names[id(p)]
        for m in model.modules()
        if isinstance(m, classes)
        for p in m.parameters(recurse=False)
        if isinstance(first[id(p)], classes)
    }


# --------------------------------------------------------------------------- kinds


@pytest.mark.parametrize("name", MODELS)
def test_every_dense_layer_is_dense_and_every_norm_a_norm(name) -> None:
    model = MODELS[name]()
    kinds = {p.path: p.kind for p in mit.params_of(model)}
    dense, norms, embeddings = _owned(model, DENSE), _owned(model, NORMS), _owned(model, (nn.Embedding,))
    assert dense and norms and embeddings
    assert dense | norms | embeddings == set(kinds), "a parameter outside dense, norm and embedding layers"
    assert {path for path, kind in kinds.items() if kind == "dense"} == dense
    assert {path for path, kind in kinds.items() if kind == "norm"} == norms
    # Every layer of these models is known: a fan-based law on all of them is no guess.
    plan = mi.plan(model, [("*", mi.he_normal())])
    assert not plan.guesses and all(row.known for row in plan)


def test_gpt2s_conv1d_is_read_in_to_out() -> None:
    model = gpt2()
    params = {p.path: p for p in mit.params_of(model)}
    block = "transformer.h.0"
    expected = {
        "attn.c_attn": (N, 3 * N),
        "attn.c_proj": (N, N),
        "mlp.c_fc": (N, 4 * N),
        "mlp.c_proj": (4 * N, N),
    }
    for layer, (n_in, n_out) in expected.items():
        weight, bias = params[f"{block}.{layer}.weight"], params[f"{block}.{layer}.bias"]
        assert weight.view.native_shape == (n_in, n_out) and weight.logical_shape == (n_out, n_in)
        assert weight.fans_for(mi.he_normal()) == (n_in, n_out) and bias.fans == (n_in, n_out)


# --------------------------------------------------------------------------- fans, measured


def test_kaiming_uniform_on_gpt2_is_bounded_by_its_input_width() -> None:
    model = gpt2()
    spec = mi.kaiming_uniform(a=math.sqrt(5))  # U(+-1/sqrt(fan_in))
    mi.apply(model, [(mi.select(kind="dense", role="weight"), spec), ("*", None)], seed=1)
    mlp = model.transformer.h[1].mlp
    c_fc = mlp.c_fc.weight.detach().numpy()
    assert float(np.abs(c_fc).max()) <= 1 / math.sqrt(N)
    # ... and reaches it: about twice the 1/sqrt(4 n_embd) the stored shape's fans would give
    assert float(np.abs(c_fc).max()) > 0.99 / math.sqrt(N)
    # the logical (out, in) weight against the law with the fans written out from the config
    assert stats.check(c_fc.T, spec, fans=(N, 4 * N)).passed
    assert stats.check(mlp.c_proj.weight.detach().numpy().T, spec, fans=(4 * N, N)).passed
    c_attn = model.transformer.h[0].attn.c_attn.weight.detach().numpy()
    assert stats.check(c_attn.T, spec, fans=(N, 3 * N)).passed
    assert not stats.check(c_fc.T, spec, fans=(4 * N, N)).passed  # the stored shape's fans: refuted


def test_torch_default_reaches_every_dense_layer_of_gpt2_with_torchs_own_numbers() -> None:
    model = gpt2()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    mi.apply(model, mi.presets.torch_default, seed=2)
    filled = {n for n, p in model.named_parameters() if bool(torch.isfinite(p).all())}
    assert filled == _owned(model, DENSE) | _owned(model, (nn.Embedding,))
    assert len(_owned(model, (Conv1D,))) == 4 * 2 * LAYERS  # c_attn, c_proj, c_fc, c_proj: weight + bias
    # nn.Linear's reset_parameters on a 64 -> 256 layer: weight and bias U(+-1/sqrt(64))
    c_fc = model.transformer.h[0].mlp.c_fc
    law = mi.uniform(-1 / math.sqrt(N), 1 / math.sqrt(N))
    assert stats.check(c_fc.weight.detach().numpy(), law, reference_seed=None).passed
    assert float(c_fc.bias.detach().abs().max()) <= 1 / math.sqrt(N)


@pytest.mark.parametrize("name", MODELS)
def test_select_dense_and_norm_find_every_such_layer(name) -> None:
    model = MODELS[name]()
    plan = mi.plan(
        model, [(mi.select(kind="dense"), mi.he_normal()), (mi.select(kind="norm"), mi.ones()), ("*", None)]
    )
    assert {row.path for row in plan if row.rule == 0} == _owned(model, DENSE)
    assert {row.path for row in plan if row.rule == 1} == _owned(model, NORMS)


def test_select_norm_finds_llamas_rmsnorms_and_fills_them() -> None:
    model = llama()
    mi.apply(model, [(mi.select(kind="norm"), mi.constant(0.5)), ("*", None)], seed=0)
    rms = [m for m in model.modules() if isinstance(m, LlamaRMSNorm)]
    assert len(rms) == 2 * LAYERS + 1
    assert all(bool((m.weight == 0.5).all()) for m in rms)


# --------------------------------------------------------------------------- plan


class Mystery(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.zeros(16, N))


def test_plan_shows_c_fc_in_to_out_and_flags_an_unknown_layer() -> None:
    model = gpt2()
    model.transformer.h[0].mystery = Mystery()
    rules = [
        ("*c_fc.weight", mi.kaiming_uniform(a=math.sqrt(5))),
        ("*mystery.proj", mi.he_normal()),
        ("*", None),
    ]
    plan = mi.plan(model, rules)
    rows = {row.path: row for row in plan}
    c_fc = rows["transformer.h.0.mlp.c_fc.weight"]
    assert (c_fc.layer, c_fc.kind, c_fc.shape, c_fc.logical_shape, c_fc.fans) == (
        "Conv1D",
        "dense",
        (N, 4 * N),
        (4 * N, N),
        (N, 4 * N),
    )
    assert not c_fc.guessed
    assert [row.path for row in plan.guesses] == ["transformer.h.0.mystery.proj"]
    text = str(plan)
    line = next(line for line in text.splitlines() if line.startswith("transformer.h.0.mlp.c_fc.weight"))
    assert f"{N} -> {4 * N}" in line
    mystery = next(line for line in text.splitlines() if line.startswith("transformer.h.0.mystery.proj"))
    assert f"{N} -> 16 ?" in mystery


# --------------------------------------------------------------------------- values land transposed


def test_portable_values_land_transposed_in_conv1d() -> None:
    model = gpt2()
    spec = mi.glorot_normal()
    mi.apply(model, [(mi.select(kind="dense", role="weight"), spec), ("*", None)], seed=3, portable=True)
    params = {p.path: p for p in mit.params_of(model)}
    path = "transformer.h.1.mlp.c_fc.weight"
    want = mi.reference.sample(spec, (4 * N, N), seed=(3, params[path].order))
    assert np.array_equal(model.transformer.h[1].mlp.c_fc.weight.detach().numpy().T, want.astype(np.float32))


def _runs_of(per_dim: list[list[tuple[int, int]]]) -> list[list[tuple[int, int, int]]]:
    out = []
    for runs in per_dim:
        local, position = [], 0
        for first, length in runs:
            local.append((first, position, length))
            position += length
        out.append(local)
    return out


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
@pytest.mark.parametrize("spec", [mi.he_uniform(), mi.orthogonal()], ids=repr)
def test_a_sharded_conv1d_weight_is_drawn_rank_by_rank(spec, portable) -> None:
    # Shard(0) (rows of the stored (in, out): a column block of the logical weight) and
    # Shard(1) over 3 uneven ranks, each drawn alone, equal that part of the whole.
    layer = Conv1D(515, 530)  # nf=515 outputs, nx=530 inputs: stored (530, 515), several tiles
    mi.apply(layer, {"weight": spec, "bias": None}, seed=7, portable=portable)
    whole = layer.weight.detach().clone()
    (param,) = [p for p in mit.params_of(layer) if p.role == "weight"]
    assert param.logical_shape == (515, 530)
    writer = _model._Writer(layer, 7, None)
    source = writer.source(param, spec, Draw(7, param.order, portable))
    shards, pieces = [], []
    for dim in (0, 1):
        for rank in range(3):
            cut = [[(0, 530)], [(0, 515)]]
            cut[dim] = sharded._chunk(cut[dim], 3, rank)
            runs = _runs_of(cut)
            ((first, _, length),) = runs[dim]
            local = torch.full((length, 515) if dim == 0 else (530, length), float("nan"))
            shards.append((dim, first, length, local))
            pieces.extend(sharded._pieces(param.view, runs, local))
    with torch.no_grad():  # every rank's shard in one call: a whole-tensor law is drawn once
        sharded.fill(source, pieces)
    for dim, first, length, local in shards:
        assert torch.equal(local, whole.narrow(dim, first, length)), (dim, first)


# --------------------------------------------------------------------------- the registry's names


def test_every_transformers_class_multiinit_names_exists_in_this_version() -> None:
    named = [
        r
        for r in mi.registered_layers(builtin=True)
        if r.target.startswith("transformers.") and not r.is_glob
    ]
    assert len(named) > 80
    for registration in named:
        module, _, name = registration.target.rpartition(".")
        cls = getattr(importlib.import_module(module), name, None)
        assert isinstance(cls, type) and issubclass(cls, nn.Module), registration.target
        assert mi.lookup_layer(cls) is registration
        # a subclass of torch's own layers would be known already: listing it would be noise
        assert not issubclass(cls, (nn.Linear, nn.LayerNorm, nn.Embedding)), registration.target
    # the globs cover the RMSNorms of the three families the tests build, and a few others
    for module, name in (
        ("llama", "LlamaRMSNorm"),
        ("mistral", "MistralRMSNorm"),
        ("qwen2", "Qwen2RMSNorm"),
        ("gemma", "GemmaRMSNorm"),
        ("mamba2", "MambaRMSNormGated"),
    ):
        cls = getattr(importlib.import_module(f"transformers.models.{module}.modeling_{module}"), name)
        assert mi.lookup_layer(cls).kind == "norm", name
