"""Kernel bindings: shape family, value-dependent ops (Shape, DynamicReshape, DynamicSlice,
Expand, Tile, Range, ConstantOfShape). Their outputs' shapes depend on input values, but by
plan time their output types are static (plans are built per concrete input), so ``prepare``
works everything out as for the static ops (``engine.executor.bindings.shape``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import InputError
from engine.executor.binding import Prepared, bind
from engine.executor.bindings.shape import _Arrays, _copy, _dims, slice_index
from engine.ir.graph import TensorType

__all__: list[str] = []


def _ints(a: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(a).reshape(-1)]


@bind("Shape")
def _shape_of(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    value = np.array(_dims(in_types[0])[attrs["start"]:attrs["end"]], dtype=np.int64)

    def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        np.copyto(outs[0], value)

    return Prepared(run)


bind("DynamicReshape")(_copy)


@bind("DynamicSlice")
def _dyn_slice(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    rank = len(_dims(in_types[0]))
    oshape = _dims(out_types[0])

    def index(params: Sequence[np.ndarray]) -> tuple[slice, ...]:
        axes = _ints(params[2]) if len(params) > 2 else None
        steps = _ints(params[3]) if len(params) > 3 else None
        return slice_index(rank, _ints(params[0]), _ints(params[1]), axes, steps)

    if all(c is not None for c in consts[1:]):
        fixed = index([c for c in consts[1:] if c is not None])

        def run_const(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
            np.copyto(outs[0], ins[0][fixed])

        return Prepared(run_const)

    def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        part = ins[0][index(ins[1:])]
        if part.shape != oshape:
            raise InputError(f"Slice gives shape {part.shape}; the plan expected {oshape}")
        np.copyto(outs[0], part)

    return Prepared(run)


@bind("Expand")
def _expand(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    oshape = _dims(out_types[0])

    def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        np.copyto(outs[0], np.broadcast_to(ins[0], oshape))

    return Prepared(run)


@bind("Tile")
def _tile(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    shape = _dims(in_types[0])
    oshape = _dims(out_types[0])
    # out viewed as (r0, d0, r1, d1, ...): one broadcasting copy, no temporaries
    split = tuple(v for r, d in zip(np.array(oshape) // np.maximum(shape, 1), shape,
                                    strict=True) for v in (int(r), d))
    src = tuple(v for d in shape for v in (1, d))

    def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        if outs[0].size:
            np.copyto(outs[0].reshape(split), ins[0].reshape(src))

    return Prepared(run)


@bind("Range")
def _range(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    n = _dims(out_types[0])[0]
    dtype = np.dtype(out_types[0].dtype)

    def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        start, delta = ins[0].item(), ins[2].item()
        # ONNX defines element i as start + i * delta (no accumulated rounding)
        np.copyto(outs[0], start + np.arange(n, dtype=np.float64 if dtype.kind == "f" else
                                             np.int64) * delta, casting="unsafe")

    return Prepared(run)


@bind("ConstantOfShape")
def _const_of_shape(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    value = np.asarray(attrs["value"]).astype(out_types[0].dtype)

    def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        outs[0].fill(value)

    return Prepared(run)
