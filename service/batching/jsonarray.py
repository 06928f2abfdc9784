"""The JSON tensor decoder's array parser: a rectangular array of JSON numbers straight into
a flat float64 / int64 buffer (``parse_array``), with fraction digits read eight at a time.

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

__all__ = ["MAX_DIMS", "load8", "eight_digits", "parse_array"]

MAX_DIMS = 8
_I64_MAX = 2**63 - 1
_POW10 = np.array([10.0**i for i in range(23)])

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


@numba.njit(cache=True, nogil=True)
def parse_array(buf: np.ndarray, i: int, n: int, fout: np.ndarray, iout: np.ndarray,
                off: int, meta: np.ndarray) -> int:
    """The rectangular array of JSON numbers at ``buf[i]`` ('['): values into
    ``fout[off:]`` (float64) or, while every number is an integer, ``iout[off:]`` (an int64
    view of the same memory). ``meta`` = [offset, count, all integers, exact, ndim,
    dims...]. Returns the index after the closing ']', or -1 (not such an array)."""
    depth = 0
    ndim = -1
    count = 0
    is_int = True
    exact = True
    expect = True  # a value is expected (also right after '[': empty arrays fail)
    counts = np.zeros(MAX_DIMS + 1, np.int64)
    shape = np.full(MAX_DIMS + 1, -1, np.int64)
    cap = fout.shape[0] - off
    while i < n:
        c = buf[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        elif c == 45 or (48 <= c <= 57):
            if not expect or depth == 0:
                return -1
            if ndim == -1:
                ndim = depth
            elif depth != ndim:
                return -1
            neg = c == 45
            if neg:
                i += 1
                if i >= n or not (48 <= buf[i] <= 57):
                    return -1
            mant = 0
            digits = 0  # significant digits in mant (at most 19: int64)
            dropped = 0
            full = False  # a digit did not fit: mant takes no more
            if buf[i] == 48:  # 0 | [1-9][0-9]*
                i += 1
                if i < n and np.uint32(buf[i]) - np.uint32(48) < 10:
                    return -1
            else:
                d = np.uint32(buf[i]) - np.uint32(48)
                # the body ends with a non-digit (checked by scan): no bounds checks
                while d < 10 and digits < 18:  # < 10**18: fits
                    mant = mant * 10 + int(d)
                    digits += 1
                    i += 1
                    d = np.uint32(buf[i]) - np.uint32(48)
                while d < 10:
                    if not full and mant <= (_I64_MAX - int(d)) // 10:
                        mant = mant * 10 + int(d)
                        digits += 1
                    else:
                        full = True
                        dropped += 1
                    i += 1
                    d = np.uint32(buf[i]) - np.uint32(48)
            exp10 = dropped
            integer = True
            if buf[i] == 46:  # fraction
                integer = False
                i += 1
                d = np.uint32(buf[i]) - np.uint32(48)
                if d >= 10:
                    return -1
                if mant == 0:  # leading zeros of 0.000123 are not significant
                    while d == 0:
                        exp10 -= 1
                        i += 1
                        d = np.uint32(buf[i]) - np.uint32(48)
                # eight digits at a time while mant surely stays below 10**18
                while digits <= 10 and i + 8 <= n:
                    eight = eight_digits(load8(buf, i))  # type: ignore[call-arg]
                    if eight < 0:
                        break
                    mant = mant * 100000000 + eight
                    digits += 8
                    exp10 -= 8
                    i += 8
                d = np.uint32(buf[i]) - np.uint32(48)
                while d < 10 and digits < 18:
                    mant = mant * 10 + int(d)
                    digits += 1
                    exp10 -= 1
                    i += 1
                    d = np.uint32(buf[i]) - np.uint32(48)
                while d < 10:
                    if not full and mant <= (_I64_MAX - int(d)) // 10:
                        mant = mant * 10 + int(d)
                        digits += 1
                        exp10 -= 1
                    else:
                        full = True
                    i += 1
                    d = np.uint32(buf[i]) - np.uint32(48)
            if i < n and (buf[i] == 101 or buf[i] == 69):  # exponent
                integer = False
                i += 1
                eneg = False
                if i < n and (buf[i] == 43 or buf[i] == 45):
                    eneg = buf[i] == 45
                    i += 1
                if i >= n or not (48 <= buf[i] <= 57):
                    return -1
                e = 0
                while i < n and 48 <= buf[i] <= 57:
                    if e < 100000:
                        e = e * 10 + (buf[i] - 48)
                    i += 1
                exp10 += -e if eneg else e
            if (integer and dropped > 0) or exp10 > 300 or exp10 < -300 or count >= cap:
                return -1  # beyond int64 / far out of range: orjson decides
            if integer and is_int:
                iout[off + count] = -mant if neg else mant
            else:
                if is_int:  # the first non-integer: the integers so far become floats
                    is_int = False
                    for k in range(off, off + count):
                        fout[k] = float(iout[k])
                if digits > 15 or exp10 > 22 or exp10 < -22:
                    exact = False
                v = float(mant)
                if exp10 > 0:
                    v = v * (_POW10[exp10] if exp10 <= 22 else 10.0**exp10)
                elif exp10 < 0:
                    v = v / (_POW10[-exp10] if exp10 >= -22 else 10.0 ** (-exp10))
                fout[off + count] = -v if neg else v
            count += 1
            counts[depth] += 1
            expect = False
        elif c == 44:  # ,
            if expect:
                return -1
            expect = True
            i += 1
        elif c == 91:  # [
            if not expect or depth == MAX_DIMS or (ndim != -1 and depth >= ndim):
                return -1
            depth += 1
            counts[depth] = 0
            i += 1
        elif c == 93:  # ]
            if expect:
                return -1  # empty array, or a trailing comma
            if shape[depth] == -1:
                shape[depth] = counts[depth]
            elif shape[depth] != counts[depth]:
                return -1  # ragged
            depth -= 1
            i += 1
            if depth == 0:
                meta[0] = off
                meta[1] = count
                meta[2] = 1 if is_int else 0
                meta[3] = 1 if exact else 0
                meta[4] = ndim
                for k in range(1, ndim + 1):
                    meta[4 + k] = shape[k]
                return i
            counts[depth] += 1
            expect = False
        else:
            return -1  # strings, booleans, null, objects: orjson's job
    return -1
