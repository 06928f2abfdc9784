"""TF Serving's REST API against a real server: every route, every error shape."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import pytest

from tests.integration.conftest import (
    W_B,
    W_REG,
    Server,
    W,
    dense_expected,
    model_config,
    write_dense,
    write_methods,
    write_multi,
    write_strings,
)

MAX_BYTES = 100_000
X = [[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.5, 2.0]]


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("models")
    write_dense(root / "dense" / "1", bias=1.0)
    write_multi(root / "multi" / "1")
    write_methods(root / "methods" / "1")
    write_strings(root / "strings" / "1")
    (root / "pending").mkdir()  # configured, never has a version: 503s
    models = {n: root / n for n in ("dense", "multi", "methods", "strings", "pending")}
    extra = {"dense": '    version_labels { key: "stable" value: 1 }\n'}
    (root / "models.config").write_text(model_config(models, extra))
    srv = start_server(
        [f"--model_config_file={root / 'models.config'}", f"--max_request_bytes={MAX_BYTES}"],
        wait=False,
    )
    srv.wait_available("dense", "multi", "methods", "strings")
    return srv


def post(server: Server, path: str, body: Any) -> httpx.Response:
    return server.client.post(path, json=body)


def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert set(doc) == {"error"}, doc
    assert isinstance(doc["error"], str) and doc["error"]
    return str(doc["error"])


# ----------------------------------------------------------------------------- status


def test_status_has_tf_shape(server: Server) -> None:
    r = server.client.get("/v1/models/dense")
    assert r.status_code == 200
    assert r.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def test_status_by_version_and_label(server: Server) -> None:
    for path in ("/v1/models/dense/versions/1", "/v1/models/dense/labels/stable"):
        r = server.client.get(path)
        assert r.status_code == 200, r.text
        assert [v["version"] for v in r.json()["model_version_status"]] == ["1"]


@pytest.mark.parametrize("path,status", [
    ("/v1/models/nope", 404),
    ("/v1/models/dense/versions/7", 404),
    ("/v1/models/dense/labels/nope", 404),
    ("/v1/models/dense/versions/abc", 400),
    ("/v1/models/nope/metadata", 404),
    ("/v1/models/dense/versions/7/metadata", 404),
    ("/v1/models/dense/labels/nope/metadata", 404),
    ("/v1/nothing/here", 404),
])
def test_status_errors(server: Server, path: str, status: int) -> None:
    error_of(server.client.get(path), status)


# ----------------------------------------------------------------------------- metadata


def test_metadata_has_tf_shape(server: Server) -> None:
    r = server.client.get("/v1/models/dense/metadata")
    assert r.status_code == 200
    dim = [{"size": "-1", "name": ""}]
    assert r.json() == {
        "model_spec": {"name": "dense", "signature_name": "", "version": "1"},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": {"x": {"dtype": "DT_FLOAT", "name": "x", "tensor_shape": {
                "dim": dim + [{"size": "4", "name": ""}], "unknown_rank": False}}},
            "outputs": {"y": {"dtype": "DT_FLOAT", "name": "y", "tensor_shape": {
                "dim": dim + [{"size": "2", "name": ""}], "unknown_rank": False}}},
            "method_name": "tensorflow/serving/predict",
        }}}},
    }


def test_metadata_by_version_and_label(server: Server) -> None:
    for path in ("/v1/models/dense/versions/1/metadata", "/v1/models/dense/labels/stable/metadata"):
        r = server.client.get(path)
        assert r.status_code == 200, r.text
        assert r.json()["model_spec"]["version"] == "1"


def test_metadata_lists_every_method(server: Server) -> None:
    defs = server.client.get("/v1/models/methods/metadata").json()["metadata"]["signature_def"][
        "signature_def"]
    assert {k: v["method_name"] for k, v in defs.items()} == {
        "serving_default": "tensorflow/serving/predict",
        "classify_x": "tensorflow/serving/classify",
        "regress_x": "tensorflow/serving/regress",
    }
    strings = server.client.get("/v1/models/strings/metadata").json()
    sd = strings["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sd["inputs"]["text"]["dtype"] == "DT_STRING"


# ----------------------------------------------------------------------------- predict


@pytest.mark.parametrize("path", [
    "/v1/models/dense:predict",
    "/v1/models/dense/versions/1:predict",
    "/v1/models/dense/labels/stable:predict",
])
def test_predict_row_format(server: Server, path: str) -> None:
    r = post(server, path, {"instances": X})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"predictions"}
    np.testing.assert_allclose(r.json()["predictions"], dense_expected(X, 1.0), rtol=1e-6)


def test_predict_columnar_list_and_object(server: Server) -> None:
    for inputs in (X, {"x": X}):
        r = post(server, "/v1/models/dense:predict", {"inputs": inputs})
        assert r.status_code == 200, r.text
        out = r.json()["outputs"]
        assert isinstance(out, list)  # single output: a plain list, as TF Serving answers
        np.testing.assert_allclose(out, dense_expected(X, 1.0), rtol=1e-6)


def test_predict_multi_input_row_format(server: Server) -> None:
    b = [[1.0, 0.0, 2.0], [0.5, 0.5, 0.5]]
    instances = [{"a": X[i], "b": b[i]} for i in range(2)]
    r = post(server, "/v1/models/multi:predict", {"instances": instances})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 2 and all(set(p) == {"p", "q"} for p in preds)
    np.testing.assert_allclose([p["p"] for p in preds], np.array(X, np.float32) @ W, rtol=1e-6)
    np.testing.assert_allclose([p["q"] for p in preds], np.array(b, np.float32) @ W_B, rtol=1e-6)


def test_predict_multi_input_columnar(server: Server) -> None:
    b = [[1.0, 0.0, 2.0], [0.5, 0.5, 0.5]]
    r = post(server, "/v1/models/multi:predict", {"inputs": {"a": X, "b": b}})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert set(out) == {"p", "q"}
    np.testing.assert_allclose(out["q"], np.array(b, np.float32) @ W_B, rtol=1e-6)


def test_predict_with_signature_name(server: Server) -> None:
    r = post(server, "/v1/models/methods:predict", {"signature_name": "regress_x", "inputs": X})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"], np.array(X, np.float32) @ W_REG, rtol=1e-6)


def test_predict_b64_strings(server: Server) -> None:
    raw = [b"hello", b"\xff\x00binary"]
    instances = [{"b64": base64.b64encode(v).decode()} for v in raw]
    r = post(server, "/v1/models/strings:predict", {"instances": instances})
    assert r.status_code == 200, r.text
    assert [base64.b64decode(p["b64"]) for p in r.json()["predictions"]] == raw
    r = post(server, "/v1/models/strings:predict", {"inputs": ["plain", "text"]})
    assert r.status_code == 200, r.text
    assert [base64.b64decode(p["b64"]) for p in r.json()["outputs"]] == [b"plain", b"text"]


# ----------------------------------------------------------------------------- classify, regress


def test_classify(server: Server) -> None:
    body = {"signature_name": "classify_x", "examples": [{"x": X[0]}, {"x": X[1]}]}
    r = post(server, "/v1/models/methods:classify", body)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    scores = np.array(X, np.float32) @ W
    assert [[c[0] for c in row] for row in result] == [["0", "1"], ["0", "1"]]
    np.testing.assert_allclose([[c[1] for c in row] for row in result], scores, rtol=1e-6)


def test_regress_with_context(server: Server) -> None:
    # 'x' comes from the shared context for the second example.
    body = {"signature_name": "regress_x", "context": {"x": X[1]},
            "examples": [{"x": X[0]}, {}]}
    r = post(server, "/v1/models/methods/versions/1:regress", body)
    assert r.status_code == 200, r.text
    expected = (np.array(X, np.float32) @ W_REG).ravel()
    np.testing.assert_allclose(r.json()["result"], expected, rtol=1e-6)


def test_classify_needs_a_classify_signature(server: Server) -> None:
    msg = error_of(post(server, "/v1/models/methods:classify", {"examples": [{"x": X[0]}]}), 400)
    assert "predict" in msg and "classify" in msg
    msg = error_of(post(server, "/v1/models/dense:regress", {"examples": [{"x": X[0]}]}), 400)
    assert "predict" in msg and "regress" in msg


def test_classify_missing_feature(server: Server) -> None:
    body = {"signature_name": "classify_x", "examples": [{"x": X[0]}, {"z": 1}]}
    msg = error_of(post(server, "/v1/models/methods:classify", body), 400)
    assert "example 1" in msg and "'x'" in msg


# ----------------------------------------------------------------------------- errors


def test_wrong_shape_names_the_input(server: Server) -> None:
    msg = error_of(post(server, "/v1/models/dense:predict", {"instances": [[1.0, 2.0, 3.0]]}),
                   400)
    assert "'x'" in msg and "[-1, 4]" in msg and "[1, 3]" in msg


def test_wrong_dtype_names_the_input(server: Server) -> None:
    msg = error_of(post(server, "/v1/models/dense:predict",
                        {"instances": [["a", "b", "c", "d"]]}), 400)
    assert "'x'" in msg and "float32" in msg


def test_ragged_input_names_the_input(server: Server) -> None:
    msg = error_of(post(server, "/v1/models/dense:predict",
                        {"instances": [[1.0, 2.0, 3.0, 4.0], [1.0]]}), 400)
    assert "'x'" in msg


@pytest.mark.parametrize("body,needle", [
    (b"{not json", "JSON"),
    (b"", "empty"),
    (b"[1, 2]", "object"),
    (b'{"instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}', "not both"),
    (b'{"signature_name": "serving_default"}', "instances"),
    (b'{"instances": []}', "non-empty"),
    (b'{"instances": [[1,2,3,4]], "signature_name": "nope"}', "nope"),
    (b'{"inputs": {"z": [[1,2,3,4]]}}', "z"),
])
def test_bad_requests(server: Server, body: bytes, needle: str) -> None:
    r = server.client.post("/v1/models/dense:predict", content=body,
                           headers={"content-type": "application/json"})
    assert needle in error_of(r, 400)


def test_multi_input_row_errors(server: Server) -> None:
    msg = error_of(post(server, "/v1/models/multi:predict", {"instances": [X[0]]}), 400)
    assert "'a'" in msg or "a'" in msg
    instances = [{"a": X[0], "b": [1.0, 2.0, 3.0]}, {"a": X[1]}]
    msg = error_of(post(server, "/v1/models/multi:predict", {"instances": instances}), 400)
    assert "instance 1" in msg


def test_bad_version_in_path(server: Server) -> None:
    error_of(post(server, "/v1/models/dense/versions/x1:predict", {"instances": X}), 400)
    error_of(post(server, "/v1/models/dense/versions/9:predict", {"instances": X}), 404)
    error_of(post(server, "/v1/models/dense/labels/nope:predict", {"instances": X}), 404)
    error_of(post(server, "/v1/models/nope:predict", {"instances": X}), 404)


def test_no_available_version_is_503(server: Server) -> None:
    msg = error_of(post(server, "/v1/models/pending:predict", {"instances": X}), 503)
    assert "pending" in msg
    assert server.client.get("/readyz").status_code == 503
    assert server.client.get("/healthz").json() == {"status": "alive"}


def test_body_too_large_is_413(server: Server) -> None:
    big = b'{"instances": [' + b"[1.0, 2.0, 3.0, 4.0]," * (MAX_BYTES // 20) + b"[1,2,3,4]]}"
    r = server.client.post("/v1/models/dense:predict", content=big)
    assert "exceeds" in error_of(r, 413)

    def chunks() -> Any:  # no Content-Length: refused once the limit is passed
        for _ in range(MAX_BYTES // 1000 + 5):
            yield b" " * 1000

    r = server.client.post("/v1/models/dense:predict", content=chunks())
    assert "exceeds" in error_of(r, 413)


def test_get_on_predict_is_405(server: Server) -> None:
    r = server.client.get("/v1/models/dense:predict")
    error_of(r, 405)


def test_colon_routes(server: Server) -> None:
    """Paths with ':' route to the verb handler, whatever comes before the colon."""
    assert post(server, "/v1/models/dense:predict", {"instances": X}).status_code == 200
    r = post(server, "/v1/models/dense/versions/1:predict", {"instances": X})
    assert r.status_code == 200
    error_of(post(server, "/v1/models/dense:explode", {"instances": X}), 404)


def test_openapi_documents_every_route(server: Server) -> None:
    assert server.client.get("/docs").status_code == 200
    paths = server.client.get("/openapi.json").json()["paths"]
    for p in ("/v1/models/{name}", "/v1/models/{name}/metadata", "/v1/models/{name}:predict",
              "/v1/models/{name}/versions/{version}:predict", "/v1/admin/models",
              "/v1/admin/config", "/healthz", "/readyz"):
        assert p in paths, p


def test_large_batch_round_trip(server: Server) -> None:
    x = np.random.default_rng(0).standard_normal((512, 4)).astype(np.float32)
    r = server.client.post("/v1/models/dense:predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"], dense_expected(x, 1.0), rtol=1e-5,
                               atol=1e-5)


def test_deadline_is_504(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("deadline")
    write_dense(root / "dense" / "1", bias=1.0)
    srv = start_server([f"--model_base_path={root / 'dense'}", "--model_name=dense",
                        "--rest_api_timeout_in_ms=1"])
    x = np.ones((50_000, 4), np.float32).tolist()  # converting it alone takes > 1 ms
    r = srv.client.post("/v1/models/dense:predict", json={"inputs": x})
    assert "deadline" in error_of(r, 504)
    # The server is fine afterwards.
    assert srv.client.get("/v1/models/dense").status_code == 200
