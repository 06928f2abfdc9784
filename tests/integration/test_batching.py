"""Batching, deadlines and refusals against a real server (dense model: y = x @ W + bias).

The first server has a 1 s batch window, batches of at most 4 rows and a queue of one batch
(4 rows): requests that do not fill a batch wait in the queue, which makes queueing,
deadlines and a full queue deterministic.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import numpy as np
import pytest

from tests.integration.conftest import Server, dense_expected, write_dense

PREDICT = "/v1/models/dense:predict"
ROWS = [[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.5, 2.0], [2.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("batching")
    write_dense(root / "dense" / "1", bias=1.0)
    return start_server([
        f"--model_base_path={root / 'dense'}", "--model_name=dense",
        "--batch_timeout_micros=1000000", "--max_execution_batch_size=4",
        "--max_enqueued_batches=1", "--max_batch_size=16", "--num_batch_threads=1",
        "--file_system_poll_wait_seconds=0",
    ])


def metric(server: Server, name: str, **labels: str) -> float:
    """The value of one sample (0 if absent) from /monitoring/prometheus/metrics."""
    text = server.client.get("/monitoring/prometheus/metrics").text
    for line in text.splitlines():
        m = re.match(r"^(\S+?)(\{.*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


async def post_many(server: Server, bodies: list[Any], headers: dict[str, str] | None = None,
                    delay: float = 0.0) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
        async def one(i: int, body: Any) -> httpx.Response:
            await asyncio.sleep(delay * i)
            return await client.post(PREDICT, json=body, headers=headers)

        return list(await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies))))


def test_concurrent_requests_share_one_engine_call(server: Server) -> None:
    before = metric(server, ":tensorflow:serving:batching:processed_batch_size_count",
                    model_name="dense")
    rows_before = metric(server, ":tensorflow:serving:batching:input_batch_size_sum",
                         model_name="dense")
    t0 = time.monotonic()
    rs = asyncio.run(post_many(server, [{"instances": [row]} for row in ROWS]))
    for row, r in zip(ROWS, rs, strict=True):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["predictions"], dense_expected([row], 1.0),
                                   rtol=1e-5)
    # Four rows fill a batch: it closed at once, without waiting for the 1 s window.
    assert time.monotonic() - t0 < 0.9
    assert metric(server, ":tensorflow:serving:batching:processed_batch_size_count",
                  model_name="dense") == before + 1
    assert metric(server, ":tensorflow:serving:batching:input_batch_size_sum",
                  model_name="dense") == rows_before + 4


def test_a_large_request_is_split_and_reassembled(server: Server) -> None:
    x = np.arange(40, dtype=np.float32).reshape(10, 4) / 10
    r = server.client.post(PREDICT, json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], dense_expected(x, 1.0), rtol=1e-5)


def test_a_request_over_max_batch_size_is_400(server: Server) -> None:
    r = server.client.post(PREDICT, json={"instances": [ROWS[0]] * 17})
    assert r.status_code == 400
    assert "Task size 17 is larger than maximum input batch size 16" in r.json()["error"]


def test_full_queue_is_503_at_once_with_retry_after(server: Server) -> None:
    async def go() -> tuple[list[httpx.Response], httpx.Response, float]:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
            waiting = [asyncio.ensure_future(client.post(PREDICT, json={"instances": [row]}))
                       for row in ROWS[:3]]  # 3 rows wait for the window (queue: 4 rows)
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            refused = await client.post(PREDICT, json={"instances": ROWS[:2]})
            took = time.monotonic() - t0
            return list(await asyncio.gather(*waiting)), refused, took

    waited, refused, took = asyncio.run(go())
    assert refused.status_code == 503, refused.text
    assert refused.json() == {
        "error": "The batch scheduling queue to which this task was submitted is full"}
    assert int(refused.headers["retry-after"]) >= 1
    assert took < 0.5  # refused at once, not after the window
    assert [r.status_code for r in waited] == [200, 200, 200]


def test_deadline_header_in_the_queue_is_504_and_not_run(server: Server) -> None:
    rows_before = metric(server, ":tensorflow:serving:batching:input_batch_size_sum",
                         model_name="dense")
    rs = asyncio.run(post_many(server, [{"instances": [row]} for row in ROWS[:2]],
                               headers={"X-Request-Timeout-Ms": "200"}))
    for r in rs:
        assert r.status_code == 504, r.text
        assert "not run" in r.json()["error"] or "deadline" in r.json()["error"]
    time.sleep(0.2)
    assert metric(server, ":tensorflow:serving:batching:input_batch_size_sum",
                  model_name="dense") == rows_before
    assert metric(server, ":tensorflow:serving:request_count", model_name="dense",
                  status="DEADLINE_EXCEEDED") >= 2


def test_bad_deadline_header_is_400(server: Server) -> None:
    for value in ("soon", "0", "-5"):
        r = server.client.post(PREDICT, json={"instances": ROWS},
                               headers={"X-Request-Timeout-Ms": value})
        assert r.status_code == 400, value
        assert "X-Request-Timeout-Ms" in r.json()["error"]
        # the same through the middleware stack (not a hot route)
        r = server.client.get("/v1/models/dense", headers={"X-Request-Timeout-Ms": value})
        assert r.status_code == 400, value
        assert "X-Request-Timeout-Ms" in r.json()["error"]


def test_batching_parameters_file_and_in_flight_cap(
        start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("batching_file")
    write_dense(root / "dense" / "1", bias=2.0)
    (root / "batching.config").write_text(
        "max_batch_size { value: 4 }\n"
        "batch_timeout_micros { value: 1000000 }\n"
        "enable_large_batch_splitting { value: false }\n"
        "allowed_batch_sizes: 4\n"
        "num_batch_threads { value: 1 }\n")
    srv = start_server([
        f"--model_base_path={root / 'dense'}", "--model_name=dense",
        f"--batching_parameters_file={root / 'batching.config'}",
        "--max_in_flight_requests_per_model=2", "--file_system_poll_wait_seconds=0"])
    r = srv.client.post(PREDICT, json={"instances": ROWS + ROWS[:1]})
    assert r.status_code == 400 and "Task size 5" in r.json()["error"]

    async def go() -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(base_url=srv.base, timeout=30) as client:
            waiting = [asyncio.ensure_future(client.post(PREDICT, json={"instances": [row]}))
                       for row in ROWS[:2]]
            await asyncio.sleep(0.3)
            refused = await client.post(PREDICT, json={"instances": [ROWS[2]]})
            return list(await asyncio.gather(*waiting)), refused

    waited, refused = asyncio.run(go())
    assert refused.status_code == 503 and "in flight" in refused.json()["error"]
    assert "retry-after" in refused.headers
    for row, w in zip(ROWS[:2], waited, strict=True):
        assert w.status_code == 200
        np.testing.assert_allclose(w.json()["predictions"], dense_expected([row], 2.0),
                                   rtol=1e-5)
