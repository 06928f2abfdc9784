"""Elementwise kernels: unary math, broadcasting binary ops, softmax; float32 throughout.

Ops are small integer codes so one compiled kernel serves a whole family; the branch on the
code sits outside the inner loops so each loop vectorizes.

Transcendentals use the polynomial ``exp_f32``/``tanh_f32``/``erf_f32`` below instead of
``math.exp``/``math.tanh``/``math.erf``: numba calls libm one element at a time for those
(tanh ~16 ns, erf ~10 ns per element here), while these inline into the loop and vectorize
(~0.5-0.8 ns), within ~2 float32 ulp (erf: 2e-7 absolute). Every kernel uses
``error_model="numpy"``: numba's default Python model guards each division with a
ZeroDivisionError branch, which stops vectorization.

Each kernel has a serial entry (``*_serial``) and a ``prange`` one (``*_par``) over a shared
span function; the binding picks by size once, since waking numba's threads costs 2-4 us.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from engine.kernels._jit import jit, pjit

__all__ = [
    "UNARY_CODES",
    "BINARY_CODES",
    "exp_f32",
    "tanh_f32",
    "erf_f32",
    "sigmoid_f32",
    "gelu_f32",
    "gelu_tanh_f32",
    "unary_serial",
    "unary_par",
    "binary_serial",
    "binary_par",
    "softmax_rows_serial",
    "softmax_rows_par",
    "softmax_strided",
]

UNARY_CODES = {
    "Identity": 0,
    "Relu": 1,
    "Relu6": 2,
    "Sigmoid": 3,
    "Tanh": 4,
    "Exp": 5,
    "Log": 6,
    "Sqrt": 7,
    "Erf": 8,
    "Neg": 9,
    "Abs": 10,
    "Reciprocal": 11,
    "Floor": 12,
    "Ceil": 13,
    "LeakyRelu": 14,  # p0 = alpha
    "Gelu": 15,
    "GeluTanh": 16,
    "Clip": 17,  # p0 = min, p1 = max (use -inf/inf for "unbounded")
    "Square": 18,  # Pow(x, 2) rewritten at prepare time
}
BINARY_CODES = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Pow": 4, "Maximum": 5, "Minimum": 6}

_F = np.float32
_ZERO = _F(0.0)
_HALF = _F(0.5)
_ONE = _F(1.0)
_TWO = _F(2.0)
_SIX = _F(6.0)
_INF = _F(np.inf)


_Fn = TypeVar("_Fn", bound=Callable[..., Any])
# "contract" only lets LLVM fuse a*b+c into one FMA (fewer ops, one rounding); it assumes
# nothing about NaN or inf, unlike numba's fastmath=True.
_FM = frozenset({"contract"})


def _sjit(fn: _Fn) -> _Fn:
    """Helper inlined into every caller at numba-IR level (no call, no boxing per row)."""
    return jit(inline="always", error_model="numpy", fastmath=set(_FM))(fn)


def _kjit(fn: _Fn) -> _Fn:
    return jit(error_model="numpy", fastmath=set(_FM))(fn)


def _pkjit(fn: _Fn) -> _Fn:
    return pjit(error_model="numpy", fastmath=set(_FM))(fn)


def _fastjit(*flags: str) -> Callable[[_Fn], _Fn]:
    """Serial kernel with more LLVM fast-math flags (named, never nnan/ninf by default)."""

    def deco(fn: _Fn) -> _Fn:
        return jit(error_model="numpy", fastmath=set(_FM) | set(flags))(fn)

    return deco


@intrinsic
def _bits_to_f32(typingctx: Any, v: Any) -> Any:
    """Reinterpret an int32's bits as a float32 (builds 2**n without a libm call)."""
    sig = types.float32(types.int32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _f32_to_bits(typingctx: Any, v: Any) -> Any:
    """Reinterpret a float32's bits as an int32."""
    sig = types.int32(types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


# exp: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, Cephes expf polynomial for e^r.
_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693359375)
_LN2_LO = _F(-2.12194440e-4)
_EXP_OVER = _F(88.72283)  # above: inf
_EXP_UNDER = _F(-87.33654)  # below: 0 (true value is denormal)
_EP0 = _F(1.9875691500e-4)
_EP1 = _F(1.3981999507e-3)
_EP2 = _F(8.3334519073e-3)
_EP3 = _F(4.1665795894e-2)
_EP4 = _F(1.6666665459e-1)
_EP5 = _F(5.0000001201e-1)
_I1 = np.int32(1)
_I23 = np.int32(23)
_I127 = np.int32(127)


@_sjit
def exp_f32(x: Any) -> Any:
    xc = min(max(x, _EXP_UNDER), _EXP_OVER)
    n = np.floor(xc * _LOG2E + _HALF)
    r = xc - n * _LN2_HI - n * _LN2_LO
    p = _EP0
    p = p * r + _EP1
    p = p * r + _EP2
    p = p * r + _EP3
    p = p * r + _EP4
    p = p * r + _EP5
    y = p * r * r + r + _ONE
    # 2**n as two factors so n in [-126, 128] never leaves the normal exponent range
    ni = np.int32(n)
    n1 = ni >> _I1
    n2 = ni - n1
    y = y * _bits_to_f32((n1 + _I127) << _I23)  # type: ignore[call-arg]
    y = y * _bits_to_f32((n2 + _I127) << _I23)
    if x > _EXP_OVER:
        y = _INF
    if x < _EXP_UNDER:
        y = _ZERO
    if x != x:
        y = x
    return y


# tanh: Cephes tanhf; odd polynomial below 0.625, 1 - 2 / (e^2|x| + 1) above.
_TP0 = _F(-5.70498872745e-3)
_TP1 = _F(2.06390887954e-2)
_TP2 = _F(-5.37397155531e-2)
_TP3 = _F(1.33314422036e-1)
_TP4 = _F(-3.33332819422e-1)
_T_SMALL = _F(0.625)


@_sjit
def tanh_f32(x: Any) -> Any:
    ax = abs(x)
    big = math.copysign(_ONE - _TWO / (exp_f32(_TWO * ax) + _ONE), x)
    z = x * x
    p = _TP0
    p = p * z + _TP1
    p = p * z + _TP2
    p = p * z + _TP3
    p = p * z + _TP4
    small = p * z * x + x
    return small if ax < _T_SMALL else big


# erf: Cephes erff polynomial below 1; Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) above.
_EF0 = _F(7.853861353153693e-5)
_EF1 = _F(-8.010193625184903e-4)
_EF2 = _F(5.188327685732524e-3)
_EF3 = _F(-2.685381193529856e-2)
_EF4 = _F(1.128358514861418e-1)
_EF5 = _F(-3.761262582423300e-1)
_EF6 = _F(1.128379165726710)
_AS_P = _F(0.3275911)
_AS1 = _F(0.254829592)
_AS2 = _F(-0.284496736)
_AS3 = _F(1.421413741)
_AS4 = _F(-1.453152027)
_AS5 = _F(1.061405429)


@_sjit
def erf_f32(x: Any) -> Any:
    ax = abs(x)
    z = x * x
    p = _EF0
    p = p * z + _EF1
    p = p * z + _EF2
    p = p * z + _EF3
    p = p * z + _EF4
    p = p * z + _EF5
    p = p * z + _EF6
    small = x * p
    t = _ONE / (_ONE + _AS_P * ax)
    q = _AS5
    q = q * t + _AS4
    q = q * t + _AS3
    q = q * t + _AS2
    q = q * t + _AS1
    big = math.copysign(_ONE - q * t * exp_f32(-z), x)
    return small if ax < _ONE else big


@_sjit
def sigmoid_f32(x: Any) -> Any:
    return _ONE / (_ONE + exp_f32(-x))


_SQRT_HALF = _F(0.7071067811865476)
_SQRT_2_OVER_PI = _F(0.7978845608028654)
_GELU_C = _F(0.044715)


@_sjit
def gelu_f32(x: Any) -> Any:
    return _HALF * x * (_ONE + erf_f32(x * _SQRT_HALF))


@_sjit
def gelu_tanh_f32(x: Any) -> Any:
    return _HALF * x * (_ONE + tanh_f32(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)))


# ----------------------------------------------------------------------------- unary

# prange work unit: numba's static schedule hands each thread a contiguous run of chunks;
# 8192 elements keep chunk boundaries on cache lines and the per-chunk overhead negligible.
_CHUNK = 8192


@_kjit
def _unary_span(x: np.ndarray, out: np.ndarray, op: int, p0: float, p1: float) -> None:
    """out = op(x) on equal-length 1-D float32 views."""
    n = x.shape[0]
    if op == 0:
        for i in range(n):
            out[i] = x[i]
    elif op == 1:
        for i in range(n):
            v = x[i]
            out[i] = v if v > _ZERO else _ZERO
    elif op == 2:
        for i in range(n):
            out[i] = min(max(x[i], _ZERO), _SIX)
    elif op == 3:
        for i in range(n):
            out[i] = sigmoid_f32(x[i])
    elif op == 4:
        for i in range(n):
            out[i] = tanh_f32(x[i])
    elif op == 5:
        for i in range(n):
            out[i] = exp_f32(x[i])
    elif op == 6:
        for i in range(n):
            out[i] = math.log(x[i])
    elif op == 7:
        for i in range(n):
            out[i] = math.sqrt(x[i])
    elif op == 8:
        for i in range(n):
            out[i] = erf_f32(x[i])
    elif op == 9:
        for i in range(n):
            out[i] = -x[i]
    elif op == 10:
        for i in range(n):
            out[i] = abs(x[i])
    elif op == 11:
        for i in range(n):
            out[i] = _ONE / x[i]
    elif op == 12:
        for i in range(n):
            out[i] = np.floor(x[i])
    elif op == 13:
        for i in range(n):
            out[i] = np.ceil(x[i])
    elif op == 14:
        a = np.float32(p0)
        for i in range(n):
            v = x[i]
            out[i] = v if v > _ZERO else a * v
    elif op == 15:
        for i in range(n):
            out[i] = gelu_f32(x[i])
    elif op == 16:
        for i in range(n):
            out[i] = gelu_tanh_f32(x[i])
    elif op == 17:
        lo = np.float32(p0)
        hi = np.float32(p1)
        for i in range(n):
            out[i] = min(max(x[i], lo), hi)
    else:
        for i in range(n):
            v = x[i]
            out[i] = v * v


@_kjit
def unary_serial(x: np.ndarray, out: np.ndarray, op: int, p0: float, p1: float) -> None:
    """out = op(x) over flat float32 arrays of one length."""
    _unary_span(x, out, op, p0, p1)


@_pkjit
def unary_par(x: np.ndarray, out: np.ndarray, op: int, p0: float, p1: float) -> None:
    n = x.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        s = c * _CHUNK
        e = min(n, s + _CHUNK)
        _unary_span(x[s:e], out[s:e], op, p0, p1)


# ----------------------------------------------------------------------------- binary


@_sjit
def _binary_vv(x: np.ndarray, y: np.ndarray, out: np.ndarray, op: int) -> None:
    n = out.shape[0]
    if op == 0:
        for i in range(n):
            out[i] = x[i] + y[i]
    elif op == 1:
        for i in range(n):
            out[i] = x[i] - y[i]
    elif op == 2:
        for i in range(n):
            out[i] = x[i] * y[i]
    elif op == 3:
        for i in range(n):
            out[i] = x[i] / y[i]
    elif op == 4:
        for i in range(n):
            out[i] = x[i] ** y[i]
    elif op == 5:
        for i in range(n):
            out[i] = max(x[i], y[i])
    else:
        for i in range(n):
            out[i] = min(x[i], y[i])


@_sjit
def _binary_vs(x: np.ndarray, y: Any, out: np.ndarray, op: int) -> None:
    n = out.shape[0]
    if op == 0:
        for i in range(n):
            out[i] = x[i] + y
    elif op == 1:
        for i in range(n):
            out[i] = x[i] - y
    elif op == 2:
        for i in range(n):
            out[i] = x[i] * y
    elif op == 3:
        for i in range(n):
            out[i] = x[i] / y
    elif op == 4:
        for i in range(n):
            out[i] = x[i] ** y
    elif op == 5:
        for i in range(n):
            out[i] = max(x[i], y)
    else:
        for i in range(n):
            out[i] = min(x[i], y)


@_sjit
def _binary_sv(x: Any, y: np.ndarray, out: np.ndarray, op: int) -> None:
    n = out.shape[0]
    if op == 0:
        for i in range(n):
            out[i] = x + y[i]
    elif op == 1:
        for i in range(n):
            out[i] = x - y[i]
    elif op == 2:
        for i in range(n):
            out[i] = x * y[i]
    elif op == 3:
        for i in range(n):
            out[i] = x / y[i]
    elif op == 4:
        for i in range(n):
            out[i] = x ** y[i]
    elif op == 5:
        for i in range(n):
            out[i] = max(x, y[i])
    else:
        for i in range(n):
            out[i] = min(x, y[i])


@_sjit
def _binary_ss(x: Any, y: Any, op: int) -> Any:
    if op == 0:
        return x + y
    if op == 1:
        return x - y
    if op == 2:
        return x * y
    if op == 3:
        return x / y
    if op == 4:
        return x**y
    if op == 5:
        return max(x, y)
    return min(x, y)


# Rows shorter than this (e.g. an RGB channel axis) go element by element with running offsets:
# slicing and dispatching per row would cost more than the row itself.
_SHORT_ROW = 16


@_kjit
def _binary_span_short(
    a: np.ndarray, b: np.ndarray, out: np.ndarray,
    d1: int, d2: int, a0: int, a1: int, a2: int, b0: int, b1: int, b2: int,
    op: int, start: int, stop: int,
) -> None:
    row = start // d2
    k = start - row * d2
    i = row // d1
    j = row - i * d1
    ao = i * a0 + j * a1 + k * a2
    bo = i * b0 + j * b1 + k * b2
    for p in range(start, stop):
        out[p] = _binary_ss(a[ao], b[bo], op)
        k += 1
        ao += a2
        bo += b2
        if k == d2:
            k = 0
            j += 1
            if j == d1:
                j = 0
                i += 1
            ao = i * a0 + j * a1
            bo = i * b0 + j * b1


@_kjit
def _binary_span(
    a: np.ndarray, b: np.ndarray, out: np.ndarray,
    d1: int, d2: int, a0: int, a1: int, a2: int, b0: int, b1: int, b2: int,
    op: int, start: int, stop: int,
) -> None:
    """Output elements [start, stop) of out viewed as (d0, d1, d2).

    Operand element (i, j, k) sits at i*a0 + j*a1 + k*a2 (a2 is 1, or 0 when broadcast).
    """
    if d2 < _SHORT_ROW:
        _binary_span_short(a, b, out, d1, d2, a0, a1, a2, b0, b1, b2, op, start, stop)
        return
    row = start // d2
    col = start - row * d2
    i = row // d1
    j = row - i * d1
    p = start
    while p < stop:
        n = min(d2 - col, stop - p)
        ao = i * a0 + j * a1 + col * a2
        bo = i * b0 + j * b1 + col * b2
        o = out[p:p + n]
        if a2 == 1 and b2 == 1:
            _binary_vv(a[ao:ao + n], b[bo:bo + n], o, op)
        elif a2 == 1:
            _binary_vs(a[ao:ao + n], b[bo], o, op)
        elif b2 == 1:
            _binary_sv(a[ao], b[bo:bo + n], o, op)
        else:
            o[:] = _binary_ss(a[ao], b[bo], op)
        p += n
        col = 0
        j += 1
        if j == d1:
            j = 0
            i += 1


@_kjit
def binary_serial(
    a: np.ndarray, b: np.ndarray, out: np.ndarray,
    d1: int, d2: int, a0: int, a1: int, a2: int, b0: int, b1: int, b2: int, op: int,
) -> None:
    """out = op(a, b) with broadcasting described by (d1, d2) and element strides."""
    _binary_span(a, b, out, d1, d2, a0, a1, a2, b0, b1, b2, op, 0, out.shape[0])


@_pkjit
def binary_par(
    a: np.ndarray, b: np.ndarray, out: np.ndarray,
    d1: int, d2: int, a0: int, a1: int, a2: int, b0: int, b1: int, b2: int, op: int,
) -> None:
    n = out.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        s = c * _CHUNK
        e = min(n, s + _CHUNK)
        _binary_span(a, b, out, d1, d2, a0, a1, a2, b0, b1, b2, op, s, e)


# ----------------------------------------------------------------------------- softmax


_I31 = np.int32(31)
_MANTISSA_EXP = np.int32(0x7FFFFFFF)
_IMIN = np.int32(-(2**31))


@_kjit
def _row_max(x: np.ndarray) -> Any:
    """Max of a float32 row as a max over int32 keys that order like the floats.

    LLVM only vectorizes a float max reduction when the select carries nnan/nsz flags, which
    numba never sets; integer max reductions always vectorize (~2.5x faster here). Flipping
    the non-sign bits of negative floats makes the bit patterns order like the values (+NaN
    sorts above +inf, so a NaN row still yields a NaN softmax).
    """
    m = _IMIN
    for i in range(x.shape[0]):
        b = _f32_to_bits(x[i])  # type: ignore[call-arg, var-annotated]
        k = b ^ ((b >> _I31) & _MANTISSA_EXP)
        m = k if k > m else m
    return _bits_to_f32(m ^ ((m >> _I31) & _MANTISSA_EXP))  # type: ignore[call-arg]


@_fastjit("reassoc", "nsz")
def _row_sum(x: np.ndarray) -> Any:
    s = _ZERO
    for i in range(x.shape[0]):
        s += x[i]
    return s


@_kjit
def _softmax_row(x: np.ndarray, out: np.ndarray) -> None:
    n = x.shape[0]
    m = _row_max(x)
    for i in range(n):
        out[i] = exp_f32(x[i] - m)
    inv = _ONE / _row_sum(out)
    for i in range(n):
        out[i] *= inv


@_kjit
def softmax_rows_serial(x: np.ndarray, out: np.ndarray) -> None:
    """Softmax over the last axis of C-contiguous (rows, n) float32 arrays."""
    for r in range(x.shape[0]):
        _softmax_row(x[r], out[r])


@_pkjit
def softmax_rows_par(x: np.ndarray, out: np.ndarray) -> None:
    for r in prange(x.shape[0]):
        _softmax_row(x[r], out[r])


_SOFTMAX_BLOCK = 256


@_pkjit
def softmax_strided(x: np.ndarray, out: np.ndarray) -> None:
    """Softmax over axis 1 of C-contiguous (outer, n, inner) arrays, vectorized along inner."""
    outer, n, inner = x.shape
    nblk = (inner + _SOFTMAX_BLOCK - 1) // _SOFTMAX_BLOCK
    for t in prange(outer * nblk):
        o = t // nblk
        j0 = (t - o * nblk) * _SOFTMAX_BLOCK
        j1 = min(inner, j0 + _SOFTMAX_BLOCK)
        w = j1 - j0
        xs = x[o, :, j0:j1]
        os = out[o, :, j0:j1]
        acc = np.empty(w, dtype=np.float32)
        acc[:] = -_INF
        for k in range(n):
            for j in range(w):
                acc[j] = max(acc[j], xs[k, j])
        for k in range(n):
            for j in range(w):
                os[k, j] = exp_f32(xs[k, j] - acc[j])
        acc[:] = _ZERO
        for k in range(n):
            for j in range(w):
                acc[j] += os[k, j]
        for j in range(w):
            acc[j] = _ONE / acc[j]
        for k in range(n):
            for j in range(w):
                os[k, j] *= acc[j]
