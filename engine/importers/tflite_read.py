"""A ``.tflite`` flatbuffer -> plain Python records (tensors, operators, signatures).

The only module that touches the ``tflite`` package (the generated flatbuffer accessors); it is
imported only when a ``.tflite`` file is loaded. Operator options are decoded generically into
a dict keyed by the schema's field names (``Padding``, ``StrideW``, ``FusedActivationFunction``
...), so a converter can reject any field it does not understand.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tflite

from engine.errors import ModelFormatError

__all__ = ["TOperator", "TSignature", "TTensor", "TModel", "read_tflite", "enum_name"]

_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "INT32": "int32",
           "INT64": "int64", "INT16": "int16", "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}


def _enum(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


_OPCODES = _enum(tflite.BuiltinOperator)
_TENSOR_TYPES = _enum(tflite.TensorType)
_OPTION_TYPES = _enum(tflite.BuiltinOptions)
ENUMS = {"activation": _enum(tflite.ActivationFunctionType), "padding": _enum(tflite.Padding)}


def enum_name(kind: str, value: int) -> str:
    return ENUMS[kind].get(value, str(value))


@dataclass(frozen=True)
class TTensor:
    index: int
    name: str
    tflite_type: str  # the schema's name: FLOAT32, INT8 ...
    shape: tuple[int | None, ...]  # shape_signature where present: None for -1 (dynamic)
    data: np.ndarray | None  # constant value, or None
    scale: np.ndarray | None = None  # quantization scales (float32), per tensor or per channel
    zero_point: np.ndarray | None = None
    quantized_dimension: int = 0
    problems: tuple[str, ...] = ()  # what makes this tensor unsupported

    @property
    def dtype(self) -> str | None:
        return _DTYPES.get(self.tflite_type)

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale.size > 0

    def label(self) -> str:
        return f"tensor {self.index} {self.name!r}"


@dataclass(frozen=True)
class TOperator:
    index: int
    opcode: str  # BuiltinOperator name, or "CUSTOM(name)"
    version: int
    inputs: tuple[int, ...]  # -1: an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    options_type: str = ""

    def label(self) -> str:
        return f"op {self.index} {self.opcode}"


@dataclass(frozen=True)
class TSignature:
    key: str
    inputs: dict[str, int]  # alias -> tensor index
    outputs: dict[str, int]


@dataclass(frozen=True)
class TModel:
    tensors: tuple[TTensor, ...]
    operators: tuple[TOperator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    signatures: tuple[TSignature, ...]
    description: str
    subgraphs: int


def _buffer(model: Any, data: bytes, index: int) -> np.ndarray | None:
    if index <= 0 or index >= model.BuffersLength():
        return None
    buf = model.Buffers(index)
    offset, size = int(buf.Offset()), int(buf.Size())
    if offset > 1:  # models over 2 GB keep buffers after the flatbuffer
        return np.frombuffer(data, dtype=np.uint8, count=size, offset=offset)
    if buf.DataLength() == 0:
        return None
    arr: np.ndarray = buf.DataAsNumpy()
    return arr


def _tensor(model: Any, sub: Any, data: bytes, i: int) -> TTensor:
    t = sub.Tensors(i)
    name = t.Name().decode("utf-8", "replace") if t.Name() else f"tensor_{i}"
    ttype = _TENSOR_TYPES.get(t.Type(), str(t.Type()))
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
    problems = []
    if ttype not in _DTYPES:
        problems.append(f"element type {ttype} is not supported")
    if t.Sparsity() is not None:
        problems.append("sparse tensors are not supported")
    if t.IsVariable():
        problems.append("variable tensors are not supported")
    value = None
    raw = _buffer(model, data, t.Buffer())
    if raw is not None and ttype in _DTYPES:
        dtype = np.dtype(_DTYPES[ttype]).newbyteorder("<")
        count = int(np.prod(shape)) if shape else 1
        if raw.size != count * dtype.itemsize:
            raise ModelFormatError(f"tensor {i} {name!r}: buffer holds {raw.size} bytes, shape "
                                   f"{shape} of {ttype} needs {count * dtype.itemsize}")
        value = np.frombuffer(raw.tobytes(), dtype=dtype).astype(dtype.newbyteorder("="))
        value = value.reshape(shape)
    scale = zp = None
    qdim = 0
    q = t.Quantization()
    if q is not None and q.ScaleLength():
        scale = q.ScaleAsNumpy().astype(np.float32)
        zp = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros(
            scale.shape, np.int64)
        qdim = int(q.QuantizedDimension())
    if q is not None and q.DetailsType() != 0:
        problems.append("custom quantization details are not supported")
    return TTensor(i, name, ttype, tuple(None if d < 0 else d for d in sig), value, scale, zp,
                   qdim, tuple(problems))


_SKIP = {"Init", "GetRootAs"}


def _options(op: Any) -> tuple[str, dict[str, Any]]:
    kind = _OPTION_TYPES.get(op.BuiltinOptionsType(), "NONE")
    table = op.BuiltinOptions()
    if kind == "NONE" or table is None:
        return "", {}
    cls = getattr(tflite, kind)
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for name in dir(cls):
        if name.startswith("_") or name in _SKIP or name.startswith("GetRootAs") or \
                name.endswith(("BufferHasIdentifier", "Length", "IsNone")):
            continue
        fn = getattr(obj, name)
        if not callable(fn) or len(inspect.signature(fn).parameters) != 0:
            continue
        value = fn()
        if name.endswith("AsNumpy"):
            name = name[: -len("AsNumpy")]
            value = [int(v) for v in value] if not isinstance(value, int) else []
        out[name] = value
    return kind, out


def read_tflite(data: bytes) -> TModel:
    """Parse the first subgraph (the one the interpreter runs) into plain records."""
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        n_sub = model.SubgraphsLength()
    except Exception as exc:  # the generated accessors raise anything on garbage
        raise ModelFormatError(f"not a TF Lite flatbuffer ({type(exc).__name__}: {exc})") from None
    if n_sub < 1:
        raise ModelFormatError("the TF Lite model has no subgraph")
    sub = model.Subgraphs(0)
    tensors = tuple(_tensor(model, sub, data, i) for i in range(sub.TensorsLength()))
    ops = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        opcode = _OPCODES.get(builtin, f"BUILTIN_{builtin}")
        if opcode == "CUSTOM":
            custom = code.CustomCode()
            opcode = f"CUSTOM({custom.decode() if custom else '?'})"
        kind, options = _options(op)
        ops.append(TOperator(i, opcode, int(code.Version()),
                             tuple(int(v) for v in op.InputsAsNumpy()) if op.InputsLength()
                             else (),
                             tuple(int(v) for v in op.OutputsAsNumpy()) if op.OutputsLength()
                             else (),
                             options, kind))
    sigs = []
    for s in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(s)
        if sd.SubgraphIndex() != 0:
            continue
        ins = {sd.Inputs(j).Name().decode(): int(sd.Inputs(j).TensorIndex())
               for j in range(sd.InputsLength())}
        outs = {sd.Outputs(j).Name().decode(): int(sd.Outputs(j).TensorIndex())
                for j in range(sd.OutputsLength())}
        sigs.append(TSignature(sd.SignatureKey().decode(), ins, outs))
    desc = model.Description()
    return TModel(tensors, tuple(ops), tuple(int(v) for v in sub.InputsAsNumpy()),
                  tuple(int(v) for v in sub.OutputsAsNumpy()), tuple(sigs),
                  desc.decode("utf-8", "replace") if desc else "", n_sub)
