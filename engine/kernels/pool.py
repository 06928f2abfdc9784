"""Pooling kernels over NHWC float32 images.

Windows are clipped to the image once per output row and pixel, so padding costs nothing and
the inner loop always runs over the contiguous channels of one input pixel (vectorized).
Padded positions never win a max; an average divides by the number of real pixels in the
window (``MODE_AVG``) or by the whole window size (``MODE_AVG_PAD``, count_include_pad). A
window holding no real pixel at all gives -inf (max) or 0 (average).

Serial entries do all the work on the calling thread; ``*_par`` entries split it in
``nchunks`` static chunks (numba ``prange``). The binding picks one by size, once.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit

__all__ = [
    "MODE_MAX",
    "MODE_AVG",
    "MODE_AVG_PAD",
    "POOL_GEO_LEN",
    "pool2d_serial",
    "pool2d_par",
    "global_pool_serial",
    "global_pool_par",
]

MODE_MAX = 0
MODE_AVG = 1
MODE_AVG_PAD = 2

_F = np.float32
_ZERO = _F(0.0)
_NEG_INF = _F(-np.inf)

# geometry vector: N, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL
POOL_GEO_LEN = 12


@jit(error_model="numpy")
def _pool_rows(x: np.ndarray, out: np.ndarray, geo: np.ndarray, mode: int, row_lo: int,
               row_hi: int) -> None:
    """Output rows [row_lo, row_hi), row = n * OH + oy."""
    h, w, c = geo[1], geo[2], geo[3]
    oh, ow = geo[4], geo[5]
    kh, kw, sh, sw, pt, pl = geo[6], geo[7], geo[8], geo[9], geo[10], geo[11]
    for row in range(row_lo, row_hi):
        n = row // oh
        oy = row - n * oh
        y0 = oy * sh - pt
        iy0 = max(y0, 0)
        iy1 = min(y0 + kh, h)
        for ox in range(ow):
            x0 = ox * sw - pl
            ix0 = max(x0, 0)
            ix1 = min(x0 + kw, w)
            o = out[n, oy, ox]
            if mode == MODE_MAX:
                for q in range(c):
                    o[q] = _NEG_INF
                for iy in range(iy0, iy1):
                    for ix in range(ix0, ix1):
                        src = x[n, iy, ix]
                        for q in range(c):
                            o[q] = max(o[q], src[q])
            else:
                for q in range(c):
                    o[q] = _ZERO
                for iy in range(iy0, iy1):
                    for ix in range(ix0, ix1):
                        src = x[n, iy, ix]
                        for q in range(c):
                            o[q] += src[q]
                count = kh * kw if mode == MODE_AVG_PAD else (iy1 - iy0) * (ix1 - ix0)
                if count > 0:
                    inv = _F(1.0 / count)
                    for q in range(c):
                        o[q] *= inv


@jit(error_model="numpy")
def pool2d_serial(x: np.ndarray, out: np.ndarray, geo: np.ndarray, mode: int,
                  nchunks: int) -> None:
    """x (N, H, W, C) -> out (N, OH, OW, C) on the calling thread."""
    _pool_rows(x, out, geo, mode, 0, geo[0] * geo[4])


@pjit(error_model="numpy")
def pool2d_par(x: np.ndarray, out: np.ndarray, geo: np.ndarray, mode: int,
               nchunks: int) -> None:
    rows = geo[0] * geo[4]
    for t in prange(nchunks):
        _pool_rows(x, out, geo, mode, t * rows // nchunks, (t + 1) * rows // nchunks)


@jit(error_model="numpy")
def _global_rows(x: np.ndarray, out: np.ndarray, is_max: bool, lo: int, hi: int) -> None:
    """out[n] = max or mean of x[n] over its rows, for n in [lo, hi); x (N, P, C)."""
    p = x.shape[1]
    c = x.shape[2]
    inv = _F(1.0 / p)
    for n in range(lo, hi):
        o = out[n]
        first = x[n, 0]
        for q in range(c):
            o[q] = first[q]
        if is_max:
            for i in range(1, p):
                src = x[n, i]
                for q in range(c):
                    o[q] = max(o[q], src[q])
        else:
            for i in range(1, p):
                src = x[n, i]
                for q in range(c):
                    o[q] += src[q]
            for q in range(c):
                o[q] *= inv


@jit(error_model="numpy")
def global_pool_serial(x: np.ndarray, out: np.ndarray, is_max: bool, nchunks: int) -> None:
    """x (N, H*W, C) -> out (N, C) on the calling thread."""
    _global_rows(x, out, is_max, 0, x.shape[0])


@pjit(error_model="numpy")
def global_pool_par(x: np.ndarray, out: np.ndarray, is_max: bool, nchunks: int) -> None:
    """Images split in ``nchunks`` static chunks."""
    n = x.shape[0]
    for t in prange(nchunks):
        _global_rows(x, out, is_max, t * n // nchunks, (t + 1) * n // nchunks)
