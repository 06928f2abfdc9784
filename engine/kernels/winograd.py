"""Winograd F(2x2, 3x3) for 3x3, stride-1, undilated, ungrouped float32 convs (NHWC).

Each 2x2 block of output pixels (a tile) is computed from its 4x4 input window with 16
multiplies per (input, output) channel pair instead of 36: the window is transformed
(``V = B^T d B``), multiplied position by position with the transformed weight
(``U = G g G^T``, 16 matrices of C x O, packed once per plan), and transformed back
(``Y = A^T M A``). The 16 products are GEMMs over a block of tiles on the direct conv's
register-tiled micro-kernel (its intrinsics, without the bias/clip epilogue), so the
multiplies run at about the same FMA rate with 2.25x fewer of them. The transforms are adds
over contiguous channel vectors, written as explicit vector code.

Tiles go ``TB`` at a time (a multiple of the micro-kernel's rows) so one block's transformed
input and products stay in L2. Windows inside the image are read in place; border windows
are gathered into a zero-padded 4x4 patch first. Output tiles past the image edge (odd
output sizes) keep only their valid pixels. Bias and the linear / relu / relu6 / leaky_relu
activations are applied as the output is written.

The rounding differs from the direct conv (different sums), well inside float32 tolerances:
tests compare both with the float64 reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from engine.kernels._jit import jit, pjit
from engine.kernels.activations import ACTIVATION_CODES
from engine.kernels.conv import (
    VEC,
    VECTOR_WIDTH,
    acc_fma,
    acc_zero,
    clip_params,
    fetch_add,
    load_f32,
    pack_weight,
    splat,
    stack_tile,
    vec_at,
)

__all__ = ["FOLDED_ACTIVATIONS", "WG_LEN", "W_NCHUNK", "W_NBLOCKS", "winograd_geometry",
           "scratch_shapes",
           "transform_weight", "winograd_kernels"]

_F = np.float32
_ZERO = _F(0.0)
# activations applied as the output is written (the others need the direct conv)
FOLDED_ACTIVATIONS = frozenset(ACTIVATION_CODES[a] for a in ("linear", "relu", "relu6",
                                                              "leaky_relu"))

# geometry vector: image (N, H, W, C), output (OH, OW, O), top/left pads, tile grid (TH, TW),
# tiles in all, tiles per block and blocks, O rounded up to the GEMM's column blocks, and the
# parallel split (threads, units = blocks here)
(W_N, W_H, W_W, W_C, W_OH, W_OW, W_O, W_PT, W_PL, W_TH, W_TW, W_TILES, W_TB, W_NBLOCKS,
 W_LDM, W_NCHUNK) = range(16)
WG_LEN = 16

# G, the weight transform of F(2x2, 3x3)
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


# bytes of one block's transformed input and products: about what stays in L2 next to the
# weights (measured on the seed CNN's convs: blocks of ~24 tiles ran faster than of 96)
_BLOCK_BYTES = 160 * 1024


def winograd_geometry(x_shape: tuple[int, ...], o: int, out_hw: tuple[int, int],
                      pads_tl: tuple[int, int], mr: int, nr: int,
                      tb: int | None = None) -> np.ndarray:
    """The geometry vector for one plan; ``tb`` (tiles per block, default from the cache
    budget) is rounded up to a multiple of ``mr``."""
    n, h, w, c = x_shape
    oh, ow = out_hw
    th, tw = -(-oh // 2), -(-ow // 2)
    tiles = n * th * tw
    if tb is None:
        tb = _BLOCK_BYTES // (16 * 4 * (c + -(-o // nr) * nr))
    tb = min(max(mr, tb // mr * mr), -(-tiles // mr) * mr)
    geo = np.zeros(WG_LEN, dtype=np.int64)
    geo[:] = (n, h, w, c, oh, ow, o, pads_tl[0], pads_tl[1], th, tw, tiles, tb,
              -(-tiles // tb), -(-o // nr) * nr, 1)
    return geo


def scratch_shapes(geo: np.ndarray, threads: int) -> tuple[tuple[tuple[int, ...], str], ...]:
    """The kernels' scratch buffers for ``threads`` threads (v, mm, patch, counter)."""
    c, o, tb, ldm = (int(geo[i]) for i in (W_C, W_O, W_TB, W_LDM))
    return (((threads, 16 * tb * c), "float32"), ((threads, 16 * tb * ldm), "float32"),
            ((threads, max(16 * c, 4 * o)), "float32"), ((8,), "int64"))


def transform_weight(w: np.ndarray, nr: int) -> np.ndarray:
    """(3, 3, C, O) -> U packed as (16, col blocks, C, NR): position xi = 4 * a + b of
    ``G g G^T``, each a (C, O) matrix packed like the conv's weight (``pack_weight``)."""
    g = np.asarray(w, dtype=np.float64)
    u = np.einsum("ai,ijco,bj->abco", _G, g, _G).astype(np.float32)
    c, o = u.shape[2], u.shape[3]
    return np.ascontiguousarray(
        np.stack([pack_weight(u[a, b].reshape(1, 1, c, o), 1, nr)[0]
                  for a in range(4) for b in range(4)]))


def _data(context: Any, builder: Any, aryty: Any, ary: Any, offset: Any) -> Any:
    return builder.gep(context.make_array(aryty)(context, builder, ary).data, [offset])


def _is_f32_vector(ary: Any) -> bool:
    return isinstance(ary, types.Array) and ary.dtype == types.float32 and ary.ndim == 1


# The transforms as explicit vector code over VECTOR_WIDTH channels: left to LLVM, the loop
# over channels stays scalar (16 load and 16 store streams that may alias need more runtime
# checks than its vectorizer allows).
@intrinsic
def _input_transform_vec(typingctx: Any, src: Any, base: Any, rs: Any, c: Any, v: Any,
                         vbase: Any, vstride: Any) -> Any:
    """One vector of channels of ``_input_transform`` (offsets already include q)."""
    if not (_is_f32_vector(src) and _is_f32_vector(v)):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        sary, b, rstep, cstep, vary, vb, vs = args
        d = [[builder.load(vec_at(builder, _data(context, builder, sig.args[0], sary, b),
                                  builder.add(builder.mul(rstep, ir.Constant(rstep.type, i)),
                                              builder.mul(cstep, ir.Constant(cstep.type, j)))),
                           align=4) for j in range(4)] for i in range(4)]
        r = [[builder.fsub(d[0][j], d[2][j]) for j in range(4)],
             [builder.fadd(d[1][j], d[2][j]) for j in range(4)],
             [builder.fsub(d[2][j], d[1][j]) for j in range(4)],
             [builder.fsub(d[1][j], d[3][j]) for j in range(4)]]
        vdata = _data(context, builder, sig.args[4], vary, vb)
        for i in range(4):
            row = (builder.fsub(r[i][0], r[i][2]), builder.fadd(r[i][1], r[i][2]),
                   builder.fsub(r[i][2], r[i][1]), builder.fsub(r[i][1], r[i][3]))
            for j in range(4):
                at = builder.mul(vs, ir.Constant(vs.type, 4 * i + j))
                builder.store(row[j], vec_at(builder, vdata, at), align=4)
        return context.get_dummy_value()

    return types.none(src, base, rs, c, v, vbase, vstride), codegen


@intrinsic
def _output_transform_vec(typingctx: Any, m: Any, mbase: Any, mstride: Any, bias: Any,
                          q: Any, y: Any, ybase: Any, ys: Any, o: Any, slope: Any,
                          top: Any) -> Any:
    """One vector of channels of ``_output_transform`` (mbase and ybase include q)."""
    if not (_is_f32_vector(m) and _is_f32_vector(y) and _is_f32_vector(bias)):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        mary, mb, ms, bary, qi, yary, yb, ystep, och, a, hi = args
        mdata = _data(context, builder, sig.args[0], mary, mb)
        mm = [[builder.load(vec_at(builder, mdata, builder.mul(ms, ir.Constant(ms.type,
                                                                             4 * i + j))),
                            align=4) for j in range(4)] for i in range(4)]
        s0 = [builder.fadd(builder.fadd(mm[0][j], mm[1][j]), mm[2][j]) for j in range(4)]
        s1 = [builder.fsub(builder.fsub(mm[1][j], mm[2][j]), mm[3][j]) for j in range(4)]
        bvec = builder.load(vec_at(builder, _data(context, builder, sig.args[3], bary, qi),
                                   ir.Constant(qi.type, 0)), align=4)
        a_vec = splat(builder, context.cast(builder, a, sig.args[9], types.float32))
        hi_vec = splat(builder, context.cast(builder, hi, sig.args[10], types.float32))
        zero = ir.Constant(VEC, None)
        ydata = _data(context, builder, sig.args[5], yary, yb)
        for i, s in enumerate((s0, s1)):
            pair = (builder.fadd(builder.fadd(s[0], s[1]), s[2]),
                    builder.fsub(builder.fsub(s[1], s[2]), s[3]))
            for j in range(2):
                val = builder.fadd(pair[j], bvec)
                val = builder.select(builder.fcmp_ordered(">", val, zero), val,
                                     builder.fmul(val, a_vec))
                val = builder.select(builder.fcmp_ordered(">", val, hi_vec), hi_vec, val)
                at = builder.add(builder.mul(ystep, ir.Constant(ystep.type, i)),
                                 builder.mul(och, ir.Constant(och.type, j)))
                builder.store(val, vec_at(builder, ydata, at), align=4)
        return context.get_dummy_value()

    return types.none(m, mbase, mstride, bias, q, y, ybase, ys, o, slope, top), codegen


@intrinsic
def _acc_put(typingctx: Any, acc: Any, off: Any, dst: Any, doff: Any, nr: Any) -> Any:
    """dst[doff:doff+nr] = acc[off:off+nr] (dst a 1-D float32 array)."""
    if not (_is_f32_vector(dst) and isinstance(nr, types.IntegerLiteral)
            and nr.literal_value % VECTOR_WIDTH == 0):
        return None
    nv = nr.literal_value // VECTOR_WIDTH

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, offset, dary, doffset = args[:4]
        ddata = _data(context, builder, sig.args[2], dary, doffset)
        for k in range(nv):
            val = builder.load(vec_at(builder, ptr, builder.add(
                offset, ir.Constant(offset.type, k * VECTOR_WIDTH))), align=4)
            builder.store(val, vec_at(builder, ddata, ir.Constant(doffset.type,
                                                                  k * VECTOR_WIDTH)), align=4)
        return context.get_dummy_value()

    return types.none(acc, off, dst, doff, nr), codegen


@jit(error_model="numpy")
def _product_tile(v: np.ndarray, vbase: int, c: int, u: np.ndarray, mm: np.ndarray,
                  mbase: int, ldm: int, mr: int, nr: int) -> None:
    """mm[mbase + r * ldm : ... + nr] = sum_k v[vbase + r * c + k] * u[k, :nr] for r < mr.

    The conv GEMM's micro-kernel without its bias and clip epilogue, which would cost ~15 %
    over a reduction as short as one input channel count. Not inlined, like the conv's."""
    acc = stack_tile(mr, nr)
    for r in range(mr):
        acc_zero(acc, r * nr, nr)
    for k in range(c):
        for r in range(mr):
            acc_fma(acc, r * nr, u, k, load_f32(v, vbase + r * c + k), nr)
    for r in range(mr):
        _acc_put(acc, r * nr, mm, mbase + r * ldm, nr)


@jit(error_model="numpy")
def _input_transform(src: np.ndarray, base: int, rs: int, v: np.ndarray, vbase: int,
                     vstride: int, c: int) -> None:
    """v[vbase + xi * vstride + q] = (B^T d B)[xi] for the 4x4 window d[i, j, q] =
    src[base + i * rs + j * c + q]."""
    full = c - c % VECTOR_WIDTH
    for q in range(0, full, VECTOR_WIDTH):
        _input_transform_vec(src, base + q, rs, c, v, vbase + q, vstride)
    for q in range(full, c):
        b0 = base + q
        b1 = b0 + rs
        b2 = b1 + rs
        b3 = b2 + rs
        # B^T over the window's rows: (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
        r00 = src[b0] - src[b2]
        r01 = src[b0 + c] - src[b2 + c]
        r02 = src[b0 + 2 * c] - src[b2 + 2 * c]
        r03 = src[b0 + 3 * c] - src[b2 + 3 * c]
        r10 = src[b1] + src[b2]
        r11 = src[b1 + c] + src[b2 + c]
        r12 = src[b1 + 2 * c] + src[b2 + 2 * c]
        r13 = src[b1 + 3 * c] + src[b2 + 3 * c]
        r20 = src[b2] - src[b1]
        r21 = src[b2 + c] - src[b1 + c]
        r22 = src[b2 + 2 * c] - src[b1 + 2 * c]
        r23 = src[b2 + 3 * c] - src[b1 + 3 * c]
        r30 = src[b1] - src[b3]
        r31 = src[b1 + c] - src[b3 + c]
        r32 = src[b1 + 2 * c] - src[b3 + 2 * c]
        r33 = src[b1 + 3 * c] - src[b3 + 3 * c]
        # then B over the columns
        o = vbase + q
        v[o] = r00 - r02
        v[o + vstride] = r01 + r02
        v[o + 2 * vstride] = r02 - r01
        v[o + 3 * vstride] = r01 - r03
        v[o + 4 * vstride] = r10 - r12
        v[o + 5 * vstride] = r11 + r12
        v[o + 6 * vstride] = r12 - r11
        v[o + 7 * vstride] = r11 - r13
        v[o + 8 * vstride] = r20 - r22
        v[o + 9 * vstride] = r21 + r22
        v[o + 10 * vstride] = r22 - r21
        v[o + 11 * vstride] = r21 - r23
        v[o + 12 * vstride] = r30 - r32
        v[o + 13 * vstride] = r31 + r32
        v[o + 14 * vstride] = r32 - r31
        v[o + 15 * vstride] = r31 - r33


@jit(error_model="numpy")
def _output_transform(m: np.ndarray, mbase: int, mstride: int, bias: np.ndarray,
                      y: np.ndarray, ybase: int, ys: int, o: int, slope: float,
                      top: float) -> None:
    """y[ybase + i * ys + j * o + q] = act((A^T M A)[i, j] + bias[q]) for the tile whose
    16 products are m[mbase + xi * mstride + q]; y is the output image or a 2x2 patch."""
    full = o - o % VECTOR_WIDTH
    for q in range(0, full, VECTOR_WIDTH):
        _output_transform_vec(m, mbase + q, mstride, bias, q, y, ybase + q, ys, o, slope, top)
    for q in range(full, o):
        p = mbase + q
        m00, m01, m02, m03 = m[p], m[p + mstride], m[p + 2 * mstride], m[p + 3 * mstride]
        p += 4 * mstride
        m10, m11, m12, m13 = m[p], m[p + mstride], m[p + 2 * mstride], m[p + 3 * mstride]
        p += 4 * mstride
        m20, m21, m22, m23 = m[p], m[p + mstride], m[p + 2 * mstride], m[p + 3 * mstride]
        p += 4 * mstride
        m30, m31, m32, m33 = m[p], m[p + mstride], m[p + 2 * mstride], m[p + 3 * mstride]
        # A^T over rows: (m0 + m1 + m2, m1 - m2 - m3), then A over columns
        s0 = (m00 + m10 + m20, m01 + m11 + m21, m02 + m12 + m22, m03 + m13 + m23)
        s1 = (m10 - m20 - m30, m11 - m21 - m31, m12 - m22 - m32, m13 - m23 - m33)
        bq = bias[q]
        v00 = s0[0] + s0[1] + s0[2] + bq
        v01 = s0[1] - s0[2] - s0[3] + bq
        v10 = s1[0] + s1[1] + s1[2] + bq
        v11 = s1[1] - s1[2] - s1[3] + bq
        v00 = v00 if v00 > _ZERO else slope * v00
        v01 = v01 if v01 > _ZERO else slope * v01
        v10 = v10 if v10 > _ZERO else slope * v10
        v11 = v11 if v11 > _ZERO else slope * v11
        at = ybase + q
        y[at] = top if v00 > top else v00
        y[at + o] = top if v01 > top else v01
        y[at + ys] = top if v10 > top else v10
        y[at + ys + o] = top if v11 > top else v11


@intrinsic
def _copy_vec(typingctx: Any, dst: Any, doff: Any, src: Any, soff: Any) -> Any:
    """dst[doff:doff+VECTOR_WIDTH] = src[soff:soff+VECTOR_WIDTH] (1-D float32 arrays)."""
    if not (_is_f32_vector(dst) and _is_f32_vector(src)):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        dary, do, sary, so = args
        val = builder.load(vec_at(builder, _data(context, builder, sig.args[2], sary, so),
                                  ir.Constant(so.type, 0)), align=4)
        builder.store(val, vec_at(builder, _data(context, builder, sig.args[0], dary, do),
                                  ir.Constant(do.type, 0)), align=4)
        return context.get_dummy_value()

    return types.none(dst, doff, src, soff), codegen


@jit(error_model="numpy")
def _copy(dst: np.ndarray, doff: int, src: np.ndarray, soff: int, count: int) -> None:
    """dst[doff:doff+count] = src[soff:soff+count] (a numba slice copy checks for overlap
    and builds two array views: several times this for one window's pixel)."""
    full = count - count % VECTOR_WIDTH
    for q in range(0, full, VECTOR_WIDTH):
        _copy_vec(dst, doff + q, src, soff + q)
    for q in range(full, count):
        dst[doff + q] = src[soff + q]


@jit(inline="always")
def _tile_at(t: int, th: int, tw: int) -> tuple[int, int, int]:
    """(image, tile row, tile column) of tile t."""
    n = t // (th * tw)
    ty = (t - n * th * tw) // tw
    return n, ty, t - (n * th + ty) * tw


@jit(inline="always")
def _next_tile(n: int, ty: int, tx: int, th: int, tw: int) -> tuple[int, int, int]:
    """The tile after (n, ty, tx), without a division."""
    if tx + 1 < tw:
        return n, ty, tx + 1
    if ty + 1 < th:
        return n, ty + 1, 0
    return n + 1, 0, 0


@jit(error_model="numpy")
def _transform_inputs(x: np.ndarray, geo: np.ndarray, t_lo: int, t_hi: int, v: np.ndarray,
                      patch: np.ndarray, mr: int) -> int:
    """V for tiles [t_lo, t_hi) into v, rows padded with zeros to a multiple of ``mr``;
    returns the padded row count."""
    h, w, c = geo[W_H], geo[W_W], geo[W_C]
    th, tw, pt, pl, tb = geo[W_TH], geo[W_TW], geo[W_PT], geo[W_PL], geo[W_TB]
    xf = x.reshape(-1)
    vstride = tb * c
    n, ty, tx = _tile_at(t_lo, th, tw)
    for t in range(t_lo, t_hi):
        iy0, ix0 = 2 * ty - pt, 2 * tx - pl
        if iy0 >= 0 and iy0 + 3 < h and ix0 >= 0 and ix0 + 3 < w:
            _input_transform(xf, ((n * h + iy0) * w + ix0) * c, w * c, v, (t - t_lo) * c,
                             vstride, c)
        else:  # a border window: gather it into the zero-padded patch
            for i in range(4):
                iy = iy0 + i
                for j in range(4):
                    ix = ix0 + j
                    at = (i * 4 + j) * c
                    if iy >= 0 and iy < h and ix >= 0 and ix < w:
                        _copy(patch, at, xf, ((n * h + iy) * w + ix) * c, c)
                    else:
                        patch[at:at + c] = _ZERO
            _input_transform(patch, 0, 4 * c, v, (t - t_lo) * c, vstride, c)
        n, ty, tx = _next_tile(n, ty, tx, th, tw)
    rows_all = -(-(t_hi - t_lo) // mr) * mr
    for t in range(t_hi - t_lo, rows_all):  # the last row block's spare rows
        for xi in range(16):
            v[xi * vstride + t * c:xi * vstride + (t + 1) * c] = _ZERO
    return rows_all


@jit(error_model="numpy")
def _transform_outputs(mm: np.ndarray, geo: np.ndarray, t_lo: int, t_hi: int,
                       bias: np.ndarray, out: np.ndarray, patch: np.ndarray, code: int,
                       alpha: float) -> None:
    """The output pixels of tiles [t_lo, t_hi) from their products in mm."""
    oh, ow, o = geo[W_OH], geo[W_OW], geo[W_O]
    th, tw, tb, ldm = geo[W_TH], geo[W_TW], geo[W_TB], geo[W_LDM]
    of = out.reshape(-1)
    slope, top = clip_params(code, alpha)
    ys = ow * o
    n, ty, tx = _tile_at(t_lo, th, tw)
    for t in range(t_lo, t_hi):
        oy, ox = 2 * ty, 2 * tx
        tt = t - t_lo
        if oy + 1 < oh and ox + 1 < ow:
            _output_transform(mm, tt * ldm, tb * ldm, bias, of, ((n * oh + oy) * ow + ox) * o,
                              ys, o, slope, top)
        else:  # an edge tile: all four pixels into the patch, the valid ones out
            _output_transform(mm, tt * ldm, tb * ldm, bias, patch, 0, 2 * o, o, slope, top)
            for i in range(2):
                for j in range(2):
                    if oy + i < oh and ox + j < ow:
                        _copy(of, ((n * oh + oy + i) * ow + ox + j) * o, patch,
                              (i * 2 + j) * o, o)
        n, ty, tx = _next_tile(n, ty, tx, th, tw)


def _build(mr: int, nr: int) -> tuple[Any, Any]:
    """The serial and parallel Winograd kernels for one GEMM tile shape (literals)."""

    def block(x: np.ndarray, u: np.ndarray, bias: np.ndarray,
              out: np.ndarray, v: np.ndarray, mm: np.ndarray, patch: np.ndarray,
              geo: np.ndarray, blk: int, code: int, alpha: float) -> None:
        """Tiles [blk * TB, (blk + 1) * TB) of the conv, with one thread's scratch: v
        (16 * TB * C,), mm (16 * TB * LDM,), patch (max(16 * C, 4 * O),)."""
        c, tb, ldm = geo[W_C], geo[W_TB], geo[W_LDM]
        t_lo = blk * tb
        t_hi = min(geo[W_TILES], t_lo + tb)
        rows_all = _transform_inputs(x, geo, t_lo, t_hi, v, patch, mr)
        vstride = tb * c
        ncb = u.shape[1]
        for xi in range(16):
            for r0 in range(0, rows_all, mr):
                for cb in range(ncb):
                    _product_tile(v, xi * vstride + r0 * c, c, u[xi, cb], mm,
                                  (xi * tb + r0) * ldm + cb * nr, ldm, mr, nr)
        _transform_outputs(mm, geo, t_lo, t_hi, bias, out, patch, code, alpha)

    block.__name__ = block.__qualname__ = f"winograd_block_{mr}x{nr}"
    block_fn = jit(error_model="numpy")(block)

    def serial(x: np.ndarray, u: np.ndarray, bias: np.ndarray,
               out: np.ndarray, v: np.ndarray, mm: np.ndarray, patch: np.ndarray,
               counter: np.ndarray, geo: np.ndarray, code: int, alpha: float) -> None:
        """The whole conv on the calling thread. x (N, H, W, C); u from
        ``transform_weight``; bias (O,); out (N, OH, OW, O); v (threads, 16 * TB * C),
        mm (threads, 16 * TB * LDM), patch (threads, max(16 * C, 4 * O)) float32 and
        counter (1+,) int64: scratch (``scratch_shapes``)."""
        for blk in range(geo[W_NBLOCKS]):
            block_fn(x, u, bias, out, v[0], mm[0], patch[0], geo, blk, code, alpha)

    def par(x: np.ndarray, u: np.ndarray, bias: np.ndarray,
            out: np.ndarray, v: np.ndarray, mm: np.ndarray, patch: np.ndarray,
            counter: np.ndarray, geo: np.ndarray, code: int, alpha: float) -> None:
        """The same on geo[W_NCHUNK] threads taking blocks from ``counter[0]``."""
        nblocks = geo[W_NBLOCKS]
        counter[0] = 0
        for t in prange(geo[W_NCHUNK]):
            b = fetch_add(counter, 0, 1)
            while b < nblocks:
                block_fn(x, u, bias, out, v[t], mm[t], patch[t], geo, b, code, alpha)
                b = fetch_add(counter, 0, 1)

    for fn, kind in ((serial, "serial"), (par, "par")):
        fn.__name__ = fn.__qualname__ = f"winograd_{kind}_{mr}x{nr}"
    return jit(error_model="numpy")(serial), pjit(error_model="numpy")(par)


_KERNELS: dict[tuple[int, int], tuple[Any, Any]] = {}


def winograd_kernels(mr: int, nr: int) -> tuple[Any, Any]:
    """(serial, parallel) Winograd kernels for a tile shape from ``conv.tile_shape``."""
    key = (mr, nr)
    if key not in _KERNELS:
        _KERNELS[key] = _build(mr, nr)
    return _KERNELS[key]
