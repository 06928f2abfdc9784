"""Keras-like authoring that builds engine graphs.

    m = Sequential([Input((32, 32, 3)), Conv2D(32, (3, 3), activation="relu"), ...])
    m.set_weights(weights); m.save("models/seed_cnn/1"); m.predict(x)

Layers record symbolic calls; a model emits them as one engine graph (NHWC, Keras weight
layouts), saved with ``engine.save`` or run with ``engine.compile_graph``. Inference only.
"""

from engine.layers.attention import MultiHeadAttention
from engine.layers.base import Input, Layer, SymbolicTensor, set_random_seed
from engine.layers.conv import (
    AveragePooling2D,
    Conv2D,
    DepthwiseConv2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
)
from engine.layers.core import (
    Activation,
    Add,
    BatchNormalization,
    Concatenate,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    LayerNormalization,
    Multiply,
    Reshape,
    Subtract,
)
from engine.layers.model import Model, Sequential
from engine.layers.recurrent import LSTM

__all__ = [
    "LSTM",
    "Activation",
    "Add",
    "AveragePooling2D",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Input",
    "Layer",
    "LayerNormalization",
    "MaxPooling2D",
    "Model",
    "MultiHeadAttention",
    "Multiply",
    "Reshape",
    "Sequential",
    "Subtract",
    "SymbolicTensor",
    "set_random_seed",
]
