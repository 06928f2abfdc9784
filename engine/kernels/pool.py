"""Pooling kernels over NHWC float32 images.

Windows are clipped to the image once per output row and pixel, so padding costs nothing;
channels go ``CHANNEL_TILE`` at a time through a register tile (the vector intrinsics of
``engine.kernels.conv``), the last ``C % CHANNEL_TILE`` one by one.
Padded positions never win a max; an average divides by the number of real pixels in the
window (``MODE_AVG``) or by its taps inside the padded image (``MODE_AVG_PAD``,
count_include_pad: the whole window unless ceil mode lets it hang past the end pads, as in
ONNX and PyTorch). A window holding no real pixel at all gives -inf (max) or 0 (average).
Windows may be dilated (ONNX ``dilations``): taps ``DH``/``DW`` pixels apart.

Serial entries do all the work on the calling thread; ``pool2d_par`` shares it out in small
units through an atomic counter (as the conv kernels do), ``global_pool_par`` in static
chunks of images. The binding picks one by size, once.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from engine.kernels._jit import jit, pjit
from engine.kernels.conv import (
    CHANNEL_TILE,
    acc_add_v,
    acc_fill,
    acc_max_v,
    acc_store_scaled,
    fetch_add,
    stack_tile,
)

__all__ = [
    "MODE_MAX",
    "MODE_AVG",
    "MODE_AVG_PAD",
    "POOL_GEO_LEN",
    "G_NCHUNK",
    "G_UNITS",
    "G_UNIT",
    "G_PB",
    "G_PR",
    "G_DH",
    "G_DW",
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

# geometry vector: N, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL, then the parallel split:
# threads, work units, output rows per unit; then PB, PR (bottom/right pads) and the
# dilations DH, DW (0 is read as 1, so an older 15-long vector keeps its meaning)
(G_NCHUNK, G_UNITS, G_UNIT) = (12, 13, 14)
(G_PB, G_PR, G_DH, G_DW) = (15, 16, 17, 18)
POOL_GEO_LEN = 19


@jit(inline="always")
def _taps(start: int, k: int, d: int, size: int) -> tuple[int, int]:
    """First and one-past-last tap index i of a window at ``start`` (taps start + i * d)
    that fall inside [0, size)."""
    lo = 0 if start >= 0 else (-start + d - 1) // d
    hi_pos = size - 1 - start
    hi = 0 if hi_pos < 0 else min(k, hi_pos // d + 1)
    return lo, max(lo, hi)


@jit(error_model="numpy")
def _pool_rows(x: np.ndarray, out: np.ndarray, geo: np.ndarray, mode: int, row_lo: int,
               row_hi: int) -> None:
    """Output rows [row_lo, row_hi), row = n * OH + oy."""
    h, w, c = geo[1], geo[2], geo[3]
    oh, ow = geo[4], geo[5]
    kh, kw, sh, sw, pt, pl = geo[6], geo[7], geo[8], geo[9], geo[10], geo[11]
    pb, pr = geo[G_PB], geo[G_PR]
    dh, dw = max(geo[G_DH], 1), max(geo[G_DW], 1)
    xf = x.reshape(-1)
    o2 = out.reshape(-1, c)
    is_max = mode == MODE_MAX
    init = _NEG_INF if is_max else _ZERO
    full = c - c % CHANNEL_TILE
    acc = stack_tile(1, CHANNEL_TILE)
    for row in range(row_lo, row_hi):
        n = row // oh
        oy = row - n * oh
        y0 = oy * sh - pt
        ty0, ty1 = _taps(y0, kh, dh, h)
        iy0, iy1 = y0 + ty0 * dh, y0 + ty1 * dh
        # taps inside the padded image: all of them unless ceil mode overhangs the end pad
        pad_h = min(kh, (h + pb - y0 + dh - 1) // dh)
        for ox in range(ow):
            x0 = ox * sw - pl
            tx0, tx1 = _taps(x0, kw, dw, w)
            ix0, ix1 = x0 + tx0 * dw, x0 + tx1 * dw
            m = row * ow + ox
            if mode == MODE_AVG_PAD:
                count = pad_h * min(kw, (w + pr - x0 + dw - 1) // dw)
            else:
                count = (ty1 - ty0) * (tx1 - tx0)
            scale = _F(1.0) if is_max else (_F(1.0 / count) if count > 0 else _ZERO)
            for c0 in range(0, full, CHANNEL_TILE):
                acc_fill(acc, init, CHANNEL_TILE)
                for iy in range(iy0, iy1, dh):
                    for ix in range(ix0, ix1, dw):
                        at = ((n * h + iy) * w + ix) * c + c0
                        if is_max:
                            acc_max_v(acc, xf, at, CHANNEL_TILE)
                        else:
                            acc_add_v(acc, xf, at, CHANNEL_TILE)
                acc_store_scaled(acc, o2, m, c0, scale, CHANNEL_TILE)
            for q in range(full, c):
                v = init
                for iy in range(iy0, iy1, dh):
                    for ix in range(ix0, ix1, dw):
                        u = x[n, iy, ix, q]
                        if is_max:
                            v = u if u > v else v
                        else:
                            v += u
                o2[m, q] = v * scale


@jit(error_model="numpy")
def pool2d_serial(x: np.ndarray, out: np.ndarray, counter: np.ndarray, geo: np.ndarray,
                  mode: int) -> None:
    """x (N, H, W, C) -> out (N, OH, OW, C) on the calling thread; counter (1+,) int64
    scratch (used by the parallel entry)."""
    t = geo[G_NCHUNK] * 0  # not a literal 0: that would compile a second body
    _pool_rows(x, out, geo, mode, t, geo[0] * geo[4])


@pjit(error_model="numpy")
def pool2d_par(x: np.ndarray, out: np.ndarray, counter: np.ndarray, geo: np.ndarray,
               mode: int) -> None:
    """The same on geo[G_NCHUNK] threads sharing geo[G_UNITS] runs of geo[G_UNIT] output
    rows through the counter ``counter[0]``."""
    rows, units, unit = geo[0] * geo[4], geo[G_UNITS], geo[G_UNIT]
    counter[0] = 0
    for _t in prange(geo[G_NCHUNK]):
        u = fetch_add(counter, 0, 1)
        while u < units:
            _pool_rows(x, out, geo, mode, u * unit, min(rows, (u + 1) * unit))
            u = fetch_add(counter, 0, 1)


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
                    v = src[q]
                    o[q] = v if v > o[q] else o[q]
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
