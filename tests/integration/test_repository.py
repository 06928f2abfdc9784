"""KServe v2's model repository extension against a real server, through ``tritonclient.http``:
index, unload, load, errors, and the management API's token rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as tc
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import Server, dense_expected, model_config, write_dense

TOKEN = "v2-repo-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_dense(root / "dense" / "1", bias=1.0)
    write_dense(root / "dense" / "2", bias=2.0)
    write_dense(root / "other" / "1", bias=10.0)
    (root / "models.config").write_text(
        model_config({"dense": root / "dense", "other": root / "other"}))
    return root


@pytest.fixture(scope="module")
def server(start_server: Any, root: Path) -> Server:
    return start_server([f"--model_config_file={root / 'models.config'}"],
                        env={"NUMBASERVE_ADMIN_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    c = tc.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=30.0)
    yield c
    c.close()


def infer(client: Any, name: str) -> Any:
    inp = tc.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(X)
    return client.infer(name, [inp])


def fails(fn: Any, *args: Any, **kw: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        fn(*args, **kw)
    return info.value


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer wrong"}])
def test_repository_needs_the_admin_token(client: Any, server: Server,
                                          headers: dict[str, str] | None) -> None:
    assert fails(client.get_model_repository_index, headers=headers).status() == "401"
    assert fails(client.load_model, "dense", headers=headers).status() == "401"
    assert fails(client.unload_model, "dense", headers=headers).status() == "401"
    r = server.client.post("/v2/repository/index")
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    assert client.is_model_ready("dense")  # nothing was unloaded


def test_index(client: Any, server: Server) -> None:
    index = client.get_model_repository_index(headers=AUTH)
    assert {"name": "dense", "version": "2", "state": "READY"} in index
    assert {"name": "other", "version": "1", "state": "READY"} in index
    r = server.client.post("/v2/repository/index", json={"ready": True}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert all(e["state"] == "READY" for e in r.json())
    r = server.client.post("/v2/repository/index", json={"ready": "yes"}, headers=AUTH)
    assert r.status_code == 400 and "ready" in r.json()["error"]
    r = server.client.post("/v2/repository/index", content=b"{bad", headers=AUTH)
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]


def test_unload_then_load(client: Any, server: Server) -> None:
    client.unload_model("dense", headers=AUTH)
    assert not client.is_model_ready("dense")
    assert fails(infer, client, "dense").status() == "503"
    index = client.get_model_repository_index(headers=AUTH)
    dense = [e for e in index if e["name"] == "dense"]
    assert dense and all(e["state"] == "UNAVAILABLE" and e["reason"] == "unloaded"
                         for e in dense), dense
    # The other model and the TF Serving API see the same manager.
    np.testing.assert_allclose(infer(client, "other").as_numpy("y"), dense_expected(X, 10.0))
    states = [v["state"] for v in
              server.client.get("/v1/models/dense").json()["model_version_status"]]
    assert "AVAILABLE" not in states
    # a model unloaded on purpose does not make the server unready (Triton's explicit mode)
    assert server.client.get("/v2/health/ready").status_code == 200

    client.load_model("dense", headers=AUTH)
    assert client.is_model_ready("dense")
    res = infer(client, "dense")
    assert res.get_response()["model_version"] == "2"
    np.testing.assert_allclose(res.as_numpy("y"), dense_expected(X, 2.0))
    r = server.client.post("/v2/repository/models/dense/load", headers=AUTH)  # already loaded
    assert r.status_code == 200 and r.json()["ready"] is True


def test_repository_errors(client: Any, server: Server) -> None:
    assert fails(client.load_model, "nope", headers=AUTH).status() == "404"
    assert fails(client.unload_model, "nope", headers=AUTH).status() == "404"
    e = fails(client.load_model, "dense", headers=AUTH, config='{"backend": "onnx"}')
    assert e.status() == "400" and "config" in e.message()
    r = server.client.post("/v2/repository/models/dense/load", content=b"[1]", headers=AUTH)
    assert r.status_code == 400
    assert client.is_model_ready("dense")
