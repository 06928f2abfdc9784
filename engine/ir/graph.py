"""The immutable graph: values, nodes and the graph that holds them.

Passes never mutate a Graph; they build a new one (``Graph.replace``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["Dim", "Shape", "TensorType", "Node", "Graph", "freeze_attrs"]

Dim = int | None  # None: dynamic (usually the batch)
Shape = tuple[Dim, ...]


@dataclass(frozen=True)
class TensorType:
    """The dtype (numpy name) and shape of a value; None dims are dynamic."""

    dtype: str
    shape: Shape

    @property
    def rank(self) -> int:
        return len(self.shape)

    def is_static(self) -> bool:
        return all(d is not None for d in self.shape)

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, np.generic):
        return value.item()
    return value


def freeze_attrs(attrs: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Attributes as a read-only mapping with tuples instead of lists."""
    return MappingProxyType({k: _freeze(v) for k, v in (attrs or {}).items()})


@dataclass(frozen=True)
class Node:
    """One op application: named inputs in, named outputs out, plus attributes."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=lambda: freeze_attrs(None))
    name: str = ""

    @staticmethod
    def make(
        op: str,
        inputs: Iterable[str],
        outputs: Iterable[str],
        attrs: Mapping[str, Any] | None = None,
        name: str = "",
    ) -> Node:
        return Node(op, tuple(inputs), tuple(outputs), freeze_attrs(attrs), name)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def with_attrs(self, **updates: Any) -> Node:
        merged = dict(self.attrs)
        merged.update(updates)
        return Node(self.op, self.inputs, self.outputs, freeze_attrs(merged), self.name)


@dataclass(frozen=True)
class Graph:
    """Inputs, outputs, nodes in topological order, and constants by name.

    ``types`` holds the inferred type of every value (filled by ``infer_types``);
    a graph built by hand may leave it empty until verified.
    """

    inputs: tuple[tuple[str, TensorType], ...]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    constants: Mapping[str, np.ndarray]
    types: Mapping[str, TensorType] = field(default_factory=lambda: MappingProxyType({}))

    @staticmethod
    def make(
        inputs: Iterable[tuple[str, TensorType]],
        outputs: Iterable[str],
        nodes: Iterable[Node],
        constants: Mapping[str, np.ndarray] | None = None,
        types: Mapping[str, TensorType] | None = None,
    ) -> Graph:
        consts = {}
        for name, arr in (constants or {}).items():
            arr = np.asarray(arr, order="C")  # ascontiguousarray would make 0-d arrays 1-d
            arr.flags.writeable = False
            consts[name] = arr
        return Graph(
            tuple(inputs),
            tuple(outputs),
            tuple(nodes),
            MappingProxyType(consts),
            MappingProxyType(dict(types or {})),
        )

    def replace(
        self,
        *,
        inputs: Iterable[tuple[str, TensorType]] | None = None,
        outputs: Iterable[str] | None = None,
        nodes: Iterable[Node] | None = None,
        constants: Mapping[str, np.ndarray] | None = None,
    ) -> Graph:
        """A new graph with some parts swapped; inferred types are dropped."""
        return Graph.make(
            self.inputs if inputs is None else inputs,
            self.outputs if outputs is None else outputs,
            self.nodes if nodes is None else nodes,
            self.constants if constants is None else constants,
        )

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.inputs)

    def input_type(self, name: str) -> TensorType:
        for n, t in self.inputs:
            if n == name:
                return t
        raise KeyError(name)

    def producers(self) -> dict[str, Node]:
        return {out: node for node in self.nodes for out in node.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    users.setdefault(name, []).append(node)
        return users

    def type_of(self, name: str) -> TensorType:
        if name in self.types:
            return self.types[name]
        if name in self.constants:
            arr = self.constants[name]
            return TensorType(arr.dtype.name, tuple(arr.shape))
        return self.input_type(name)
