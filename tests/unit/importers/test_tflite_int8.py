""".tflite import, full-int8 models (TFLiteConverter with a representative dataset; int8 or
float interface), compared with ai_edge_litert's Interpreter.

TF Lite's kernels disagree among themselves on int8 rounding, so the exact reference is its
reference kernels (op resolver BUILTIN_REF), which define the arithmetic; the optimized builtin
kernels and the default XNNPACK delegate round some ties the other way (measured: 1 step).

Tolerances, in quantization steps of the output tensor, each operator fed the reference
interpreter's own inputs:
- exact: CONV_2D, DEPTHWISE_CONV_2D (QConv2D), MAX_POOL_2D, AVERAGE_POOL_2D (windows up to 81
  taps), RESHAPE, PAD, CONCATENATION with shared parameters, QUANTIZE, DEQUANTIZE, and
  FULLY_CONNECTED (QDense, which rounds once as TF Lite's reference FULLY_CONNECTED does,
  ``(acc * multiplier + 2**(30 - shift)) >> (31 - shift)``, where CONV_2D rounds twice).
- every other int8 operator (Dequantize -> float op -> Quantize: ADD, SUB, MUL, MEAN, SOFTMAX,
  LOGISTIC, TANH, RELU, RELU6): within 1 step.
- whole models, against all three interpreter runs: within 1 step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import engine
from engine.importers.tflite import convert_model
from engine.importers.tflite_read import read_tflite
from engine.ir import Graph, Node, TensorType
from engine.loader import compile_graph
from tests.unit.importers.test_tflite import NEEDS_TF, reference, tflite_dir  # noqa: F401

EXACT_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE",
             "PAD", "QUANTIZE", "DEQUANTIZE"}
INT8_MODELS = ["cnn_int8", "cnn_int8f", "mlp_int8", "mlp_int8f", "ops_int8", "ops_int8f"]

pytestmark = NEEDS_TF


def _steps(got: np.ndarray, ref: np.ndarray, scale: float) -> np.ndarray:
    """|got - ref| in quantization steps (int8 outputs: integer differences)."""
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    return diff if ref.dtype == np.int8 else diff / scale


def _output_scale(path: Path) -> float:
    """The scale of the last int8 tensor before the output (the output's own, if int8)."""
    m = read_tflite(path.read_bytes())
    out = m.tensors[m.outputs[0]]
    if out.quantized:
        assert out.scale is not None
        return float(out.scale[0])
    (last,) = [op for op in m.operators if m.outputs[0] in op.outputs]
    src = m.tensors[last.inputs[0]]
    assert last.opcode == "DEQUANTIZE" and src.scale is not None
    return float(src.scale[0])


@pytest.mark.parametrize("name", INT8_MODELS)
def test_int8_model_matches_interpreter(tflite_dir: Path, name: str) -> None:  # noqa: F811
    model = engine.load(tflite_dir / f"{name}.tflite")
    ref = reference(tflite_dir, name)
    got = model.predict(ref["x"])
    assert got.dtype == ref["ref_y"].dtype and got.shape == ref["ref_y"].shape
    scale = _output_scale(tflite_dir / f"{name}.tflite")
    for run in ("ref_y", "builtin_y", "y"):  # reference kernels, optimized kernels, XNNPACK
        steps = _steps(got, ref[run], scale).max()
        assert steps <= 1 + 1e-4, (name, run, steps)


def _operator_graph(graph: Graph, nodes: list[Node], known: set[str]) -> tuple[list[Node],
                                                                                list[str]]:
    """``nodes`` plus the producers of any value they read that is not a tensor the
    interpreter reported (a dequantized copy made by an earlier operator); and the inputs."""
    producers = graph.producers()
    while True:
        made = {o for n in nodes for o in n.outputs}
        ext: list[str] = []
        for n in nodes:
            ext += [v for v in n.inputs
                    if v not in made and v not in graph.constants and v not in ext]
        extra = [producers[v] for v in ext if v not in known]
        if not extra:
            return nodes, ext
        nodes = extra + nodes


def _operator_steps(d: Path, name: str) -> dict[str, list[float]]:
    """Per operator: its output's largest difference from TF Lite's reference kernels, in
    steps, when run alone on the reference interpreter's own inputs."""
    tm = read_tflite((d / f"{name}.tflite").read_bytes())
    graph, ctx = convert_model(tm)
    assert not ctx.problems
    ref = reference(d, name)
    values = {int(k[len("ref_t"):]): v for k, v in ref.items() if k.startswith("ref_t")}
    values[tm.inputs[0]] = ref["x"]
    by_name = {ctx.names[i]: i for i in values}
    result: dict[str, list[float]] = {}
    for op in tm.operators:
        first, end = ctx.spans[op.index]
        if first == end:  # shape arithmetic, folded at import
            continue
        nodes, ext = _operator_graph(graph, list(graph.nodes[first:end]), set(by_name))
        feeds = {v: values[by_name[v]] for v in ext}
        out = op.outputs[0]
        sub = Graph.make([(v, TensorType(a.dtype.name, (None, *a.shape[1:])))
                          for v, a in feeds.items()], [ctx.names[out]], nodes, graph.constants)
        got = compile_graph(sub).run(feeds)[ctx.names[out]]
        t = tm.tensors[out]
        scale = float(t.scale[0]) if t.scale is not None else 1.0
        key = op.opcode
        if key == "CONCATENATION" and len({(float(tm.tensors[i].scale[0]),  # type: ignore[index]
                                            int(tm.tensors[i].zero_point[0]))  # type: ignore[index]
                                           for i in (*op.inputs, out)}) == 1:
            key = "CONCATENATION(shared)"
        result.setdefault(key, []).append(float(_steps(got, values[out], scale).max()))
    return result


@pytest.mark.parametrize("name", INT8_MODELS)
def test_each_int8_operator_matches_tflite_reference(tflite_dir: Path, name: str) -> None:  # noqa: F811
    """Every operator alone, fed the reference interpreter's own inputs (no carried error)."""
    steps = _operator_steps(tflite_dir, name)
    for opcode, found in steps.items():
        limit = 0 if opcode in EXACT_OPS or opcode == "CONCATENATION(shared)" else 1
        assert max(found) <= limit, f"{name} {opcode}: {found} steps (limit {limit})"
    assert "FULLY_CONNECTED" in steps and ("CONV_2D" in steps or name.startswith("mlp"))


def test_int8_fully_connected_is_exact(tflite_dir: Path) -> None:  # noqa: F811
    assert max(_operator_steps(tflite_dir, "mlp_int8")["FULLY_CONNECTED"]) == 0


def test_ops_int8_exercises_every_int8_form(tflite_dir: Path) -> None:  # noqa: F811
    ops = {op.opcode for op in read_tflite((tflite_dir / "ops_int8.tflite").read_bytes())
           .operators}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
            "ADD", "MUL", "CONCATENATION", "MEAN", "PAD", "LOGISTIC", "TANH", "SOFTMAX",
            "RESHAPE", "RELU", "RELU6"} <= ops
    graph_ops = {n.op for n in engine.load(tflite_dir / "ops_int8.tflite").graph.nodes}
    assert {"QConv2D", "QDense", "Quantize", "Dequantize"} <= graph_ops
    # the PAD before the depthwise conv is folded into its pads; the one before the max pool
    # is a unit 1x1 depthwise Conv2D in float, between Dequantize and Quantize
    assert sum(n.op == "Conv2D" for n in engine.load(tflite_dir / "ops_int8.tflite")
               .graph.nodes) == 1
