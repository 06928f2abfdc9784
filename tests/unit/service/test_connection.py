"""``HttpConnection`` over a fake transport that records each write: a hot route's response
leaves in one write, head and body together; other routes, and a connection over uvicorn's
concurrency limit, take uvicorn's way unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from service.protocol.connection import HttpConnection


class FakeTransport:
    """What the protocol writes, call by call."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.writes.append(b"".join(parts))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000),
                "sockname": ("127.0.0.1", 8501)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class App:
    """A hot route at POST /hot (echoes the body) and a plain ASGI app for the rest."""

    def __init__(self) -> None:
        self.hot_calls = 0
        self.plain_calls = 0
        self.bodies: list[Any] = []

    def hot_route(self, scope: Any) -> Any:
        return self.echo if scope["path"] == "/hot" else None

    async def echo(self, scope: Any, receive: Any, send: Any) -> None:
        self.hot_calls += 1
        message = await receive()
        parts = [message["body"]]
        while message.get("more_body"):
            message = await receive()
            parts.append(message["body"])
        self.bodies += parts
        body = b"".join(parts)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.plain_calls += 1
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


def post(path: str, body: bytes, *extra: bytes) -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nhost: x\r\n" + b"".join(extra)
            + b"content-length: %d\r\n\r\n" % len(body) + body)


async def exchange(data: bytes, limit: int | None = None) -> tuple[App, FakeTransport]:
    app = App()
    config = uvicorn.Config(app, http=HttpConnection, lifespan="off", log_level="warning",
                            limit_concurrency=limit)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Thu, 26 Nov 2026 10:00:00 GMT")]  # uvicorn's ticker
    proto = HttpConnection(config=config, server_state=state, app_state={},
                           _loop=asyncio.get_running_loop())
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(data)
    for _ in range(50):
        await asyncio.sleep(0)
    for task in list(proto.tasks):
        await task
    return app, transport


def test_hot_response_is_one_write() -> None:
    app, t = asyncio.run(exchange(post("/hot", b"hello")))
    assert app.hot_calls == 1 and app.plain_calls == 0
    (only,) = t.writes
    head, _, body = only.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 5" in head and b"date: " in head
    assert body == b"hello"
    assert not t.closed
    # the whole body arrived with the head: the route got uvicorn's buffer, not a copy
    assert app.bodies == [bytearray(b"hello")] and type(app.bodies[0]) is bytearray


def test_pipelined_hot_requests_answer_in_order() -> None:
    app, t = asyncio.run(exchange(post("/hot", b"one") + post("/hot", b"two")
                                  + post("/other", b"")))
    assert app.hot_calls == 2 and app.plain_calls == 1
    bodies = [w.partition(b"\r\n\r\n")[2] for w in t.writes if w.startswith(b"HTTP/1.1")]
    assert bodies[:2] == [b"one", b"two"]


def test_connection_close_on_a_hot_route() -> None:
    _, t = asyncio.run(exchange(post("/hot", b"bye", b"connection: close\r\n")))
    (only,) = t.writes
    assert b"\r\nconnection: close\r\n" in only and only.endswith(b"\r\n\r\nbye")
    assert t.closed


def test_a_body_in_pieces_is_received_whole() -> None:
    async def run() -> tuple[App, FakeTransport]:
        app = App()
        config = uvicorn.Config(app, http=HttpConnection, lifespan="off", log_level="warning")
        config.load()
        proto = HttpConnection(config=config, server_state=ServerState(), app_state={},
                               _loop=asyncio.get_running_loop())
        transport = FakeTransport()
        proto.connection_made(transport)  # type: ignore[arg-type]
        raw = post("/hot", b"0123456789" * 100)
        for i in range(0, len(raw), 97):
            proto.data_received(raw[i:i + 97])
            await asyncio.sleep(0)
        for task in list(proto.tasks):
            await task
        return app, transport

    app, t = asyncio.run(run())
    assert b"".join(app.bodies) == b"0123456789" * 100
    (only,) = t.writes
    assert only.endswith(b"\r\n\r\n" + b"0123456789" * 100)


def test_other_routes_take_uvicorns_way() -> None:
    app, t = asyncio.run(exchange(post("/other", b"")))
    assert app.plain_calls == 1 and app.hot_calls == 0
    assert b"".join(t.writes).endswith(b"\r\n\r\nok")


def test_over_the_concurrency_limit_the_hot_route_is_refused_by_uvicorn() -> None:
    # limit_concurrency=1 and one connection already counted: uvicorn's own 503 app answers
    app, t = asyncio.run(exchange(post("/hot", b"x"), limit=1))
    assert app.hot_calls == 0
    assert b"".join(t.writes).startswith(b"HTTP/1.1 503")
