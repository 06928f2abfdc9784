"""Kernel bindings: quant family (DenseW8, Conv2DW8, DenseF16, Conv2DF16, Quantize,
Dequantize, QConv2D, QDense).

Weight-only ops keep the narrow weight (and, for convs, a narrow copy packed in the float
conv kernel's layout) and widen it inside each run into that run's scratch, then call the
float kernels: the model's resident weights stay int8 / float16, the float copy exists only
while its node runs (the arena reuses the buffer for the next node). A Dense with at most
``W8_DIRECT_ROWS`` rows reads the int8 weight in place instead (no float copy at all).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.executor.binding import Prepared, bind
from engine.executor.bindings import conv as CB
from engine.ir.graph import TensorType
from engine.kernels import conv as CK
from engine.kernels import quant as QK
from engine.kernels import quant_conv as QC
from engine.kernels import quant_dense as QD
from engine.kernels import quant_depthwise as QDW
from engine.kernels import quant_requant as QR
from engine.kernels import quant_tile as QT
from engine.kernels.activations import activation_code
from engine.kernels.dense import dense_epilogue

__all__ = ["W8_DIRECT_ROWS", "W8_TILED_MAX_FMA"]

Arrays = Sequence[np.ndarray]
Widen = Callable[[np.ndarray, np.ndarray], None]  # (resident narrow, float32 scratch)
_F32 = np.float32

# Rows up to which DenseW8 reads int8 weights directly; above, widening once and one BLAS
# GEMM wins (the widening is 1/rows of the GEMM's work).
W8_DIRECT_ROWS = 8
_DIRECT_PAR_MIN = 1 << 20  # weight elements from which the direct kernel uses threads
# Above W8_DIRECT_ROWS and below this many multiply-adds, DenseW8 runs the register-tiled
# int8-reading GEMM (engine.kernels.quant_dense) on the calling thread: no widening and no
# BLAS call, so no OpenBLAS wake-up after the previous (numba) node, and no stall when the
# other core is busy (float Dense 32x1024x64 measured 30 ms then, instead of ~40 us). On an
# idle box 2-thread OpenBLAS is faster from a few million FMAs (64x1024x128: 0.71x), so
# above this widening once + BLAS stays.
W8_TILED_MAX_FMA = 1 << 22


def _size(shape: Sequence[int | None]) -> int:
    out = 1
    for d in shape:
        out *= int(d or 0)
    return out


def _zeros_or(c: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=_F32) if c is None else np.ascontiguousarray(c, _F32).reshape(-1)


def _f16_widen(narrow: np.ndarray, out: np.ndarray) -> None:
    QK.upcast_f16(narrow.reshape(-1), out.reshape(-1))


# ----------------------------------------------------------------------------- Dense


def _dense(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
           consts: Sequence[np.ndarray | None], w8: bool) -> Prepared:
    k, units = int(in_types[1].shape[0] or 0), int(in_types[1].shape[1] or 0)
    rows = _size(in_types[0].shape[:-1])
    code = activation_code(str(attrs["activation"]))
    alpha = float(attrs["alpha"])
    b_at = 3 if w8 else 2
    has_bias = len(in_types) > b_at
    b_const: np.ndarray | None = _zeros_or(consts[b_at] if has_bias else None, units)
    if has_bias and consts[b_at] is None:
        b_const = None
    w_const = consts[1]
    if w8:
        s_const = None if consts[2] is None else np.ascontiguousarray(consts[2], _F32)
    else:
        s_const = np.ones(units, dtype=_F32)
        if w_const is not None:
            w_const = np.ascontiguousarray(w_const).view(np.uint16)
    if w8 and W8_DIRECT_ROWS < rows and rows * k * units < W8_TILED_MAX_FMA:
        return _dense_w8_tiled(rows, k, units, code, alpha, b_const, b_at, w_const, s_const)
    direct = w8 and rows <= W8_DIRECT_ROWS
    par = direct and k * units >= _DIRECT_PAR_MIN and CB._threads() > 1
    direct_kernel = QK.dense_w8_rows_par if par else QK.dense_w8_rows
    nchunks = CB._threads() if par else 1

    def run(ins: Arrays, outs: Arrays, scr: Arrays) -> None:
        w = w_const if w_const is not None else ins[1]
        s = s_const if s_const is not None else ins[2].reshape(-1)
        b = b_const if b_const is not None else ins[b_at].reshape(-1)
        x = ins[0].reshape(rows, k)
        y = outs[0].reshape(rows, units)
        if direct:
            direct_kernel(x, w, s, y, nchunks)
        else:
            wf = scr[0]
            if w8:
                QK.dequant_packed(w.reshape(1, k, units), s.reshape(1, 1, units),
                                  wf.reshape(1, k, units))
            else:
                QK.upcast_f16(w.reshape(-1).view(np.uint16), wf.reshape(-1))
            np.matmul(x, wf, out=y)
        dense_epilogue(y, b, code, alpha)

    scratch: tuple[tuple[tuple[int, ...], str], ...] = () if direct else (((k, units), "float32"),)
    return Prepared(run, scratch)


def _dense_w8_tiled(rows: int, k: int, units: int, code: int, alpha: float,
                    b_const: np.ndarray | None, b_at: int, w_const: np.ndarray | None,
                    s_const: np.ndarray | None) -> Prepared:
    """DenseW8 on quant_dense's tiled kernel, reading the model's int8 weight in place; only
    a last partial column block is copied (zero-padded, once per plan, or per run when the
    weight is an input)."""
    mr, nr = QD.w8_tile_shape(units)
    serial, par = QD.w8_gemm_kernels(mr, nr)
    nblocks = -(-units // nr)
    threads = min(CB._threads(), nblocks) if rows * k * units >= CB.CONV_PAR_MIN_FMA else 1
    kernel = par if threads > 1 else serial
    wc = None if w_const is None else np.ascontiguousarray(w_const, np.int8)
    tc = None if wc is None else QD.pack_tail(wc, nr)

    def run(ins: Arrays, outs: Arrays, scr: Arrays) -> None:
        w = wc if wc is not None else np.ascontiguousarray(ins[1], np.int8)
        t = tc if tc is not None else QD.pack_tail(w, nr)
        s = s_const if s_const is not None else np.ascontiguousarray(ins[2], _F32).reshape(-1)
        b = b_const if b_const is not None else ins[b_at].reshape(-1)
        x = np.ascontiguousarray(ins[0]).reshape(rows, k)
        y = outs[0].reshape(rows, units)
        kernel(x, w, t, s, y, threads)
        dense_epilogue(y, b, code, alpha)

    return Prepared(run)


@bind("DenseW8")
def _prepare_dense_w8(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                      out_types: Sequence[TensorType],
                      consts: Sequence[np.ndarray | None]) -> Prepared:
    if attrs["compute"] == "int8":
        from engine.executor.bindings.quant_hybrid import prepare_dense_w8_int8
        return prepare_dense_w8_int8(attrs, in_types, out_types, consts)
    return _dense(attrs, in_types, consts, True)


@bind("DenseF16")
def _prepare_dense_f16(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                       out_types: Sequence[TensorType],
                       consts: Sequence[np.ndarray | None]) -> Prepared:
    return _dense(attrs, in_types, consts, False)


# ----------------------------------------------------------------------------- Conv2D


def _conv(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
          out_types: Sequence[TensorType], consts: Sequence[np.ndarray | None],
          w8: bool) -> Prepared:
    """The float Conv2D binding's kernel choice, with the packed weight narrow at rest."""
    x_t, w_t, y_t = in_types[0], in_types[1], out_types[0]
    geo = CB._conv_geometry(attrs, [int(d or 0) for d in x_t.shape],
                            [int(d or 0) for d in w_t.shape], [int(d or 0) for d in y_t.shape])
    kh, kw, cg, o = (int(d or 0) for d in w_t.shape)
    n, c = int(geo[CK.G_N]), int(geo[CK.G_C])
    groups, m = int(geo[CK.G_GROUPS]), int(geo[CK.G_M])
    code = activation_code(str(attrs["activation"]))
    alpha = float(attrs["alpha"])
    b_at = 3 if w8 else 2
    has_bias = len(in_types) > b_at
    fma = m * kh * kw * cg * o
    b_const: np.ndarray | None = _zeros_or(consts[b_at] if has_bias else None, o)
    if has_bias and consts[b_at] is None:
        b_const = None
    scratch: list[tuple[tuple[int, ...], str]] = []
    nr = 0
    pack: Callable[[np.ndarray], np.ndarray]  # float (KH, KW, CG, O) -> kernel layout
    call: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Arrays], None]

    if cg == 1 and groups > 1 and o > groups:  # depthwise with a channel multiplier
        rows = n * int(geo[CK.G_OH])
        geo[CK.G_NCHUNK] = min(CB._threads(), rows) if fma >= CB.CONV_PAR_MIN_FMA else 1
        mk = CK.conv_depthwise_mult_par if geo[CK.G_NCHUNK] > 1 else CK.conv_depthwise_mult_serial

        def pack(w: np.ndarray) -> np.ndarray:
            return np.asarray(w, _F32).reshape(1, kh * kw, o)

        def call(x: np.ndarray, wp: np.ndarray, b: np.ndarray, y: np.ndarray,
                 scr: Arrays) -> None:
            mk(x, wp.reshape(kh, kw, o), b, y, geo, code, alpha)
    elif cg == 1 and groups > 1:  # depthwise
        threads = CB._share_out(geo, CB._CONV_SPLIT, fma >= CB.CONV_PAR_MIN_FMA, m,
                                CB._UNITS_PER_THREAD)
        dk = CK.conv_depthwise_par if threads > 1 else CK.conv_depthwise_serial
        taps = CK.patch_offsets(kh, kw, 1, int(geo[CK.G_DH]), int(geo[CK.G_DW]),
                                int(geo[CK.G_W]), c)
        scratch.append(((CB._SCHED_LEN,), "int64"))

        def pack(w: np.ndarray) -> np.ndarray:
            return np.asarray(w, _F32).reshape(1, kh * kw, o)

        def call(x: np.ndarray, wp: np.ndarray, b: np.ndarray, y: np.ndarray,
                 scr: Arrays) -> None:
            dk(x, wp.reshape(kh * kw, o), taps, b, y, scr[1], geo, code, alpha)
    else:
        mr, nr = CK.tile_shape(o // groups)
        serial, par = CK.gemm_kernels(mr, nr)
        nblocks = -(-m // mr)
        geo[CK.G_NBLK] = nblocks
        ncols = groups * -(-(o // groups) // nr)
        split_cols = CB._imbalance(ncols, CB._threads()) < CB._imbalance(nblocks, CB._threads())
        geo[CK.G_SPLIT_COLS] = int(split_cols)
        threads = CB._share_out(geo, CB._CONV_SPLIT, fma >= CB.CONV_PAR_MIN_FMA,
                                ncols if split_cols else nblocks,
                                1 if split_cols else CB._UNITS_PER_THREAD)
        kernel = par if threads > 1 else serial
        kg = kh * kw * cg
        koff = CK.patch_offsets(kh, kw, cg, int(geo[CK.G_DH]), int(geo[CK.G_DW]),
                                int(geo[CK.G_W]), c)
        kid = np.arange(kg, dtype=np.int64)
        scratch += [((threads, mr, kg), "float32"), ((CB._SCHED_LEN,), "int64")]

        def pack(w: np.ndarray) -> np.ndarray:
            p = CK.pack_weight(w, groups, nr)  # (groups, col blocks, K, NR)
            return p.reshape(-1, p.shape[2], p.shape[3])

        def call(x: np.ndarray, wp: np.ndarray, b: np.ndarray, y: np.ndarray,
                 scr: Arrays) -> None:
            wp4 = wp.reshape(groups, -1, kg, nr)
            kernel(x, wp4, koff, kid, b, y, scr[1], scr[2], geo, code, alpha)

    # narrow resident copy in the kernel's layout; the scale packed alike with K = 1
    def pack_scale(sc: np.ndarray) -> np.ndarray:
        full = np.ascontiguousarray(np.broadcast_to(np.asarray(sc, _F32).reshape(-1), (o,)))
        if cg == 1 and groups > 1:
            return full.reshape(1, 1, o)
        p = CK.pack_weight(full.reshape(1, 1, 1, o), groups, nr)
        return np.ascontiguousarray(p.reshape(-1, 1, p.shape[3]))

    def narrow_pack(w: np.ndarray, sc: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        wide = pack(np.asarray(w, _F32))
        if w8:
            assert sc is not None
            return wide.astype(np.int8), pack_scale(sc)
        return wide.astype(np.float16).view(np.uint16), np.empty((0, 0, 0), _F32)

    wide_shape: tuple[int, ...] = tuple(pack(np.zeros((kh, kw, cg, o), _F32)).shape)
    scratch.insert(0, (wide_shape, "float32"))

    def widen(wn: np.ndarray, sp: np.ndarray, out: np.ndarray) -> None:
        if w8:
            QK.dequant_packed(wn, sp, out)
        else:
            QK.upcast_f16(wn.reshape(-1), out.reshape(-1))

    w_const = consts[1]
    s_const = consts[2] if w8 else None
    wn: np.ndarray | None = None
    sp: np.ndarray | None = None
    if w_const is not None and (not w8 or s_const is not None):
        wn, sp = narrow_pack(w_const, s_const)

    def run(ins: Arrays, outs: Arrays, scr: Arrays) -> None:
        if wn is not None and sp is not None:
            wn_, sp_ = wn, sp
        else:
            wn_, sp_ = narrow_pack(ins[1], ins[2] if w8 else None)
        b = b_const if b_const is not None else _zeros_or(ins[b_at], o)
        widen(wn_, sp_, scr[0])
        call(ins[0], scr[0], b, outs[0], scr)

    return Prepared(run, tuple(scratch))


@bind("Conv2DW8")
def _prepare_conv_w8(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                     out_types: Sequence[TensorType],
                     consts: Sequence[np.ndarray | None]) -> Prepared:
    if attrs["compute"] == "int8" and int(attrs["groups"]) == 1:
        from engine.executor.bindings.quant_hybrid_conv import prepare_conv_w8_int8
        return prepare_conv_w8_int8(attrs, in_types, out_types, consts)
    return _conv(attrs, in_types, out_types, consts, True)


@bind("Conv2DF16")
def _prepare_conv_f16(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                      out_types: Sequence[TensorType],
                      consts: Sequence[np.ndarray | None]) -> Prepared:
    return _conv(attrs, in_types, out_types, consts, False)


# ----------------------------------------------------------------------------- full int8


@bind("Quantize")
def _prepare_quantize(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                      out_types: Sequence[TensorType],
                      consts: Sequence[np.ndarray | None]) -> Prepared:
    scale, zp = float(attrs["scale"]), int(attrs["zero_point"])

    def run(ins: Arrays, outs: Arrays, scr: Arrays) -> None:
        QK.quantize_kernel(ins[0].reshape(-1), outs[0].reshape(-1), scale, zp)

    return Prepared(run)


@bind("Dequantize")
def _prepare_dequantize(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                        out_types: Sequence[TensorType],
                        consts: Sequence[np.ndarray | None]) -> Prepared:
    scale, zp = float(attrs["scale"]), int(attrs["zero_point"])

    def run(ins: Arrays, outs: Arrays, scr: Arrays) -> None:
        QK.dequantize_kernel(ins[0].reshape(-1), outs[0].reshape(-1), scale, zp)

    return Prepared(run)


def _qparams(attrs: Mapping[str, Any], consts: Sequence[np.ndarray | None],
             n: int) -> tuple[Callable[[Arrays], np.ndarray], bool, int, int, int, int]:
    """The requantization table ``rq`` from the inputs, whether it is fixed for the plan
    (else computed per run: weights are inputs), the zero points and the clamp range."""
    xs, ys = float(attrs["x_scale"]), float(attrs["y_scale"])
    xzp, yzp = int(attrs["x_zero_point"]), int(attrs["y_zero_point"])
    lo, hi = QK.activation_range(str(attrs["activation"]), ys, yzp)

    def table(scale: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        mult, shift = QK.requant_params(xs, scale, ys, n)
        b = (np.zeros(n, np.int32) if bias is None
             else np.ascontiguousarray(bias, np.int32).reshape(-1))
        return QR.requant_table(b, mult, shift)

    has_bias = len(consts) == 4
    fixed = consts[2] is not None and (not has_bias or consts[3] is not None)
    src = consts if fixed else None

    def get(ins: Arrays) -> np.ndarray:
        arrs = src if src is not None else ins
        return table(arrs[2], arrs[3] if has_bias else None)  # type: ignore[arg-type]

    return get, fixed, xzp, yzp, lo, hi


def _qgeometry(attrs: Mapping[str, Any], x_shape: Sequence[int], w_shape: Sequence[int],
               y_shape: Sequence[int], xzp: int, yzp: int, lo: int, hi: int,
               single: bool) -> np.ndarray:
    geo = np.zeros(QR.QGEO_LEN, dtype=np.int64)
    geo[:CK.GEO_LEN] = CB._conv_geometry(attrs, x_shape, w_shape, y_shape)
    geo[[QR.G_XZP, QR.G_YZP, QR.G_LO, QR.G_HI, QR.G_SINGLE]] = (xzp, yzp, lo, hi, int(single))
    geo[[QR.G_PB, QR.G_PR]] = (int(attrs["pads"][1]), int(attrs["pads"][3]))
    return geo


def _qconv_call(geo: np.ndarray, w_shape: Sequence[int]) -> tuple[
        Callable[[np.ndarray], np.ndarray],
        Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Arrays], None],
        Callable[[np.ndarray], np.ndarray], list[tuple[tuple[int, ...], str]]]:
    """(pack weight, call, lay out the requantization table, scratch) of an int8 conv: the
    float conv's kernel choice and thread policy (bindings/conv.py), on the int8 kernels of
    engine.kernels.quant_conv."""
    kh, kw, cg, o = (int(d) for d in w_shape)
    groups, m = int(geo[CK.G_GROUPS]), int(geo[CK.G_M])
    rows = int(geo[CK.G_N] * geo[CK.G_OH])
    par = m * kh * kw * cg * o >= CB.CONV_PAR_MIN_FMA
    scratch: list[tuple[tuple[int, ...], str]] = [((CB._SCHED_LEN,), "int64")]
    if cg == 1 and groups > 1:  # depthwise (any channel multiplier)
        threads = CB._share_out(geo, CB._CONV_SPLIT, par, rows, CB._UNITS_PER_THREAD)
        dk = QDW.qdepthwise_par if threads > 1 else QDW.qdepthwise_serial

        def table(rq: np.ndarray) -> np.ndarray:
            return rq

        def pack(w: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(w, np.int8).reshape(kh, kw, o)

        def call(x: np.ndarray, wp: np.ndarray, rq: np.ndarray, y: np.ndarray,
                 scr: Arrays) -> None:
            dk(x, wp, rq, y, scr[0], geo)

        return pack, call, table, scratch
    mr, nr = QT.qtile_shape(o // groups, m)
    serial, parallel = QC.qgemm_kernels(mr, nr, bool(geo[QR.G_SINGLE]))
    nblocks = -(-m // mr)
    geo[CK.G_NBLK] = nblocks
    ncols = groups * -(-(o // groups) // nr)
    split_cols = CB._imbalance(ncols, CB._threads()) < CB._imbalance(nblocks, CB._threads())
    geo[CK.G_SPLIT_COLS] = int(split_cols)
    threads = CB._share_out(geo, CB._CONV_SPLIT, par, ncols if split_cols else nblocks,
                            1 if split_cols else CB._UNITS_PER_THREAD)
    kernel = parallel if threads > 1 else serial
    wpad = int(geo[CK.G_W] + geo[CK.G_PL] + geo[QR.G_PR])
    woff, kidx = QC.reduction_layout(kh, kw, cg, int(geo[CK.G_C]), int(geo[CK.G_DH]),
                                     int(geo[CK.G_DW]), wpad)
    scratch.append(((QC.image_len(geo),), "int16"))

    def pack_gemm(w: np.ndarray) -> np.ndarray:
        return QC.pack_qweight(w, groups, nr, kidx)

    def call_gemm(x: np.ndarray, wp: np.ndarray, rq: np.ndarray, y: np.ndarray,
                  scr: Arrays) -> None:
        kernel(x, wp, woff, rq, y, scr[1], scr[0], geo)

    def tile_table(rq: np.ndarray) -> np.ndarray:
        return QR.tile_requant_table(rq, groups, o // groups, mr, nr)

    return pack_gemm, call_gemm, tile_table, scratch


def _qprepared(get: Callable[[Arrays], np.ndarray], fixed: bool, w_const: np.ndarray | None,
               geo: np.ndarray, w_shape: Sequence[int],
               shape_x: Callable[[np.ndarray], np.ndarray],
               shape_y: Callable[[np.ndarray], np.ndarray]) -> Prepared:
    pack, call, table, scratch = _qconv_call(geo, w_shape)
    wp = None if w_const is None else pack(w_const)
    rq_fixed = table(get([])) if fixed else None

    def run(ins: Arrays, outs: Arrays, scr: Arrays) -> None:
        w = wp if wp is not None else pack(ins[1].reshape(w_shape))
        rq = rq_fixed if rq_fixed is not None else table(get(ins))
        call(shape_x(ins[0]), w, rq, shape_y(outs[0]), scr)

    return Prepared(run, tuple(scratch))


_QDENSE_ATTRS = {"strides": (1, 1), "dilations": (1, 1), "pads": (0, 0, 0, 0), "groups": 1}


@bind("QDense")
def _prepare_qdense(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                    out_types: Sequence[TensorType],
                    consts: Sequence[np.ndarray | None]) -> Prepared:
    """A 1x1 int8 conv over a (1, 1, rows, K) image, with TF Lite's single rounding."""
    k, units = int(in_types[1].shape[0] or 0), int(in_types[1].shape[1] or 0)
    rows = _size(in_types[0].shape[:-1])
    get, fixed, xzp, yzp, lo, hi = _qparams(attrs, consts, units)
    geo = _qgeometry(_QDENSE_ATTRS, (1, 1, rows, k), (1, 1, k, units), (1, 1, rows, units),
                     xzp, yzp, lo, hi, True)
    w_const = None if consts[1] is None else consts[1].reshape(1, 1, k, units)
    return _qprepared(get, fixed, w_const, geo, (1, 1, k, units),
                      lambda x: x.reshape(1, 1, rows, k), lambda y: y.reshape(1, 1, rows, units))


@bind("QConv2D")
def _prepare_qconv(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                   out_types: Sequence[TensorType],
                   consts: Sequence[np.ndarray | None]) -> Prepared:
    w_shape = [int(d or 0) for d in in_types[1].shape]
    get, fixed, xzp, yzp, lo, hi = _qparams(attrs, consts, w_shape[3])
    geo = _qgeometry(attrs, [int(d or 0) for d in in_types[0].shape], w_shape,
                     [int(d or 0) for d in out_types[0].shape], xzp, yzp, lo, hi, False)
    return _qprepared(get, fixed, consts[1], geo, w_shape, lambda x: x, lambda y: y)
