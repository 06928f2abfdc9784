# mypy: disable-error-code="attr-defined, no-untyped-call, return-value, call-arg"
# mypy: disable-error-code="arg-type, var-annotated"
"""Hybrid int8 GEMM (TF Lite's "dynamic-range hybrid" arithmetic) on AVX-512 VNNI.

``out = hybrid(x) ~= x @ (wq * col_scale)`` for x float32 (M, K), wq int8 (K, N) with one
float32 scale per output column:

1. each row of x is quantized symmetrically to int8, ``q = rint(x * (127 / amax))`` with
   ``row_scale = amax / 127`` (both in float32; an all-zero row gets scale 0), and stored
   offset by 128 as uint8, because ``vpdpbusd`` multiplies unsigned by signed bytes;
2. ``acc[i, j] = sum_k u8[i, k] * wq[k, j]`` in int32 (exact: |u8 * w| <= 255 * 128, so
   K up to 65000 cannot overflow), minus ``128 * colsum(wq)[j]`` to undo the offset;
3. ``out[i, j] = float32(acc[i, j]) * (row_scale[i] * col_scale[j])`` (float32).

The weight is packed once (``pack``) as column blocks of NR, each (ceil(K/4), NR) int32 whose
lane holds 4 consecutive k of one column (zero-padded in K and N), so one ``vpdpbusd`` on a
512-bit vector does 64 multiply-adds where a float FMA does 16. An MR x NR tile of int32
accumulators stays in registers (explicit LLVM vector code, as engine.kernels.quant_dense);
each k4 step broadcasts 4 activation bytes of a row into all 16 lanes.

With AVX-512 VNNI (``HYBRID_AVAILABLE``) that kernel runs; on any other CPU numba supports
(x86-64 without VNNI, ARM) a portable kernel (engine.kernels.quant_hybrid_portable) in plain
LLVM vector IR does the same integer sums
(int16 products of (u8 - 128) and the weight, widened and added in int32) and the same float32
rescale, so the results are bit for bit the same: 4 x 16 tiles over 16-column slices of the
same packed weight, each k4 group's 64 weight bytes split into its 4 k and widened once for
the 4 rows. It is several times slower than VNNI (one Zen 4 core, 512 x 768 x 768: VNNI ~400
GOPS, portable ~43, float32 BLAS ~100; AVX2 code ~33), but computes what the op specifies.
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import carray, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.kernels._jit import jit, pjit

__all__ = ["HYBRID_AVAILABLE", "HybridWeight", "hybrid_tile_shape", "pack", "quantize_rows",
           "hybrid_scratch", "hybrid_scratch_shapes", "hybrid_gemm", "hybrid_gemm_q",
           "portable_gemm_q"]

_FEATURES = llvm.get_host_cpu_features()
HYBRID_AVAILABLE = bool(_FEATURES.get("avx512vnni", False) and _FEATURES.get("avx512bw", False))

_W = 16  # int32 lanes of a 512-bit vector
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_VEC = ir.VectorType(_I32, _W)
_FVEC = ir.VectorType(ir.FloatType(), _W)
_DP_TY = ir.FunctionType(_VEC, [_VEC, _VEC, _VEC])
_DP_NAME = "llvm.x86.avx512.vpdpbusd.512"
_OFFSET = 128
_F32 = np.float32
_MAGIC = _F32(12582912.0)  # 1.5 * 2**23


def hybrid_tile_shape(cols: int) -> tuple[int, int]:
    """(MR, NR) for ``cols`` output columns. Measured on one Zen 4 core (GOPS, 512 x 768 x N
    and 32 x 1024 x 64): N=16: 8x16 135, 12x16 82; N=32: 8x32 209, 12x32 113 (MR x NR/16
    accumulators plus the hoisted broadcasts spill past 32 zmm); large N: 8x48 ~5% above 6x64
    and 4x96, 6x64 ahead at N=64 (239 vs 196)."""
    if cols <= 48:
        return 8, -(-cols // 16) * 16
    if cols <= 64 or -(-cols // 64) * 64 < -(-cols // 48) * 48:
        return 6, 64
    return 8, 48


class HybridWeight:
    """A packed int8 weight: ``data`` int32 (col blocks, ceil(K/4), NR), ``colsum`` int32
    (blocks * NR,) = 128 * column sums, ``scale`` float32 (blocks * NR,), zero-padded."""

    def __init__(self, data: np.ndarray, colsum: np.ndarray, scale: np.ndarray, k: int, n: int,
                 mr: int, nr: int) -> None:
        self.data, self.colsum, self.scale = data, colsum, scale
        self.k, self.n, self.mr, self.nr = k, n, mr, nr


def pack(wq: np.ndarray, col_scale: np.ndarray) -> HybridWeight:
    """Plan-time packing of int8 (K, N) and its float32 (N,) column scales."""
    if wq.dtype != np.int8 or wq.ndim != 2:
        raise ValueError(f"hybrid pack: expected an int8 (K, N) weight, got {wq.dtype} "
                         f"{wq.shape}")
    k, n = wq.shape
    if col_scale.shape != (n,):
        raise ValueError(f"hybrid pack: expected ({n},) column scales, got {col_scale.shape}")
    mr, nr = hybrid_tile_shape(n)
    k4 = -(-k // 4)
    nb = -(-n // nr)
    w = np.zeros((k4 * 4, nb * nr), dtype=np.int8)
    w[:k, :n] = wq
    # (k4, 4, nb, nr) -> (nb, k4, nr, 4): 4 consecutive k of a column in one int32 lane
    blocks = w.reshape(k4, 4, nb, nr).transpose(2, 0, 3, 1)
    data = np.ascontiguousarray(blocks).view(np.int32).reshape(nb, k4, nr)
    colsum = (_OFFSET * w.astype(np.int32).sum(axis=0)).astype(np.int32)
    scale = np.zeros(nb * nr, dtype=_F32)
    scale[:n] = col_scale
    return HybridWeight(data, colsum, scale, k, n, mr, nr)


@intrinsic
def _as_f32(typingctx: Any, bits: Any) -> Any:
    """The float32 whose bit pattern is the low 32 bits of the integer ``bits``."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        low = context.cast(builder, args[0], sig.args[0], types.int32)
        return builder.bitcast(low, ir.FloatType())

    return types.float32(bits), codegen


@jit(error_model="numpy")
def _amax(row: np.ndarray) -> float:
    """max |row|, as the largest sign-cleared bit pattern: for floats >= 0 the int32 order is
    the float order, and an integer max reduction vectorizes where a float one (NaN
    semantics) does not."""
    bits = row.view(np.int32)
    top = np.int32(0)
    for j in range(bits.shape[0]):
        top = max(top, bits[j] & np.int32(0x7FFFFFFF))
    return _as_f32(top)


@jit(error_model="numpy")
def _quantize_row(row: np.ndarray, inv: float, out: np.ndarray) -> None:
    """out[j] = rint(row[j] * inv) + 128 (uint8), |row[j] * inv| <= 127."""
    for j in range(row.shape[0]):
        # round half to even by the 1.5 * 2^23 trick: exact for |v| < 2^22 and vectorizes,
        # where np.rint stays a scalar call
        v = row[j] * inv + _MAGIC
        out[j] = np.uint8(np.int32(v - _MAGIC) + _OFFSET)


@jit(error_model="numpy")
def quantize_rows(x: np.ndarray, xq: np.ndarray, row_scale: np.ndarray) -> None:
    """xq[i, :K] = rint(x[i] * 127 / amax_i) + 128 as uint8, row_scale[i] = amax_i / 127;
    xq's padding columns (K..K4*4) are left as they are (the packed weight is zero there)."""
    m, k = x.shape
    for i in range(m):
        amax = _F32(_amax(x[i]))
        inv = _F32(127.0) / amax if amax > _F32(0.0) else _F32(0.0)
        row_scale[i] = amax / _F32(127.0)
        _quantize_row(x[i], inv, xq[i, :k])


def _i64(context: Any, builder: Any, val: Any, ty: Any) -> Any:
    return context.cast(builder, val, ty, types.int64)


def _data(context: Any, builder: Any, ty: Any, val: Any) -> Any:
    return context.make_array(ty)(context, builder, val).data


def _at(builder: Any, base: Any, offset: Any, vty: Any = _VEC) -> Any:
    return builder.bitcast(builder.gep(base, [offset]), vty.as_pointer())


def _splat(builder: Any, scalar: Any, vty: Any = _VEC) -> Any:
    vec = builder.insert_element(ir.Constant(vty, None), scalar, ir.Constant(_I32, 0))
    lanes = ir.Constant(ir.VectorType(_I32, _W), [0] * _W)
    return builder.shuffle_vector(vec, ir.Constant(vty, None), lanes)


def _nvec(mr: Any, nr: Any) -> int:
    if not isinstance(mr, types.IntegerLiteral) or not isinstance(nr, types.IntegerLiteral):
        return 0
    return int(nr.literal_value) // _W if nr.literal_value % _W == 0 else 0


@intrinsic
def _itile(typingctx: Any, mr: Any, nr: Any) -> Any:
    """An int32[mr * nr] zeroed on the stack; with literal sizes LLVM keeps it in registers."""
    if not _nvec(mr, nr):
        return None
    size = mr.literal_value * nr.literal_value

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = cgutils.alloca_once(builder, _I32, size=ir.Constant(_I64, size))
        for v in range(size // _W):
            builder.store(ir.Constant(_VEC, None), _at(builder, ptr, ir.Constant(_I64, v * _W)),
                          align=4)
        return ptr

    return types.CPointer(types.int32)(mr, nr), codegen


@intrinsic
def _dp_step(typingctx: Any, acc: Any, xw: Any, xi: Any, xs: Any, wp: Any, wi: Any, mr: Any,
             nr: Any) -> Any:
    """acc[r*nr + c] += dot4(u8 xw[xi + r*xs], s8 wp[wi + c]) for r < mr, c < nr (xw, wp 1-D
    int32 arrays, indices >= 0): one vpdpbusd per accumulator vector."""
    nv = _nvec(mr, nr)
    if not nv:
        return None
    rows, width = mr.literal_value, nr.literal_value

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, xary, xi, xs, wary, wi = args[:6]
        xi = _i64(context, builder, xi, sig.args[2])
        xs = _i64(context, builder, xs, sig.args[3])
        wi = _i64(context, builder, wi, sig.args[5])
        xdata = _data(context, builder, sig.args[1], xary)
        wdata = _data(context, builder, sig.args[4], wary)
        dp = cgutils.get_or_insert_function(builder.module, _DP_TY, _DP_NAME)
        wv = [builder.load(_at(builder, wdata, builder.add(wi, ir.Constant(_I64, v * _W))),
                           align=4) for v in range(nv)]
        for r in range(rows):
            xr = builder.add(xi, builder.mul(xs, ir.Constant(_I64, r)))
            a = _splat(builder, builder.load(builder.gep(xdata, [xr]), align=4))
            for v in range(nv):
                at = _at(builder, ptr, ir.Constant(_I64, r * width + v * _W))
                builder.store(builder.call(dp, [builder.load(at, align=4), a, wv[v]]), at,
                              align=4)
        return context.get_dummy_value()

    return types.none(acc, xw, xi, xs, wp, wi, mr, nr), codegen


@intrinsic
def _store_row(typingctx: Any, acc: Any, off: Any, yf: Any, yi: Any, rs: Any, colsum: Any,
               scale: Any, ci: Any, nr: Any) -> Any:
    """yf[yi + c] = float32(acc[off + c] - colsum[ci + c]) * (rs * scale[ci + c]), c < nr."""
    nv = _nvec(types.IntegerLiteral(1), nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, off, yary, yi, rs, cary, sary, ci = args[:8]
        off = _i64(context, builder, off, sig.args[1])
        yi = _i64(context, builder, yi, sig.args[3])
        ci = _i64(context, builder, ci, sig.args[7])
        ydata = _data(context, builder, sig.args[2], yary)
        cdata = _data(context, builder, sig.args[5], cary)
        sdata = _data(context, builder, sig.args[6], sary)
        rsv = _splat(builder, rs, _FVEC)
        for v in range(nv):
            step = ir.Constant(_I64, v * _W)
            a = builder.load(_at(builder, ptr, builder.add(off, step)), align=4)
            c = builder.load(_at(builder, cdata, builder.add(ci, step)), align=4)
            s = builder.load(_at(builder, sdata, builder.add(ci, step), _FVEC), align=4)
            val = builder.fmul(builder.sitofp(builder.sub(a, c), _FVEC), builder.fmul(rsv, s))
            builder.store(val, _at(builder, ydata, builder.add(yi, step), _FVEC), align=4)
        return context.get_dummy_value()

    return types.none(acc, off, yf, yi, rs, colsum, scale, ci, nr), codegen


@intrinsic
def _spill(typingctx: Any, acc: Any, dst: Any, mr: Any, nr: Any) -> Any:
    """dst[: mr*nr] = acc[: mr*nr]: the edge store reads ``dst`` element by element, which
    would keep ``acc`` out of registers if it read ``acc`` itself."""
    nv = _nvec(mr, nr)
    if not nv:
        return None
    size = mr.literal_value * nv

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        for v in range(size):
            off = ir.Constant(_I64, v * _W)
            builder.store(builder.load(_at(builder, args[0], off), align=4),
                          _at(builder, args[1], off), align=4)
        return context.get_dummy_value()

    return types.none(acc, dst, mr, nr), codegen


@jit(error_model="numpy")
def _tile(xw: np.ndarray, x0: int, k4: int, wp: np.ndarray, w0: int, yf: np.ndarray, n: int,
          m0: int, rows: int, col0: int, cols: int, rscale: np.ndarray, colsum: np.ndarray,
          scale: np.ndarray, mr: int, nr: int) -> None:
    """One MR x NR tile: rows m0.. of the quantized activations (int32 view xw, row r's k4
    group kk at x0 + r*k4 + kk) times the column block at wp[w0:], into y = yf viewed (M, n).
    Not inlined: LLVM keeps the tile in registers only in a small function."""
    acc = _itile(mr, nr)
    for kk in range(k4):
        _dp_step(acc, xw, x0 + kk, k4, wp, w0 + kk * nr, mr, nr)
    if rows == mr and cols == nr:
        for r in range(mr):
            _store_row(acc, r * nr, yf, (m0 + r) * n + col0, rscale[m0 + r], colsum, scale,
                       col0, nr)
    else:
        tmp = _itile(mr, nr)
        _spill(acc, tmp, mr, nr)
        t = carray(tmp, (mr, nr))
        for r in range(rows):
            base = (m0 + r) * n + col0
            rs = rscale[m0 + r]
            for j in range(cols):
                yf[base + j] = _F32(t[r, j] - colsum[col0 + j]) * (rs * scale[col0 + j])


def _build(mr: int, nr: int) -> Any:
    """The serial GEMM for one tile shape (``mr``/``nr`` closure constants passed down as
    literals: one compiled body per shape)."""

    @jit(error_model="numpy")
    def gemm(xq: np.ndarray, rscale: np.ndarray, wp: np.ndarray, colsum: np.ndarray,
             scale: np.ndarray, y: np.ndarray) -> None:
        """y (M, N) from xq uint8 (Mpad, K4*4) with Mpad a multiple of MR, rows M.. ignored."""
        m, n = y.shape
        nb, k4 = wp.shape[0], wp.shape[1]
        xw = xq.reshape(-1).view(np.int32)
        wf = wp.reshape(-1)
        yf = y.reshape(-1)
        nblk = -(-m // mr)
        for cb in range(nb):
            col0 = cb * nr
            cols = min(nr, n - col0)
            for blk in range(nblk):
                m0 = blk * mr
                _tile(xw, m0 * k4, k4, wf, cb * k4 * nr, yf, n, m0, min(mr, m - m0), col0,
                      cols, rscale, colsum, scale, mr, nr)

    return gemm


def _build_par(mr: int, nr: int) -> Any:
    """The threaded GEMM: ``chunks`` contiguous runs of row tiles, one per prange step (each
    sweeps every column block over its rows, as the serial one does over all rows); every
    tile is computed as the serial kernel computes it, so the results are the same bits."""

    @pjit(error_model="numpy")
    def gemm(xq: np.ndarray, rscale: np.ndarray, wp: np.ndarray, colsum: np.ndarray,
             scale: np.ndarray, y: np.ndarray, chunks: int) -> None:
        m, n = y.shape
        nb, k4 = wp.shape[0], wp.shape[1]
        xw = xq.reshape(-1).view(np.int32)
        wf = wp.reshape(-1)
        yf = y.reshape(-1)
        nblk = -(-m // mr)
        per = -(-nblk // chunks)
        for c in prange(chunks):
            b0 = c * per
            b1 = min(nblk, b0 + per)
            for cb in range(nb):
                col0 = cb * nr
                cols = min(nr, n - col0)
                for blk in range(b0, b1):
                    m0 = blk * mr
                    _tile(xw, m0 * k4, k4, wf, cb * k4 * nr, yf, n, m0, min(mr, m - m0),
                          col0, cols, rscale, colsum, scale, mr, nr)

    return gemm


_KERNELS: dict[tuple[int, int, bool], Any] = {}


def _kernel(mr: int, nr: int, par: bool = False) -> Any:
    key = (mr, nr, par)
    if key not in _KERNELS:
        _KERNELS[key] = (_build_par if par else _build)(mr, nr)
    return _KERNELS[key]


def _rows_tile(m: int, w: HybridWeight) -> int:
    # fewer rows than a tile (M=1 decode-style calls): a tile of M rows instead of padding
    return min(w.mr, max(m, 1))


def hybrid_scratch_shapes(m: int, k: int, n: int) -> tuple[tuple[int, int], tuple[int]]:
    """Shapes of ``hybrid_scratch(m, pack(w (k, n), ...))`` without packing: uint8
    (ceil(m/MR)*MR, ceil(k/4)*4) and float32 (same rows,)."""
    mr = min(hybrid_tile_shape(n)[0], max(m, 1))
    mpad = -(-m // mr) * mr
    return (mpad, -(-k // 4) * 4), (mpad,)


def hybrid_scratch(m: int, w: HybridWeight) -> tuple[np.ndarray, np.ndarray]:
    """(xq, rscale) scratch for ``hybrid_gemm`` of M rows: uint8 (ceil(M/MR)*MR,
    ceil(K/4)*4) and float32 (same rows). Zeroed here, but any contents will do (an arena's
    buffer): the packed weight is zero past K and rows past M are dropped."""
    xs, rs = hybrid_scratch_shapes(m, w.k, w.n)
    return np.zeros(xs, dtype=np.uint8), np.zeros(rs, dtype=_F32)


def hybrid_gemm(x: np.ndarray, w: HybridWeight, out: np.ndarray,
                xq: np.ndarray | None = None, rscale: np.ndarray | None = None,
                threads: int = 1) -> None:
    """out (M, N) float32 = the hybrid product of x float32 (M, K) and ``pack``'s weight.

    ``xq`` and ``rscale`` are ``hybrid_scratch(M, w)``, which a caller may keep between runs
    (allocated here when missing). ``threads`` > 1 splits the rows over numba's threads
    (the same results; the portable kernel stays on one)."""
    m, k = x.shape
    if k != w.k or out.shape != (m, w.n):
        raise ValueError(f"hybrid_gemm: x {x.shape}, out {out.shape} do not fit a packed "
                         f"({w.k}, {w.n}) weight")
    if xq is None or rscale is None:
        xq, rscale = hybrid_scratch(m, w)
    _check(xq, rscale, m, w, out)
    quantize_rows(x, xq, rscale)
    _gemm(xq, rscale, m, w, out, not HYBRID_AVAILABLE, threads)


def hybrid_gemm_q(xq: np.ndarray, rscale: np.ndarray, m: int, w: HybridWeight,
                  out: np.ndarray, threads: int = 1) -> None:
    """out (m, N) float32 from rows already quantized as ``quantize_rows`` writes them: xq
    uint8 (rows, ceil(K/4)*4), value + 128, with rows >= ``hybrid_scratch(m, w)``'s (rows
    m.. may be read, their results are dropped), and float32 row scales rscale (>= xq's
    rows). Only the integer GEMM and the rescale; VNNI where the CPU has it, else the
    portable kernel (the same results); ``threads`` as for ``hybrid_gemm``."""
    _check(xq, rscale, m, w, out)
    _gemm(xq, rscale, m, w, out, not HYBRID_AVAILABLE, threads)


def portable_gemm_q(xq: np.ndarray, rscale: np.ndarray, m: int, w: HybridWeight,
                    out: np.ndarray) -> None:
    """``hybrid_gemm_q`` on the portable kernel whatever the CPU (for tests and
    benchmarks: it is what runs where ``HYBRID_AVAILABLE`` is False)."""
    _check(xq, rscale, m, w, out)
    _gemm(xq, rscale, m, w, out, True)


def _check(xq: np.ndarray, rscale: np.ndarray, m: int, w: HybridWeight,
           out: np.ndarray) -> None:
    # the kernels read xq, the weight and out without bounds checks: shapes are checked here
    if out.shape != (m, w.n) or out.dtype != _F32 or not out.flags.c_contiguous:
        raise ValueError(f"hybrid_gemm: out {out.dtype} {out.shape} is not a C-contiguous "
                         f"float32 ({m}, {w.n})")
    mr = _rows_tile(m, w)
    if (xq.dtype != np.uint8 or xq.ndim != 2 or not xq.flags.c_contiguous
            or xq.shape[0] < -(-m // mr) * mr or xq.shape[1] != w.data.shape[1] * 4
            or rscale.dtype != _F32 or rscale.shape[0] < xq.shape[0]):
        raise ValueError(f"hybrid_gemm: scratch {xq.dtype} {xq.shape} / {rscale.shape} does "
                         f"not fit {m} rows of K={w.k}: use hybrid_scratch")


def _gemm(xq: np.ndarray, rscale: np.ndarray, m: int, w: HybridWeight, out: np.ndarray,
          portable: bool, threads: int = 1) -> None:
    if portable:
        # imported here: the portable module builds on this one's LLVM helpers
        from engine.kernels.quant_hybrid_portable import portable_gemm

        portable_gemm(xq, rscale, w.data, w.scale, out)
        return
    mr = _rows_tile(m, w)
    chunks = min(threads, -(-m // mr))
    if chunks > 1:
        _kernel(mr, w.nr, True)(xq, rscale, w.data, w.colsum, w.scale, out, chunks)
    else:
        _kernel(mr, w.nr)(xq, rscale, w.data, w.colsum, w.scale, out)
