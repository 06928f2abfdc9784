"""The op table's schema half: arity, attributes with defaults, and shape inference.

Each op family registers its schemas in ``engine/ir/schemas/<family>.py``. The
kernel half of the table lives in ``engine/executor/bindings``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import ShapeError, UnsupportedOpError
from engine.ir.graph import Dim, Shape, TensorType

__all__ = [
    "REQUIRED",
    "OpSchema",
    "SCHEMAS",
    "register",
    "register_value_dependent",
    "schema_for",
    "broadcast_shapes",
    "normalize_axis",
    "InferFn",
    "ValueInferFn",
]

InferFn = Callable[[Sequence[TensorType], Mapping[str, Any]], list[TensorType]]
# for ops whose output *type* depends on an input's value (Expand, Range, ConstantOfShape...):
# also given each input's constant value, or None where the input is not a graph constant
ValueInferFn = Callable[
    [Sequence[TensorType], Mapping[str, Any], Sequence[np.ndarray | None]], list[TensorType]
]


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
    # set for value-dependent ops; ``infer`` then sees no values (dynamic dims where unknown)
    infer_values: ValueInferFn | None = None

    def infer_with(
        self,
        ins: Sequence[TensorType],
        attrs: Mapping[str, Any],
        values: Sequence[np.ndarray | None],
    ) -> list[TensorType]:
        """Output types, using the inputs' constant values where the op's type needs them."""
        if self.infer_values is not None:
            return self.infer_values(ins, attrs, values)
        return self.infer(ins, attrs)

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


def register_value_dependent(
    name: str,
    *,
    inputs: int | tuple[int, int],
    attrs: Mapping[str, Any] | None = None,
    outputs: int = 1,
    doc: str = "",
) -> Callable[[ValueInferFn], ValueInferFn]:
    """Register an op whose output shape depends on the values of some inputs.

    ``fn(ins, attrs, values)`` gets ``values[i]`` for constant inputs (None otherwise) and
    returns dynamic (None) dims for what it cannot know; ``engine.passes.specialize`` makes
    those inputs constant for each set of concrete input shapes.
    """
    lo, hi = (inputs, inputs) if isinstance(inputs, int) else inputs

    def deco(fn: ValueInferFn) -> ValueInferFn:
        if name in SCHEMAS:
            raise RuntimeError(f"op {name} registered twice")

        def without_values(ins: Sequence[TensorType], a: Mapping[str, Any]) -> list[TensorType]:
            return fn(ins, a, [None] * len(ins))

        SCHEMAS[name] = OpSchema(name, lo, hi, dict(attrs or {}), without_values, outputs, doc,
                                 fn)
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
