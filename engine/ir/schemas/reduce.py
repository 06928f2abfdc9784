"""Reductions over a set of axes, and ArgMax/ArgMin over one axis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import ShapeError
from engine.ir.graph import Dim, TensorType
from engine.ir.schema import normalize_axis, register


def _reduce(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    axes = range(x.rank) if a["axes"] is None else a["axes"]
    chosen = {normalize_axis(ax, x.rank) for ax in axes}
    shape: list[Dim] = []
    for i, d in enumerate(x.shape):
        if i in chosen:
            if a["keepdims"]:
                shape.append(1)
        else:
            shape.append(d)
    return [TensorType(x.dtype, tuple(shape))]


for _op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"):
    register(_op, inputs=1, attrs={"axes": None, "keepdims": True},
             doc="axes None: all axes")(_reduce)


def _arg_reduce(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    axis = normalize_axis(a["axis"], x.rank)
    if x.shape[axis] == 0:
        raise ShapeError(f"arg-reduction over axis {axis} of {x}: the axis is empty")
    if a["keepdims"]:
        shape = x.shape[:axis] + (1,) + x.shape[axis + 1:]
    else:
        shape = x.shape[:axis] + x.shape[axis + 1:]
    return [TensorType("int64", shape)]


for _op in ("ArgMax", "ArgMin"):
    register(_op, inputs=1, attrs={"axis": 0, "keepdims": True, "select_last_index": False},
             doc="int64 index of the max/min along `axis` (first one, or last: "
                 "select_last_index); NaN counts as the extreme, as in numpy")(_arg_reduce)
