"""The five benchmark models, each built once from seeded numpy weights into both graphs.

Every builder takes its sizes as arguments so the unit test can build a small copy quickly;
the defaults are the benchmark's sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from benchmarks.twin import Twin, TwinModel, V

__all__ = ["seed_cnn", "mlp", "lstm", "resnet", "bert", "BENCHMARKS", "Builder"]

Builder = Callable[..., TwinModel]


def seed_cnn(size: int = 32, dense4: str = "matmul", seed: int = 0) -> TwinModel:
    """The bundled seed model: three valid 3x3 convs with two 2x2 pools, then Dense(64, relu)
    applied to the last axis of the rank-4 tensor (Keras semantics, no Flatten)."""
    t = Twin("seed_cnn", seed, dense4=dense4)
    x = t.image(size, size, 3)
    h = t.conv2d(x, 32, 3, activation="relu")
    h = t.maxpool(h, 2)
    h = t.conv2d(h, 64, 3, activation="relu")
    h = t.maxpool(h, 2)
    h = t.conv2d(h, 64, 3, activation="relu")
    h = t.dense(h, 64, activation="relu")
    return t.build(h)


def mlp(sizes: Sequence[int] = (784, 512, 512, 10), seed: int = 0) -> TwinModel:
    """Dense layers with relu between them and a linear last layer."""
    t = Twin("mlp", seed)
    h = t.input((sizes[0],))
    for i, units in enumerate(sizes[1:]):
        h = t.dense(h, units, activation="relu" if i < len(sizes) - 2 else "linear")
    return t.build(h)


def lstm(features: int = 64, units: int = 128, steps: int = 50, seed: int = 0) -> TwinModel:
    """One LSTM layer over ``steps`` steps returning the last hidden state."""
    t = Twin("lstm", seed)
    x = t.input((steps, features), perm=(1, 0, 2))  # ONNX LSTM is seq-major
    return t.build(t.lstm(x, units))


def _block(t: Twin, x: V, channels: int, stride: int) -> V:
    y = t.conv2d(x, channels, 3, strides=stride, pads=1, bias=False)
    y = t.relu(t.batchnorm(y))
    y = t.batchnorm(t.conv2d(y, channels, 3, pads=1, bias=False))
    skip = x
    if stride != 1 or x.shape[-1] != channels:
        skip = t.batchnorm(t.conv2d(x, channels, 1, strides=stride, bias=False))
    return t.relu(t.add(y, skip))


def resnet(size: int = 64, stem: int = 32, channels: Sequence[int] = (32, 64, 64, 128),
           strides: Sequence[int] = (1, 2, 1, 2), classes: int = 10, seed: int = 0) -> TwinModel:
    """A 4-block residual CNN with batch norm (folded into the convs by our passes)."""
    t = Twin("resnet", seed)
    h = t.image(size, size, 3)
    h = t.relu(t.batchnorm(t.conv2d(h, stem, 3, pads=1, bias=False)))
    for c, s in zip(channels, strides, strict=True):
        h = _block(t, h, c, s)
    h = t.global_avg_pool(h)
    return t.build(t.dense(h, classes))


def bert(hidden: int = 384, heads: int = 12, seq: int = 128, ffn: int = 1536, layers: int = 2,
         gelu: str = "op", seed: int = 0) -> TwinModel:
    """A BERT-style post-LN encoder on float embeddings (N, seq, hidden)."""
    t = Twin("bert", seed, gelu=gelu)
    head = hidden // heads
    x = t.input((seq, hidden))

    def split(v: V, perm: tuple[int, ...]) -> V:
        return t.transpose(t.reshape(v, (0, 0, heads, head)), perm)

    for _ in range(layers):
        q = split(t.dense(x, hidden), (0, 2, 1, 3))  # (N, H, S, D)
        k = split(t.dense(x, hidden), (0, 2, 3, 1))  # (N, H, D, S)
        v = split(t.dense(x, hidden), (0, 2, 1, 3))
        p = t.softmax(t.scale(t.matmul(q, k), 1.0 / math.sqrt(head)))
        ctx = t.reshape(t.transpose(t.matmul(p, v), (0, 2, 1, 3)), (0, 0, hidden))
        x = t.layernorm(t.add(t.dense(ctx, hidden), x))
        h = t.dense(t.gelu(t.dense(x, ffn)), hidden)
        x = t.layernorm(t.add(h, x))
    return t.build(x)


# name -> (builder, batch sizes benchmarked)
BENCHMARKS: dict[str, tuple[Builder, tuple[int, ...]]] = {
    "seed": (seed_cnn, (1, 32, 256)),
    "mlp": (mlp, (1, 256)),
    "lstm": (lstm, (1, 32)),
    "resnet": (resnet, (1, 16)),
    "bert": (bert, (1, 8)),
}
