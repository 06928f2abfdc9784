"""Keras models the importer tests (and the serving integration test) build and save.

Keras runs on its torch backend here; ``KERAS_BACKEND`` must be set before keras is first
imported, so this module sets it (a process that already imported keras keeps its backend).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

__all__ = [
    "embedding_lstm",
    "float_lstm",
    "randomize_batchnorm",
    "residual_cnn",
    "save_tutorial_cnn",
    "tutorial_cnn",
    "tutorial_cnn_no_flatten",
]


def tutorial_cnn() -> Any:
    """The TensorFlow CNN tutorial's model, exactly (CIFAR-10 sized input)."""
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10),
    ])


def tutorial_cnn_no_flatten() -> Any:
    """The tutorial CNN without Flatten: Dense on the rank-4 tensor acts on the last axis."""
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.Dense(64, activation="relu"),
        layers.Dense(10),
    ])


def save_tutorial_cnn(path: str | os.PathLike[str], seed: int = 0) -> Any:
    """Save the tutorial CNN (random weights from ``seed``) with Keras itself as ``path``
    (e.g. ``<models>/kcnn/1/model.keras``); returns the Keras model for reference outputs."""
    keras.utils.set_random_seed(seed)
    model = tutorial_cnn()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save(target)
    return model


def randomize_batchnorm(model: Any, seed: int = 1) -> None:
    """Give every BatchNormalization non-trivial gamma, beta and moving statistics."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            values = [rng.uniform(0.5, 1.5, s) if i in (0, 3) else rng.normal(0, 0.3, s)
                      for i, s in enumerate(shapes)]
            layer.set_weights([v.astype("float32") for v in values])


def residual_cnn() -> Any:
    """A small functional ResNet: Conv-BN-ReLU blocks with Add skips (one strided with a
    1x1 projection), global average pooling and a Dense head."""
    def block(x: Any, filters: int, stride: int, name: str) -> Any:
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                          name=f"{name}_conv1")(x)
        y = layers.BatchNormalization(name=f"{name}_bn1")(y)
        y = layers.ReLU(name=f"{name}_relu1")(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
        y = layers.BatchNormalization(name=f"{name}_bn2")(y)
        if stride != 1 or x.shape[-1] != filters:
            x = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj")(x)
        y = layers.Add(name=f"{name}_add")([x, y])
        return layers.Activation("relu", name=f"{name}_out")(y)

    inputs = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu")(x)
    x = block(x, 8, 1, "b1")
    x = block(x, 16, 2, "b2")
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(5, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="resnet_small")
    randomize_batchnorm(model)
    return model


def embedding_lstm(vocab: int = 100, seq: int = 12) -> Any:
    """Embedding -> LSTM(return_sequences) -> LSTM -> Dense softmax, on int32 token ids."""
    inputs = keras.Input((seq,), dtype="int32", name="tokens")
    x = layers.Embedding(vocab, 16)(inputs)
    x = layers.LSTM(24, return_sequences=True)(x)
    x = layers.LSTM(12)(x)
    outputs = layers.Dense(4, activation="softmax", name="label")(x)
    return keras.Model(inputs, outputs)


def float_lstm(seq: int = 10, features: int = 6) -> Any:
    """A Sequential LSTM on float features with a Dense applied to every step."""
    return keras.Sequential([
        keras.Input((seq, features)),
        layers.LSTM(8, return_sequences=True),
        layers.Dense(3),
    ])


def image_zoo() -> Any:
    """Most image layers the importer knows, with non-default options."""
    inputs = keras.Input((12, 12, 3), name="pixels")
    x = layers.Rescaling(1.0 / 255, offset=-0.5)(inputs)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="gelu")(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    x = layers.SeparableConv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(8, 3, dilation_rate=2, groups=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(negative_slope=0.1)(x)
    x = layers.AveragePooling2D(3, strides=1, padding="same")(x)
    x = layers.ReLU(max_value=6.0)(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.SpatialDropout2D(0.3)(x)
    a = layers.GlobalMaxPooling2D()(x)
    b = layers.GlobalAveragePooling2D()(x)
    x = layers.Concatenate()([a, b])
    x = layers.Dense(6, activation="tanh")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.LayerNormalization()(x)
    outputs = layers.Softmax(name="probs")(x)
    model = keras.Model(inputs, outputs, name="zoo")
    randomize_batchnorm(model)
    return model


def merges() -> Any:
    """Two inputs, a shared Dense, every merge layer, Reshape/Permute, and two outputs."""
    a = keras.Input((6,), name="a")
    b = keras.Input((6,), name="b")
    shared = layers.Dense(6, activation="sigmoid", name="shared")
    sa, sb = shared(a), shared(b)
    m = [layers.Add()([sa, sb]), layers.Subtract()([sa, sb]), layers.Multiply()([sa, b]),
         layers.Maximum()([sa, sb, a]), layers.Minimum()([sa, b]), layers.Average()([sa, sb])]
    x = layers.Concatenate(axis=-1)(m)
    x = layers.Reshape((4, 9))(x)
    x = layers.Permute((2, 1))(x)
    x = layers.Dense(5)(x)
    y = layers.ReLU(negative_slope=0.2, name="leaky")(x)
    z = layers.Flatten()(layers.Activation("silu")(x))
    z = layers.ReLU(max_value=0.5, name="clipped")(z)
    return keras.Model([a, b], [y, z], name="merges")


def nested() -> Any:
    """A Sequential used as a layer inside a functional model."""
    inner = keras.Sequential([keras.Input((8,)), layers.Dense(8, activation="relu"),
                              layers.BatchNormalization(), layers.Dense(4)], name="inner")
    inputs = keras.Input((8,), name="x")
    x = layers.Dense(8, name="pre")(inputs)
    outputs = layers.Dense(2, name="head")(inner(x))
    model = keras.Model(inputs, outputs, name="outer")
    randomize_batchnorm(inner)
    return model


def text_cnn(vocab: int = 50, seq: int = 20) -> Any:
    """Keras' text-classification shape: Embedding, Conv1D (same/causal/dilated), 1-D pools."""
    inputs = keras.Input((seq,), dtype="int32", name="ids")
    x = layers.Embedding(vocab, 8)(inputs)
    x = layers.Conv1D(12, 3, padding="same", activation="relu")(x)
    x = layers.Conv1D(12, 3, padding="causal", dilation_rate=2)(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Conv1D(8, 3, strides=2, activation="softmax")(x)
    x = layers.AveragePooling1D(2, padding="same")(x)
    a = layers.GlobalAveragePooling1D()(x)
    b = layers.GlobalMaxPooling1D()(x)
    outputs = layers.Dense(3, name="score")(layers.Concatenate()([a, b]))
    return keras.Model(inputs, outputs)


def attention_block(seq: int = 6, dim: int = 8) -> Any:
    """A transformer encoder block: self-attention, cross-attention with a separate key,
    residual Adds, LayerNormalization, a Dense feed-forward."""
    inputs = keras.Input((seq, dim), name="tokens")
    att = layers.MultiHeadAttention(2, 4, name="self_att")(inputs, inputs)
    x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([inputs, att]))
    cross = layers.MultiHeadAttention(2, 3, value_dim=5, output_shape=dim,
                                      name="cross_att")(x, inputs, x)
    x = layers.Add()([x, cross])
    ff = layers.Dense(dim, activation="relu")(layers.Dense(16, activation="gelu")(x))
    outputs = layers.LayerNormalization(name="encoded")(layers.Add()([x, ff]))
    return keras.Model(inputs, outputs)
