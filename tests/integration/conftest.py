"""Integration fixtures: a REAL server (``python -m service``) on 127.0.0.1, real files.

Each test module starts the server(s) it needs once (module-scoped fixtures) over a
temporary model directory written with ``engine.save``. The server's output goes to a log
file that is printed when a test fails, so a failure shows what the server said.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import numpy as np
import pytest

import engine
from engine import Graph, Node, Signature, TensorSpec, TensorType

REPO = Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------- models

W = np.array([[1.0, 0.5], [-1.0, 2.0], [0.25, 0.0], [3.0, -0.5]], dtype=np.float32)
W_REG = np.array([[0.5], [0.25], [-1.0], [2.0]], dtype=np.float32)
W_B = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)


def dense_expected(x: Any, bias: float) -> np.ndarray:
    return np.asarray(x, dtype=np.float32) @ W + np.float32(bias)


def _sig(inputs: Mapping[str, TensorSpec], outputs: Mapping[str, TensorSpec],
         method: str = "predict") -> Signature:
    return Signature(MappingProxyType(dict(inputs)), MappingProxyType(dict(outputs)), method)


def write_dense(path: Path, bias: float) -> Path:
    """x float32 [-1, 4] -> y = x @ W + bias, float32 [-1, 2]. ``bias`` tells versions apart."""
    g = Graph.make(
        [("x", TensorType("float32", (None, 4)))],
        ["y"],
        [Node.make("Dense", ["x", "w", "b"], ["y"])],
        {"w": W, "b": np.full(2, bias, np.float32)},
    )
    return engine.save(path, g)


def write_multi(path: Path) -> Path:
    """Two inputs, two outputs: p = a @ W (a: [-1, 4]), q = b @ W_B (b: [-1, 3])."""
    g = Graph.make(
        [("a", TensorType("float32", (None, 4))), ("b", TensorType("float32", (None, 3)))],
        ["p", "q"],
        [Node.make("Dense", ["a", "w"], ["p"]), Node.make("Dense", ["b", "wb"], ["q"])],
        {"w": W, "wb": W_B},
    )
    return engine.save(path, g)


def write_methods(path: Path) -> Path:
    """Signatures with each TF method: serving_default (predict), classify, regress."""
    x = TensorSpec("x", "float32", (None, 4))
    g = Graph.make(
        [("x", TensorType("float32", (None, 4)))],
        ["scores", "value"],
        [Node.make("Dense", ["x", "w"], ["scores"]), Node.make("Dense", ["x", "wr"], ["value"])],
        {"w": W, "wr": W_REG},
    )
    scores = TensorSpec("scores", "float32", (None, 2))
    value = TensorSpec("value", "float32", (None, 1))
    sigs = {
        "serving_default": _sig({"x": x}, {"scores": scores}),
        "classify_x": _sig({"x": x}, {"scores": scores}, "classify"),
        "regress_x": _sig({"x": x}, {"outputs": value}, "regress"),
    }
    return engine.save(path, g, sigs)


def write_strings(path: Path) -> Path:
    """A DT_STRING identity: input ``text`` comes back as output ``echo_bytes`` (b64)."""
    g = Graph.make([("text", TensorType("object", (None,)))], ["text"], [])
    spec = TensorSpec("text", "object", (None,))
    return engine.save(path, g, {"serving_default": _sig({"text": spec}, {"echo_bytes": spec})})


def model_config(models: Mapping[str, Path], extra: Mapping[str, str] | None = None) -> str:
    """A TF Serving model_config_list; ``extra[name]`` is pasted inside that model's config."""
    parts = []
    for name, base in models.items():
        more = (extra or {}).get(name, "")
        parts.append(f'  config {{\n    name: "{name}"\n    base_path: "{base}"\n'
                     f'    model_platform: "numbaserve"\n{more}  }}\n')
    return "model_config_list {\n" + "".join(parts) + "}\n"


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m service`` on 127.0.0.1:<free port>, its output in ``log_path``."""

    def __init__(self, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path = REPO) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBASERVE_")}
        full_env.update({"PYTHONUNBUFFERED": "1", "NUMBASERVE_LOG_LEVEL": "info"})
        if "NUMBASERVE_CACHE_DIR" in os.environ:
            full_env["NUMBASERVE_CACHE_DIR"] = os.environ["NUMBASERVE_CACHE_DIR"]
        full_env.update(env or {})
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--rest_api_host=127.0.0.1",
             f"--rest_api_port={self.port}", *args],
            cwd=cwd, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.base, timeout=30.0)

    def url(self, path: str) -> str:
        return self.base + path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_until(self, ready: Any, timeout: float = 120.0, what: str = "ready") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if ready(self):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not {what} after {timeout} s:\n{self.log()}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        self.wait_until(lambda s: s.client.get("/readyz").status_code == 200, timeout)

    def wait_available(self, *names: str, timeout: float = 120.0) -> None:
        """Until each named model has an AVAILABLE version (the server may not be ready)."""

        def ok(s: Server) -> bool:
            for name in names:
                r = s.client.get(f"/v1/models/{name}")
                if r.status_code != 200:
                    return False
                states = [v["state"] for v in r.json()["model_version_status"]]
                if "AVAILABLE" not in states:
                    return False
            return True

        self.wait_until(ok, timeout, f"serving {names}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


_servers: list[Server] = []


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``start_server(args, env=None, wait=True)`` -> a running Server, stopped at module end."""
    started: list[Server] = []

    def start(args: Sequence[str], env: Mapping[str, str] | None = None,
              wait: bool = True) -> Server:
        log_path = tmp_path_factory.mktemp("server-log") / "server.log"
        server = Server(args, log_path, env)
        started.append(server)
        _servers.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
        _servers.remove(server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _servers:
        for s in _servers:
            text = s.log()
            report.sections.append((f"server log (port {s.port})", text[-20000:]))
