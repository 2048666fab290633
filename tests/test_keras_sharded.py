"""Keras distribution (issue 13.4): ``keras.distribution.ModelParallel`` with a ``LayoutMap`` over
simulated CPU devices, on the JAX backend (the only one Keras distributes on). ``mi.apply`` keeps
every variable's layout and gives, bit for bit, the values the same model gets unsharded -- for
meshes of 1, 2, 4 and 8 devices, 1-D and 2-D, row and column placements, native and portable,
elementwise and whole-tensor laws and user laws; each sharded draw runs on its devices with no
collective. Seeded multiinit initializers keep the layout too and give the unsharded values
(bit for bit where Keras calls them eagerly, within float rounding where Keras jits them onto
the layout, as it does for its own initializers).

The tox env ``keras-jax`` sets ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before
JAX starts. On the TensorFlow and torch backends this file defines no test: Keras has no
distribution there.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import multiinit as mi
import multiinit.keras

if keras.backend.backend() == "jax":
    import jax
    from jax.sharding import NamedSharding
    from keras import distribution as kd

    from multiinit.keras import sharded

    L = keras.layers
    DEVICES = 8

    @pytest.fixture(scope="module", autouse=True)
    def eight_devices():
        count = jax.device_count()
        assert count >= DEVICES, (
            f"Keras distribution tests need {DEVICES} devices and JAX has {count}: set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={DEVICES} before JAX starts "
            "(tox -e keras-jax does)"
        )

    def build(name: str = "dist") -> keras.Model:
        features, tokens = keras.Input((16,)), keras.Input((3,), dtype="int32")
        hidden = L.Dense(32, name="down")(L.Dense(64, name="up")(features))
        embedded = L.Flatten()(L.Embedding(40, 16, name="emb")(tokens))
        return keras.Model([features, tokens], [hidden, embedded], name=name)

    def distribution(mesh_shape: tuple[int, ...], placement: str) -> kd.ModelParallel:
        names = ("data", "model") if len(mesh_shape) == 2 else ("model",)
        mesh = kd.DeviceMesh(mesh_shape, names, devices=kd.list_devices()[: int(np.prod(mesh_shape))])
        layout = kd.LayoutMap(mesh)
        if len(mesh_shape) == 2:
            layout[".*kernel"] = ("data", "model")
            layout[".*embeddings"] = ("model", "data")
            layout[".*bias"] = ("model",)
        elif placement == "rows":
            layout[".*kernel"] = ("model", None)
            layout[".*embeddings"] = ("model", None)
            layout[".*bias"] = ("model",)
        else:
            layout[".*kernel"] = (None, "model")
            layout[".*embeddings"] = (None, "model")
            layout[".*bias"] = (None,)
        return kd.ModelParallel(layout_map=layout, batch_dim_name=names[0])

    MESHES = [
        ((1,), "rows"),
        ((2,), "rows"),
        ((4,), "columns"),
        ((8,), "rows"),
        ((8,), "columns"),
        ((2, 4), "2-D"),
    ]

    def custom_law(rng, shape, dtype):
        return rng.standard_normal(shape).astype(dtype)

    RULES = [
        ("up/kernel", mi.he_normal()),
        ("down/kernel", mi.mixture([(0.3, mi.zeros()), (0.7, mi.truncated_normal(std=0.2, low=-1, high=3))])),
        ("emb/embeddings", mi.orthogonal(gain=2.0)),
        ("up/bias", mi.custom(custom_law, name="tests.keras_sharded.law")),
        ("bias", mi.variance_scaling(1 / 3, "fan_in", "uniform")),
    ]

    def layouts(model) -> dict[str, object]:
        return {v.path: v.value.sharding for v in model.variables}

    def values(model) -> dict[str, np.ndarray]:
        return {v.path: np.asarray(v.value) for v in model.variables}

    @pytest.fixture(scope="module", params=[False, True], ids=["native", "portable"])
    def unsharded(request):
        return request.param, values(mi.apply(build(), RULES, seed=5, portable=request.param))

    @pytest.mark.parametrize("mesh_shape, placement", MESHES, ids=[f"{m}-{p}" for m, p in MESHES])
    def test_apply_keeps_every_layout_and_gives_the_unsharded_values(
        unsharded, mesh_shape, placement
    ) -> None:
        portable, expected = unsharded
        dist = distribution(mesh_shape, placement)
        with dist.scope():
            model = build()
        before = layouts(model)
        assert any(len(s.device_set) == int(np.prod(mesh_shape)) for s in before.values())
        mi.apply(model, RULES, seed=5, portable=portable)
        for v in model.variables:
            sharding = v.value.sharding
            assert sharding.is_equivalent_to(before[v.path], v.ndim), v.path
            assert np.array_equal(np.asarray(v.value), expected[v.path]), v.path

    def test_a_deferred_model_under_distribution_is_created_sharded_with_the_unsharded_values(
        unsharded,
    ) -> None:
        portable, expected = unsharded
        dist = distribution((2, 4), "2-D")
        with dist.scope():
            with keras.StatelessScope(initialize_variables=False):
                model = build()
            assert all(sharded.is_deferred(v) for v in model.variables)
            mi.apply(model, RULES, seed=5, portable=portable)  # inside the scope: Keras' layouts
        kernel = model.get_layer("up").kernel.value
        assert isinstance(kernel.sharding, NamedSharding) and tuple(kernel.sharding.spec) == ("data", "model")
        assert len(kernel.addressable_shards) == 8 and kernel.addressable_shards[0].data.shape == (8, 16)
        for v in model.variables:
            assert np.array_equal(np.asarray(v.value), expected[v.path]), v.path

    def test_each_device_draws_its_shard_with_no_collective() -> None:
        dist = distribution((8,), "columns")
        with dist.scope():
            model = build()
        sharded._JITTED.clear()
        mi.apply(model, {"kernel": mi.he_normal(), "bias": mi.zeros(), "embeddings": mi.normal()}, seed=1)
        kernel = model.get_layer("up").kernel.value
        compiled = [fn for key, fn in sharded._JITTED.items() if key[-2] == kernel.sharding]
        assert compiled, "the sharded kernel was not drawn by a jitted draw onto its sharding"
        for fn in compiled:
            text = fn.lower(jax.numpy.zeros(2, "uint32")).compile().as_text()
            for collective in (
                "all-gather",
                "all-reduce",
                "collective-permute",
                "all-to-all",
                "reduce-scatter",
            ):
                assert collective not in text
        assert [s.data.shape for s in kernel.addressable_shards] == [(16, 8)] * 8

    # ------------------------------------------------------------------ compiled initializers

    def seeded_model(make_init, units: int, features: int) -> keras.Model:
        init = make_init()  # one instance shared by two layers of the same shape
        inputs = keras.Input((features,))
        outputs = [L.Dense(units, kernel_initializer=init, name=name)(inputs) for name in ("a", "b")]
        return keras.Model(inputs, outputs, name="init")

    @pytest.mark.parametrize(
        "make_init",
        [
            lambda: mi.compile(mi.normal(std=0.02), "keras", seed=3),
            lambda: keras.initializers.RandomNormal(stddev=0.02, seed=3),
        ],
        ids=["multiinit", "keras"],
    )
    @pytest.mark.parametrize("units, features", [(64, 32), (4096, 2048)], ids=["eager", "jitted"])
    def test_seeded_initializers_keep_the_layout_and_give_the_unsharded_values(
        make_init, units, features
    ) -> None:
        # Keras draws a variable eagerly and then distributes it, unless it is at least 250 MiB
        # counted over the mesh (here 4096 x 2048 on 8 devices): then it jits the initializer
        # onto the layout, and XLA's fused multiply-add may round the last bit differently.
        mesh = kd.DeviceMesh((8,), ("model",), devices=kd.list_devices()[:8])
        layout = kd.LayoutMap(mesh)
        layout[".*kernel"] = (None, "model")
        with kd.ModelParallel(layout_map=layout, batch_dim_name="model").scope():
            ours = seeded_model(make_init, units, features)
        plain = seeded_model(make_init, units, features)
        for a, b in zip(ours.layers[1:], plain.layers[1:], strict=True):
            got, want = a.kernel.value, np.asarray(b.kernel.value)
            assert tuple(got.sharding.spec) == (None, "model") and len(got.addressable_shards) == 8
            got = np.asarray(got)
            if units == 64:
                assert np.array_equal(got, want), a.name
            else:
                np.testing.assert_allclose(
                    got, want, rtol=0, atol=4 * np.finfo(np.float32).eps * np.abs(want).max()
                )
        # A multiinit initializer advances per call, sharded or not (two layers differ); Keras'
        # int-seeded one returns the same values on every call.
        first, second = (np.asarray(layer.kernel.value) for layer in ours.layers[1:])
        advances = isinstance(ours.layers[1].kernel_initializer, mi.keras.MultiinitInitializer)
        assert np.array_equal(first, second) != advances
