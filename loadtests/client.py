"""The load generator: closed-loop users (fixed concurrency) or open-loop arrivals (a rate),
over httpx's async client or a minimal raw HTTP/1.1 keep-alive client (loadtests.raw), with
every request's outcome recorded: a status code when the server answered (any code, refusals
included), or ``lost`` when it did not (connection reset, protocol error, client timeout).

Only 127.0.0.1 / localhost URLs are accepted; every run is bounded in time and count.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from loadtests.raw import RawPool

__all__ = ["Outcome", "Result", "Target", "check_local", "closed_loop", "open_loop",
           "make_sender"]

LOCAL_HOSTS = frozenset(("127.0.0.1", "localhost", "::1"))
CLIENT_TIMEOUT_S = 30.0


def check_local(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOCAL_HOSTS:
        raise SystemExit(f"refusing to send load to {host!r}: only 127.0.0.1 is allowed")


@dataclass(frozen=True)
class Target:
    """One kind of request: POST ``body`` to ``url``; ``items`` rows per request."""

    url: str
    body: bytes
    items: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)
    name: str = ""


@dataclass(slots=True)  # one per request: cheaper to make, half the memory
class Outcome:
    status: int | None  # None: lost
    seconds: float
    error: str = ""
    target: str = ""


@dataclass
class Result:
    label: str
    outcomes: list[Outcome]
    wall_s: float
    items_per_request: float = 1.0

    @property
    def requests(self) -> int:
        return len(self.outcomes)

    @property
    def lost(self) -> int:
        return sum(1 for o in self.outcomes if o.status is None)

    @property
    def ok(self) -> int:
        return sum(1 for o in self.outcomes if o.status == 200)

    def by_status(self) -> Counter[str]:
        return Counter(str(o.status) if o.status is not None else f"lost:{o.error}"
                       for o in self.outcomes)

    def latencies(self, ok_only: bool = True) -> np.ndarray:
        return np.array([o.seconds for o in self.outcomes
                         if (o.status == 200 or not ok_only) and o.status is not None])

    def percentile(self, p: float, ok_only: bool = True) -> float:
        lat = self.latencies(ok_only)
        return float(np.percentile(lat, p)) if lat.size else float("nan")

    @property
    def rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "requests": self.requests,
            "ok": self.ok,
            "lost": self.lost,
            "by_status": dict(self.by_status()),
            "wall_s": self.wall_s,
            "rps": self.rps,
            "items_per_s": self.rps * self.items_per_request,
            "p50_ms": self.percentile(50) * 1e3,
            "p95_ms": self.percentile(95) * 1e3,
            "p99_ms": self.percentile(99) * 1e3,
        }


# ----------------------------------------------------------------------------- senders

Sender = Callable[[Target], Awaitable[int]]


def make_sender(kind: str, url: str, connections: int, timeout_s: float | None = None,
                ) -> tuple[Callable[[], Sender], Callable[[], Awaitable[None]]]:
    """(new_user() -> send(target) -> status, close()). ``kind``: "httpx" or "raw"; each
    user gets its own keep-alive connection (``connections`` is advisory). A request not
    answered in ``timeout_s`` (default ``CLIENT_TIMEOUT_S``) fails (is lost)."""
    check_local(url)
    timeout = CLIENT_TIMEOUT_S if timeout_s is None else timeout_s
    if kind == "httpx":
        import httpx

        clients: list[httpx.AsyncClient] = []

        def httpx_user() -> Sender:
            # One client (one keep-alive connection) per user: a single pool shared by
            # hundreds of concurrent requests spends its time on its own bookkeeping
            # (encode/httpx#3215) and would measure httpx, not the server.
            client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=1))
            clients.append(client)

            async def send(t: Target) -> int:
                r = await client.post(t.url, content=t.body,
                                      headers={"content-type": "application/json",
                                               **t.headers})
                return r.status_code

            return send

        async def close_all() -> None:
            for c in clients:
                await c.aclose()

        return httpx_user, close_all
    if kind == "raw":
        pool = RawPool(url, timeout)
        return pool.user, pool.close
    raise ValueError(f"unknown client {kind!r} (httpx or raw)")


async def _one(send: Sender, t: Target, out: list[Outcome]) -> None:
    t0 = perf_counter()
    try:
        status = await send(t)
    except Exception as exc:  # the server did not answer: lost
        out.append(Outcome(None, perf_counter() - t0, type(exc).__name__, t.name))
        return
    out.append(Outcome(status, perf_counter() - t0, "", t.name))


# ----------------------------------------------------------------------------- drivers


async def closed_loop(targets: Sequence[Target], concurrency: int, duration_s: float,
                      client: str = "httpx", max_requests: int = 1_000_000,
                      label: str = "", warmup_s: float = 0.0) -> Result:
    """``concurrency`` users, each sending its next request when the last is answered,
    cycling through ``targets``, for ``duration_s`` (after ``warmup_s`` not recorded)."""
    new_user, close = make_sender(client, targets[0].url, concurrency)
    outcomes: list[Outcome] = []
    budget = [max_requests]
    try:
        if warmup_s > 0:
            await _users(new_user, targets, concurrency, warmup_s, [], [max_requests])
        t0 = perf_counter()
        await _users(new_user, targets, concurrency, duration_s, outcomes, budget)
        wall = perf_counter() - t0
    finally:
        await close()
    items = float(np.mean([t.items for t in targets]))
    return Result(label, outcomes, wall, items)


async def _users(new_user: Callable[[], Sender], targets: Sequence[Target], concurrency: int,
                 duration_s: float, outcomes: list[Outcome], budget: list[int]) -> None:
    stop = perf_counter() + duration_s

    async def user(i: int) -> None:
        send, n, k = new_user(), len(targets), i
        now = perf_counter()
        while now < stop and budget[0] > 0:
            budget[0] -= 1
            t = targets[k % n]
            k += 1
            # _one, inlined (a coroutine less per request); one clock read per request.
            try:
                status, error = await send(t), ""
            except Exception as exc:  # the server did not answer: lost
                status, error = None, type(exc).__name__
            end = perf_counter()
            outcomes.append(Outcome(status, end - now, error, t.name))
            now = end

    await asyncio.gather(*(user(i) for i in range(concurrency)))


async def open_loop(targets: Sequence[Target], rate: float, duration_s: float,
                    max_connections: int = 256, client: str = "httpx",
                    max_requests: int = 100_000, label: str = "") -> Result:
    """Requests arrive at ``rate`` per second whatever the answers do (a burst), each on its
    own task, for ``duration_s``; at most ``max_connections`` are open, later arrivals wait
    for one (their wait counts in their latency, as a real client's would). Arrivals stop at
    ``duration_s`` even if the generator could not offer the whole rate."""
    new_user, close = make_sender(client, targets[0].url, max_connections)
    outcomes: list[Outcome] = []
    free: asyncio.Queue[Sender] = asyncio.Queue()
    for _ in range(max_connections):
        free.put_nowait(new_user())
    tasks: set[asyncio.Task[None]] = set()

    async def arrival(t: Target) -> None:
        t0 = perf_counter()
        send = await free.get()
        try:
            sub: list[Outcome] = []
            await _one(send, t, sub)
            o = sub[0]
            o.seconds = perf_counter() - t0
            outcomes.append(o)
        finally:
            free.put_nowait(send)

    t0 = perf_counter()
    end = t0 + duration_s
    n = min(int(rate * duration_s), max_requests)
    backlog = 2 * max_connections  # arrivals waiting for a connection, at most
    try:
        for i in range(n):
            now = perf_counter()
            if now >= end:
                break  # the generator could not keep up: the burst is time-bounded
            delay = t0 + i / rate - now
            if delay > 0:
                await asyncio.sleep(delay)
            while len(tasks) >= backlog:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(arrival(targets[i % len(targets)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=CLIENT_TIMEOUT_S * 2)
        wall = perf_counter() - t0
        for task in list(tasks):  # still unanswered after the grace time: lost
            task.cancel()
            outcomes.append(Outcome(None, wall, "Unanswered"))
    finally:
        await close()
    items = float(np.mean([t.items for t in targets]))
    return Result(label, outcomes, wall, items)
