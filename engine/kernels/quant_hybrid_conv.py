# mypy: disable-error-code="no-any-return, arg-type, no-untyped-call, call-arg"
"""Hybrid int8 Conv2D (TF Lite's dynamic-range conv) around engine.kernels.quant_hybrid's GEMM.

Conv2DW8 with ``compute="int8"`` quantizes each image of the batch with one symmetric scale
(``max|x[n]| / 127`` over the whole image), then runs an int8 GEMM whose rows are output
pixels and whose reduction runs over the (kh, kw, c) patch. The pieces here, called by the
binding (engine.executor.bindings.quant_hybrid_conv) block of rows by block of rows:

* ``quantize_images``: every image to uint8 ``q + 128`` (the GEMM's unsigned operand) inside a
  border of 128 (= q 0), so patch copies need no bounds checks;
* ``im2col``: the uint8 patches of a block of output pixels, in the weight's (kh, kw, c)
  order, and each row's scale (its image's);
* ``row_scales``: the rows' scales alone, for 1x1 stride-1 unpadded convs whose quantized
  image already is the patch matrix;
* ``bias_act_rows``: bias and activation in place on the GEMM's float32 output block.

Quantization is the one of ``quant_hybrid.quantize_rows`` (one row = one image here):
``q = rint(x * (127 / amax))`` in float32, round half to even.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from engine.kernels._jit import jit
from engine.kernels.activations import act_scalar

__all__ = ["HGEO_LEN", "H_N", "H_H", "H_W", "H_C", "H_OH", "H_OW", "H_KH", "H_KW", "H_SH",
           "H_SW", "H_DH", "H_DW", "H_PT", "H_PL", "H_HP", "H_WP", "SLACK", "quantize_images",
           "im2col", "row_scales", "bias_act_rows"]

# geometry vector (int64) fields
H_N, H_H, H_W, H_C, H_OH, H_OW = 0, 1, 2, 3, 4, 5
H_KH, H_KW, H_SH, H_SW, H_DH, H_DW = 6, 7, 8, 9, 10, 11
H_PT, H_PL, H_HP, H_WP = 12, 13, 14, 15  # top / left pad, padded height / width
HGEO_LEN = 16

# bytes past the end of the quantized images and of the patches that im2col may read / write
# (its byte path copies whole 16-byte chunks)
SLACK = 16
_CHUNK = 16

_F32 = np.float32
_OFFSET = 128
_ZERO_Q = np.uint8(_OFFSET)
_MAGIC = _F32(12582912.0)  # 1.5 * 2**23


@jit
def _amax(v: np.ndarray) -> float:
    """max |v| over a 1-D float32 array, as the largest sign-cleared bit pattern: for floats
    >= 0 the int32 order is the float order, and an integer max vectorizes (a float max with
    NaN semantics does not)."""
    bits = v.view(np.int32)
    top = np.int32(0)
    for j in range(bits.shape[0]):
        top = max(top, bits[j] & np.int32(0x7FFFFFFF))
    return np.array([top], dtype=np.int32).view(np.float32)[0]


@jit
def _quantize_span(src: np.ndarray, inv: float, dst: np.ndarray) -> None:
    """dst[j] = rint(src[j] * inv) + 128, |src[j] * inv| <= 127."""
    f = _F32(inv)
    for j in range(src.shape[0]):
        # round half to even by adding and removing 1.5 * 2^23 (exact for |v| < 2^22): this
        # vectorizes where np.rint stays a scalar call
        v = src[j] * f + _MAGIC
        dst[j] = np.uint8(np.int32(v - _MAGIC) + _OFFSET)


@jit
def quantize_images(x: np.ndarray, geo: np.ndarray, qimg: np.ndarray,
                    scales: np.ndarray) -> None:
    """x float32 (N, H, W, C) -> qimg uint8 (N, HP, WP, C): image n quantized with
    ``scales[n] = max|x[n]| / 127`` at rows PT.., columns PL.., and 128 around it."""
    n_img, h, w, c = geo[H_N], geo[H_H], geo[H_W], geo[H_C]
    pt, pl, hp = geo[H_PT], geo[H_PL], geo[H_HP]
    for n in range(n_img):
        flat = x[n].reshape(-1)
        amax = _F32(_amax(flat))
        inv = _F32(127.0) / amax if amax > _F32(0.0) else _F32(0.0)
        scales[n] = amax / _F32(127.0)
        img = qimg[n]
        for y in range(hp):
            row = img[y].reshape(-1)
            if y < pt or y >= pt + h:
                row[:] = _ZERO_Q
                continue
            row[:pl * c] = _ZERO_Q
            row[(pl + w) * c:] = _ZERO_Q
            _quantize_span(x[n, y - pt].reshape(-1), inv, row[pl * c:(pl + w) * c])


@intrinsic
def _copy_chunk(typingctx: Any, dst: Any, d0: Any, src: Any, s0: Any) -> Any:
    """dst[d0:d0 + 16] = src[s0:s0 + 16] for 1-D uint8 arrays, one unaligned 16-byte move,
    no bounds checks."""
    if not all(isinstance(a, types.Array) and a.dtype == types.uint8 and a.ndim == 1
               for a in (dst, src)):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        def at(i: int) -> Any:
            ary = context.make_array(sig.args[i])(context, builder, args[i])
            off = context.cast(builder, args[i + 1], sig.args[i + 1], types.int64)
            return builder.gep(ary.data, [off])

        cgutils.raw_memcpy(builder, at(0), at(2), ir.Constant(ir.IntType(64), _CHUNK), 1)
        return context.get_dummy_value()

    return types.none(dst, d0, src, s0), codegen


def _copy(src: np.ndarray, s0: int, dst: np.ndarray, d0: int, count: int) -> None:
    """dst[d0:d0 + count] = src[s0:s0 + count] inside jitted code (see ``_copy_impl``)."""
    raise NotImplementedError("_copy is only callable from jitted code")


@overload(_copy, inline="always")
def _copy_impl(src: Any, s0: Any, dst: Any, d0: Any, count: Any) -> Any:
    """Bytes go in whole 16-byte chunks, writing up to 15 bytes past the span: callers copy
    in increasing dst order (the next copy rewrites them) and keep SLACK bytes past both
    arrays. Words (C a multiple of 4) go by an element loop with unsigned indices: a signed
    index keeps a negative-index branch that stops LLVM vectorizing, and a slice assignment
    costs an overlap check per call."""
    if src.dtype == types.uint8:
        def copy_bytes(src: Any, s0: Any, dst: Any, d0: Any, count: Any) -> None:
            for t in range(0, count, _CHUNK):
                _copy_chunk(dst, d0 + t, src, s0 + t)

        return copy_bytes

    def copy_words(src: Any, s0: Any, dst: Any, d0: Any, count: Any) -> None:
        s = np.uint64(s0)
        d = np.uint64(d0)
        for t in range(np.uint64(count)):
            dst[d + t] = src[s + t]

    return copy_words


@jit
def _gather(src: np.ndarray, dst: np.ndarray, scales: np.ndarray, rscale: np.ndarray,
            geo: np.ndarray, r0: int, m: int, ld: int, c: int) -> None:
    """im2col on flat arrays of elements of C / c bytes each (bytes, or 4-byte words)."""
    oh, ow = geo[H_OH], geo[H_OW]
    kh, kw, sh, sw = geo[H_KH], geo[H_KW], geo[H_SH], geo[H_SW]
    dh, dw, hp, wp = geo[H_DH], geo[H_DW], geo[H_HP], geo[H_WP]
    span = kw * c
    n = r0 // (oh * ow)
    rem = r0 - n * oh * ow
    oy = rem // ow
    ox = rem - oy * ow
    for r in range(m):
        rscale[r] = scales[n]
        d0 = r * ld
        for i in range(kh):
            s0 = ((n * hp + oy * sh + i * dh) * wp + ox * sw) * c
            if dw == 1:  # the KW taps of a kernel row are contiguous
                _copy(src, s0, dst, d0 + i * span, span)
            else:
                for j in range(kw):
                    _copy(src, s0 + j * dw * c, dst, d0 + i * span + j * c, c)
        ox += 1
        if ox == ow:
            ox = 0
            oy += 1
            if oy == oh:
                oy = 0
                n += 1


@jit
def im2col(qflat: np.ndarray, scales: np.ndarray, geo: np.ndarray, r0: int, m: int,
           pflat: np.ndarray, ld: int, rscale: np.ndarray) -> None:
    """Patch rows of output pixels r0.. r0 + m - 1: for pixel r0 + r = (n, oy, ox),
    patches[r, (i*KW + j)*C + c] = qimg[n, oy*SH + i*DH, ox*SW + j*DW, c] and
    rscale[r] = scales[n], with qimg the (N, HP, WP, C) image at the start of qflat and
    patches the (rows, ld) matrix at the start of pflat; both flat arrays have SLACK bytes
    to spare. Columns past KH*KW*C hold garbage (the packed weight is zero there)."""
    c = geo[H_C]
    if c % 4 == 0 and ld % 4 == 0:  # whole 4-byte words: a quarter of the element moves
        n4 = qflat.shape[0] // 4 * 4
        p4 = pflat.shape[0] // 4 * 4
        _gather(qflat[:n4].view(np.uint32), pflat[:p4].view(np.uint32), scales, rscale, geo,
                r0, m, ld // 4, c // 4)
    else:
        _gather(qflat, pflat, scales, rscale, geo, r0, m, ld, c)


@jit
def row_scales(scales: np.ndarray, pixels: int, r0: int, m: int, rscale: np.ndarray) -> None:
    """rscale[r] = scales[(r0 + r) // pixels] for r < m (pixels: output pixels per image)."""
    for r in range(m):
        rscale[r] = scales[(r0 + r) // pixels]


@jit
def bias_act_rows(y: np.ndarray, bias: np.ndarray, code: int, alpha: float) -> None:
    """In place on a C-contiguous float32 (M, O) block: y = act(y + bias), bias (O,) float32
    (zeros for none), code as engine.kernels.activations. One pass, one loop per code so
    each vectorizes."""
    m, o = y.shape
    f = y.reshape(-1)
    zero, six = _F32(0.0), _F32(6.0)
    for i in range(m):
        row = f[i * o:(i + 1) * o]
        if code == 0:
            for j in range(o):
                row[j] = row[j] + bias[j]
        elif code == 1:
            for j in range(o):
                row[j] = max(row[j] + bias[j], zero)
        elif code == 2:
            for j in range(o):
                row[j] = min(max(row[j] + bias[j], zero), six)
        else:
            for j in range(o):
                row[j] = act_scalar(row[j] + bias[j], code, alpha)
