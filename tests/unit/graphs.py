"""Small graphs built straight from the IR, shared by engine unit tests."""

from __future__ import annotations

import numpy as np

from engine import Graph, Node, TensorType


def dense_graph(k: int = 4, n: int = 3, seed: int = 0) -> Graph:
    """x (None, k) -> Dense -> Relu -> y."""
    rng = np.random.default_rng(seed)
    return Graph.make(
        [("x", TensorType("float32", (None, k)))],
        ["y"],
        [
            Node.make("Dense", ["x", "w", "b"], ["h"]),
            Node.make("Relu", ["h"], ["y"]),
        ],
        {
            "w": rng.standard_normal((k, n)).astype(np.float32),
            "b": rng.standard_normal(n).astype(np.float32),
        },
    )


def mlp_graph(sizes: tuple[int, ...] = (16, 32, 32, 8), seed: int = 0) -> Graph:
    """A chain of Dense+Relu layers, long enough for buffer reuse to matter."""
    rng = np.random.default_rng(seed)
    nodes, consts = [], {}
    prev = "x"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        consts[f"w{i}"] = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        consts[f"b{i}"] = rng.standard_normal(b).astype(np.float32) * 0.1
        nodes.append(Node.make("Dense", [prev, f"w{i}", f"b{i}"], [f"d{i}"]))
        nodes.append(Node.make("Relu", [f"d{i}"], [f"r{i}"]))
        prev = f"r{i}"
    return Graph.make([("x", TensorType("float32", (None, sizes[0])))], [prev], nodes, consts)


def mlp_reference(graph: Graph, x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float64)
    for node in graph.nodes:
        if node.op == "Dense":
            h = h @ graph.constants[node.inputs[1]] + graph.constants[node.inputs[2]]
        elif node.op == "Relu":
            h = np.maximum(h, 0)
    return h
