"""Reference elementwise ops: float64 numpy/scipy, by the names the IR uses."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import erf

__all__ = ["unary", "binary", "where", "softmax", "cast", "log_softmax", "logical", "mod",
           "predicate", "trig"]


def unary(op: str, x: np.ndarray, **attrs: Any) -> np.ndarray:
    return np.asarray(_unary(op, np.asarray(x), **attrs))


def _unary(op: str, x: np.ndarray, **attrs: Any) -> Any:
    if x.dtype.kind == "f":
        x = x.astype(np.float64)
    if op == "Identity":
        return x.copy()
    if op == "Relu":
        return np.maximum(x, 0)
    if op == "Relu6":
        return np.minimum(np.maximum(x, 0), 6)
    if op == "LeakyRelu":
        return np.where(x > 0, x, attrs.get("alpha", 0.2) * x)
    if op == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if op == "Gelu":
        if attrs.get("approximate", "none") == "tanh":
            return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    if op == "Clip":
        lo, hi = attrs.get("min"), attrs.get("max")
        y = x
        if lo is not None:
            y = np.maximum(y, lo)
        if hi is not None:
            y = np.minimum(y, hi)
        return y
    funcs = {
        "Tanh": np.tanh, "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt, "Erf": erf,
        "Neg": np.negative, "Abs": np.abs, "Reciprocal": lambda v: 1.0 / v,
        "Floor": np.floor, "Ceil": np.ceil, "Not": np.logical_not,
    }
    return funcs[op](x)


def binary(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(_binary(op, np.asarray(a), np.asarray(b)))


def _binary(op: str, a: np.ndarray, b: np.ndarray) -> Any:
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        a, b = a.astype(np.float64), b.astype(np.float64)
    if op == "Div" and a.dtype.kind in "iu":
        return np.trunc(a / b).astype(a.dtype)  # C / ONNX integer division
    funcs = {
        "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
        "Pow": np.power, "Maximum": np.maximum, "Minimum": np.minimum,
        "Equal": np.equal, "Less": np.less, "Greater": np.greater,
    }
    return funcs[op](a, b)


def where(cond: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.asarray(np.where(np.asarray(cond, dtype=bool), x, y))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return np.asarray(e / np.sum(e, axis=axis, keepdims=True))


def cast(x: np.ndarray, to: str) -> np.ndarray:
    return np.asarray(x).astype(to)




def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    s = x - np.max(x, axis=axis, keepdims=True)
    return np.asarray(s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True)))


def logical(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    funcs = {"And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
             "LessEqual": np.less_equal, "GreaterEqual": np.greater_equal}
    return np.asarray(funcs[op](a, b))


def mod(a: np.ndarray, b: np.ndarray, fmod: int = 0) -> np.ndarray:
    """ONNX Mod: fmod=1 is C's fmod (dividend's sign), 0 Python's % (divisor's sign)."""
    return np.asarray(np.fmod(a, b) if fmod else np.mod(a, b))


def predicate(op: str, x: np.ndarray, detect_negative: int = 1,
              detect_positive: int = 1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if op == "IsNaN":
        return np.isnan(x)
    return np.asarray((np.isposinf(x) & bool(detect_positive))
                      | (np.isneginf(x) & bool(detect_negative)))


def trig(op: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.asarray({"Sin": np.sin, "Cos": np.cos, "Sign": np.sign}[op](x))
