"""Conv2D kernels over NHWC images, weights (KH, KW, C/groups, O), float32.

Dense and grouped convolution is an implicit GEMM with no im2col: rows are output pixels,
columns output channels, the reduction runs over (kh, kw, c). Patch element k of output pixel
m sits at ``xflat[base[m] + koff[k]]`` in the (zero-padded) input, with ``koff`` a table built
once per plan, so a register-tiled micro-kernel reads the input in place. Padded convs first
copy the input into a zero-bordered scratch image (one pass, a few % of the conv) so no patch
read needs a bounds check. The weight is packed once as ``(groups, col blocks, K, NR)``.

``MR`` x ``NR`` (pixels x channels) is the accumulator tile: compile-time literals, a stack
array touched only through the explicit vector intrinsics below, so LLVM keeps it in
registers. This runs at ~95 % of the FMA peak (measured ~100 GFLOP/s per core on AVX-512,
above OpenBLAS's sgemm on the same shapes). Bias and activation are applied as the tile is
stored, so the output is written exactly once.

Depthwise convolution (one input channel per group) has no reduction worth a GEMM: a direct
kernel walks the window with channels innermost.

Every kernel has a serial entry and a ``prange`` entry splitting the work in static chunks;
the binding picks one by size, once.
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
from engine.kernels.activations import ACTIVATION_CODES
from engine.kernels.elementwise import gelu_f32, gelu_tanh_f32, sigmoid_f32, tanh_f32

__all__ = [
    "GEO_LEN",
    "VECTOR_WIDTH",
    "tile_shape",
    "pack_weight",
    "patch_offsets",
    "gemm_kernels",
    "conv_depthwise_serial",
    "conv_depthwise_par",
]

_F = np.float32
_ZERO = _F(0.0)
_SIX = _F(6.0)
_RELU = ACTIVATION_CODES["relu"]
_RELU6 = ACTIVATION_CODES["relu6"]
_SIGMOID = ACTIVATION_CODES["sigmoid"]
_TANH = ACTIVATION_CODES["tanh"]
_LEAKY = ACTIVATION_CODES["leaky_relu"]
_GELU = ACTIVATION_CODES["gelu"]
_GELU_TANH = ACTIVATION_CODES["gelu_tanh"]

# float32 lanes per vector register, and the tile (MR rows) for 1..4 vectors per row. LLVM
# hoists the MR broadcasts of a k step ahead of its FMAs, so MR x vectors accumulators + MR
# broadcasts + the weight row must fit the register file (32 zmm / 16 ymm) or the tile spills:
# 12x32 on AVX-512 ran at half the speed of 6x32 (measured, serial: ~55 vs ~110 GFLOP/s).
_AVX512 = bool(llvm.get_host_cpu_features().get("avx512f", False))
VECTOR_WIDTH = 16 if _AVX512 else 8
_TILE_ROWS = (12, 6, 6, 6) if _AVX512 else (6, 4, 3)

# geometry vector: one int64 array instead of twenty scalar arguments (cheaper dispatch).
# HP/WP: size of the image the GEMM reads (H + pads when PAD, else H); NBLK: row blocks;
# NCHUNK: static chunks of the parallel entries.
(G_N, G_H, G_W, G_C, G_OH, G_OW, G_KH, G_KW, G_SH, G_SW, G_DH, G_DW, G_PT, G_PL,
 G_GROUPS, G_CG, G_OG, G_M, G_HP, G_WP, G_PAD, G_NBLK, G_NCHUNK) = range(23)
GEO_LEN = 23


def tile_shape(cols: int) -> tuple[int, int]:
    """(MR, NR) for a GEMM with ``cols`` output columns per group."""
    nv = min(len(_TILE_ROWS), max(1, -(-cols // VECTOR_WIDTH)))
    return _TILE_ROWS[nv - 1], nv * VECTOR_WIDTH


def pack_weight(w: np.ndarray, groups: int, nr: int) -> np.ndarray:
    """(KH, KW, CG, O) -> (groups, col blocks, KH*KW*CG, NR), zero-padded columns."""
    kh, kw, cg, o = w.shape
    og = o // groups
    nb = -(-og // nr)
    w2 = np.asarray(w, dtype=np.float32).reshape(kh * kw * cg, groups, og)
    packed = np.zeros((groups, nb * nr, kh * kw * cg), dtype=np.float32)
    packed[:, :og, :] = w2.transpose(1, 2, 0)
    return np.ascontiguousarray(packed.reshape(groups, nb, nr, -1).transpose(0, 1, 3, 2))


def patch_offsets(kh: int, kw: int, cg: int, dh: int, dw: int, wp: int, c: int) -> np.ndarray:
    """koff[k] for k = (i, j, ci) in weight order: element offset in an image (., wp, c)."""
    i, j, ci = np.meshgrid(np.arange(kh), np.arange(kw), np.arange(cg), indexing="ij")
    return ((i * dh * wp + j * dw) * c + ci).reshape(-1).astype(np.int64)


@intrinsic
def _load(typingctx: Any, ary: Any, idx: Any) -> Any:
    """ary[idx] for a 1-D float32 array without the negative-index fix-up (idx >= 0)."""
    if not isinstance(ary, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.load(builder.gep(data, [args[1]]), align=4)

    return types.float32(ary, idx), codegen


@intrinsic
def _stack_tile(typingctx: Any, mr: Any, nr: Any) -> Any:
    """A float32[mr * nr] on the stack; with literal sizes LLVM keeps it in registers."""
    if not isinstance(mr, types.IntegerLiteral) or not isinstance(nr, types.IntegerLiteral):
        return None
    size = mr.literal_value * nr.literal_value

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ty = context.get_value_type(types.float32)
        n = context.get_constant(types.intp, size)
        return cgutils.alloca_once(builder, ty, size=n)

    return types.CPointer(types.float32)(mr, nr), codegen


# The tile's row operations are written as explicit LLVM vector code. Left to itself, LLVM
# fully unrolls a 16- or 32-wide column loop before its loop vectorizer runs, then vectorizes
# across rows instead, with gathers and scatters into the accumulator (2 GFLOP/s instead of
# 90). Every accumulator access goes through these at constant offsets, so the whole tile is
# promoted to vector registers.

_VEC = ir.VectorType(ir.FloatType(), VECTOR_WIDTH)
_FMA_TY = ir.FunctionType(_VEC, [_VEC, _VEC, _VEC])
_FMA_NAME = f"llvm.fma.v{VECTOR_WIDTH}f32"


def _vec_at(builder: Any, base: Any, offset: Any) -> Any:
    return builder.bitcast(builder.gep(base, [offset]), _VEC.as_pointer())


def _splat(builder: Any, scalar: Any) -> Any:
    """A float32 broadcast to every lane."""
    vec = builder.insert_element(ir.Constant(_VEC, None), scalar, ir.Constant(ir.IntType(32), 0))
    lanes = ir.Constant(ir.VectorType(ir.IntType(32), VECTOR_WIDTH), [0] * VECTOR_WIDTH)
    return builder.shuffle_vector(vec, ir.Constant(_VEC, None), lanes)


def _row_ptr(context: Any, builder: Any, aryty: Any, ary: Any, row: Any) -> Any:
    """Pointer to element (row, 0) of a C-contiguous 2-D array."""
    arr = context.make_array(aryty)(context, builder, ary)
    ncols = cgutils.unpack_tuple(builder, arr.shape, 2)[1]
    return builder.gep(arr.data, [builder.mul(row, ncols)])


def _nvec(nr: Any) -> int:
    """Vectors per tile row; 0 (no typing match) unless nr is a literal multiple of the width."""
    if not isinstance(nr, types.IntegerLiteral) or nr.literal_value % VECTOR_WIDTH:
        return 0
    return int(nr.literal_value) // VECTOR_WIDTH


@intrinsic
def _acc_zero(typingctx: Any, acc: Any, off: Any, nr: Any) -> Any:
    """acc[off:off+nr] = 0."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, offset = args[0], args[1]
        for v in range(nv):
            at = builder.add(offset, ir.Constant(offset.type, v * VECTOR_WIDTH))
            builder.store(ir.Constant(_VEC, None), _vec_at(builder, ptr, at), align=4)
        return context.get_dummy_value()

    return types.none(acc, off, nr), codegen


@intrinsic
def _acc_fma(typingctx: Any, acc: Any, off: Any, w: Any, k: Any, av: Any, nr: Any) -> Any:
    """acc[off:off+nr] += av * w[k, :nr] (w a C-contiguous 2-D float32 array)."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, offset, wary, krow, a = args[0], args[1], args[2], args[3], args[4]
        wrow = _row_ptr(context, builder, sig.args[2], wary, krow)
        splat = _splat(builder, context.cast(builder, a, sig.args[4], types.float32))
        fma = cgutils.get_or_insert_function(builder.module, _FMA_TY, _FMA_NAME)
        for v in range(nv):
            step = ir.Constant(offset.type, v * VECTOR_WIDTH)
            at = _vec_at(builder, ptr, builder.add(offset, step))
            wv = builder.load(_vec_at(builder, wrow, step), align=4)
            builder.store(builder.call(fma, [splat, wv, builder.load(at, align=4)]), at, align=4)
        return context.get_dummy_value()

    return types.none(acc, off, w, k, av, nr), codegen


@intrinsic
def _acc_store(typingctx: Any, acc: Any, off: Any, out: Any, row: Any, col: Any, bias: Any,
               slope: Any, top: Any, nr: Any) -> Any:
    """out[row, col:col+nr] = clip(acc[off:off+nr] + bias[col:col+nr]).

    clip(v) = min(v if v > 0 else slope * v, top), NaN kept: linear, relu, relu6 and
    leaky_relu folded into the store (out 2-D, bias 1-D; slope and top float32).
    """
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, offset, oary, orow, col, bary, a, hi = args[:8]
        dst = builder.gep(_row_ptr(context, builder, sig.args[2], oary, orow), [col])
        bdata = builder.gep(context.make_array(sig.args[5])(context, builder, bary).data, [col])
        a_vec, hi_vec = _splat(builder, a), _splat(builder, hi)
        zero = ir.Constant(_VEC, None)
        for v in range(nv):
            step = ir.Constant(offset.type, v * VECTOR_WIDTH)
            val = builder.load(_vec_at(builder, ptr, builder.add(offset, step)), align=4)
            val = builder.fadd(val, builder.load(_vec_at(builder, bdata, step), align=4))
            pos = builder.fcmp_ordered(">", val, zero)
            val = builder.select(pos, val, builder.fmul(val, a_vec))
            val = builder.select(builder.fcmp_ordered(">", val, hi_vec), hi_vec, val)
            builder.store(val, _vec_at(builder, dst, step), align=4)
        return context.get_dummy_value()

    sig = types.none(acc, off, out, row, col, bias, types.float32, types.float32, nr)
    return sig, codegen


@intrinsic
def _acc_copy(typingctx: Any, acc: Any, off: Any, dst: Any, nr: Any) -> Any:
    """dst[off:off+nr] = acc[off:off+nr] (both stack tiles)."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, offset, dptr = args[0], args[1], args[2]
        for v in range(nv):
            at = builder.add(offset, ir.Constant(offset.type, v * VECTOR_WIDTH))
            val = builder.load(_vec_at(builder, ptr, at), align=4)
            builder.store(val, _vec_at(builder, dptr, at), align=4)
        return context.get_dummy_value()

    return types.none(acc, off, dst, nr), codegen


@jit(inline="always", error_model="numpy")
def _activate(y: np.ndarray, code: int, alpha: float) -> None:
    """In place on a 1-D float32 span; the branch sits outside each vectorized loop."""
    n = y.shape[0]
    if code == _RELU:
        for j in range(n):
            v = y[j]
            y[j] = v if v > _ZERO else _ZERO
    elif code == _RELU6:
        for j in range(n):
            y[j] = min(max(y[j], _ZERO), _SIX)
    elif code == _SIGMOID:
        for j in range(n):
            y[j] = sigmoid_f32(y[j])
    elif code == _TANH:
        for j in range(n):
            y[j] = tanh_f32(y[j])
    elif code == _LEAKY:
        a = _F(alpha)
        for j in range(n):
            v = y[j]
            y[j] = v if v > _ZERO else a * v
    elif code == _GELU:
        for j in range(n):
            y[j] = gelu_f32(y[j])
    elif code == _GELU_TANH:
        for j in range(n):
            y[j] = gelu_tanh_f32(y[j])


# activations folded into the tile store as min(v if v > 0 else slope * v, top); the others
# run over the stored tile
_OUT_OF_LINE = (_SIGMOID, _TANH, _GELU, _GELU_TANH)
_INF = _F(np.inf)


@jit(inline="always")
def _clip_params(code: int, alpha: float) -> tuple[float, float]:
    if code == _RELU:
        return _ZERO, _INF
    if code == _RELU6:
        return _ZERO, _SIX
    if code == _LEAKY:
        return _F(alpha), _INF
    return _F(1.0), _INF


@jit(error_model="numpy")
def _activate_tile(out: np.ndarray, m0: int, rows: int, col0: int, cols: int, code: int,
                   alpha: float) -> None:
    """Out of line: the inlined transcendentals would triple every conv kernel's compile."""
    for r in range(rows):
        _activate(out[m0 + r, col0:col0 + cols], code, alpha)


@jit(error_model="numpy")
def _tile(xf: np.ndarray, bases: np.ndarray, koff: np.ndarray, goff: int, wp: np.ndarray,
          out: np.ndarray, m0: int, rows: int, col0: int, cols: int, bias: np.ndarray,
          code: int, alpha: float, mr: int, nr: int) -> None:
    """out[m0:m0+rows, col0:col0+cols] = act(A @ wp + bias) for one tile.

    A[r, k] = xf[bases[r] + goff + koff[k]] for r < mr (rows past ``rows`` repeat a valid
    pixel); ``wp`` is (K, nr). Not inlined on purpose: numba optimizes each function in its
    own LLVM module, and this one must stay small for LLVM to keep the tile in registers.
    """
    acc = _stack_tile(mr, nr)
    for r in range(mr):
        _acc_zero(acc, r * nr, nr)
    for k in range(wp.shape[0]):
        kk = koff[k] + goff
        for r in range(mr):
            _acc_fma(acc, r * nr, wp, k, _load(xf, bases[r] + kk), nr)
    slope, top = _clip_params(code, alpha)
    if rows == mr and cols == nr:
        for r in range(mr):
            _acc_store(acc, r * nr, out, m0 + r, col0, bias, slope, top, nr)
    else:  # edge tile: spill to a second stack tile, copy the valid part
        tmp = _stack_tile(mr, nr)
        for r in range(mr):
            _acc_copy(acc, r * nr, tmp, nr)
        t = carray(tmp, (mr, nr))
        for r in range(rows):
            o = out[m0 + r]
            for j in range(cols):
                v = t[r, j] + bias[col0 + j]
                v = v if v > _ZERO else slope * v
                o[col0 + j] = top if v > top else v
    if code in _OUT_OF_LINE:
        _activate_tile(out, m0, rows, col0, cols, code, alpha)


@jit(error_model="numpy")
def _pad_rows(x: np.ndarray, xp: np.ndarray, geo: np.ndarray, lo: int, hi: int) -> None:
    """Rows [lo, hi) (row = n * HP + y) of the zero-bordered copy of x."""
    h, w, c = geo[G_H], geo[G_W], geo[G_C]
    hp, pt, pl = geo[G_HP], geo[G_PT], geo[G_PL]
    wpc = xp.shape[2] * c
    for row in range(lo, hi):
        n = row // hp
        y = row - n * hp
        dst = xp[n, y].reshape(wpc)
        iy = y - pt
        if iy < 0 or iy >= h:
            dst[:] = _ZERO
        else:
            dst[:pl * c] = _ZERO
            dst[pl * c:(pl + w) * c] = x[n, iy].reshape(w * c)
            dst[(pl + w) * c:] = _ZERO


@jit(error_model="numpy")
def _gemm_rows(src: np.ndarray, wp: np.ndarray, koff: np.ndarray, bias: np.ndarray,
               out: np.ndarray, geo: np.ndarray, blk_lo: int, blk_hi: int, code: int,
               alpha: float, mr: int, nr: int) -> None:
    """Row blocks [blk_lo, blk_hi) of a dense/grouped conv (mr, nr: literals).

    src (N, HP, WP, C): the input, zero-bordered when padded; wp from ``pack_weight``; koff
    from ``patch_offsets``; bias (O,); out (N*OH*OW, O); geo the GEO_LEN geometry vector.
    """
    hp, wpd, c = geo[G_HP], geo[G_WP], geo[G_C]
    oh, ow, sh, sw = geo[G_OH], geo[G_OW], geo[G_SH], geo[G_SW]
    groups, cg, og, m_total = geo[G_GROUPS], geo[G_CG], geo[G_OG], geo[G_M]
    nblk = wp.shape[1]
    xf = src.reshape(-1)
    bases = np.empty(mr, dtype=np.int64)
    # output pixel (n, oy, ox) of the block's first row, then stepped: no division per row
    m = blk_lo * mr
    n = m // (oh * ow)
    oy = (m - n * oh * ow) // ow
    ox = m - (n * oh + oy) * ow
    for blk in range(blk_lo, blk_hi):
        m0 = blk * mr
        rows = min(mr, m_total - m0)
        for r in range(mr):
            if r < rows:
                bases[r] = ((n * hp + oy * sh) * wpd + ox * sw) * c
                ox += 1
                if ox == ow:
                    ox = 0
                    oy += 1
                    if oy == oh:
                        oy = 0
                        n += 1
            else:
                bases[r] = bases[0]
        for g in range(groups):
            for b in range(nblk):
                col = b * nr
                _tile(xf, bases, koff, g * cg, wp[g, b], out, m0, rows, g * og + col,
                      min(nr, og - col), bias, code, alpha, mr, nr)


def _build_gemm(mr: int, nr: int) -> tuple[Any, Any]:
    """The serial and parallel dense/grouped conv kernels for one (MR, NR) tile.

    ``mr``/``nr`` are closure constants, which numba passes to ``_gemm_rows`` as literals: one
    compiled body per tile shape, shared by both entries and cached (a ``literally`` argument
    costs ~2 s of typing per process even when cached).
    """

    @jit(error_model="numpy")
    def serial(x: np.ndarray, xp: np.ndarray, wp: np.ndarray, koff: np.ndarray,
               bias: np.ndarray, out: np.ndarray, geo: np.ndarray, code: int,
               alpha: float) -> None:
        """The whole conv on the calling thread. x (N, H, W, C); xp the zero-bordered
        scratch image (N, HP, WP, C) when geo[G_PAD], else unused; out (N, OH, OW, O)."""
        # one chunk, written like ``par``: a literal 0 bound would compile a second body
        t = geo[G_NCHUNK] * 0
        if geo[G_PAD]:
            _pad_rows(x, xp, geo, t, geo[G_N] * geo[G_HP])
            src = xp
        else:
            src = x
        o2 = out.reshape(-1, out.shape[3])
        _gemm_rows(src, wp, koff, bias, o2, geo, t, geo[G_NBLK], code, alpha, mr, nr)

    @pjit(error_model="numpy")
    def par(x: np.ndarray, xp: np.ndarray, wp: np.ndarray, koff: np.ndarray,
            bias: np.ndarray, out: np.ndarray, geo: np.ndarray, code: int,
            alpha: float) -> None:
        """The same in geo[G_NCHUNK] static chunks (padding, then the GEMM)."""
        nt = geo[G_NCHUNK]
        if geo[G_PAD]:
            prow = geo[G_N] * geo[G_HP]
            for t in prange(nt):
                _pad_rows(x, xp, geo, t * prow // nt, (t + 1) * prow // nt)
            src = xp
        else:
            src = x
        o2 = out.reshape(-1, out.shape[3])
        nblk = geo[G_NBLK]
        for t in prange(nt):
            _gemm_rows(src, wp, koff, bias, o2, geo, t * nblk // nt, (t + 1) * nblk // nt,
                       code, alpha, mr, nr)

    return serial, par


_GEMM_KERNELS: dict[tuple[int, int], tuple[Any, Any]] = {}


def gemm_kernels(mr: int, nr: int) -> tuple[Any, Any]:
    """(serial, parallel) conv kernels for a tile shape from ``tile_shape``."""
    key = (mr, nr)
    if key not in _GEMM_KERNELS:
        _GEMM_KERNELS[key] = _build_gemm(mr, nr)
    return _GEMM_KERNELS[key]


@jit(error_model="numpy", fastmath={"contract"})
def _depthwise_rows(x: np.ndarray, w: np.ndarray, bias: np.ndarray, out: np.ndarray,
                    geo: np.ndarray, row_lo: int, row_hi: int, code: int, alpha: float) -> None:
    """Output rows [row_lo, row_hi) (row = n * OH + oy) of a depthwise conv.

    x (N, H, W, C); w (KH, KW, O) with O = C * multiplier; bias (O,); out (N, OH, OW, O).
    """
    h, wd, c = geo[G_H], geo[G_W], geo[G_C]
    oh, ow = geo[G_OH], geo[G_OW]
    kh, kw = geo[G_KH], geo[G_KW]
    sh, sw, dh, dw = geo[G_SH], geo[G_SW], geo[G_DH], geo[G_DW]
    pt, pl = geo[G_PT], geo[G_PL]
    mult = w.shape[2] // c
    o2 = out.reshape(-1, out.shape[3])
    for row in range(row_lo, row_hi):
        n = row // oh
        oy = row - n * oh
        for ox in range(ow):
            o = out[n, oy, ox]
            for q in range(o.shape[0]):
                o[q] = bias[q]
            for i in range(kh):
                iy = oy * sh - pt + i * dh
                if iy < 0 or iy >= h:
                    continue
                for j in range(kw):
                    ix = ox * sw - pl + j * dw
                    if ix < 0 or ix >= wd:
                        continue
                    src = x[n, iy, ix]
                    wv = w[i, j]
                    if mult == 1:
                        for q in range(c):
                            o[q] += src[q] * wv[q]
                    else:
                        for q in range(c):
                            v = src[q]
                            for t in range(mult):
                                o[q * mult + t] += v * wv[q * mult + t]
            if code != 0:
                _activate_tile(o2, row * ow + ox, 1, 0, o.shape[0], code, alpha)


@jit(error_model="numpy")
def conv_depthwise_serial(x: np.ndarray, w: np.ndarray, bias: np.ndarray, out: np.ndarray,
                          geo: np.ndarray, code: int, alpha: float) -> None:
    """Every output row on the calling thread."""
    t = geo[G_NCHUNK] * 0  # not a literal 0: that would compile a second body
    _depthwise_rows(x, w, bias, out, geo, t, geo[G_N] * geo[G_OH], code, alpha)


@pjit(error_model="numpy")
def conv_depthwise_par(x: np.ndarray, w: np.ndarray, bias: np.ndarray, out: np.ndarray,
                       geo: np.ndarray, code: int, alpha: float) -> None:
    """Output rows split in geo[G_NCHUNK] static chunks."""
    rows = geo[G_N] * geo[G_OH]
    nt = geo[G_NCHUNK]
    for t in prange(nt):
        _depthwise_rows(x, w, bias, out, geo, t * rows // nt, (t + 1) * rows // nt, code,
                        alpha)
