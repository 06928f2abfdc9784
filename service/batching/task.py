"""A request in the batcher: its arrays, its future, and what has been run of it so far.

A task is made on the event loop, queued, taken (whole, or in parts when a large request is
split across batches) by a batch thread, and resolved back on its loop with the outputs or an
error. It owns its manager handle: the batch thread releases it when the task is finished or
dropped, so a version never unloads under a queued request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Mapping
from typing import Any, Protocol

import numpy as np

__all__ = ["Handle", "Key", "Task"]

# What may share a batch: (signature, requested outputs, per input (alias, dtype, shape
# without the batch dimension)). None: the task always runs alone.
Key = Hashable | None

_lock = threading.Lock()  # guards the rare multi-part (split) tasks' result assembly


class Handle(Protocol):
    name: str
    version: int
    model: Any

    def release(self) -> None: ...


class Task:
    __slots__ = ("loop", "future", "handle", "signature", "outputs", "feeds", "rows", "cost",
                 "key", "deadline", "enqueued", "taken", "done_rows", "parts", "finished",
                 "cancelled", "started")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[dict[str, np.ndarray]],
        handle: Handle,
        signature: str,
        outputs: list[str] | None,
        feeds: Mapping[str, np.ndarray],
        rows: int,
        key: Key,
        deadline: float | None,
        enqueued: float,
        cost: int,
    ) -> None:
        self.loop = loop
        self.future = future
        self.handle = handle
        self.signature = signature
        self.outputs = outputs
        self.feeds = feeds
        self.rows = rows  # rows along the batch dimension
        self.cost = cost  # rows it counts for in the queue's capacity
        self.key = key
        self.deadline = deadline  # time.monotonic() seconds, or None
        self.enqueued = enqueued
        self.taken = 0  # rows handed to batches so far
        self.done_rows = 0
        self.parts: list[tuple[int, dict[str, np.ndarray]]] = []
        self.finished = False
        self.cancelled = False  # set by the loop when the caller stopped waiting
        self.started = False  # first part taken (its queue time is recorded then)

    @property
    def model(self) -> Any:
        return self.handle.model

    def add_part(
        self, start: int, n: int, outputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray] | None:
        """Record the outputs of rows [start, start + n); the whole result once complete."""
        with _lock:
            if self.finished:
                return None
            self.parts.append((start, outputs))
            self.done_rows += n
            if self.done_rows < self.rows:
                return None
            parts = sorted(self.parts, key=lambda p: p[0])
            self.parts = []
        return {alias: np.concatenate([p[1][alias] for p in parts]) for alias in parts[0][1]}
