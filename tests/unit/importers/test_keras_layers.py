"""Breadth of the Keras importer: every supported layer family, merges and shared layers,
nested models, the Keras 2 legacy .h5 layout, and the one-message report of everything a
model uses that the engine cannot serve. References: Keras 3 itself (torch backend),
compared within rtol 1e-5 / atol 1e-5."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

h5py = pytest.importorskip("h5py")
keras = pytest.importorskip("keras")

import engine  # noqa: E402
from engine.errors import UnsupportedOpError  # noqa: E402
from tests.unit.importers import keras_models as km  # noqa: E402

layers = keras.layers
RTOL = ATOL = 1e-5


def _save(model: Any, tmp_path: Path, fmt: str) -> Path:
    version = tmp_path / "1"
    version.mkdir(parents=True, exist_ok=True)
    model.save(version / f"model.{fmt}")
    return version


def _compare(model: Any, loaded: engine.Model, feeds: dict[str, np.ndarray]) -> None:
    sig = loaded.signature()
    args = [feeds[name] for name in sig.inputs]
    want = model.predict(args if len(args) > 1 else args[0], verbose=0)
    want = want if isinstance(want, list) else [want]
    got = loaded.run(feeds)
    assert list(got) == list(sig.outputs)
    assert len(got) == len(want)
    for g, w in zip(got.values(), want, strict=True):
        np.testing.assert_allclose(g, np.asarray(w), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("n", [1, 4])
def test_image_layers(tmp_path: Path, fmt: str, n: int) -> None:
    keras.utils.set_random_seed(5)
    model = km.image_zoo()
    loaded = engine.load(_save(model, tmp_path, fmt))
    x = np.random.default_rng(n).uniform(0, 255, size=(n, 12, 12, 3)).astype(np.float32)
    _compare(model, loaded, {"pixels": x})


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_merges_shared_layer_and_two_outputs(tmp_path: Path, fmt: str) -> None:
    keras.utils.set_random_seed(6)
    model = km.merges()
    loaded = engine.load(_save(model, tmp_path, fmt))
    sig = loaded.signature()
    assert list(sig.inputs) == ["a", "b"]
    assert list(sig.outputs) == ["leaky", "clipped"]
    rng = np.random.default_rng(6)
    for n in (1, 4):
        _compare(model, loaded, {k: rng.normal(size=(n, 6)).astype(np.float32) for k in "ab"})


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_nested_sequential(tmp_path: Path, fmt: str) -> None:
    keras.utils.set_random_seed(7)
    model = km.nested()
    loaded = engine.load(_save(model, tmp_path, fmt))
    assert list(loaded.signature().outputs) == ["head"]
    x = np.random.default_rng(7).normal(size=(4, 8)).astype(np.float32)
    _compare(model, loaded, {"x": x})


def test_embedding_on_float_input_and_dynamic_length(tmp_path: Path) -> None:
    keras.utils.set_random_seed(8)
    # a Sequential's input is float32 unless told: Keras' Embedding truncates it to int32
    model = keras.Sequential([keras.Input((None,)), layers.Embedding(20, 4),
                              layers.LSTM(5), layers.Dense(2)])
    loaded = engine.load(_save(model, tmp_path, "keras"))
    (spec,) = loaded.signature().inputs.values()
    assert spec.shape == (None, None) and spec.dtype == "float32"
    rng = np.random.default_rng(8)
    for n, t in ((1, 3), (4, 9)):
        tokens = rng.integers(0, 20, size=(n, t)).astype(np.float32)
        _compare(model, loaded, {spec.name: tokens})


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_text_cnn_1d(tmp_path: Path, fmt: str) -> None:
    keras.utils.set_random_seed(11)
    model = km.text_cnn()
    loaded = engine.load(_save(model, tmp_path, fmt))
    rng = np.random.default_rng(11)
    for n in (1, 4):
        _compare(model, loaded, {"ids": rng.integers(0, 50, size=(n, 20)).astype(np.int32)})


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_attention_block(tmp_path: Path, fmt: str) -> None:
    keras.utils.set_random_seed(12)
    model = km.attention_block()
    loaded = engine.load(_save(model, tmp_path, fmt))
    rng = np.random.default_rng(12)
    for n in (1, 4):
        _compare(model, loaded, {"tokens": rng.normal(size=(n, 6, 8)).astype(np.float32)})


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_keras_ops_in_functional_graph(tmp_path: Path, fmt: str) -> None:
    keras.utils.set_random_seed(13)
    x = keras.Input((5,), name="x")
    y = layers.Dense(5)(x)
    z = keras.ops.tanh((y + x) * 2.0) - 0.5
    z = 1.0 / (keras.ops.abs(z) + 1.0)
    model = keras.Model(x, layers.Dense(2, name="out")(keras.ops.maximum(z, y)))
    loaded = engine.load(_save(model, tmp_path, fmt))
    for n in (1, 4):
        _compare(model, loaded, {"x": np.random.default_rng(n).normal(size=(n, 5))
                                 .astype(np.float32)})


# --- Keras 2 legacy .h5 ---------------------------------------------------------------------


def _tensors(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value] if value.get("class_name") == "__keras_tensor__" else []
    if isinstance(value, list):
        return [t for v in value for t in _tensors(v)]
    return []


def _keras2_layer(raw: dict[str, Any]) -> dict[str, Any]:
    config = dict(raw["config"])
    if raw["class_name"] == "InputLayer":
        config["batch_input_shape"] = config.pop("batch_shape")
    if isinstance(config.get("dtype"), dict):
        config["dtype"] = config["dtype"]["config"]["name"]
    nodes = [[[*t["config"]["keras_history"], {}] for t in _tensors(node["args"])]
             for node in raw.get("inbound_nodes", [])]
    return {"class_name": raw["class_name"], "config": config, "name": raw["name"],
            "inbound_nodes": nodes}


def write_keras2_h5(model: Any, path: Path, sequential: bool = False) -> None:
    """``model`` (functional) written the way tf.keras 2 wrote .h5 files: ``inbound_nodes`` as
    ``[[name, node, tensor, kwargs], ...]``, ``batch_input_shape``, weights as ``<layer>/<w>:0``.
    With ``sequential``, a Keras 2 Sequential without InputLayer (the first layer carries the
    input shape)."""
    cfg = json.loads(json.dumps(model.get_config()))  # tuples -> lists, as in a file
    raws = [_keras2_layer(r) for r in cfg["layers"]]
    if sequential:
        first, rest = raws[0], raws[1:]
        rest[0]["config"]["batch_input_shape"] = first["config"]["batch_input_shape"]
        top = {"class_name": "Sequential",
               "config": {"name": cfg["name"], "layers": [
                   {"class_name": r["class_name"], "config": r["config"]} for r in rest]}}
    else:
        def refs(v: Any) -> list[Any]:
            return [v] if isinstance(v[0], str) else v
        top = {"class_name": "Functional",
               "config": {"name": cfg["name"], "layers": raws,
                          "input_layers": refs(cfg["input_layers"]),
                          "output_layers": refs(cfg["output_layers"])}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(top)
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [x.name for x in model.layers]
        for layer in model.layers:
            lg = group.create_group(layer.name)
            names = [f"{layer.name}/{w.path.split('/')[-1]}:0" for w in layer.weights]
            lg.attrs["weight_names"] = names
            for name, value in zip(names, layer.get_weights(), strict=True):
                lg.create_dataset(name, data=value)


def test_keras2_h5_functional(tmp_path: Path) -> None:
    keras.utils.set_random_seed(9)
    model = km.residual_cnn()
    (tmp_path / "1").mkdir()
    write_keras2_h5(model, tmp_path / "1" / "model.h5")
    loaded = engine.load(tmp_path / "1")
    x = np.random.default_rng(9).normal(size=(4, 16, 16, 3)).astype(np.float32)
    _compare(model, loaded, {"image": x})


def test_keras2_h5_sequential_without_input_layer(tmp_path: Path) -> None:
    keras.utils.set_random_seed(10)
    model = km.embedding_lstm()
    (tmp_path / "1").mkdir()
    write_keras2_h5(model, tmp_path / "1" / "model.h5", sequential=True)
    loaded = engine.load(tmp_path / "1" / "model.h5")
    (name,) = loaded.signature().inputs
    # Keras 2's name for a Sequential's implicit input: "<first layer>_input"
    assert name == f"{model.layers[1].name}_input"
    tokens = np.random.default_rng(10).integers(0, 100, size=(3, 12)).astype(np.int32)
    _compare(model, loaded, {name: tokens})


# --- what cannot be served ------------------------------------------------------------------


def test_unsupported_layers_and_options_in_one_message(tmp_path: Path) -> None:
    inputs = keras.Input((8, 8, 3), name="img")
    x = layers.ZeroPadding2D(1, name="pad")(inputs)
    x = layers.Conv2D(4, 3, data_format="channels_first", name="cf_conv")(x)
    x = layers.Conv2D(4, 3, activation="elu", name="elu_conv")(x)
    x = layers.Reshape((-1, 4))(x)
    x = layers.LSTM(4, recurrent_activation="hard_sigmoid", return_sequences=True,
                    name="hard_lstm")(x)
    x = layers.GRU(3, activation="relu", name="gru")(x)
    x = keras.ops.mean(x, axis=-1, keepdims=True)
    model = keras.Model(inputs, x)
    path = _save(model, tmp_path, "keras")
    with pytest.raises(UnsupportedOpError) as info:
        engine.load(path)
    msg = str(info.value)
    assert "6 unsupported" in msg
    for expected in ("'pad' (ZeroPadding2D): layer type is not supported",
                     "'cf_conv' (Conv2D): data_format='channels_first'",
                     "'elu_conv' (Conv2D): activation='elu'",
                     "'hard_lstm' (LSTM): recurrent_activation='hard_sigmoid'",
                     "'gru' (GRU): activation='relu' is not supported",
                     "(Mean): keras.ops call is not supported"):
        assert expected in msg, msg


def test_not_a_keras_file(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(engine.errors.ModelFormatError, match="neither a Keras 3"):
        engine.load(tmp_path / "1")
