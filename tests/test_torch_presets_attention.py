"""torch_default on attention: nn.MultiheadAttention's packed in_proj gets torch's own law
(xavier_uniform_ over the (3E, E) matrix, read per projection), its biases zeros.

Two-sample KS (level 1e-6) between multiinit's draw and torch's own construction of the same
layer: 3 * 256 * 256 = 196,608 values each, where a wrong scale (e.g. the per-projection
xavier, variance x2) gives D ~ 0.1 and p far below 1e-6."""

from __future__ import annotations

import torch
from torch import nn

import multiinit as mi
from multiinit import stats

E, HEADS = 256, 4


def test_torch_default_reproduces_multihead_attention_in_proj() -> None:
    torch.manual_seed(0)
    own = nn.MultiheadAttention(E, HEADS).in_proj_weight.detach().numpy().copy()
    layer = nn.MultiheadAttention(E, HEADS)
    with torch.no_grad():
        layer.in_proj_bias.fill_(3.0)
    mi.apply(layer, mi.presets.torch_default, seed=1)
    got = layer.in_proj_weight.detach().numpy()
    assert stats.check_same(got, own, alpha=1e-6).passed
    assert (layer.in_proj_bias == 0).all()
    wrong = mi.apply(nn.MultiheadAttention(E, HEADS), {"in_proj_weight": mi.xavier_uniform()}, seed=1)
    assert not stats.check_same(wrong.in_proj_weight.detach().numpy(), own, alpha=1e-6).passed


def test_every_preset_reaches_attention_projections() -> None:
    for preset in mi.presets.PRESETS.values():
        layer = nn.MultiheadAttention(E, HEADS)
        with torch.no_grad():
            layer.in_proj_weight.fill_(7.0)
        mi.apply(layer, preset, seed=2)
        assert not (layer.in_proj_weight == 7.0).any()
