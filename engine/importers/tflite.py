"""``model.tflite`` -> engine IR, with no TF Lite runtime: the flatbuffer is parsed with the
``tflite`` package and each builtin operator becomes engine nodes (float32, or int8 with TF
Lite's integer arithmetic for conv / depthwise conv / fully connected).

Every unsupported operator, option or tensor is collected, and the load fails once with all of
them listed by operator and tensor index. See docs/tflite-support.md for the covered subset.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.errors import EngineError, ModelFormatError, UnsupportedOpError
from engine.importers import Imported
from engine.importers import tflite_eltwise as _eltwise  # noqa: F401  (registers converters)
from engine.importers import tflite_shape as _shape  # noqa: F401  (registers converters)
from engine.importers.tflite_ctx import Context
from engine.importers.tflite_ops import CONVERTERS
from engine.importers.tflite_read import TModel, read_tflite
from engine.ir import Graph, TensorType, verify
from engine.model import DEFAULT_SIGNATURE, Signature, TensorSpec

__all__ = ["import_tflite", "convert_model"]


def convert_model(model: TModel) -> tuple[Graph, Context]:
    """The engine graph (not verified) and the finished context: ``problems`` (empty when the
    graph is complete), ``names`` (tensor index -> engine value) and ``spans`` (operator
    index -> the slice of ``graph.nodes`` it became)."""
    ctx = Context(model)
    if model.subgraphs > 1:
        ctx.problems.append(f"the model has {model.subgraphs} subgraphs; only the first is "
                            "imported (control flow is not supported)")
    for t in model.tensors:
        for why in t.problems:
            ctx.problems.append(f"{t.label()}: {why}")
    inputs: list[tuple[str, TensorType]] = []
    for i in model.inputs:
        ty = ctx.type_of(i)
        if ty.dtype not in ("float32", "int8", "int32", "int64", "uint8", "bool"):
            ctx.problems.append(f"input {ctx.tensor(i).label()}: element type {ty.dtype} is "
                                "not supported")
        inputs.append((ctx.names[i], ty))
    for op in model.operators:
        conv = CONVERTERS.get(op.opcode)
        if conv is None:
            ctx.unsupported(op, "operator not supported")
            continue
        before, first = len(ctx.problems), len(ctx.nodes)
        try:
            conv(ctx, op)
            ctx.spans[op.index] = (first, len(ctx.nodes))
        except (EngineError, ValueError, IndexError, KeyError, TypeError) as exc:
            if len(ctx.problems) == before:
                ctx.unsupported(op, f"conversion failed ({type(exc).__name__}: {exc})")
    for i in model.outputs:
        ctx.value(i)  # a constant output becomes a graph constant
    graph = Graph.make(inputs, [ctx.names[i] for i in model.outputs], ctx.nodes, ctx.constants)
    return graph, ctx


def _signatures(model: TModel, graph: Graph, names: dict[int, str]) -> dict[str, Signature]:
    def spec(i: int) -> TensorSpec:
        t = graph.type_of(names[i])
        return TensorSpec(names[i], t.dtype, t.shape)

    sigs: dict[str, Signature] = {}
    for sd in model.signatures:
        sigs[sd.key] = Signature(MappingProxyType({k: spec(i) for k, i in sd.inputs.items()}),
                                 MappingProxyType({k: spec(i) for k, i in sd.outputs.items()}))
    if sigs and DEFAULT_SIGNATURE not in sigs and len(sigs) == 1:
        sigs[DEFAULT_SIGNATURE] = next(iter(sigs.values()))
    return sigs


def import_tflite(path: Path) -> Imported:
    try:
        model = read_tflite(Path(path).read_bytes())
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read ({exc})") from None
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None
    graph, ctx = convert_model(model)
    problems, names = ctx.problems, ctx.names
    if problems:
        raise UnsupportedOpError(
            f"{path}: cannot import {len(problems)} TF Lite operator(s)/tensor(s): "
            + "; ".join(problems))
    try:
        graph = verify(graph)
    except EngineError as exc:
        raise type(exc)(f"{path}: the imported graph is invalid: {exc}") from None
    sigs = _signatures(model, graph, names) or None
    meta: dict[str, Any] = {"source_format": "tflite", "source_file": Path(path).name}
    if model.description:
        meta["description"] = model.description
    return Imported(graph, sigs, meta)
