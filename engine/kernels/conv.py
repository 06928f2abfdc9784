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
kernel accumulates ``CHANNEL_TILE`` channels of 4 neighbouring output pixels in registers,
tap by tap, reading the unpadded input (border windows skip their outside taps). The pooling
kernels (``engine.kernels.pool``) reuse the same vector intrinsics.

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
    "CHANNEL_TILE",
    "stack_tile",
    "acc_fill",
    "acc_max_v",
    "acc_add_v",
    "acc_store_scaled",
    "tile_shape",
    "pack_weight",
    "patch_offsets",
    "fetch_add",
    "clip_params",
    "VEC",
    "vec_at",
    "splat",
    "load_f32",
    "acc_zero",
    "acc_fma",
    "gemm_kernels",
    "conv_depthwise_serial",
    "conv_depthwise_par",
    "conv_depthwise_mult_serial",
    "conv_depthwise_mult_par",
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
_TILE_ROWS = (12, 6, 6, 6) if _AVX512 else (6, 4, 3, 2)
# channels per depthwise / pooling step: two vectors, two independent dependency chains
CHANNEL_TILE = 2 * VECTOR_WIDTH

# geometry vector: one int64 array instead of twenty scalar arguments (cheaper dispatch).
# NBLK: GEMM row blocks; NCHUNK: threads of the parallel entries; UNITS / UNIT: how many work
# units they share out and the size of one (row blocks, pixels or image rows); SPLIT_COLS: a
# GEMM unit is UNIT column blocks (all rows) instead of UNIT row blocks (all columns).
(G_N, G_H, G_W, G_C, G_OH, G_OW, G_KH, G_KW, G_SH, G_SW, G_DH, G_DW, G_PT, G_PL,
 G_GROUPS, G_CG, G_OG, G_M, G_NBLK, G_NCHUNK, G_UNITS, G_UNIT, G_SPLIT_COLS) = range(23)
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
def fetch_add(typingctx: Any, ary: Any, idx: Any, val: Any) -> Any:
    """Atomically ``ary[idx] += val`` on an int64 array; returns the previous value."""
    if not (isinstance(ary, types.Array) and ary.dtype == types.int64
            and isinstance(idx, types.Integer) and isinstance(val, types.Integer)):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        inc = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", builder.gep(data, [args[1]]), inc, "monotonic")

    return types.int64(ary, idx, val), codegen


@intrinsic
def stack_tile(typingctx: Any, mr: Any, nr: Any) -> Any:
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


@intrinsic
def acc_fill(typingctx: Any, acc: Any, value: Any, nr: Any) -> Any:
    """acc[:nr] = value (a stack tile from ``stack_tile``)."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        vec = _splat(builder, context.cast(builder, args[1], sig.args[1], types.float32))
        for v in range(nv):
            builder.store(vec, _vec_at(builder, args[0], ir.Constant(ir.IntType(64),
                                                                      v * VECTOR_WIDTH)),
                          align=4)
        return context.get_dummy_value()

    return types.none(acc, value, nr), codegen


def _accumulate(kind: str) -> Any:
    def typer(typingctx: Any, acc: Any, xf: Any, xi: Any, nr: Any) -> Any:
        nv = _nvec(nr)
        if not nv:
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ptr, xary, xi = args[:3]
            xdata = builder.gep(context.make_array(sig.args[1])(context, builder, xary).data,
                                [xi])
            for v in range(nv):
                step = ir.Constant(xi.type, v * VECTOR_WIDTH)
                at = _vec_at(builder, ptr, step)
                cur = builder.load(at, align=4)
                xv = builder.load(_vec_at(builder, xdata, step), align=4)
                if kind == "max":
                    new = builder.select(builder.fcmp_ordered(">", xv, cur), xv, cur)
                else:
                    new = builder.fadd(cur, xv)
                builder.store(new, at, align=4)
            return context.get_dummy_value()

        return types.none(acc, xf, xi, nr), codegen

    typer.__name__ = f"acc_{kind}_v"
    typer.__doc__ = f"acc[:nr] = {kind}(acc[:nr], xf[xi:xi+nr]) (xi >= 0)."
    return intrinsic(typer)


acc_max_v = _accumulate("max")
acc_add_v = _accumulate("add")


@intrinsic
def acc_store_scaled(typingctx: Any, acc: Any, out: Any, row: Any, col: Any, scale: Any,
                     nr: Any) -> Any:
    """out[row, col:col+nr] = acc[:nr] * scale (out a C-contiguous 2-D float32 array)."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, oary, orow, col, scale = args[:5]
        dst = builder.gep(_row_ptr(context, builder, sig.args[1], oary, orow), [col])
        svec = _splat(builder, context.cast(builder, scale, sig.args[4], types.float32))
        for v in range(nv):
            step = ir.Constant(col.type, v * VECTOR_WIDTH)
            val = builder.fmul(builder.load(_vec_at(builder, ptr, step), align=4), svec)
            builder.store(val, _vec_at(builder, dst, step), align=4)
        return context.get_dummy_value()

    return types.none(acc, out, row, col, scale, nr), codegen


@intrinsic
def _acc_fma_vv(typingctx: Any, acc: Any, off: Any, xf: Any, xi: Any, wf: Any, wi: Any,
                nr: Any) -> Any:
    """acc[off:off+nr] += xf[xi:xi+nr] * wf[wi:wi+nr] (1-D float32 arrays, indices >= 0)."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, offset, xary, xi, wary, wi = args[:6]
        xdata = builder.gep(context.make_array(sig.args[2])(context, builder, xary).data, [xi])
        wdata = builder.gep(context.make_array(sig.args[4])(context, builder, wary).data, [wi])
        fma = cgutils.get_or_insert_function(builder.module, _FMA_TY, _FMA_NAME)
        for v in range(nv):
            step = ir.Constant(xi.type, v * VECTOR_WIDTH)
            at = _vec_at(builder, ptr, builder.add(offset, step))
            xv = builder.load(_vec_at(builder, xdata, step), align=4)
            wv = builder.load(_vec_at(builder, wdata, step), align=4)
            builder.store(builder.call(fma, [xv, wv, builder.load(at, align=4)]), at, align=4)
        return context.get_dummy_value()

    return types.none(acc, off, xf, xi, wf, wi, nr), codegen


@jit(inline="always", error_model="numpy")
def _activate(y: np.ndarray, code: int, alpha: float) -> None:
    """In place on a 1-D float32 span, for the activations the tile store cannot fold in;
    the branch sits outside each (vectorized) loop."""
    n = y.shape[0]
    if code == _SIGMOID:
        for j in range(n):
            y[j] = sigmoid_f32(y[j])
    elif code == _TANH:
        for j in range(n):
            y[j] = tanh_f32(y[j])
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
    acc = stack_tile(mr, nr)
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
        tmp = stack_tile(mr, nr)
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


@jit(inline="always", error_model="numpy")
def _im2col(x: np.ndarray, geo: np.ndarray, pn: np.ndarray, py: np.ndarray, px: np.ndarray,
            rows: int, g: int, panel: np.ndarray) -> None:
    """panel[r] = group g's patch of output pixel (pn[r], py[r], px[r]), zeros on padding.

    Only for blocks that touch the border; rows past ``rows`` are left as they are (the
    tile reads row 0 in their place)."""
    h, w = geo[G_H], geo[G_W]
    kh, kw = geo[G_KH], geo[G_KW]
    sh, sw, dh, dw = geo[G_SH], geo[G_SW], geo[G_DH], geo[G_DW]
    pt, pl, cg = geo[G_PT], geo[G_PL], geo[G_CG]
    c0 = g * cg
    for r in range(rows):
        prow = panel[r]
        for i in range(kh):
            iy = py[r] * sh - pt + i * dh
            for j in range(kw):
                ix = px[r] * sw - pl + j * dw
                k0 = (i * kw + j) * cg
                if iy >= 0 and iy < h and ix >= 0 and ix < w:
                    src = x[pn[r], iy, ix]
                    for q in range(cg):
                        prow[k0 + q] = src[c0 + q]
                else:
                    for q in range(cg):
                        prow[k0 + q] = _ZERO


@jit(error_model="numpy")
def _gemm_rows(x: np.ndarray, wp: np.ndarray, koff: np.ndarray, kid: np.ndarray,
               bias: np.ndarray, out: np.ndarray, panel: np.ndarray, geo: np.ndarray,
               blk_lo: int, blk_hi: int, cb_lo: int, cb_hi: int, code: int, alpha: float,
               mr: int, nr: int) -> None:
    """Row blocks [blk_lo, blk_hi) x column blocks [cb_lo, cb_hi) of a dense/grouped conv.

    Column block cb is (group cb // col blocks, block cb % col blocks). x (N, H, W, C);
    wp from ``pack_weight``; koff from ``patch_offsets`` (offsets in x); kid = arange(K)
    (offsets in a panel row); bias (O,); out (N*OH*OW, O); panel (mr, K) private to the
    calling thread; geo the GEO_LEN geometry vector; mr, nr literals. Blocks whose windows
    all lie inside the image read x in place; the others go through ``panel``.
    """
    h, w, c = geo[G_H], geo[G_W], geo[G_C]
    kh, kw, dh, dw = geo[G_KH], geo[G_KW], geo[G_DH], geo[G_DW]
    oh, ow, sh, sw = geo[G_OH], geo[G_OW], geo[G_SH], geo[G_SW]
    pt, pl = geo[G_PT], geo[G_PL]
    cg, og, m_total = geo[G_CG], geo[G_OG], geo[G_M]
    span_y, span_x = (kh - 1) * dh, (kw - 1) * dw
    nblk = wp.shape[1]
    kg = panel.shape[1]
    xf = x.reshape(-1)
    pf = panel.reshape(-1)
    bases = np.empty(mr, dtype=np.int64)
    pbases = np.zeros(mr, dtype=np.int64)
    pn = np.empty(mr, dtype=np.int64)
    py = np.empty(mr, dtype=np.int64)
    px = np.empty(mr, dtype=np.int64)
    # output pixel (n, oy, ox) of the first row, then stepped: no division per row
    m = blk_lo * mr
    n = m // (oh * ow)
    oy = (m - n * oh * ow) // ow
    ox = m - (n * oh + oy) * ow
    for blk in range(blk_lo, blk_hi):
        m0 = blk * mr
        rows = min(mr, m_total - m0)
        inside = True
        for r in range(mr):
            if r < rows:
                iy0 = oy * sh - pt
                ix0 = ox * sw - pl
                inside = (inside and iy0 >= 0 and iy0 + span_y < h and ix0 >= 0
                          and ix0 + span_x < w)
                bases[r] = ((n * h + iy0) * w + ix0) * c
                pbases[r] = r * kg
                pn[r], py[r], px[r] = n, oy, ox
                ox += 1
                if ox == ow:
                    ox = 0
                    oy += 1
                    if oy == oh:
                        oy = 0
                        n += 1
            else:  # past the last pixel: recompute row 0
                bases[r] = bases[0]
                pbases[r] = 0
        g_panel = -1
        for cb in range(cb_lo, cb_hi):
            g = cb // nblk
            col = (cb - g * nblk) * nr
            cols = min(nr, og - col)
            if inside:
                _tile(xf, bases, koff, g * cg, wp[g, cb - g * nblk], out, m0, rows,
                      g * og + col, cols, bias, code, alpha, mr, nr)
            else:
                if g != g_panel:
                    _im2col(x, geo, pn, py, px, rows, g, panel)
                    g_panel = g
                _tile(pf, pbases, kid, 0, wp[g, cb - g * nblk], out, m0, rows,
                      g * og + col, cols, bias, code, alpha, mr, nr)


# the micro-kernel's pieces and vector code, for other GEMM-shaped kernels
# (engine.kernels.winograd)
clip_params = _clip_params
VEC = _VEC
vec_at = _vec_at
splat = _splat
load_f32 = _load
acc_zero = _acc_zero
acc_fma = _acc_fma


def _build_gemm(mr: int, nr: int) -> tuple[Any, Any]:
    """The serial and parallel dense/grouped conv kernels for one (MR, NR) tile.

    ``mr``/``nr`` are closure constants, which numba passes to ``_gemm_rows`` as literals: one
    compiled body per tile shape, shared by both entries and cached (a ``literally`` argument
    costs ~2 s of typing per process even when cached).
    """

    def serial(x: np.ndarray, wp: np.ndarray, koff: np.ndarray, kid: np.ndarray,
               bias: np.ndarray, out: np.ndarray, panels: np.ndarray, counter: np.ndarray,
               geo: np.ndarray, code: int, alpha: float) -> None:
        """The whole conv on the calling thread. x (N, H, W, C); out (N, OH, OW, O);
        panels (threads, mr, K) float32 and counter (1+,) int64: scratch."""
        o2 = out.reshape(-1, out.shape[3])
        t = geo[G_NCHUNK] * 0  # not a literal 0: that would compile a second body
        ncb = wp.shape[0] * wp.shape[1]
        _gemm_rows(x, wp, koff, kid, bias, o2, panels[0], geo, t, geo[G_NBLK], t, ncb, code,
                   alpha, mr, nr)

    def par(x: np.ndarray, wp: np.ndarray, koff: np.ndarray, kid: np.ndarray,
            bias: np.ndarray, out: np.ndarray, panels: np.ndarray, counter: np.ndarray,
            geo: np.ndarray, code: int, alpha: float) -> None:
        """The same on geo[G_NCHUNK] threads, which take geo[G_UNITS] work units from a
        shared counter (``counter[0]``): the calling thread starts at once, the others join
        as they wake up, and a thread slowed by other work does less."""
        o2 = out.reshape(-1, out.shape[3])
        nblk, units, unit = geo[G_NBLK], geo[G_UNITS], geo[G_UNIT]
        ncb = wp.shape[0] * wp.shape[1]
        split_cols = geo[G_SPLIT_COLS] != 0
        counter[0] = 0
        for t in prange(geo[G_NCHUNK]):
            u = fetch_add(counter, 0, 1)
            while u < units:
                if split_cols:
                    _gemm_rows(x, wp, koff, kid, bias, o2, panels[t], geo, 0 * u, nblk,
                               u * unit, min(ncb, (u + 1) * unit), code, alpha, mr, nr)
                else:
                    _gemm_rows(x, wp, koff, kid, bias, o2, panels[t], geo, u * unit,
                               min(nblk, (u + 1) * unit), 0 * u, ncb, code, alpha, mr, nr)
                u = fetch_add(counter, 0, 1)

    # A name per tile shape: numba names compiled code after the function's qualname, and the
    # closures of every tile shape share one; code of two shapes linked into one caller (a
    # plan's chained steps, engine/executor/fused.py) must not have the same symbol.
    for fn, kind in ((serial, "serial"), (par, "par")):
        fn.__name__ = fn.__qualname__ = f"gemm_{kind}_{mr}x{nr}"
    return jit(error_model="numpy")(serial), pjit(error_model="numpy")(par)


_GEMM_KERNELS: dict[tuple[int, int], tuple[Any, Any]] = {}


def gemm_kernels(mr: int, nr: int) -> tuple[Any, Any]:
    """(serial, parallel) conv kernels for a tile shape from ``tile_shape``."""
    key = (mr, nr)
    if key not in _GEMM_KERNELS:
        _GEMM_KERNELS[key] = _build_gemm(mr, nr)
    return _GEMM_KERNELS[key]


# output pixels a depthwise step computes together when their windows are inside the image:
# a tap's FMAs form one dependency chain per pixel and vector, so one pixel alone would wait
# on FMA latency (measured: 4 pixels run ~2x faster than 1)
_DW_PIXELS = 4


@jit(error_model="numpy")
def _depthwise_pixels(x: np.ndarray, w2: np.ndarray, taps: np.ndarray, bias: np.ndarray,
                      out: np.ndarray, geo: np.ndarray, lo: int, hi: int, code: int,
                      alpha: float) -> None:
    """Output pixels [lo, hi) of a depthwise conv with channel multiplier 1.

    x (N, H, W, C); w2 (KH*KW, C); taps[t]: offset of tap t in x; out (N*OH*OW, C).
    Channels go ``CHANNEL_TILE`` at a time through a register tile, for ``_DW_PIXELS``
    neighbours of an output row at once where possible. No padded copy (each input element
    is read only ~KH*KW times, a copy would cost as much as the conv): windows that cross
    the border skip their outside taps.
    """
    h, w, c = geo[G_H], geo[G_W], geo[G_C]
    oh, ow, sh, sw = geo[G_OH], geo[G_OW], geo[G_SH], geo[G_SW]
    kh, kw, dh, dw = geo[G_KH], geo[G_KW], geo[G_DH], geo[G_DW]
    pt, pl = geo[G_PT], geo[G_PL]
    xf = x.reshape(-1)
    wf = w2.reshape(-1)
    ntap = taps.shape[0]
    nr = CHANNEL_TILE
    full = c - c % nr
    step = sw * c  # input offset between neighbouring output pixels
    slope, top = _clip_params(code, alpha)
    acc = stack_tile(_DW_PIXELS, CHANNEL_TILE)
    n = lo // (oh * ow)
    oy = (lo - n * oh * ow) // ow
    ox = lo - (n * oh + oy) * ow
    m = lo
    while m < hi:
        iy0 = oy * sh - pt
        ix0 = ox * sw - pl
        rows_in = iy0 >= 0 and iy0 + (kh - 1) * dh < h
        npix = 1
        if (rows_in and ox + _DW_PIXELS <= ow and m + _DW_PIXELS <= hi and ix0 >= 0
                and ix0 + (_DW_PIXELS - 1) * sw + (kw - 1) * dw < w):
            npix = _DW_PIXELS
        base = ((n * h + iy0) * w + ix0) * c  # may be "negative" at the border: unused there
        if npix == _DW_PIXELS:
            for c0 in range(0, full, nr):
                for p in range(_DW_PIXELS):
                    _acc_zero(acc, p * CHANNEL_TILE, CHANNEL_TILE)
                for t in range(ntap):
                    at = base + taps[t] + c0
                    for p in range(_DW_PIXELS):
                        _acc_fma_vv(acc, p * CHANNEL_TILE, xf, at + p * step, wf, t * c + c0,
                                    CHANNEL_TILE)
                for p in range(_DW_PIXELS):
                    _acc_store(acc, p * CHANNEL_TILE, out, m + p, c0, bias, slope, top,
                               CHANNEL_TILE)
        else:
            inside = rows_in and ix0 >= 0 and ix0 + (kw - 1) * dw < w
            for c0 in range(0, full, nr):
                _acc_zero(acc, 0, CHANNEL_TILE)
                for t in range(ntap):
                    if inside or _tap_in(iy0 + (t // kw) * dh, ix0 + (t % kw) * dw, h, w):
                        _acc_fma_vv(acc, 0, xf, base + taps[t] + c0, wf, t * c + c0,
                                    CHANNEL_TILE)
                _acc_store(acc, 0, out, m, c0, bias, slope, top, CHANNEL_TILE)
        for p in range(npix):  # channels past the last full tile, one by one
            for q in range(full, c):
                v = bias[q]
                for t in range(ntap):
                    if _tap_in(iy0 + (t // kw) * dh, ix0 + p * sw + (t % kw) * dw, h, w):
                        v += _load(xf, base + p * step + taps[t] + q) * wf[t * c + q]
                v = v if v > _ZERO else slope * v
                out[m + p, q] = top if v > top else v
        if code in _OUT_OF_LINE:
            _activate_tile(out, m, npix, 0, c, code, alpha)
        m += npix
        ox += npix
        if ox == ow:
            ox = 0
            oy += 1
            if oy == oh:
                oy = 0
                n += 1


@jit(inline="always")
def _tap_in(iy: int, ix: int, h: int, w: int) -> bool:
    return iy >= 0 and iy < h and ix >= 0 and ix < w


@jit(error_model="numpy", fastmath={"contract"})
def _depthwise_mult_rows(x: np.ndarray, w: np.ndarray, bias: np.ndarray, out: np.ndarray,
                         geo: np.ndarray, row_lo: int, row_hi: int, code: int,
                         alpha: float) -> None:
    """Output rows [row_lo, row_hi) (row = n * OH + oy) of a depthwise conv with a channel
    multiplier > 1 (rare): x (N, H, W, C); w (KH, KW, O), O = C * multiplier; out
    (N, OH, OW, O). Direct loops, bounds checked."""
    h, wd, c = geo[G_H], geo[G_W], geo[G_C]
    oh, ow = geo[G_OH], geo[G_OW]
    kh, kw = geo[G_KH], geo[G_KW]
    sh, sw, dh, dw = geo[G_SH], geo[G_SW], geo[G_DH], geo[G_DW]
    pt, pl = geo[G_PT], geo[G_PL]
    mult = w.shape[2] // c
    o2 = out.reshape(-1, out.shape[3])
    slope, top = _clip_params(code, alpha)
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
                    for q in range(c):
                        v = src[q]
                        for t in range(mult):
                            o[q * mult + t] += v * wv[q * mult + t]
            for q in range(o.shape[0]):
                v = o[q]
                v = v if v > _ZERO else slope * v
                o[q] = top if v > top else v
            if code in _OUT_OF_LINE:
                _activate_tile(o2, row * ow + ox, 1, 0, o.shape[0], code, alpha)


@jit(error_model="numpy")
def conv_depthwise_serial(x: np.ndarray, w2: np.ndarray, taps: np.ndarray, bias: np.ndarray,
                          out: np.ndarray, counter: np.ndarray, geo: np.ndarray, code: int,
                          alpha: float) -> None:
    """Depthwise conv, multiplier 1, on the calling thread. x (N, H, W, C); w2 (KH*KW, C);
    taps from ``patch_offsets(kh, kw, 1, dh, dw, W, C)``; out (N, OH, OW, C); counter (1+,)
    int64 scratch (used by the parallel entry)."""
    t = geo[G_NCHUNK] * 0  # not a literal 0: that would compile a second body
    o2 = out.reshape(-1, out.shape[3])
    _depthwise_pixels(x, w2, taps, bias, o2, geo, t, geo[G_M], code, alpha)


@pjit(error_model="numpy")
def conv_depthwise_par(x: np.ndarray, w2: np.ndarray, taps: np.ndarray, bias: np.ndarray,
                       out: np.ndarray, counter: np.ndarray, geo: np.ndarray, code: int,
                       alpha: float) -> None:
    """The same on geo[G_NCHUNK] threads sharing geo[G_UNITS] runs of geo[G_UNIT] output
    pixels through the counter ``counter[0]``."""
    o2 = out.reshape(-1, out.shape[3])
    m, units, unit = geo[G_M], geo[G_UNITS], geo[G_UNIT]
    counter[0] = 0
    for _t in prange(geo[G_NCHUNK]):
        u = fetch_add(counter, 0, 1)
        while u < units:
            _depthwise_pixels(x, w2, taps, bias, o2, geo, u * unit, min(m, (u + 1) * unit),
                              code, alpha)
            u = fetch_add(counter, 0, 1)


@jit(error_model="numpy")
def conv_depthwise_mult_serial(x: np.ndarray, w: np.ndarray, bias: np.ndarray,
                               out: np.ndarray, geo: np.ndarray, code: int,
                               alpha: float) -> None:
    """Depthwise conv with a channel multiplier > 1, on the calling thread."""
    t = geo[G_NCHUNK] * 0
    _depthwise_mult_rows(x, w, bias, out, geo, t, geo[G_N] * geo[G_OH], code, alpha)


@pjit(error_model="numpy")
def conv_depthwise_mult_par(x: np.ndarray, w: np.ndarray, bias: np.ndarray, out: np.ndarray,
                            geo: np.ndarray, code: int, alpha: float) -> None:
    rows = geo[G_N] * geo[G_OH]
    nt = geo[G_NCHUNK]
    for t in prange(nt):
        _depthwise_mult_rows(x, w, bias, out, geo, t * rows // nt, (t + 1) * rows // nt, code,
                             alpha)
