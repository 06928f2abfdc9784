"""Recurrent layers, batch-major (N, T, F) as in Keras."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.ir import TensorType
from engine.layers.base import Builder, Layer, glorot_uniform, orthogonal

__all__ = ["LSTM"]


class LSTM(Layer):
    """Keras LSTM (gate order i, f, c, o; sigmoid gates, tanh cell); inference only.

    Weights: kernel (F, 4U), recurrent_kernel (U, 4U), bias (4U). Returns the last hidden
    state (N, U), or every step's (N, T, U) with ``return_sequences=True``.
    """

    base_name = "lstm"

    def __init__(
        self,
        units: int,
        activation: str | None = "tanh",
        recurrent_activation: str | None = "sigmoid",
        use_bias: bool = True,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        unit_forget_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (activation, recurrent_activation) != ("tanh", "sigmoid"):
            raise ValueError("LSTM supports only activation='tanh', recurrent_activation="
                             f"'sigmoid'; got {activation!r}, {recurrent_activation!r}")
        if return_state or go_backwards:
            raise ValueError("LSTM(return_state=True) and go_backwards=True are not supported")
        if int(units) <= 0:
            raise ValueError(f"LSTM units must be positive, got {units}")
        self.units = int(units)
        self.use_bias = use_bias
        self.return_sequences = bool(return_sequences)
        self.unit_forget_bias = unit_forget_bias

    def build(self, in_types: Sequence[TensorType]) -> None:
        t = in_types[0]
        if t.rank != 3 or t.shape[2] is None:
            raise ValueError(f"layer {self.name!r} needs an (N, T, features) input with known "
                             f"features, got {t.shape}")
        f, u = int(t.shape[2]), self.units
        self.add_weight("kernel", glorot_uniform((f, 4 * u)))
        self.add_weight("recurrent_kernel", orthogonal((u, 4 * u)))
        if self.use_bias:
            bias = np.zeros(4 * u, np.float32)
            if self.unit_forget_bias:
                bias[u:2 * u] = 1.0  # Keras starts the forget gate open
            self.add_weight("bias", bias)

    def emit(self, b: Builder, xs: Sequence[str]) -> str:
        ins = [xs[0], b.const("kernel", self.weight("kernel")),
               b.const("recurrent_kernel", self.weight("recurrent_kernel"))]
        if self.use_bias:
            ins.append(b.const("bias", self.weight("bias")))
        attrs = {"return_sequences": True} if self.return_sequences else {}
        return b.op("LSTM", ins, attrs, out=b.out)
