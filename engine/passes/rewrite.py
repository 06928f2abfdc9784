"""Small helpers the passes share: use counts and single-consumer checks."""

from __future__ import annotations

from engine.ir import Graph, Node

__all__ = ["use_counts", "sole_consumer"]


def use_counts(graph: Graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            counts[name] = counts.get(name, 0) + 1
    for name in graph.outputs:
        counts[name] = counts.get(name, 0) + 1
    return counts


def sole_consumer(graph: Graph, value: str, counts: dict[str, int]) -> Node | None:
    """The one node reading ``value``, if exactly one does and it is not a graph output."""
    if counts.get(value) != 1 or value in graph.outputs:
        return None
    for node in graph.nodes:
        if value in node.inputs:
            return node
    return None
