"""Eight decimal digits at a time, for the JSON tensor decoder's numbers.

A float32 value printed as a double (``x.astype(np.float32).tolist()``, the usual client)
has 17 significant digits; parsed one digit at a time, each ``mant * 10 + d`` waits for the
previous one, and that chain was most of the decoder's time. ``eight_digits`` reads eight
bytes in one load, checks that all are digits and converts them with three multiplies
(the SWAR method of the fast_float library), so a 17-digit number costs two of them and one
digit.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

import engine  # noqa: F401 - sets numba's cache directory before anything compiles

__all__ = ["load8", "eight_digits"]

_LOW_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_PLUS_SIX = np.uint64(0x0606060606060606)
_ALL_THREES = np.uint64(0x3333333333333333)
_ZEROS = np.uint64(0x3030303030303030)
_TEN = np.uint64(10)
_MASK = np.uint64(0x000000FF000000FF)
_MUL1 = np.uint64(100 + (1000000 << 32))
_MUL2 = np.uint64(1 + (10000 << 32))
_S4 = np.uint64(4)
_S8 = np.uint64(8)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
_U32 = np.uint64(0xFFFFFFFF)


@intrinsic
def load8(typingctx: Any, buf: Any, i: Any) -> Any:
    """The little-endian uint64 of ``buf[i:i+8]`` (a uint8 array; unaligned, unchecked:
    the caller keeps ``i + 8 <= len(buf)``)."""
    if not (isinstance(buf, types.Array) and buf.dtype == types.uint8
            and isinstance(i, types.Integer)):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        at = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(ary.data, [at]), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    return types.uint64(buf, i), codegen


@numba.njit(cache=True, nogil=True)
def eight_digits(v: np.uint64) -> Any:
    """The value of eight ASCII digits packed little-endian in ``v``, or -1 when any of
    the eight bytes is not a digit."""
    if ((v & _LOW_NIBBLES) | (((v + _PLUS_SIX) & _LOW_NIBBLES) >> _S4)) != _ALL_THREES:
        return -1
    v = v - _ZEROS
    v = v * _TEN + (v >> _S8)
    v = ((v & _MASK) * _MUL1 + ((v >> _S16) & _MASK) * _MUL2) >> _S32
    return np.int64(v & _U32)
