"""Convolution and pooling over NHWC images (Keras' channels_last)."""

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
)

__all__ = [
    "AveragePooling2D",
    "Conv2D",
    "DepthwiseConv2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "MaxPooling2D",
    "same_pads",
]


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or any(int(v) <= 0 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _padding(padding: str) -> str:
    p = str(padding).lower()
    if p not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return p


def _channels_last(data_format: str | None) -> None:
    if data_format not in (None, "channels_last"):
        raise ValueError(f"only data_format='channels_last' (NHWC) is supported, "
                         f"got {data_format!r}")


def _same_1d(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    eff = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def same_pads(
    layer: Layer, t: TensorType, kernel: tuple[int, int], strides: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> tuple[int, int, int, int]:
    """TF's 'same' padding (top, bottom, left, right): out = ceil(in / stride)."""
    if t.rank != 4:
        raise ValueError(f"layer {layer.name!r} needs an NHWC (rank 4) input, got {t.shape}")
    h, w = t.shape[1], t.shape[2]
    if h is None or w is None:
        raise ValueError(f"layer {layer.name!r}: padding='same' needs static height and width, "
                         f"got {t.shape}")
    return (*_same_1d(h, kernel[0], strides[0], dilation[0]),
            *_same_1d(w, kernel[1], strides[1], dilation[1]))


def _channels(layer: Layer, t: TensorType) -> int:
    if t.rank != 4 or t.shape[3] is None:
        raise ValueError(f"layer {layer.name!r} needs an NHWC input with known channels, "
                         f"got {t.shape}")
    return int(t.shape[3])


class _ConvBase(Layer):
    def __init__(
        self,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | Sequence[int] = (1, 1),
        activation: str | None = None,
        use_bias: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _channels_last(data_format)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = _padding(padding)
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        self.activation = normalize_activation(activation)
        self.use_bias = use_bias

    def conv_weight(self) -> np.ndarray:
        """The kernel as the IR's (KH, KW, C/groups, O)."""
        return self.weight("kernel")

    def groups(self, c: int) -> int:
        return 1

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        t = b.types[xs[0]]
        c = _channels(self, t)
        attrs: dict[str, Any] = {}
        if self.strides != (1, 1):
            attrs["strides"] = self.strides
        if self.dilation_rate != (1, 1):
            attrs["dilations"] = self.dilation_rate
        if self.padding == "same":
            attrs["pads"] = same_pads(self, t, self.kernel_size, self.strides, self.dilation_rate)
        if self.groups(c) != 1:
            attrs["groups"] = self.groups(c)
        fused, after = fused_activation(self.activation)
        if fused != "linear":
            attrs["activation"] = fused
        ins = [xs[0], b.const("kernel", self.conv_weight())]
        if self.use_bias:
            ins.append(b.const("bias", self.weight("bias")))
        if after == "linear":
            return b.op("Conv2D", ins, attrs, out=b.out)
        y = b.op("Conv2D", ins, attrs, tag="conv")
        return emit_activation(b, y, after, out=b.out)


class Conv2D(_ConvBase):
    """Keras Conv2D: kernel (KH, KW, C/groups, filters) (HWIO) and bias (filters)."""

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | Sequence[int] = (1, 1),
        groups: int = 1,
        activation: str | None = None,
        use_bias: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, activation,
                         use_bias, **kwargs)
        self.filters, self._groups = int(filters), int(groups)
        if self.filters <= 0 or self._groups <= 0 or self.filters % self._groups:
            raise ValueError(f"Conv2D filters ({filters}) must be positive and divisible by "
                             f"groups ({groups})")

    def groups(self, c: int) -> int:
        return self._groups

    def build(self, in_types: Sequence[TensorType]) -> None:
        c = _channels(self, in_types[0])
        if c % self._groups:
            raise ValueError(f"layer {self.name!r}: input channels {c} are not divisible by "
                             f"groups {self._groups}")
        kh, kw = self.kernel_size
        self.add_weight("kernel", glorot_uniform((kh, kw, c // self._groups, self.filters)))
        if self.use_bias:
            self.add_weight("bias", np.zeros(self.filters, np.float32))


class DepthwiseConv2D(_ConvBase):
    """Keras DepthwiseConv2D: kernel (KH, KW, C, depth_multiplier), bias (C * multiplier).

    Emitted as a Conv2D with groups = C; output channel c * multiplier + m reads channel c,
    which is exactly the kernel reshaped to (KH, KW, 1, C * multiplier).
    """

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = (1, 1),
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate: int | Sequence[int] = (1, 1),
        activation: str | None = None,
        use_bias: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, activation,
                         use_bias, **kwargs)
        if int(depth_multiplier) <= 0:
            raise ValueError(f"depth_multiplier must be positive, got {depth_multiplier}")
        self.depth_multiplier = int(depth_multiplier)

    def groups(self, c: int) -> int:
        return c

    def build(self, in_types: Sequence[TensorType]) -> None:
        c = _channels(self, in_types[0])
        kh, kw = self.kernel_size
        self.add_weight("depthwise_kernel", glorot_uniform((kh, kw, c, self.depth_multiplier)))
        if self.use_bias:
            self.add_weight("bias", np.zeros(c * self.depth_multiplier, np.float32))

    def conv_weight(self) -> np.ndarray:
        kh, kw, c, m = self.weight("depthwise_kernel").shape
        return self.weight("depthwise_kernel").reshape(kh, kw, 1, c * m)


class _Pool(Layer):
    op = ""

    def __init__(
        self,
        pool_size: int | Sequence[int] = (2, 2),
        strides: int | Sequence[int] | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _channels_last(data_format)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides")
        self.padding = _padding(padding)

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        t = b.types[xs[0]]
        attrs: dict[str, Any] = {"pool_size": self.pool_size, "strides": self.strides}
        if self.padding == "same":
            attrs["pads"] = same_pads(self, t, self.pool_size, self.strides)
        return b.op(self.op, [xs[0]], attrs, out=b.out)


class MaxPooling2D(_Pool):
    op = "MaxPool2D"


class AveragePooling2D(_Pool):
    """Average over the window; with 'same' padding the pads are not counted (as TF)."""

    op = "AvgPool2D"


class _GlobalPool(Layer):
    op = ""

    def __init__(self, data_format: str | None = None, keepdims: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _channels_last(data_format)
        self.keepdims = bool(keepdims)

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        attrs = {"keepdims": True} if self.keepdims else {}
        return b.op(self.op, [xs[0]], attrs, out=b.out)


class GlobalAveragePooling2D(_GlobalPool):
    op = "GlobalAvgPool2D"


class GlobalMaxPooling2D(_GlobalPool):
    op = "GlobalMaxPool2D"
