"""One model version's queue: admission (bounded, with a Retry-After estimate) and batch
formation (merge same-shape requests, split large ones, drop expired and abandoned ones).

Every method runs under the scheduler's lock; none of them blocks or runs a kernel.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from service.batching.params import BatchingParameters
from service.batching.task import Key, Task
from service.errors import ResourceExhausted

__all__ = ["Batch", "ModelQueue", "QUEUE_FULL"]

# TF Serving's message for a full batch queue (its status is UNAVAILABLE; ours 503 too).
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"

# How far past the head a batch looks for requests of its shape when shapes are mixed:
# bounds the time the scheduler's lock is held.
_SCAN = 256


@dataclass
class Batch:
    """Rows [start, stop) of each task, run as one engine call of ``padded`` rows."""

    key: Key
    parts: list[tuple[Task, int, int]] = field(default_factory=list)
    rows: int = 0
    padded: int = 0


class ModelQueue:
    __slots__ = ("name", "version", "params", "batching", "tasks", "rows", "scheduled",
                 "solo_keys", "rate", "in_flight")

    def __init__(self, name: str, version: int, params: BatchingParameters,
                 batching: bool) -> None:
        self.name = name
        self.version = version
        self.params = params
        self.batching = batching
        self.tasks: deque[Task] = deque()
        self.rows = 0  # queued cost (rows) not yet handed to a batch
        self.scheduled = False  # in the scheduler's ring of queues with work
        self.solo_keys: set[Key] = set()  # keys whose outputs turned out not batch-major
        self.rate = 0.0  # rows per second this queue drains at (EWMA over batches)
        self.in_flight = 0

    # ------------------------------------------------------------------ admission
    def retry_after(self) -> float:
        """Seconds until the queue has drained what it holds now, at its recent rate."""
        if self.rate <= 0:
            return 1.0
        return max(1.0, math.ceil(self.rows / self.rate))

    def admit(self, task: Task) -> None:
        # A request larger than the whole queue still gets in when the queue is empty.
        if self.rows and self.rows + task.cost > self.params.queue_capacity:
            raise ResourceExhausted(QUEUE_FULL, retry_after=self.retry_after())
        self.tasks.append(task)
        self.rows += task.cost

    def note_drain(self, rows: int, seconds: float, threads: int) -> None:
        if seconds <= 0:
            return
        rate = rows / seconds * threads
        self.rate = rate if self.rate <= 0 else 0.8 * self.rate + 0.2 * rate

    # ------------------------------------------------------------------ formation
    def ready_at(self, now: float) -> float:
        """When the head batch should close: now, or when ``batch_timeout_micros`` expires."""
        timeout = self.params.batch_timeout_micros
        if timeout <= 0 or not self.batching or self.rows >= self.params.execution_limit:
            return now
        head = self.tasks[0]
        if head.key is None or head.key in self.solo_keys or head.taken:
            return now
        return head.enqueued + timeout / 1e6

    def _solo(self, task: Task) -> bool:
        return not self.batching or task.key is None or task.key in self.solo_keys

    def take(self, now: float, dropped: list[Task]) -> Batch | None:
        """The next batch, or None if the queue held only dead tasks (put in ``dropped``)."""
        tasks = self.tasks
        limit = self.params.execution_limit
        split = self.params.enable_large_batch_splitting
        batch: Batch | None = None
        skipped: list[Task] = []
        while tasks:
            t = tasks[0]
            if t.cancelled or t.finished or (
                    not t.taken and t.deadline is not None and t.deadline <= now):
                tasks.popleft()
                self.rows -= t.cost - (t.taken if t.key is not None else 0)
                dropped.append(t)
                continue
            if batch is None:
                batch = Batch(t.key)
                if self._solo(t):  # runs alone, whole, unpadded
                    tasks.popleft()
                    self.rows -= t.cost
                    t.taken = t.rows
                    batch.parts.append((t, 0, t.rows))
                    batch.rows = batch.padded = t.rows
                    return batch
            elif t.key != batch.key or self._solo(t):
                if len(skipped) >= _SCAN:
                    break
                skipped.append(tasks.popleft())
                continue
            room = limit - batch.rows
            left = t.rows - t.taken
            if left <= room:
                tasks.popleft()
                batch.parts.append((t, t.taken, t.rows))
                batch.rows += left
                t.taken = t.rows
                self.rows -= left
            elif split or not batch.parts:
                # Split (or, without splitting, a task that alone exceeds the limit: it was
                # admitted as <= max_batch_size == limit, so this is only the split case).
                take = room
                batch.parts.append((t, t.taken, t.taken + take))
                batch.rows += take
                t.taken += take
                self.rows -= take
            else:
                break  # whole requests only: it opens the next batch
            if batch.rows >= limit:
                break
        if skipped:
            tasks.extendleft(reversed(skipped))
        if batch is not None:
            batch.padded = self.params.padded_size(batch.rows)
        return batch
