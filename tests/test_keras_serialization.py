"""Config round trips, Keras (de)serialization, and a saved model loading in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import multiinit as mi
import multiinit.keras as mik

from matrix import SPECS


def draw(initializer, shape=(6, 5)) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(initializer(shape, dtype="float32")))


@pytest.mark.parametrize("spec", SPECS, ids=[repr(s) for s in SPECS])
def test_config_round_trips_through_json(spec) -> None:
    shape = (3, 3, 4, 6) if isinstance(spec, mi.spec.Dirac) else (6, 5)
    original = mi.compile(spec, "keras", seed=17)
    config = json.loads(json.dumps(original.get_config()))
    assert config == {"spec": spec.to_dict(), "seed": 17}
    rebuilt = mik.MultiinitInitializer.from_config(config)
    assert rebuilt.spec == spec and rebuilt.seed == 17
    assert np.array_equal(draw(original, shape), draw(rebuilt, shape))  # both at call 0


def test_keras_serializes_it_under_its_registered_name() -> None:
    init = mik.mixture([(0.5, mi.he_normal()), (0.5, mi.zeros())], seed=2)
    serialized = keras.initializers.serialize(init)
    assert serialized["registered_name"] == "multiinit>Initializer"
    assert serialized["module"] == "multiinit.keras"
    assert keras.saving.get_registered_object("multiinit>Initializer") is mik.MultiinitInitializer
    for restored in (
        keras.initializers.deserialize(serialized),
        keras.initializers.get(json.loads(json.dumps(serialized))),
        init.clone(),
    ):
        assert isinstance(restored, mik.MultiinitInitializer)
        assert restored.spec == init.spec and restored.seed == 2


def test_a_cloned_model_keeps_the_initializers() -> None:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, kernel_initializer=mik.he_uniform(seed=1))]
    )
    clone = keras.models.clone_model(model)
    assert clone.layers[0].kernel_initializer.spec == mi.he_uniform()


def test_bad_configs_are_refused_without_running_anything() -> None:
    with pytest.raises(mi.SpecError, match="'spec' key"):
        mik.MultiinitInitializer.from_config({"seed": 1})
    with pytest.raises(mi.SpecError, match=r"\['extra'\]"):
        mik.MultiinitInitializer.from_config(
            {"spec": {"kind": "constant", "value": 0.0}, "seed": None, "extra": 1}
        )
    with pytest.raises(mi.SpecError, match=r"'never\.registered' is not registered"):
        mik.MultiinitInitializer.from_config({"spec": {"kind": "custom", "name": "never.registered"}})
    with pytest.raises(mi.SpecError, match="kind="):
        mik.MultiinitInitializer.from_config({"spec": {"kind": "__import__", "name": "os"}})


# --------------------------------------------------------------------------- a fresh process

_CUSTOM_NAME = "tests.keras.seed_chapter_my_init"

_BUILD = textwrap.dedent(f"""
    import json, sys
    import numpy as np
    import keras
    import multiinit as mi
    from multiinit import keras as mik
    from matrix import seed_chapter_my_init

    custom = mik.custom(seed_chapter_my_init, name={_CUSTOM_NAME!r}, seed=5)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, kernel_initializer=mik.he_normal(seed=3), bias_initializer=mik.zeros(),
                           name="a"),
        keras.layers.Dense(16, kernel_initializer=mik.mixture(
            [(0.25, mi.uniform(5, 10)), (0.5, mi.zeros()), (0.25, mi.uniform(-10, -5))]), name="b"),
        keras.layers.Dense(4, kernel_initializer=mik.trunc_normal(std=0.02, seed=1), name="c"),
        keras.layers.Dense(4, kernel_initializer=custom, name="d"),
    ], name="saved")
    model.save(sys.argv[1] + "/m.keras")
    np.savez(sys.argv[1] + "/weights.npz", *[v.numpy() for v in model.weights])
    configs = {{l.name: l.kernel_initializer.get_config() for l in model.layers}}
    fresh = {{
        name: keras.ops.convert_to_numpy(mik.MultiinitInitializer.from_config(c)((5, 4))).tolist()
        for name, c in configs.items()
    }}
    json.dump({{"configs": configs, "fresh": fresh}}, open(sys.argv[1] + "/expected.json", "w"))
""")

_LOAD = textwrap.dedent(f"""
    import json, sys
    import numpy as np
    # Only "import multiinit", before or after keras: either way the saved classes are found.
    if sys.argv[3] == "keras-first":
        import keras
        import multiinit as mi
    else:
        import multiinit as mi
        import keras
    if sys.argv[2] == "register":
        mi.custom(lambda rng, shape, dtype: np.zeros(shape), name={_CUSTOM_NAME!r})
    assert "matrix" not in sys.modules and "tests" not in sys.modules
    model = keras.models.load_model(sys.argv[1] + "/m.keras")
    expected = json.load(open(sys.argv[1] + "/expected.json"))
    weights = np.load(sys.argv[1] + "/weights.npz")
    # By position: a loaded Sequential's paths lack the model's name ("a/kernel", not "saved/a/kernel").
    assert len(model.weights) == len(weights.files)
    for i, v in enumerate(model.weights):
        assert np.array_equal(v.numpy(), weights["arr_%d" % i]), v.path
    for layer in model.layers:
        init = layer.kernel_initializer
        assert type(init).__name__ == "MultiinitInitializer", type(init)
        assert init.get_config() == expected["configs"][layer.name], layer.name
        # Seeded draws replay across processes ("b" is unseeded; "d"'s name is bound to another
        # function in this process).
        if init.seed is not None and layer.name != "d":
            values = keras.ops.convert_to_numpy(type(init).from_config(init.get_config())((5, 4))).tolist()
            assert values == expected["fresh"][layer.name], layer.name
    print("loaded", len(model.weights))
""")


def _run(code: str, *args: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def test_a_saved_model_loads_in_a_fresh_process(tmp_path) -> None:
    tests_dir = os.path.dirname(__file__)
    built = _run(_BUILD, str(tmp_path), cwd=tests_dir)
    assert built.returncode == 0, built.stderr[-3000:]
    for order in ("keras-first", "multiinit-first"):
        loaded = _run(_LOAD, str(tmp_path), "register", order, cwd=tmp_path)
        assert loaded.returncode == 0, (order, loaded.stderr[-3000:])
        assert loaded.stdout.strip() == "loaded 8"
    # A custom law travels by name only: a process that never registered it is told which.
    refused = _run(_LOAD, str(tmp_path), "no", "keras-first", cwd=tmp_path)
    assert refused.returncode != 0
    assert f"name={_CUSTOM_NAME!r} is not registered in this process" in refused.stderr


# --------------------------------------------------------------------------- the drop-ins

_BUILD_DROPINS = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    from multiinit.keras import initializers

    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, kernel_initializer=initializers.HeNormal(seed=3),
                           bias_initializer=initializers.Constant(np.linspace(0, 1, 16)), name="a"),
        keras.layers.Dense(8,
                           kernel_initializer=initializers.VarianceScaling(2.0, "fan_out", "uniform", seed=1),
                           bias_initializer="zeros", name="b"),
        keras.layers.Dense(8, kernel_initializer=initializers.Identity(gain=3.0), name="c"),
    ], name="saved")
    model.save(sys.argv[1] + "/dropins.keras")
    np.savez(sys.argv[1] + "/dropins.npz", *[v.numpy() for v in model.weights])
""")

_LOAD_DROPINS = textwrap.dedent("""
    import sys
    import numpy as np
    import multiinit  # only this: the registry imports the Keras adapter once Keras is imported
    import keras

    model = keras.models.load_model(sys.argv[1] + "/dropins.keras")
    weights = np.load(sys.argv[1] + "/dropins.npz")
    for i, v in enumerate(model.weights):
        assert np.array_equal(v.numpy(), weights["arr_%d" % i]), v.path
    a, b, c = model.layers
    from multiinit.keras import initializers
    assert type(a.kernel_initializer) is initializers.HeNormal and a.kernel_initializer.seed == 3
    assert type(a.bias_initializer) is initializers.Constant
    assert type(b.kernel_initializer) is initializers.VarianceScaling and b.kernel_initializer.scale == 2.0
    assert type(c.kernel_initializer) is initializers.Identity and c.kernel_initializer.gain == 3.0
    # Rebuilt from the loaded configs, the int-seeded drop-ins give the saved weights again.
    clone = keras.models.clone_model(model)
    assert np.array_equal(clone.layers[0].kernel.numpy(), weights["arr_0"])
    assert np.array_equal(clone.layers[0].bias.numpy(), weights["arr_1"])
    assert np.array_equal(clone.layers[2].kernel.numpy(), weights["arr_4"])
    print("loaded", len(model.weights))
""")


def test_a_model_saved_with_dropins_loads_in_a_fresh_process_that_imported_multiinit(tmp_path) -> None:
    built = _run(_BUILD_DROPINS, str(tmp_path), cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    config = json.loads(__import__("zipfile").ZipFile(tmp_path / "dropins.keras").read("config.json"))
    saved = config["config"]["layers"][1]["config"]["kernel_initializer"]
    # What the file names: the drop-in's module and registered name, with Keras' own config.
    assert saved == {
        "module": "multiinit.keras.initializers",
        "class_name": "HeNormal",
        "config": {"seed": 3, "input_axes": None, "output_axes": None},
        "registered_name": "multiinit>HeNormal",
    }
    loaded = _run(_LOAD_DROPINS, str(tmp_path), cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip() == "loaded 6"


def test_dropin_configs_round_trip_through_json_and_keras() -> None:
    from multiinit.keras import initializers as MI

    for init in (
        MI.GlorotUniform(seed=2, input_axes=[0], output_axes=[1, 2]),
        MI.Constant([1.0, 2.0]),
        MI.STFT(window=np.hanning(8)),
        MI.Orthogonal(gain=2.0, seed=keras.random.SeedGenerator(4)),
        MI.Identity(0.5),
    ):
        text = json.dumps(keras.initializers.serialize(init))
        for restored in (
            MI.deserialize(json.loads(text)),
            keras.initializers.deserialize(json.loads(text)),
            keras.initializers.get(json.loads(text)),
        ):
            assert type(restored) is type(init)
            assert restored.spec == init.spec
