# mypy: disable-error-code="attr-defined, no-untyped-call, return-value, call-arg"
# mypy: disable-error-code="arg-type, var-annotated"
"""The hybrid int8 GEMM's portable kernel: the VNNI kernel's results on any CPU numba supports.

engine.kernels.quant_hybrid describes the arithmetic and runs this kernel when the CPU has no
AVX-512 VNNI (or when asked, for tests): the same packed weight, the same integer sums
(int16 products of (u8 - 128) and the weight, widened and added in int32: no offset
correction needed) and the same float32 rescale, in plain LLVM vector IR, 4 x 16 tiles over
16-column slices of each packed column block.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import carray, types
from numba.extending import intrinsic

from engine.kernels._jit import jit
from engine.kernels.quant_hybrid import (
    _F32,
    _I32,
    _I64,
    _OFFSET,
    _VEC,
    _at,
    _data,
    _i64,
    _itile,
    _nvec,
    _spill,
    _splat,
)

__all__ = ["portable_gemm"]


_PW = 16  # columns of a portable tile: one slice of a packed column block
# rows of a portable tile: 4 x 16 int32 accumulators fit AVX2's and NEON's registers (AVX2
# code on Zen 4, 512 x 768 x 768: 33 GOPS at 4 rows, 29 at 8)
_PR = 4
_BYTES = ir.VectorType(ir.IntType(8), 4 * _PW)
_I16 = ir.IntType(16)
_HVEC = ir.VectorType(_I16, _PW)


@intrinsic
def _pstep(typingctx: Any, acc: Any, xw: Any, xi: Any, xs: Any, wp: Any, wi: Any,
           mr: Any) -> Any:
    """_dp_step's arithmetic in plain LLVM vector IR (any target): for r < mr, c < 16,
    acc[r*16 + c] += sum_t (u8 x[4*(xi + r*xs) + t] - 128) * s8 w[4*(wi + c) + t]. The 64
    weight bytes are split into the 4 k of each lane and widened to int16 once for all rows;
    each product is exact in int16 (|(u8 - 128) * s8| <= 2^14) and added in int32."""
    if not _nvec(mr, types.IntegerLiteral(_PW)):
        return None
    rows = mr.literal_value

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, xary, xi, xs, wary, wi = args[:6]
        xi = _i64(context, builder, xi, sig.args[2])
        xs = _i64(context, builder, xs, sig.args[3])
        wi = _i64(context, builder, wi, sig.args[5])
        i8p = ir.IntType(8).as_pointer()
        xb = builder.bitcast(_data(context, builder, sig.args[1], xary), i8p)
        wdata = _data(context, builder, sig.args[4], wary)
        wb = builder.load(_at(builder, wdata, wi, _BYTES), align=1)
        wv = [builder.sext(builder.shuffle_vector(
            wb, ir.Constant(_BYTES, None),
            ir.Constant(ir.VectorType(_I32, _PW), [4 * c + t for c in range(_PW)])), _HVEC)
            for t in range(4)]
        four = ir.Constant(_I64, 4)
        for r in range(rows):
            at = _at(builder, ptr, ir.Constant(_I64, r * _PW))
            a = builder.load(at, align=4)
            base = builder.mul(builder.add(xi, builder.mul(xs, ir.Constant(_I64, r))), four)
            for t in range(4):
                byte = builder.load(builder.gep(xb, [builder.add(base, ir.Constant(_I64, t))]))
                xv = builder.sub(builder.zext(byte, _I16), ir.Constant(_I16, _OFFSET))
                a = builder.add(a, builder.sext(builder.mul(wv[t], _splat(builder, xv, _HVEC)),
                                                _VEC))
            builder.store(a, at, align=4)
        return context.get_dummy_value()

    return types.none(acc, xw, xi, xs, wp, wi, mr), codegen


@jit(error_model="numpy")
def _ptile(xw: np.ndarray, x0: int, k4: int, wp: np.ndarray, w0: int, ws: int,
           yf: np.ndarray, n: int, m0: int, col0: int, cols: int, rscale: np.ndarray,
           scale: np.ndarray, mr: int) -> None:
    """The portable kernel's mr x 16 tile: _tile's contract with ``ws`` int32 between one
    k4 group of the weight slice and the next (the packed block's NR); no colsum correction
    (the offset is undone per element), the same float32 rescale."""
    acc = _itile(mr, _PW)
    for kk in range(k4):
        _pstep(acc, xw, x0 + kk, k4, wp, w0 + kk * ws, mr)
    tmp = _itile(mr, _PW)
    _spill(acc, tmp, mr, _PW)
    t = carray(tmp, (mr, _PW))
    for r in range(mr):
        base = (m0 + r) * n + col0
        rs = rscale[m0 + r]
        for j in range(cols):
            yf[base + j] = _F32(t[r, j]) * (rs * scale[col0 + j])


@jit(error_model="numpy")
def portable_gemm(xq: np.ndarray, rscale: np.ndarray, wp: np.ndarray, scale: np.ndarray,
                   y: np.ndarray) -> None:
    """y (M, N) as the VNNI gemm computes it, on any CPU: 4-row tiles, then single rows
    (reads no row of xq past M)."""
    m, n = y.shape
    nb, k4, nr = wp.shape
    xw = xq.reshape(-1).view(np.int32)
    wf = wp.reshape(-1)
    yf = y.reshape(-1)
    full = m // _PR * _PR
    for cb in range(nb):
        for sub in range(nr // _PW):
            col0 = cb * nr + sub * _PW
            if col0 >= n:
                break
            cols = min(_PW, n - col0)
            w0 = cb * k4 * nr + sub * _PW
            for m0 in range(0, full, _PR):
                _ptile(xw, m0 * k4, k4, wf, w0, nr, yf, n, m0, col0, cols, rscale, scale, _PR)
            for m0 in range(full, m):
                _ptile(xw, m0 * k4, k4, wf, w0, nr, yf, n, m0, col0, cols, rscale, scale, 1)
