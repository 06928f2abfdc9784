"""Reductions over a set of axes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


for _op in ("ReduceMean", "ReduceSum", "ReduceMax"):
    register(_op, inputs=1, attrs={"axes": None, "keepdims": True},
             doc="axes None: all axes")(_reduce)
