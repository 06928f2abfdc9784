"""Keras models saved by Keras 3 itself (torch backend) load through the importer and match
``model.predict`` within rtol 1e-5 / atol 1e-5, at batch sizes 1 and 4."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("h5py")
keras = pytest.importorskip("keras")

import engine  # noqa: E402
from tests.unit.importers import keras_models as km  # noqa: E402

RTOL = ATOL = 1e-5
BATCHES = (1, 4)


def _save(model: Any, tmp_path: Path, fmt: str) -> Path:
    version = tmp_path / "1"
    version.mkdir(parents=True, exist_ok=True)
    model.save(version / f"model.{fmt}")
    return version


def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def _check(model: Any, loaded: engine.Model, x: np.ndarray) -> None:
    want = np.asarray(model.predict(x, verbose=0))
    got = loaded.predict(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_tutorial_cnn(tmp_path: Path, fmt: str) -> None:
    keras.utils.set_random_seed(0)
    model = km.tutorial_cnn()
    loaded = engine.load(_save(model, tmp_path, fmt))
    sig = loaded.signature()
    input_layer = model.inputs[0]._keras_history[0]  # the InputLayer that made the input
    assert list(sig.inputs) == [input_layer.name]
    assert list(sig.outputs) == [model.layers[-1].name]
    assert sig.inputs[input_layer.name].shape == (None, 32, 32, 3)
    for n in BATCHES:
        _check(model, loaded, _images(n, (32, 32, 3), n))


def test_save_tutorial_cnn_helper(tmp_path: Path) -> None:
    model = km.save_tutorial_cnn(tmp_path / "kcnn" / "1" / "model.keras")
    loaded = engine.load(tmp_path / "kcnn" / "1")
    _check(model, loaded, _images(2, (32, 32, 3), 7))


def test_tutorial_cnn_dense_on_rank4(tmp_path: Path) -> None:
    keras.utils.set_random_seed(1)
    model = km.tutorial_cnn_no_flatten()
    loaded = engine.load(_save(model, tmp_path, "keras") / "model.keras")  # the file itself
    assert loaded.signature().outputs[model.layers[-1].name].shape == (None, 4, 4, 10)
    for n in BATCHES:
        _check(model, loaded, _images(n, (32, 32, 3), 10 + n))


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_residual_cnn(tmp_path: Path, fmt: str) -> None:
    keras.utils.set_random_seed(2)
    model = km.residual_cnn()
    loaded = engine.load(_save(model, tmp_path, fmt))
    assert list(loaded.signature().inputs) == ["image"]
    assert list(loaded.signature().outputs) == ["probs"]
    for n in BATCHES:
        _check(model, loaded, _images(n, (16, 16, 3), 20 + n))


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_embedding_lstm(tmp_path: Path, fmt: str) -> None:
    keras.utils.set_random_seed(3)
    model = km.embedding_lstm()
    loaded = engine.load(_save(model, tmp_path, fmt))
    assert list(loaded.signature().inputs) == ["tokens"]
    assert list(loaded.signature().outputs) == ["label"]
    rng = np.random.default_rng(3)
    for n in BATCHES:
        _check(model, loaded, rng.integers(0, 100, size=(n, 12)).astype(np.int32))


def test_float_lstm(tmp_path: Path) -> None:
    keras.utils.set_random_seed(4)
    model = km.float_lstm()
    loaded = engine.load(_save(model, tmp_path, "keras"))
    for n in BATCHES:
        _check(model, loaded, _images(n, (10, 6), 30 + n))
