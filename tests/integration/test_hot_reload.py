"""Versions come and go under load: no request fails, the new version takes over, a corrupt
one never replaces the serving one."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.integration.conftest import Server, dense_expected, write_dense

CLIENTS = 16
SECONDS = 10.0
X = [[1.0, 2.0, 3.0, 4.0]]


@pytest.fixture(scope="module")
def setup(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Server, Path]:
    base = tmp_path_factory.mktemp("models") / "dense"
    write_dense(base / "1", bias=1.0)
    srv = start_server([f"--model_base_path={base}", "--model_name=dense",
                        "--file_system_poll_wait_seconds=0.25"])
    return srv, base


def publish(base: Path, version: int, bias: float, corrupt: bool = False) -> None:
    """Write ``<version>.partial`` (ignored by the server), then rename it into place."""
    partial = base / f"{version}.partial"
    write_dense(partial, bias=bias)
    if corrupt:  # same size, different bytes: the recorded sha256 no longer matches
        weights = partial / "weights.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    os.rename(partial, base / str(version))


def states(server: Server) -> dict[str, tuple[str, str]]:
    r = server.client.get("/v1/models/dense")
    assert r.status_code == 200, r.text
    return {v["version"]: (v["state"], v["status"]["error_message"])
            for v in r.json()["model_version_status"]}


def served_bias(server: Server) -> float:
    r = server.client.post("/v1/models/dense:predict", json={"instances": X})
    assert r.status_code == 200, r.text
    y = np.array(r.json()["predictions"], np.float32)
    return float((y - dense_expected(X, 0.0))[0, 0])


def test_new_version_under_load_without_failures(setup: tuple[Server, Path]) -> None:
    server, base = setup
    stop = threading.Event()
    failures: list[str] = []
    biases: list[list[float]] = [[] for _ in range(CLIENTS)]
    expected = {1.0: dense_expected(X, 1.0), 2.0: dense_expected(X, 2.0)}

    def client(i: int) -> None:
        with httpx.Client(base_url=server.base, timeout=30.0) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/models/dense:predict", json={"instances": X})
                except httpx.HTTPError as exc:
                    failures.append(f"client {i}: {type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200:
                    failures.append(f"client {i}: {r.status_code} {r.text}")
                    continue
                y = np.array(r.json()["predictions"], np.float32)
                for bias, want in expected.items():
                    if np.allclose(y, want, rtol=1e-6):
                        biases[i].append(bias)
                        break
                else:
                    failures.append(f"client {i}: unexpected prediction {y.tolist()}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(SECONDS * 0.3)
        publish(base, 2, bias=2.0)
        time.sleep(SECONDS * 0.7)
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert failures == [], failures[:10]
    total = sum(len(b) for b in biases)
    print(f"{total} requests in {SECONDS} s from {CLIENTS} clients")
    assert total > CLIENTS  # every client ran
    # Version 2 took over while the clients ran; once a client saw it, it never went back.
    assert any(2.0 in b for b in biases)
    for b in biases:
        if 2.0 in b:
            assert 1.0 not in b[b.index(2.0):]
    server.wait_until(lambda s: states(s).get("1", ("",))[0] == "END", 30, "unloading v1")
    assert states(server)["2"] == ("AVAILABLE", "")
    assert served_bias(server) == pytest.approx(2.0)
    r = server.client.post("/v1/models/dense/versions/1:predict", json={"instances": X})
    assert r.status_code == 404, r.text


def test_corrupt_version_keeps_the_serving_one(setup: tuple[Server, Path]) -> None:
    server, base = setup
    publish(base, 3, bias=3.0, corrupt=True)
    server.wait_until(lambda s: states(s).get("3", ("", ""))[1] != "", 30, "reporting v3")
    state, error = states(server)["3"]
    assert state == "END"
    assert "sha256" in error
    assert states(server)["2"] == ("AVAILABLE", "")
    assert served_bias(server) == pytest.approx(2.0)
    r = server.client.get("/v1/models/dense/versions/3")
    assert r.json()["model_version_status"][0]["status"]["error_code"] != "OK"
    assert server.client.get("/readyz").status_code == 200
