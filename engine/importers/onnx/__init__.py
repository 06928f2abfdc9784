"""ONNX importer: model.onnx -> engine graph, with every op run by our own kernels.

The ``onnx`` package only reads the file. Each ONNX node goes through its converter
(``registry.CONVERTERS``, filled by the ``ops_*`` modules); problems (unsupported ops,
attributes, op versions, dtypes) are collected over the whole file and raised as one
UnsupportedOpError. Shape arithmetic over static shapes is folded while importing; what
depends on dynamic dims (batch, sequence) stays in the graph and ``engine.passes.specialize``
resolves it per set of input shapes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from engine.errors import EngineError, ModelFormatError, UnsupportedOpError
from engine.importers import Imported
from engine.importers.onnx.context import Context
from engine.importers.onnx.registry import CONVERTERS, VERSIONS, OnnxNode
from engine.ir import Graph, TensorType, verify
from engine.model import DEFAULT_SIGNATURE, Signature, TensorSpec
from engine.passes.specialize import specialize

__all__ = ["MIN_OPSET", "convert_model", "import_onnx", "load_converters"]

MIN_OPSET = 13
# bfloat16, float8/4 and int4/2 map to ml_dtypes types the kernels do not handle; strings neither
_DTYPES = frozenset({"float16", "float32", "float64", "int8", "int16", "int32", "int64",
                     "uint8", "uint16", "uint32", "uint64", "bool"})
_MODULES = ("ops_math", "ops_shape", "ops_reduce", "ops_cnn", "ops_rnn", "ops_tensor")


def load_converters() -> None:
    """Import every converter module (fills ``CONVERTERS``); absent ones are skipped."""
    for name in _MODULES:
        full = f"{__name__}.{name}"
        try:
            importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name != full:
                raise


def import_onnx(path: Path) -> Imported:
    """Read ``path`` (a .onnx file, external data beside it) and convert it."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # the protobuf parser raises several unrelated types
        raise ModelFormatError(f"{path}: not a readable ONNX model ({exc})") from None
    return convert_model(model, str(path))


def _np_dtype(elem_type: int) -> str | None:
    from onnx import helper

    try:
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        return None
    return dt.name if dt.name in _DTYPES else None


def _value_type(vi: Any) -> TensorType | None:
    """A ValueInfoProto's tensor type (None dims for symbolic/missing), or None."""
    if not vi.type.HasField("tensor_type"):
        return None
    tt = vi.type.tensor_type
    dtype = _np_dtype(tt.elem_type)
    if dtype is None or not tt.HasField("shape"):
        return None
    dims = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tt.shape.dim)
    return TensorType(dtype, dims)


def _opset(model: Any) -> int | None:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


def _fallback_types(model: Any) -> dict[str, TensorType]:
    """ONNX's own shape inference, used only to keep checking nodes after a problem."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort here
        return {}
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = _value_type(vi)
        if t is not None:
            out[vi.name] = t
    return out


def _convert_node(ctx: Context, node: OnnxNode, opset: int) -> None:
    before = len(ctx.problems)
    _run_converter(ctx, node, opset)
    if len(ctx.problems) > before:
        ctx.poison_outputs(node)  # later nodes are still checked, not reported for this


def _run_converter(ctx: Context, node: OnnxNode, opset: int) -> None:
    from onnx import defs

    if node.domain not in ("", "ai.onnx"):
        ctx.unsupported(node, f"op domain {node.domain!r} is not supported")
        return
    converter = CONVERTERS.get(node.op_type)
    if converter is None:
        ctx.unsupported(node, f"op {node.op_type} is not supported")
        return
    try:
        version = defs.get_schema(node.op_type, opset, "").since_version
    except Exception:
        ctx.unsupported(node, f"op {node.op_type} does not exist in opset {opset}")
        return
    rng = VERSIONS[node.op_type]
    if version < rng.since or (rng.until is not None and version > rng.until):
        until = "" if rng.until is None else str(rng.until)
        ctx.unsupported(node, f"op {node.op_type} version {version} (opset {opset}) is not "
                              f"supported; supported versions: {rng.since}..{until}")
        return
    poisoned_in = any(ctx.resolve(n) in ctx.poisoned for n in node.inputs if n)
    before = len(ctx.problems)
    try:
        converter(ctx, node)
    except EngineError as exc:
        if not poisoned_in:
            ctx.unsupported(node, str(exc))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if not poisoned_in:
            ctx.unsupported(node, f"cannot convert: {type(exc).__name__}: {exc}")
    if poisoned_in or len(ctx.problems) > before:
        ctx.poison_outputs(node)
    else:
        for name in node.outputs:
            if name and not ctx.has_value(name):
                ctx.unsupported(node, f"output {name!r} is not produced (optional outputs "
                                      "of this op are not supported)")
                ctx.poison_outputs(node)
                break


def convert_model(model: Any, where: str = "model.onnx") -> Imported:
    """An ``onnx.ModelProto`` -> ``Imported`` (graph, serving_default signature)."""
    from onnx import numpy_helper

    load_converters()
    g = model.graph
    opset = _opset(model)
    if opset is None or opset < MIN_OPSET:
        raise UnsupportedOpError(
            f"{where}: default-domain opset {opset} is not supported; expected >= {MIN_OPSET} "
            "(re-export with a newer opset_version)"
        )
    names = {n for node in g.node for n in list(node.input) + list(node.output)}
    ctx = Context(opset, names | {i.name for i in g.initializer} | {i.name for i in g.input})
    ctx.fallback_types = _fallback_types(model)
    problems: list[str] = []
    for init in g.initializer:
        arr = np.asarray(numpy_helper.to_array(init))
        if arr.dtype.kind not in "biuf":
            problems.append(f"initializer {init.name!r}: dtype {arr.dtype} is not supported")
            continue
        ctx.add_const(arr, name=init.name)
    if len(g.sparse_initializer):
        problems.append("sparse initializers are not supported")
    for vi in g.input:
        if vi.name in ctx.constants:
            continue  # IR < 4 lists initializers as inputs too; they are constants here
        t = _value_type(vi)
        if t is None:
            problems.append(f"graph input {vi.name!r}: only tensors of known rank and a "
                            "numeric/bool dtype are supported")
            ctx.poisoned.add(vi.name)
            ctx.types[vi.name] = ctx.fallback_types.get(vi.name, TensorType("float32", ()))
            continue
        ctx.add_input(vi.name, t)
    for i, proto in enumerate(g.node):
        _convert_node(ctx, OnnxNode(proto, i), opset)
    problems += [str(p) for p in ctx.problems]
    outputs = []
    for vi in g.output:
        if not ctx.has_value(vi.name) and not problems:
            problems.append(f"graph output {vi.name!r} is not produced by any node")
        resolved = ctx.resolve(vi.name)
        if resolved != vi.name and vi.name not in ctx.types:
            ctx.emit("Identity", [resolved], outputs=[vi.name])
        outputs.append(vi.name)
    if problems:
        unsupported_ops = sorted({p.op_type for p in ctx.problems
                                  if p.why.startswith(f"op {p.op_type} is not supported")})
        head = f"{where}: cannot import {len(problems)} part(s) of the model"
        if unsupported_ops:
            head += f" (unsupported ops: {', '.join(unsupported_ops)})"
        raise UnsupportedOpError(head + ":\n  - " + "\n  - ".join(problems))
    graph = Graph.make(ctx.inputs, outputs, ctx.nodes, ctx.constants)
    try:
        graph = verify(specialize(verify(graph)))
    except EngineError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    return Imported(graph, _signatures(graph, g), {"opset": opset, "source": "onnx"})


def _signatures(graph: Graph, g: Any) -> dict[str, Signature]:
    """serving_default: the ONNX inputs and outputs under their own names; output dims the
    engine leaves dynamic take the file's declared value where it has one."""
    declared = {vi.name: _value_type(vi) for vi in g.output}
    ins = {n: TensorSpec(n, t.dtype, t.shape) for n, t in graph.inputs}
    outs = {}
    for name in graph.outputs:
        t = graph.types[name]
        d = declared.get(name)
        shape = t.shape
        if d is not None and d.rank == t.rank:
            shape = tuple(a if a is not None else b for a, b in zip(t.shape, d.shape,
                                                                    strict=True))
        outs[name] = TensorSpec(name, t.dtype, shape)
    return {DEFAULT_SIGNATURE: Signature(MappingProxyType(ins), MappingProxyType(outs))}
