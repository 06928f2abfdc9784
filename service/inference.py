"""The protocol-neutral data plane: (model, version|label, named inputs) -> named outputs.

Protocols decode their wire format into Python/numpy values and call ``Inference.infer``.
On the event loop it takes a handle on the version, builds the input arrays with the
signature's dtypes (``np.asarray``: no per-element Python), checks them against the
signature (a 400 names the input), and queues the request on the version's batch queue
(``service.batching``). A batch thread merges queued requests of the same shape into one
engine call and resolves each caller's future with its rows of the outputs. The event loop
never runs a kernel; the engine never parses JSON.

Refusals happen at once, before anything is queued: a full queue or too many requests in
flight for the model -> 503 with Retry-After (seconds for the queue to drain at its recent
rate). A request whose deadline passes -> 504: if it is still queued it is never run.

The handle is released by the batch thread when the request has run (or been dropped), not
when the awaiting caller goes away: a request abandoned mid-run still keeps its version
loaded until the kernel it started has returned.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

import engine
from engine import errors as engine_errors
from service.batching import (
    BatchingParameters,
    ModelQueue,
    Scheduler,
    Task,
    batch_key,
)
from service.batching.jsondecode import JsonArray
from service.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
)
from service.metrics import Metrics

__all__ = [
    "REQUEST_DEADLINE",
    "TIMEOUT_HEADER",
    "Decoder",
    "InferResult",
    "Inference",
    "as_array",
    "deadline_from_timeout_ms",
    "infer",
    "tune_interpreter",
]

# Inputs given either ready (alias -> array-like) or as a decoder that needs the signature
# first (TF's row format names no inputs when the signature has just one).
Decoder = Callable[[engine.Signature], Mapping[str, Any]]

# The per-request deadline header (milliseconds, like --rest_api_timeout_in_ms).
TIMEOUT_HEADER = "X-Request-Timeout-Ms"

# The current request's (arrival time, deadline from its timeout header or None), both
# time.monotonic(), set by the HTTP layer (see service.app): the server's default deadline
# counts from the arrival, so reading and decoding the body count too.
REQUEST_DEADLINE: contextvars.ContextVar[tuple[float, float | None] | None] = (
    contextvars.ContextVar("numbaserve_request_deadline", default=None))


class _Handle(Protocol):
    name: str
    version: int
    model: engine.Model

    def release(self) -> None: ...


class _Manager(Protocol):
    def acquire(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> _Handle: ...


@dataclass(frozen=True)
class InferResult:
    name: str
    version: int
    signature_name: str
    signature: engine.Signature
    outputs: dict[str, np.ndarray]


def _dims(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def as_array(alias: str, value: Any, spec: engine.TensorSpec) -> np.ndarray:
    """``value`` as an array of the signature's dtype; a 400 naming the input if it cannot be.

    Shape is checked by the engine (``Model.check_feeds``), which names the input too.
    A ``JsonArray`` (numbers decoded straight from a JSON body) is cast as its list would
    be: directly for float dtypes, through the list for the others (same rounding and
    overflow errors as ``np.asarray`` of the list).
    """
    if isinstance(value, JsonArray):
        if np.dtype(spec.dtype).kind == "f" and (value.exact or spec.dtype != "float64"):
            # A copy (also for float64): not a view that keeps the decoder's buffer alive.
            return np.array(value, dtype=spec.dtype, subok=False)
        value = value.tolist() if value.exact else orjson.loads(value.source)
    elif isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value, dtype=spec.dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(
            f"input {alias!r}: expected a {spec.dtype} tensor of shape {_dims(spec.shape)}, "
            f"but the value could not be converted ({exc})"
        ) from None


def _status(exc: BaseException) -> str:
    """The gRPC-style code TF Serving's metrics label a failed request with."""
    if isinstance(exc, ServiceError):
        return exc.code
    if isinstance(exc, (engine_errors.InputError, engine_errors.ShapeError,
                        engine_errors.DTypeError)):
        return "INVALID_ARGUMENT"
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    return "INTERNAL"


def tune_interpreter(switch_interval_s: float = 0.0005) -> None:
    """Process-wide settings for the request path (called once by the app at start-up).

    - GIL switch interval: a batch thread needs the GIL for a few microseconds between two
      kernels; the interval bounds how long an event loop busy in Python can keep it waiting
      (default 5 ms). 0.5 ms as a bound; no throughput difference was measurable.
    - The cyclic GC: list-based JSON decoding builds ~1k short-lived lists per image, each
      request tripping a young collection; loaded models are frozen (``gc.freeze``) by the
      app, and a larger young-generation threshold makes collections rarer without letting
      real garbage cycles live long.
    """
    sys.setswitchinterval(switch_interval_s)
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(50_000, g1, g2)


class _Expired(Exception):
    """A request's deadline passed while it waited for its batch."""


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


class Inference:
    """Runs requests through per-version batch queues on a shared pool of batch threads.

    ``timeout_s`` is the default per-request deadline (TF's ``--rest_api_timeout_in_ms``);
    ``batching=False`` keeps the queues, limits and threads but runs each request alone;
    ``max_in_flight`` (> 0) caps requests of one model queued or running at once;
    ``intra_op_threads`` (> 0) sizes each engine call's threads (else: the spare cores).
    """

    def __init__(
        self,
        manager: _Manager,
        *,
        params: BatchingParameters | None = None,
        batching: bool = True,
        timeout_s: float | None = None,
        max_in_flight: int = 0,
        metrics: Metrics | None = None,
        intra_op_threads: int = 0,
    ) -> None:
        self.manager = manager
        self.params = (params or BatchingParameters()).validate()
        self.batching = batching
        self.timeout_s = timeout_s if timeout_s and timeout_s > 0 else None
        self.max_in_flight = max_in_flight
        self.metrics = metrics if metrics is not None else Metrics()
        self._queues: dict[int, ModelQueue] = {}  # id(engine.Model) -> its queue
        self._in_flight: dict[str, int] = {}  # model name -> requests queued or running
        self._known: set[str] = set()  # names that resolved once (bounded metric labels)
        self.metrics.watch_queues(self._snapshot)
        self.scheduler = Scheduler(self.params, self._observe,
                                   threads_per_batch=intra_op_threads)

    # ------------------------------------------------------------------ the data plane
    async def infer(
        self,
        name: str,
        inputs: Mapping[str, Any] | Decoder,
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str | None = None,
        outputs: list[str] | None = None,
        method: str | None = None,
        timeout_s: float | None = None,
        api: str | None = None,
    ) -> InferResult:
        """Run one request. Raises ServiceError (NotFound, Unavailable, InvalidArgument,
        ResourceExhausted, DeadlineExceeded) or the engine's InputError/ShapeError/DTypeError
        for bad feeds.

        ``timeout_s`` overrides the deadline (else the request's header, else the server's
        default); ``api`` labels the request in metrics (default: ``method`` or "predict").
        """
        start = time.perf_counter()
        ver = ""
        status = "OK"
        try:
            handle = self.manager.acquire(name, version, label)
            self._known.add(name)
            ver = str(handle.version)
            return await self._infer(handle, inputs, signature, outputs, method, timeout_s)
        except BaseException as exc:
            status = _status(exc)
            raise
        finally:
            model = name if name in self._known else "<unknown>"
            self.metrics.request(model, ver, api or method or "predict", status,
                                 time.perf_counter() - start)

    async def _infer(
        self,
        handle: _Handle,
        inputs: Mapping[str, Any] | Decoder,
        signature: str | None,
        outputs: list[str] | None,
        method: str | None,
        timeout_s: float | None,
    ) -> InferResult:
        queued = False
        began = time.monotonic()
        deadline = self._deadline(timeout_s, began)
        try:
            model = handle.model
            sig_name = signature or engine.DEFAULT_SIGNATURE
            sig = model.signatures.get(sig_name)
            if sig is None:
                raise InvalidArgument(
                    f"signature {sig_name!r} not found; the model has {sorted(model.signatures)}"
                )
            if method is not None and sig.method != method:
                raise InvalidArgument(
                    f"signature {sig_name!r} has method {sig.method!r}; {method!r} requests "
                    f"need a signature whose method is {method!r}"
                )
            if outputs is not None:
                bad = sorted(set(outputs) - set(sig.outputs))
                if bad:
                    raise engine_errors.InputError(
                        f"unknown output(s) {bad}; expected {sorted(sig.outputs)}")
            raw = inputs(sig) if callable(inputs) else inputs
            feeds = {
                alias: as_array(alias, value, sig.inputs[alias]) if alias in sig.inputs else value
                for alias, value in raw.items()
            }
            checked = model.check_feeds(feeds, sig_name)  # casts; 400s name the input
            arrays = {alias: checked[spec.name] for alias, spec in sig.inputs.items()}
            name = handle.name
            now = time.monotonic()
            if deadline is not None and deadline <= now:
                raise DeadlineExceeded(f"request to model {name!r} exceeded its deadline "
                                       "before it could be queued")
            q = self._queue(handle)
            key, rows = batch_key(sig_name, outputs, sig, arrays,
                                  self.params.pad_variable_length_inputs)
            params = self.params
            if key is not None and self.batching and rows > params.max_batch_size:
                raise InvalidArgument(
                    f"Task size {rows} is larger than maximum input batch size "
                    f"{params.max_batch_size} (the server's --max_batch_size)")
            cost = rows if key is not None and self.batching else params.execution_limit
            if self.max_in_flight > 0 and self._in_flight.get(name, 0) >= self.max_in_flight:
                raise ResourceExhausted(
                    f"model {name!r} has {self.max_in_flight} requests in flight, the limit "
                    f"(--max_in_flight_requests_per_model)", retry_after=q.retry_after())
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
            task = Task(loop, fut, handle, sig_name, outputs, arrays, rows, key, deadline, now,
                        cost)
            self.scheduler.submit(q, task)  # from here on the task owns the handle
            queued = True
        except BaseException:
            if not queued:
                handle.release()
            raise
        self._in_flight[name] = self._in_flight.get(name, 0) + 1
        q.in_flight += 1
        # A timer that fails the future, not asyncio.timeout(): that one is a context manager,
        # a task lookup and a reschedule per request, measurable on the event loop at c=64.
        timer = None if deadline is None else loop.call_later(
            deadline - time.monotonic(), _expire, fut)
        try:
            result = await fut
        except _Expired:
            task.cancelled = True
            raise DeadlineExceeded(
                f"request to model {name!r} exceeded its deadline "
                f"({(time.monotonic() - began) * 1000:.0f} ms after it reached the model)"
            ) from None
        except asyncio.CancelledError:
            task.cancelled = True
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._in_flight[name] -= 1
            q.in_flight -= 1
        return InferResult(handle.name, handle.version, sig_name, sig, result)

    def _deadline(self, timeout_s: float | None, now: float) -> float | None:
        if timeout_s is not None:
            return now + timeout_s if timeout_s > 0 else None
        arrival = REQUEST_DEADLINE.get()
        if arrival is not None:
            if arrival[1] is not None:
                return arrival[1]
            now = arrival[0]
        return None if self.timeout_s is None else now + self.timeout_s

    def _queue(self, handle: _Handle) -> ModelQueue:
        model = handle.model
        q = self._queues.get(id(model))
        if q is None:
            q = self._queues[id(model)] = ModelQueue(handle.name, handle.version, self.params,
                                                     self.batching)
            # The queue goes with the model object (after unload and the last request).
            weakref.finalize(model, self._queues.pop, id(model), None)
        return q

    # ------------------------------------------------------------------ observability
    def _observe(self, q: ModelQueue, rows: int, padded: int, seconds: float,
                 waits: list[float]) -> None:
        self.metrics.batch(q.name, str(q.version), rows, padded, seconds, waits)

    def _snapshot(self) -> Iterator[tuple[str, int, int, int]]:
        for q in list(self._queues.values()):
            yield q.name, q.version, q.rows, q.in_flight

    def close(self) -> None:
        self.scheduler.close()


_default: weakref.WeakKeyDictionary[Any, Inference] = weakref.WeakKeyDictionary()


async def infer(
    manager: _Manager,
    name: str,
    inputs: Mapping[str, Any] | Decoder,
    **kwargs: Any,
) -> InferResult:
    """Convenience for callers without an ``Inference``: one per manager, made on first use.

    The server itself (``service.app``) builds its ``Inference`` from the settings.
    """
    inf = _default.get(manager)
    if inf is None:
        inf = _default[manager] = Inference(manager)
    return await inf.infer(name, inputs, **kwargs)




def deadline_from_timeout_ms(value: bytes | str, now: float | None = None) -> float:
    """A request timeout header's value (milliseconds, > 0) -> an absolute deadline.

    InvalidArgument when it is not a positive number.
    """
    try:
        ms = float(value)
    except ValueError:
        ms = float("nan")
    if not ms > 0 or ms == float("inf"):
        shown = value.decode("latin-1") if isinstance(value, bytes) else value
        raise InvalidArgument(
            f"{TIMEOUT_HEADER} must be a positive number of milliseconds, got {shown!r}")
    return (time.monotonic() if now is None else now) + ms / 1000
