"""fold_constants: evaluate nodes whose inputs are all constants, once, at load time."""

from __future__ import annotations

import numpy as np

from engine.executor import build_plan
from engine.ir import Graph, TensorType

__all__ = ["fold_constants"]

_MAX_FOLDED_BYTES = 64 << 20  # don't materialize something huge that was cheap to compute


def fold_constants(graph: Graph) -> Graph:
    constants = dict(graph.constants)
    kept = []
    for node in graph.nodes:
        if node.inputs and all(name in constants for name in node.inputs):
            feeds = {f"c{i}": constants[n] for i, n in enumerate(node.inputs)}
            sub = Graph.make(
                [(k, TensorType(v.dtype.name, v.shape)) for k, v in feeds.items()],
                node.outputs,
                [node.__class__(node.op, tuple(feeds), node.outputs, node.attrs, node.name)],
            )
            results = build_plan(sub, {k: v.shape for k, v in feeds.items()}).run(feeds)
            if sum(r.nbytes for r in results.values()) <= _MAX_FOLDED_BYTES:
                constants.update({k: np.asarray(v) for k, v in results.items()})
                continue
        kept.append(node)
    if len(kept) == len(graph.nodes):
        return graph
    return graph.replace(nodes=kept, constants=constants)
