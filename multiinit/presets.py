"""Each framework's default initialization, as rules that any backend can apply.

``mi.apply(model, mi.presets.torch_default, seed=0)`` gives a Keras, Flax or MXNet model the
initialization PyTorch would have given the same layers (torch's bias drawn from the fan of
its layer's weight included), and likewise for the other three. They cover the layers every
framework defaults the same way: dense (Linear/Dense), conv, attention projections and
embedding; other parameters
(norms, recurrent cells) are left as they are. Each preset is an ordered list of
``(selector, spec)`` rules whose selectors are optional: a model without embeddings or biases
is fine.

Depthwise and transposed convolutions get the same laws on their logical (out, in, *k) fans.
That is each framework's own default except where the framework reads fans off a storage
layout that is not logical: Keras' ``DepthwiseConv2D`` (its glorot_uniform sees
``(*k, C, multiplier)``) and torch's ``ConvTranspose`` with groups > 1. torch's
``ConvTranspose`` with one group is reproduced exactly (its own rule below).

The values, read from each framework's source (see framework-facts.md):

============  =============================  ===============  =======================  ===========
preset        dense/conv weight              bias             embedding                source
============  =============================  ===============  =======================  ===========
torch         U(+-1/sqrt(fan_in))            U(+-1/sqrt(fan_  N(0, 1)                  nn.Linear,
              = kaiming_uniform(a=sqrt(5))   in of weight))                            nn.Conv*d
keras         glorot_uniform                 zeros            U(-0.05, 0.05)           keras 3
flax          lecun_normal (truncated)       zeros            N(0, 1/features)         flax.linen
mxnet         U(-0.07, 0.07)                 zeros            U(-0.07, 0.07)           gluon
============  =============================  ===============  =======================  ===========

>>> for selector, spec in torch_default:
...     print(selector, "->", spec)
select(kind='embedding', role=('embedding', 'embeddings', 'kernel', 'weight'), optional=True) -> normal()
select(kind='conv_transpose', role=('bias', 'kernel', 'weight'), optional=True) -> variance_scaling(scale=0.3333333333333333, mode='fan_out', distribution='uniform')
select(kind='attention', role=('in_proj_weight', 'kernel', 'weight'), optional=True) -> variance_scaling(scale=0.5, mode='fan_avg', distribution='uniform')
select(kind='attention', role=('bias', 'in_proj_bias'), optional=True) -> zeros()
select(kind=('conv', 'conv_transpose', 'dense', 'depthwise_conv'), role=('kernel', 'weight'), optional=True) -> variance_scaling(scale=0.3333333333333333, distribution='uniform')
select(kind=('conv', 'conv_transpose', 'dense', 'depthwise_conv'), role='bias', optional=True) -> variance_scaling(scale=0.3333333333333333, distribution='uniform')
"""  # noqa: E501 - doctest output lines, as printed

from __future__ import annotations

from .rules import select
from .spec import glorot_uniform, lecun_normal, normal, uniform, variance_scaling, zeros

__all__ = ["torch_default", "keras_default", "flax_default", "mxnet_default", "PRESETS"]

# Every rule is optional: a preset applied to a model without embeddings (or without biases)
# initializes what the model has and leaves the rest alone.
_CONVS = ("dense", "conv", "depthwise_conv", "conv_transpose")
_WEIGHT = select(kind=_CONVS, role="weight", optional=True)
_BIAS = select(kind=_CONVS, role="bias", optional=True)
# Attention projections (q, k, v and output kernels; torch's packed in_proj is viewed as one
# matrix per projection): Keras and Flax build them as dense layers with their dense defaults.
_DENSE_LIKE = (*_CONVS, "attention")
_ANY_WEIGHT = select(kind=_DENSE_LIKE, role=("weight", "in_proj_weight"), optional=True)
_ANY_BIAS = select(kind=_DENSE_LIKE, role=("bias", "in_proj_bias"), optional=True)
# torch's nn.MultiheadAttention names its packed projection in_proj_weight / in_proj_bias.
_ATTENTION_WEIGHT = select(kind="attention", role=("weight", "in_proj_weight"), optional=True)
_ATTENTION_BIAS = select(kind="attention", role=("bias", "in_proj_bias"), optional=True)
_EMBEDDING = select(kind="embedding", role=("weight", "embedding"), optional=True)
_TRANSPOSED = select(kind="conv_transpose", role=("weight", "bias"), optional=True)

# kaiming_uniform(a=sqrt(5)) has gain^2 = 2/(1+5) = 1/3: U(+-sqrt(3 * (1/3) / fan_in)).
_TORCH_LINEAR = variance_scaling(1 / 3, "fan_in", "uniform")

torch_default = [
    (_EMBEDDING, normal(0.0, 1.0)),
    # torch reads a ConvTranspose weight's fan_in off its stored (in, out/groups, *k) shape:
    # out/groups * prod(k), which is the logical fan_out when groups == 1.
    (_TRANSPOSED, variance_scaling(1 / 3, "fan_out", "uniform")),
    # nn.MultiheadAttention: xavier_uniform_ on the packed (3E, E) in_proj, i.e. per (E, E)
    # projection U(+-sqrt(6 / 4E)) = variance_scaling(1/2, fan_avg, uniform); its biases are 0.
    (_ATTENTION_WEIGHT, variance_scaling(0.5, "fan_avg", "uniform")),
    (_ATTENTION_BIAS, zeros()),
    (_WEIGHT, _TORCH_LINEAR),
    # A bias sees its layer's weight fans at model level: U(+-1/sqrt(fan_in of the weight)).
    (_BIAS, _TORCH_LINEAR),
]

keras_default = [
    (_EMBEDDING, uniform(-0.05, 0.05)),
    (_ANY_WEIGHT, glorot_uniform()),
    (_ANY_BIAS, zeros()),
]

flax_default = [
    # flax.linen.Embed: variance_scaling(1, "fan_in", "normal", out_axis=0) on (num, features):
    # its fan_in is the features axis, so N(0, 1/features), untruncated (JAX's "normal").
    (_EMBEDDING, variance_scaling(1.0, "fan_in", "untruncated_normal")),
    (_ANY_WEIGHT, lecun_normal()),
    (_ANY_BIAS, zeros()),
]

mxnet_default = [
    # gluon's Block.initialize() default is Uniform(scale=0.07); Dense/Conv biases are zeros.
    (_EMBEDDING, uniform(-0.07, 0.07)),
    (_ANY_WEIGHT, uniform(-0.07, 0.07)),
    (_ANY_BIAS, zeros()),
]

PRESETS = {
    "torch": torch_default,
    "keras": keras_default,
    "flax": flax_default,
    "mxnet": mxnet_default,
}
