"""The load-test scenarios, briefly (``--quick``: a few seconds each), against one real
server; every request must be answered or refused with a status: 0 lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadtests.scenarios import target_for
from loadtests.server import publish_version
from tests.integration.conftest import REPO, Server, model_config


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("load")
    publish_version(root / "dense", "dense", 1)
    publish_version(root / "mlp", "mlp", 1)
    (root / "models.config").write_text(model_config({"dense": root / "dense",
                                                      "mlp": root / "mlp"}))
    # A short queue (2 batches of 32 rows) so the burst meets refusals.
    srv = start_server([f"--model_config_file={root / 'models.config'}",
                        "--max_enqueued_batches=2", "--file_system_poll_wait_seconds=0.25"])
    srv.root = root  # type: ignore[attr-defined]
    return srv


def test_every_scenario_loses_nothing(server: Server) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtests", "all", "--quick", "--json", "--concurrency", "8",
         "--url", server.base, "--model", "dense:dense", "--model", "mlp:mlp",
         "--model-dir", str(server.root)],  # type: ignore[attr-defined]
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(summary) == {"steady", "burst", "reload", "mixed"}
    for scenario, phases in summary.items():
        for phase in phases:
            assert phase["lost"] == 0, (scenario, phase)
            assert phase["requests"] > 0, (scenario, phase)
    # Under steady load, reload and mixed traffic everything is served.
    for scenario in ("steady", "reload", "mixed"):
        phase = summary[scenario][0]
        assert phase["ok"] == phase["requests"], (scenario, phase)
    # The table is printed, and the reload really swapped versions under load.
    assert "| requests |" in out.stdout and "p99 ms" in out.stdout
    assert "published versions [2, 3" in out.stdout


def test_raw_client_through_a_burst(server: Server) -> None:
    """The raw client (what the benchmarks drive servers with, closed and open loop) through
    a burst that meets refusals: every request answered with a status, none lost."""
    out = subprocess.run(
        [sys.executable, "-m", "loadtests", "burst", "--quick", "--json", "--client", "raw",
         "--concurrency", "8", "--url", server.base, "--model", "dense:dense"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    phases = json.loads(out.stdout.strip().splitlines()[-1])["burst"]
    for phase in phases:
        assert phase["lost"] == 0 and phase["requests"] > 0, phase
        assert all(k.isdigit() for k in phase["by_status"]), phase
    assert phases[-1]["ok"] == phases[-1]["requests"]  # served normally after the burst


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_drive_one_json_line(server: Server, tmp_path: Path, loop: str) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(target_for(server.base, "dense", "dense").body)
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.drive", "--url",
         f"{server.base}/v1/models/dense:predict", "--body-file", str(body), "--concurrency",
         "4", "--duration", "0.5", "--warmup", "0.2", "--loop", loop],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(r) == {"label", "requests", "ok", "lost", "by_status", "wall_s", "rps",
                      "items_per_s", "p50_ms", "p95_ms", "p99_ms"}
    assert r["requests"] > 0 and r["ok"] == r["requests"] and r["by_status"] == {
        "200": r["requests"]}
