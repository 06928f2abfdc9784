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


@register("LSTMSeq", inputs=(4, 6), outputs=3, attrs={"reverse": False},
          doc="x (N, T, F), kernel (F, 4U), recurrent (U, 4U), bias (4U), optional initial "
              "h0 (N, U) and c0 (N, U) -> every h (N, T, U), final h (N, U), final c (N, U); "
              "Keras gate order i, f, c, o; `reverse` runs time backwards, outputs stay "
              "aligned with x (ONNX direction=reverse)")
def _lstm_seq(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    (seq,) = _lstm(ins[:4], {"return_sequences": True})
    n, units = seq.shape[0], seq.shape[2]
    for i, what in ((4, "h0"), (5, "c0")):
        if i < len(ins):
            expect_rank(f"LSTMSeq initial {what}", ins[i].shape, 2)
            same_dim(f"LSTMSeq initial {what} batch vs input batch", ins[i].shape[0], n)
            same_dim(f"LSTMSeq initial {what} width vs units", ins[i].shape[1], units)
    state = TensorType(seq.dtype, (n, units))
    return [seq, state, state]


@register("GRUSeq", inputs=(4, 5), outputs=2, attrs={"reset_after": True, "reverse": False},
          doc="x (N, T, F), kernel (F, 3U), recurrent (U, 3U), bias (2, 3U) = [input bias; "
              "recurrent bias], optional h0 (N, U) -> every h (N, T, U), final h (N, U); gates "
              "z, r, h (Keras and ONNX order); reset_after: r multiplies h @ Rh + bh (Keras "
              "default, ONNX linear_before_reset=1); `reverse` as for LSTMSeq")
def _gru_seq(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x, k, r, b = ins[:4]
    expect_rank("GRUSeq input", x.shape, 3)
    expect_rank("GRUSeq kernel", k.shape, 2)
    expect_rank("GRUSeq recurrent kernel", r.shape, 2)
    expect_rank("GRUSeq bias", b.shape, 2)
    units = r.shape[0]
    assert units is not None
    same_dim("GRUSeq kernel rows vs input features", k.shape[0], x.shape[2])
    same_dim("GRUSeq kernel columns vs 3*units", k.shape[1], 3 * units)
    same_dim("GRUSeq recurrent kernel columns vs 3*units", r.shape[1], 3 * units)
    same_dim("GRUSeq bias rows", b.shape[0], 2)
    same_dim("GRUSeq bias columns vs 3*units", b.shape[1], 3 * units)
    n = x.shape[0]
    if len(ins) == 5:
        expect_rank("GRUSeq initial h0", ins[4].shape, 2)
        same_dim("GRUSeq initial h0 batch vs input batch", ins[4].shape[0], n)
        same_dim("GRUSeq initial h0 width vs units", ins[4].shape[1], units)
    return [TensorType(x.dtype, (n, x.shape[1], units)), TensorType(x.dtype, (n, units))]
