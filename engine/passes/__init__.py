"""Graph -> graph rewrites, each a named function; ``optimize`` runs them with verify between."""

from __future__ import annotations

from collections.abc import Callable

from engine.ir import Graph, verify
from engine.passes.dead import remove_dead_nodes
from engine.passes.fold_constants import fold_constants
from engine.passes.fuse import fold_batchnorm, fuse_bias_activation
from engine.passes.layout import cancel_transposes
from engine.passes.pack import pack_hybrid_weights

__all__ = [
    "PIPELINE",
    "cancel_transposes",
    "fold_batchnorm",
    "fold_constants",
    "fuse_bias_activation",
    "optimize",
    "pack_hybrid_weights",
    "remove_dead_nodes",
]

Pass = Callable[[Graph], Graph]

PIPELINE: list[Pass] = [fold_constants, cancel_transposes, fold_batchnorm, fuse_bias_activation,
                        pack_hybrid_weights,
                        remove_dead_nodes]


def optimize(graph: Graph, pipeline: list[Pass] | None = None) -> Graph:
    """Run each pass in turn; ``verify`` after each so a broken rewrite is caught at once."""
    graph = verify(graph)
    for p in PIPELINE if pipeline is None else pipeline:
        graph = verify(p(graph))
    return graph
