"""The ONNX converter table: ONNX op type -> a function that emits engine nodes.

A converter is ``fn(ctx, node) -> None``: it reads ``node`` (an ``OnnxNode``), asks ``ctx``
(``engine.importers.onnx.context.Context``) for input types and constant values, and emits
engine nodes with ``ctx.emit``. It writes every ONNX output it produces under the ONNX name
(``ctx.emit(..., outputs=node.outputs)``) so later nodes find them. It never raises for an
unsupported attribute value: it calls ``ctx.unsupported(node, why)`` (or ``ctx.check_attrs``)
and returns, so the load reports every problem of the file in one message.

    @converts("Relu", since=6)
    def _relu(ctx: Context, node: OnnxNode) -> None:
        if not ctx.check_attrs(node, {}):
            return
        ctx.emit("Relu", node.inputs[:1], outputs=node.outputs)

``since``/``until`` bound the op's ONNX schema version (the ``since_version`` the model's
opset selects for that op); a model selecting a version outside the range fails the load.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from engine.importers.onnx.context import Context

__all__ = [
    "CONVERTERS",
    "VERSIONS",
    "Converter",
    "OnnxNode",
    "attr_value",
    "check_attrs",
    "converts",
]


class OnnxNode:
    """A read-only view of an ``onnx.NodeProto`` with attributes as Python values."""

    def __init__(self, proto: Any, index: int = 0) -> None:
        self.proto = proto
        self.op_type: str = proto.op_type
        self.domain: str = proto.domain or ""
        self.name: str = proto.name or f"{proto.op_type}_{index}"
        self.inputs: list[str] = list(proto.input)  # "" marks an omitted optional input
        self.outputs: list[str] = list(proto.output)
        self._attrs: dict[str, Any] = {a.name: a for a in proto.attribute}

    @property
    def attr_names(self) -> list[str]:
        return sorted(self._attrs)

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute as ints, floats, str, lists of those, or a numpy array (tensors)."""
        proto = self._attrs.get(name)
        return default if proto is None else attr_value(proto)

    def input(self, i: int) -> str:
        """Input ``i``, or "" when it is omitted (optional inputs past the end included)."""
        return self.inputs[i] if i < len(self.inputs) else ""

    def __repr__(self) -> str:
        return f"node {self.name!r} ({self.op_type})"


def attr_value(proto: Any) -> Any:
    """An ``onnx.AttributeProto``'s value as a Python/numpy value."""
    from onnx import AttributeProto, numpy_helper

    kind = proto.type
    if kind == AttributeProto.INT:
        return int(proto.i)
    if kind == AttributeProto.FLOAT:
        return float(proto.f)
    if kind == AttributeProto.STRING:
        return proto.s.decode("utf-8", errors="replace")
    if kind == AttributeProto.INTS:
        return [int(v) for v in proto.ints]
    if kind == AttributeProto.FLOATS:
        return [float(v) for v in proto.floats]
    if kind == AttributeProto.STRINGS:
        return [s.decode("utf-8", errors="replace") for s in proto.strings]
    if kind == AttributeProto.TENSOR:
        return np.asarray(numpy_helper.to_array(proto.t))
    return proto  # graphs, sparse tensors, type protos: converters that take them unpack them


Converter = Callable[["Context", OnnxNode], None]


@dataclass(frozen=True)
class _Versions:
    since: int
    until: int | None  # None: every later version too


CONVERTERS: dict[str, Converter] = {}
VERSIONS: dict[str, _Versions] = {}


def converts(*ops: str, since: int = 1, until: int | None = None) -> Callable[[Converter],
                                                                              Converter]:
    """Register ``fn`` as the converter of ``ops`` for op versions ``since..until``."""

    def deco(fn: Converter) -> Converter:
        for op in ops:
            if op in CONVERTERS:
                raise RuntimeError(f"ONNX op {op} has two converters")
            CONVERTERS[op] = fn
            VERSIONS[op] = _Versions(since, until)
        return fn

    return deco


def check_attrs(node: OnnxNode, supported: Mapping[str, Collection[Any] | None]) -> list[str]:
    """Problems with ``node``'s attributes: names not in ``supported``, or values outside the
    collection given for that name (None accepts any value). Empty when all is well.

    ``Context.check_attrs`` records these problems for the load's single error message.
    """
    problems = []
    for name in node.attr_names:
        if name not in supported:
            problems.append(f"attribute {name!r} is not supported")
            continue
        allowed = supported[name]
        if allowed is None:
            continue
        value = node.attr(name)
        key = tuple(value) if isinstance(value, list) else value
        if key not in allowed:
            problems.append(
                f"attribute {name}={value!r} is not supported (supported: {sorted(allowed)})"
            )
    return problems
