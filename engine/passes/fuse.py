"""fold_batchnorm and fuse_bias_activation: fewer passes over memory per request."""

from __future__ import annotations

import numpy as np

from engine.ir import Graph, Node, infer_types
from engine.passes.rewrite import sole_consumer, use_counts

__all__ = ["fold_batchnorm", "fuse_bias_activation"]

_PRODUCERS = ("Conv2D", "Dense")
_ACT_OPS = {
    "Relu": "relu",
    "Relu6": "relu6",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "LeakyRelu": "leaky_relu",
}


def _bias_of(graph: Graph, node: Node, channels: int) -> np.ndarray:
    if len(node.inputs) == 3:
        return np.asarray(graph.constants[node.inputs[2]], dtype=np.float64)
    return np.zeros(channels)


def _fusable(graph: Graph, node: Node) -> bool:
    return (
        node.op in _PRODUCERS
        and node.attr("activation", "linear") == "linear"
        and node.inputs[1] in graph.constants
        and (len(node.inputs) == 2 or node.inputs[2] in graph.constants)
    )


def _rewrite(graph: Graph, merge) -> Graph:  # type: ignore[no-untyped-def]
    """Apply ``merge(producer, consumer, constants) -> Node | None`` to producer/consumer pairs."""
    constants = dict(graph.constants)
    nodes = list(graph.nodes)
    changed = True
    any_change = False
    while changed:
        changed = False
        current = infer_types(graph.replace(nodes=nodes, constants=constants))
        counts = use_counts(current)
        for i, node in enumerate(nodes):
            if not _fusable(current, node):
                continue
            consumer = sole_consumer(current, node.outputs[0], counts)
            if consumer is None:
                continue
            fused = merge(current, node, consumer, constants)
            if fused is None:
                continue
            nodes[i] = fused
            nodes.remove(consumer)
            changed = any_change = True
            break
    return graph.replace(nodes=nodes, constants=constants) if any_change else graph


def _with_weights(node: Node, w: np.ndarray, b: np.ndarray, out: str,
                  constants: dict[str, np.ndarray], tag: str) -> Node:
    base = node.name or node.outputs[0]
    wname, bname = f"{base}/{tag}/kernel", f"{base}/{tag}/bias"
    constants[wname] = w.astype(np.float32)
    constants[bname] = b.astype(np.float32)
    return Node(node.op, (node.inputs[0], wname, bname), (out,), node.attrs, node.name)


def _merge_bn(graph: Graph, node: Node, bn: Node, constants: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    if bn.op != "BatchNorm" or bn.inputs[0] != node.outputs[0]:
        return None
    rank = graph.types[node.outputs[0]].rank
    if bn.attr("axis", -1) % rank != rank - 1 or not all(n in constants for n in bn.inputs[1:]):
        return None
    gamma, beta, mean, var = (np.asarray(constants[n], dtype=np.float64) for n in bn.inputs[1:])
    scale = gamma / np.sqrt(var + bn.attr("epsilon", 1e-3))
    w = np.asarray(constants[node.inputs[1]], dtype=np.float64)
    b = _bias_of(graph, node, w.shape[-1])
    return _with_weights(node, w * scale, (b - mean) * scale + beta, bn.outputs[0], constants,
                         "bn")


def fold_batchnorm(graph: Graph) -> Graph:
    """Conv2D/Dense -> BatchNorm(channels last) becomes one Conv2D/Dense with scaled weights."""
    return _rewrite(graph, _merge_bn)


def _merge_bias_act(graph: Graph, node: Node, nxt: Node, constants: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    if nxt.op in _ACT_OPS:
        act = _ACT_OPS[nxt.op]
        attrs = {"activation": act}
        if nxt.op == "LeakyRelu":
            attrs["alpha"] = nxt.attr("alpha", 0.2)
        fused = node.with_attrs(**attrs)
        return Node(fused.op, fused.inputs, nxt.outputs, fused.attrs, fused.name)
    if nxt.op == "Gelu":
        act = "gelu" if nxt.attr("approximate", "none") == "none" else "gelu_tanh"
        fused = node.with_attrs(activation=act)
        return Node(fused.op, fused.inputs, nxt.outputs, fused.attrs, fused.name)
    if nxt.op in ("Add", "Sub") and nxt.inputs[0] == node.outputs[0]:
        other = nxt.inputs[1]
        if other not in constants:
            return None
        c = np.asarray(constants[other], dtype=np.float64)
        w = np.asarray(constants[node.inputs[1]])
        channels = w.shape[-1]
        if c.size != channels or c.ndim < 1 or c.shape[-1] != channels:
            return None
        b = _bias_of(graph, node, channels)
        b = b + c.reshape(-1) if nxt.op == "Add" else b - c.reshape(-1)
        return _with_weights(node, w, b, nxt.outputs[0], constants, "bias")
    return None


def fuse_bias_activation(graph: Graph) -> Graph:
    """A constant per-channel Add and a following activation move into Conv2D/Dense."""
    return _rewrite(graph, _merge_bias_act)
