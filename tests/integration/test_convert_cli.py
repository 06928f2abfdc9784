"""``numbaserve convert`` as a user runs it, then the converted version served next to the
float one by the real server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import engine
from tests.integration.conftest import REPO, model_config

SEED = REPO / "models" / "seed_cnn"


def test_convert_then_serve(tmp_path: Path, start_server: Any) -> None:
    base = tmp_path / "seed"
    shutil.copytree(SEED / "2", base / "1")
    proc = subprocess.run(
        [sys.executable, "-m", "service", "convert", str(base / "1"), str(base / "2"),
         "--weights", "int8"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "weights file:" in proc.stdout and "batch 32" in proc.stdout
    report = json.loads((base / "2" / "assets.extra" / "convert.json").read_text())
    assert report["size"]["weights_file_bytes"]["ratio"] <= 0.3
    assert "random" in report["outputs"]["data"]

    # a second run into the same directory fails and says why, leaving the version intact
    again = subprocess.run(
        [sys.executable, "-m", "service", "convert", str(base / "1"), str(base / "2"),
         "--weights", "float16"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert again.returncode == 1 and "not empty" in again.stderr
    assert json.loads((base / "2" / "assets.extra" / "convert.json").read_text()) == report

    config = tmp_path / "models.config"
    # the usual workflow: the converted version goes out under the canary label
    policy = ("    model_version_policy { all {} }\n"
              "    version_labels { key: \"stable\" value: 1 }\n"
              "    version_labels { key: \"canary\" value: 2 }\n")
    config.write_text(model_config({"seed": base}, {"seed": policy}))
    server = start_server([f"--model_config_file={config}"], wait=False)
    server.wait_available("seed")
    server.wait_until(lambda s: sorted(
        v["version"] for v in s.client.get("/v1/models/seed").json()["model_version_status"]
        if v["state"] == "AVAILABLE") == ["1", "2"], what="serving versions 1 and 2")
    body = json.loads((SEED / "sample_request.json").read_text())
    x = np.asarray(body["instances"], dtype=np.float32)
    preds = {}
    for version in ("1", "2"):
        r = server.client.post(f"/v1/models/seed/versions/{version}:predict", json=body)
        assert r.status_code == 200, r.text
        preds[version] = np.asarray(r.json()["predictions"], dtype=np.float32)
    r = server.client.post("/v1/models/seed/labels/canary:predict", json=body)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.asarray(r.json()["predictions"], np.float32), preds["2"])
    want = engine.load(base / "2").predict(x)
    np.testing.assert_allclose(preds["2"], want, rtol=1e-5, atol=1e-5)
    assert (preds["2"].argmax(-1) == preds["1"].argmax(-1)).all()
