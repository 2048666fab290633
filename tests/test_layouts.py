"""Axis-role layouts, JAX-style fans from axes, with_axes and fan_geo_avg.

Expected fans are worked out by hand in the comments (fan_in = in x receptive field, fan_out =
out x receptive field, batch axes in neither), never produced by the code under test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import multiinit as mi
from multiinit.fans import (
    OUT_IN,
    SPATIAL_IN_OUT,
    Layout,
    LogicalView,
    as_layout,
    compute_fans,
    fans_from_axes,
)
from multiinit.rules import Param

# --------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    "text, normal",
    [
        ("out,in", "out,in"),
        (" in , out ", "in,out"),
        ("out,in,...", "out,in,..."),
        ("...,in,out", "...,in,out"),
        ("in,out,out", "in,out,out"),
        ("batch,in,out", "batch,in,out"),
        ("batch,...,in,out", "batch,...,in,out"),
        ("out", "out"),
        ("batch,out", "batch,out"),
        ("out,in,spatial,spatial", "out,in,spatial,spatial"),
    ],
)
def test_layouts_are_read_and_normalized(text, normal) -> None:
    layout = Layout(text)
    assert layout.text == normal == str(layout)
    assert layout == Layout(normal) and hash(layout) == hash(Layout(normal))
    assert Layout(layout) == layout and repr(layout) == f"Layout({normal!r})"


@pytest.mark.parametrize(
    "text, why",
    [
        ("out,inn", "'inn' is not an axis role"),
        ("", "it is empty"),
        ("out,,in", "'' is not an axis role"),
        ("...,in,out,...", "'...' may appear only once"),
        ("in,spatial", "no out axis"),
        ("batch,batch", "no out axis"),
        ("out,...", "spatial axes but no in axis"),
        ("out,spatial", "spatial axes but no in axis"),
        ("OUT,IN", "'OUT' is not an axis role"),
    ],
)
def test_a_bad_layout_is_a_spec_error_naming_it_and_the_grammar(text, why) -> None:
    with pytest.raises(mi.SpecError) as info:
        Layout(text)
    message = str(info.value)
    assert f"layout={text!r}" in message and why in message
    assert "out, in, spatial, batch" in message  # what is allowed


def test_a_layout_must_be_text() -> None:
    with pytest.raises(mi.SpecError, match="layout=3"):
        Layout(3)  # type: ignore[arg-type]


def test_named_layouts_still_work_and_a_bad_name_is_still_a_spec_error() -> None:
    assert as_layout(OUT_IN) == Layout("out,in,...")
    assert as_layout(SPATIAL_IN_OUT) == Layout("...,in,out")
    with pytest.raises(mi.SpecError, match="layout='nhwc'") as info:
        compute_fans((3, 3), "nhwc")
    assert OUT_IN in str(info.value) and "axis roles" in str(info.value)


# --------------------------------------------------------------------------- views and fans


@pytest.mark.parametrize(
    "layout, shape, logical, fans",
    [
        # torch Linear(400, 300): (out, in)
        ("out,in", (300, 400), (300, 400), (400, 300)),
        # transformers Conv1D(nf=512, nx=128): weight (in, out) = (128, 512): 128 -> 512
        ("in,out", (128, 512), (512, 128), (128, 512)),
        # a 3x3 conv 64 -> 128, torch and Keras: fan_in 64*9 = 576, fan_out 128*9 = 1152
        ("out,in,...", (128, 64, 3, 3), (128, 64, 3, 3), (576, 1152)),
        ("...,in,out", (3, 3, 64, 128), (128, 64, 3, 3), (576, 1152)),
        # Keras EinsumDense / MHA query kernel (dim 32, heads 8, head_dim 16): 32 -> 8*16 = 128
        ("in,out,out", (32, 8, 16), (128, 32), (32, 128)),
        # MHA output kernel (heads 8, head_dim 16, dim 32): 128 -> 32
        ("in,in,out", (8, 16, 32), (32, 128), (128, 32)),
        # 4 experts of (out 6, in 5), torch F.linear style: each 5 -> 6
        ("batch,out,in", (4, 6, 5), (4, 6, 5), (5, 6)),
        # 12 stacked layers of a Flax Dense 64 -> 256
        ("batch,in,out", (12, 64, 256), (12, 256, 64), (64, 256)),
        # stacked conv kernels (layers 2, 3x3, in 4, out 8): fan_in 4*9 = 36, fan_out 8*9 = 72
        ("batch,...,in,out", (2, 3, 3, 4, 8), (2, 8, 4, 3, 3), (36, 72)),
        # two batch axes (groups 2, experts 3) of (in 5, out 7)
        ("batch,batch,in,out", (2, 3, 5, 7), (2, 3, 7, 5), (5, 7)),
        # spatial axes between in and out keep their order: (in 4, k 2, k 3, out 5): fan_in 4*6
        ("in,spatial,spatial,out", (4, 2, 3, 5), (5, 4, 2, 3), (24, 30)),
        # "..." matching no axis
        ("...,in,out", (64, 128), (128, 64), (64, 128)),
    ],
)
def test_views_and_fans_of_layouts(layout, shape, logical, fans) -> None:
    view = Layout(layout).view(shape)
    assert view.native_shape == shape and view.logical_shape == logical
    assert view.fans == fans == Layout(layout).fans(shape) == compute_fans(shape, layout)
    assert LogicalView.of(shape, layout) == view
    native = np.arange(math.prod(shape)).reshape(shape)
    assert np.array_equal(view.to_native(view.to_logical(native)), native)


def test_named_layouts_and_their_role_spelling_give_the_same_views() -> None:
    for shape in [(8, 4), (8, 4, 3), (8, 4, 3, 3), (8, 4, 2, 3, 3)]:
        assert LogicalView.of(shape, OUT_IN) == LogicalView.of(shape, "out,in,...")
        assert LogicalView.of(shape, SPATIAL_IN_OUT) == LogicalView.of(shape, "...,in,out")


def test_a_multi_axis_kernel_flattens_out_axes_in_order() -> None:
    dim, heads, head_dim = 4, 3, 2
    native = np.arange(dim * heads * head_dim).reshape(dim, heads, head_dim)
    logical = Layout("in,out,out").view(native.shape).to_logical(native)
    for i in range(dim):
        for h in range(heads):
            for d in range(head_dim):
                assert logical[h * head_dim + d, i] == native[i, h, d]


def test_batch_axes_lead_the_logical_array_and_stay_out_of_the_fans() -> None:
    native = np.arange(4 * 5 * 6).reshape(4, 5, 6)  # (experts, in, out)
    view = Layout("batch,in,out").view(native.shape)
    logical = view.to_logical(native)
    assert view.batch == 1 and logical.shape == (4, 6, 5)
    assert logical[3, 2, 1] == native[3, 1, 2]
    assert view.fans == (5, 6)  # one expert: 5 -> 6, the 4 experts count in neither


def test_a_layout_without_in_has_no_fans_of_its_own() -> None:
    view = Layout("out,out").view((8, 16))  # a per-head bias (heads, head_dim)
    assert view.logical_shape == (128,)
    with pytest.raises(mi.ShapeError, match="fewer than 2 dimensions"):
        _ = view.fans
    with pytest.raises(mi.ShapeError, match="'out,out' has no in axis") as info:
        Layout("out,out").fans((8, 16))
    assert "(8, 16)" in str(info.value)
    assert not Layout("batch,out").has_fans and Layout("in,out").has_fans


@pytest.mark.parametrize(
    "layout, shape, said",
    [
        ("in,out", (3, 4, 5), "it names 2 axes and the shape has 3"),
        ("in,out,out", (3, 4), "it names 3 axes and the shape has 2"),
        ("batch,...,in,out", (3, 4), "it names at least 3 axes and the shape has 2"),
    ],
)
def test_a_layout_that_does_not_fit_a_shape_is_a_shape_error_naming_both(layout, shape, said) -> None:
    with pytest.raises(mi.ShapeError) as info:
        Layout(layout).view(shape)
    message = str(info.value)
    assert repr(layout) in message and str(shape) in message and said in message


@pytest.mark.parametrize("shape", [(2, -1), (2.5, 3), "ab", None, (True, 2)])
def test_a_bad_shape_meeting_a_layout_is_a_shape_error(shape) -> None:
    with pytest.raises(mi.ShapeError, match="shape="):
        Layout("in,out").view(shape)


def test_roles_and_axes_of_a_shape() -> None:
    layout = Layout("batch,...,in,out")
    assert layout.ndim is None and Layout("in,out").ndim == 2
    assert layout.roles_for((2, 3, 3, 4, 8)) == ("batch", "spatial", "spatial", "in", "out")
    assert layout.axes((2, 3, 3, 4, 8)) == {"out": (4,), "in": (3,), "spatial": (1, 2), "batch": (0,)}


# --------------------------------------------------------------------------- LogicalView stays compatible


def test_logical_view_batch_is_compatible() -> None:
    plain = LogicalView((4, 5))
    assert plain.batch == 0 and plain.fans == (5, 4)
    assert (
        repr(plain) == "LogicalView(native_shape=(4, 5), axes=(0, 1), pre_shape=(4, 5), logical_shape=(4, 5))"
    )
    batched = LogicalView((3, 4, 5), batch=1)
    assert batched.fans == (5, 4) and LogicalView((3, 4, 5)).fans == (20, 15)
    assert batched != LogicalView((3, 4, 5)) and "batch=1" in repr(batched)
    for bad in (-1, 3, True, 1.0):
        with pytest.raises(mi.ShapeError, match="batch="):
            LogicalView((3, 4), batch=bad)


# ------------------------------------------------------------------ JAX's in_axis/out_axis/batch_axis


@pytest.mark.parametrize(
    "shape, axes, fans",
    [
        # JAX's defaults (-2, -1) on a Flax conv kernel (3, 3, 64, 128): receptive 9
        ((3, 3, 64, 128), {}, (576, 1152)),
        ((64, 128), {}, (64, 128)),
        # torch's (out, in, kh, kw) read with JAX's axes: in 1, out 0, receptive 3*3
        ((128, 64, 3, 3), dict(in_axis=1, out_axis=0), (576, 1152)),
        # attention kernel (32, 8, 16): in 0, out (1, 2)
        ((32, 8, 16), dict(in_axis=0, out_axis=(1, 2)), (32, 128)),
        ((32, 8, 16), dict(in_axis=-3, out_axis=(-2, -1)), (32, 128)),
        # heads as a batch axis: (heads 8, in 32, out 16): 32 -> 16 per head
        ((8, 32, 16), dict(batch_axis=0), (32, 16)),
        ((2, 8, 32, 16), dict(batch_axis=(0, 1)), (32, 16)),
        # an empty in_axis is size 1 (JAX's prod of nothing), the rest receptive: (4, 5) out 1
        ((4, 5), dict(in_axis=(), out_axis=1), (4, 20)),
    ],
)
def test_fans_from_axes_follow_jax(shape, axes, fans) -> None:
    assert fans_from_axes(shape, **axes) == fans


@pytest.mark.parametrize(
    "shape, axes, said",
    [
        ((5,), {}, "at least 2 dimensions"),
        ((), {}, "at least 2 dimensions"),
        ((4, 5), dict(in_axis=2, out_axis=1), "in_axis=2 is not allowed for shape (4, 5)"),
        ((4, 5), dict(in_axis=0, out_axis=-3), "out_axis=-3 is not allowed"),
        ((4, 5), dict(in_axis=0, out_axis=-2), "axis 0 of shape (4, 5) twice"),
        ((4, 5, 6), dict(in_axis=0, out_axis=1, batch_axis=(2, -1)), "twice"),
        ((4, 5), dict(in_axis=True, out_axis=1), "in_axis=True"),
        ((4, 5), dict(in_axis=None, out_axis=1), "in_axis=None"),
    ],
)
def test_bad_axes_are_shape_errors(shape, axes, said) -> None:
    with pytest.raises(mi.ShapeError) as info:
        fans_from_axes(shape, **axes)
    assert said in str(info.value)


# --------------------------------------------------------------------------- with_axes


def every_with_axes():
    return [
        mi.with_axes(mi.lecun_normal(), in_axis=0, out_axis=(1, 2)),
        mi.with_axes(mi.he_uniform(), in_axis=-2, out_axis=-1, batch_axis=0),
        mi.with_axes(mi.xavier_uniform(gain=2.0), in_axis=1, out_axis=0),
        mi.with_axes(
            mi.variance_scaling(0.5, "fan_geo_avg", "uniform"), in_axis=(0,), out_axis=(2, 3), batch_axis=(1,)
        ),
        mi.with_axes(mi.mixture([(0.5, mi.he_normal()), (0.5, mi.zeros())]), in_axis=0, out_axis=1),
    ]


@pytest.mark.parametrize("spec", every_with_axes(), ids=repr)
def test_with_axes_round_trips_like_every_spec(spec) -> None:
    assert mi.parse(repr(spec)) == spec and hash(mi.parse(repr(spec))) == hash(spec)
    assert mi.from_dict(spec.to_dict()) == spec
    assert mi.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert mi.parse(str(spec)) == spec and spec.uses_fans


def test_with_axes_repr_and_dict() -> None:
    spec = mi.with_axes(mi.glorot_uniform(), in_axis=[0], out_axis=[1, 2])
    assert repr(spec) == "with_axes(glorot_uniform(), in_axis=(0,), out_axis=(1, 2))"
    assert spec.to_dict() == {
        "kind": "with_axes",
        "spec": {"kind": "glorot_uniform"},
        "in_axis": [0],
        "out_axis": [1, 2],
        "batch_axis": [],
    }
    assert mi.parse("mi.with_axes(mi.glorot_uniform(), in_axis=(0,), out_axis=[1, 2])") == spec
    assert spec.random


@pytest.mark.parametrize(
    "kwargs, said",
    [
        (dict(spec=mi.uniform(), in_axis=0, out_axis=1), "spec=uniform(low=0.0, high=1.0) is not allowed"),
        (dict(spec=mi.orthogonal(), in_axis=0, out_axis=1), "a fan-based spec"),
        (dict(spec="he_normal()", in_axis=0, out_axis=1), "spec='he_normal()'"),
        (dict(spec=mi.he_normal(), in_axis=0, out_axis=0), "out_axis=0"),
        (dict(spec=mi.he_normal(), in_axis=0, out_axis=1, batch_axis=(1,)), "batch_axis=(1,)"),
        (dict(spec=mi.he_normal(), in_axis=(0, 0), out_axis=1), "in_axis=(0, 0)"),
        (dict(spec=mi.he_normal(), in_axis=True, out_axis=1), "in_axis=True"),
        (dict(spec=mi.he_normal(), in_axis=0.0, out_axis=1), "in_axis=0.0"),
        (dict(spec=mi.he_normal(), in_axis=0, out_axis="1"), "out_axis='1'"),
        (dict(spec=mi.he_normal(), in_axis=0, out_axis=None), "out_axis=None"),
    ],
)
def test_with_axes_validates_naming_the_argument(kwargs, said) -> None:
    spec = kwargs.pop("spec")
    with pytest.raises(mi.SpecError) as info:
        mi.with_axes(spec, **kwargs)
    assert said in str(info.value) and str(info.value).startswith("with_axes:")


def test_with_axes_needs_in_and_out_and_nests_only_outside() -> None:
    with pytest.raises(TypeError):
        mi.with_axes(mi.he_normal(), in_axis=0)  # type: ignore[call-arg]
    inner = mi.with_axes(mi.he_normal(), in_axis=0, out_axis=1)
    with pytest.raises(mi.SpecError, match="a fan-based spec"):
        mi.with_axes(inner, in_axis=0, out_axis=1)
    with pytest.raises(mi.SpecError, match=r"with_axes\(mixture"):
        mi.mixture([(1.0, inner)])
    for bad in (
        {"kind": "with_axes", "in_axis": 0, "out_axis": 1},
        {"kind": "with_axes", "spec": {"kind": "he_normal"}, "in_axis": 0},
        {"kind": "with_axes", "spec": {"kind": "he_normal"}, "in_axis": 0, "out_axis": 1, "x": 2},
    ):
        with pytest.raises(mi.SpecError):
            mi.from_dict(bad)


def test_the_reference_draws_with_fans_from_the_axes() -> None:
    spec = mi.variance_scaling(1.0, "fan_in", "uniform")
    stated = mi.with_axes(spec, in_axis=0, out_axis=(1, 2))
    shape = (32, 8, 16)
    # The same stream: the axes only decide the fans (fan_in 32, not the 8*32 = 256 the
    # logical reading of this shape gives).
    drawn = stated.sample(shape, seed=3)
    assert np.array_equal(drawn, spec.sample(shape, seed=3, fans=(32, 128)))
    assert not np.array_equal(drawn, spec.sample(shape, seed=3))
    bound = math.sqrt(3 / 32)
    # 4096 draws of U(-b, b): all above 0.99 b in absolute value has probability 0.995^4096 < 1e-8
    assert np.abs(drawn).max() <= bound and np.abs(drawn).max() > 0.99 * bound
    # explicit fans win over the axes
    assert np.array_equal(stated.sample(shape, seed=3, fans=(7, 9)), spec.sample(shape, seed=3, fans=(7, 9)))


def test_the_reference_refuses_axes_that_do_not_fit() -> None:
    spec = mi.with_axes(mi.he_normal(), in_axis=0, out_axis=(1, 2))
    with pytest.raises(mi.ShapeError, match=r"out_axis=\(1, 2\) is not allowed for shape \(4, 5\)"):
        spec.sample((4, 5))
    with pytest.raises(mi.ShapeError, match="at least 2 dimensions"):
        spec.sample((4,))
    assert spec.sample((4,), fans=(4, 4)).shape == (4,)  # a bias given its weight's fans
    with pytest.raises(mi.ShapeError, match="eye"):
        mi.with_axes(mi.mixture([(0.5, mi.he_normal()), (0.5, mi.eye())]), in_axis=0, out_axis=1).sample(
            (2, 3, 4)
        )


# --------------------------------------------------------------------------- fan_geo_avg


def test_fan_geo_avg_is_the_geometric_mean() -> None:
    spec = mi.variance_scaling(2.0, "fan_geo_avg", "uniform")
    assert spec.fan(400, 300) == math.sqrt(400 * 300)
    # variance 2/sqrt(120000); uniform limit sqrt(3 * variance)
    assert spec.law(400, 300) == ("uniform", pytest.approx(math.sqrt(6 / math.sqrt(120000))))
    assert mi.parse(repr(spec)) == spec
    with pytest.raises(mi.SpecError, match="'fan_geo_avg'"):
        mi.variance_scaling(1.0, "fan_geomean")
    with pytest.raises(mi.SpecError, match="mode='fan_geo_avg'"):
        mi.kaiming_uniform(mode="fan_geo_avg")  # torch's kaiming has fan_in and fan_out only


def test_explain_writes_fan_geo_avg_numbers_where_a_framework_lacks_the_mode() -> None:
    e = mi.explain(mi.variance_scaling(2.0, "fan_geo_avg", "untruncated_normal"), (300, 400), "torch")
    std = math.sqrt(2 / math.sqrt(120000))
    assert e.native["flax"] == 'jax.nn.initializers.variance_scaling(2, "fan_geo_avg", "normal")'
    assert e.native["torch"] == f"torch.nn.init.normal_(w, mean=0, std={std:.6g})"
    assert e.native["keras"] == f"keras.initializers.RandomNormal(mean=0, stddev={std:.6g})"
    assert e.native["mxnet"] == f"mx.init.Normal(sigma={std:.6g})"


# --------------------------------------------------------------------------- explain with axes and layouts


def test_explain_shows_fans_from_stated_axes() -> None:
    spec = mi.with_axes(mi.lecun_normal(), in_axis=0, out_axis=(1, 2))
    e = mi.explain(spec, (32, 8, 16), "keras")
    assert e.fans == (32, 128) and e.logical_shape == (128, 32)
    assert e.native["keras"] == "keras.initializers.LecunNormal(input_axes=[0], output_axes=[1, 2])"
    assert e.native["flax"] == "jax.nn.initializers.lecun_normal()"  # a plain (32, 128) Flax kernel
    text = str(e)
    assert "fan_in 32, fan_out 128 (from in_axis=0, out_axis=(1, 2) of (32, 8, 16))" in text
    e = mi.explain(spec, (32, 8, 16), "flax")
    assert e.native["flax"] == "jax.nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))"
    with pytest.raises(mi.ShapeError, match=r"shape \(4, 5\)"):
        mi.explain(spec, (4, 5), "keras")


def test_explain_reads_a_weight_with_a_layout() -> None:
    # GPT-2's c_fc, Conv1D 128 -> 512 stored (in, out), torch's default Linear law.
    e = mi.explain(mi.kaiming_uniform(a=math.sqrt(5)), (128, 512), "torch", layout="in,out")
    assert e.fans == (128, 512) and e.layout == "in,out"
    bound = 1 / math.sqrt(128)  # gain^2 = 2/(1+5) = 1/3; bound = sqrt(3 * 1/3 / 128)
    assert e.native["torch"] == f"torch.nn.init.uniform_(w, a={-bound:.6g}, b={bound:.6g})"
    assert "stored as 'in,out'" in str(e)
    e = mi.explain(mi.he_uniform(), (4, 6, 5), "torch", layout="batch,out,in")
    assert e.fans == (5, 6) and e.batch == 1 and "1 batch axes" in str(e)
    limit = math.sqrt(3 * 2 / 5)
    assert e.native["keras"] == f"keras.initializers.RandomUniform(minval={-limit:.6g}, maxval={limit:.6g})"
    with pytest.raises(mi.SpecError, match="layout='in,oot'"):
        mi.explain(mi.he_uniform(), (4, 5), "torch", layout="in,oot")


# --------------------------------------------------------------------------- Param.fans_for


def test_param_fans_for_a_spec() -> None:
    kernel = Param("mha/query/kernel", LogicalView.of((32, 8, 16), SPATIAL_IN_OUT), "kernel")
    stated = mi.with_axes(mi.he_normal(), in_axis=0, out_axis=(1, 2))
    # Keras' own reading of (32, 8, 16): receptive 32, fan_in 8*32, fan_out 16*32
    assert kernel.fans_for(mi.he_normal()) == (256, 512)
    assert kernel.fans_for(stated) == (32, 128)  # the axes index the stored shape
    assert kernel.fans_for(mi.normal()) is None
    # a per-head bias (heads, head_dim) given its kernel's fans keeps them: the axes are the kernel's
    bias = Param("mha/query/bias", Layout("out,out").view((8, 16)), "bias", fans=(32, 128))
    assert bias.fans_for(mi.he_normal()) == bias.fans_for(stated) == (32, 128)
    unowned = Param("pos", LogicalView((4, 32, 8, 16)), "pos")
    with pytest.raises(mi.ShapeError, match="out_axis"):
        Param("pos", LogicalView((8, 16)), "pos").fans_for(stated)
    assert unowned.fans_for(mi.with_axes(mi.he_normal(), in_axis=1, out_axis=(2, 3), batch_axis=0)) == (
        32,
        128,
    )
    experts = Param("experts.down_proj", Layout("batch,out,in").view((4, 6, 5)), "down_proj")
    assert experts.fans == (5, 6) and experts.fans_for(mi.he_normal()) == (5, 6)
    # the axes, not the batched view, decide for a with_axes spec: in 0 (4), out 1 (6), receptive 5
    assert experts.fans_for(mi.with_axes(mi.he_normal(), in_axis=0, out_axis=1)) == (20, 30)
    assert Param("b", Layout("batch,out").view((4, 6)), "b").fans is None
