"""Layers ``engine.layers`` does not have, built from engine ops for the Keras importer:
single-op layers, Rescaling, float-index Embedding, Maximum/Minimum/Average, SeparableConv2D,
and the 1-D convolution and pooling (as their 2-D ops on an (N, 1, T, C) view)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.layers import Conv2D, DepthwiseConv2D, Embedding, Layer
from engine.layers.activations import emit_activation, fused_activation
from engine.layers.base import Builder

__all__ = ["BINARY_OPS", "SUPPORTED_OPS", "UNARY_OPS", "BinaryOp", "CastingEmbedding", "Conv1D",
           "MergeOp", "OpLayer", "Pool1D", "Rescaling", "SeparableConv2D"]


class OpLayer(Layer):
    """One engine op on one input (activations, Softmax with an axis, Transpose...)."""

    def __init__(self, op: str, attrs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op, self.attrs = op, dict(attrs or {})

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        return b.op(self.op, [xs[0]], self.attrs, out=b.out)


class Rescaling(Layer):
    """``x * scale + offset`` in float32 (integer images are cast first, as Keras does)."""

    def __init__(self, scale: Any, offset: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = np.asarray(scale, np.float32)
        self.offset = np.asarray(offset, np.float32)

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        x = xs[0]
        if b.types[x].dtype != "float32":
            x = b.op("Cast", [x], {"to": "float32"}, tag="cast")
        has_offset = bool(np.any(self.offset))
        y = b.op("Mul", [x, b.const("scale", self.scale)], out=None if has_offset else b.out)
        if has_offset:
            y = b.op("Add", [y, b.const("offset", self.offset)], out=b.out)
        return y


class CastingEmbedding(Embedding):
    """Keras' Embedding also takes float indices (a Sequential's default float32 input) and
    truncates them to int32 before the lookup."""

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        if np.dtype(b.types[xs[0]].dtype).kind in "iu":
            return super().emit(b, xs)
        idx = b.op("Cast", [xs[0]], {"to": "int32"}, tag="cast")
        table = b.const("embeddings", self.weight("embeddings"))
        return b.op("Gather", [table, idx], {"axis": 0}, out=b.out)


class MergeOp(Layer):
    """Maximum / Minimum / Average of two or more inputs."""

    def __init__(self, op: str, mean: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op, self.mean = op, mean

    def check_arity(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"layer {self.name!r} needs a list of at least 2 inputs, got {n}")

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        acc = xs[0]
        for i, x in enumerate(xs[1:], 2):
            last = i == len(xs) and not self.mean
            acc = b.op(self.op, [acc, x], out=b.out if last else None)
        if self.mean:
            scale = b.const("scale", np.array(1.0 / len(xs), np.float32))
            acc = b.op("Mul", [acc, scale], out=b.out)
        return acc


class SeparableConv2D(Layer):
    """Keras SeparableConv2D: a depthwise conv (groups = C) then a 1x1 conv with the bias and
    activation; each weight is handed to the part that uses it."""

    _ROUTES = {"depthwise_kernel": (0, "depthwise_kernel"), "pointwise_kernel": (1, "kernel"),
               "bias": (1, "bias")}

    def __init__(self, depthwise: DepthwiseConv2D, pointwise: Conv2D, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parts = (depthwise, pointwise)

    def add_weight(self, tag: str, value: np.ndarray) -> None:
        super().add_weight(tag, value)
        part, part_tag = self._ROUTES[tag]
        self.parts[part].add_weight(part_tag, value)

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        out = b.out
        # both parts tag their kernel "kernel": keep the depthwise one under its own prefix
        b.begin(f"{self.name}.depthwise", f"{out}/depthwise")
        mid = self.parts[0].emit(b, xs)
        b.begin(self.name, out)
        return self.parts[1].emit(b, [mid])


def _pads_1d(size: int | None, kernel: int, stride: int, dilation: int,
             padding: str) -> tuple[int, int]:
    """(left, right) pads on the time axis: TF's 'same', or all on the left for 'causal'."""
    span = (kernel - 1) * dilation + 1
    if padding == "causal":
        return span - 1, 0
    if padding == "valid":
        return 0, 0
    if size is None:
        raise ValueError("padding='same' needs a static time dimension")
    total = max((-(-size // stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


class Conv1D(Layer):
    """Keras Conv1D on (N, T, C): kernel (K, C/groups, F), bias (F); run as a Conv2D on the
    (N, 1, T, C) view. padding: valid, same or causal."""

    def __init__(self, filters: int, kernel_size: int, strides: int, padding: str,
                 dilation_rate: int, groups: int, activation: str, use_bias: bool,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.padding, self.dilation_rate, self.groups = padding, dilation_rate, groups
        self.activation, self.use_bias = activation, use_bias

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        t = b.types[xs[0]]
        if t.rank != 3:
            raise ValueError(f"layer {self.name!r} needs an (N, T, C) input, got {t.shape}")
        left, right = _pads_1d(t.shape[1], self.kernel_size, self.strides, self.dilation_rate,
                               self.padding)
        fused, after = fused_activation(self.activation)
        attrs: dict[str, Any] = {"strides": (1, self.strides), "pads": (0, 0, left, right),
                                 "dilations": (1, self.dilation_rate), "groups": self.groups,
                                 "activation": fused}
        kernel = self.weight("kernel")
        ins = [b.op("Unsqueeze", [xs[0]], {"axes": (1,)}, tag="nhwc"),
               b.const("kernel_4d", kernel.reshape(1, *kernel.shape))]
        if self.use_bias:
            ins.append(b.const("bias", self.weight("bias")))
        y = b.op("Conv2D", ins, attrs, tag="conv")
        if after == "linear":
            return b.op("Squeeze", [y], {"axes": (1,)}, out=b.out)
        y = b.op("Squeeze", [y], {"axes": (1,)}, tag="ntc")
        return emit_activation(b, y, after, out=b.out)


class Pool1D(Layer):
    """Max/Average pooling over time on (N, T, C), as the 2-D pool on (N, 1, T, C)."""

    def __init__(self, op: str, pool_size: int, strides: int, padding: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op, self.pool_size, self.strides, self.padding = op, pool_size, strides, padding

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        t = b.types[xs[0]]
        if t.rank != 3:
            raise ValueError(f"layer {self.name!r} needs an (N, T, C) input, got {t.shape}")
        left, right = _pads_1d(t.shape[1], self.pool_size, self.strides, 1, self.padding)
        attrs = {"pool_size": (1, self.pool_size), "strides": (1, self.strides),
                 "pads": (0, 0, left, right)}
        y = b.op("Unsqueeze", [xs[0]], {"axes": (1,)}, tag="nhwc")
        y = b.op(self.op, [y], attrs, tag="pool")
        return b.op("Squeeze", [y], {"axes": (1,)}, out=b.out)


class BinaryOp(Layer):
    """A broadcasting binary op on two tensors, or on a tensor and a number (``x * 2.0``);
    ``const`` is (the number's argument position, its value)."""

    def __init__(self, op: str, const: tuple[int, float] | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op, self.const = op, const

    def check_arity(self, n: int) -> None:
        if n != (1 if self.const else 2):
            raise ValueError(f"layer {self.name!r} takes {1 if self.const else 2} tensor(s), "
                             f"got {n}")

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        if self.const is None:
            return b.op(self.op, [xs[0], xs[1]], out=b.out)
        position, value = self.const
        c = b.const("operand", np.array(value, np.dtype(b.types[xs[0]].dtype)))
        return b.op(self.op, [c, xs[0]] if position == 0 else [xs[0], c], out=b.out)


# keras.ops calls recorded in a functional graph (``x + y``, ``keras.ops.tanh(x)``)
BINARY_OPS = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Divide": "Div",
               "TrueDivide": "Div", "Maximum": "Maximum", "Minimum": "Minimum"}
UNARY_OPS = {"Relu": "Relu", "Relu6": "Relu6", "Sigmoid": "Sigmoid", "Tanh": "Tanh",
              "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt", "Abs": "Abs", "Absolute": "Abs",
              "Negative": "Neg"}
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted([*BINARY_OPS, *UNARY_OPS]))
