"""Prometheus metrics (``GET /monitoring/prometheus/metrics``, TF Serving's path).

Names follow TF Serving's ``:tensorflow:serving:`` families where one exists (latencies in
microseconds, as TF's), else a ``numbaserve_`` prefix; docs/metrics.md maps each to TF's.
TF's counters carry no ``_total`` suffix; prometheus-client adds one, so ``render`` removes
it from those families to keep TF's names (dashboards written for TF Serving keep working).

Hot-path cost: label children are looked up once per label set and cached; a request adds
one counter increment and one histogram observation on the event loop, a batch a few more on
its batch thread. Queue depth, requests in flight and version states are read at scrape
time by collectors, so the request path never updates a gauge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

__all__ = ["CONTENT_TYPE", "Metrics", "TF_COUNTERS"]

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# The _created series double every counter/histogram and no TF dashboard reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"
PROCESSED_BATCH_SIZE = ":tensorflow:serving:batching:processed_batch_size"
INPUT_BATCH_SIZE = ":tensorflow:serving:batching:input_batch_size"
PADDING_SIZE = ":tensorflow:serving:batching:padding_size"
TF_COUNTERS = (REQUEST_COUNT,)

# TF's latency buckets: 10 us * 1.8^i (33 of them, up to ~2.5 h); 24 reach ~13 s.
_US = tuple(10.0 * 1.8**i for i in range(24))
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")


class _Collector:
    """Samples read from the server at scrape time."""

    def __init__(self, fn: Callable[[], Iterable[Metric]]) -> None:
        self._fn = fn

    def collect(self) -> Iterator[Metric]:
        yield from self._fn()

    def describe(self) -> list[Metric]:
        return []  # registering must not read the server (it may not be running yet)


class Metrics:
    """One registry per app (tests run several apps in one process)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        model = ["model_name", "version"]
        self.request_count = Counter(
            REQUEST_COUNT, "Requests, by model, version, API, entry point and status "
            "(gRPC-style code: OK, INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, ...).",
            [*model, "API", "entrypoint", "status"], registry=r)
        self.request_latency = Histogram(
            REQUEST_LATENCY, "End-to-end latency of a request in microseconds, from the "
            "data plane's start to its answer (decoding and queueing included).",
            [*model, "API", "entrypoint"], buckets=_US, registry=r)
        self.runtime_latency = Histogram(
            RUNTIME_LATENCY, "Engine time of one batch in microseconds.",
            model, buckets=_US, registry=r)
        self.queuing_latency = Histogram(
            QUEUING_LATENCY, "Time a request waited in its batch queue, in microseconds.",
            model, buckets=_US, registry=r)
        self.processed_batch_size = Histogram(
            PROCESSED_BATCH_SIZE, "Rows per engine call, padding included.",
            model, buckets=_SIZES, registry=r)
        self.input_batch_size = Histogram(
            INPUT_BATCH_SIZE, "Rows of real requests per engine call.",
            model, buckets=_SIZES, registry=r)
        self.padding_size = Histogram(
            PADDING_SIZE, "Padding rows added per engine call (to an allowed batch size).",
            model, buckets=(0, *_SIZES), registry=r)
        self.loads = Counter(
            "numbaserve_model_loads", "Version load attempts, by outcome (success, failure).",
            ["model_name", "status"], registry=r)
        self.load_seconds = Histogram(
            "numbaserve_model_load_duration_seconds",
            "Time to read, verify, plan and warm up a version (successful loads).",
            ["model_name"], buckets=_SECONDS, registry=r)
        self.unloads = Counter("numbaserve_model_unloads", "Versions unloaded.",
                               ["model_name"], registry=r)
        self.unload_seconds = Histogram(
            "numbaserve_model_unload_duration_seconds",
            "Time from UNLOADING until the version's last request finished.",
            ["model_name"], buckets=_SECONDS, registry=r)
        self._requests: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        self._batches: dict[tuple[str, str], tuple[Any, ...]] = {}

    # ------------------------------------------------------------------ hot path
    def request(self, model: str, version: str, api: str, status: str, seconds: float) -> None:
        key = (model, version, api, status)
        pair = self._requests.get(key)
        if pair is None:
            pair = self._requests[key] = (
                self.request_count.labels(model, version, api, "REST", status),
                self.request_latency.labels(model, version, api, "REST"),
            )
        pair[0].inc()
        pair[1].observe(seconds * 1e6)

    def batch(self, model: str, version: str, rows: int, padded: int, seconds: float,
              waits: list[float]) -> None:
        key = (model, version)
        kids = self._batches.get(key)
        if kids is None:
            kids = self._batches[key] = tuple(
                h.labels(model, version) for h in (
                    self.runtime_latency, self.queuing_latency, self.processed_batch_size,
                    self.input_batch_size, self.padding_size))
        runtime, queuing, processed, inputs, padding = kids
        runtime.observe(seconds * 1e6)
        for w in waits:
            queuing.observe(w * 1e6)
        processed.observe(padded)
        inputs.observe(rows)
        padding.observe(padded - rows)

    # ------------------------------------------------------------------ lifecycle
    def lifecycle_event(self, kind: str, name: str, version: int, seconds: float | None,
                        error: str | None) -> None:
        """The manager's ``on_event`` listener."""
        if kind == "load":
            self.loads.labels(name, "success").inc()
            if seconds is not None:
                self.load_seconds.labels(name).observe(seconds)
        elif kind == "load_failed":
            self.loads.labels(name, "failure").inc()
        elif kind == "unload":
            self.unloads.labels(name).inc()
            if seconds is not None:
                self.unload_seconds.labels(name).observe(seconds)

    # ------------------------------------------------------------------ scrape time
    def watch_queues(self, snapshot: Callable[[], Iterable[tuple[str, int, int, int]]]) -> None:
        """``snapshot()`` -> (model, version, queued rows, requests in flight) per queue."""

        def collect() -> Iterator[Metric]:
            depth = GaugeMetricFamily(
                "numbaserve_batch_queue_depth",
                "Rows waiting in a model version's batch queue.",
                labels=["model_name", "version"])
            flight = GaugeMetricFamily(
                "numbaserve_requests_in_flight",
                "Requests of a model version queued or running.",
                labels=["model_name", "version"])
            for name, version, rows, in_flight in snapshot():
                depth.add_metric([name, str(version)], rows)
                flight.add_metric([name, str(version)], in_flight)
            yield depth
            yield flight

        self.registry.register(_Collector(collect))

    def watch_manager(self, manager: Any) -> None:
        """Version states from ``manager.models()``: 1 for the state each version is in."""

        def collect() -> Iterator[Metric]:
            g = GaugeMetricFamily(
                "numbaserve_model_version_state",
                "1 for the state a model version is in (START, LOADING, AVAILABLE, "
                "UNLOADING, END), 0 for the others.",
                labels=["model_name", "version", "state"])
            for summary in manager.models():
                for v in summary.versions:
                    for state in _STATES:
                        g.add_metric([summary.name, str(v.version), state],
                                     1.0 if v.state == state else 0.0)
            yield g

        self.registry.register(_Collector(collect))

    def render(self) -> bytes:
        text = prometheus_client.generate_latest(self.registry)
        for name in TF_COUNTERS:
            old = name.encode() + b"_total"
            text = text.replace(old, name.encode())
        return text
