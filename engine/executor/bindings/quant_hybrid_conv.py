"""Bindings: Conv2DW8 with ``compute="int8"`` and one group (TF Lite's hybrid conv), and
Conv2DW8Packed, the same conv on a weight packed in the graph (engine.passes.pack).

Conv2DW8 reaches ``prepare_conv_w8_int8`` from engine.executor.bindings.quant's binding; both
ops share one run body. Per run, every image is quantized once (one scale per image) into a
uint8 scratch image with a border of q = 0 (byte 128); then, block by block of output
pixels, the uint8 patches are gathered (``im2col``), ``quant_hybrid.hybrid_gemm_q`` writes
the block's rows of the NHWC output in place, and bias + activation run over them while
they are in cache. A 1x1 stride-1 unpadded conv with C a multiple of 4 skips the patch copy:
its quantized image is the patch matrix.

Scratch is bounded: the quantized images (a quarter of the input's bytes) and one block of
patches (``BLOCK_BYTES``, at most ``BLOCK_ROWS`` rows), whatever the batch.

Conv2DW8 packs its weight once per plan when it and its scale are constants (a copy beside
the graph's int8 weight: what the packing pass avoids), else at every run. Conv2DW8Packed
reads the graph's packed arrays in place. Packed arrays are read-only wherever they come
from, as graph constants are: numba compiles one GEMM per (read-only, writable) combination,
so both ops (and DenseW8Packed) share one set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import ShapeError
from engine.executor.binding import Prepared, bind
from engine.executor.bindings.quant_hybrid import hybrid_threads, pack_frozen, packed_source
from engine.ir.graph import TensorType
from engine.kernels import quant_hybrid as QH
from engine.kernels import quant_hybrid_conv as HC
from engine.kernels import quant_hybrid_conv_par as HCP
from engine.kernels.activations import activation_code

__all__ = ["BLOCK_BYTES", "BLOCK_ROWS", "prepare_conv_w8_int8"]

Arrays = Sequence[np.ndarray]
_F32 = np.float32

# A block's patches stay in L2 while the GEMM sweeps them once per column block of the
# weight; the row cap bounds the scratch of convs with tiny K.
BLOCK_BYTES = 256 << 10
BLOCK_ROWS = 4096
_MIN_BLOCK_ROWS = 96


def _ints(t: TensorType) -> list[int]:
    return [int(d or 0) for d in t.shape]


def _geometry(attrs: Mapping[str, Any], x: Sequence[int], kh: int, kw: int,
              y: Sequence[int]) -> np.ndarray:
    n, h, wd, c = x
    sh, sw = (int(v) for v in attrs["strides"])
    dh, dw = (int(v) for v in attrs["dilations"])
    pt, pb, pl, pr = (int(v) for v in attrs["pads"])
    geo = np.zeros(HC.HGEO_LEN, dtype=np.int64)
    geo[[HC.H_N, HC.H_H, HC.H_W, HC.H_C, HC.H_OH, HC.H_OW]] = (n, h, wd, c, y[1], y[2])
    geo[[HC.H_KH, HC.H_KW, HC.H_SH, HC.H_SW, HC.H_DH, HC.H_DW]] = (kh, kw, sh, sw, dh, dw)
    geo[[HC.H_PT, HC.H_PL, HC.H_HP, HC.H_WP]] = (pt, pl, h + pt + pb, wd + pl + pr)
    return geo


def _block_rows(m: int, k: int, mr: int) -> int:
    """Output rows per block: a multiple of the GEMM's row tile ``mr``, padded as its scratch
    (``quant_hybrid.hybrid_scratch_shapes`` for a weight packed with that tile)."""
    rows = max(_MIN_BLOCK_ROWS, min(BLOCK_ROWS, BLOCK_BYTES // max(k, 1)))
    rows = min(-(-rows // mr) * mr, max(m, 1))
    tile = min(mr, rows)
    return -(-rows // tile) * tile


def _pack(w: np.ndarray, s: np.ndarray, k: int, o: int) -> QH.HybridWeight:
    return pack_frozen(np.reshape(w, (k, o)), np.reshape(s, (o,)))


def _conv_hybrid(attrs: Mapping[str, Any], x_shape: Sequence[int], kh: int, kw: int,
                 y_shape: Sequence[int], mr: int, weight: Callable[[Arrays], QH.HybridWeight],
                 bias_at: int | None, b_const: np.ndarray | None) -> Prepared:
    """The run both ops share: ``weight(ins)`` gives the packed (KH*KW*C, O) weight; the
    bias is ``b_const``, else input ``bias_at``, else none."""
    n, h, wd, c = x_shape
    o = y_shape[3]
    geo = _geometry(attrs, x_shape, kh, kw, y_shape)
    oh, ow = y_shape[1], y_shape[2]
    pixels = oh * ow
    m_total = n * pixels
    k = kh * kw * c
    k4 = -(-k // 4) * 4
    block = _block_rows(m_total, k, mr)
    direct = (kh == kw == 1 and tuple(attrs["strides"]) == (1, 1)
              and not any(int(p) for p in attrs["pads"]) and c % 4 == 0)
    code = activation_code(str(attrs["activation"]))
    alpha = float(attrs["alpha"])
    hp, wp = int(geo[HC.H_HP]), int(geo[HC.H_WP])
    # Threads take whole blocks (each with its own patches and row scales); splitting each
    # block's GEMM instead measured slower (a parallel region per block of a few hundred rows:
    # 8x56x56x64 -> 64 went from 5.8 ms on one thread to 7.0 on two).
    nblocks = -(-m_total // block)
    chunks = min(hybrid_threads(m_total * k * o), nblocks) if QH.HYBRID_AVAILABLE else 1

    # the direct path's GEMM reads the last block's tile padding past the images
    img_bytes = n * hp * wp * c
    q_bytes = img_bytes + (block * c if direct else 0) + HC.SLACK
    scratch: list[tuple[tuple[int, ...], str]] = [
        ((q_bytes,), "uint8"), ((chunks * block,), "float32"), ((n,), "float32")]
    if not direct:
        scratch.append(((chunks * (block * k4 + HC.SLACK),), "uint8"))
    no_patches = np.zeros(0, np.uint8)

    zeros = np.zeros(o, dtype=_F32)
    epilogue = bias_at is not None or code != 0
    at = bias_at or 0  # read only when the bias is a runtime input

    def run(ins: Arrays, outs: Arrays, scr: Arrays) -> None:
        wt = weight(ins)
        if bias_at is None:
            bias = zeros
        else:
            bias = (b_const if b_const is not None
                    else np.ascontiguousarray(ins[at], _F32).reshape(o))
        x = np.ascontiguousarray(ins[0], _F32)
        qflat, rscale, scales = scr[0], scr[1], scr[2]
        HC.quantize_images(x, geo, qflat[:img_bytes].reshape(n, hp, wp, c), scales)
        y2 = outs[0].reshape(m_total, o)
        if chunks > 1:
            HCP.blocks_kernel(wt.mr, wt.nr)(
                qflat, scales, geo, y2, wt.data, wt.colsum, wt.scale, bias,
                no_patches if direct else scr[3], rscale, block, c if direct else k4, c,
                pixels, direct, epilogue, code, alpha, chunks)
            return
        for r0 in range(0, m_total, block):
            m = min(block, m_total - r0)
            if direct:
                xq = qflat[r0 * c:(r0 + block) * c].reshape(block, c)
                HC.row_scales(scales, pixels, r0, m, rscale)
            else:
                HC.im2col(qflat, scales, geo, r0, m, scr[3], k4, rscale)
                xq = scr[3][:block * k4].reshape(block, k4)
            out = y2[r0:r0 + m]
            QH.hybrid_gemm_q(xq, rscale, m, wt, out)
            if epilogue:
                HC.bias_act_rows(out, bias, code, alpha)

    return Prepared(run, tuple(scratch))


def _bias(in_types: Sequence[TensorType], consts: Sequence[np.ndarray | None], at: int,
          o: int) -> tuple[int | None, np.ndarray | None]:
    if len(in_types) <= at:
        return None, None
    c = consts[at]
    return at, None if c is None else np.ascontiguousarray(c, _F32).reshape(o)


def prepare_conv_w8_int8(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                         out_types: Sequence[TensorType],
                         consts: Sequence[np.ndarray | None]) -> Prepared:
    x_shape, y_shape = _ints(in_types[0]), _ints(out_types[0])
    kh, kw, cg, o = _ints(in_types[1])
    c = x_shape[3]
    if cg != c:
        raise ShapeError(f"hybrid Conv2DW8: expected one group (weight input channels {cg} "
                         f"== input channels {c}), got {c // max(cg, 1)} groups")
    k = kh * kw * c
    w_c, s_c = consts[1], consts[2]
    fixed = _pack(w_c, s_c, k, o) if w_c is not None and s_c is not None else None

    def weight(ins: Arrays) -> QH.HybridWeight:
        if fixed is not None:
            return fixed
        return _pack(w_c if w_c is not None else ins[1], s_c if s_c is not None else ins[2],
                     k, o)

    bias_at, b_const = _bias(in_types, consts, 3, o)
    return _conv_hybrid(attrs, x_shape, kh, kw, y_shape, QH.hybrid_tile_shape(o)[0], weight,
                        bias_at, b_const)


@bind("Conv2DW8Packed")
def _prepare_conv_w8_packed(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                            out_types: Sequence[TensorType],
                            consts: Sequence[np.ndarray | None]) -> Prepared:
    kh, kw, n, mr = (int(attrs[key]) for key in ("kernel_h", "kernel_w", "n", "mr"))
    bias_at, b_const = _bias(in_types, consts, 4, n)
    return _conv_hybrid(attrs, _ints(in_types[0]), kh, kw, _ints(out_types[0]), mr,
                        packed_source(attrs, consts), bias_at, b_const)
