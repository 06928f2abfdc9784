"""The op table's schema half: arity, attributes with defaults, and shape inference.

Each op family registers its schemas in ``engine/ir/schemas/<family>.py``. The
kernel half of the table lives in ``engine/executor/bindings``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import ShapeError, UnsupportedOpError
from engine.ir.graph import Dim, Shape, TensorType

__all__ = [
    "REQUIRED",
    "OpSchema",
    "SCHEMAS",
    "register",
    "schema_for",
    "broadcast_shapes",
    "normalize_axis",
    "InferFn",
]

InferFn = Callable[[Sequence[TensorType], Mapping[str, Any]], list[TensorType]]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class OpSchema:
    name: str
    min_inputs: int
    max_inputs: int  # -1: variadic
    attrs: Mapping[str, Any]  # name -> default (REQUIRED if none)
    infer: InferFn
    num_outputs: int = 1
    doc: str = ""

    def resolve_attrs(self, attrs: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Attributes with defaults filled in; unknown or missing ones are errors."""
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise UnsupportedOpError(f"{where}: op {self.name} has no attribute(s) {unknown}")
        out = {}
        for key, default in self.attrs.items():
            if key in attrs:
                out[key] = attrs[key]
            elif default is REQUIRED:
                raise UnsupportedOpError(f"{where}: op {self.name} needs attribute {key!r}")
            else:
                out[key] = default
        return out


SCHEMAS: dict[str, OpSchema] = {}


def register(
    name: str,
    *,
    inputs: int | tuple[int, int],
    attrs: Mapping[str, Any] | None = None,
    outputs: int = 1,
    doc: str = "",
) -> Callable[[InferFn], InferFn]:
    lo, hi = (inputs, inputs) if isinstance(inputs, int) else inputs

    def deco(fn: InferFn) -> InferFn:
        if name in SCHEMAS:
            raise RuntimeError(f"op {name} registered twice")
        SCHEMAS[name] = OpSchema(name, lo, hi, dict(attrs or {}), fn, outputs, doc)
        return fn

    return deco


def schema_for(op: str) -> OpSchema:
    try:
        return SCHEMAS[op]
    except KeyError:
        raise UnsupportedOpError(f"unknown op {op!r}") from None


def _broadcast_dim(a: Dim, b: Dim) -> Dim:
    if a == 1:
        return b
    if b == 1:
        return a
    if a is None:
        return b
    if b is None:
        return a
    if a != b:
        raise ShapeError(f"dimensions {a} and {b} do not broadcast")
    return a


def broadcast_shapes(*shapes: Shape) -> Shape:
    rank = max(len(s) for s in shapes)
    result: list[Dim] = [1] * rank
    for s in shapes:
        padded = (1,) * (rank - len(s)) + tuple(s)
        try:
            result = [_broadcast_dim(a, b) for a, b in zip(result, padded, strict=True)]
        except ShapeError:
            raise ShapeError(f"shapes {[tuple(x) for x in shapes]} do not broadcast") from None
    return tuple(result)


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank
