"""Triton's binary tensor extension against a real server: every datatype both ways through
``tritonclient.http``, and malformed binary bodies sent raw -> 400 with a clear message, the
server unharmed."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as tc

import engine
from engine import Graph, TensorType
from tests.integration.conftest import Server, dense_expected, model_config, write_dense

# v2 datatype -> numpy dtype of the identity model's inputs (one per numeric datatype).
TYPES = {"BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
         "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
         "FP16": "float16", "FP32": "float32", "FP64": "float64"}
X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


def write_identity(path: Path) -> Path:
    """One input per datatype, ``t_<datatype>`` [-1, 3], returned unchanged as an output."""
    names = [f"t_{k.lower()}" for k in TYPES]
    g = Graph.make([(n, TensorType(dt, (None, 3))) for n, dt in zip(names, TYPES.values(),
                                                                    strict=True)],
                   names, [])
    return engine.save(path, g)


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("models")
    write_dense(root / "dense" / "1", bias=1.0)
    write_identity(root / "identity" / "1")
    (root / "models.config").write_text(
        model_config({"dense": root / "dense", "identity": root / "identity"}))
    return start_server([f"--model_config_file={root / 'models.config'}"])


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    c = tc.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=30.0)
    yield c
    c.close()


def values(v2: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(TYPES[v2])
    if dtype.kind == "b":
        return rng.integers(0, 2, (2, 3)).astype(bool)
    if dtype.kind in "iu":
        return rng.integers(0, 100, (2, 3)).astype(dtype)
    return rng.normal(0, 10, (2, 3)).astype(dtype)


@pytest.mark.parametrize("binary_in,binary_out", [(True, True), (False, False), (True, False)])
def test_every_datatype_round_trips(client: Any, binary_in: bool, binary_out: bool) -> None:
    sent = {}
    inputs = []
    for i, v2 in enumerate(TYPES):
        name = f"t_{v2.lower()}"
        sent[name] = values(v2, i)
        inp = tc.InferInput(name, [2, 3], v2)
        inp.set_data_from_numpy(sent[name], binary_data=binary_in)
        inputs.append(inp)
    outs = [tc.InferRequestedOutput(n, binary_data=binary_out) for n in sent]
    res = client.infer("identity", inputs, outputs=outs)
    for name, want in sent.items():
        got = res.as_numpy(name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    entries = {o["name"]: o for o in res.get_response()["outputs"]}
    assert entries["t_fp16"]["datatype"] == "FP16"
    assert ("parameters" in entries["t_fp32"]) is binary_out


def test_server_ready(client: Any) -> None:
    assert client.is_server_ready() and client.is_model_ready("identity")


def post(server: Server, body: bytes, header_length: int | None,
         path: str = "/v2/models/dense/infer") -> httpx.Response:
    headers = {} if header_length is None else {
        "Inference-Header-Content-Length": str(header_length)}
    return server.client.post(path, content=body, headers=headers)


def error_of(r: httpx.Response, status: int = 400) -> str:
    assert r.status_code == status, r.text
    doc = r.json()
    assert set(doc) == {"error"} and doc["error"], doc
    return str(doc["error"])


def header(size: int, datatype: str = "FP32", shape: list[int] | None = None,
           name: str = "x") -> bytes:
    return orjson.dumps({"inputs": [{"name": name, "shape": shape or [1, 4],
                                     "datatype": datatype,
                                     "parameters": {"binary_data_size": size}}]})


def test_raw_binary_request_and_response(server: Server) -> None:
    h = orjson.dumps({"id": "b1", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                              "parameters": {"binary_data_size": 16}}],
                      "outputs": [{"name": "y", "parameters": {"binary_data": True}}]})
    r = post(server, h + X.tobytes(), len(h))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    n = int(r.headers["inference-header-content-length"])
    doc = orjson.loads(r.content[:n])
    assert doc["id"] == "b1"
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 8}
    y = np.frombuffer(r.content[n:], dtype="<f4").reshape(1, 2)
    np.testing.assert_allclose(y, dense_expected(X, 1.0), rtol=1e-6)


@pytest.mark.parametrize("make,header_length,needle", [
    # header length past the end of the body
    (lambda: header(16) + X.tobytes(), 10_000, "but the body has only"),
    # header length cutting the JSON short
    (lambda: header(16) + X.tobytes(), 5, "malformed JSON"),
    # binary_data_size larger than what is there
    (lambda: header(32) + X.tobytes(), None, "past the end of the body"),
    # sizes that do not match shape x dtype
    (lambda: header(12) + X.tobytes()[:12], None, "needs 16 bytes"),
    (lambda: header(16, shape=[1, 3]) + X.tobytes(), None, "needs 12 bytes"),
    (lambda: header(16, "FP64") + X.tobytes(), None, "needs 32 bytes"),
    # extra bytes after the declared tensors
    (lambda: header(16) + X.tobytes() + b"xx", None, "2 bytes of binary data after"),
    # unknown datatype
    (lambda: header(16, "FP8") + X.tobytes(), None, "unknown datatype 'FP8'"),
    # BYTES with bad length prefixes
    (lambda: header(8, "BYTES", [1]) + struct.pack("<I", 100) + b"abcd", None,
     "length prefix of 100 bytes"),
    (lambda: header(6, "BYTES", [2]) + struct.pack("<I", 1) + b"a" + b"\x01", None,
     "inside the 4-byte length prefix of element 1"),
    (lambda: header(7, "BYTES", [1]) + struct.pack("<I", 1) + b"abc", None,
     "2 bytes left after the 1 BYTES elements"),
])
def test_malformed_binary_bodies_are_400(server: Server, make: Any, header_length: int | None,
                                         needle: str) -> None:
    body = make()
    if header_length is None:
        header_length = body.index(b"}]}") + 3
    msg = error_of(post(server, body, header_length))
    assert needle in msg, msg
    # Nothing crashed: the next good request is served.
    h = header(16)
    assert post(server, h + X.tobytes(), len(h)).status_code == 200


def test_header_length_that_is_not_a_number(server: Server) -> None:
    r = server.client.post("/v2/models/dense/infer", content=b"{}",
                           headers={"Inference-Header-Content-Length": "ten"})
    assert "must be an integer" in error_of(r)


def test_binary_body_without_header_length(server: Server) -> None:
    h = header(16)
    msg = error_of(post(server, h + X.tobytes(), None))
    assert "Inference-Header-Content-Length" in msg


def test_binary_input_of_the_wrong_dtype_names_the_input(server: Server) -> None:
    h = header(4, "BYTES", [1, 1])
    body = h + struct.pack("<I", 0)
    msg = error_of(post(server, body, len(h)))
    assert "'x'" in msg
