"""Start a numbaserve on 127.0.0.1 (a free port) over a temporary model directory, for the
scenarios that do not target a running server (``--url``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import engine
from engine import Graph, Node, TensorType

__all__ = ["MODELS", "ModelSpec", "LocalServer", "free_port", "write_model"]

REPO = Path(__file__).resolve().parents[1]


class ModelSpec:
    """A model the load tests can write: its input row shape and a request row."""

    def __init__(self, name: str, row: tuple[int, ...]) -> None:
        self.name = name
        self.row = row

    def instance(self, seed: int = 0) -> list[Any]:
        rng = np.random.default_rng(seed)
        return rng.uniform(-1, 1, self.row).astype(np.float32).round(4).tolist()


MODELS = {
    "dense": ModelSpec("dense", (4,)),  # x[-1, 4] -> Dense(2): trivial compute, all HTTP
    "mlp": ModelSpec("mlp", (64,)),  # x[-1, 64] -> 128 relu -> 10
    "seed_cnn": ModelSpec("seed_cnn", (32, 32, 3)),  # the bundled model's architecture
}


def write_model(kind: str, path: Path, version_seed: int = 0) -> Path:
    """Save model ``kind`` as one version directory; ``version_seed`` varies the weights."""
    rng = np.random.default_rng(version_seed)
    if kind == "dense":
        w = rng.standard_normal((4, 2)).astype(np.float32)
        b = np.full(2, float(version_seed), np.float32)
        g = Graph.make([("x", TensorType("float32", (None, 4)))], ["y"],
                       [Node.make("Dense", ["x", "w", "b"], ["y"])], {"w": w, "b": b})
        return engine.save(path, g)
    if kind == "mlp":
        w1 = (rng.standard_normal((64, 128)) * 0.1).astype(np.float32)
        w2 = (rng.standard_normal((128, 10)) * 0.1).astype(np.float32)
        g = Graph.make(
            [("x", TensorType("float32", (None, 64)))], ["y"],
            [Node.make("Dense", ["x", "w1", "b1"], ["h"], {"activation": "relu"}),
             Node.make("Dense", ["h", "w2", "b2"], ["y"])],
            {"w1": w1, "b1": np.zeros(128, np.float32), "w2": w2,
             "b2": np.full(10, float(version_seed), np.float32)})
        return engine.save(path, g)
    if kind == "seed_cnn":
        sys.path.insert(0, str(REPO))
        from benchmarks.models import seed_cnn

        return engine.save(path, seed_cnn(seed=version_seed).graph)
    raise ValueError(f"unknown model {kind!r}; one of {sorted(MODELS)}")


def publish_version(base: Path, kind: str, version: int) -> Path:
    """Write ``base/<version>`` atomically: into a ``.tmp`` name the server ignores, then
    renamed into place."""
    tmp = base / f"{version}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    write_model(kind, tmp, version)
    final = base / str(version)
    tmp.rename(final)
    return final


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """``python -m service`` serving ``models`` (name -> kind) from a temporary directory."""

    def __init__(self, models: dict[str, str], args: Sequence[str] = (),
                 root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="numbaserve-load-"))
        self._own_root = root is None
        self.models = models
        lines = ["model_config_list {"]
        for name, kind in models.items():
            base = self.root / name
            if not base.exists():
                publish_version(base, kind, 1)
            lines.append(f'  config {{ name: "{name}" base_path: "{base}" '
                         f'model_platform: "numbaserve" }}')
        lines.append("}")
        (self.root / "models.config").write_text("\n".join(lines) + "\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBASERVE_")}
        if "NUMBASERVE_CACHE_DIR" in os.environ:
            env["NUMBASERVE_CACHE_DIR"] = os.environ["NUMBASERVE_CACHE_DIR"]
        env["NUMBASERVE_LOG_LEVEL"] = "warning"
        self.log_path = self.root / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--rest_api_host=127.0.0.1",
             f"--rest_api_port={self.port}", f"--model_config_file={self.root / 'models.config'}",
             *args],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
