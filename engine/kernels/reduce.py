"""Reductions over the middle axis of an (A, R, B) view: out (A, B); also ArgMax/ArgMin.

Any set of reduced axes that is one contiguous run (after dropping size-1 dims and merging
neighbours) has this form: reduce-last (B=1), reduce-first (A=1), global pooling over H, W of
NHWC (A=N, R=H*W, B=C), reduce-all (A=B=1). Bindings fall back to numpy for other patterns.
Sums accumulate in float64; max propagates NaN like numpy.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit

__all__ = ["PAR_MIN", "SUM", "MEAN", "MAX", "reduce_block", "reduce_arb", "arg_block", "arg_arb"]

PAR_MIN = 1 << 17  # elements below which the serial body wins (memory-bound: ~50 us serial)
SUM, MEAN, MAX = 0, 1, 2

# reassoc lets LLVM vectorize the float64 sums (NaN rules unchanged); the numpy error model
# drops the ZeroDivisionError branch.
_OPTS = {"fastmath": {"reassoc", "contract"}, "error_model": "numpy"}


_SIGN = np.int32(31)
_MAG = np.int32(0x7FFFFFFF)
_INF_BITS = np.int32(0x7F800000)
_NAN_BITS = np.int32(0x7FC00000)


@jit(error_model="numpy")
def _max_f32_bits(row: np.ndarray) -> np.int32:
    """The bits of max(row) for a non-empty float32 row; a NaN if any element is NaN.

    A float max reduction does not vectorize unless NaNs are assumed away, so this works on
    the bits: b ^ ((b >> 31) & 0x7FFFFFFF) orders float32 values as int32 (integer max
    reductions vectorize; the map is its own inverse), and NaN is an integer test.
    """
    bits = row.view(np.int32)
    best = np.int32(-2147483648)
    nan = np.int32(0)
    for j in range(bits.shape[0]):
        b = bits[j]
        key = b ^ ((b >> _SIGN) & _MAG)
        best = key if key > best else best
        nan |= np.int32((b & _MAG) > _INF_BITS)
    if nan:
        return _NAN_BITS
    return best ^ ((best >> _SIGN) & _MAG)


@jit(**_OPTS)
def reduce_block(
    x: np.ndarray, op: int, out: np.ndarray, alo: int, ahi: int, blo: int, bhi: int
) -> None:
    """out[a, b] = reduce_r x[a, r, b] for a in alo:ahi, b in blo:bhi (R >= 1 for MAX)."""
    na, nr, nb = x.shape
    inv = 1.0 / nr if nr > 0 else np.nan
    if nb == 1:
        x2 = x.reshape(na, nr)
        out_bits = out.view(np.int32)
        for a in range(alo, ahi):
            row = x2[a]
            if op == MAX:
                out_bits[a, 0] = _max_f32_bits(row)
            else:
                s = 0.0
                for r in range(nr):
                    s += row[r]
                out[a, 0] = s * inv if op == MEAN else s
        return
    # Subscripts into slices count up from 0, so numba drops its negative-index wraparound
    # select and LLVM vectorizes the column loops (x[a, r, blo + j] runs ~6x slower).
    w = bhi - blo
    acc = np.empty(w, np.float64)
    for a in range(alo, ahi):
        orow = out[a, blo:bhi]
        if op == MAX:
            first = x[a, 0, blo:bhi]
            for j in range(w):
                orow[j] = first[j]
            for r in range(1, nr):
                xr = x[a, r, blo:bhi]
                for j in range(w):
                    v = xr[j]
                    if v > orow[j] or v != v:
                        orow[j] = v
        else:
            acc[:] = 0.0
            for r in range(nr):
                xr = x[a, r, blo:bhi]
                for j in range(w):
                    acc[j] += xr[j]
            scale = inv if op == MEAN else 1.0
            for j in range(w):
                orow[j] = acc[j] * scale


@pjit
def reduce_arb(x: np.ndarray, op: int, out: np.ndarray, nt: int) -> None:
    """Parallel ``reduce_block`` on ``nt`` threads: split A, or B when A is too small."""
    na, _, nb = x.shape
    if na >= nt or nb < 16 * nt:
        chunks = min(nt, na)
        for k in prange(chunks):
            reduce_block(x, op, out, k * na // chunks, (k + 1) * na // chunks, 0, nb)
    else:
        for k in prange(nt):
            reduce_block(x, op, out, 0, na, k * nb // nt, (k + 1) * nb // nt)


@jit(inline="always")
def _better(v: float, best: float, find_max: bool, last: bool) -> bool:
    """Whether ``v`` (later along the axis) replaces ``best``: NaN beats everything, as in
    numpy; ties go to the later one only when ``last``."""
    if v != v:
        return last or best == best
    if find_max:
        return v >= best if last else v > best
    return v <= best if last else v < best


@jit(error_model="numpy")
def arg_block(x: np.ndarray, find_max: bool, last: bool, out: np.ndarray, alo: int, ahi: int,
              blo: int, bhi: int) -> None:
    """out[a, b] = the index r of the max (min) of x[a, :, b] for a in alo:ahi, b in blo:bhi;
    the first such index, or the last one when ``last`` (R >= 1)."""
    na, nr, nb = x.shape
    if nb == 1:
        x2 = x.reshape(na, nr)
        for a in range(alo, ahi):
            row = x2[a]
            best = row[0]
            bi = 0
            for r in range(1, nr):
                v = row[r]
                if _better(v, best, find_max, last):
                    best = v
                    bi = r
            out[a, 0] = bi
        return
    w = bhi - blo
    vals = np.empty(w, x.dtype)
    for a in range(alo, ahi):
        orow = out[a, blo:bhi]
        first = x[a, 0, blo:bhi]
        for j in range(w):
            vals[j] = first[j]
            orow[j] = 0
        for r in range(1, nr):
            xr = x[a, r, blo:bhi]
            for j in range(w):
                v = xr[j]
                if _better(v, vals[j], find_max, last):
                    vals[j] = v
                    orow[j] = r


@pjit
def arg_arb(x: np.ndarray, find_max: bool, last: bool, out: np.ndarray, nt: int) -> None:
    """Parallel ``arg_block`` on ``nt`` threads: split A, or B when A is too small."""
    na, _, nb = x.shape
    if na >= nt or nb < 16 * nt:
        chunks = min(nt, na)
        for k in prange(chunks):
            arg_block(x, find_max, last, out, k * na // chunks, (k + 1) * na // chunks, 0, nb)
    else:
        for k in prange(nt):
            arg_block(x, find_max, last, out, 0, na, k * nb // nt, (k + 1) * nb // nt)
