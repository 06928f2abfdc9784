"""DenseW8 as a register-tiled GEMM that reads the int8 weight directly (float32 arithmetic).

``y = (x @ w) * scale`` for x float32 (M, K), w int8 (K, N) as the model holds it, and scale
float32 (N,). An MR x NR tile of float32 accumulators
stays in vector registers (``stack_tile`` and explicit LLVM vector code, as the float conv's
tile in ``engine.kernels.conv``); each k step sign-extends NR int8 weights to float32 once and
multiplies them into all MR rows, so the weight is never widened into memory. The per-column
scale is applied when the tile is stored (``(sum x*q) * s`` equals ``sum x*(q*s)`` up to float
rounding). Column blocks are the outer loop: one block's K x NR int8 weights stay in L1 while
every row block passes over them. A last partial row block reads a zero-padded copy of its
rows; a last partial column block reads a zero-padded (K, NR) copy of its columns (made once
per plan: at most K*NR bytes besides the model's weight) and is stored through a spilled copy
of the tile.

Bias and activation are left to the caller (``engine.kernels.dense.dense_epilogue``), as for
the BLAS path. No BLAS call means no OpenBLAS thread wake-up after the previous (numba) node.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import carray, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.kernels._jit import jit, pjit
from engine.kernels.conv import VECTOR_WIDTH, stack_tile, tile_shape

__all__ = ["w8_tile_shape", "pack_tail", "w8_gemm_kernels"]

_W = VECTOR_WIDTH
_VEC = ir.VectorType(ir.FloatType(), _W)
_I8VEC = ir.VectorType(ir.IntType(8), _W)
_FMA_TY = ir.FunctionType(_VEC, [_VEC, _VEC, _VEC])
_FMA_NAME = f"llvm.fma.v{_W}f32"

def w8_tile_shape(cols: int) -> tuple[int, int]:
    """(MR, NR) for ``cols`` output columns: the float conv's tile. Measured on AVX-512 for
    32x1024x64: 6x64 ran at ~90 GFLOP/s on one core, 8x32 and 12x32 no faster (the int8
    conversion takes FMA ports either way)."""
    return tile_shape(cols)


def pack_tail(wq: np.ndarray, nr: int) -> np.ndarray:
    """The last partial column block of int8 (K, N) as a flat zero-padded (K, NR) copy;
    empty when NR divides N."""
    k, n = wq.shape
    c0 = n // nr * nr
    if c0 == n:
        return np.zeros(0, dtype=np.int8)
    tail = np.zeros((k, nr), dtype=np.int8)
    tail[:, : n - c0] = wq[:, c0:]
    return tail.reshape(-1)


def _nvec(nr: Any) -> int:
    if not isinstance(nr, types.IntegerLiteral) or nr.literal_value % _W:
        return 0
    return int(nr.literal_value) // _W


def _splat(builder: Any, scalar: Any) -> Any:
    vec = builder.insert_element(ir.Constant(_VEC, None), scalar, ir.Constant(ir.IntType(32), 0))
    lanes = ir.Constant(ir.VectorType(ir.IntType(32), _W), [0] * _W)
    return builder.shuffle_vector(vec, ir.Constant(_VEC, None), lanes)


def _at(builder: Any, base: Any, offset: Any, vty: Any = _VEC) -> Any:
    return builder.bitcast(builder.gep(base, [offset]), vty.as_pointer())


def _i64(context: Any, builder: Any, val: Any, ty: Any) -> Any:
    return context.cast(builder, val, ty, types.int64)


@intrinsic
def _zero(typingctx: Any, acc: Any, mr: Any, nr: Any) -> Any:
    """acc[: mr * nr] = 0 (a stack tile)."""
    nv = _nvec(nr)
    if not nv or not isinstance(mr, types.IntegerLiteral):
        return None
    size = mr.literal_value * nv

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        for v in range(size):
            at = _at(builder, args[0], ir.Constant(ir.IntType(64), v * _W))
            builder.store(ir.Constant(_VEC, None), at, align=4)
        return context.get_dummy_value()

    return types.none(acc, mr, nr), codegen


@intrinsic
def _fma_step(typingctx: Any, acc: Any, xf: Any, xi: Any, ks: Any, wq: Any, wi: Any, mr: Any,
              nr: Any) -> Any:
    """acc[r*nr : (r+1)*nr] += xf[xi + r*ks] * float32(wq[wi : wi+nr]) for r < mr.

    xf 1-D float32, wq 1-D int8 or float32, indices >= 0; int8 weight vectors are converted
    once per call."""
    nv = _nvec(nr)
    if not nv or not isinstance(mr, types.IntegerLiteral):
        return None
    rows = mr.literal_value
    narrow = wq.dtype == types.int8

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, xary, xi, ks, wary, wi = args[:6]
        xi = _i64(context, builder, xi, sig.args[2])
        ks = _i64(context, builder, ks, sig.args[3])
        wi = _i64(context, builder, wi, sig.args[5])
        xdata = context.make_array(sig.args[1])(context, builder, xary).data
        wdata = context.make_array(sig.args[4])(context, builder, wary).data
        fma = cgutils.get_or_insert_function(builder.module, _FMA_TY, _FMA_NAME)
        wv = []
        for v in range(nv):
            at = builder.add(wi, ir.Constant(wi.type, v * _W))
            if narrow:
                q = builder.load(_at(builder, wdata, at, _I8VEC), align=1)
                wv.append(builder.sitofp(q, _VEC))
            else:
                wv.append(builder.load(_at(builder, wdata, at), align=4))
        for r in range(rows):
            xr = builder.add(xi, builder.mul(ks, ir.Constant(ks.type, r)))
            a = _splat(builder, builder.load(builder.gep(xdata, [xr]), align=4))
            for v in range(nv):
                at = _at(builder, ptr, ir.Constant(ir.IntType(64), r * nr.literal_value + v * _W))
                builder.store(builder.call(fma, [a, wv[v], builder.load(at, align=4)]), at,
                              align=4)
        return context.get_dummy_value()

    return types.none(acc, xf, xi, ks, wq, wi, mr, nr), codegen


@intrinsic
def _store_scaled(typingctx: Any, acc: Any, off: Any, yf: Any, yi: Any, scale: Any, si: Any,
                  nr: Any) -> Any:
    """yf[yi : yi+nr] = acc[off : off+nr] * scale[si : si+nr] (1-D float32 arrays)."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, off, yary, yi, sary, si = args[:6]
        off = _i64(context, builder, off, sig.args[1])
        yi = _i64(context, builder, yi, sig.args[3])
        si = _i64(context, builder, si, sig.args[5])
        ydata = context.make_array(sig.args[2])(context, builder, yary).data
        sdata = context.make_array(sig.args[4])(context, builder, sary).data
        for v in range(nv):
            step = ir.Constant(ir.IntType(64), v * _W)
            val = builder.load(_at(builder, ptr, builder.add(off, step)), align=4)
            sv = builder.load(_at(builder, sdata, builder.add(si, step)), align=4)
            builder.store(builder.fmul(val, sv), _at(builder, ydata, builder.add(yi, step)),
                          align=4)
        return context.get_dummy_value()

    return types.none(acc, off, yf, yi, scale, si, nr), codegen


@intrinsic
def _spill(typingctx: Any, acc: Any, dst: Any, mr: Any, nr: Any) -> Any:
    """dst[: mr * nr] = acc[: mr * nr] (two stack tiles): the edge store reads ``dst`` element
    by element, which would keep ``acc`` out of registers if it read ``acc`` itself."""
    nv = _nvec(nr)
    if not nv or not isinstance(mr, types.IntegerLiteral):
        return None
    size = mr.literal_value * nv

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        for v in range(size):
            off = ir.Constant(ir.IntType(64), v * _W)
            builder.store(builder.load(_at(builder, args[0], off), align=4),
                          _at(builder, args[1], off), align=4)
        return context.get_dummy_value()

    return types.none(acc, dst, mr, nr), codegen


@jit(error_model="numpy")
def _tile(xf: np.ndarray, x0: int, k: int, wq: np.ndarray, w0: int, ws: int, yf: np.ndarray,
          n: int, m0: int, rows: int, col0: int, cols: int, scale: np.ndarray, mr: int,
          nr: int) -> None:
    """y[m0:m0+rows, col0:col0+cols] = (A @ Wblk) * scale for one tile; A[r, kk] =
    xf[x0 + r*k + kk] for r < mr, Wblk[kk, j] = wq[w0 + kk*ws + j]; y is yf viewed (M, n).
    Not inlined: LLVM keeps the tile in registers only in a small function."""
    acc = stack_tile(mr, nr)
    _zero(acc, mr, nr)
    for kk in range(k):
        _fma_step(acc, xf, x0 + kk, k, wq, w0 + kk * ws, mr, nr)
    if rows == mr and cols == nr:
        for r in range(mr):
            _store_scaled(acc, r * nr, yf, (m0 + r) * n + col0, scale, col0, nr)
    else:
        tmp = stack_tile(mr, nr)
        _spill(acc, tmp, mr, nr)
        t = carray(tmp, (mr, nr))
        for r in range(rows):
            base = (m0 + r) * n + col0
            for j in range(cols):
                yf[base + j] = t[r, j] * scale[col0 + j]


@jit(error_model="numpy")
def _blocks(x: np.ndarray, wq: np.ndarray, tail: np.ndarray, scale: np.ndarray, y: np.ndarray,
            cb_lo: int, cb_hi: int, mr: int, nr: int) -> None:
    """Column blocks [cb_lo, cb_hi) of y = (x @ w) * scale, all rows (x, y C-contiguous;
    wq the flat (K, N) weight, tail from ``pack_tail``)."""
    m, k = x.shape
    n = y.shape[1]
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    full = m // mr
    rest = m - full * mr
    panel = np.zeros(mr * k if rest else 0, dtype=np.float32)
    for r in range(rest):
        for kk in range(k):
            panel[r * k + kk] = xf[(full * mr + r) * k + kk]
    for cb in range(cb_lo, cb_hi):
        col0 = cb * nr
        cols = min(nr, n - col0)
        w, w0, ws = (wq, col0, n) if cols == nr else (tail, 0 * col0, nr)
        for blk in range(full):
            _tile(xf, blk * mr * k, k, w, w0, ws, yf, n, blk * mr, mr, col0, cols, scale, mr,
                  nr)
        if rest:
            _tile(panel, 0 * cb, k, w, w0, ws, yf, n, full * mr, rest, col0, cols, scale, mr,
                  nr)


def _build(mr: int, nr: int) -> tuple[Any, Any]:
    """Serial and parallel entries for one tile shape; ``mr``/``nr`` are closure constants,
    passed down as literals (one compiled body per shape, as ``conv.gemm_kernels``)."""

    @jit(error_model="numpy")
    def serial(x: np.ndarray, wq: np.ndarray, tail: np.ndarray, scale: np.ndarray,
               y: np.ndarray, nchunks: int) -> None:
        """y = (x @ wq) * scale on the calling thread (``nchunks`` unused)."""
        nb = -(-y.shape[1] // nr)
        _blocks(x, wq.reshape(-1), tail, scale, y, 0 * nchunks, nb, mr, nr)

    @pjit(error_model="numpy")
    def par(x: np.ndarray, wq: np.ndarray, tail: np.ndarray, scale: np.ndarray,
            y: np.ndarray, nchunks: int) -> None:
        """The same with the column blocks split in ``nchunks`` static shares."""
        nb = -(-y.shape[1] // nr)
        wf = wq.reshape(-1)
        for t in prange(nchunks):
            _blocks(x, wf, tail, scale, y, t * nb // nchunks, (t + 1) * nb // nchunks, mr, nr)

    return serial, par


_KERNELS: dict[tuple[int, int], tuple[Any, Any]] = {}


def w8_gemm_kernels(mr: int, nr: int) -> tuple[Any, Any]:
    """(serial, parallel) kernels ``f(x, wq, tail, scale, y, nchunks)`` for a tile shape from
    ``w8_tile_shape``: x float32 (M, K), wq int8 (K, N), tail ``pack_tail(wq, NR)``, scale
    float32 (N,), y float32 (M, N), all C-contiguous."""
    key = (mr, nr)
    if key not in _KERNELS:
        _KERNELS[key] = _build(mr, nr)
    return _KERNELS[key]
