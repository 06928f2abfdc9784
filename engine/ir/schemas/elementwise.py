"""Elementwise ops: binary with numpy broadcasting, unary activations and math."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import DTypeError
from engine.ir.graph import TensorType
from engine.ir.schema import broadcast_shapes, normalize_axis, register

BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Minimum")
COMPARE = ("Equal", "Less", "Greater")
UNARY = ("Relu", "Relu6", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "Neg", "Abs",
         "Reciprocal", "Identity", "Floor", "Ceil")


def _binary(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x, y = ins
    return [TensorType(x.dtype, broadcast_shapes(x.shape, y.shape))]


def _compare(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x, y = ins
    return [TensorType("bool", broadcast_shapes(x.shape, y.shape))]


def _unary(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    return [ins[0]]


for _op in BINARY:
    register(_op, inputs=2, doc="broadcasting binary op")(_binary)
for _op in COMPARE:
    register(_op, inputs=2, doc="broadcasting comparison, bool output")(_compare)
for _op in UNARY:
    register(_op, inputs=1, doc="elementwise unary op")(_unary)
register("LeakyRelu", inputs=1, attrs={"alpha": 0.2})(_unary)
register("Gelu", inputs=1, attrs={"approximate": "none"}, doc="approximate: none | tanh")(_unary)
register("Clip", inputs=1, attrs={"min": None, "max": None})(_unary)


@register("Not", inputs=1)
def _not(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    if ins[0].dtype != "bool":
        raise DTypeError(f"Not needs a bool input, got {ins[0].dtype}")
    return [ins[0]]


@register("Where", inputs=3, doc="cond ? x : y with broadcasting")
def _where(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    c, x, y = ins
    return [TensorType(x.dtype, broadcast_shapes(c.shape, x.shape, y.shape))]


@register("Softmax", inputs=1, attrs={"axis": -1})
def _softmax(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    normalize_axis(a["axis"], ins[0].rank)
    return [ins[0]]


@register("Cast", inputs=1, attrs={"to": "float32"})
def _cast(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    return [TensorType(a["to"], ins[0].shape)]


# -- ops the ONNX importer needs beyond the Keras set (numpy-backed bindings) ----------------

for _op in ("LessEqual", "GreaterEqual"):
    register(_op, inputs=2, doc="broadcasting comparison, bool output")(_compare)
for _op in ("Sin", "Cos", "Sign"):
    register(_op, inputs=1, doc="elementwise unary op")(_unary)
register("Mod", inputs=2, attrs={"fmod": 0},
         doc="remainder; fmod=0: sign of the divisor (integers), 1: sign of the dividend")(_binary)


@register("LogSoftmax", inputs=1, attrs={"axis": -1})
def _log_softmax(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    normalize_axis(a["axis"], ins[0].rank)
    return [ins[0]]


def _logical(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    x, y = ins
    if x.dtype != "bool" or y.dtype != "bool":
        raise DTypeError(f"logical ops need bool inputs, got {x.dtype} and {y.dtype}")
    return [TensorType("bool", broadcast_shapes(x.shape, y.shape))]


for _op in ("And", "Or", "Xor"):
    register(_op, inputs=2, doc="broadcasting logical op on bool tensors")(_logical)


def _predicate(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
    return [TensorType("bool", ins[0].shape)]


register("IsNaN", inputs=1, doc="bool: x is NaN")(_predicate)
register("IsInf", inputs=1, attrs={"detect_negative": 1, "detect_positive": 1},
         doc="bool: x is +inf (detect_positive) or -inf (detect_negative)")(_predicate)
