"""/monitoring/prometheus/metrics after known traffic and a version swap."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.integration.conftest import Server, write_dense

X = [[1.0, 2.0, 3.0, 4.0]]
PATH = "/monitoring/prometheus/metrics"


def scrape(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = server.client.get(PATH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in r.text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.match(r"^(\S+?)(\{.*\})? (\S+)$", line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("metrics")
    write_dense(root / "dense" / "1", bias=1.0)
    srv = start_server([f"--model_base_path={root / 'dense'}", "--model_name=dense",
                        "--file_system_poll_wait_seconds=0.2"])
    srv.root = root  # type: ignore[attr-defined]
    return srv


def test_tf_serving_names_and_types(server: Server) -> None:
    text = server.client.get(PATH).text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    assert "_total" not in "".join(l for l in text.splitlines() if "request_count" in l)
    assert "_created" not in text


def test_request_counts_latency_and_batches_follow_traffic(server: Server) -> None:
    before = scrape(server)
    for _ in range(3):
        assert server.client.post("/v1/models/dense:predict",
                                  json={"instances": X}).status_code == 200
    assert server.client.post("/v1/models/dense:predict",
                              json={"instances": [[1.0, 2.0]]}).status_code == 400
    assert server.client.post("/v1/models/nope:predict",
                              json={"instances": X}).status_code == 404
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    count = ":tensorflow:serving:request_count"
    assert delta(count, model_name="dense", version="1", API="predict", entrypoint="REST",
                 status="OK") == 3
    assert delta(count, model_name="dense", status="INVALID_ARGUMENT") == 1
    assert delta(count, model_name="<unknown>", status="NOT_FOUND") == 1
    assert delta(":tensorflow:serving:request_latency_count", model_name="dense") == 4
    assert delta(":tensorflow:serving:request_latency_sum", model_name="dense") > 0
    assert delta(":tensorflow:serving:batching:input_batch_size_sum", model_name="dense") == 3
    assert delta(":tensorflow:serving:batching:processed_batch_size_count",
                 model_name="dense") == 3  # one at a time: each ran alone, unpadded
    assert delta(":tensorflow:serving:batching_session:queuing_latency_count",
                 model_name="dense") == 3
    assert delta(":tensorflow:serving:runtime_latency_count", model_name="dense") == 3
    assert value(after, "numbaserve_batch_queue_depth", model_name="dense", version="1") == 0
    assert value(after, "numbaserve_requests_in_flight", model_name="dense", version="1") == 0


def test_version_states_loads_and_unloads(server: Server) -> None:
    s = scrape(server)
    state = "numbaserve_model_version_state"
    assert value(s, state, model_name="dense", version="1", state="AVAILABLE") == 1
    assert value(s, state, model_name="dense", version="1", state="LOADING") == 0
    assert value(s, "numbaserve_model_loads_total", model_name="dense", status="success") == 1
    assert value(s, "numbaserve_model_load_duration_seconds_count", model_name="dense") == 1

    write_dense(server.root / "dense" / "2", bias=2.0)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s = scrape(server)
        if (value(s, state, model_name="dense", version="1", state="END") == 1
                and value(s, state, model_name="dense", version="2", state="AVAILABLE") == 1):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("version 2 never replaced version 1")
    assert value(s, "numbaserve_model_loads_total", model_name="dense", status="success") == 2
    assert value(s, "numbaserve_model_unloads_total", model_name="dense") == 1
    assert value(s, "numbaserve_model_unload_duration_seconds_count", model_name="dense") == 1

    (server.root / "dense" / "3").mkdir()  # type: ignore[attr-defined]
    (server.root / "dense" / "3" / "model.json").write_text("{ not json")  # type: ignore
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s = scrape(server)
        if value(s, "numbaserve_model_loads_total", model_name="dense", status="failure") >= 1:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the broken version 3 was never reported")
    assert value(s, state, model_name="dense", version="3", state="END") == 1
    assert value(s, state, model_name="dense", version="2", state="AVAILABLE") == 1
