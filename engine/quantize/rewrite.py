"""Graph rewrites from float Dense / Conv2D to their quantized forms (engine.ir.schemas.quant).

Only nodes whose weight is a graph constant change; every other node stays float32. A weight
shared by several nodes is quantized once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engine.ir import Graph, Node

__all__ = ["WEIGHT_OPS", "quantize_per_channel", "quantize_weights", "drop_unused_constants"]

WEIGHT_OPS = ("Dense", "Conv2D")
_W8 = {"Dense": "DenseW8", "Conv2D": "Conv2DW8"}
_F16 = {"Dense": "DenseF16", "Conv2D": "Conv2DF16"}


def quantize_per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (the last axis): (q in [-127, 127], scale float32).

    scale = max|w| / 127 over the other axes; an all-zero channel gets scale 1 (q = 0)."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w.reshape(-1, w.shape[-1])).max(axis=0)
    scale = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def drop_unused_constants(graph: Graph, constants: Mapping[str, np.ndarray]) -> dict[str,
                                                                                        np.ndarray]:
    used = {n for node in graph.nodes for n in node.inputs} | set(graph.outputs)
    return {k: v for k, v in constants.items() if k in used}


def _weight_const(graph: Graph, node: Node) -> np.ndarray | None:
    if node.op not in WEIGHT_OPS or len(node.inputs) < 2:
        return None
    w = graph.constants.get(node.inputs[1])
    if w is None or w.dtype != np.float32:
        return None
    return w


def quantize_weights(graph: Graph, mode: str,
                     compute: str = "float32") -> tuple[Graph, dict[str, int]]:
    """Dense/Conv2D with constant float32 weights -> DenseW8/Conv2DW8 (``mode="int8"``, with
    the ``compute`` attribute: "float32" or "int8", see engine.ir.schemas.quant) or
    DenseF16/Conv2DF16 (``mode="float16"``). Returns the graph and a count per rewrite."""
    if mode not in ("int8", "float16"):
        raise ValueError(f"weights mode must be 'int8' or 'float16', got {mode!r}")
    if compute not in ("float32", "int8"):
        raise ValueError(f"compute must be 'float32' or 'int8', got {compute!r}")
    constants = dict(graph.constants)
    done: dict[str, tuple[str, ...]] = {}
    counts: dict[str, int] = {}
    nodes = []
    for node in graph.nodes:
        w = _weight_const(graph, node)
        if w is None:
            nodes.append(node)
            continue
        wname = node.inputs[1]
        if wname not in done:
            if mode == "int8":
                q, s = quantize_per_channel(w)
                constants[wname + "/q8"], constants[wname + "/scale"] = q, s
                done[wname] = (wname + "/q8", wname + "/scale")
            else:
                constants[wname + "/f16"] = w.astype(np.float16)
                done[wname] = (wname + "/f16",)
        op = (_W8 if mode == "int8" else _F16)[node.op]
        ins = (node.inputs[0], *done[wname], *node.inputs[2:])
        attrs = {**node.attrs, "compute": compute} if mode == "int8" else node.attrs
        nodes.append(Node(op, ins, node.outputs, attrs, node.name))
        key = f"{node.op}->{op}"
        counts[key] = counts.get(key, 0) + 1
    out = graph.replace(nodes=nodes)
    return out.replace(constants=drop_unused_constants(out, constants)), counts
