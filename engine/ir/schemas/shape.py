"""Ops that move data without arithmetic: reshape, transpose, concat, slice, gather."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import DTypeError, ShapeError
from engine.ir.graph import Dim, TensorType
from engine.ir.schema import (
    REQUIRED,
    broadcast_shapes,
    normalize_axis,
    register,
    register_value_dependent,
)


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
            out[out.index(-1)] = None  # known once the input shapes are (specialize)
            return [TensorType(x.dtype, tuple(out))]
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
            if not ((start, end, step) == (0, 2**63 - 1, 1) or (start == 0 and end >= 2**31)):
                shape[ax] = None  # a part of a dynamic axis: dynamic too
            continue
        shape[ax] = len(range(*slice(start, end, step).indices(d)))
    return [TensorType(x.dtype, tuple(shape))]


@register("Gather", inputs=2, attrs={"axis": 0}, doc="numpy.take(data, indices, axis)")
def _gather(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    data, idx = ins
    axis = normalize_axis(a["axis"], data.rank)
    return [TensorType(data.dtype, data.shape[:axis] + idx.shape + data.shape[axis + 1:])]


@register("GatherElements", inputs=2, attrs={"axis": 0},
          doc="out[i..] = data[i.. with indices[i..] on `axis`] (numpy.take_along_axis)")
def _gather_elements(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    data, idx = ins
    if idx.rank != data.rank:
        raise ShapeError(f"GatherElements indices {idx} must have the rank of data {data}")
    axis = normalize_axis(a["axis"], data.rank)
    for i, (d, k) in enumerate(zip(data.shape, idx.shape, strict=True)):
        if i != axis and d is not None and k is not None and k > d:
            raise ShapeError(f"GatherElements indices {idx} exceed data {data} on axis {i}")
    if np.dtype(idx.dtype).kind not in "iu":
        raise DTypeError(f"GatherElements indices must be integers, got {idx.dtype}")
    return [TensorType(data.dtype, idx.shape)]


# -- value-dependent ops (their output shapes follow input values; see passes/specialize) ------

Values = Sequence[np.ndarray | None]


def _ints(v: np.ndarray | None) -> list[int] | None:
    return None if v is None else [int(d) for d in np.asarray(v).reshape(-1)]


def _length(t: TensorType, what: str) -> int:
    if t.rank != 1 or t.shape[0] is None:
        raise ShapeError(f"{what} must be a 1-D tensor of static length, got {t}")
    return int(t.shape[0])


@register("Shape", inputs=1, attrs={"start": 0, "end": None},
          doc="the input's shape[start:end] as int64 (ONNX Shape)")
def _shape(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    n = len(range(ins[0].rank)[a["start"]:a["end"]])
    return [TensorType("int64", (n,))]


@register_value_dependent("DynamicReshape", inputs=2, attrs={"allowzero": 0},
                          doc="Reshape to the int64 shape tensor of input 1 (ONNX rules)")
def _dyn_reshape(ins: Sequence[TensorType], a: Mapping[str, Any], v: Values) -> list[TensorType]:
    x = ins[0]
    target = _ints(v[1])
    if target is None:
        return [TensorType(x.dtype, (None,) * _length(ins[1], "Reshape shape"))]
    if a["allowzero"] and 0 in target:
        if -1 in target:
            raise ShapeError(f"Reshape shape {target} has both 0 (allowzero) and -1")
        total = _prod(x.shape)
        if total is not None and total != 0:
            raise ShapeError(f"cannot reshape {x.shape} to {tuple(target)}")
        return [TensorType(x.dtype, tuple(target))]
    return _reshape([x], {"shape": tuple(target)})


@register_value_dependent("DynamicSlice", inputs=(3, 5),
                          doc="x, starts, ends, axes?, steps? as tensors (ONNX Slice rules)")
def _dyn_slice(ins: Sequence[TensorType], a: Mapping[str, Any], v: Values) -> list[TensorType]:
    x = ins[0]
    vals = [_ints(v[i]) if i < len(v) else None for i in range(5)]
    starts, ends, axes, steps = vals[1], vals[2], vals[3], vals[4]
    given = range(1, len(ins))
    if starts is not None and ends is not None and all(vals[i] is not None for i in given):
        return _slice([x], {"starts": starts, "ends": ends, "axes": axes, "steps": steps})
    if len(ins) > 3 and axes is not None:
        touched = {normalize_axis(ax, x.rank) for ax in axes}
        shape = tuple(None if i in touched else d for i, d in enumerate(x.shape))
        return [TensorType(x.dtype, shape)]
    return [TensorType(x.dtype, (None,) * x.rank)]


@register_value_dependent("Expand", inputs=2, doc="broadcast x to the shape tensor (ONNX)")
def _expand(ins: Sequence[TensorType], a: Mapping[str, Any], v: Values) -> list[TensorType]:
    x = ins[0]
    target = _ints(v[1])
    if target is not None:
        return [TensorType(x.dtype, broadcast_shapes(x.shape, tuple(target)))]
    rank = max(x.rank, _length(ins[1], "Expand shape"))
    padded = (1,) * (rank - x.rank) + x.shape
    return [TensorType(x.dtype, tuple(None if d == 1 else d for d in padded))]


@register_value_dependent("Tile", inputs=2, doc="numpy.tile(x, repeats) (ONNX Tile)")
def _tile(ins: Sequence[TensorType], a: Mapping[str, Any], v: Values) -> list[TensorType]:
    x = ins[0]
    reps = _ints(v[1])
    if reps is None:
        return [TensorType(x.dtype, (None,) * x.rank)]
    if len(reps) != x.rank:
        raise ShapeError(f"Tile repeats {reps} must have one entry per axis of {x}")
    return [TensorType(x.dtype, tuple(None if d is None else d * r
                                      for d, r in zip(x.shape, reps, strict=True)))]


@register_value_dependent("Range", inputs=3, doc="arange(start, limit, delta), scalar inputs")
def _range(ins: Sequence[TensorType], a: Mapping[str, Any], v: Values) -> list[TensorType]:
    if any(t.rank != 0 for t in ins):
        raise ShapeError(f"Range inputs must be scalars, got {[str(t) for t in ins]}")
    if any(x is None for x in v):
        return [TensorType(ins[0].dtype, (None,))]
    start, limit, delta = (np.asarray(x).item() for x in v)
    if delta == 0:
        raise ShapeError("Range delta must not be 0")
    return [TensorType(ins[0].dtype, (max(int(math.ceil((limit - start) / delta)), 0),))]


@register_value_dependent("ConstantOfShape", inputs=1, attrs={"value": 0.0, "dtype": "float32"},
                          doc="a tensor of the shape given by input 0 filled with `value`")
def _const_of_shape(ins: Sequence[TensorType], a: Mapping[str, Any],
                    v: Values) -> list[TensorType]:
    shape = _ints(v[0])
    if shape is None:
        return [TensorType(a["dtype"], (None,) * _length(ins[0], "ConstantOfShape input"))]
    if any(d < 0 for d in shape):
        raise ShapeError(f"ConstantOfShape shape {shape} has a negative dim")
    return [TensorType(a["dtype"], tuple(shape))]
