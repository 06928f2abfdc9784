"""SIGTERM/SIGINT with requests in flight: every one is answered, then the server exits 0."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.conftest import Server, dense_expected, write_dense

IN_FLIGHT = 8
DRAIN = 10


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("models") / "dense"
    write_dense(base / "1", bias=1.0)
    return base


def _open_request(port: int, body: bytes, sent: int) -> socket.socket:
    """A connection whose request is in flight: headers and part of the body sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /v1/models/dense:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    s.sendall(head.encode() + body[:sent])
    return s


def _read_response(s: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(rest) >= length[0]:
                break
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(rest)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_requests_in_flight(
    start_server: Any, base: Path, sig: signal.Signals
) -> None:
    server: Server = start_server(
        [f"--model_base_path={base}", "--model_name=dense", f"--drain_seconds={DRAIN}"]
    )
    rows = [[float(i), 1.0, 2.0, 3.0] for i in range(IN_FLIGHT)]
    bodies = [json.dumps({"instances": [r]}).encode() for r in rows]
    socks = [_open_request(server.port, b, len(b) // 2) for b in bodies]
    time.sleep(0.5)  # the server has parsed the headers: these requests are in flight

    t0 = time.monotonic()
    server.signal(sig)
    time.sleep(0.5)
    # Shutting down: new connections are refused...
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    # ...while the requests in flight finish and are answered.
    for s, b in zip(socks, bodies, strict=True):
        s.sendall(b[len(b) // 2:])
    answers = [_read_response(s) for s in socks]
    for s in socks:
        s.close()
    for (status, doc), row in zip(answers, rows, strict=True):
        assert status == 200, doc
        np.testing.assert_allclose(doc["predictions"], dense_expected([row], 1.0), rtol=1e-6)

    code = server.proc.wait(timeout=DRAIN + 5)
    assert code == 0, server.log()
    assert time.monotonic() - t0 < DRAIN + 1
    assert "Traceback" not in server.log()
