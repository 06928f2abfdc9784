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
int32 tile lives in registers (``engine.kernels.quant_tile``).

Requantization (``engine.kernels.quant_requant``) is branch-free; a tile requantizes as one
flat run. Depthwise convs have no reduction to speak of and use a direct kernel
(``engine.kernels.quant_depthwise``). This module re-exports both, so the int8 conv's whole
API is importable from here.

Serial and parallel entries share work units through an atomic counter, like the float conv.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import carray, prange

from engine.kernels._jit import jit, pjit
from engine.kernels.conv import (
    G_C,
    G_CG,
    G_H,
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
    fetch_add,
)
from engine.kernels.quant_requant import (
    G_HI,
    G_LO,
    G_PB,
    G_PR,
    G_XZP,
    G_YZP,
    requant_tile,
)
from engine.kernels.quant_tile import icopy, imadd, istack, izero, ld_pair

__all__ = [
    "reduction_layout",
    "pack_qweight",
    "image_len",
    "qgemm_kernels",
]


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


@jit(error_model="numpy")
def _qtile(img: np.ndarray, bases: np.ndarray, woff: np.ndarray, goff: int, wp: np.ndarray,
           out: np.ndarray, m0: int, rows: int, col0: int, cols: int, rq: np.ndarray, zp: int,
           lo: int, hi: int, single: bool, mr: int, nr: int) -> None:
    """out[m0:m0+rows, col0:col0+cols] = requant(A @ wp) for one tile.

    A[r, k2] = the int16 pair at img[bases[r] + goff + woff[k2]] (rows past ``rows`` repeat
    a valid pixel); wp (K2, 2*nr) int8. Not inlined: numba optimizes each function on its
    own, and this one must stay small for LLVM to keep the tile in registers.
    """
    acc = istack(mr, nr)
    for r in range(mr):
        izero(acc, r * nr, nr)
    for k in range(wp.shape[0]):
        kk = woff[k] + goff
        for r in range(mr):
            imadd(acc, r * nr, wp, k, ld_pair(img, bases[r] + kk), nr)
    tmp = istack(mr, nr)
    for r in range(mr):
        icopy(acc, r * nr, tmp, nr)
    requant_tile(carray(tmp, (mr * nr,)), out, m0, rows, col0, cols, rq, zp, lo, hi, single,
                 mr, nr)


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
