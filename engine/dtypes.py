"""One table: numpy dtype <-> TF Serving name (DT_FLOAT) <-> KServe v2 name (FP32)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import DTypeError

__all__ = ["DTypeInfo", "DTYPES", "canonical", "from_tf", "from_v2", "info"]


@dataclass(frozen=True)
class DTypeInfo:
    name: str  # numpy name, the engine's canonical spelling
    tf: str
    v2: str


DTYPES: tuple[DTypeInfo, ...] = (
    DTypeInfo("float32", "DT_FLOAT", "FP32"),
    DTypeInfo("float64", "DT_DOUBLE", "FP64"),
    DTypeInfo("float16", "DT_HALF", "FP16"),
    DTypeInfo("int8", "DT_INT8", "INT8"),
    DTypeInfo("int16", "DT_INT16", "INT16"),
    DTypeInfo("int32", "DT_INT32", "INT32"),
    DTypeInfo("int64", "DT_INT64", "INT64"),
    DTypeInfo("uint8", "DT_UINT8", "UINT8"),
    DTypeInfo("uint16", "DT_UINT16", "UINT16"),
    DTypeInfo("uint32", "DT_UINT32", "UINT32"),
    DTypeInfo("uint64", "DT_UINT64", "UINT64"),
    DTypeInfo("bool", "DT_BOOL", "BOOL"),
    DTypeInfo("object", "DT_STRING", "BYTES"),
)

_BY_NAME = {d.name: d for d in DTYPES}
_BY_TF = {d.tf: d for d in DTYPES}
_BY_V2 = {d.v2: d for d in DTYPES}


def canonical(dtype: object) -> str:
    """The engine's name for anything numpy accepts as a dtype ('float32', np.float32, ...)."""
    try:
        name = str(np.dtype(dtype).name)  # type: ignore[call-overload]
    except TypeError as exc:
        raise DTypeError(f"unknown dtype {dtype!r}") from exc
    if name not in _BY_NAME:
        raise DTypeError(f"dtype {name!r} is not supported; supported: {sorted(_BY_NAME)}")
    return name


def info(dtype: object) -> DTypeInfo:
    return _BY_NAME[canonical(dtype)]


def from_tf(tf_name: str) -> str:
    try:
        return _BY_TF[tf_name].name
    except KeyError:
        raise DTypeError(f"unknown TF dtype {tf_name!r}; known: {sorted(_BY_TF)}") from None


def from_v2(v2_name: str) -> str:
    try:
        return _BY_V2[v2_name].name
    except KeyError:
        raise DTypeError(f"unknown datatype {v2_name!r}; known: {sorted(_BY_V2)}") from None
