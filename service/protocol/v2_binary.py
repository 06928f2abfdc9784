"""The KServe v2 (Open Inference Protocol) codec, with Triton's binary tensor extension.

Pure functions, no HTTP: ``parse_request(body, header_length)`` turns an ``/infer`` body into
named numpy arrays plus the output selection; ``encode_response`` turns the result back
into a body (JSON, or a JSON header followed by raw tensor bytes).

Binary layout (Triton's ``binary_tensor_data`` extension): the HTTP header
``Inference-Header-Content-Length: H`` says the first H bytes are the JSON header; the rest
is the inputs' raw bytes, concatenated in the order of ``inputs`` for each input that has
``parameters.binary_data_size``. Fixed-size types are little-endian, row-major; BYTES
elements are each a 4-byte little-endian length followed by that many bytes.

The binary section is copied once into a 64-byte aligned, writable buffer and every tensor
is a view of it (``np.frombuffer``-style, no per-element work): the engine's numba kernels
then see the same aligned, writable, C-contiguous arrays as on any other path, so no new
specializations get compiled for read-only or misaligned inputs.

Every malformed body raises ``InvalidArgument`` (HTTP 400) with a message naming the input.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from engine import dtypes
from service.batching.jsondecode import JsonArray, decode_json
from service.errors import InvalidArgument

__all__ = [
    "NP_DTYPE",
    "RequestedOutput",
    "V2Request",
    "decode_bytes",
    "encode_bytes",
    "encode_response",
    "parse_request",
    "v2_datatype",
]

# v2 datatype -> numpy dtype, from the engine's one table (BYTES is numpy's object).
NP_DTYPE: dict[str, np.dtype[Any]] = {d.v2: np.dtype(d.name) for d in dtypes.DTYPES}
_V2_OF: dict[np.dtype[Any], str] = {dt: v2 for v2, dt in NP_DTYPE.items()}
_KNOWN = ", ".join(sorted(NP_DTYPE))
_ALIGN = 64
# a request body: the connection hands over its bytearray (writable: inputs are views of it)
_Body = bytes | bytearray | memoryview
_LEN = struct.Struct("<I")
_OPTS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class V2Request:
    """A decoded ``/infer`` request. ``outputs`` is None when the request named none (all
    outputs, binary when ``binary_output``)."""

    id: str | None
    parameters: dict[str, Any]
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None
    binary_output: bool = False
    signature: str | None = None
    batch_size: int = 1


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The v2 name of a numpy dtype (FP32, BYTES, ...)."""
    name = _V2_OF.get(dtype)
    if name is None:
        name = dtypes.info(dtype).v2  # non-native byte order and other spellings
    return name


# ---------------------------------------------------------------------------- decoding


def _dims(shape: Any, where: str) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidArgument(f"{where}: 'shape' must be a list of non-negative integers, "
                              f"got {shape!r}")
    return tuple(shape)


def _flag(params: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise InvalidArgument(f"{where}: parameter {key!r} must be true or false, got {value!r}")
    return value


def _params(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidArgument(f"{where}: 'parameters' must be an object")
    if "shared_memory_region" in params:
        raise InvalidArgument(f"{where}: shared memory is not supported; send the data in the "
                              "body (JSON 'data' or binary)")
    return params


def decode_bytes(buf: memoryview | bytes, count: int, name: str) -> np.ndarray:
    """``count`` BYTES elements (4-byte LE length + data each) filling ``buf`` exactly."""
    out = np.empty(count, dtype=object)
    mv = memoryview(buf)
    end = len(mv)
    pos = 0
    for i in range(count):
        if pos + 4 > end:
            raise InvalidArgument(
                f"input {name!r}: BYTES data ends inside the 4-byte length prefix of element "
                f"{i} of {count} (offset {pos}, {end} bytes in all)")
        (n,) = _LEN.unpack_from(mv, pos)
        pos += 4
        if pos + n > end:
            raise InvalidArgument(
                f"input {name!r}: BYTES element {i} has a length prefix of {n} bytes but only "
                f"{end - pos} bytes of its binary data are left")
        out[i] = bytes(mv[pos:pos + n])
        pos += n
    if pos != end:
        raise InvalidArgument(
            f"input {name!r}: {end - pos} bytes left after the {count} BYTES elements its "
            f"shape holds; binary_data_size and the elements' length prefixes disagree")
    return out


def _writable(mv: memoryview) -> np.ndarray:
    """The binary part as a writable uint8 array (the engine's kernels take writable arrays):
    a view of the body when the server owns it as a bytearray, else one aligned copy."""
    if not mv.readonly:
        return np.frombuffer(mv, np.uint8)
    return _aligned(mv)


def _aligned(mv: memoryview) -> np.ndarray:
    """One copy of ``mv`` into a fresh writable uint8 buffer starting on a 64-byte boundary."""
    raw = np.empty(len(mv) + _ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGN
    buf = raw[start:start + len(mv)]
    # a memoryview copy keeps the GIL (numpy's would drop it and then wait to get it back
    # from a batch thread)
    buf.data[:] = mv.cast("B")
    return buf


def _from_binary(name: str, datatype: str, shape: tuple[int, ...], buf: np.ndarray,
                 offset: int, size: int) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        return decode_bytes(buf.data[offset:offset + size], count, name).reshape(shape)
    dtype = NP_DTYPE[datatype]
    need = count * dtype.itemsize
    if size != need:
        raise InvalidArgument(
            f"input {name!r}: binary_data_size is {size} bytes but shape {list(shape)} of "
            f"{datatype} needs {need} bytes ({count} x {dtype.itemsize})")
    view = buf[offset:offset + size].view(dtype.newbyteorder("<"))
    if not view.flags.aligned:  # an odd header length or input size: one aligned copy
        view = view.copy()
    return view.astype(dtype, copy=False).reshape(shape)


def _strings(name: str, data: Any) -> Any:
    if isinstance(data, list):
        return [_strings(name, d) for d in data]
    if isinstance(data, str):
        return data.encode("utf-8")
    raise InvalidArgument(f"input {name!r}: BYTES data must be strings, got "
                          f"{type(data).__name__}")


def _from_numbers(datatype: str, data: JsonArray) -> np.ndarray | None:
    """``data`` (numbers decoded straight from the body) as the array its list would give,
    or None where only the list can say: BYTES/BOOL (their errors), decimals for integer
    types and integers out of the type's range (np.fromiter's rounding and errors), FP64
    beyond what the decoder reads exactly."""
    dtype = NP_DTYPE[datatype]
    plain = data.view(np.ndarray)
    if dtype.kind == "f":
        if plain.dtype.kind == "i":  # as a Python int converts: to float64 first
            return plain.astype(np.float64).astype(dtype, copy=False)
        if data.exact or dtype != np.float64:  # FP16/FP32: see jsondecode's "Precision"
            return plain.astype(dtype, copy=False)
        return None
    if dtype.kind in "iu" and plain.dtype.kind == "i":
        info = np.iinfo(dtype)
        if plain.size and (plain.min() < info.min or plain.max() > info.max):
            return None
        return plain.astype(dtype, copy=False)
    return None


def _from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    count = math.prod(shape)
    if isinstance(data, JsonArray):
        arr = _from_numbers(datatype, data)
        if arr is not None:
            if arr.size != count:
                raise InvalidArgument(f"input {name!r}: shape {list(shape)} holds {count} "
                                      f"elements but 'data' has {arr.size}")
            return arr.reshape(shape)
        data = data.tolist() if data.exact else orjson.loads(data.source)
    try:
        if datatype == "BYTES":
            nested = _strings(name, data)
            arr = np.empty(np.shape(nested), dtype=object)
            arr[...] = nested
        elif datatype == "BOOL":
            arr = np.asarray(data)
            if arr.size and arr.dtype != np.bool_:
                raise InvalidArgument(f"input {name!r}: BOOL data must be true/false, got "
                                      f"{arr.dtype} values")
            arr = arr.astype(np.bool_, copy=False)
        elif isinstance(data, list) and data and not isinstance(data[0], list):
            arr = np.fromiter(data, NP_DTYPE[datatype], len(data))  # flat: the common case
        else:
            arr = np.asarray(data, dtype=NP_DTYPE[datatype])
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(f"input {name!r}: 'data' is not a valid {datatype} tensor of "
                              f"shape {list(shape)} ({exc})") from None
    if arr.size != count:
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} holds {count} elements but "
                              f"'data' has {arr.size}")
    return arr.reshape(shape)


def _header(body: _Body, header_length: int | None) -> tuple[Any, memoryview]:
    mv = memoryview(body)
    if header_length is None:
        json_part, rest = mv, mv[len(mv):]
    else:
        if header_length < 0 or header_length > len(mv):
            raise InvalidArgument(
                f"Inference-Header-Content-Length is {header_length} but the body has only "
                f"{len(mv)} bytes")
        json_part, rest = mv[:header_length], mv[header_length:]
    if not len(json_part):
        raise InvalidArgument("request body is empty; expected a JSON inference request")
    try:
        if header_length is None:  # inputs[*].data straight to numpy (v1's decoder)
            doc = decode_json(body if isinstance(body, bytes | bytearray) else bytes(mv),
                              ("inputs",),
                              ("data",))
        else:
            doc = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        hint = "" if header_length is not None or b"binary_data_size" not in bytes(json_part) else (
            " (a binary body needs the Inference-Header-Content-Length header)")
        raise InvalidArgument(f"malformed JSON in the inference request: {exc}{hint}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"the inference request must be a JSON object, got "
                              f"{type(doc).__name__}")
    return doc, rest


def parse_request(body: _Body, header_length: int | None = None) -> V2Request:
    """Decode an ``/infer`` body; ``header_length`` is ``Inference-Header-Content-Length``."""
    doc, binary = _header(body, header_length)
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise InvalidArgument("'id' must be a string")
    params = _params(doc, "request")
    binary_output = _flag(params, "binary_data_output", "request", False)
    signature = params.get("signature_name")
    if signature is not None and not isinstance(signature, str):
        raise InvalidArgument("request: parameter 'signature_name' must be a string")

    specs = doc.get("inputs")
    if not isinstance(specs, list) or not specs:
        raise InvalidArgument("'inputs' must be a non-empty list of tensors")
    buf: np.ndarray | None = None
    offset = 0
    inputs: dict[str, np.ndarray] = {}
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidArgument(f"inputs[{i}] must be an object with a string 'name'")
        name = spec["name"]
        where = f"input {name!r}"
        if name in inputs:
            raise InvalidArgument(f"{where} is given twice")
        datatype = spec.get("datatype")
        if datatype not in NP_DTYPE:
            raise InvalidArgument(f"{where}: unknown datatype {datatype!r}; expected one of "
                                  f"{_KNOWN}")
        shape = _dims(spec.get("shape"), where)
        p = _params(spec, where)
        size = p.get("binary_data_size")
        if size is None:
            if "data" not in spec:
                raise InvalidArgument(f"{where}: no 'data' and no 'binary_data_size' parameter")
            inputs[name] = _from_json(name, datatype, shape, spec["data"])
        else:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidArgument(f"{where}: binary_data_size must be a non-negative "
                                      f"integer, got {size!r}")
            if "data" in spec:
                raise InvalidArgument(f"{where}: give 'data' or binary_data_size, not both")
            if offset + size > len(binary):
                raise InvalidArgument(
                    f"{where}: binary_data_size {size} runs past the end of the body "
                    f"({len(binary) - offset} bytes of binary data left at offset {offset}; "
                    "check Inference-Header-Content-Length)")
            if buf is None:
                buf = _writable(binary)
            inputs[name] = _from_binary(name, datatype, shape, buf, offset, size)
            offset += size
    if offset != len(binary):
        raise InvalidArgument(
            f"the body has {len(binary) - offset} bytes of binary data after the inputs' "
            f"binary_data_size total ({offset}); check Inference-Header-Content-Length")

    outputs = None
    wanted = doc.get("outputs")
    if wanted is not None:
        if not isinstance(wanted, list):
            raise InvalidArgument("'outputs' must be a list of {\"name\": ...} objects")
        outputs = []
        seen: set[str] = set()
        for i, out in enumerate(wanted):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise InvalidArgument(f"outputs[{i}] must be an object with a string 'name'")
            oname = out["name"]
            if oname in seen:
                raise InvalidArgument(f"output {oname!r} is requested twice")
            seen.add(oname)
            op = _params(out, f"output {oname!r}")
            if "classification" in op:
                raise InvalidArgument(f"output {oname!r}: the classification extension is not "
                                      "supported")
            outputs.append(RequestedOutput(
                oname, _flag(op, "binary_data", f"output {oname!r}", binary_output)))

    first = next(iter(inputs.values()))
    batch = int(first.shape[0]) if first.ndim else 1
    return V2Request(rid, params, inputs, outputs, binary_output, signature, batch)


# ---------------------------------------------------------------------------- encoding


def encode_bytes(arr: np.ndarray) -> bytes:
    """BYTES elements (row-major) as 4-byte LE length + data each; str is sent as UTF-8."""
    parts = []
    for item in arr.reshape(-1):
        b = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def _json_data(name: str, arr: np.ndarray) -> Any:
    if arr.dtype == object:
        out = []
        for item in arr.reshape(-1).tolist():
            if isinstance(item, bytes):
                try:
                    item = item.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidArgument(
                        f"output {name!r} holds bytes that are not UTF-8 and cannot be sent "
                        "as JSON; request it with parameters.binary_data = true") from None
            out.append(item)
        return out
    if not arr.dtype.isnative:
        return arr.reshape(-1).tolist()
    return np.ascontiguousarray(arr).reshape(-1)


def encode_response(
    model_name: str,
    model_version: int,
    outputs: Mapping[str, np.ndarray],
    request_id: str | None = None,
    requested: list[RequestedOutput] | None = None,
    binary_output: bool = False,
) -> tuple[bytes, int | None]:
    """(body, JSON header length) for ``outputs``; the length is None for a pure JSON body.

    Outputs come in the requested order (all of them, in signature order, when none was
    requested); each is binary as its request said, else as ``binary_output`` says.
    """
    order = ([(r.name, r.binary) for r in requested] if requested is not None
             else [(name, binary_output) for name in outputs])
    tensors: list[dict[str, Any]] = []
    raws: list[Any] = []
    for name, binary in order:
        arr = outputs[name]
        datatype = v2_datatype(arr.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            if arr.dtype == object:
                raw: Any = encode_bytes(arr)
            else:
                le = arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)
                raw = np.ascontiguousarray(le).reshape(-1).data.cast("B")
            entry["parameters"] = {"binary_data_size": len(raw)}
            raws.append(raw)
        else:
            entry["data"] = _json_data(name, arr)
        tensors.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = tensors
    header = orjson.dumps(doc, option=_OPTS)
    if not raws:
        return header, None
    return b"".join([header, *raws]), len(header)
