"""Multi-head attention (Keras' MultiHeadAttention, without masks or dropout)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.ir import TensorType
from engine.layers.base import Builder, Layer, glorot_uniform

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(Layer):
    """``layer(query, value, key=None)`` on (N, T, D) tensors -> (N, Tq, output_shape or Dq).

    Weights in Keras order and shapes: query kernel (Dq, H, Kd), bias (H, Kd); key kernel
    (Dk, H, Kd), bias (H, Kd); value kernel (Dv, H, Vd), bias (H, Vd); output kernel
    (H, Vd, Dout), bias (Dout). Emitted as Dense projections, per-head MatMuls and a Softmax;
    the 1/sqrt(Kd) scale is folded into the query projection.
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape: int | Sequence[int] | None = None,
        attention_axes: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if attention_axes not in (None, 1, (1,), [1]):
            raise ValueError("MultiHeadAttention supports attention over axis 1 only")
        if isinstance(output_shape, Sequence):
            if len(output_shape) != 1:
                raise ValueError(f"output_shape must be one int, got {output_shape}")
            output_shape = int(output_shape[0])
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = int(value_dim) if value_dim is not None else self.key_dim
        self.use_bias = use_bias
        self.output_dim = None if output_shape is None else int(output_shape)
        if min(self.num_heads, self.key_dim, self.value_dim) <= 0:
            raise ValueError("num_heads, key_dim and value_dim must be positive")

    def call_inputs(self, *args: Any, **kwargs: Any) -> list[Any]:
        kwargs.pop("training", None)
        for unsupported in ("attention_mask", "return_attention_scores", "use_causal_mask"):
            if kwargs.pop(unsupported, None):
                raise ValueError(f"MultiHeadAttention: {unsupported} is not supported")
        names = ("query", "value", "key")
        if len(args) > 3:
            raise TypeError("MultiHeadAttention takes query, value and optionally key")
        got = dict(zip(names, args, strict=False))
        for k in list(kwargs):
            if k not in names or k in got:
                raise TypeError(f"MultiHeadAttention got an unexpected argument {k!r}")
            got[k] = kwargs.pop(k)
        if "query" not in got or "value" not in got:
            raise TypeError("MultiHeadAttention needs query and value")
        key = got.get("key")
        return [got["query"], got["value"], got["value"] if key is None else key]

    def check_arity(self, n: int) -> None:
        assert n == 3

    def build(self, in_types: Sequence[TensorType]) -> None:
        dims = []
        for what, t in zip(("query", "value", "key"), in_types, strict=True):
            if t.rank != 3 or t.shape[2] is None:
                raise ValueError(f"layer {self.name!r}: {what} must be (N, T, D) with known D, "
                                 f"got {t.shape}")
            dims.append(int(t.shape[2]))
        dq, dv, dk = dims
        h, kd, vd = self.num_heads, self.key_dim, self.value_dim
        dout = self.output_dim or dq
        for part, d, width in (("query", dq, kd), ("key", dk, kd), ("value", dv, vd)):
            self.add_weight(f"{part}/kernel", glorot_uniform((d, h, width)))
            if self.use_bias:
                self.add_weight(f"{part}/bias", np.zeros((h, width), np.float32))
        self.add_weight("attention_output/kernel", glorot_uniform((h, vd, dout)))
        if self.use_bias:
            self.add_weight("attention_output/bias", np.zeros(dout, np.float32))

    def _project(self, b: Builder, x: str, part: str, scale: float = 1.0) -> str:
        kernel = self.weight(f"{part}/kernel")
        ins = [x, b.const(f"{part}/kernel_2d",
                          (kernel.reshape(kernel.shape[0], -1) * np.float32(scale)))]
        if self.use_bias:
            bias = self.weight(f"{part}/bias")
            ins.append(b.const(f"{part}/bias_1d", bias.reshape(-1) * np.float32(scale)))
        return b.op("Dense", ins, tag=part)

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        query, value, key = xs
        h, kd, vd = self.num_heads, self.key_dim, self.value_dim
        q = self._project(b, query, "query", 1.0 / math.sqrt(kd))
        k = self._project(b, key, "key")
        v = self._project(b, value, "value")
        # (N, T, H*d) -> (N, T, H, d) -> heads first; keys as (N, H, Kd, Tk) for q @ k
        q = b.op("Transpose", [b.op("Reshape", [q], {"shape": (0, 0, h, kd)}, tag="q_heads")],
                 {"perm": (0, 2, 1, 3)}, tag="q_t")
        k = b.op("Transpose", [b.op("Reshape", [k], {"shape": (0, 0, h, kd)}, tag="k_heads")],
                 {"perm": (0, 2, 3, 1)}, tag="k_t")
        v = b.op("Transpose", [b.op("Reshape", [v], {"shape": (0, 0, h, vd)}, tag="v_heads")],
                 {"perm": (0, 2, 1, 3)}, tag="v_t")
        scores = b.op("MatMul", [q, k], tag="scores")
        probs = b.op("Softmax", [scores], {"axis": -1}, tag="probs")
        ctx = b.op("MatMul", [probs, v], tag="context")
        ctx = b.op("Transpose", [ctx], {"perm": (0, 2, 1, 3)}, tag="context_t")
        ctx = b.op("Reshape", [ctx], {"shape": (0, 0, h * vd)}, tag="context_2d")
        wo = self.weight("attention_output/kernel")
        ins = [ctx, b.const("attention_output/kernel_2d", wo.reshape(h * vd, -1))]
        if self.use_bias:
            ins.append(b.const("attention_output/bias", self.weight("attention_output/bias")))
        return b.op("Dense", ins, out=b.out)
