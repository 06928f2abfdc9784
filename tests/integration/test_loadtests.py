"""The load-test scenarios, briefly (``--quick``: a few seconds each), against one real
server; every request must be answered or refused with a status: 0 lost."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

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
