"""The management API against a real server: token, loopback rule, load/unload, labels,
config reload, effective config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.integration.conftest import Server, dense_expected, model_config, write_dense

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
X = [[1.0, 2.0, 3.0, 4.0]]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for v in (1, 2, 3):
        write_dense(root / "dense" / str(v), bias=float(v))
    write_dense(root / "other" / "1", bias=10.0)
    extra = {"dense": "    model_version_policy { specific { versions: 1 versions: 2 } }\n"
                      '    version_labels { key: "stable" value: 1 }\n'
                      '    version_labels { key: "canary" value: 2 }\n'}
    (root / "models.config").write_text(model_config({"dense": root / "dense"}, extra))
    return root


@pytest.fixture(scope="module")
def server(start_server: Any, root: Path) -> Server:
    return start_server([f"--model_config_file={root / 'models.config'}"],
                        env={"NUMBASERVE_ADMIN_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def open_server(start_server: Any, root: Path) -> Server:
    """No token configured: loopback clients only."""
    return start_server([f"--model_base_path={root / 'other'}", "--model_name=other"])


def admin(server: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    return server.client.request(method, "/v1/admin" + path, headers=AUTH, **kw)


def bias_of(server: Server, path: str) -> float:
    r = server.client.post(path, json={"instances": X})
    assert r.status_code == 200, r.text
    return float(np.array(r.json()["predictions"])[0, 0] - dense_expected(X, 0.0)[0, 0])


# ----------------------------------------------------------------------------- access


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer"},
])
def test_token_required(server: Server, headers: dict[str, str]) -> None:
    r = server.client.get("/v1/admin/models", headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert set(r.json()) == {"error"}


def test_token_accepted(server: Server) -> None:
    assert admin(server, "GET", "/models").status_code == 200


def test_without_token_only_loopback(open_server: Server) -> None:
    assert open_server.client.get("/v1/admin/models").status_code == 200
    # uvicorn takes the client address from X-Forwarded-For when a loopback proxy sends it:
    # the request then comes from a remote client, which must be refused.
    r = open_server.client.get("/v1/admin/models", headers={"X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 403, r.text
    assert "token" in r.json()["error"]


def test_data_plane_needs_no_token(server: Server) -> None:
    assert server.client.get("/v1/models/dense").status_code == 200
    assert server.client.get("/readyz").status_code == 200


# ----------------------------------------------------------------------------- listing


def test_list_models(server: Server) -> None:
    r = admin(server, "GET", "/models")
    assert r.status_code == 200
    (m,) = r.json()["models"]
    assert m["name"] == "dense" and m["ready"] is True
    assert m["labels"] == {"stable": 1, "canary": 2}
    assert [(v["version"], v["state"]) for v in m["versions"]] == [(2, "AVAILABLE"),
                                                                    (1, "AVAILABLE")]
    assert m["model_version_policy"] == {"specific": {"versions": [1, 2]}}
    assert admin(server, "GET", "/models/dense").json()["name"] == "dense"
    assert admin(server, "GET", "/models/nope").status_code == 404


def test_effective_config_hides_the_token(server: Server) -> None:
    r = admin(server, "GET", "/config")
    assert r.status_code == 200
    assert TOKEN not in r.text
    (m,) = r.json()["model_config_list"]
    assert m["name"] == "dense"


# ----------------------------------------------------------------------------- labels


def test_labels_move(server: Server) -> None:
    assert bias_of(server, "/v1/models/dense/labels/stable:predict") == pytest.approx(1.0)
    assert bias_of(server, "/v1/models/dense/labels/canary:predict") == pytest.approx(2.0)
    # canary -> stable: point 'stable' at version 2
    r = admin(server, "PUT", "/models/dense/labels/stable", json={"version": 2})
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == {"stable": 2, "canary": 2}
    assert bias_of(server, "/v1/models/dense/labels/stable:predict") == pytest.approx(2.0)
    status = server.client.get("/v1/models/dense/labels/stable").json()
    assert status["model_version_status"][0]["version"] == "2"
    # POST works too, and moves it back
    r = admin(server, "POST", "/models/dense/labels/stable", json={"version": 1})
    assert r.status_code == 200, r.text
    assert bias_of(server, "/v1/models/dense/labels/stable:predict") == pytest.approx(1.0)


def test_label_errors(server: Server) -> None:
    r = admin(server, "PUT", "/models/dense/labels/stable", json={"version": 3})
    assert r.status_code == 400 and "not currently available" in r.json()["error"]
    r = admin(server, "PUT", "/models/dense/labels/stable", json={"version": "x"})
    assert r.status_code == 400 and "version" in r.json()["error"]
    r = admin(server, "PUT", "/models/dense/labels/stable", json={})
    assert r.status_code == 400
    r = admin(server, "PUT", "/models/nope/labels/stable", json={"version": 1})
    assert r.status_code == 404


def test_remove_label(server: Server) -> None:
    assert admin(server, "PUT", "/models/dense/labels/temp", json={"version": 1}).status_code == 200
    r = admin(server, "DELETE", "/models/dense/labels/temp")
    assert r.status_code == 200 and "temp" not in r.json()["labels"]
    r = server.client.post("/v1/models/dense/labels/temp:predict", json={"instances": X})
    assert r.status_code == 404
    assert admin(server, "DELETE", "/models/dense/labels/temp").status_code == 404
    assert admin(server, "GET", "/models/dense/labels").json()["labels"] == {
        "stable": 1, "canary": 2}


# ----------------------------------------------------------------------------- load, unload


def test_load_and_unload_a_version(server: Server) -> None:
    r = admin(server, "POST", "/models/dense/versions/3/load")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "AVAILABLE"
    assert bias_of(server, "/v1/models/dense/versions/3:predict") == pytest.approx(3.0)
    assert bias_of(server, "/v1/models/dense:predict") == pytest.approx(3.0)  # latest

    r = admin(server, "POST", "/models/dense/versions/3/unload")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "END"
    r = server.client.post("/v1/models/dense/versions/3:predict", json={"instances": X})
    assert r.status_code == 404
    assert bias_of(server, "/v1/models/dense:predict") == pytest.approx(2.0)


@pytest.mark.parametrize("method,path,status", [
    ("POST", "/models/dense/versions/9/load", 404),
    ("POST", "/models/nope/versions/1/load", 404),
    ("POST", "/models/dense/versions/9/unload", 404),
    ("POST", "/models/dense/versions/x/load", 400),
])
def test_load_unload_errors(server: Server, method: str, path: str, status: int) -> None:
    r = admin(server, method, path)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}


# ----------------------------------------------------------------------------- reload


def test_reload_config(server: Server, root: Path) -> None:
    text = model_config({"dense": root / "dense", "other": root / "other"})
    r = admin(server, "POST", "/config/reload", json={"model_config_list": text})
    assert r.status_code == 200, r.text
    assert {m["name"] for m in r.json()["models"]} == {"dense", "other"}
    assert bias_of(server, "/v1/models/other:predict") == pytest.approx(10.0)
    # The text config has the default policy, the latest version only: 2, since version 3
    # was unloaded by hand (excluded until loaded by hand again). Version 1 goes.
    assert bias_of(server, "/v1/models/dense:predict") == pytest.approx(2.0)
    server.wait_until(lambda s: s.client.get("/v1/models/dense/versions/1").json()[
        "model_version_status"][0]["state"] == "END", 30, "unloading dense v1")

    r = admin(server, "POST", "/config/reload", json={"model_config_list": "model_config_list {"})
    assert r.status_code == 400 and "<request>" in r.json()["error"]

    # No body: back to the file.
    r = admin(server, "POST", "/config/reload")
    assert r.status_code == 200, r.text
    assert {m["name"] for m in r.json()["models"]} == {"dense"}
    r = server.client.post("/v1/models/other:predict", json={"instances": X})
    assert r.status_code == 404
    assert bias_of(server, "/v1/models/dense/versions/1:predict") == pytest.approx(1.0)


def test_poll_now(server: Server) -> None:
    r = admin(server, "POST", "/poll")
    assert r.status_code == 200
    assert [m["name"] for m in r.json()["models"]] == ["dense"]
