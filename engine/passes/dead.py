"""remove_dead_nodes: drop nodes and constants nothing reaches; skip Identity nodes."""

from __future__ import annotations

from engine.ir import Graph, Node

__all__ = ["remove_dead_nodes"]


def _skip_identities(graph: Graph) -> tuple[list[Node], dict[str, str]]:
    rename: dict[str, str] = {}
    nodes = []
    for node in graph.nodes:
        ins = tuple(rename.get(n, n) for n in node.inputs)
        if node.op == "Identity" and node.outputs[0] not in graph.outputs:
            rename[node.outputs[0]] = ins[0]
            continue
        nodes.append(Node(node.op, ins, node.outputs, node.attrs, node.name))
    return nodes, rename


def remove_dead_nodes(graph: Graph) -> Graph:
    nodes, _ = _skip_identities(graph)
    live = set(graph.outputs)
    kept: list[Node] = []
    for node in reversed(nodes):
        if any(out in live for out in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    kept.reverse()
    constants = {k: v for k, v in graph.constants.items() if k in live}
    if len(kept) == len(graph.nodes) and len(constants) == len(graph.constants):
        return graph
    return graph.replace(nodes=kept, constants=constants)
