"""Ops that move data without arithmetic: reshape, transpose, concat, slice, gather."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import ShapeError
from engine.ir.graph import Dim, TensorType
from engine.ir.schema import REQUIRED, normalize_axis, register


def _prod(dims: Sequence[Dim]) -> Dim:
    if any(d is None for d in dims):
        return None
    return math.prod(d for d in dims if d is not None)


@register("Reshape", inputs=1, attrs={"shape": REQUIRED},
          doc="0 copies the input dim at that position, -1 is inferred")
def _reshape(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    target = list(a["shape"])
    if target.count(-1) > 1:
        raise ShapeError(f"Reshape target {tuple(target)} has more than one -1")
    out: list[Dim] = []
    for i, d in enumerate(target):
        if d == 0:
            if i >= x.rank:
                raise ShapeError(f"Reshape target {tuple(target)}: 0 at axis {i} beyond input rank")
            out.append(x.shape[i])
        else:
            out.append(d)
    if -1 in out:
        known = [d for d in out if d != -1]
        total = _prod(x.shape)
        rest = _prod(known)
        if total is None or rest is None:
            # the unknown dim is the dynamic one when exactly one side is dynamic
            dyn_in = [d for d in x.shape if d is None]
            dyn_out = [d for d in known if d is None]
            if len(dyn_in) == 1 and not dyn_out:
                out[out.index(-1)] = None
                return [TensorType(x.dtype, tuple(out))]
            if len(dyn_in) == 1 and len(dyn_out) == 1:
                # the batch dim is carried; the -1 covers what is left of the static part
                static_in = _prod([d for d in x.shape if d is not None])
                static_out = _prod([d for d in known if d is not None])
                assert static_in is not None and static_out is not None
                if static_out == 0 or static_in % static_out:
                    raise ShapeError(f"cannot reshape {x.shape} to {tuple(target)}")
                out[out.index(-1)] = static_in // static_out
                return [TensorType(x.dtype, tuple(out))]
            raise ShapeError(f"cannot infer -1 in Reshape {tuple(target)} from {x.shape}")
        if rest == 0 or total % rest:
            raise ShapeError(f"cannot reshape {x.shape} to {tuple(target)}")
        out[out.index(-1)] = total // rest
    total_in, total_out = _prod(x.shape), _prod(out)
    if total_in is not None and total_out is not None and total_in != total_out:
        raise ShapeError(f"cannot reshape {x.shape} ({total_in} elements) to {tuple(out)}")
    return [TensorType(x.dtype, tuple(out))]


@register("Flatten", inputs=1, attrs={"axis": 1}, doc="(d0..d{axis-1}, rest) as 2-D")
def _flatten(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    axis = a["axis"] % (x.rank + 1) if a["axis"] < 0 else a["axis"]
    return [TensorType(x.dtype, (_prod(x.shape[:axis]), _prod(x.shape[axis:])))]


@register("Transpose", inputs=1, attrs={"perm": None}, doc="perm None reverses the axes")
def _transpose(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    perm = tuple(reversed(range(x.rank))) if a["perm"] is None else tuple(a["perm"])
    if sorted(perm) != list(range(x.rank)):
        raise ShapeError(f"Transpose perm {perm} is not a permutation of rank {x.rank}")
    return [TensorType(x.dtype, tuple(x.shape[p] for p in perm))]


@register("Concat", inputs=(1, -1), attrs={"axis": REQUIRED})
def _concat(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    first = ins[0]
    axis = normalize_axis(a["axis"], first.rank)
    total: Dim = 0
    for t in ins:
        if t.rank != first.rank:
            raise ShapeError(f"Concat inputs differ in rank: {first.shape} vs {t.shape}")
        for i, (p, q) in enumerate(zip(first.shape, t.shape, strict=True)):
            if i != axis and p is not None and q is not None and p != q:
                raise ShapeError(
                    f"Concat inputs differ off axis {axis}: {first.shape} vs {t.shape}"
                )
        d = t.shape[axis]
        total = None if total is None or d is None else total + d
    shape = list(first.shape)
    shape[axis] = total
    return [TensorType(first.dtype, tuple(shape))]


@register("Squeeze", inputs=1, attrs={"axes": REQUIRED})
def _squeeze(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    axes = {normalize_axis(ax, x.rank) for ax in a["axes"]}
    for ax in axes:
        if x.shape[ax] not in (1, None):
            raise ShapeError(f"Squeeze axis {ax} has size {x.shape[ax]}, not 1")
    return [TensorType(x.dtype, tuple(d for i, d in enumerate(x.shape) if i not in axes))]


@register("Unsqueeze", inputs=1, attrs={"axes": REQUIRED})
def _unsqueeze(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    rank = x.rank + len(a["axes"])
    axes = {normalize_axis(ax, rank) for ax in a["axes"]}
    dims = iter(x.shape)
    return [TensorType(x.dtype, tuple(1 if i in axes else next(dims) for i in range(rank)))]


@register("Slice", inputs=1, attrs={"starts": REQUIRED, "ends": REQUIRED, "axes": None,
                                    "steps": None},
          doc="numpy slicing x[start:end:step] on each listed axis (ONNX clamping rules)")
def _slice(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x = ins[0]
    axes = list(range(len(a["starts"]))) if a["axes"] is None else list(a["axes"])
    steps = [1] * len(axes) if a["steps"] is None else list(a["steps"])
    shape = list(x.shape)
    for ax, start, end, step in zip(axes, a["starts"], a["ends"], steps, strict=True):
        ax = normalize_axis(ax, x.rank)
        if step == 0:
            raise ShapeError("Slice step must not be 0")
        d = x.shape[ax]
        if d is None:
            if (start, end, step) != (0, 2**63 - 1, 1) and not (start == 0 and end >= 2**31):
                raise ShapeError(f"Slice on dynamic axis {ax} is only supported as a full slice")
            continue
        shape[ax] = len(range(*slice(start, end, step).indices(d)))
    return [TensorType(x.dtype, tuple(shape))]


@register("Gather", inputs=2, attrs={"axis": 0}, doc="numpy.take(data, indices, axis)")
def _gather(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    data, idx = ins
    axis = normalize_axis(a["axis"], data.rank)
    return [TensorType(data.dtype, data.shape[:axis] + idx.shape + data.shape[axis + 1:])]
