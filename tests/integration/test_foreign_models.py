"""One server, three kinds of version directory: our model.json, a model.onnx and a Keras
model.keras. Each serves through the same engine; a new ONNX version hot-swaps like any other.

References: onnxruntime for the ONNX model, Keras ``model.predict`` for the Keras one, the
engine's own saved-model loader for seed_cnn. Tolerance 1e-4 relative to the output's scale.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.conftest import REPO, Server, model_config

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RTOL = 1e-4

# Saves the tutorial CNN with Keras itself, in a child process: Keras (torch backend) stays out
# of this process, and the server never imports it.
_SAVE_KERAS = """
import os, sys
os.environ["KERAS_BACKEND"] = "torch"
import keras
keras.utils.set_random_seed(7)
m = keras.Sequential([
    keras.Input((32, 32, 3), name="image"),
    keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
    keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
    keras.layers.Conv2D(64, 3, activation="relu"),
    keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10),
])
m.save(sys.argv[1])
import numpy as np
x = np.load(sys.argv[2])
np.save(sys.argv[3], m.predict(x, verbose=0))
"""


def _resnet_onnx(path: Path, seed: int) -> None:
    """A small residual CNN in ONNX's NCHW form: conv-bn-relu, conv-bn + skip, relu, GAP, Gemm."""
    rng = np.random.default_rng(seed)
    c = 8

    def t(name: str, *shape: int, scale: float = 0.3) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32),
                                       name)

    def bn(prefix: str) -> list[onnx.TensorProto]:
        return [numpy_helper.from_array(v.astype(np.float32), f"{prefix}_{k}") for k, v in {
            "s": rng.uniform(0.5, 1.5, c), "b": rng.normal(0, 0.1, c),
            "m": rng.normal(0, 0.1, c), "v": rng.uniform(0.5, 1.5, c)}.items()]

    inits = [t("w0", c, 3, 3, 3), t("w1", c, c, 3, 3), t("w2", c, c, 3, 3), t("fc_w", 5, c),
             t("fc_b", 5), *bn("bn0"), *bn("bn1"), *bn("bn2")]

    def bn_node(x: str, p: str, y: str) -> onnx.NodeProto:
        return helper.make_node("BatchNormalization", [x, f"{p}_s", f"{p}_b", f"{p}_m", f"{p}_v"],
                                [y])

    pads = {"pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["image", "w0"], ["c0"], strides=[2, 2], **pads),
        bn_node("c0", "bn0", "b0"), helper.make_node("Relu", ["b0"], ["r0"]),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], **pads),
        bn_node("c1", "bn1", "b1"), helper.make_node("Relu", ["b1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], **pads), bn_node("c2", "bn2", "b2"),
        helper.make_node("Add", ["b2", "r0"], ["s"]), helper.make_node("Relu", ["s"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "resnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"image": x})[0])


def _close(got: Any, want: np.ndarray) -> None:
    got = np.asarray(got, np.float32)
    assert got.shape == want.shape
    err = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-6))
    assert err <= RTOL, f"max relative error {err:.2e} > {RTOL}"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("foreign")
    shutil.copytree(REPO / "models" / "seed_cnn" / "1", root / "seed_cnn" / "1")
    _resnet_onnx(root / "resnet" / "1" / "model.onnx", seed=1)
    rng = np.random.default_rng(0)
    kx = rng.random((2, 32, 32, 3), dtype=np.float32)
    np.save(root / "kx.npy", kx)
    (root / "kcnn" / "1").mkdir(parents=True)
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    done = subprocess.run(
        [sys.executable, "-c", _SAVE_KERAS, str(root / "kcnn" / "1" / "model.keras"),
         str(root / "kx.npy"), str(root / "ky.npy")],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return {"root": root, "kx": kx, "ky": np.load(root / "ky.npy")}


@pytest.fixture(scope="module")
def server(start_server: Any, repo: dict[str, Any]) -> Server:
    root: Path = repo["root"]
    cfg = root / "models.config"
    cfg.write_text(model_config({n: root / n for n in ("seed_cnn", "resnet", "kcnn")}))
    srv = start_server([f"--model_config_file={cfg}", "--file_system_poll_wait_seconds=0.25"])
    srv.wait_available("seed_cnn", "resnet", "kcnn")
    return srv


def _predict(server: Server, name: str, x: np.ndarray) -> np.ndarray:
    r = server.client.post(f"/v1/models/{name}:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["predictions"], np.float32)


def test_seed_cnn_from_model_json(server: Server) -> None:
    import engine

    x = np.random.default_rng(1).random((3, 32, 32, 3), dtype=np.float32)
    want = engine.load(REPO / "models" / "seed_cnn" / "1").predict(x)
    _close(_predict(server, "seed_cnn", x), want)


def test_onnx_model_serves_and_keeps_nchw(server: Server, repo: dict[str, Any]) -> None:
    r = server.client.get("/v1/models/resnet/metadata")
    assert r.status_code == 200, r.text
    x = np.random.default_rng(2).standard_normal((4, 3, 16, 16)).astype(np.float32)
    _close(_predict(server, "resnet", x), _ort(repo["root"] / "resnet" / "1" / "model.onnx", x))


def test_keras_model_serves(server: Server, repo: dict[str, Any]) -> None:
    _close(_predict(server, "kcnn", repo["kx"]), repo["ky"])


def test_new_onnx_version_hot_swaps(server: Server, repo: dict[str, Any]) -> None:
    root: Path = repo["root"]
    partial = root / "resnet" / "2.partial" / "model.onnx"
    _resnet_onnx(partial, seed=2)
    os.rename(partial.parent, root / "resnet" / "2")
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    want = _ort(root / "resnet" / "2" / "model.onnx", x)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = server.client.get("/v1/models/resnet")
        states = {v["version"]: v["state"] for v in r.json()["model_version_status"]}
        if states.get("2") == "AVAILABLE" and states.get("1", "END") == "END":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"version 2 never took over: {states}")
    _close(_predict(server, "resnet", x), want)
