"""pack_hybrid_weights: constant int8 weights stored in their kernel's packed layout.

A weight-only op with ``compute="int8"`` runs on a packed copy of its weight
(engine.kernels.quant_hybrid.pack). Packed at plan time, that copy sits beside the graph's int8
constant for the model's lifetime and doubles the resident weights; this pass packs it once,
at load, into graph constants the packed op reads in place, and drops the int8 constants
nothing else reads. Saved models keep whatever graph was saved: ``engine.convert`` writes the
unpacked int8 graph (the portable form), and a packed graph saves and loads as it is.

Each packable op has a rule in ``_RULES``: ``rule(node, constants, packer) -> Node | None``,
the packed node or None to leave the node alone. ``_Packer`` packs each (weight, scale)
pair once, however many nodes share it, and names the new constants after the weight.
Rules: DenseW8 -> DenseW8Packed, and Conv2DW8 with one group -> Conv2DW8Packed (its
(KH, KW, C, O) weight packed as the GEMM's (KH*KW*C, O) matrix, as its binding would at plan
time). Grouped and depthwise Conv2DW8 compute in float32 whatever ``compute`` says: left alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.ir import Graph, Node, schema_for
from engine.kernels import quant_hybrid as QH

__all__ = ["pack_hybrid_weights"]

_Rule = Callable[[Node, dict[str, np.ndarray], "_Packer"], "Node | None"]


class _Packer:
    """Packs (weight, scale) constant pairs once each into ``constants``."""

    def __init__(self, graph: Graph, constants: dict[str, np.ndarray]) -> None:
        self.constants = constants
        self.taken = set(constants) | set(graph.types) | set(graph.input_names)
        self.taken |= {out for node in graph.nodes for out in node.outputs}
        self.done: dict[tuple[str, str], tuple[tuple[str, str, str], QH.HybridWeight]] = {}

    def _fresh(self, name: str) -> str:
        out, i = name, 1
        while out in self.taken:
            out, i = f"{name}_{i}", i + 1
        self.taken.add(out)
        return out

    def pack(self, w: str, scale: str) -> tuple[tuple[str, str, str], QH.HybridWeight]:
        """Names of (data, colsum, scale) of ``QH.pack`` of the two constants, the weight's
        leading axes flattened into K (a conv's (KH, KW, C, O) is the GEMM's (KH*KW*C, O)),
        and the packing (its arrays are the ones stored)."""
        hit = self.done.get((w, scale))
        if hit is not None:
            return hit
        wa = self.constants[w]
        packed = QH.pack(np.ascontiguousarray(wa, np.int8).reshape(-1, wa.shape[-1]),
                         np.ascontiguousarray(self.constants[scale], np.float32).reshape(-1))
        # the same weight with another scale array is another packing: tell them apart
        base = w if not any(key[0] == w for key in self.done) else f"{w}/{scale}"
        names = (self._fresh(f"{base}/packed"), self._fresh(f"{base}/colsum"),
                 self._fresh(f"{base}/pscale"))
        for name, arr in zip(names, (packed.data, packed.colsum, packed.scale), strict=True):
            self.constants[name] = arr
        self.done[(w, scale)] = (names, packed)
        return names, packed


def _constant_weight(node: Node, constants: dict[str, np.ndarray], ndim: int) -> bool:
    """Whether inputs 1 and 2 are a constant int8 weight of ``ndim`` axes and its float32
    scale per output channel (the last axis). A weight fed at run time is packed per run by
    the op's binding; malformed ones are left to verify, which reports them."""
    w, s = node.inputs[1], node.inputs[2]
    if w not in constants or s not in constants:
        return False
    wa, sa = constants[w], constants[s]
    return (wa.dtype == np.int8 and wa.ndim == ndim and sa.dtype == np.float32
            and sa.size == wa.shape[-1])


def _dense_w8(node: Node, constants: dict[str, np.ndarray], packer: _Packer) -> Node | None:
    if node.attr("compute", "float32") != "int8" or not _constant_weight(node, constants, 2):
        return None
    names, p = packer.pack(node.inputs[1], node.inputs[2])
    attrs = {"activation": node.attr("activation", "linear"), "alpha": node.attr("alpha", 0.2),
             "k": p.k, "n": p.n, "mr": p.mr, "nr": p.nr}
    return Node.make("DenseW8Packed", (node.inputs[0], *names, *node.inputs[3:]),
                     node.outputs, attrs, node.name)


def _conv_w8(node: Node, constants: dict[str, np.ndarray], packer: _Packer) -> Node | None:
    if (node.attr("compute", "float32") != "int8" or node.attr("groups", 1) != 1
            or not _constant_weight(node, constants, 4)):
        return None
    wa = constants[node.inputs[1]]
    names, p = packer.pack(node.inputs[1], node.inputs[2])
    attrs = schema_for("Conv2DW8").resolve_attrs(node.attrs, node.name or node.op)
    del attrs["compute"]
    attrs.update(kernel_h=int(wa.shape[0]), kernel_w=int(wa.shape[1]), k=p.k, n=p.n, mr=p.mr,
                 nr=p.nr)
    return Node.make("Conv2DW8Packed", (node.inputs[0], *names, *node.inputs[3:]),
                     node.outputs, attrs, node.name)


_RULES: dict[str, _Rule] = {"DenseW8": _dense_w8, "Conv2DW8": _conv_w8}


def pack_hybrid_weights(graph: Graph) -> Graph:
    """Every ``DenseW8`` with ``compute="int8"`` and constant weight and scale ->
    ``DenseW8Packed`` on packed constants, every such one-group ``Conv2DW8`` ->
    ``Conv2DW8Packed``; int8 constants left unread are dropped."""
    if not any(node.op in _RULES for node in graph.nodes):
        return graph
    constants = dict(graph.constants)
    packer = _Packer(graph, constants)
    nodes: list[Node] = []
    for node in graph.nodes:
        rule = _RULES.get(node.op)
        packed = rule(node, constants, packer) if rule is not None else None
        nodes.append(node if packed is None else packed)
    if not packer.done:
        return graph
    used = {n for node in nodes for n in node.inputs} | set(graph.outputs)
    return graph.replace(nodes=nodes, constants={k: v for k, v in constants.items()
                                                 if k in used})
