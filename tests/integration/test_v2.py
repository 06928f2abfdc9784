"""KServe v2 against a real server with a real v2 client (``tritonclient.http``): health,
metadata, readiness, config, infer in JSON and binary, output selection, versions and
labels, statistics, errors. Raw httpx where the client cannot say what we test."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as tc
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import (
    W_B,
    Server,
    W,
    dense_expected,
    model_config,
    write_dense,
    write_multi,
    write_strings,
)

MAX_BYTES = 100_000
X = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.5, 2.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("models")
    write_dense(root / "dense" / "1", bias=1.0)
    write_dense(root / "dense" / "2", bias=2.0)
    write_multi(root / "multi" / "1")
    write_strings(root / "strings" / "1")
    (root / "pending").mkdir()  # configured, never has a version: 503s
    models = {n: root / n for n in ("dense", "multi", "strings", "pending")}
    extra = {"dense": "    model_version_policy { specific { versions: 1 versions: 2 } }\n"
                      '    version_labels { key: "stable" value: 1 }\n'}
    (root / "models.config").write_text(model_config(models, extra))
    srv = start_server(
        [f"--model_config_file={root / 'models.config'}", f"--max_request_bytes={MAX_BYTES}"],
        wait=False,
    )
    srv.wait_available("dense", "multi", "strings")
    return srv


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    c = tc.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=30.0)
    yield c
    c.close()


def fp32_input(name: str, x: np.ndarray, binary: bool = True) -> tc.InferInput:
    inp = tc.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert set(doc) == {"error"} and isinstance(doc["error"], str) and doc["error"], doc
    return str(doc["error"])


def client_error(fn: Any, *args: Any, **kw: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        fn(*args, **kw)
    return info.value


# ----------------------------------------------------------------------------- health, metadata


def test_server_health_and_metadata(client: Any) -> None:
    assert client.is_server_live()
    assert not client.is_server_ready()  # 'pending' has no version
    meta = client.get_server_metadata()
    assert meta["name"] == "numbaserve" and meta["version"]
    assert {"binary_tensor_data", "model_repository", "statistics"} <= set(meta["extensions"])


def test_model_metadata(client: Any, server: Server) -> None:
    expected = {
        "name": "dense", "versions": ["1", "2"], "platform": "numbaserve",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
    assert client.get_model_metadata("dense") == expected
    assert client.get_model_metadata("dense", "1") == expected
    r = server.client.get("/v2/models/dense/labels/stable")
    assert r.status_code == 200 and r.json() == expected
    multi = client.get_model_metadata("multi")
    assert [i["name"] for i in multi["inputs"]] == ["a", "b"]
    assert [o["name"] for o in multi["outputs"]] == ["p", "q"]
    strings = client.get_model_metadata("strings")
    assert strings["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]


def test_model_readiness(client: Any, server: Server) -> None:
    assert client.is_model_ready("dense")
    assert client.is_model_ready("dense", "2")
    assert not client.is_model_ready("dense", "7")
    assert not client.is_model_ready("pending")
    assert not client.is_model_ready("nope")
    assert server.client.get("/v2/models/dense/labels/stable/ready").json()["ready"] is True
    error_of(server.client.get("/v2/models/nope/ready"), 404)
    error_of(server.client.get("/v2/models/dense/versions/7/ready"), 404)
    error_of(server.client.get("/v2/models/dense/labels/nope/ready"), 404)
    assert "no AVAILABLE version" in error_of(server.client.get("/v2/models/pending/ready"), 503)
    assert "pending" in error_of(server.client.get("/v2/health/ready"), 503)


def test_model_config(client: Any) -> None:
    cfg = client.get_model_config("dense")
    assert cfg["name"] == "dense" and cfg["max_batch_size"] == 0
    assert cfg["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 4]}]
    assert cfg["output"] == [{"name": "y", "data_type": "TYPE_FP32", "dims": [-1, 2]}]
    assert cfg["version_policy"] == {"specific": {"versions": [1, 2]}}
    assert client.get_model_config("strings")["input"][0]["data_type"] == "TYPE_STRING"


# ----------------------------------------------------------------------------- infer


def test_infer_json(client: Any) -> None:
    out = tc.InferRequestedOutput("y", binary_data=False)
    res = client.infer("dense", [fp32_input("x", X, binary=False)], outputs=[out],
                       request_id="req-1")
    resp = res.get_response()
    assert resp["id"] == "req-1" and resp["model_name"] == "dense"
    assert resp["model_version"] == "2"  # the highest AVAILABLE
    assert "data" in resp["outputs"][0] and "parameters" not in resp["outputs"][0]
    np.testing.assert_allclose(res.as_numpy("y"), dense_expected(X, 2.0), rtol=1e-6)


def test_infer_binary(client: Any) -> None:
    res = client.infer("dense", [fp32_input("x", X)])  # no outputs: binary_data_output
    (entry,) = res.get_response()["outputs"]
    assert entry["parameters"] == {"binary_data_size": 2 * 2 * 4}
    np.testing.assert_allclose(res.as_numpy("y"), dense_expected(X, 2.0), rtol=1e-6)


def test_infer_by_version_and_label(client: Any, server: Server) -> None:
    res = client.infer("dense", [fp32_input("x", X)], model_version="1")
    assert res.get_response()["model_version"] == "1"
    np.testing.assert_allclose(res.as_numpy("y"), dense_expected(X, 1.0), rtol=1e-6)
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                        "data": X.reshape(-1).tolist()}]}
    r = server.client.post("/v2/models/dense/labels/stable/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "1"
    np.testing.assert_allclose(r.json()["outputs"][0]["data"],
                               dense_expected(X, 1.0).reshape(-1), rtol=1e-6)


def test_infer_nested_json_data(server: Server) -> None:
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.tolist()}]}
    r = server.client.post("/v2/models/dense/versions/2/infer", json=body)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["shape"] == [2, 2] and out["datatype"] == "FP32"


def test_json_inputs_written_any_way_decode_like_binary(client: Any, server: Server) -> None:
    """Two JSON inputs, one flat and one nested, keys in any order, integer literals, long
    decimals and exponents, odd whitespace: the same answer as the same tensors in binary."""
    body = (b'{ "id" : "mixed",\n "inputs" : [ {"data": [1, 2.5, -3, 0.100000001490116119384765'
            b'625, 1e-3, 4E0, 5, 6.0], "parameters": {"content_type": "x"}, "shape": [2, 4],'
            b' "datatype": "FP32", "name": "a"},\n {"name": "b", "datatype": "FP32", "shape":'
            b' [2, 3], "data": [[1, 0, -1], [ 2.25 , 2 , 2e0 ]]} ],\n "outputs": [{"name": "p"'
            b'}, {"name": "q"}] }')
    r = server.client.post("/v2/models/multi/infer", content=body,
                           headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    got = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"])
           for o in r.json()["outputs"]}
    a = np.array([[1, 2.5, -3, 0.1], [1e-3, 4, 5, 6]], np.float32)
    b = np.array([[1, 0, -1], [2.25, 2, 2]], np.float32)
    res = client.infer("multi", [fp32_input("a", a), fp32_input("b", b)])
    assert r.json()["id"] == "mixed"
    np.testing.assert_array_equal(got["p"], res.as_numpy("p"))
    np.testing.assert_array_equal(got["q"], res.as_numpy("q"))
    np.testing.assert_allclose(got["p"], a @ W, rtol=1e-6)


@pytest.mark.parametrize("data,what", [
    (b"[1, 2, 3, \"x\"]", "not a valid FP32 tensor"),
    (b"[1, 2, 3]", "holds 4 elements but 'data' has 3"),
    (b"[[1, 2], [3, 4, 5]]", "not a valid FP32 tensor"),
    (b"[1, 2, 3, 4],", "malformed JSON"),
    (b"[1, 2, 3, 4]]", "malformed JSON"),
    (b"[1, 2, 3, 01]", "malformed JSON"),
])
def test_bad_json_data_is_a_400(server: Server, data: bytes, what: str) -> None:
    body = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": %s}]}' % data
    assert what in error_of(server.client.post("/v2/models/dense/infer", content=body), 400)


def test_outputs_selection(client: Any) -> None:
    a = X
    b = np.array([[1.0, 0.0, -1.0], [2.0, 2.0, 2.0]], dtype=np.float32)
    ins = [fp32_input("a", a), fp32_input("b", b, binary=False)]
    res = client.infer("multi", ins, outputs=[tc.InferRequestedOutput("q")])
    assert [o["name"] for o in res.get_response()["outputs"]] == ["q"]
    assert res.as_numpy("p") is None
    np.testing.assert_allclose(res.as_numpy("q"), b @ W_B, rtol=1e-6)
    # Both, in the order asked, one binary and one JSON.
    outs = [tc.InferRequestedOutput("q", binary_data=False), tc.InferRequestedOutput("p")]
    res = client.infer("multi", ins, outputs=outs)
    entries = res.get_response()["outputs"]
    assert [o["name"] for o in entries] == ["q", "p"]
    assert "data" in entries[0] and "parameters" in entries[1]
    np.testing.assert_allclose(res.as_numpy("p"), a @ W, rtol=1e-6)
    np.testing.assert_allclose(res.as_numpy("q"), b @ W_B, rtol=1e-6)


@pytest.mark.parametrize("binary", [False, True])
def test_bytes_round_trip(client: Any, binary: bool) -> None:
    text = np.array(["héllo".encode(), b"", b"w\x00rld"], dtype=object)
    inp = tc.InferInput("text", [3], "BYTES")
    inp.set_data_from_numpy(text, binary_data=binary)
    out = tc.InferRequestedOutput("echo_bytes", binary_data=True)
    res = client.infer("strings", [inp], outputs=[out])
    assert res.as_numpy("echo_bytes").tolist() == text.tolist()


def test_compressed_requests(client: Any) -> None:
    for algo in ("gzip", "deflate"):
        res = client.infer("dense", [fp32_input("x", X)], request_compression_algorithm=algo)
        np.testing.assert_allclose(res.as_numpy("y"), dense_expected(X, 2.0), rtol=1e-6)


# ----------------------------------------------------------------------------- errors


def test_client_sees_errors(client: Any) -> None:
    e = client_error(client.infer, "nope", [fp32_input("x", X)])
    assert e.status() == "404" and "nope" in e.message()
    e = client_error(client.infer, "dense", [fp32_input("x", X)], model_version="7")
    assert e.status() == "404"
    e = client_error(client.infer, "pending", [fp32_input("x", X)])
    assert e.status() == "503"
    e = client_error(client.infer, "dense", [fp32_input("x", X[:, :3])])
    assert e.status() == "400" and "'x'" in e.message() and "[-1, 4]" in e.message()
    e = client_error(client.infer, "dense", [fp32_input("z", X)])
    assert e.status() == "400" and "'z'" in e.message()
    e = client_error(client.infer, "dense", [fp32_input("x", X)],
                     outputs=[tc.InferRequestedOutput("nope")])
    assert e.status() == "400" and "nope" in e.message()
    e = client_error(client.get_model_metadata, "nope")
    assert e.status() == "404"
    e = client_error(client.get_model_metadata, "pending")
    assert e.status() == "503"


def test_wrong_datatype_names_the_input(server: Server) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES",
                        "data": ["a", "b", "c", "d"]}]}
    msg = error_of(server.client.post("/v2/models/dense/infer", json=body), 400)
    assert "'x'" in msg and "float32" in msg


@pytest.mark.parametrize("path,status", [
    ("/v2/models/dense/versions/abc/infer", 400),
    ("/v2/models/dense/versions/7/infer", 404),
    ("/v2/models/dense/labels/nope/infer", 404),
    ("/v2/models/nope/infer", 404),
])
def test_infer_path_errors(server: Server, path: str, status: int) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    error_of(server.client.post(path, json=body), status)


def test_http_level_errors(server: Server) -> None:
    r = server.client.get("/v2/models/dense/infer")
    error_of(r, 405)
    assert r.headers["allow"] == "POST"
    msg = error_of(server.client.post("/v2/models/dense/infer", content=b"{nope"), 400)
    assert "malformed JSON" in msg
    big = b"{" + b" " * MAX_BYTES + b"}"
    error_of(server.client.post("/v2/models/dense/infer", content=big), 413)
    error_of(server.client.post("/v2/models/dense/infer", content=b"{}",
                                headers={"content-encoding": "br"}), 400)
    error_of(server.client.post("/v2/models/dense/infer", content=b"{}",
                                headers={"content-encoding": "gzip"}), 400)
    error_of(server.client.get("/v2/models/dense/versions/abc"), 400)
    error_of(server.client.get("/v2/models/dense/labels/nope"), 404)


# ----------------------------------------------------------------------------- statistics


def test_statistics(client: Any, server: Server) -> None:
    def dense_v1() -> dict[str, Any]:
        (entry,) = client.get_inference_statistics("dense", "1")["model_stats"]
        return dict(entry)

    before = dense_v1()
    for _ in range(3):
        client.infer("dense", [fp32_input("x", X)], model_version="1")
    client_error(client.infer, "dense", [fp32_input("x", X[:, :3])], model_version="1")
    after = dense_v1()
    s0, s1 = before["inference_stats"], after["inference_stats"]
    assert after["name"] == "dense" and after["version"] == "1"
    assert s1["success"]["count"] - s0["success"]["count"] == 3
    assert s1["fail"]["count"] - s0["fail"]["count"] == 1
    assert after["inference_count"] - before["inference_count"] == 3 * len(X)
    assert after["execution_count"] - before["execution_count"] == 3
    assert after["last_inference"] > 0
    for kind in ("success", "compute_input", "compute_infer", "compute_output"):
        assert s1[kind]["ns"] > s0[kind]["ns"]
    assert any(b["batch_size"] == len(X) for b in after["batch_stats"])

    per_model = client.get_inference_statistics("dense")["model_stats"]
    assert sorted(e["version"] for e in per_model) == ["1", "2"]
    every = client.get_inference_statistics()["model_stats"]
    assert {e["name"] for e in every} == {"dense", "multi", "strings"}
    label = server.client.get("/v2/models/dense/labels/stable/stats").json()["model_stats"]
    assert [e["version"] for e in label] == ["1"]
    assert client_error(client.get_inference_statistics, "nope").status() == "404"


def test_openapi_documents_v2(server: Server) -> None:
    paths = server.client.get("/openapi.json").json()["paths"]
    for path in ("/v2", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/infer",
                 "/v2/models/{name}/versions/{version}/infer", "/v2/models/{name}/config",
                 "/v2/models/{name}/labels/{label}/infer", "/v2/models/stats",
                 "/v2/repository/index", "/v2/repository/models/{name}/load"):
        assert path in paths, path
    assert "/v1/models/{name}:predict" in paths
