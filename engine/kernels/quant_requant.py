"""Requantization of the full-int8 kernels: int32 accumulators -> int8, as TF Lite does.

Written branch-free so LLVM vectorizes it; a GEMM tile requantizes as one flat run against
its column block's table tiled MR times (``tile_requant_table``). QConv2D uses gemmlowp's
double rounding, QDense TF Lite's single rounding. The per-channel constants come as one int32
array ``rq`` (``RQ_*`` rows). The int8 parameters of a conv (zero points, clamp range,
rounding) ride in its geometry vector, after the float conv's slots (``G_*`` below).
"""

from __future__ import annotations

import numpy as np

from engine.kernels._jit import jit
from engine.kernels.conv import GEO_LEN
from engine.kernels.quant_tile import LANES, TILE_ROWS

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
    "requant_table",
    "tile_requant_table",
    "requant_span",
    "requant_tile",
]

# the float conv's geometry vector, then the int8 parameters
G_XZP, G_YZP, G_LO, G_HI, G_SINGLE, G_PB, G_PR = range(GEO_LEN, GEO_LEN + 7)
QGEO_LEN = GEO_LEN + 7
# rows of the requantization table: int32 bias, Q31 multiplier, left / right shift of the
# double rounding, and the single rounding's total right shift 31 - shift
RQ_BIAS, RQ_MULT, RQ_LEFT, RQ_RIGHT, RQ_TOTAL = range(5)

_I32_MIN = -(1 << 31)
_I32_MAX = (1 << 31) - 1


def requant_table(bias: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The ``rq`` int32 (5, O + widest NR) table from per-channel bias, multipliers and
    shifts; the harmless extra channels (multiplier 0) let a tile requantize whole vectors.
    int32, not int64: LLVM then multiplies with vpmuldq (32 x 32 -> 64) in every lane."""
    if (mult < 0).any() or (mult > _I32_MAX).any():
        raise ValueError(f"requantization multipliers must be in [0, 2**31), got {mult}")
    pad = np.zeros(len(TILE_ROWS) * LANES, np.int64)
    shift = np.concatenate([shift.astype(np.int64), pad])
    mult = np.concatenate([mult.astype(np.int64), pad])
    bias = np.concatenate([bias.astype(np.int64), pad])
    table = np.stack([bias, mult, np.maximum(shift, 0), np.maximum(-shift, 0), 31 - shift])
    return np.ascontiguousarray(table.astype(np.int32))


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


@jit(error_model="numpy")
def requant_tile(t: np.ndarray, out: np.ndarray, m0: int, rows: int, col0: int, cols: int,
                 rq: np.ndarray, zp: int, lo: int, hi: int, single: bool, mr: int,
                 nr: int) -> None:
    """Requantize a GEMM tile ``t`` (mr * nr) in place as one flat run (``rq`` is this
    column block's table tiled ``mr`` times: a long, literal trip count LLVM vectorizes
    whole), then store its ``rows`` x ``cols`` valid part at out[m0:, col0:]."""
    _requant_row(t, 0, rq, zp, lo, hi, single, mr * nr)
    for r in range(rows):
        o = out[m0 + r]
        if cols == nr:
            for j in range(nr):
                o[col0 + j] = np.int8(t[r * nr + j])
        else:
            for j in range(cols):
                o[col0 + j] = np.int8(t[r * nr + j])
