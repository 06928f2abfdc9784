"""Recurrent layers, batch-major as in Keras."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.ir.graph import TensorType
from engine.ir.schema import register
from engine.ir.schemas._common import expect_rank, same_dim


@register("LSTM", inputs=(3, 4), attrs={"return_sequences": False},
          doc="x (N, T, F), kernel (F, 4U), recurrent (U, 4U), optional bias (4U); "
              "Keras gate order i, f, c, o; sigmoid gates, tanh cell")
def _lstm(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x, k, r = ins[0], ins[1], ins[2]
    expect_rank("LSTM input", x.shape, 3)
    expect_rank("LSTM kernel", k.shape, 2)
    expect_rank("LSTM recurrent kernel", r.shape, 2)
    units = r.shape[0]
    assert units is not None
    same_dim("LSTM kernel rows vs input features", k.shape[0], x.shape[2])
    same_dim("LSTM kernel columns vs 4*units", k.shape[1], 4 * units)
    same_dim("LSTM recurrent kernel columns vs 4*units", r.shape[1], 4 * units)
    if len(ins) == 4:
        same_dim("LSTM bias length vs 4*units", ins[3].shape[0], 4 * units)
    n, t = x.shape[0], x.shape[1]
    shape = (n, t, units) if a["return_sequences"] else (n, units)
    return [TensorType(x.dtype, shape)]
