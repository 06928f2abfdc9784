"""Kernel bindings: shape family (Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat,
Slice, Gather, GatherElements). Everything shape-dependent is worked out in ``prepare``;
``run`` is a copy or one kernel call. The value-dependent ops are in ``shape_dynamic``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import DTypeError, InputError, ShapeError
from engine.executor.binding import Native, Prepared, bind, native_prepared
from engine.executor.threads import plan_threads, use_parallel
from engine.ir.graph import TensorType
from engine.kernels import shape as K

__all__ = ["canonical_perm", "slice_index"]

_U32 = np.dtype(np.uint32)
_Arrays = Sequence[np.ndarray]


def _dims(t: TensorType) -> tuple[int, ...]:
    return tuple(int(d or 0) for d in t.shape)  # types are concrete by the time we bind


# -- pure copies -------------------------------------------------------------------------------


@bind("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def _copy(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    oshape = _dims(out_types[0])
    if math.prod(oshape) != math.prod(_dims(in_types[0])):
        raise ShapeError(f"cannot copy {in_types[0].shape} into {out_types[0].shape}")

    if np.dtype(in_types[0].dtype) == object or in_types[0].dtype != out_types[0].dtype:
        def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
            np.copyto(outs[0], ins[0].reshape(oshape))

        return Prepared(run)

    def args(ins: _Arrays, outs: _Arrays, _s: Any) -> tuple[Any, ...]:
        return ins[0].reshape(-1).view(np.uint8), outs[0].reshape(-1).view(np.uint8)

    return native_prepared(Native("SK.copy_bytes", args))


# -- Transpose -------------------------------------------------------------------------------


def canonical_perm(
    shape: Sequence[int], perm: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The same transpose with size-1 axes dropped and axes that stay neighbours merged."""
    keep = [i for i, d in enumerate(shape) if d != 1]
    remap = {ax: k for k, ax in enumerate(keep)}
    sizes = [shape[ax] for ax in keep]
    groups: list[list[int]] = []  # runs of input axes, in output order
    for ax in (remap[p] for p in perm if shape[p] != 1):
        if groups and groups[-1][-1] + 1 == ax:
            groups[-1].append(ax)
        else:
            groups.append([ax])
    order = sorted(range(len(groups)), key=lambda g: groups[g][0])  # groups in input order
    cshape = tuple(math.prod(sizes[ax] for ax in groups[g]) for g in order)
    cperm = tuple(order.index(j) for j in range(len(groups)))
    return cshape, cperm


@bind("Transpose")
def _transpose(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    shape = _dims(in_types[0])
    rank = len(shape)
    chunks = plan_threads()
    perm = tuple(reversed(range(rank))) if attrs["perm"] is None else tuple(attrs["perm"])
    cshape, cperm = canonical_perm(shape, perm)
    n = math.prod(shape)
    four_bytes = np.dtype(in_types[0].dtype).itemsize == 4

    if cperm == tuple(range(len(cperm))):
        return _copy(attrs, in_types, out_types, consts)

    if four_bytes and cperm in ((1, 0), (0, 2, 1)):
        xs = (1, *cshape) if len(cshape) == 2 else cshape
        os_ = (xs[0], xs[2], xs[1])
        tkern = K.transpose_last2 if use_parallel(n >= K.PAR_MIN) else None
        tblock = K.transpose_last2_block
        items = xs[0] * ((xs[1] + K.TILE - 1) // K.TILE)

        def run_t(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
            x3, o3 = ins[0].reshape(xs).view(_U32), outs[0].reshape(os_).view(_U32)
            if tkern is not None:
                tkern(x3, o3, chunks)
            else:
                tblock(x3, o3, 0, items)

        return Prepared(run_t)

    if four_bytes and cperm in ((1, 0, 2), (0, 2, 1, 3)):
        x4s = (1, *cshape) if len(cshape) == 3 else cshape
        o4s = (x4s[0], x4s[2], x4s[1], x4s[3])
        skern = K.swap_middle if use_parallel(n >= K.PAR_MIN) else None
        sblock = K.swap_middle_block
        work = x4s[0] * x4s[2]

        def run_s(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
            x4, o4 = ins[0].reshape(x4s).view(_U32), outs[0].reshape(o4s).view(_U32)
            if skern is not None:
                skern(x4, o4, chunks)
            else:
                sblock(x4, o4, 0, work)

        return Prepared(run_s)

    def run_np(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        np.copyto(outs[0], ins[0].transpose(perm))

    return Prepared(run_np)


# -- Concat ----------------------------------------------------------------------------------


@bind("Concat")
def _concat(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    oshape = _dims(out_types[0])
    axis = attrs["axis"] % len(oshape)
    outer, inner = math.prod(oshape[:axis]), math.prod(oshape[axis + 1:])
    width = oshape[axis] * inner
    # each input is an (outer, d * inner) block of columns of the (outer, width) output
    parts: list[tuple[int, tuple[int, int], slice]] = []
    off = 0
    for i, t in enumerate(in_types):
        cols = _dims(t)[axis] * inner
        if cols and outer:
            parts.append((i, (outer, cols), slice(off, off + cols)))
        off += cols
    o2shape = (outer, width)

    def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        o2 = outs[0].reshape(o2shape)
        for i, shp, cols in parts:
            np.copyto(o2[:, cols], ins[i].reshape(shp))

    return Prepared(run)


# -- Slice -----------------------------------------------------------------------------------


def slice_index(rank: int, starts: Sequence[int], ends: Sequence[int],
                axes: Sequence[int] | None, steps: Sequence[int] | None) -> tuple[slice, ...]:
    """The numpy index of an ONNX Slice of a rank-``rank`` tensor (axes default to the first
    ``len(starts)``, steps to 1)."""
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * rank
    for ax, s, e, st in zip(axes, starts, ends, steps, strict=True):
        if st == 0:
            raise ShapeError("Slice step must not be 0")
        # numpy applies Python's slice clamping (huge and negative bounds included)
        index[ax % rank] = slice(int(s), int(e), int(st))
    return tuple(index)


@bind("Slice")
def _slice(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    shape = _dims(in_types[0])
    idx = slice_index(len(shape), attrs["starts"], attrs["ends"], attrs["axes"], attrs["steps"])
    got = tuple(len(range(*sl.indices(n))) for sl, n in zip(idx, shape, strict=True))
    if got != _dims(out_types[0]):
        raise ShapeError(f"Slice of {shape} gives {got}, but the graph says {out_types[0]}")

    def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        np.copyto(outs[0], ins[0][idx])

    return Prepared(run)


# -- Gather ----------------------------------------------------------------------------------


def _index_as(itype: np.dtype[Any], shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """Indices reshaped to ``shape``: int32 and int64 as they are (the kernels take both),
    other integer types widened to int64."""
    native = itype in (np.dtype(np.int32), np.dtype(np.int64))

    def reshape(indices: np.ndarray) -> np.ndarray:
        r = indices.reshape(shape)
        return r if native else r.astype(np.int64)

    return reshape


@bind("Gather")
def _gather(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    shape = _dims(in_types[0])
    axis = attrs["axis"] % len(shape)
    a, d, b = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    itype = np.dtype(in_types[1].dtype)
    if itype.kind not in "iu":
        raise DTypeError(f"Gather indices must be integers, got {itype}")
    k = math.prod(_dims(in_types[1]))
    xs, os_ = (a, d, b), (a, k, b)
    flat = _index_as(itype, (k,))

    def bad(indices: np.ndarray, pos: int) -> str:
        return (f"Gather index {int(indices.reshape(-1)[pos])} is out of range for axis "
                f"{axis} of size {d}")

    const_idx = None
    if consts[1] is not None:
        const_idx = flat(np.asarray(consts[1]))
        pos = K.check_indices(const_idx, d)
        if pos >= 0:
            raise ShapeError(bad(const_idx, pos))

    if np.dtype(in_types[0].dtype).itemsize != 4:
        def run_np(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
            idx = const_idx if const_idx is not None else flat(ins[1])
            if const_idx is None and (pos := K.check_indices(idx, d)) >= 0:
                raise InputError(bad(idx, pos))
            np.take(ins[0].reshape(xs), idx, axis=1, out=outs[0].reshape(os_), mode="wrap")

        return Prepared(run_np)

    chunks = plan_threads()
    kern = K.gather if use_parallel(a * k * b >= K.PAR_MIN and a * k >= 2) else None
    block = K.gather_block
    items = a * k
    check = K.check_indices

    def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        if const_idx is not None:
            idx = const_idx
        else:
            idx = flat(ins[1])
            pos = check(idx, d)
            if pos >= 0:
                raise InputError(bad(idx, pos))
        x3, o3 = ins[0].reshape(xs).view(_U32), outs[0].reshape(os_).view(_U32)
        if kern is not None:
            kern(x3, idx, o3, chunks)
        else:
            block(x3, idx, o3, 0, items)

    return Prepared(run)


# -- GatherElements --------------------------------------------------------------------------

# elements move as unsigned ints of their size: one compiled kernel per itemsize, bit-exact
_UINT: dict[int, np.dtype[Any]] = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: _U32,
                                   8: np.dtype(np.uint64)}


@bind("GatherElements")
def _gather_elements(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    dshape, ishape = _dims(in_types[0]), _dims(in_types[1])
    rank = len(dshape)
    axis = attrs["axis"] % rank
    d = dshape[axis]
    a, k, b = math.prod(ishape[:axis]), ishape[axis], math.prod(ishape[axis + 1:])
    # off the axis, indices may be shorter than data: gather from that corner of data
    sub = tuple(d if i == axis else n for i, n in enumerate(ishape))
    corner = tuple(slice(0, n) for n in sub) if sub != dshape else None
    xs, is3 = (a, d, b), (a, k, b)
    dtype = np.dtype(in_types[0].dtype)
    uint = _UINT[dtype.itemsize]
    idx3 = _index_as(np.dtype(in_types[1].dtype), is3)

    def bad(indices: np.ndarray, pos: int) -> str:
        return (f"GatherElements index {int(indices.reshape(-1)[pos])} is out of range for "
                f"axis {axis} of size {d} (expected -{d} <= index < {d})")

    const_idx = None
    if consts[1] is not None:
        const_idx = idx3(np.asarray(consts[1]))
        wrong = np.flatnonzero((const_idx < -d) | (const_idx >= d))
        if wrong.size:
            raise ShapeError(bad(const_idx, int(wrong[0])))
    kern = K.gather_elements if use_parallel(a * k * b >= K.PAR_MIN and a * k >= 2) else None
    block = K.gather_elements_block
    chunks = plan_threads()
    scratch = ((sub, dtype.name),) if corner is not None else ()
    empty = a * k * b == 0

    def run(ins: _Arrays, outs: _Arrays, s: _Arrays) -> None:
        if empty:
            return
        idx = const_idx if const_idx is not None else idx3(ins[1])
        data = ins[0]
        if corner is not None:
            np.copyto(s[0], data[corner])
            data = s[0]
        x3, o3 = data.reshape(xs).view(uint), outs[0].reshape(is3).view(uint)
        pos = kern(x3, idx, o3, chunks) if kern is not None else block(x3, idx, o3, 0, a * k)
        if pos >= 0:
            raise InputError(bad(idx, pos))

    return Prepared(run, scratch)
