"""Full-int8 QConv2D / QDense kernels: an int16 implicit GEMM with TF Lite requantization.

Layout follows the float conv (``engine.kernels.conv``): rows are output pixels, columns
output channels, the reduction runs over (kh, kw, c/groups). Each run first widens the input
once into a scratch image of int16 ``x - x_zero_point`` with a border of 0 (padded taps are
the zero point, i.e. contribute exactly 0, as in TF Lite), and every window then reads it in
place. The reduction is cut into runs contiguous in that image (``reduction_layout``), each
padded to an even length, so two reduction steps are one int32 word: one ``pmaddwd``
multiplies a broadcast pixel pair by ``NR`` channels' weight pairs and sums each pair into an
int32 lane (exact: |x - zp| <= 255, |w| <= 127). The weight stays int8, packed once as
``(groups, col blocks, K2, 2*NR)``, and is sign-extended as it is loaded; the ``MR x NR``
int32 tile lives in registers (explicit vector IR, as the float tile).

Requantization is written branch-free so LLVM vectorizes it; a GEMM tile requantizes as one
flat run against its column block's table tiled MR times (``tile_requant_table``). QConv2D
uses gemmlowp's double rounding, QDense TF Lite's single rounding. The per-channel constants
come as one int32 array ``rq`` (``RQ_*`` rows). Depthwise convs
(one input channel per group) have no reduction to speak of and use a direct kernel,
vectorized over channels.

Serial and parallel entries share work units through an atomic counter, like the float conv.
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
from engine.kernels.conv import (
    G_C,
    G_CG,
    G_DH,
    G_DW,
    G_H,
    G_KH,
    G_KW,
    G_M,
    G_N,
    G_NBLK,
    G_NCHUNK,
    G_OG,
    G_OH,
    G_OW,
    G_PL,
    G_PT,
    G_SH,
    G_SPLIT_COLS,
    G_SW,
    G_UNIT,
    G_UNITS,
    G_W,
    GEO_LEN,
    fetch_add,
)

__all__ = [
    "QGEO_LEN",
    "G_XZP",
    "G_YZP",
    "G_LO",
    "G_HI",
    "G_SINGLE",
    "G_PB",
    "G_PR",
    "RQ_BIAS",
    "RQ_MULT",
    "RQ_LEFT",
    "RQ_RIGHT",
    "RQ_TOTAL",
    "LANES",
    "qtile_shape",
    "reduction_layout",
    "pack_qweight",
    "image_len",
    "requant_table",
    "tile_requant_table",
    "requant_span",
    "qgemm_kernels",
    "qdepthwise_serial",
    "qdepthwise_par",
]

# the float conv's geometry vector, then the int8 parameters
G_XZP, G_YZP, G_LO, G_HI, G_SINGLE, G_PB, G_PR = range(GEO_LEN, GEO_LEN + 7)
QGEO_LEN = GEO_LEN + 7
# rows of the requantization table: int32 bias, Q31 multiplier, left / right shift of the
# double rounding, and the single rounding's total right shift 31 - shift
RQ_BIAS, RQ_MULT, RQ_LEFT, RQ_RIGHT, RQ_TOTAL = range(5)

_FEATURES = llvm.get_host_cpu_features()
_AVX512BW = bool(_FEATURES.get("avx512bw", False))
_AVX2 = bool(_FEATURES.get("avx2", False))
# int32 accumulator lanes per vector register, and MR for 1..4 vectors per tile row (as the
# float tile: accumulators + MR broadcasts + the weight vectors fit the register file)
LANES = 16 if _AVX512BW else 8
_TILE_ROWS = (12, 6, 6, 6) if _AVX512BW else (6, 4, 3, 2)
_I32_MIN = -(1 << 31)
_I32_MAX = (1 << 31) - 1

_IVEC = ir.VectorType(ir.IntType(32), LANES)
_HVEC = ir.VectorType(ir.IntType(16), 2 * LANES)
_BVEC = ir.VectorType(ir.IntType(8), 2 * LANES)
_WVEC = ir.VectorType(ir.IntType(32), 2 * LANES)


def qtile_shape(cols: int, rows: int) -> tuple[int, int]:
    """(MR, NR) for ``cols`` output channels per group and ``rows`` output pixels: few rows
    (a QDense at batch 1) take a shorter tile instead of computing repeated rows."""
    nv = min(len(_TILE_ROWS), max(1, -(-cols // LANES)))
    full = _TILE_ROWS[nv - 1]
    mr = min(c for c in sorted({1, 2, 4, full}) if c >= min(rows, full))
    return mr, nv * LANES


def reduction_layout(kh: int, kw: int, cg: int, c: int, dh: int, dw: int,
                     wp: int) -> tuple[np.ndarray, np.ndarray]:
    """(woff, kidx) of the int16 pair layout of the reduction.

    The reduction is cut into runs contiguous in the padded image (a whole kernel row of
    KW*C elements without groups and W dilation, else one tap's C/groups channels), each
    padded to an even length. Pair k2 is the int32 word at int16 offset ``woff[k2]`` from
    the pixel's corner; ``kidx[2*k2 + p]`` is its weight row in (KH*KW*CG) order, -1 for a
    run's pad (weight 0, so whatever the word's second half holds contributes 0)."""
    if cg == c and dw == 1:
        runs = [(i * dh * wp * c, i * kw * cg, kw * cg) for i in range(kh)]
    else:
        runs = [((i * dh * wp + j * dw) * c, (i * kw + j) * cg, cg)
                for i in range(kh) for j in range(kw)]
    woff: list[int] = []
    kidx: list[int] = []
    for start, k0, length in runs:
        for t in range(0, length, 2):
            woff.append(start + t)
            kidx += [k0 + t, k0 + t + 1 if t + 1 < length else -1]
    return np.array(woff, dtype=np.int64), np.array(kidx, dtype=np.int64)


def pack_qweight(w: np.ndarray, groups: int, nr: int, kidx: np.ndarray) -> np.ndarray:
    """int8 (KH, KW, CG, O) -> (groups, col blocks, K2, 2*NR): [g, b, k2, 2*j + p] = weight
    row kidx[2*k2 + p] of channel g*og + b*NR + j, pairs interleaved; zero-padded."""
    kh, kw, cg, o = w.shape
    og = o // groups
    k2 = kidx.shape[0] // 2
    nb = -(-og // nr)
    w2 = np.asarray(w, dtype=np.int8).reshape(kh * kw * cg, o)
    rows = np.where(kidx[:, None] >= 0, w2[np.maximum(kidx, 0)], 0).astype(np.int8)
    packed = np.zeros((groups, nb * nr, 2 * k2), dtype=np.int8)
    packed[:, :og, :] = rows.reshape(2 * k2, groups, og).transpose(1, 2, 0)
    p = packed.reshape(groups, nb, nr, k2, 2).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(p.reshape(groups, nb, k2, 2 * nr))


def requant_table(bias: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The ``rq`` int32 (5, O + widest NR) table from per-channel bias, multipliers and
    shifts; the harmless extra channels (multiplier 0) let a tile requantize whole vectors.
    int32, not int64: LLVM then multiplies with vpmuldq (32 x 32 -> 64) in every lane."""
    if (mult < 0).any() or (mult > _I32_MAX).any():
        raise ValueError(f"requantization multipliers must be in [0, 2**31), got {mult}")
    pad = np.zeros(len(_TILE_ROWS) * LANES, np.int64)
    shift = np.concatenate([shift.astype(np.int64), pad])
    mult = np.concatenate([mult.astype(np.int64), pad])
    bias = np.concatenate([bias.astype(np.int64), pad])
    table = np.stack([bias, mult, np.maximum(shift, 0), np.maximum(-shift, 0), 31 - shift])
    return np.ascontiguousarray(table.astype(np.int32))


@jit(inline="always", error_model="numpy")
def _requant_row(acc: np.ndarray, col0: int, rq: np.ndarray, zp: int, lo: int, hi: int,
                 single: bool, cols: int) -> None:
    """acc[j] = requantized (acc[j] + bias[col0 + j]) for j < cols, in place (int32).

    gemmlowp's SaturatingRoundingDoublingHighMul + RoundingDivideByPOT (or TF Lite's single
    rounding) as selects, 64-bit only where a product needs it: no branch in the loop, so it
    vectorizes. The high mul's INT32_MIN * INT32_MIN case cannot occur (multipliers are
    >= 0, checked by ``requant_table``).
    """
    b, mu, left, right, total = rq[RQ_BIAS], rq[RQ_MULT], rq[RQ_LEFT], rq[RQ_RIGHT], rq[RQ_TOTAL]
    one, zero = np.int64(1), np.int64(0)
    if single:
        for j in range(cols):
            o = col0 + j
            a = np.int64(acc[j]) + np.int64(b[o])
            t = np.int64(total[o])
            v = (a * np.int64(mu[o]) + (one << (t - one))) >> t
            acc[j] = np.int32(min(max(v + zp, lo), hi))
    else:
        for j in range(cols):
            o = col0 + j
            a = (np.int64(acc[j]) + np.int64(b[o])) << np.int64(left[o])
            a = np.int64(np.int32(min(max(a, np.int64(_I32_MIN)), np.int64(_I32_MAX))))
            ab = a * np.int64(mu[o])
            num = ab + (np.int64(1 << 30) if ab >= 0 else np.int64(1 - (1 << 30)))
            hm = (num + (np.int64(_I32_MAX) if num < 0 else zero)) >> 31
            rt = np.int64(right[o])
            mask = (one << rt) - one
            thr = (mask >> one) + (one if hm < 0 else zero)
            v = (hm >> rt) + (one if (hm & mask) > thr else zero)
            acc[j] = np.int32(min(max(v + zp, lo), hi))


@jit(error_model="numpy")
def requant_span(acc: np.ndarray, out: np.ndarray, rq: np.ndarray, zp: int, lo: int, hi: int,
                 single: bool) -> None:
    """out[j] = requantized (acc[j] + bias[j]) for every j, int32 -> int8 (acc is
    overwritten with the result)."""
    _requant_row(acc, 0, rq, zp, lo, hi, single, acc.shape[0])
    for j in range(acc.shape[0]):
        out[j] = np.int8(acc[j])


# ------------------------------------------------------------------ int32 register tile


def _nvec(nr: Any) -> int:
    if not isinstance(nr, types.IntegerLiteral) or nr.literal_value % LANES:
        return 0
    return int(nr.literal_value) // LANES


def _ivec_at(builder: Any, base: Any, offset: Any) -> Any:
    return builder.bitcast(builder.gep(base, [offset]), _IVEC.as_pointer())


def _madd(builder: Any, xv: Any, wv: Any) -> Any:
    """pmaddwd: lane i = x[2i] * w[2i] + x[2i+1] * w[2i+1], both <2L x i16>."""
    if _AVX512BW or _AVX2:
        name = "llvm.x86.avx512.pmaddw.d.512" if _AVX512BW else "llvm.x86.avx2.pmadd.wd"
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(_IVEC, [_HVEC, _HVEC]), name)
        return builder.call(fn, [xv, wv])
    prod = builder.mul(builder.sext(xv, _WVEC), builder.sext(wv, _WVEC))
    even = ir.Constant(ir.VectorType(ir.IntType(32), LANES), list(range(0, 2 * LANES, 2)))
    odd = ir.Constant(ir.VectorType(ir.IntType(32), LANES), list(range(1, 2 * LANES, 2)))
    undef = ir.Constant(_WVEC, None)
    return builder.add(builder.shuffle_vector(prod, undef, even),
                       builder.shuffle_vector(prod, undef, odd))


@intrinsic
def _istack(typingctx: Any, mr: Any, nr: Any) -> Any:
    """An int32[mr * nr] on the stack; with literal sizes LLVM keeps it in registers."""
    if not isinstance(mr, types.IntegerLiteral) or not isinstance(nr, types.IntegerLiteral):
        return None
    size = mr.literal_value * nr.literal_value

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        n = context.get_constant(types.intp, size)
        return cgutils.alloca_once(builder, ir.IntType(32), size=n)

    return types.CPointer(types.int32)(mr, nr), codegen


@intrinsic
def _izero(typingctx: Any, acc: Any, off: Any, nr: Any) -> Any:
    """acc[off:off+nr] = 0."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        for v in range(nv):
            at = builder.add(args[1], ir.Constant(args[1].type, v * LANES))
            builder.store(ir.Constant(_IVEC, None), _ivec_at(builder, args[0], at), align=4)
        return context.get_dummy_value()

    return types.none(acc, off, nr), codegen


@intrinsic
def _imadd(typingctx: Any, acc: Any, off: Any, wp: Any, k2: Any, xpair: Any, nr: Any) -> Any:
    """acc[off:off+nr] += pmaddwd(splat(xpair), int16(wp[k2, :2*nr])); wp C-contiguous 2-D
    int8, xpair an int32 holding two int16."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, offset, wary, krow, xp = args[:5]
        arr = context.make_array(sig.args[2])(context, builder, wary)
        ncols = cgutils.unpack_tuple(builder, arr.shape, 2)[1]
        wrow = builder.gep(arr.data, [builder.mul(krow, ncols)])
        x32 = context.cast(builder, xp, sig.args[4], types.int32)
        vec = builder.insert_element(ir.Constant(_IVEC, None), x32, ir.Constant(ir.IntType(32), 0))
        lanes = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        xv = builder.bitcast(builder.shuffle_vector(vec, ir.Constant(_IVEC, None), lanes), _HVEC)
        for v in range(nv):
            at = _ivec_at(builder, ptr, builder.add(offset, ir.Constant(offset.type, v * LANES)))
            wb = builder.gep(wrow, [ir.Constant(ir.IntType(64), v * 2 * LANES)])
            wv = builder.sext(builder.load(builder.bitcast(wb, _BVEC.as_pointer()), align=1),
                              _HVEC)
            builder.store(builder.add(builder.load(at, align=4), _madd(builder, xv, wv)), at,
                          align=4)
        return context.get_dummy_value()

    return types.none(acc, off, wp, k2, xpair, nr), codegen


@intrinsic
def _icopy(typingctx: Any, acc: Any, off: Any, dst: Any, nr: Any) -> Any:
    """dst[off:off+nr] = acc[off:off+nr] (stack tiles)."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        for v in range(nv):
            at = builder.add(args[1], ir.Constant(args[1].type, v * LANES))
            val = builder.load(_ivec_at(builder, args[0], at), align=4)
            builder.store(val, _ivec_at(builder, args[2], at), align=4)
        return context.get_dummy_value()

    return types.none(acc, off, dst, nr), codegen


@intrinsic
def _ld_pair(typingctx: Any, ary: Any, idx: Any) -> Any:
    """The int32 word at int16 element ``idx`` (>= 0) of a 1-D int16 array (two int16)."""
    if not isinstance(ary, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        ptr = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(32).as_pointer())
        return builder.load(ptr, align=2)

    return types.int32(ary, idx), codegen


@jit(error_model="numpy")
def _qtile(img: np.ndarray, bases: np.ndarray, woff: np.ndarray, goff: int, wp: np.ndarray,
           out: np.ndarray, m0: int, rows: int, col0: int, cols: int, rq: np.ndarray, zp: int,
           lo: int, hi: int, single: bool, mr: int, nr: int) -> None:
    """out[m0:m0+rows, col0:col0+cols] = requant(A @ wp) for one tile.

    A[r, k2] = the int16 pair at img[bases[r] + goff + woff[k2]] (rows past ``rows`` repeat
    a valid pixel); wp (K2, 2*nr) int8. Not inlined: numba optimizes each function on its
    own, and this one must stay small for LLVM to keep the tile in registers.
    """
    acc = _istack(mr, nr)
    for r in range(mr):
        _izero(acc, r * nr, nr)
    for k in range(wp.shape[0]):
        kk = woff[k] + goff
        for r in range(mr):
            _imadd(acc, r * nr, wp, k, _ld_pair(img, bases[r] + kk), nr)
    tmp = _istack(mr, nr)
    for r in range(mr):
        _icopy(acc, r * nr, tmp, nr)
    _requant_tile(carray(tmp, (mr * nr,)), out, m0, rows, col0, cols, rq, zp, lo, hi, single,
                  mr, nr)


@jit(error_model="numpy")
def _requant_tile(t: np.ndarray, out: np.ndarray, m0: int, rows: int, col0: int, cols: int,
                  rq: np.ndarray, zp: int, lo: int, hi: int, single: bool, mr: int,
                  nr: int) -> None:
    """Requantize the whole tile in place as one flat run (``rq`` is this column block's
    table tiled ``mr`` times: a long, literal trip count LLVM vectorizes whole), then store
    its ``rows`` x ``cols`` valid part."""
    _requant_row(t, 0, rq, zp, lo, hi, single, mr * nr)
    for r in range(rows):
        o = out[m0 + r]
        if cols == nr:
            for j in range(nr):
                o[col0 + j] = np.int8(t[r * nr + j])
        else:
            for j in range(cols):
                o[col0 + j] = np.int8(t[r * nr + j])


def tile_requant_table(rq: np.ndarray, groups: int, og: int, mr: int, nr: int) -> np.ndarray:
    """(col blocks, 5, mr * nr) int32: ``requant_table``'s columns of each column block,
    repeated for the tile's ``mr`` rows (padding columns get the harmless multiplier 0)."""
    nb = -(-og // nr)
    out = np.zeros((groups * nb, 5, mr, nr), dtype=np.int32)
    for g in range(groups):
        for b in range(nb):
            lo = g * og + b * nr
            n = min(nr, og - b * nr)
            out[g * nb + b, :, :, :n] = rq[:, None, lo:lo + n]
    return np.ascontiguousarray(out.reshape(groups * nb, 5, mr * nr))


def image_len(geo: np.ndarray) -> int:
    """int16 elements of the padded image scratch: (N, H+pads, W+pads, C) and one more
    (a run's pad half word may read one element past the last pixel)."""
    hp = int(geo[G_H] + geo[G_PT] + geo[G_PB])
    wp = int(geo[G_W] + geo[G_PL] + geo[G_PR])
    return int(geo[G_N]) * hp * wp * int(geo[G_C]) + 1


@jit(error_model="numpy")
def _qimage(x: np.ndarray, img: np.ndarray, geo: np.ndarray) -> None:
    """img = int16 (x - x_zp) with a border of 0 (the zero point, i.e. real 0) of the pads'
    width: every window then reads the image in place, no bounds checks."""
    n, h, w, c = x.shape
    pt, pl = geo[G_PT], geo[G_PL]
    hp, wp = h + pt + geo[G_PB], w + pl + geo[G_PR]
    xzp = np.int16(geo[G_XZP])
    xf = x.reshape(-1)
    if pt + pl + geo[G_PB] + geo[G_PR] > 0:
        img[:] = 0
    else:
        img[img.shape[0] - 1] = 0
    for b in range(n):
        for y in range(h):
            src = ((b * h + y) * w) * c
            dst = ((b * hp + y + pt) * wp + pl) * c
            _widen(xf[src:src + w * c], img[dst:dst + w * c], xzp)


@jit(inline="always", error_model="numpy")
def _widen(src: np.ndarray, dst: np.ndarray, zp: Any) -> None:
    """dst = int16(src) - zp over two slices (slices, not offsets into whole arrays: the
    loop then has no wraparound checks and vectorizes)."""
    for k in range(src.shape[0]):
        dst[k] = np.int16(src[k]) - zp


@jit(error_model="numpy")
def _qgemm_rows(img: np.ndarray, wp: np.ndarray, woff: np.ndarray, rq: np.ndarray,
                out: np.ndarray, geo: np.ndarray, blk_lo: int, blk_hi: int, cb_lo: int,
                cb_hi: int, mr: int, nr: int, single: bool) -> None:
    """Row blocks [blk_lo, blk_hi) x column blocks [cb_lo, cb_hi) of a dense/grouped int8
    conv. img from ``_qimage``; wp from ``pack_qweight``; woff from ``reduction_layout``;
    out (N*OH*OW, O) int8. Column block cb is (group cb // col blocks, block cb % col
    blocks)."""
    oh, ow, sh, sw = geo[G_OH], geo[G_OW], geo[G_SH], geo[G_SW]
    c, cg, og, m_total = geo[G_C], geo[G_CG], geo[G_OG], geo[G_M]
    hp, wpad = geo[G_H] + geo[G_PT] + geo[G_PB], geo[G_W] + geo[G_PL] + geo[G_PR]
    zp, lo, hi = geo[G_YZP], geo[G_LO], geo[G_HI]
    nblk = wp.shape[1]
    bases = np.empty(mr, dtype=np.int64)
    m = blk_lo * mr
    n = m // (oh * ow)
    oy = (m - n * oh * ow) // ow
    ox = m - (n * oh + oy) * ow
    for blk in range(blk_lo, blk_hi):
        m0 = blk * mr
        rows = min(mr, m_total - m0)
        for r in range(mr):
            if r < rows:
                bases[r] = ((n * hp + oy * sh) * wpad + ox * sw) * c
                ox += 1
                if ox == ow:
                    ox = 0
                    oy += 1
                    if oy == oh:
                        oy = 0
                        n += 1
            else:  # past the last pixel: recompute row 0
                bases[r] = bases[0]
        for cb in range(cb_lo, cb_hi):
            g = cb // nblk
            col = (cb - g * nblk) * nr
            _qtile(img, bases, woff, g * cg, wp[g, cb - g * nblk], out, m0, rows, g * og + col,
                   min(nr, og - col), rq[cb], zp, lo, hi, single, mr, nr)


def _build_qgemm(mr: int, nr: int, single: bool) -> tuple[Any, Any]:
    """Serial and parallel int8 conv kernels for one (MR, NR) tile and rounding (closure
    constants reach ``_qgemm_rows`` as literals: one compiled, cached body per variant)."""

    @jit(error_model="numpy")
    def serial(x: np.ndarray, wp: np.ndarray, woff: np.ndarray, rq: np.ndarray,
               out: np.ndarray, img: np.ndarray, counter: np.ndarray, geo: np.ndarray) -> None:
        """The whole conv on the calling thread. x (N, H, W, C) int8; out (N, OH, OW, O)
        int8; img (``image_len``,) int16 and counter (1+,) int64: scratch."""
        _qimage(x, img, geo)
        o2 = out.reshape(-1, out.shape[3])
        t = geo[G_NCHUNK] * 0  # not a literal 0: that would compile a second body
        _qgemm_rows(img, wp, woff, rq, o2, geo, t, geo[G_NBLK], t,
                    wp.shape[0] * wp.shape[1], mr, nr, single)

    @pjit(error_model="numpy")
    def par(x: np.ndarray, wp: np.ndarray, woff: np.ndarray, rq: np.ndarray, out: np.ndarray,
            img: np.ndarray, counter: np.ndarray, geo: np.ndarray) -> None:
        """The same on geo[G_NCHUNK] threads taking geo[G_UNITS] units of geo[G_UNIT] row
        (or column) blocks from the shared counter[0] (the image is widened first, serially:
        one pass over the input, a few % of the conv)."""
        _qimage(x, img, geo)
        o2 = out.reshape(-1, out.shape[3])
        nblk, units, unit = geo[G_NBLK], geo[G_UNITS], geo[G_UNIT]
        ncb = wp.shape[0] * wp.shape[1]
        split_cols = geo[G_SPLIT_COLS] != 0
        counter[0] = 0
        for _t in prange(geo[G_NCHUNK]):
            u = fetch_add(counter, 0, 1)
            while u < units:
                if split_cols:
                    _qgemm_rows(img, wp, woff, rq, o2, geo, 0 * u, nblk, u * unit,
                                min(ncb, (u + 1) * unit), mr, nr, single)
                else:
                    _qgemm_rows(img, wp, woff, rq, o2, geo, u * unit,
                                min(nblk, (u + 1) * unit), 0 * u, ncb, mr, nr, single)
                u = fetch_add(counter, 0, 1)

    return serial, par


_QGEMM_KERNELS: dict[tuple[int, int, bool], tuple[Any, Any]] = {}


def qgemm_kernels(mr: int, nr: int, single: bool) -> tuple[Any, Any]:
    """(serial, parallel) int8 conv kernels for a tile shape from ``qtile_shape``, with
    TF Lite's single rounding (QDense) or gemmlowp's double rounding (QConv2D)."""
    key = (mr, nr, single)
    if key not in _QGEMM_KERNELS:
        _QGEMM_KERNELS[key] = _build_qgemm(mr, nr, single)
    return _QGEMM_KERNELS[key]


@jit(error_model="numpy")
def _qdepthwise_rows(x: np.ndarray, w: np.ndarray, rq: np.ndarray, out: np.ndarray,
                     geo: np.ndarray, row_lo: int, row_hi: int) -> None:
    """Output rows [row_lo, row_hi) (row = n * OH + oy) of an int8 depthwise conv: x (N, H,
    W, C) int8; w (KH, KW, O) int8 with O = C * multiplier, channel o reading input channel
    o // multiplier; out (N, OH, OW, O) int8. Windows skip their outside taps (padding is
    the zero point: it contributes 0); the channel loop vectorizes."""
    h, wd, c = geo[G_H], geo[G_W], geo[G_C]
    oh, ow = geo[G_OH], geo[G_OW]
    kh, kw = geo[G_KH], geo[G_KW]
    sh, sw, dh, dw = geo[G_SH], geo[G_SW], geo[G_DH], geo[G_DW]
    pt, pl = geo[G_PT], geo[G_PL]
    xzp = np.int32(geo[G_XZP])
    zp, lo, hi, single = geo[G_YZP], geo[G_LO], geo[G_HI], geo[G_SINGLE] != 0
    o = w.shape[2]
    mult = o // c
    acc = np.empty(o, dtype=np.int32)
    for row in range(row_lo, row_hi):
        n = row // oh
        oy = row - n * oh
        for ox in range(ow):
            for q in range(o):
                acc[q] = 0
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
                            acc[q] += (np.int32(src[q]) - xzp) * np.int32(wv[q])
                    else:
                        for q in range(c):
                            xv = np.int32(src[q]) - xzp
                            for t in range(mult):
                                acc[q * mult + t] += xv * np.int32(wv[q * mult + t])
            requant_span(acc, out[n, oy, ox], rq, zp, lo, hi, single)


@jit(error_model="numpy")
def qdepthwise_serial(x: np.ndarray, w: np.ndarray, rq: np.ndarray, out: np.ndarray,
                      counter: np.ndarray, geo: np.ndarray) -> None:
    """Int8 depthwise conv on the calling thread (counter: scratch of the parallel entry)."""
    t = geo[G_NCHUNK] * 0
    _qdepthwise_rows(x, w, rq, out, geo, t, geo[G_N] * geo[G_OH])


@pjit(error_model="numpy")
def qdepthwise_par(x: np.ndarray, w: np.ndarray, rq: np.ndarray, out: np.ndarray,
                   counter: np.ndarray, geo: np.ndarray) -> None:
    """The same on geo[G_NCHUNK] threads sharing geo[G_UNITS] runs of geo[G_UNIT] output
    rows through counter[0]."""
    rows, units, unit = geo[G_N] * geo[G_OH], geo[G_UNITS], geo[G_UNIT]
    counter[0] = 0
    for _t in prange(geo[G_NCHUNK]):
        u = fetch_add(counter, 0, 1)
        while u < units:
            _qdepthwise_rows(x, w, rq, out, geo, u * unit, min(rows, (u + 1) * unit))
            u = fetch_add(counter, 0, 1)
