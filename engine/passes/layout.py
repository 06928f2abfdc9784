"""cancel_transposes: let an imported NCHW network run NHWC inside.

The ONNX importer wraps each NHWC engine op (Conv2D, pooling) in Transpose(0,2,3,1) ->
op -> Transpose(0,3,1,2). This pass moves every Transpose down through ops that do not care
about the layout (elementwise unary ops, Clip, BatchNorm/LRN with their axis renumbered, a
binary op with a constant whose axes are permuted to match, a binary op or Concat whose
inputs are all transposed the same way), merges consecutive Transposes, and drops the ones
that compose to the identity. What is left sits at the graph's interface or in front of an op
that needs a layout (Flatten, Reshape...). If the rewrite would leave more Transposes than it
found, the graph is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.ir import Graph, Node, infer_types

__all__ = ["cancel_transposes", "LAYOUT_FREE_UNARY", "AXIS_OPS"]

# ops whose result at each position depends only on the input at that position
LAYOUT_FREE_UNARY = frozenset({
    "Relu", "Relu6", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "Neg", "Abs",
    "Reciprocal", "Identity", "Floor", "Ceil", "LeakyRelu", "Gelu", "Clip", "Cast",
})
# single-input ops that act along one axis given by their ``axis`` attribute (other inputs
# are per-channel parameter vectors, untouched by a permutation)
AXIS_OPS = frozenset({"BatchNorm", "LRN"})
_BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Minimum"})

Perm = tuple[int, ...]


def _perm(node: Node, rank: int) -> Perm:
    p = node.attr("perm")
    return tuple(reversed(range(rank))) if p is None else tuple(int(v) for v in p)


def _inverse(p: Perm) -> Perm:
    return tuple(int(v) for v in np.argsort(p))


class _Rewriter:
    def __init__(self, graph: Graph) -> None:
        self.graph = infer_types(graph)
        self.nodes = list(self.graph.nodes)
        self.constants = dict(self.graph.constants)
        self.ranks = {k: t.rank for k, t in self.graph.types.items()}
        self.producers: dict[str, Node] = {}
        self._fresh = 0

    def name(self, base: str) -> str:
        self._fresh += 1
        return f"{base}/layout{self._fresh}"

    def transposed(self, value: str) -> tuple[str, Perm] | None:
        """(source, perm) when ``value`` is made by a Transpose."""
        node = self.producers.get(value)
        if node is None or node.op != "Transpose":
            return None
        src = node.inputs[0]
        return src, _perm(node, self.ranks[src])

    def step(self) -> bool:
        self.producers = {o: n for n in self.nodes for o in n.outputs}
        for i, node in enumerate(self.nodes):
            new = self._rewrite(node)
            if new is not None:
                self.nodes[i:i + 1] = new
                return True
        return False

    def _rewrite(self, node: Node) -> list[Node] | None:
        if node.op == "Transpose":
            return self._compose(node)
        if node.op in LAYOUT_FREE_UNARY or node.op in AXIS_OPS:
            return self._push_unary(node)
        if node.op in _BINARY:
            return self._push_binary(node)
        if node.op == "Concat":
            return self._push_all(node, axis_attr=True)
        return None

    def _compose(self, node: Node) -> list[Node] | None:
        rank = self.ranks[node.inputs[0]]
        q = _perm(node, rank)
        if q == tuple(range(rank)):
            return [Node("Identity", node.inputs, node.outputs, name=node.name)]
        inner = self.transposed(node.inputs[0])
        if inner is None:
            return None
        src, p = inner
        composed = tuple(p[j] for j in q)
        if composed == tuple(range(rank)):
            return [Node("Identity", (src,), node.outputs, name=node.name)]
        return [Node.make("Transpose", (src,), node.outputs, {"perm": composed}, node.name)]

    def _wrap(self, node: Node, inputs: Sequence[str], p: Perm, attrs: dict[str, object]
              ) -> list[Node]:
        """``node`` on the untransposed inputs, then one Transpose(p) to its old output."""
        mid = self.name(node.outputs[0])
        self.ranks[mid] = len(p)
        merged = dict(node.attrs)
        merged.update(attrs)
        inner = Node.make(node.op, inputs, (mid,), merged, node.name)
        return [inner, Node.make("Transpose", (mid,), node.outputs, {"perm": p},
                                 f"{node.name or node.outputs[0]}/transpose")]

    def _push_unary(self, node: Node) -> list[Node] | None:
        found = self.transposed(node.inputs[0])
        if found is None:
            return None
        src, p = found
        attrs: dict[str, object] = {}
        if node.op in AXIS_OPS:
            attrs["axis"] = p[int(node.attr("axis", -1)) % len(p)]
        return self._wrap(node, (src, *node.inputs[1:]), p, attrs)

    def _push_binary(self, node: Node) -> list[Node] | None:
        a, b = node.inputs
        const_side = 0 if a in self.constants else 1 if b in self.constants else None
        if const_side is None:
            return self._push_all(node, axis_attr=False)
        other = node.inputs[1 - const_side]
        found = self.transposed(other)
        if found is None:
            return None
        src, p = found
        c = self.constants[node.inputs[const_side]]
        if c.ndim > len(p):
            return None
        if c.size > 1:
            full = c.reshape((1,) * (len(p) - c.ndim) + c.shape)
            cname = self.name(node.inputs[const_side])
            self.constants[cname] = np.ascontiguousarray(full.transpose(_inverse(p)))
        else:
            cname = node.inputs[const_side]
        ins = (cname, src) if const_side == 0 else (src, cname)
        return self._wrap(node, ins, p, {})

    def _push_all(self, node: Node, axis_attr: bool) -> list[Node] | None:
        found = [self.transposed(v) for v in node.inputs]
        if any(f is None for f in found):
            return None
        perms = {f[1] for f in found if f is not None}
        if len(perms) != 1:
            return None
        p = perms.pop()
        attrs: dict[str, object] = {}
        if axis_attr:
            attrs["axis"] = p[int(node.attr("axis")) % len(p)]
        return self._wrap(node, [f[0] for f in found if f is not None], p, attrs)


def _count(nodes: Sequence[Node]) -> int:
    return sum(n.op == "Transpose" for n in nodes)


def _drop_dead(nodes: list[Node], outputs: Sequence[str]) -> list[Node]:
    """Drop nodes nothing reads (Transposes orphaned by the rewrite, mostly) and the Identity
    nodes left where two Transposes cancelled (so later passes see Conv2D -> BatchNorm)."""
    rename: dict[str, str] = {}
    skipped = []
    for node in nodes:
        ins = tuple(rename.get(v, v) for v in node.inputs)
        if node.op == "Identity" and node.outputs[0] not in outputs:
            rename[node.outputs[0]] = ins[0]
            continue
        skipped.append(node if ins == node.inputs else
                       Node(node.op, ins, node.outputs, node.attrs, node.name))
    live = set(outputs)
    kept = []
    for node in reversed(skipped):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    kept.reverse()
    return kept


def cancel_transposes(graph: Graph) -> Graph:
    """Transposes moved down past layout-free ops and cancelled in pairs (see module doc)."""
    before = _count(graph.nodes)
    if before == 0:
        return graph
    rw = _Rewriter(graph)
    budget = 20 * len(rw.nodes) + 100  # each step moves a Transpose later; this only guards
    while budget > 0 and rw.step():
        rw.nodes = _drop_dead(rw.nodes, graph.outputs)
        budget -= 1
    nodes = _drop_dead(rw.nodes, graph.outputs)
    if _count(nodes) >= before:
        return graph
    live = {v for n in nodes for v in n.inputs} | set(graph.outputs)
    constants = {k: v for k, v in rw.constants.items() if k in live}
    return graph.replace(nodes=nodes, constants=constants)
