"""The int32 register tile of the int8 GEMM (``engine.kernels.quant_conv``).

Explicit vector IR, as the float tile (``engine.kernels.conv``): an ``MR x NR`` int32 tile
on the stack, touched only through these intrinsics at constant offsets, so LLVM keeps it in
registers. One ``pmaddwd`` multiplies a broadcast int16 pixel pair by ``NR`` channels' int8
weight pairs (sign-extended as they are loaded) and sums each pair into an int32 lane.
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "LANES",
    "TILE_ROWS",
    "qtile_shape",
    "istack",
    "izero",
    "imadd",
    "icopy",
    "ld_pair",
]

_FEATURES = llvm.get_host_cpu_features()
_AVX512BW = bool(_FEATURES.get("avx512bw", False))
_AVX2 = bool(_FEATURES.get("avx2", False))
# int32 accumulator lanes per vector register, and MR for 1..4 vectors per tile row (as the
# float tile: accumulators + MR broadcasts + the weight vectors fit the register file)
LANES = 16 if _AVX512BW else 8
TILE_ROWS = (12, 6, 6, 6) if _AVX512BW else (6, 4, 3, 2)

_IVEC = ir.VectorType(ir.IntType(32), LANES)
_HVEC = ir.VectorType(ir.IntType(16), 2 * LANES)
_BVEC = ir.VectorType(ir.IntType(8), 2 * LANES)
_WVEC = ir.VectorType(ir.IntType(32), 2 * LANES)


def qtile_shape(cols: int, rows: int) -> tuple[int, int]:
    """(MR, NR) for ``cols`` output channels per group and ``rows`` output pixels: few rows
    (a QDense at batch 1) take a shorter tile instead of computing repeated rows."""
    nv = min(len(TILE_ROWS), max(1, -(-cols // LANES)))
    full = TILE_ROWS[nv - 1]
    mr = min(c for c in sorted({1, 2, 4, full}) if c >= min(rows, full))
    return mr, nv * LANES


def _nvec(nr: Any) -> int:
    if not isinstance(nr, types.IntegerLiteral) or nr.literal_value % LANES:
        return 0
    return int(nr.literal_value) // LANES


def _ivec_at(builder: Any, base: Any, offset: Any) -> Any:
    return builder.bitcast(builder.gep(base, [offset]), _IVEC.as_pointer())


def _madd(builder: Any, xv: Any, wv: Any) -> Any:
    """pmaddwd: lane i = x[2i] * w[2i] + x[2i+1] * w[2i+1], both <2L x i16>."""
    if _AVX512BW or _AVX2:
        name = "llvm.x86.avx512.pmaddw.d.512" if _AVX512BW else "llvm.x86.avx2.pmadd.wd"
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(_IVEC, [_HVEC, _HVEC]), name)
        return builder.call(fn, [xv, wv])
    prod = builder.mul(builder.sext(xv, _WVEC), builder.sext(wv, _WVEC))
    even = ir.Constant(ir.VectorType(ir.IntType(32), LANES), list(range(0, 2 * LANES, 2)))
    odd = ir.Constant(ir.VectorType(ir.IntType(32), LANES), list(range(1, 2 * LANES, 2)))
    undef = ir.Constant(_WVEC, None)
    return builder.add(builder.shuffle_vector(prod, undef, even),
                       builder.shuffle_vector(prod, undef, odd))


@intrinsic
def istack(typingctx: Any, mr: Any, nr: Any) -> Any:
    """An int32[mr * nr] on the stack; with literal sizes LLVM keeps it in registers."""
    if not isinstance(mr, types.IntegerLiteral) or not isinstance(nr, types.IntegerLiteral):
        return None
    size = mr.literal_value * nr.literal_value

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        n = context.get_constant(types.intp, size)
        return cgutils.alloca_once(builder, ir.IntType(32), size=n)

    return types.CPointer(types.int32)(mr, nr), codegen


@intrinsic
def izero(typingctx: Any, acc: Any, off: Any, nr: Any) -> Any:
    """acc[off:off+nr] = 0."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        for v in range(nv):
            at = builder.add(args[1], ir.Constant(args[1].type, v * LANES))
            builder.store(ir.Constant(_IVEC, None), _ivec_at(builder, args[0], at), align=4)
        return context.get_dummy_value()

    return types.none(acc, off, nr), codegen


@intrinsic
def imadd(typingctx: Any, acc: Any, off: Any, wp: Any, k2: Any, xpair: Any, nr: Any) -> Any:
    """acc[off:off+nr] += pmaddwd(splat(xpair), int16(wp[k2, :2*nr])); wp C-contiguous 2-D
    int8, xpair an int32 holding two int16."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, offset, wary, krow, xp = args[:5]
        arr = context.make_array(sig.args[2])(context, builder, wary)
        ncols = cgutils.unpack_tuple(builder, arr.shape, 2)[1]
        wrow = builder.gep(arr.data, [builder.mul(krow, ncols)])
        x32 = context.cast(builder, xp, sig.args[4], types.int32)
        vec = builder.insert_element(ir.Constant(_IVEC, None), x32, ir.Constant(ir.IntType(32), 0))
        lanes = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        xv = builder.bitcast(builder.shuffle_vector(vec, ir.Constant(_IVEC, None), lanes), _HVEC)
        for v in range(nv):
            at = _ivec_at(builder, ptr, builder.add(offset, ir.Constant(offset.type, v * LANES)))
            wb = builder.gep(wrow, [ir.Constant(ir.IntType(64), v * 2 * LANES)])
            wv = builder.sext(builder.load(builder.bitcast(wb, _BVEC.as_pointer()), align=1),
                              _HVEC)
            builder.store(builder.add(builder.load(at, align=4), _madd(builder, xv, wv)), at,
                          align=4)
        return context.get_dummy_value()

    return types.none(acc, off, wp, k2, xpair, nr), codegen


@intrinsic
def icopy(typingctx: Any, acc: Any, off: Any, dst: Any, nr: Any) -> Any:
    """dst[off:off+nr] = acc[off:off+nr] (stack tiles)."""
    nv = _nvec(nr)
    if not nv:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        for v in range(nv):
            at = builder.add(args[1], ir.Constant(args[1].type, v * LANES))
            val = builder.load(_ivec_at(builder, args[0], at), align=4)
            builder.store(val, _ivec_at(builder, args[2], at), align=4)
        return context.get_dummy_value()

    return types.none(acc, off, dst, nr), codegen


@intrinsic
def ld_pair(typingctx: Any, ary: Any, idx: Any) -> Any:
    """The int32 word at int16 element ``idx`` (>= 0) of a 1-D int16 array (two int16)."""
    if not isinstance(ary, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        ptr = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(32).as_pointer())
        return builder.load(ptr, align=2)

    return types.int32(ary, idx), codegen
