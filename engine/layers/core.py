"""Core layers: Dense, Activation, Flatten, Dropout, Reshape, Embedding, normalization, merges."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.ir import TensorType
from engine.layers.activations import emit_activation, fused_activation, normalize_activation
from engine.layers.base import (
    Builder,
    Layer,
    glorot_uniform,
    uniform,
)

__all__ = [
    "Activation",
    "Add",
    "BatchNormalization",
    "Concatenate",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "LayerNormalization",
    "Multiply",
    "Reshape",
    "Subtract",
]


def _last_dim(layer: Layer, t: TensorType) -> int:
    if t.rank < 1 or t.shape[-1] is None:
        raise ValueError(f"layer {layer.name!r} needs a known last dimension, got {t.shape}")
    return int(t.shape[-1])


class Dense(Layer):
    """``activation(x @ kernel + bias)`` over the last axis, whatever the input's rank."""

    def __init__(
        self, units: int, activation: str | None = None, use_bias: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ValueError(f"Dense units must be positive, got {units}")
        self.units = int(units)
        self.activation = normalize_activation(activation)
        self.use_bias = use_bias

    def build(self, in_types: Sequence[TensorType]) -> None:
        k = _last_dim(self, in_types[0])
        self.add_weight("kernel", glorot_uniform((k, self.units)))
        if self.use_bias:
            self.add_weight("bias", np.zeros(self.units, np.float32))

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        ins = [xs[0], b.const("kernel", self.weight("kernel"))]
        if self.use_bias:
            ins.append(b.const("bias", self.weight("bias")))
        fused, after = fused_activation(self.activation)
        attrs = {"activation": fused} if fused != "linear" else {}
        if after == "linear":
            return b.op("Dense", ins, attrs, out=b.out)
        y = b.op("Dense", ins, attrs, tag="dense")
        return emit_activation(b, y, after, out=b.out)


class Activation(Layer):
    def __init__(self, activation: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = normalize_activation(activation)

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        return emit_activation(b, xs[0], self.activation, out=b.out)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...); row-major (NHWC) order, as Keras."""

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        if b.types[xs[0]].rank <= 2:
            return xs[0]
        return b.op("Flatten", [xs[0]], {"axis": 1}, out=b.out)


class Dropout(Layer):
    """Inference only: the identity, so it emits no node."""

    def __init__(
        self, rate: float, noise_shape: Any = None, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1], got {rate}")
        self.rate = float(rate)

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        return xs[0]


class Reshape(Layer):
    """Reshape everything but the batch dim to ``target_shape`` (one -1 allowed)."""

    def __init__(self, target_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        target = tuple(int(d) for d in target_shape)
        if target.count(-1) > 1 or any(d == 0 or d < -1 for d in target):
            raise ValueError(f"Reshape target_shape must be positive ints and at most one -1, "
                             f"got {tuple(target_shape)}")
        self.target_shape = target

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        # 0 copies the (dynamic) batch dim
        return b.op("Reshape", [xs[0]], {"shape": (0, *self.target_shape)}, out=b.out)


class Embedding(Layer):
    """Rows of a (input_dim, output_dim) table picked by an integer input."""

    input_dtype = "int32"

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        input_length: int | None = None,
        mask_zero: bool = False,
        **kwargs: Any,
    ) -> None:
        if input_length is not None and kwargs.get("input_shape") is None:
            kwargs["input_shape"] = (input_length,)
        super().__init__(**kwargs)
        if mask_zero:
            raise ValueError("Embedding(mask_zero=True) is not supported (no masking)")
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)

    def build(self, in_types: Sequence[TensorType]) -> None:
        self.add_weight("embeddings", uniform((self.input_dim, self.output_dim)))

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        if np.dtype(b.types[xs[0]].dtype).kind not in "iu":
            raise ValueError(f"layer {self.name!r} needs integer indices, got "
                             f"{b.types[xs[0]].dtype} (use Input(..., dtype='int32'))")
        table = b.const("embeddings", self.weight("embeddings"))
        return b.op("Gather", [table, xs[0]], {"axis": 0}, out=b.out)


class _Norm(Layer):
    """Shared by the normalizations: one ``axis`` (the last by default), gamma/beta weights."""

    def __init__(
        self, axis: int = -1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, list | tuple):
            if len(axis) != 1:
                raise ValueError(f"{type(self).__name__} supports a single axis, got {axis}")
            axis = axis[0]
        self.axis, self.epsilon = int(axis), float(epsilon)
        self.center, self.scale = center, scale

    def _channels(self, t: TensorType) -> int:
        if not -t.rank <= self.axis < t.rank or self.axis % t.rank == 0:
            raise ValueError(f"layer {self.name!r}: axis {self.axis} is not valid for {t.shape}")
        c = t.shape[self.axis]
        if c is None:
            raise ValueError(f"layer {self.name!r}: axis {self.axis} of {t.shape} is unknown")
        return int(c)

    def _gamma_beta(self, b: Builder, c: int) -> list[str]:
        gamma = self.weight("gamma") if self.scale else np.ones(c, np.float32)
        beta = self.weight("beta") if self.center else np.zeros(c, np.float32)
        return [b.const("gamma", gamma), b.const("beta", beta)]


class BatchNormalization(_Norm):
    """Inference: ``gamma * (x - moving_mean) / sqrt(moving_variance + eps) + beta``."""

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, **kwargs: Any) -> None:
        super().__init__(axis, epsilon, center, scale, **kwargs)  # momentum: training only

    def build(self, in_types: Sequence[TensorType]) -> None:
        c = self._channels(in_types[0])
        if self.scale:
            self.add_weight("gamma", np.ones(c, np.float32))
        if self.center:
            self.add_weight("beta", np.zeros(c, np.float32))
        self.add_weight("moving_mean", np.zeros(c, np.float32))
        self.add_weight("moving_variance", np.ones(c, np.float32))

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        c = self._channels(b.types[xs[0]])
        ins = [xs[0], *self._gamma_beta(b, c), b.const("moving_mean", self.weight("moving_mean")),
               b.const("moving_variance", self.weight("moving_variance"))]
        return b.op("BatchNorm", ins, {"epsilon": self.epsilon, "axis": self.axis}, out=b.out)


class LayerNormalization(_Norm):
    """Normalize over the last axis: ``gamma * (x - mean) / sqrt(var + eps) + beta``."""

    def _channels(self, t: TensorType) -> int:
        if self.axis not in (-1, t.rank - 1):
            raise ValueError(f"layer {self.name!r}: only the last axis is supported, "
                             f"got axis {self.axis} for rank {t.rank}")
        return super()._channels(t)

    def build(self, in_types: Sequence[TensorType]) -> None:
        c = self._channels(in_types[0])
        if self.scale:
            self.add_weight("gamma", np.ones(c, np.float32))
        if self.center:
            self.add_weight("beta", np.zeros(c, np.float32))

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        c = self._channels(b.types[xs[0]])
        ins = [xs[0], *self._gamma_beta(b, c)]
        return b.op("LayerNorm", ins, {"epsilon": self.epsilon, "axis": -1}, out=b.out)


class _Merge(Layer):
    """Elementwise merge of two or more inputs (numpy broadcasting)."""

    op = ""

    def check_arity(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"layer {self.name!r} needs a list of at least 2 inputs, got {n}")

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        acc = xs[0]
        for i, x in enumerate(xs[1:], 2):
            acc = b.op(self.op, [acc, x], out=b.out if i == len(xs) else None)
        return acc


class Add(_Merge):
    op = "Add"


class Multiply(_Merge):
    op = "Mul"


class Subtract(_Merge):
    op = "Sub"

    def check_arity(self, n: int) -> None:
        if n != 2:
            raise ValueError(f"layer {self.name!r} needs exactly 2 inputs, got {n}")


class Concatenate(_Merge):
    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = int(axis)

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        return b.op("Concat", list(xs), {"axis": self.axis}, out=b.out)
