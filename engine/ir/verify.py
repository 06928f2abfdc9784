"""Type inference over a whole graph, and ``verify``: the check run between passes."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from engine.errors import EngineError, GraphError, UnsupportedOpError
from engine.ir.graph import Graph, Node, TensorType
from engine.ir.schema import schema_for

__all__ = ["infer_types", "verify", "node_label"]


def node_label(node: Node) -> str:
    return f"node {node.name or node.outputs[0]!r} ({node.op})"


def infer_types(graph: Graph, input_types: Mapping[str, TensorType] | None = None) -> Graph:
    """The graph with ``types`` filled for every value.

    ``input_types`` overrides the declared input types (the executor passes the concrete
    shapes of one request). Raises GraphError, UnsupportedOpError or ShapeError naming
    the node at fault.
    """
    types: dict[str, TensorType] = {}
    for name, t in graph.inputs:
        types[name] = input_types[name] if input_types and name in input_types else t
    for name, arr in graph.constants.items():
        if name in types:
            raise GraphError(f"value {name!r} is both a graph input and a constant")
        types[name] = TensorType(arr.dtype.name, tuple(arr.shape))
    for node in graph.nodes:
        schema = schema_for(node.op)
        where = node_label(node)
        n_in = len(node.inputs)
        if n_in < schema.min_inputs or (schema.max_inputs >= 0 and n_in > schema.max_inputs):
            hi = "any" if schema.max_inputs < 0 else schema.max_inputs
            raise GraphError(f"{where}: takes {schema.min_inputs}..{hi} inputs, got {n_in}")
        if len(node.outputs) != schema.num_outputs:
            raise GraphError(
                f"{where}: has {schema.num_outputs} output(s), got {len(node.outputs)}"
            )
        in_types = []
        for name in node.inputs:
            if name not in types:
                raise GraphError(f"{where}: input {name!r} is not defined before use")
            in_types.append(types[name])
        attrs = schema.resolve_attrs(node.attrs, where)
        try:
            values = [graph.constants.get(n) for n in node.inputs]
            out_types = schema.infer_with(in_types, attrs, values)
        except EngineError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise UnsupportedOpError(f"{where}: bad attributes {dict(node.attrs)}: {exc}") from None
        for name, t in zip(node.outputs, out_types, strict=True):
            if name in types:
                raise GraphError(f"{where}: output {name!r} is defined twice")
            types[name] = t
    for name in graph.outputs:
        if name not in types:
            raise GraphError(f"graph output {name!r} is not produced by any node")
    return Graph(graph.inputs, graph.outputs, graph.nodes, graph.constants, MappingProxyType(types))


def verify(graph: Graph) -> Graph:
    """Check structure, ops, attributes and shapes; return the graph with types filled."""
    if not graph.outputs:
        raise GraphError("graph has no outputs")
    names = [n for n, _ in graph.inputs]
    if len(set(names)) != len(names):
        raise GraphError(f"graph inputs are not unique: {names}")
    return infer_types(graph)
