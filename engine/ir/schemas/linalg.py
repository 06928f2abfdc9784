"""Dense (Keras semantics: last axis of any rank) and numpy-style MatMul."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import ShapeError
from engine.ir.graph import TensorType
from engine.ir.schema import broadcast_shapes, register
from engine.ir.schemas._common import check_activation, expect_rank, same_dim


@register("Dense", inputs=(2, 3), attrs={"activation": "linear", "alpha": 0.2},
          doc="x (..., K) @ w (K, N) + bias (N) over the last axis, fused activation")
def _dense(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x, w = ins[0], ins[1]
    check_activation(a["activation"])
    if x.rank < 1:
        raise ShapeError("Dense input must have rank >= 1")
    expect_rank("Dense weight", w.shape, 2)
    same_dim("Dense input features vs weight rows", x.shape[-1], w.shape[0])
    if len(ins) == 3:
        expect_rank("Dense bias", ins[2].shape, 1)
        same_dim("Dense bias length vs units", ins[2].shape[0], w.shape[1])
    return [TensorType(x.dtype, x.shape[:-1] + (w.shape[1],))]


@register("MatMul", inputs=2, doc="numpy.matmul semantics, batch dims broadcast")
def _matmul(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x, y = ins
    if x.rank < 1 or y.rank < 1:
        raise ShapeError("MatMul inputs must have rank >= 1")
    xs = x.shape if x.rank > 1 else (1,) + x.shape
    ys = y.shape if y.rank > 1 else y.shape + (1,)
    same_dim(f"MatMul inner dimensions of {x.shape} and {y.shape}", xs[-1], ys[-2])
    batch = broadcast_shapes(xs[:-2], ys[:-2])
    out = batch + (xs[-2], ys[-1])
    if x.rank == 1:
        out = out[:-2] + out[-1:]
    if y.rank == 1:
        out = out[:-1]
    return [TensorType(x.dtype, out)]
