"""HTTP/1.1 on the hot routes, byte for byte over raw sockets against a real server: the
connection's short way to v1 ``:predict`` and v2 ``/infer`` (one write per response) keeps
keep-alive, pipelining, ``Connection: close``, HTTP/1.0 and the error shapes as they are on
every other route."""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import orjson
import pytest

from tests.integration.conftest import Server, dense_expected, model_config, write_dense

X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
PREDICT = orjson.dumps({"instances": X.tolist()})
INFER = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                  "data": X.ravel().tolist()}]})


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("models")
    write_dense(root / "dense" / "1", bias=1.0)
    (root / "models.config").write_text(model_config({"dense": root / "dense"}))
    return start_server([f"--model_config_file={root / 'models.config'}"])


def request(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1",
             "Content-Type: application/json", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return orjson.loads(self.body)


def read_response(sock: socket.socket, buf: bytearray) -> Response:
    """One response off ``sock`` (bytes past it stay in ``buf``): content-length framed."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-head; got {bytes(buf)!r}"
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        assert name.lower() not in headers, f"header {name!r} twice in {head!r}"
        headers[name.lower()] = value.strip()
    size = int(headers["content-length"])
    while len(rest) < size:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    buf[:] = rest[size:]
    return Response(int(status_line.split()[1]), headers, rest[:size])


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def closed_by_server(sock: socket.socket, buf: bytearray) -> bool:
    return not buf and sock.recv(1) == b""


def check_predict(r: Response) -> None:
    assert r.status == 200, r.body
    assert r.headers["content-type"] == "application/json"
    assert "date" in r.headers
    np.testing.assert_allclose(r.json()["predictions"], dense_expected(X, 1.0), rtol=1e-6)


def check_infer(r: Response) -> None:
    assert r.status == 200, r.body
    (out,) = r.json()["outputs"]
    np.testing.assert_allclose(np.reshape(out["data"], out["shape"]), dense_expected(X, 1.0),
                               rtol=1e-6)


def test_keep_alive_serves_many_on_one_connection(server: Server) -> None:
    with connect(server) as sock:
        buf = bytearray()
        for _ in range(5):
            sock.sendall(request("/v1/models/dense:predict", PREDICT))
            check_predict(read_response(sock, buf))
            sock.sendall(request("/v2/models/dense/infer", INFER))
            check_infer(read_response(sock, buf))
        # a cold route on the same connection after the hot ones
        sock.sendall(b"GET /v1/models/dense HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        r = read_response(sock, buf)
        assert r.status == 200 and r.json()["model_version_status"][0]["state"] == "AVAILABLE"


def test_pipelined_requests_answer_in_order(server: Server) -> None:
    bad = orjson.dumps({"instances": [[1.0, 2.0]]})  # wrong shape: a 400 between two 200s
    with connect(server) as sock:
        sock.sendall(request("/v1/models/dense:predict", PREDICT)
                     + request("/v1/models/dense:predict", bad)
                     + request("/v2/models/dense/infer", INFER)
                     + b"GET /v2/models/dense/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        buf = bytearray()
        check_predict(read_response(sock, buf))
        r = read_response(sock, buf)
        assert r.status == 400 and "x" in r.json()["error"]
        check_infer(read_response(sock, buf))
        assert read_response(sock, buf).status == 200


@pytest.mark.parametrize("path,body,check", [
    ("/v1/models/dense:predict", PREDICT, check_predict),
    ("/v2/models/dense/infer", INFER, check_infer),
])
def test_connection_close_is_honoured(server: Server, path: str, body: bytes,
                                      check: Any) -> None:
    with connect(server) as sock:
        sock.sendall(request(path, body, "Connection: close"))
        buf = bytearray()
        r = read_response(sock, buf)
        check(r)
        assert r.headers["connection"] == "close"
        assert closed_by_server(sock, buf)


def test_http_1_0_closes_after_the_response(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(request("/v1/models/dense:predict", PREDICT, version="1.0"))
        buf = bytearray()
        check_predict(read_response(sock, buf))
        assert closed_by_server(sock, buf)


def test_errors_on_the_hot_routes_keep_their_shape(server: Server) -> None:
    with connect(server) as sock:
        buf = bytearray()
        sock.sendall(request("/v1/models/nope:predict", PREDICT))
        r = read_response(sock, buf)
        assert r.status == 404 and "nope" in r.json()["error"]
        sock.sendall(request("/v2/models/dense/infer", INFER, "X-Request-Timeout-Ms: soon"))
        r = read_response(sock, buf)
        assert r.status == 400 and "X-Request-Timeout-Ms" in r.json()["error"]
        sock.sendall(request("/v2/models/dense/infer", b"{not json"))
        r = read_response(sock, buf)
        assert r.status == 400 and "malformed JSON" in r.json()["error"]
        # the connection still serves after three errors
        sock.sendall(request("/v2/models/dense/infer", INFER))
        check_infer(read_response(sock, buf))


def test_body_in_pieces_and_expect_continue(server: Server) -> None:
    with connect(server) as sock:
        buf = bytearray()
        raw = request("/v1/models/dense:predict", PREDICT)
        for i in range(0, len(raw), 7):  # head and body split across many segments
            sock.sendall(raw[i:i + 7])
        check_predict(read_response(sock, buf))
        head, _, body = request("/v2/models/dense/infer", INFER,
                                "Expect: 100-continue").partition(b"\r\n\r\n")
        sock.sendall(head + b"\r\n\r\n")
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        assert bytes(buf).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        del buf[:len(b"HTTP/1.1 100 Continue\r\n\r\n")]
        sock.sendall(body)
        check_infer(read_response(sock, buf))
