"""Keras GRU and Bidirectional(LSTM | GRU) through the importer (onto GRUSeq / LSTMSeq),
against Keras 3 itself (torch backend) within rtol 1e-5 / atol 1e-5: both GRU reset modes,
with and without bias, every merge mode, batch 1 and 4, two sequence lengths where the time
axis is dynamic, and the one-message report of the recurrent options we cannot serve."""

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
from engine.errors import UnsupportedOpError  # noqa: E402

layers = keras.layers
RTOL = ATOL = 1e-5
SHAPES = ((1, 3), (4, 9))  # (batch, time steps)


def _save(model: Any, tmp_path: Path, fmt: str) -> Path:
    version = tmp_path / "1"
    version.mkdir(parents=True, exist_ok=True)
    model.save(version / f"model.{fmt}")
    return version


def _check(model: Any, loaded: engine.Model, x: np.ndarray) -> None:
    want = np.asarray(model.predict(x, verbose=0))
    got = loaded.predict(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _floats(n: int, t: int, f: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, t, f)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_embedding_gru_stack(tmp_path: Path, fmt: str) -> None:
    keras.utils.set_random_seed(20)
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    x = layers.Embedding(50, 8)(tokens)
    x = layers.GRU(6, return_sequences=True)(x)
    x = layers.GRU(5)(x)
    model = keras.Model(tokens, layers.Dense(3, activation="softmax", name="label")(x))
    loaded = engine.load(_save(model, tmp_path, fmt))
    assert list(loaded.signature().outputs) == ["label"]
    rng = np.random.default_rng(20)
    for n in (1, 4):
        _check(model, loaded, rng.integers(0, 50, size=(n, 12)).astype(np.int32))


@pytest.mark.parametrize("use_bias", [True, False])
def test_gru_reset_before_on_floats(tmp_path: Path, use_bias: bool) -> None:
    keras.utils.set_random_seed(21)
    model = keras.Sequential([
        keras.Input((None, 5)),
        layers.GRU(7, reset_after=False, use_bias=use_bias, return_sequences=True),
        layers.GRU(4, reset_after=False, use_bias=use_bias),
    ])
    if use_bias:  # Keras starts biases at zero: make them count
        for layer in model.layers:
            k, r, b = layer.get_weights()
            layer.set_weights([k, r, np.random.default_rng(21).normal(size=b.shape)])
    loaded = engine.load(_save(model, tmp_path, "keras"))
    (spec,) = loaded.signature().inputs.values()
    assert spec.shape == (None, None, 5)
    for n, t in SHAPES:
        _check(model, loaded, _floats(n, t, 5, n + t))


@pytest.mark.parametrize("last", ["GRU", "LSTM"])
def test_gru_without_bias_then_go_backwards(tmp_path: Path, last: str) -> None:
    keras.utils.set_random_seed(22)
    model = keras.Sequential([
        keras.Input((None, 4)),
        layers.GRU(6, use_bias=False, return_sequences=True),
        getattr(layers, last)(3, go_backwards=True),  # served: only its final h is returned
    ])
    k, r, b = model.layers[1].get_weights()  # a random bias, so it counts
    model.layers[1].set_weights([k, r, np.random.default_rng(22).normal(size=b.shape)])
    loaded = engine.load(_save(model, tmp_path, "keras"))
    for n, t in SHAPES:
        _check(model, loaded, _floats(n, t, 4, 10 + n + t))


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_bidirectional_lstm_concat_then_gru_sum(tmp_path: Path, fmt: str) -> None:
    keras.utils.set_random_seed(23)
    x = keras.Input((None, 5), name="frames")
    y = layers.Bidirectional(layers.LSTM(4, return_sequences=True))(x)
    y = layers.Bidirectional(layers.GRU(3), merge_mode="sum")(y)
    model = keras.Model(x, layers.Dense(2, name="out")(y))
    loaded = engine.load(_save(model, tmp_path, fmt))
    assert loaded.signature().outputs["out"].shape == (None, 2)
    for n, t in SHAPES:
        _check(model, loaded, _floats(n, t, 5, 20 + n + t))


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_bidirectional_merge_modes_sequences(tmp_path: Path, mode: str, kind: str) -> None:
    keras.utils.set_random_seed(24)
    rnn = getattr(layers, kind)(5, return_sequences=True)
    model = keras.Sequential([keras.Input((None, 3)), layers.Bidirectional(rnn, merge_mode=mode)])
    loaded = engine.load(_save(model, tmp_path, "keras"))
    for n, t in SHAPES:
        # the backward half is time-aligned with the input, as Keras re-reverses it
        _check(model, loaded, _floats(n, t, 3, 30 + n + t))


def test_bidirectional_explicit_backward_layer_on_embedding(tmp_path: Path) -> None:
    keras.utils.set_random_seed(25)
    backward = layers.GRU(4, reset_after=False, use_bias=False, go_backwards=True)
    model = keras.Sequential([
        keras.Input((None,)),  # float token ids: Embedding truncates them
        layers.Embedding(30, 6),
        layers.Bidirectional(layers.GRU(4), backward_layer=backward, merge_mode="ave"),
        layers.Dense(2),
    ])
    loaded = engine.load(_save(model, tmp_path, "keras"))
    rng = np.random.default_rng(25)
    for n, t in SHAPES:
        _check(model, loaded, rng.integers(0, 30, size=(n, t)).astype(np.float32))


def test_unsupported_recurrent_options_in_one_message(tmp_path: Path) -> None:
    x = keras.Input((6, 4), name="x")
    a = layers.GRU(3, activation="relu", return_sequences=True, name="relu_gru")(x)
    b = layers.GRU(3, go_backwards=True, return_sequences=True, name="back_gru")(x)
    c = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode=None,
                             name="no_merge")(x)
    d = layers.Bidirectional(layers.SimpleRNN(3, return_sequences=True), name="simple")(x)
    e = layers.Bidirectional(layers.GRU(3, recurrent_activation="hard_sigmoid",
                                        return_sequences=True), name="hard")(x)
    model = keras.Model(x, [a, b, *c, d, e])
    with pytest.raises(UnsupportedOpError) as info:
        engine.load(_save(model, tmp_path, "keras"))
    msg = str(info.value)
    for expected in ("'relu_gru' (GRU): activation='relu' is not supported",
                     "'back_gru' (GRU): go_backwards=True with return_sequences=True is not",
                     "'no_merge' (Bidirectional): merge_mode=None is not supported",
                     "'simple' (Bidirectional): wrapped layer: layer type 'SimpleRNN'",
                     "'hard' (Bidirectional): wrapped layer: recurrent_activation="
                     "'hard_sigmoid'"):
        assert expected in msg, msg
    assert "5 unsupported" in msg, msg
