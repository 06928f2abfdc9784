"""The raw load-generator client: HTTP/1.1 keep-alive over an ``asyncio.Protocol``, as cheap
per request as Python allows, since the generator shares the CPUs with the server it measures.
The request bytes are built once per Target; ``send`` writes them and returns a future that
``data_received`` resolves with the status once the whole response is in (Content-Length,
chunked or close-delimited); one watchdog task per pool enforces the per-request timeout.
A request fails (is lost) on a timeout, a reset, an early close or a garbled response.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from loadtests.client import Target

__all__ = ["IncompleteResponse", "ProtocolError", "RawPool"]


class IncompleteResponse(ConnectionError):
    """The connection closed before the whole response arrived."""


class ProtocolError(ValueError):
    """A response this client cannot parse (or one nobody asked for)."""


def _header(head: bytes, name: bytes) -> bytes:
    """The value of ``name`` (``b"\\r\\nname:"``, lowercase) in a lowercased head, or b""."""
    i = head.find(name)
    if i < 0:
        return b""
    j = head.find(b"\r\n", i + len(name))
    return head[i + len(name):j if j >= 0 else len(head)]


def _parse_head(raw: bytes) -> tuple[int, int, bool, bool]:
    """(status, body length or -1: until the close, chunked, close after) of a head."""
    head = raw.lower()
    if head[:7] != b"http/1." or len(head) < 12:
        raise ProtocolError(f"not an HTTP/1.x response: {raw[:40]!r}")
    status = int(head[9:12])
    chunked = b"chunked" in _header(head, b"\r\ntransfer-encoding:")
    cl = _header(head, b"\r\ncontent-length:")
    if cl and not chunked:
        if (length := int(cl)) < 0:
            raise ProtocolError(f"content-length {length}")
    else:  # no length: none, or the body runs until the server closes
        length = 0 if status < 200 or status in (204, 304) else -1
    conn = _header(head, b"\r\nconnection:")
    close = b"close" in conn or (head[5:8] == b"1.0" and b"keep-alive" not in conn)
    return status, length, chunked, close


# A server sends the same few heads over and over (the date changes once a second): parse
# each once. Bounded: cleared when full.
_HEADS: dict[bytes, tuple[int, int, bool, bool]] = {}


class _RawProtocol(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection, parsed incrementally from one buffer. Responses
    answer requests in order (so pipelining works); a pending request is (future, deadline),
    the deadline enforced by the pool's watchdog."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None  # None: closed, don't send
        self.pending: deque[tuple[asyncio.Future[int], float]] = deque()
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for the end of the head
        self._status = 0  # of the response being read; 0 while its head is incomplete
        self._length = 0  # its body's length; -1: until the connection closes
        self._chunked, self._close = False, False
        self._pos = 0  # chunked: where the next chunk's size line starts

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        try:  # one whole response per turn, while there are any
            while buf:
                if not self._status:
                    i = buf.find(b"\r\n\r\n", self._scan)
                    if i < 0:
                        self._scan = max(0, len(buf) - 3)
                        return
                    head = bytes(buf[:i])
                    if (parsed := _HEADS.get(head)) is None:
                        if len(_HEADS) >= 256:
                            _HEADS.clear()
                        parsed = _HEADS[head] = _parse_head(head)
                    self._status, self._length, self._chunked, self._close = parsed
                    del buf[:i + 4]  # deleting a bytearray's front is O(1)
                    self._scan = self._pos = 0
                end = self._chunks_end() if self._chunked else self._length
                if end < 0 or end > len(buf):
                    return
                del buf[:end]
                status, self._status = self._status, 0
                if status >= 200:  # 1xx are interim: the real answer follows
                    self._answer(status)
                    if self.transport is None:
                        return
        except Exception as exc:  # a garbled stream: nothing more on it can be trusted
            self.close(exc if isinstance(exc, ProtocolError) else ProtocolError(repr(exc)))

    def _chunks_end(self) -> int:
        """Where the chunked body (and its trailers) ends in the buffer, or -1."""
        buf, pos = self._buf, self._pos
        while (j := buf.find(b"\r\n", pos)) >= 0:
            size = int(bytes(buf[pos:j]).partition(b";")[0], 16)
            if size == 0:  # the last chunk, then trailer lines and an empty line
                k = buf.find(b"\r\n\r\n", j)
                self._pos = pos
                return -1 if k < 0 else k + 4
            nxt = j + 2 + size + 2
            if len(buf) < nxt:
                break
            if buf[nxt - 2:nxt] != b"\r\n":
                raise ProtocolError("malformed chunk")
            pos = nxt
        self._pos = pos
        return -1

    def _answer(self, status: int) -> None:
        if not self.pending:
            raise ProtocolError(f"a response ({status}) without a request")
        fut = self.pending.popleft()[0]
        if not fut.done():  # done: its awaiter was cancelled
            fut.set_result(status)
        if self._close:
            self.close(IncompleteResponse("connection: close, with requests pipelined"))

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and self._status and not self._chunked and self._length < 0:
            with suppress(ProtocolError):  # a body delimited by the close: complete
                self._answer(self._status)
        self._status = 0
        self.close(exc or IncompleteResponse("the server closed the connection"))

    def close(self, exc: BaseException) -> None:
        """Stop using this connection; the requests pending on it fail with ``exc``."""
        t, self.transport = self.transport, None
        if t is not None:
            t.close()
        while self.pending:
            fut = self.pending.popleft()[0]
            if not fut.done():
                fut.set_exception(exc)

    def expire(self, now: float, timeout_s: float) -> None:
        if self.pending and self.pending[0][1] <= now:
            # Its answer may still come and be taken for the next one's: drop them all.
            self.close(TimeoutError(f"no answer in {timeout_s:g} s"))


class _RawConnection:
    """A user's connection: ``send`` writes the prebuilt request and returns the future that
    ``data_received`` resolves (no coroutine, task or timer per request)."""

    def __init__(self, pool: RawPool) -> None:
        self.pool = pool
        self.proto: _RawProtocol | None = None
        self._opening: asyncio.Future[tuple[asyncio.Transport, _RawProtocol]] | None = None

    def send(self, t: Target) -> Awaitable[int]:
        p = self.proto
        if p is None or p.transport is None:
            return self._open_send(t)
        loop = self.pool.loop
        fut: asyncio.Future[int] = loop.create_future()
        p.pending.append((fut, loop.time() + self.pool.timeout_s))
        p.transport.write(self.pool.request(t))
        return fut

    async def _open_send(self, t: Target) -> int:
        if (opening := self._opening) is None:  # concurrent sends share one connect
            pool = self.pool
            pool.start()
            self._opening = opening = asyncio.ensure_future(asyncio.wait_for(
                pool.loop.create_connection(_RawProtocol, pool.host, pool.port), pool.timeout_s))
            opening.add_done_callback(self._opened)
        self.proto = proto = (await asyncio.shield(opening))[1]
        if proto.transport is None:  # closed already: don't reconnect in a loop
            raise IncompleteResponse("the server closed the connection at once")
        return await self.send(t)

    def _opened(self, f: asyncio.Future[tuple[asyncio.Transport, _RawProtocol]]) -> None:
        self._opening = None
        if not f.cancelled() and f.exception() is None:  # (an exception is retrieved)
            self.proto = f.result()[1]

    def close(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
        if self.proto is not None:
            self.proto.close(IncompleteResponse("the client closed the connection"))


class RawPool:
    """The raw users' connections, the request bytes built once per Target, and the one
    watchdog task that enforces the per-request timeout on them all."""

    def __init__(self, url: str, timeout_s: float) -> None:
        u = urlsplit(url)
        self.host, self.port, self.timeout_s = u.hostname or "127.0.0.1", u.port or 80, timeout_s
        self.conns: list[_RawConnection] = []
        self.loop: asyncio.AbstractEventLoop  # set by start(), before the first send
        self._requests: dict[int, bytes] = {}
        self._watchdog: asyncio.Task[None] | None = None

    def request(self, t: Target) -> bytes:
        if (raw := self._requests.get(id(t))) is None:
            u = urlsplit(t.url)
            path = u.path + (f"?{u.query}" if u.query else "")
            head = [f"POST {path} HTTP/1.1", f"host: {u.netloc}",
                    f"content-length: {len(t.body)}"]
            if not any(k.lower() == "content-type" for k in t.headers):
                head.append("content-type: application/json")
            head += [f"{k}: {v}" for k, v in t.headers.items()]
            raw = self._requests[id(t)] = ("\r\n".join(head) + "\r\n\r\n").encode() + t.body
        return raw

    def user(self) -> Callable[[Target], Awaitable[int]]:
        c = _RawConnection(self)
        self.conns.append(c)
        return c.send

    def start(self) -> None:
        if self._watchdog is None:
            self.loop = asyncio.get_running_loop()
            self._watchdog = self.loop.create_task(self._watch())

    async def _watch(self) -> None:
        # A timeout fires up to a tick late; one scan per tick instead of a timer per request.
        tick = min(1.0, self.timeout_s / 8)
        while True:
            await asyncio.sleep(tick)
            now = self.loop.time()
            for c in self.conns:
                if c.proto is not None:
                    c.proto.expire(now, self.timeout_s)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        for c in self.conns:
            c.close()
