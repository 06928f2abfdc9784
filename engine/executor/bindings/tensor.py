"""Kernel bindings: tensor family (Pad). ``prepare`` turns pads and mode into index maps for
``engine.kernels.tensor``; ``run`` is one kernel call."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import ShapeError, UnsupportedOpError
from engine.executor.binding import Prepared, bind
from engine.executor.threads import plan_threads, use_parallel
from engine.ir.graph import TensorType
from engine.ir.schemas.tensor import pad_axes
from engine.kernels import tensor as K

__all__ = ["axis_map"]

_Arrays = Sequence[np.ndarray]
_UINT: dict[int, np.dtype[Any]] = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16),
                                   4: np.dtype(np.uint32), 8: np.dtype(np.uint64)}


def axis_map(d: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each output position along one axis, the input position it copies (-1: the
    constant). Negative pads crop first; the modes then extend what is left as numpy.pad
    does (reflect and wrap repeat periodically when the pad is longer than the axis)."""
    lo = max(-before, 0)
    n = d - lo - max(-after, 0)
    pb, pa = max(before, 0), max(after, 0)
    t = np.arange(-pb, n + pa, dtype=np.int64)  # position relative to the kept part
    inside = (t >= 0) & (t < n)
    if n <= 0 and (pb or pa) and mode != "constant":
        raise ShapeError(f"Pad mode {mode!r} cannot extend an axis with no elements left")
    if mode == "constant" or n <= 0:
        rel = np.where(inside, t, -1 - lo)
    elif mode == "edge":
        rel = np.clip(t, 0, n - 1)
    elif mode == "wrap":
        rel = np.mod(t, n)
    elif mode == "reflect":
        if n == 1:
            rel = np.zeros_like(t)
        else:
            period = 2 * (n - 1)
            u = np.mod(t, period)
            rel = np.where(u >= n, period - u, u)
    else:
        raise UnsupportedOpError(f"Pad mode {mode!r} is not supported")
    return rel + lo


@bind("Pad")
def _pad(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    shape = tuple(int(d or 0) for d in in_types[0].shape)
    oshape = tuple(int(d or 0) for d in out_types[0].shape)
    if consts[1] is None:
        raise ShapeError("Pad pads must be constant when the plan is built (a constant, or "
                         "computed from input shapes)")
    rank = len(shape)
    axes = pad_axes(attrs["axes"], rank)
    flat = [int(p) for p in np.asarray(consts[1]).reshape(-1)]
    pads = [(0, 0)] * rank
    for i, ax in enumerate(axes):
        pads[ax] = (flat[i], flat[len(axes) + i])
    mode = attrs["mode"]
    maps = [axis_map(d, b, e, mode) for d, (b, e) in zip(shape, pads, strict=True)]
    got = tuple(len(m) for m in maps)
    if got != oshape:
        raise ShapeError(f"Pad of {shape} by {flat} gives {got}, but the graph says {oshape}")
    dtype = np.dtype(in_types[0].dtype)
    uint = _UINT[dtype.itemsize]
    touched = [ax for ax, p in enumerate(pads) if p != (0, 0)]

    def fill_bits(value: np.ndarray | None) -> np.generic:
        v = np.zeros(1, dtype) if value is None else np.asarray(value).astype(dtype).reshape(1)
        return v.view(uint)[0]  # type: ignore[no-any-return]

    if not touched or math.prod(oshape) == 0:
        def run_copy(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
            if outs[0].size:
                np.copyto(outs[0], ins[0])

        return Prepared(run_copy)

    last = touched[-1]
    nb = math.prod(shape[last + 1:])
    r_in, d_in = math.prod(shape[:last]), shape[last]
    r_out, d_out = math.prod(oshape[:last]), oshape[last]
    rmap = np.zeros(1, np.int64).reshape(())  # row index over the axes before ``last``
    for ax in range(last):
        m = maps[ax]
        rmap = np.where((rmap[..., None] >= 0) & (m >= 0), rmap[..., None] * shape[ax] + m, -1)
    rmap = np.ascontiguousarray(rmap.reshape(r_out), dtype=np.int64)
    cmap = np.ascontiguousarray(maps[last], dtype=np.int64)
    b, e = pads[last]
    lo = max(-b, 0)
    c0 = max(b, 0)
    c1 = c0 + d_in - lo - max(-e, 0)
    off = c0 - lo
    xs, os_ = (r_in, d_in * nb), (r_out, d_out * nb)
    const_fill = (fill_bits(consts[2]) if len(consts) > 2 and consts[2] is not None
                  else fill_bits(None) if len(in_types) < 3 else None)
    kern = K.pad if use_parallel(math.prod(oshape) >= K.PAR_MIN and r_out >= 2) else None
    block = K.pad_block
    chunks = plan_threads()

    def run(ins: _Arrays, outs: _Arrays, _s: Any) -> None:
        fill = const_fill if const_fill is not None else fill_bits(ins[2])
        x2, o2 = ins[0].reshape(xs).view(uint), outs[0].reshape(os_).view(uint)
        if kern is not None:
            kern(x2, o2, rmap, cmap, nb, c0, c1, off, fill, chunks)
        else:
            block(x2, o2, rmap, cmap, nb, c0, c1, off, fill, 0, r_out)

    return Prepared(run)
