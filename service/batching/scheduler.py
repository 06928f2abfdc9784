"""The batch threads: a shared pool (TF's shared batch scheduler) over every model version's
queue, round robin. Each thread takes the next ready batch, runs it on the engine (kernels
release the GIL, so the event loop keeps serving meanwhile), splits the outputs and resolves
the callers' futures on their event loop with one ``call_soon_threadsafe`` per batch.

A batch closes as soon as a thread is free for it (``batch_timeout_micros`` = 0, the default):
a lone request never waits for company, and requests that arrive while a batch runs form
the next one. With a timeout > 0 a batch also waits, up to that long, to fill.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from service.batching.merge import batch_major, merge_inputs, split_outputs
from service.batching.params import BatchingParameters
from service.batching.queue import Batch, ModelQueue
from service.batching.task import Task
from service.errors import DeadlineExceeded, Unavailable

__all__ = ["BatchObserver", "Scheduler", "intra_op_threads", "limit_engine_threads"]

log = logging.getLogger("numbaserve.batching")

# observer(queue, batch rows, padded rows, engine seconds, queue seconds of each new task)
BatchObserver = Callable[[ModelQueue, int, int, float, list[float]], None]

_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


def _deliver(outcomes: list[_Outcome]) -> None:
    """On the event loop: resolve the futures still waiting."""
    for fut, value, exc in outcomes:
        if fut.done():
            continue
        if exc is None:
            fut.set_result(value)
        else:
            fut.set_exception(exc)


def intra_op_threads(setting: int, batch_threads: int) -> int:
    """Threads each engine call may use: ``setting`` if > 0, else the cores left once the
    event loop has one, shared by the batch threads. On 2 cores that is 1: a parallel
    region whose second thread waits for the core the event loop is parsing on stalls every
    kernel (one image of the seed CNN on a loaded 2-core machine: 0.55 ms with one thread,
    47.6 ms with two)."""
    if setting > 0:
        return setting
    cores = os.cpu_count() or 1
    return max(1, (cores - 1) // max(1, batch_threads))


def limit_engine_threads(n: int) -> None:
    """Size this batch thread's intra-op parallelism (numba's is per calling thread; BLAS's
    pool is per process, and only batch threads call it)."""
    try:
        import numba  # the engine's runtime: its thread count is per calling thread

        numba.set_num_threads(min(n, int(getattr(numba.config, "NUMBA_NUM_THREADS", n))))
    except Exception:  # no numba threading layer: kernels run serially anyway
        log.debug("could not set numba's thread count", exc_info=True)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n, user_api="blas")
    except Exception:
        log.debug("could not limit BLAS threads", exc_info=True)


class Scheduler:
    def __init__(self, params: BatchingParameters, observer: BatchObserver | None = None,
                 name: str = "numbaserve-batch", threads_per_batch: int = 0) -> None:
        self.params = params
        self.threads_per_batch = intra_op_threads(threads_per_batch, params.num_batch_threads)
        self._observer = observer
        self._cond = threading.Condition(threading.Lock())
        self._ready: deque[ModelQueue] = deque()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(params.num_batch_threads)
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ event loop side
    def submit(self, queue: ModelQueue, task: Task) -> None:
        """Queue ``task``; raises ResourceExhausted (queue full) or Unavailable (closed)."""
        with self._cond:
            if self._closed:
                raise Unavailable("the server is shutting down")
            queue.admit(task)
            if not queue.scheduled:
                queue.scheduled = True
                self._ready.append(queue)
            self._cond.notify()

    def close(self) -> None:
        """Stop the threads after their current batch; fail what is still queued."""
        with self._cond:
            self._closed = True
            left = [t for q in self._ready for t in q.tasks]
            for q in self._ready:
                q.tasks.clear()
                q.rows = 0
                q.scheduled = False
            self._ready.clear()
            self._cond.notify_all()
        self._finish(left, None, Unavailable("the server is shutting down"))

    # ------------------------------------------------------------------ batch threads
    def _next(self) -> tuple[ModelQueue, Batch] | None:
        dropped: list[Task] = []
        try:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    wait: float | None = None
                    for _ in range(len(self._ready)):
                        q = self._ready.popleft()
                        at = q.ready_at(now)
                        if at > now:
                            self._ready.append(q)
                            wait = at - now if wait is None else min(wait, at - now)
                            continue
                        batch = q.take(now, dropped)
                        if q.tasks:
                            self._ready.append(q)  # round robin: others go first next time
                        else:
                            q.scheduled = False
                        if batch is not None:
                            return q, batch
                    if dropped:
                        break  # answer them before sleeping
                    self._cond.wait(wait)
                return None
        finally:
            if dropped:
                self._drop(dropped, time.monotonic())

    def _work(self) -> None:
        limit_engine_threads(self.threads_per_batch)
        while True:
            nxt = self._next()
            if nxt is None:
                if self._closed:
                    return
                continue
            try:
                self._run(*nxt)
            except BaseException as exc:  # never lose a batch's callers
                log.exception("batch failed")
                self._finish([t for t, _, _ in nxt[1].parts], None, exc)

    def _drop(self, tasks: list[Task], now: float) -> None:
        expired = [t for t in tasks if not t.cancelled]
        self._finish([t for t in tasks if t.cancelled], None, None)
        for t in expired:
            waited = (now - t.enqueued) * 1000
            self._finish([t], None, DeadlineExceeded(
                f"request to model {t.handle.name!r} exceeded its deadline after waiting "
                f"{waited:.0f} ms in the batch queue; it was not run"))

    def _run(self, q: ModelQueue, batch: Batch) -> None:
        first = batch.parts[0][0]
        model = first.model
        now = time.monotonic()
        waits = []
        for t, _, _ in batch.parts:
            if not t.started:
                t.started = True
                waits.append(now - t.enqueued)
        aliases = list(first.feeds)
        feeds = merge_inputs(batch, aliases, self.params.pad_variable_length_inputs)
        t0 = time.perf_counter()
        try:
            outputs = model.run(feeds, signature=first.signature, outputs=first.outputs)
        except Exception as exc:
            self._finish([t for t, _, _ in batch.parts], None, exc)
            return
        seconds = time.perf_counter() - t0
        q.note_drain(batch.rows, seconds, self.params.num_batch_threads)
        if self._observer is not None:
            try:
                self._observer(q, batch.rows, batch.padded, seconds, waits)
            except Exception:
                log.exception("batch observer failed")
        whole = len(batch.parts) == 1 and batch.padded == batch.rows
        if whole and batch.parts[0][1] == 0 and batch.parts[0][2] == first.rows:
            self._finish([first], outputs, None)  # lone request: outputs as they are
            return
        if not batch_major(outputs, batch.padded):
            # Outputs not indexed by the batch: this signature cannot be batched. Remember,
            # and run each request alone (a split request has no valid whole; fail it).
            with self._cond:
                q.solo_keys.add(batch.key)
            log.warning("model %r version %d: outputs are not batch-major; running its "
                        "requests unbatched", q.name, q.version)
            for t, start, stop in batch.parts:
                if start == 0 and stop == t.rows:
                    self._solo(t)
                else:
                    self._finish([t], None, Unavailable(
                        "this signature cannot split a request across batches"))
            return
        self._split(batch, outputs)

    def _solo(self, t: Task) -> None:
        try:
            out = t.model.run(dict(t.feeds), signature=t.signature, outputs=t.outputs)
        except Exception as exc:
            self._finish([t], None, exc)
            return
        self._finish([t], out, None)

    def _split(self, batch: Batch, outputs: dict[str, np.ndarray]) -> None:
        outcomes: list[tuple[Task, Any]] = []
        for (t, start, stop), part in zip(batch.parts, split_outputs(batch, outputs),
                                          strict=True):
            if start == 0 and stop == t.rows:
                outcomes.append((t, part))
            else:
                whole = t.add_part(start, stop - start, part)
                if whole is not None:
                    outcomes.append((t, whole))
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for t, value in outcomes:
            t.finished = True
            by_loop.setdefault(t.loop, []).append((t.future, value, None))
            t.handle.release()
        self._post(by_loop)

    def _finish(self, tasks: list[Task], value: Any, exc: BaseException | None) -> None:
        """Resolve ``tasks`` (all with ``value`` or ``exc``; neither: just drop them)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for t in tasks:
            if t.finished:
                continue
            t.finished = True
            t.handle.release()
            if value is not None or exc is not None:
                by_loop.setdefault(t.loop, []).append((t.future, value, exc))
        self._post(by_loop)

    @staticmethod
    def _post(by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]]) -> None:
        for loop, outcomes in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, outcomes)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass
