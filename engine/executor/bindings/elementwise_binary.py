"""Kernel bindings: elementwise family, binary and comparison ops (Add ... Greater, Where, Mod,
LessEqual, GreaterEqual, And, Or, Xor).

float32 arithmetic runs the numba kernels of ``engine.kernels.elementwise`` over a broadcast
collapsed to at most three dims (``broadcast_plan``), serial below a size threshold,
``prange`` above; other dtypes, comparisons and Where use numpy ufuncs with ``out=``.
Every decision (kernel, broadcast strides, threshold) is made here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.executor.binding import Native, Prepared, bind, native_prepared
from engine.executor.bindings.elementwise import (
    _F32,
    PAR_MIN_CHEAP,
    PAR_MIN_HEAVY,
    Arrays,
    _noop,
    _per_op,
    _size,
    _static,
    _ufunc_binding,
    _unary_fast,
)
from engine.executor.threads import use_parallel
from engine.ir.graph import TensorType
from engine.kernels import elementwise as K

__all__ = ["broadcast_plan"]

# Below the parallel threshold numpy's own SIMD loops match or beat ours for these, and a
# direct ufunc call skips the flattening reshapes (~0.5 us on tiny tensors).
_NUMPY_SMALL_BINARY = {"Add", "Sub", "Mul", "Div"}

Plan = tuple[tuple[int, ...], list[tuple[int, ...]]]  # (d0, d1, d2), element strides per input


# ----------------------------------------------------------------------------- broadcasting


def broadcast_plan(
    out_shape: Sequence[int], in_shapes: Sequence[Sequence[int]], max_rank: int = 3
) -> Plan | None:
    """Collapse a broadcast into at most ``max_rank`` dims.

    Returns (dims, per-input element strides) with dims left-padded to ``max_rank``; a
    broadcast dim has stride 0 and the last stride of every input is 0 or 1. None when the
    pattern needs more dims than that.
    """
    rank = len(out_shape)
    strides: list[list[int]] = []
    for shape in in_shapes:
        padded = (1,) * (rank - len(shape)) + tuple(int(d) for d in shape)
        st = [0] * rank
        acc = 1
        for ax in range(rank - 1, -1, -1):
            st[ax] = acc if padded[ax] != 1 else 0
            acc *= padded[ax]
        strides.append(st)
    dims: list[int] = []
    merged: list[list[int]] = [[] for _ in in_shapes]
    for ax in range(rank):
        d = int(out_shape[ax])
        if d == 1:
            continue
        # axis ax folds into the previous kept one when every input is contiguous across them
        if dims and all(m[-1] == st[ax] * d for m, st in zip(merged, strides, strict=True)):
            dims[-1] *= d
            for m, st in zip(merged, strides, strict=True):
                m[-1] = st[ax]
            continue
        dims.append(d)
        for m, st in zip(merged, strides, strict=True):
            m.append(st[ax])
    if len(dims) > max_rank:
        return None
    pad = max_rank - len(dims)
    full = tuple([1] * pad + dims)
    return full, [tuple([0] * pad + m) for m in merged]



# ----------------------------------------------------------------------------- binary

_BINARY_UFUNCS: dict[str, Callable[..., Any]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
    "Maximum": np.maximum, "Minimum": np.minimum,
    "Equal": np.equal, "Less": np.less, "Greater": np.greater,
}


def _is_const_scalar(c: np.ndarray | None, value: float) -> bool:
    return c is not None and c.size == 1 and float(c.reshape(-1)[0]) == value


def _prepare_binary(
    op: str,
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    out_t = out_types[0]
    n = _size(out_t.shape)
    if n == 0:
        return Prepared(_noop)
    a_t, b_t = in_types
    f32 = a_t.dtype == b_t.dtype == out_t.dtype == _F32
    if f32 and op == "Pow" and _is_const_scalar(consts[1], 2.0) and a_t.shape == out_t.shape:
        return _unary_fast("Square", 0.0, 0.0, n)  # x**2 (layer norms): a multiply, not powf
    shapes = [_static(a_t.shape), _static(b_t.shape)]
    plan = broadcast_plan(_static(out_t.shape), shapes) if f32 else None
    if plan is not None and plan[0][1] == 1 and op in _NUMPY_SMALL_BINARY and n < PAR_MIN_CHEAP:
        plan = None  # same shapes or a scalar operand, small: a plain ufunc call is cheapest
    if plan is not None:
        code = K.BINARY_CODES[op]
        threshold = PAR_MIN_HEAVY if op == "Pow" else PAR_MIN_CHEAP
        par = use_parallel(n >= threshold)
        fn = K.binary_par if par else K.binary_serial
        tiled = _tile_short_rows(plan, consts)
        if tiled is not None:
            return _binary_tiled(fn, code, *tiled)
        (_, d1, d2), ((a0, a1, a2), (b0, b1, b2)) = plan

        def args(ins: Arrays, outs: Arrays, scratch: Arrays) -> tuple[Any, ...]:
            return (ins[0].reshape(-1), ins[1].reshape(-1), outs[0].reshape(-1),
                    d1, d2, a0, a1, a2, b0, b1, b2, code)

        return native_prepared(Native("EK.binary_par" if par else "EK.binary_serial", args))

    # other dtypes and rank > 3 broadcasts: numpy. Integer Div: true divide cast back to the
    # integer type truncates toward zero, as C, ONNX and onnxruntime do.
    uf = _BINARY_UFUNCS[op]
    if f32:
        def run_f32(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
            uf(ins[0], ins[1], out=outs[0])

        return Prepared(run_f32)

    def run_numpy(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        uf(ins[0], ins[1], out=outs[0], casting="unsafe")

    return Prepared(run_numpy)


# Per-channel rows shorter than this (NHWC with few channels) are regrouped: R rows of the
# broadcast vector are tiled into one long row, so the kernel's inner loop vectorizes.
_TILE_BELOW = 64
_TILE_MAX = 1024

Tiled = tuple[tuple[int, ...], list[tuple[int, ...]], int, int, int, np.ndarray | None]


def _tile_short_rows(plan: Plan, consts: Sequence[np.ndarray | None]) -> Tiled | None:
    """For ``x (d0, d1, d2) op v (d2,)`` with short d2: the regrouped plan.

    Returns (dims, strides, which input is the vector, its length d2, repeat R, the tiled
    constant or None when the vector must be tiled per call).
    """
    (d0, d1, d2), strides = plan
    if d2 >= _TILE_BELOW or d1 == 1:
        return None
    for vec in (0, 1):
        v0, v1, v2 = strides[vec]
        f0, f1, f2 = strides[1 - vec]
        if v1 != 0 or v2 != 1 or (v0 != 0 and d0 != 1) or f1 != d2 or f2 != 1:
            continue
        reps = next((r for r in range(min(d1, _TILE_MAX // d2), 1, -1) if d1 % r == 0), 1)
        if reps == 1:
            return None
        dims = (d0, d1 // reps, d2 * reps)
        new: list[tuple[int, ...]] = [(0, 0, 0), (0, 0, 0)]
        new[vec] = (0, 0, 1)
        new[1 - vec] = (f0, d2 * reps, 1)
        c = consts[vec]
        tile: np.ndarray | None = None
        if c is not None:
            tile = np.tile(np.ascontiguousarray(c, dtype=np.float32).reshape(-1), reps)
        return dims, new, vec, d2, reps, tile
    return None


def _binary_tiled(
    fn: Callable[..., None], code: int,
    dims: tuple[int, ...], strides: list[tuple[int, ...]], vec: int, width: int, reps: int,
    tile: np.ndarray | None,
) -> Prepared:
    _, d1, d2 = dims
    (a0, a1, a2), (b0, b1, b2) = strides
    if tile is not None:
        tc = tile

        def run_const(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
            x, y = (tc, ins[1].reshape(-1)) if vec == 0 else (ins[0].reshape(-1), tc)
            fn(x, y, outs[0].reshape(-1), d1, d2, a0, a1, a2, b0, b1, b2, code)

        return Prepared(run_const)

    def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        t = scratch[0]
        np.copyto(t.reshape(reps, width), ins[vec].reshape(1, width))
        x, y = (t, ins[1].reshape(-1)) if vec == 0 else (ins[0].reshape(-1), t)
        fn(x, y, outs[0].reshape(-1), d1, d2, a0, a1, a2, b0, b1, b2, code)

    return Prepared(run, scratch=(((width * reps,), _F32),))


for _op in ("Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Minimum", "Equal", "Less", "Greater"):
    bind(_op)(_per_op(_prepare_binary, _op))


# ----------------------------------------------------------------------------- Where


@bind("Where")
def _prepare_where(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        cond, x, y = ins
        out = outs[0]
        np.copyto(out, y, casting="unsafe")  # both broadcast to out's shape
        np.copyto(out, x, where=cond.astype(bool, copy=False), casting="unsafe")

    return Prepared(run)


# ----------------------------------------------------------------------------- numpy-backed
# Ops imported models use rarely and on small tensors (masks, shape arithmetic): one ufunc.

_NUMPY_BINARY: dict[str, Callable[..., Any]] = {
    "LessEqual": np.less_equal, "GreaterEqual": np.greater_equal,
    "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
}
for _op, _fn in _NUMPY_BINARY.items():
    bind(_op)(_ufunc_binding(_fn, 2))


@bind("Mod")
def _prepare_mod(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    fn = np.fmod if attrs["fmod"] else np.mod

    def run(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        fn(ins[0], ins[1], out=outs[0], casting="unsafe")

    return Prepared(run)
