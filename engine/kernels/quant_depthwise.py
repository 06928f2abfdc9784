"""Full-int8 depthwise QConv2D (one input channel per group, any channel multiplier).

A depthwise conv has no reduction to speak of, so no GEMM (``engine.kernels.quant_conv``):
a direct kernel accumulates int32 over the taps, vectorized over channels, and requantizes
each output pixel (``engine.kernels.quant_requant``). Serial and parallel entries share work
units through an atomic counter, like the float conv.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit
from engine.kernels.conv import (
    G_C,
    G_DH,
    G_DW,
    G_H,
    G_KH,
    G_KW,
    G_N,
    G_NCHUNK,
    G_OH,
    G_OW,
    G_PL,
    G_PT,
    G_SH,
    G_SW,
    G_UNIT,
    G_UNITS,
    G_W,
    fetch_add,
)
from engine.kernels.quant_requant import G_HI, G_LO, G_SINGLE, G_XZP, G_YZP, requant_span

__all__ = ["qdepthwise_serial", "qdepthwise_par"]


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
