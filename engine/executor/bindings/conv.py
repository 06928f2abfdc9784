"""Kernel bindings: conv family (Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D).

Everything is decided here once per plan: the kernel (implicit GEMM, depthwise, pooling), its
tile shape, the packed weight, the geometry vector and whether the work is large enough for
numba's thread pool. ``run`` is then a single kernel call. Non-float32 tensors (rare) are cast
to float32 around the same kernels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.executor.binding import Native, Prepared, bind, kernel_of, native_prepared
from engine.executor.threads import plan_threads
from engine.ir import schema_for
from engine.ir.graph import TensorType
from engine.kernels import conv as CK
from engine.kernels import pool as PK
from engine.kernels import winograd as WG
from engine.kernels.activations import activation_code

__all__ = ["CONV_PAR_MIN_FMA", "POOL_PAR_MIN", "WINOGRAD_MIN_CHANNELS", "dense_as_conv",
           "winograd_enabled"]

Arrays = Sequence[np.ndarray]
RunFn = Callable[[Arrays, Arrays, Arrays], None]



def _workers_spin() -> bool:
    """Whether numba's OpenMP workers spin a while between kernels (GOMP_SPINCOUNT > 0, or
    OMP_WAIT_POLICY=active) instead of sleeping at once (engine default: PASSIVE)."""
    spin = os.environ.get("GOMP_SPINCOUNT", "").strip().lower()
    if spin:
        return spin == "infinite" or (spin.isdigit() and int(spin) > 0)
    return os.environ.get("OMP_WAIT_POLICY", "").strip().lower() != "passive"


# Work from which the prange kernels win on 2 cores: multiply-adds for Conv2D, input
# elements read for pooling. Measured: with spinning workers a parallel region costs ~1.5 us
# and pays off from ~5 us of work. With sleeping ones every region wakes a worker (~35 us
# here), and the kernel often finds it placed on its own core until the scheduler moves it:
# a conv of up to ~350 us ran no faster in parallel, a 2.9 ms one took 1.6 ms.
_SPINNING = _workers_spin()
CONV_PAR_MIN_FMA = 1 << 18 if _SPINNING else 1 << 24
POOL_PAR_MIN = 1 << 15 if _SPINNING else 1 << 21
# Parallel kernels hand out work in small units from an atomic counter: the calling thread
# starts at once and a worker joins when it wakes, instead of everyone waiting for the last
# static chunk (and a thread slowed by other load does less). Units per thread; the
# counter's scratch.
_UNITS_PER_THREAD = 6
_SCHED_LEN = 8
_CONV_SPLIT = (CK.G_NCHUNK, CK.G_UNITS, CK.G_UNIT)
_F32 = np.float32


# Winograd F(2x2, 3x3) for 3x3 stride-1 convs from this many input channels: with fewer, its
# GEMMs (reduction over the input channels alone) are too short to run at the FMA rate
# (the seed CNN's first conv, 3 channels, stays direct). Measured on the seed CNN's convs,
# one thread: 32 -> 64 channels 1.2-1.4x, 64 -> 64 1.3-1.7x faster than the direct GEMM.
WINOGRAD_MIN_CHANNELS = 16


def winograd_enabled() -> bool:
    """Unless ``NUMBASERVE_WINOGRAD=0`` (read at plan time; for comparisons)."""
    return os.environ.get("NUMBASERVE_WINOGRAD", "1").strip() != "0"


def _winograd_fits(attrs: Mapping[str, Any], w_shape: Sequence[int], groups: int, code: int,
                   const: bool) -> bool:
    kh, kw, cg, _ = (int(d) for d in w_shape)
    return (const and (kh, kw) == (3, 3) and groups == 1 and cg >= WINOGRAD_MIN_CHANNELS
            and tuple(attrs["strides"]) == (1, 1) and tuple(attrs["dilations"]) == (1, 1)
            and code in WG.FOLDED_ACTIVATIONS and winograd_enabled())


def _threads() -> int:
    return plan_threads()


def _imbalance(items: int, workers: int) -> float:
    """Largest static share over the mean one (inf when there is less than one each)."""
    if items < workers:
        return math.inf
    return -(-items // workers) * workers / items


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=_F32)


def _cast_wrapper(run: RunFn, out_types: Sequence[TensorType]) -> RunFn:
    """Run float32 kernels for tensors of another float dtype (copies; rare)."""
    shapes = [tuple(int(d) for d in t.shape) for t in out_types]

    def wrapped(ins: Arrays, outs: Arrays, scratch: Arrays) -> None:
        tmp = [np.empty(s, dtype=_F32) for s in shapes]
        run([_f32(x) for x in ins], tmp, scratch)
        for dst, src in zip(outs, tmp, strict=True):
            np.copyto(dst, src, casting="unsafe")

    return wrapped


def _all_f32(in_types: Sequence[TensorType], out_types: Sequence[TensorType]) -> bool:
    return all(t.dtype == "float32" for t in (*in_types, *out_types))


# ----------------------------------------------------------------------------- Conv2D


def _conv_geometry(attrs: Mapping[str, Any], x_shape: Sequence[int], w_shape: Sequence[int],
                   out_shape: Sequence[int]) -> np.ndarray:
    n, h, w, c = (int(d) for d in x_shape)
    kh, kw, cg, o = (int(d) for d in w_shape)
    _, oh, ow, _ = (int(d) for d in out_shape)
    sh, sw = (int(v) for v in attrs["strides"])
    dh, dw = (int(v) for v in attrs["dilations"])
    pt, pb, pl, pr = (int(v) for v in attrs["pads"])
    groups = int(attrs["groups"])
    geo = np.zeros(CK.GEO_LEN, dtype=np.int64)
    geo[[CK.G_N, CK.G_H, CK.G_W, CK.G_C, CK.G_OH, CK.G_OW]] = (n, h, w, c, oh, ow)
    geo[[CK.G_KH, CK.G_KW, CK.G_SH, CK.G_SW, CK.G_DH, CK.G_DW]] = (kh, kw, sh, sw, dh, dw)
    geo[[CK.G_PT, CK.G_PL, CK.G_GROUPS, CK.G_CG, CK.G_OG, CK.G_M]] = (
        pt, pl, groups, cg, o // groups, n * oh * ow)
    geo[CK.G_NCHUNK] = 1
    return geo


def _share_out(geo: np.ndarray, idx: tuple[int, int, int], parallel: bool, items: int,
               per_thread: int) -> int:
    """Set how many threads (geo[idx[0]]) take how many units (geo[idx[1]]) of how many
    items each (geo[idx[2]]); returns the thread count (1: run the serial entry)."""
    nt = min(_threads(), items) if parallel else 1
    unit = max(1, -(-items // (nt * per_thread)))
    geo[list(idx)] = (nt, -(-items // unit), unit)
    return nt


@bind("Conv2D")
def _prepare_conv(
    attrs: Mapping[str, Any],
    in_types: Sequence[TensorType],
    out_types: Sequence[TensorType],
    consts: Sequence[np.ndarray | None],
) -> Prepared:
    x_t, w_t, y_t = in_types[0], in_types[1], out_types[0]
    geo = _conv_geometry(attrs, x_t.shape, w_t.shape, y_t.shape)
    kh, kw, cg, o = (int(d) for d in w_t.shape)
    n, c = int(geo[CK.G_N]), int(geo[CK.G_C])
    groups = int(geo[CK.G_GROUPS])
    m = int(geo[CK.G_M])
    code = activation_code(str(attrs["activation"]))
    alpha = float(attrs["alpha"])
    has_bias = len(in_types) == 3
    fma = m * kh * kw * cg * o
    w_const = consts[1]
    b_const = (_f32(consts[2]).reshape(-1) if has_bias and consts[2] is not None
               else None if has_bias else np.zeros(o, dtype=_F32))
    scratch: tuple[tuple[tuple[int, ...], str], ...] = ()

    if cg == 1 and groups > 1 and o > groups:  # depthwise with a channel multiplier (rare)
        rows = n * int(geo[CK.G_OH])
        geo[CK.G_NCHUNK] = min(_threads(), rows) if fma >= CONV_PAR_MIN_FMA else 1
        ref = ("CK.conv_depthwise_mult_par" if geo[CK.G_NCHUNK] > 1
               else "CK.conv_depthwise_mult_serial")

        def pack(w: np.ndarray) -> np.ndarray:
            return _f32(w).reshape(kh, kw, o)

        def args(x: np.ndarray, wp: np.ndarray, b: np.ndarray, y: np.ndarray,
                 scr: Arrays) -> tuple[Any, ...]:
            return x, wp, b, y, geo, code, alpha
    elif cg == 1 and groups > 1:  # depthwise
        threads = _share_out(geo, _CONV_SPLIT, fma >= CONV_PAR_MIN_FMA, m, _UNITS_PER_THREAD)
        ref = "CK.conv_depthwise_par" if threads > 1 else "CK.conv_depthwise_serial"
        taps = CK.patch_offsets(kh, kw, 1, int(geo[CK.G_DH]), int(geo[CK.G_DW]),
                                int(geo[CK.G_W]), c)
        scratch = (((_SCHED_LEN,), "int64"),)

        def pack(w: np.ndarray) -> np.ndarray:
            return _f32(w).reshape(kh * kw, o)

        def args(x: np.ndarray, wp: np.ndarray, b: np.ndarray, y: np.ndarray,
                 scr: Arrays) -> tuple[Any, ...]:
            return x, wp, taps, b, y, scr[0], geo, code, alpha
    elif _winograd_fits(attrs, w_t.shape, groups, code,
                        w_const is not None and b_const is not None):
        mr, nr = CK.tile_shape(o)
        wgeo = WG.winograd_geometry(
            (n, int(geo[CK.G_H]), int(geo[CK.G_W]), c), o,
            (int(geo[CK.G_OH]), int(geo[CK.G_OW])), (int(geo[CK.G_PT]), int(geo[CK.G_PL])),
            mr, nr)
        blocks = int(wgeo[WG.W_NBLOCKS])
        threads = min(_threads(), blocks) if fma >= CONV_PAR_MIN_FMA else 1
        wgeo[WG.W_NCHUNK] = threads
        scratch = WG.scratch_shapes(wgeo, threads)
        ref = f"WG.winograd_kernels({mr}, {nr})[{int(threads > 1)}]"

        def pack(w: np.ndarray) -> np.ndarray:
            return WG.transform_weight(w, nr)

        def args(x: np.ndarray, wp: np.ndarray, b: np.ndarray, y: np.ndarray,
                 scr: Arrays) -> tuple[Any, ...]:
            return x, wp, b, y, scr[0], scr[1], scr[2], scr[3], wgeo, code, alpha
    else:
        mr, nr = CK.tile_shape(o // groups)
        nblocks = -(-m // mr)
        geo[CK.G_NBLK] = nblocks
        ncols = groups * -(-(o // groups) // nr)
        # threads share out row blocks, or column blocks when those balance the threads
        # better (few pixels: deep layers at batch 1)
        split_cols = _imbalance(ncols, _threads()) < _imbalance(nblocks, _threads())
        geo[CK.G_SPLIT_COLS] = int(split_cols)
        threads = _share_out(geo, _CONV_SPLIT, fma >= CONV_PAR_MIN_FMA,
                             ncols if split_cols else nblocks,
                             1 if split_cols else _UNITS_PER_THREAD)
        kg = kh * kw * cg
        koff = CK.patch_offsets(kh, kw, cg, int(geo[CK.G_DH]), int(geo[CK.G_DW]),
                                int(geo[CK.G_W]), c)
        kid = np.arange(kg, dtype=np.int64)
        scratch = (((threads, mr, kg), "float32"), ((_SCHED_LEN,), "int64"))

        def pack(w: np.ndarray) -> np.ndarray:
            return CK.pack_weight(w, groups, nr)

        ref = f"CK.gemm_kernels({mr}, {nr})[{int(threads > 1)}]"

        def args(x: np.ndarray, wp: np.ndarray, b: np.ndarray, y: np.ndarray,
                 scr: Arrays) -> tuple[Any, ...]:
            return x, wp, koff, kid, b, y, scr[0], scr[1], geo, code, alpha

    if w_const is not None and b_const is not None:
        wp, b = pack(w_const), b_const
        step = native_prepared(
            Native(ref, lambda ins, outs, scr: args(ins[0], wp, b, outs[0], scr)), scratch)
        if _all_f32(in_types, out_types):
            return step
        return Prepared(_cast_wrapper(step.run, out_types), scratch)

    kernel = kernel_of(ref)

    def run(ins: Arrays, outs: Arrays, scr: Arrays) -> None:
        w = pack(w_const if w_const is not None else ins[1])
        b = b_const if b_const is not None else _f32(ins[2]).reshape(-1)
        kernel(*args(_f32(ins[0]), w, b, outs[0], scr))

    if not _all_f32(in_types, out_types):
        return Prepared(_cast_wrapper(run, out_types), scratch)
    return Prepared(run, scratch)


def dense_as_conv(rows: int, k: int, units: int, w: np.ndarray, b: np.ndarray, act: str,
                  alpha: float) -> Prepared:
    """A float32 Dense with constant weights as a 1x1 conv over ``rows`` pixels: the conv
    GEMM (as fast as BLAS at these sizes) in one kernel call, so it has a native form and
    joins a chain of conv steps (two GIL take-backs fewer per run than BLAS + epilogue)."""
    attrs = schema_for("Conv2D").resolve_attrs({"activation": act, "alpha": alpha}, "Dense")
    x4, y4 = (rows, 1, 1, k), (rows, 1, 1, units)
    conv = _prepare_conv(attrs, [TensorType("float32", x4), TensorType("float32", (1, 1, k, units)),
                                 TensorType("float32", (units,))],
                         [TensorType("float32", y4)],
                         [None, w.reshape(1, 1, k, units), b])
    assert conv.native is not None
    inner_run, inner_args = conv.run, conv.native.args

    def args(ins: Arrays, outs: Arrays, scr: Arrays) -> tuple[Any, ...]:
        return inner_args([ins[0].reshape(x4)], [outs[0].reshape(y4)], scr)

    def run(ins: Arrays, outs: Arrays, scr: Arrays) -> None:
        inner_run([ins[0].reshape(x4)], [outs[0].reshape(y4)], scr)

    return Prepared(run, conv.scratch, Native(conv.native.kernel, args))


# ----------------------------------------------------------------------------- pooling


def _pool_prepare(mode_of: Callable[[Mapping[str, Any]], int]) -> Any:
    def prepare(
        attrs: Mapping[str, Any],
        in_types: Sequence[TensorType],
        out_types: Sequence[TensorType],
        consts: Sequence[np.ndarray | None],
    ) -> Prepared:
        n, h, w, c = (int(d) for d in in_types[0].shape)
        _, oh, ow, _ = (int(d) for d in out_types[0].shape)
        kh, kw = (int(v) for v in attrs["pool_size"])
        sh, sw = (int(v) for v in attrs["strides"])
        pt, pb, pl, pr = (int(v) for v in attrs["pads"])
        dh, dw = (int(v) for v in attrs["dilations"])
        geo = np.zeros(PK.POOL_GEO_LEN, dtype=np.int64)
        geo[:12] = (n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl)
        geo[[PK.G_PB, PK.G_PR, PK.G_DH, PK.G_DW]] = (pb, pr, dh, dw)
        mode = mode_of(attrs)
        work = n * oh * ow * c * kh * kw
        threads = _share_out(geo, (PK.G_NCHUNK, PK.G_UNITS, PK.G_UNIT), work >= POOL_PAR_MIN,
                             n * oh, _UNITS_PER_THREAD)
        ref = "PK.pool2d_par" if threads > 1 else "PK.pool2d_serial"
        scratch = (((_SCHED_LEN,), "int64"),)

        def args(ins: Arrays, outs: Arrays, scr: Arrays) -> tuple[Any, ...]:
            return ins[0], outs[0], scr[0], geo, mode

        step = native_prepared(Native(ref, args), scratch)
        if not _all_f32(in_types, out_types):
            return Prepared(_cast_wrapper(step.run, out_types), scratch)
        return step

    return prepare


bind("MaxPool2D")(_pool_prepare(lambda a: PK.MODE_MAX))
bind("AvgPool2D")(_pool_prepare(
    lambda a: PK.MODE_AVG_PAD if a["count_include_pad"] else PK.MODE_AVG))


def _global_prepare(is_max: bool) -> Any:
    def prepare(
        attrs: Mapping[str, Any],
        in_types: Sequence[TensorType],
        out_types: Sequence[TensorType],
        consts: Sequence[np.ndarray | None],
    ) -> Prepared:
        n, h, w, c = (int(d) for d in in_types[0].shape)
        nchunks = min(_threads(), n) if n * h * w * c >= POOL_PAR_MIN else 1
        ref = "PK.global_pool_par" if nchunks > 1 else "PK.global_pool_serial"
        keepdims = bool(attrs["keepdims"])

        def args(ins: Arrays, outs: Arrays, scratch: Arrays) -> tuple[Any, ...]:
            y = outs[0].reshape(n, c) if keepdims else outs[0]
            return ins[0].reshape(n, h * w, c), y, is_max, nchunks

        step = native_prepared(Native(ref, args))
        if not _all_f32(in_types, out_types):
            return Prepared(_cast_wrapper(step.run, out_types))
        return step

    return prepare


bind("GlobalAvgPool2D")(_global_prepare(False))
bind("GlobalMaxPool2D")(_global_prepare(True))
