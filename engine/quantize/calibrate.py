"""Full int8 conversion: calibrate activation ranges on sample data, then rewrite Dense /
Conv2D into Quantize -> QDense / QConv2D -> Dequantize (TF Lite's int8 scheme).

Activations get asymmetric per-tensor parameters from the observed [min, max] (widened to
hold 0, so zero padding is exact); weights symmetric per output channel; biases int32 at
scale ``x_scale * w_scale``. Where one rewritten node feeds another, the Dequantize ->
Quantize pair between them cancels (same tensor, same parameters) and the int8 value flows
through; ops without an int8 form keep running in float32 between the pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from engine.ir import Graph, Node
from engine.loader import compile_graph
from engine.quantize.rewrite import drop_unused_constants, quantize_per_channel

__all__ = ["INT8_OPS", "candidates", "calibrate", "qparams", "quantize_full_int8"]

INT8_OPS = {"Dense": "QDense", "Conv2D": "QConv2D"}
_Q_ACTS = ("linear", "relu", "relu6")


def candidates(graph: Graph) -> list[Node]:
    """Dense/Conv2D nodes with constant float32 weights and an activation int8 can clamp."""
    out = []
    for node in graph.nodes:
        if node.op not in INT8_OPS or node.attr("activation", "linear") not in _Q_ACTS:
            continue
        w = graph.constants.get(node.inputs[1])
        b_ok = len(node.inputs) < 3 or node.inputs[2] in graph.constants
        if w is not None and w.dtype == np.float32 and b_ok:
            out.append(node)
    return out


def calibrate(graph: Graph, tensors: Iterable[str], batches: Iterable[Mapping[str, np.ndarray]]
              ) -> dict[str, tuple[float, float]]:
    """[min, max] of each named tensor over the batches (feeds keyed by graph input name)."""
    names = sorted(set(tensors))
    # graph inputs are read from the feeds: a plan whose outputs list a graph input before
    # other outputs gives those outputs wrongly shaped buffers (engine/executor/plan.py)
    inner = [n for n in names if n not in graph.input_names]
    probe = compile_graph(graph.replace(outputs=list(dict.fromkeys([*graph.outputs, *inner]))))
    ranges: dict[str, tuple[float, float]] = {}
    for feeds in batches:
        result = {**probe.plan_for(feeds).run(feeds), **feeds}
        for name in names:
            v = result[name]
            lo, hi = float(np.min(v)), float(np.max(v))
            if name in ranges:
                lo, hi = min(lo, ranges[name][0]), max(hi, ranges[name][1])
            ranges[name] = (lo, hi)
    return ranges


def qparams(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero_point) of an asymmetric int8 range covering [lo, hi] and 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0.0:
        return 1.0, 0
    scale = float(np.float32((hi - lo) / 255.0))
    zp = int(np.clip(round(-128.0 - lo / scale), -128, 127))
    return scale, zp


def quantize_full_int8(graph: Graph, ranges: Mapping[str, tuple[float, float]]
                       ) -> tuple[Graph, dict[str, int]]:
    constants = dict(graph.constants)
    nodes: list[Node] = []
    int8_of: dict[str, tuple[str, float, int]] = {}  # float tensor -> its int8 twin + params
    counts: dict[str, int] = {}
    chosen = {id(n) for n in candidates(graph) if n.inputs[0] in ranges
              and n.outputs[0] in ranges}
    for node in graph.nodes:
        if id(node) not in chosen:
            nodes.append(node)
            continue
        x, y = node.inputs[0], node.outputs[0]
        xs, xzp = qparams(*ranges[x])
        ys, yzp = qparams(*ranges[y])
        twin = int8_of.get(x)  # same tensor, same range: same parameters
        if twin is not None:
            xq = twin[0]
        else:
            xq = f"{x}/int8"
            nodes.append(Node.make("Quantize", [x], [xq], {"scale": xs, "zero_point": xzp},
                                   f"{x}/quantize"))
            int8_of[x] = (xq, xs, xzp)
        wname = node.inputs[1]
        q, s = quantize_per_channel(graph.constants[wname])
        base = node.name or y
        constants[f"{base}/w_q8"], constants[f"{base}/w_scale"] = q, s
        ins = [xq, f"{base}/w_q8", f"{base}/w_scale"]
        if len(node.inputs) > 2:
            b = np.asarray(graph.constants[node.inputs[2]], np.float64)
            bq = np.rint(b / (float(np.float32(xs)) * s.astype(np.float64)))
            constants[f"{base}/b_i32"] = np.clip(bq, -(2**31), 2**31 - 1).astype(np.int32)
            ins.append(f"{base}/b_i32")
        attrs = {"x_scale": xs, "x_zero_point": xzp, "y_scale": ys, "y_zero_point": yzp,
                 "activation": node.attr("activation", "linear")}
        if node.op == "Conv2D":
            for key in ("strides", "dilations", "pads", "groups"):
                if key in node.attrs:
                    attrs[key] = node.attrs[key]
        yq = f"{y}/int8"
        op = INT8_OPS[node.op]
        nodes.append(Node.make(op, ins, [yq], attrs, base))
        nodes.append(Node.make("Dequantize", [yq], [y], {"scale": ys, "zero_point": yzp},
                               f"{y}/dequantize"))
        int8_of[y] = (yq, ys, yzp)
        key = f"{node.op}->{op}"
        counts[key] = counts.get(key, 0) + 1
    out = graph.replace(nodes=_drop_dead(nodes, graph.outputs))
    return out.replace(constants=drop_unused_constants(out, constants)), counts


def _drop_dead(nodes: list[Node], outputs: Iterable[str]) -> list[Node]:
    """Without the Dequantize / Quantize nodes that a cancelled pair left unread."""
    live = set(outputs)
    kept: list[Node] = []
    for node in reversed(nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    return kept[::-1]
