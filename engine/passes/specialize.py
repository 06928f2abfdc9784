"""specialize: resolve shape-computing subgraphs for known input shapes.

Imported graphs (ONNX) compute shapes at run time: ``Shape(x) -> Gather -> Concat ->
DynamicReshape``, ``ConstantOfShape``, ``Range``, ``Expand``... The engine keeps such graphs
with dynamic dims; this pass, given input types (concrete ones per plan, or the declared ones
at load), walks the graph once in order and

- replaces ``Shape`` of a value whose shape is known by a constant,
- evaluates every node whose inputs are all constants (the result becomes a constant),
- turns tensor-parameter ops whose parameters became constant into their attribute forms
  (``DynamicReshape`` -> ``Reshape``, ``DynamicSlice`` -> ``Slice``),

so that with concrete input shapes every type is static and the plan can be built.
``Model.plan_for`` runs it once per input-shape key.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engine.errors import EngineError, ShapeError
from engine.executor import build_plan
from engine.ir import Graph, Node, TensorType, node_label, schema_for

__all__ = ["VALUE_DEPENDENT", "evaluate_node", "foldable", "needs_specialize", "specialize"]

# ops whose output type (or value) can only be known once the input shapes are
VALUE_DEPENDENT = frozenset(
    {"Shape", "DynamicReshape", "DynamicSlice", "Expand", "Range", "ConstantOfShape", "Tile",
     "Pad"}
)
_FOLD_LIMIT = 64 << 20


def foldable(op: str) -> bool:
    """Whether a node of ``op`` with constant inputs may be evaluated ahead of time."""
    return True  # every engine op is deterministic


def evaluate_node(node: Node, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run one node on constant inputs (through its real kernel); outputs by name."""
    sub = Graph.make([], node.outputs,
                     [Node(node.op, node.inputs, node.outputs, node.attrs, node.name)],
                     {n: values[n] for n in node.inputs if n})
    result = build_plan(sub, {}).run({})
    return {k: np.asarray(v) for k, v in result.items()}


def needs_specialize(graph: Graph) -> bool:
    return any(node.op in VALUE_DEPENDENT for node in graph.nodes)


def _attr_form(node: Node, values: list[np.ndarray | None]) -> Node:
    if node.op == "DynamicReshape" and values[1] is not None:
        shape = [int(d) for d in values[1].reshape(-1)]
        if not (node.attr("allowzero", 0) and 0 in shape):
            return Node.make("Reshape", node.inputs[:1], node.outputs, {"shape": shape},
                             node.name)
    if node.op == "DynamicSlice" and all(
        v is not None for v, n in zip(values[1:], node.inputs[1:], strict=True) if n
    ):
        def ints(i: int) -> list[int] | None:
            if i >= len(node.inputs) or not node.inputs[i]:
                return None
            v = values[i]
            assert v is not None
            return [int(x) for x in v.reshape(-1)]

        return Node.make("Slice", node.inputs[:1], node.outputs,
                         {"starts": ints(1), "ends": ints(2), "axes": ints(3), "steps": ints(4)},
                         node.name)
    return node


def specialize(graph: Graph, input_types: Mapping[str, TensorType] | None = None) -> Graph:
    """``graph`` with its shape arithmetic folded for ``input_types`` (default: declared).

    With concrete ``input_types`` every resulting type is static, or ShapeError names the
    node whose shape depends on values computed at run time.
    """
    inputs = [(n, input_types.get(n, t) if input_types else t) for n, t in graph.inputs]
    types: dict[str, TensorType] = dict(inputs)
    constants = dict(graph.constants)
    for name, arr in constants.items():
        types[name] = TensorType(arr.dtype.name, tuple(arr.shape))
    kept: list[Node] = []
    changed = False
    for node in graph.nodes:
        in_types = [types[n] for n in node.inputs]
        values = [constants.get(n) for n in node.inputs]
        if node.op == "Shape" and in_types[0].is_static():
            shape = tuple(int(d) for d in in_types[0].shape if d is not None)
            end = node.attr("end")
            constants[node.outputs[0]] = np.array(shape[node.attr("start", 0):end],
                                                  dtype=np.int64)
            types[node.outputs[0]] = TensorType("int64", (len(constants[node.outputs[0]]),))
            changed = True
            continue
        if node.inputs and all(v is not None for v in values) and foldable(node.op):
            known = {n: v for n, v in zip(node.inputs, values, strict=True) if v is not None}
            try:
                results = evaluate_node(node, known)
            except EngineError as exc:
                raise type(exc)(f"{node_label(node)}: {exc}") from None
            if sum(r.nbytes for r in results.values()) <= _FOLD_LIMIT:
                for name, arr in results.items():
                    constants[name] = arr
                    types[name] = TensorType(arr.dtype.name, tuple(arr.shape))
                changed = True
                continue
        new = _attr_form(node, values)
        if new is not node:
            changed = True
            node = new
            in_types = in_types[:len(node.inputs)]
            values = values[:len(node.inputs)]
        schema = schema_for(node.op)
        attrs = schema.resolve_attrs(node.attrs, node_label(node))
        try:
            out_types = schema.infer_with(in_types, attrs, values)
        except EngineError as exc:
            raise type(exc)(f"{node_label(node)}: {exc}") from None
        if input_types is not None and all(t.is_static() for t in in_types):
            for t in out_types:
                if not t.is_static():
                    raise ShapeError(
                        f"{node_label(node)}: output shape {t} depends on values computed at "
                        "run time (only shapes derived from input shapes are supported)"
                    )
        types.update(zip(node.outputs, out_types, strict=True))
        kept.append(node)
    if not changed and input_types is None:
        return graph
    live = set(graph.outputs)
    for node in kept:
        live.update(node.inputs)
    consts = {k: v for k, v in constants.items() if k in live}
    return Graph.make(inputs, graph.outputs, kept, consts)
