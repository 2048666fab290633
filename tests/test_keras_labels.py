"""Keras runs on three backends, and the report keeps them apart: results recorded in this env
carry the label of the backend Keras runs on (``keras`` on TensorFlow, ``keras-jax``,
``keras-torch``), and ``multiinit report`` shows one column for each, every cell checked."""

from __future__ import annotations

import keras
import pytest

from multiinit import report

from conftest import result_label
from test_report import numpy_records, write, write_portable  # noqa: F401  (fixture)

EXPECTED = {"tensorflow": "keras", "jax": "keras-jax", "torch": "keras-torch"}
KERAS_COLUMNS = ("keras", "keras-jax", "keras-torch")


def test_this_env_records_keras_under_its_backend_label() -> None:
    assert result_label("keras") == EXPECTED[keras.backend.backend()]
    assert result_label("numpy") == "numpy" and result_label("torch") == "torch"


def test_the_report_has_a_column_per_keras_backend_and_checks_each(
    tmp_path,
    numpy_records,  # noqa: F811 - the fixture imported above
    capsys,
) -> None:
    backends = ["numpy", *KERAS_COLUMNS]
    for backend in backends:
        write(tmp_path, backend, numpy_records)
    for backend in KERAS_COLUMNS:
        write_portable(tmp_path, backend)
    args = [
        "report",
        "--results",
        str(tmp_path),
        "--backends",
        ",".join(backends),
        "--no-pictures",
        "--require-portable",
    ]
    assert report.main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[-3:] == list(KERAS_COLUMNS)
    # One Keras backend disagreeing fails the report and is named.
    broken = [dict(r, verdict="fail") if r["spec"] == "he_normal()" else r for r in numpy_records]
    write(tmp_path, "keras-torch", broken)
    assert report.main(args) == 1
    assert "DISAGREES: backend keras-torch, spec he_normal()" in capsys.readouterr().err


@pytest.mark.parametrize("backend, env", [("keras-jax", "keras-jax"), ("keras-torch", "keras-torch")])
def test_a_missing_keras_backend_names_its_tox_env(
    tmp_path,
    numpy_records,  # noqa: F811 - the fixture imported above
    capsys,
    backend,
    env,
) -> None:
    write(tmp_path, "numpy", numpy_records)
    assert (
        report.main(["report", "--results", str(tmp_path), "--backends", f"numpy,{backend}", "--no-pictures"])
        == 1
    )
    err = capsys.readouterr().err
    assert f"no results for backend {backend!r}" in err and f"tox -e {env}" in err
