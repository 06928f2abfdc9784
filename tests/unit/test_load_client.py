"""The raw load-generator client (loadtests.raw, make_sender kind="raw") against tiny real asyncio
servers on 127.0.0.1 that answer in awkward ways: split, pipelined, closing, garbled, silent.
Each test runs on both asyncio's loop and uvloop (what ``loadtests.drive`` uses)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvloop

from loadtests.client import Outcome, Target, _one, closed_loop, make_sender, open_loop
from loadtests.raw import _RawProtocol

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def _response(status: int, body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra)
            + body)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """One whole request (head and content-length body); b"" at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head + await reader.readexactly(length)


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # (cancelled: the test is over)
        finally:
            writer.close()

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        req = await _read_request(reader)
        if req:
            self.requests.append(req)
        return req


@asynccontextmanager
async def serving(make: Callable[[Server], Handler]) -> AsyncIterator[tuple[Server, str]]:
    srv = Server(lambda r, w: asyncio.sleep(0))
    srv.handler = make(srv)
    server = await asyncio.start_server(srv._serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield srv, f"http://127.0.0.1:{port}/v1/models/m:predict"
    finally:
        server.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    def go(coro: Coroutine[Any, Any, Any]) -> Any:
        main = asyncio.wait_for(coro, 20)
        return asyncio.run(main) if request.param == "asyncio" else uvloop.run(main)

    return go


def _keep_alive() -> Callable[[Server], Handler]:
    """A server answering OK to each request on its connection."""
    def make(srv: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await srv.read(reader):
                writer.write(OK)
                await writer.drain()
        return handler
    return make


async def _outcomes(url: str, n: int, timeout_s: float = 5.0) -> list[Outcome]:
    """``n`` requests one after the other on one raw user."""
    new_user, close = make_sender("raw", url, 1, timeout_s=timeout_s)
    send, out = new_user(), list[Outcome]()
    t = Target(url, b'{"instances": [1]}')
    try:
        for _ in range(n):
            await _one(send, t, out)
    finally:
        await close()
    return out


def test_keep_alive_and_request_bytes(run: Any) -> None:
    async def main() -> None:
        async with serving(_keep_alive()) as (srv, url):
            out = await _outcomes(url, 3)
            assert [o.status for o in out] == [200, 200, 200]
            assert srv.connections == 1  # one keep-alive connection
            req = srv.requests[0]
            assert req.startswith(b"POST /v1/models/m:predict HTTP/1.1\r\n")
            assert b"\r\ncontent-length: 18\r\n" in req and b"content-type: application/json" in req
            assert req.endswith(b'\r\n\r\n{"instances": [1]}')

    run(main())


def test_response_in_pieces(run: Any) -> None:
    """Headers byte by byte, then the body in two chunks; the connection stays usable."""
    body = b'{"predictions": [1, 2, 3]}'
    resp = _response(201, body, b"Server: x\r\n")
    head_len = resp.index(b"\r\n\r\n") + 4

    def make(srv: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await srv.read(reader):
                for i in range(head_len):
                    writer.write(resp[i:i + 1])
                    await writer.drain()
                    await asyncio.sleep(0.001)  # separate segments, separate data_received
                writer.write(resp[head_len:head_len + 5])
                await writer.drain()
                await asyncio.sleep(0.01)
                writer.write(resp[head_len + 5:])
                await writer.drain()
        return handler

    async def main() -> None:
        async with serving(make) as (srv, url):
            out = await _outcomes(url, 2)
            assert [(o.status, o.error) for o in out] == [(201, ""), (201, "")]
            assert srv.connections == 1

    run(main())


def test_parser_fed_byte_by_byte() -> None:
    """The same, deterministically: every split point of two responses, one interim 100."""
    stream = (b"HTTP/1.1 100 Continue\r\n\r\n" + _response(200, b"abc")
              + _response(503, b"", b"Retry-After: 1\r\n"))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for split in range(1, len(stream)):
            p = _RawProtocol()
            futs = [loop.create_future() for _ in range(2)]
            p.pending.extend((f, 0.0) for f in futs)
            p.data_received(stream[:split])
            for i in range(split, len(stream)):
                p.data_received(stream[i:i + 1])
            assert [f.result() for f in futs] == [200, 503], split
            assert not p._buf

    asyncio.run(main())


def test_pipelined_responses_in_one_write(run: Any) -> None:
    """Two requests in flight on one connection, both answered by a single write."""
    def make(srv: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await srv.read(reader)
            await srv.read(reader)
            writer.write(_response(200, b"first") + _response(429, b"second"))
            await writer.drain()
            await srv.read(reader)
        return handler

    async def pipelined() -> None:
        async with serving(make) as (srv, url):
            new_user, close = make_sender("raw", url, 1, timeout_s=5)
            send = new_user()
            t = Target(url, b"{}")
            # The first send opens the connection; the second is pipelined behind it.
            assert list(await asyncio.gather(send(t), send(t))) == [200, 429]
            assert srv.connections == 1
            await close()

    run(pipelined())


def test_unsolicited_second_response_drops_the_connection(run: Any) -> None:
    """Two responses to one request: the first answers it, the stray one is not taken for
    the next request's answer: the connection is dropped and the next request reconnects."""
    def make(srv: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await srv.read(reader):
                writer.write(_response(200) + _response(500))
                await writer.drain()
        return handler

    async def main() -> None:
        async with serving(make) as (srv, url):
            out = await _outcomes(url, 2)
            assert [o.status for o in out] == [200, 200]
            assert srv.connections == 2

    run(main())


def test_connection_close_is_honoured(run: Any) -> None:
    def make(srv: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await srv.read(reader)
            writer.write(_response(200, b"{}", b"Connection: close\r\n"))
            await writer.drain()
            # Does not close its end: the client must, and must not reuse the connection.
            await reader.read()
        return handler

    async def main() -> None:
        async with serving(make) as (srv, url):
            out = await _outcomes(url, 3)
            assert [(o.status, o.error) for o in out] == [(200, "")] * 3
            assert srv.connections == 3

    run(main())


def test_body_delimited_by_close(run: Any) -> None:
    """No content-length, no chunking: the body runs to the server's close."""
    def make(srv: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await srv.read(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nsome")
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b" body")
        return handler

    async def main() -> None:
        async with serving(make) as (srv, url):
            out = await _outcomes(url, 2)
            assert [(o.status, o.error) for o in out] == [(200, "")] * 2
            assert srv.connections == 2

    run(main())


def test_chunked_response(run: Any) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n")

    def make(srv: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await srv.read(reader):
                for i in range(0, len(chunked), 7):
                    writer.write(chunked[i:i + 7])
                    await writer.drain()
                    await asyncio.sleep(0.001)
        return handler

    async def main() -> None:
        async with serving(make) as (srv, url):
            out = await _outcomes(url, 2)
            assert [(o.status, o.error) for o in out] == [(200, "")] * 2
            assert srv.connections == 1  # the chunked body's end was found exactly

    run(main())


def test_server_closes_mid_response_is_lost(run: Any) -> None:
    def make(srv: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await srv.read(reader)
            if srv.connections == 1:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            else:
                writer.write(OK)
            await writer.drain()
        return handler

    async def main() -> None:
        async with serving(make) as (srv, url):
            out = await _outcomes(url, 2)
            assert (out[0].status, out[0].error) == (None, "IncompleteResponse")
            assert (out[1].status, out[1].error) == (200, "")  # reconnected

    run(main())


def test_garbled_response_is_lost(run: Any) -> None:
    def make(srv: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await srv.read(reader)
            writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            await writer.drain()
            await reader.read()
        return handler

    async def main() -> None:
        async with serving(make) as (_, url):
            out = await _outcomes(url, 1)
            assert (out[0].status, out[0].error) == (None, "ProtocolError")

    run(main())


def test_unanswered_request_times_out_as_lost(run: Any) -> None:
    def make(srv: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await srv.read(reader)
            if srv.connections > 1:
                writer.write(OK)
            await reader.read()  # the first connection never answers
        return handler

    async def main() -> None:
        async with serving(make) as (srv, url):
            t0 = time.perf_counter()
            out = await _outcomes(url, 2, timeout_s=0.2)
            assert (out[0].status, out[0].error) == (None, "TimeoutError")
            assert 0.2 <= out[0].seconds < 0.8  # fired by the watchdog, a tick (25 ms) late
            assert (out[1].status, out[1].error) == (200, "")  # a fresh connection
            assert srv.connections == 2
            assert time.perf_counter() - t0 < 1.5

    run(main())


def test_refused_connection_is_lost(run: Any) -> None:
    async def main() -> None:
        async with serving(_keep_alive()) as (_, url):
            pass  # closed: nothing listens on its port any more
        out = await _outcomes(url, 1)
        assert (out[0].status, out[0].error) == (None, "ConnectionRefusedError")

    run(main())


def test_closed_and_open_loop_over_raw(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("loadtests.client.CLIENT_TIMEOUT_S", 2.0)

    async def main() -> None:
        async with serving(_keep_alive()) as (srv, url):
            targets = [Target(url, b"{}", 2, name="a"), Target(url, b"[]", 2, name="b")]
            r = await closed_loop(targets, 4, 0.3, "raw", warmup_s=0.1)
            assert r.requests > 20 and r.ok == r.requests and r.items_per_request == 2
            assert {o.target for o in r.outcomes} == {"a", "b"}
            assert srv.connections == 8  # warm-up users, then measured ones: keep-alive
            o = await open_loop(targets, 200, 0.3, max_connections=4, client="raw")
            assert o.requests == 60 and o.ok == 60

    run(main())
