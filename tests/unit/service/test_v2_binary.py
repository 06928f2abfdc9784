"""The v2 codec (service/protocol/v2_binary.py): JSON and binary requests to arrays, arrays to
responses, and every malformed body a clear 400 (InvalidArgument), never anything else.

Bodies are built here by hand and with tritonclient's own serializer (an independent encoder
of the BYTES wire format), and responses are read back with tritonclient's ``InferResult``.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.http import InferResult
from tritonclient.utils import serialize_byte_tensor

from service.errors import InvalidArgument
from service.protocol.v2_binary import (
    NP_DTYPE,
    RequestedOutput,
    decode_bytes,
    encode_bytes,
    encode_response,
    parse_request,
)

NUMERIC = sorted(k for k in NP_DTYPE if k != "BYTES")


def binary_body(tensors: list[tuple[str, str, np.ndarray]], **extra: Any) -> tuple[bytes, int]:
    """(body, header length) for inputs sent as binary, in order."""
    specs, raws = [], []
    for name, datatype, arr in tensors:
        raw = (serialize_byte_tensor(arr).item() if datatype == "BYTES" else arr.tobytes())
        specs.append({"name": name, "shape": list(arr.shape), "datatype": datatype,
                      "parameters": {"binary_data_size": len(raw)}})
        raws.append(raw)
    header = orjson.dumps({"inputs": specs, **extra})
    return header + b"".join(raws), len(header)


def sample(datatype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = NP_DTYPE[datatype]
    if datatype == "BOOL":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -1000), min(info.max, 1000), shape).astype(dtype)
    return rng.normal(0, 10, shape).astype(dtype)


def bad(body: bytes, header_length: int | None = None) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_request(body, header_length)
    return info.value.message


# ---------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("datatype", NUMERIC)
def test_binary_inputs_every_datatype(datatype: str) -> None:
    a = sample(datatype, (2, 3, 4))
    body, h = binary_body([("a", datatype, a)])
    req = parse_request(body, h)
    got = req.inputs["a"]
    assert got.dtype == a.dtype and got.shape == a.shape
    np.testing.assert_array_equal(got, a)
    # What the engine's kernels need: no copy per request beyond one, aligned, writable.
    assert got.flags.c_contiguous and got.flags.writeable and got.flags.aligned
    assert got.ctypes.data % 64 == 0
    assert req.batch_size == 2


@pytest.mark.parametrize("datatype", NUMERIC)
def test_json_inputs_every_datatype_flat_and_nested(datatype: str) -> None:
    a = sample(datatype, (2, 3))
    for data in (a.reshape(-1).tolist(), a.tolist()):
        doc = {"inputs": [{"name": "a", "shape": [2, 3], "datatype": datatype, "data": data}]}
        got = parse_request(orjson.dumps(doc)).inputs["a"]
        assert got.dtype == a.dtype
        np.testing.assert_array_equal(got, a)


def test_views_share_one_buffer_and_odd_offsets_are_realigned() -> None:
    u8 = np.arange(3, dtype=np.uint8)  # 3 bytes: the next input starts misaligned
    f = np.arange(6, dtype=np.float32).reshape(2, 3)
    s = np.array([b"x", b"", "ünï".encode()], dtype=object)
    d = np.arange(4, dtype=np.float64)
    body, h = binary_body([("u", "UINT8", u8), ("f", "FP32", f), ("s", "BYTES", s),
                           ("d", "FP64", d)])
    req = parse_request(body, h)
    assert list(req.inputs) == ["u", "f", "s", "d"]
    for name, want in (("u", u8), ("f", f), ("s", s), ("d", d)):
        np.testing.assert_array_equal(req.inputs[name], want)
    for name in ("f", "d"):
        arr = req.inputs[name]
        assert arr.flags.aligned and arr.ctypes.data % arr.itemsize == 0


@pytest.mark.parametrize("datatype", NUMERIC)
@pytest.mark.parametrize("pad", [0, 1, 3])
def test_a_bytearray_body_is_viewed_not_copied(datatype: str, pad: int) -> None:
    """The connection hands over its bytearray: the inputs are views of it where the data
    starts aligned, one aligned copy where it does not; writable either way."""
    a = sample(datatype, (2, 3, 4))
    body, h = binary_body([("a", datatype, a)])
    header = body[:h] + b" " * (-h % 64 + pad)  # JSON allows trailing whitespace
    owned = bytearray(header + body[h:])
    start = np.frombuffer(owned, np.uint8).ctypes.data + len(header)
    got = parse_request(owned, len(header)).inputs["a"]
    np.testing.assert_array_equal(got, a)
    assert got.dtype == a.dtype and got.shape == a.shape
    assert got.flags.c_contiguous and got.flags.writeable and got.flags.aligned
    assert np.shares_memory(got, np.frombuffer(owned, np.uint8)) == (
        start % a.itemsize == 0)


def test_binary_and_json_inputs_mixed() -> None:
    f = np.ones((1, 2), np.float32)
    header = orjson.dumps({"id": "r1", "inputs": [
        {"name": "j", "shape": [2], "datatype": "INT32", "data": [1, 2]},
        {"name": "b", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
    ], "outputs": [{"name": "o", "parameters": {"binary_data": True}}, {"name": "p"}],
        "parameters": {"binary_data_output": False, "signature_name": "sig"}})
    req = parse_request(header + f.tobytes(), len(header))
    assert req.id == "r1" and req.signature == "sig"
    np.testing.assert_array_equal(req.inputs["j"], [1, 2])
    np.testing.assert_array_equal(req.inputs["b"], f)
    assert req.outputs == [RequestedOutput("o", True), RequestedOutput("p", False)]


def test_binary_data_output_is_the_default_for_outputs() -> None:
    doc = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}],
           "outputs": [{"name": "o"}, {"name": "p", "parameters": {"binary_data": False}}],
           "parameters": {"binary_data_output": True}}
    req = parse_request(orjson.dumps(doc))
    assert req.binary_output
    assert req.outputs == [RequestedOutput("o", True), RequestedOutput("p", False)]


def test_bytes_json_and_binary() -> None:
    doc = {"inputs": [{"name": "s", "shape": [2, 1], "datatype": "BYTES",
                       "data": [["héllo"], [""]]}]}
    got = parse_request(orjson.dumps(doc)).inputs["s"]
    assert got.dtype == object and got.shape == (2, 1)
    assert got.tolist() == [["héllo".encode()], [b""]]
    elems = np.array([b"\x00\xff", b"abc", b""], dtype=object)
    assert decode_bytes(serialize_byte_tensor(elems).item(), 3, "s").tolist() == elems.tolist()
    assert decode_bytes(encode_bytes(elems), 3, "s").tolist() == elems.tolist()


def test_empty_tensor() -> None:
    body, h = binary_body([("a", "FP32", np.zeros((0, 4), np.float32))])
    assert parse_request(body, h).inputs["a"].shape == (0, 4)


# ---------------------------------------------------------------------------- malformed


def test_header_length_past_the_body() -> None:
    body, _ = binary_body([("a", "FP32", np.ones(4, np.float32))])
    assert "past" in bad(body, len(body) + 1) or "only" in bad(body, len(body) + 1)
    assert "Inference-Header-Content-Length is" in bad(body, len(body) + 10)
    assert "Inference-Header-Content-Length" in bad(body, -1)


def test_header_length_too_short_or_too_long() -> None:
    body, h = binary_body([("a", "FP32", np.ones(4, np.float32))])
    assert "malformed JSON" in bad(body, h - 3)
    assert "malformed JSON" in bad(body, h + 3)  # JSON followed by raw bytes
    # No header length: the binary tail makes the JSON invalid, with a hint.
    assert "Inference-Header-Content-Length" in bad(body, None)


@pytest.mark.parametrize("size", [15, 17, 0])
def test_size_does_not_match_shape(size: int) -> None:
    header = orjson.dumps({"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP32",
                                       "parameters": {"binary_data_size": size}}]})
    msg = bad(header + b"\0" * size, len(header))
    assert "'a'" in msg and "16 bytes" in msg and f"{size} bytes" in msg


def test_size_past_the_end_and_trailing_bytes() -> None:
    header = orjson.dumps({"inputs": [{"name": "a", "shape": [4], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 16}}]})
    msg = bad(header + b"\0" * 12, len(header))
    assert "'a'" in msg and "past the end" in msg
    msg = bad(header + b"\0" * 20, len(header))
    assert "4 bytes of binary data after" in msg


def test_unknown_datatype() -> None:
    for dt in ("FP8", "BF16", "fp32", None, 3):
        doc = {"inputs": [{"name": "a", "shape": [1], "datatype": dt, "data": [1]}]}
        msg = bad(orjson.dumps(doc))
        assert "unknown datatype" in msg and "FP32" in msg


@pytest.mark.parametrize("raw,what", [
    (b"\x05\x00\x00\x00ab", "length prefix of 5 bytes"),
    (b"\x01\x00", "inside the 4-byte length prefix of element 0"),
    (b"\x01\x00\x00\x00a", "inside the 4-byte length prefix of element 1"),
    (b"\x01\x00\x00\x00a\x01\x00\x00\x00bXY", "2 bytes left after the 2 BYTES elements"),
    (b"\xff\xff\xff\xff", "length prefix of 4294967295 bytes"),
])
def test_bytes_with_bad_length_prefixes(raw: bytes, what: str) -> None:
    header = orjson.dumps({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": len(raw)}}]})
    msg = bad(header + raw, len(header))
    assert "'s'" in msg and what in msg, msg


@pytest.mark.parametrize("doc,what", [
    ({}, "'inputs' must be a non-empty list"),
    ({"inputs": []}, "'inputs' must be a non-empty list"),
    ({"inputs": [1]}, "inputs[0] must be an object"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}, "no 'data'"),
    ({"inputs": [{"name": "a", "shape": [-1], "datatype": "FP32", "data": [1]}]},
     "non-negative integers"),
    ({"inputs": [{"name": "a", "shape": "2", "datatype": "FP32", "data": [1]}]},
     "non-negative integers"),
    ({"inputs": [{"name": "a", "shape": [3], "datatype": "FP32", "data": [1, 2]}]},
     "holds 3 elements but 'data' has 2"),
    ({"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [[1], [2, 3]]}]},
     "not a valid FP32 tensor"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": ["x"]}]},
     "not a valid FP32 tensor"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "UINT8", "data": [300]}]},
     "not a valid UINT8 tensor"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "BOOL", "data": [2]}]},
     "BOOL data must be true/false"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "data": [1]}]},
     "BYTES data must be strings"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}] * 2},
     "given twice"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1],
                  "parameters": {"binary_data_size": 4}}]}, "not both"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32",
                  "parameters": {"shared_memory_region": "r"}}]}, "shared memory"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32",
                  "parameters": {"binary_data_size": "4"}}]}, "non-negative integer"),
    ({"id": 5, "inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}]},
     "'id' must be a string"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}],
      "outputs": [{"name": "o", "parameters": {"classification": 2}}]}, "classification"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}],
      "outputs": [{"name": "o"}, {"name": "o"}]}, "requested twice"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}],
      "parameters": {"binary_data_output": "yes"}}, "true or false"),
])
def test_malformed_json_requests(doc: Any, what: str) -> None:
    assert what in bad(orjson.dumps(doc))


def test_not_json_at_all() -> None:
    assert "empty" in bad(b"")
    assert "malformed JSON" in bad(b"\xff\xfe")
    assert "must be a JSON object" in bad(b"[1, 2]")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.one_of(st.none(), st.integers(-5, 250)))
def test_garbage_is_refused_with_400_only(body: bytes, header_length: int | None) -> None:
    try:
        parse_request(body, header_length)
    except InvalidArgument:
        pass


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mangled_binary_requests_are_refused_with_400_only(data: st.DataObject) -> None:
    """A valid body with its header length, sizes or bytes changed: a result or a 400."""
    s = np.array([b"ab", b"c"], dtype=object)
    body, h = binary_body([("f", "FP32", np.ones((2, 2), np.float32)), ("s", "BYTES", s)])
    raw = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        parse_request(bytes(raw[:cut]), data.draw(st.sampled_from([h, h - 1, h + 1, None])))
    except InvalidArgument:
        pass


# ---------------------------------------------------------------------------- encoding


def read(body: bytes, header_length: int | None) -> InferResult:
    return InferResult.from_response_body(body, header_length=header_length)


def test_encode_json_response() -> None:
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    s = np.array([b"a", "é".encode()], dtype=object)
    body, h = encode_response("m", 3, {"y": y, "s": s}, request_id="42")
    assert h is None
    doc = orjson.loads(body)
    assert doc["model_name"] == "m" and doc["model_version"] == "3" and doc["id"] == "42"
    assert doc["outputs"][0] == {"name": "y", "datatype": "FP32", "shape": [2, 3],
                                 "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}
    assert doc["outputs"][1]["data"] == ["a", "é"]
    res = read(body, h)
    np.testing.assert_array_equal(res.as_numpy("y"), y)


@pytest.mark.parametrize("datatype", NUMERIC + ["BYTES"])
def test_encode_binary_response_every_datatype(datatype: str) -> None:
    arr = (np.array([[b"x", b"\xff\x00"], [b"", b"yz"]], dtype=object) if datatype == "BYTES"
           else sample(datatype, (2, 2), seed=1))
    body, h = encode_response("m", 1, {"o": arr}, binary_output=True)
    assert h is not None
    got = read(body, h).as_numpy("o")
    assert got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


def test_encode_selected_outputs_in_requested_order_and_format() -> None:
    outs = {"a": np.ones(2, np.float32), "b": np.zeros(3, np.int64)}
    req = [RequestedOutput("b", False), RequestedOutput("a", True)]
    body, h = encode_response("m", 1, outs, requested=req)
    assert h is not None
    doc = orjson.loads(body[:h])
    assert [o["name"] for o in doc["outputs"]] == ["b", "a"]
    assert doc["outputs"][0]["data"] == [0, 0, 0]
    assert doc["outputs"][1]["parameters"] == {"binary_data_size": 8}
    assert len(body) == h + 8
    res = read(body, h)
    np.testing.assert_array_equal(res.as_numpy("a"), outs["a"])
    np.testing.assert_array_equal(res.as_numpy("b"), outs["b"])


def test_non_utf8_bytes_output_needs_binary() -> None:
    with pytest.raises(InvalidArgument, match="binary_data"):
        encode_response("m", 1, {"s": np.array([b"\xff"], dtype=object)})


def test_bytes_wire_format() -> None:
    arr = np.array([b"ab", b""], dtype=object)
    assert encode_bytes(arr) == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)
