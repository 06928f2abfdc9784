"""The manager: owns every version's state, hands out refcounted handles, swaps versions.

Threading: ``acquire`` and ``Handle.release`` are thread safe and cheap (the hot path);
``status``/``models``/``labels``/``ready``/``effective_config`` are cheap reads meant for the
event loop. Every ``async`` method runs on the event loop that called ``start``; state
changes are serialized by one asyncio lock, loads run on the loader's threads.

Rules (TF Serving's availability-preserving policy):
- a version the policy no longer wants is unloaded only once a wanted version is AVAILABLE,
  so a new version is AVAILABLE before the old one starts UNLOADING; a new version that fails
  to load therefore never takes the old one's place;
- a version whose directory disappears is unloaded (whatever else is serving);
- UNLOADING waits for the version's handles to be released; requests in flight finish on the
  version they acquired;
- a failed version is END with its error, and is retried on later polls: at once if its files
  changed, else up to ``max_num_load_retries`` times, ``load_retry_interval_micros`` apart;
- ``load_version``/``unload_version`` are admin overrides on top of the policy (a pinned
  version stays loaded, an excluded one stays unloaded) until the model leaves the config;
- labels from the config are checked after the loads they may need: at ``start`` a label on a
  version that is not AVAILABLE is kept (and resolves once it is), at ``reload_config`` and
  ``set_label`` it is refused unless ``allow_version_labels_for_unavailable_models``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import engine
from service.config import (
    ConfigError,
    ModelConfig,
    Settings,
    config_from_settings,
    parse_model_config_list,
)
from service.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from service.lifecycle.loader import Loader, LoadResult
from service.lifecycle.policy import aspired_versions
from service.lifecycle.source import fingerprint, scan
from service.lifecycle.states import ModelSummary, State, VersionStatus

__all__ = ["EventListener", "Handle", "ModelManager"]

log = logging.getLogger("numbaserve.lifecycle")

# on_event(kind, model name, version, seconds, error) with kind one of
# "load" (seconds: read + verify + plan + warmup), "load_failed" (error set),
# "unload" (seconds: from UNLOADING until the last handle was released).
EventListener = Callable[[str, str, int, float | None, str | None], None]

_KEEP_ENDED = 8  # END versions no longer wanted kept in status, per model


class _Version:
    """One version's mutable record. ``state``/``refs`` change under ``lock``."""

    __slots__ = ("version", "path", "state", "model", "error", "refs", "lock", "failures",
                 "last_failure", "fingerprint", "unload_task")

    def __init__(self, version: int, path: Path) -> None:
        self.version = version
        self.path = path
        self.state = State.START
        self.model: engine.Model | None = None
        self.error: str | None = None
        self.refs = 0
        self.lock = threading.Lock()
        self.failures = 0
        self.last_failure = 0.0
        self.fingerprint: tuple[tuple[str, int, int], ...] = ()
        self.unload_task: asyncio.Task[None] | None = None

    def release(self) -> None:
        with self.lock:
            self.refs -= 1

    def status(self, name: str) -> VersionStatus:
        return VersionStatus(name, self.version, self.state, self.error)


class _Model:
    __slots__ = ("config", "versions", "latest", "labels", "pinned", "excluded", "on_disk",
                 "scan_note", "disabled")

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.versions: dict[int, _Version] = {}
        self.latest: _Version | None = None  # highest AVAILABLE: read by acquire()
        self.labels: dict[str, int] = {}
        self.pinned: set[int] = set()
        self.excluded: set[int] = set()
        self.on_disk: dict[int, Path] | None = None
        self.scan_note = ""
        self.disabled = False  # unloaded as a whole (repository API) until loaded again

    def refresh(self) -> None:
        best: _Version | None = None
        for v in self.versions.values():
            if v.state is State.AVAILABLE and (best is None or v.version > best.version):
                best = v
        self.latest = best

    def aspired(self) -> set[int]:
        if self.disabled:
            return set()
        if self.on_disk is None:
            return {v.version for v in self.versions.values() if v.state is State.AVAILABLE}
        candidates = set(self.on_disk) - self.excluded
        return (aspired_versions(self.config.version_policy, candidates)
                | (self.pinned & candidates))


class Handle:
    """A request's hold on one AVAILABLE version; release it (or leave the ``with``) when done.

    While any handle is held the version is not unloaded: UNLOADING waits for the count to
    reach zero. ``model`` stays usable until ``release``.
    """

    __slots__ = ("name", "version", "model", "_v")

    def __init__(self, name: str, version: int, model: engine.Model, v: _Version) -> None:
        self.name = name
        self.version = version
        self.model = model
        self._v: _Version | None = v

    def release(self) -> None:
        """Idempotent."""
        v, self._v = self._v, None
        if v is not None:
            v.release()

    def __enter__(self) -> Handle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Handle({self.name!r}, {self.version}, released={self._v is None})"


def _request(name: str, version: int | None, label: str | None) -> str:
    if label is not None:
        return f"Label({name}, {label})"
    return f"Latest({name})" if version is None else f"Specific({name}, {version})"


class ModelManager:
    """Serves the versions that ``configs`` aspire to, from their base paths."""

    def __init__(
        self,
        configs: list[ModelConfig],
        settings: Settings | None = None,
        *,
        on_event: EventListener | None = None,
        engine_threads: int | None = None,
    ) -> None:
        """``engine_threads``: the batch threads' engine thread count, which warm-up runs use
        too (None: the load threads' default)."""
        self.settings = settings if settings is not None else Settings()
        self._on_event = on_event
        self._models: dict[str, _Model] = {}
        for c in configs:
            if c.name in self._models:
                raise ValueError(f"model {c.name!r} configured twice")
            self._models[c.name] = _Model(c)
        self._start_labels = {c.name: dict(c.version_labels) for c in configs}
        self._loader = Loader(self.settings.num_load_threads, engine_threads)
        self._load_slots = asyncio.Semaphore(max(1, self.settings.num_load_threads))
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._unloads: set[asyncio.Task[None]] = set()
        self._config_text: str | None = None
        self._config_error: str | None = None
        self._started = False
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """First poll (its loads are awaited), then background polling tasks: the model
        directories every ``file_system_poll_wait_seconds`` (> 0) and the config file every
        ``model_config_file_poll_wait_seconds`` (> 0, when a config file is set)."""
        if self._started:
            raise RuntimeError("ModelManager.start() called twice")
        self._started = True
        self._config_text = self._read_config_text()
        async with self._lock:
            await self._poll_locked()
            for name, labels in self._start_labels.items():
                m = self._models.get(name)
                if m is None:
                    continue
                m.labels = dict(labels)
                for label, version in labels.items():
                    if not self._is_available(m, version):
                        log.warning("label %r of model %r points to version %d, which is not "
                                    "AVAILABLE; it resolves once it is", label, name, version)
        s = self.settings
        if s.file_system_poll_wait_seconds > 0:
            self._tasks.append(asyncio.create_task(
                self._every(s.file_system_poll_wait_seconds, self.poll_now),
                name="numbaserve-poll-models"))
        if s.model_config_file and s.model_config_file_poll_wait_seconds > 0:
            self._tasks.append(asyncio.create_task(
                self._every(s.model_config_file_poll_wait_seconds, self._poll_config),
                name="numbaserve-poll-config"))

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Stop polling, unload every version: wait up to ``drain_seconds`` (default
        ``settings.drain_seconds``) for their handles to be released, then drop them anyway
        (a handle still held keeps its model alive until released)."""
        if self._stopped:
            return
        self._stopped = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        timeout = self.settings.drain_seconds if drain_seconds is None else drain_seconds
        async with self._lock:
            for m in self._models.values():
                for v in m.versions.values():
                    if v.state is State.AVAILABLE:
                        self._begin_unload(m, v)
            pending = set(self._unloads)
            if pending:
                await asyncio.wait(pending, timeout=max(0.0, timeout))
            for t in pending:
                t.cancel()
            for m in self._models.values():
                for v in m.versions.values():
                    if v.state is not State.END:
                        self._finish_unload(m, v, None)
        self._loader.shutdown()

    # ------------------------------------------------------------------ hot path
    def acquire(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> Handle:
        """A handle on ``version``, on ``label``'s version, or on the highest AVAILABLE one.

        Raises NotFound (unknown model, version or label), Unavailable (the model or version
        is known but not AVAILABLE: still loading, or nothing loaded yet) or InvalidArgument
        (both version and label given).
        """
        m = self._models.get(name)
        if m is None:
            raise NotFound(f"Servable not found for request: {_request(name, version, label)}")
        if label is not None:
            if version is not None:
                raise InvalidArgument("give a version or a version label, not both")
            target = m.labels.get(label)
            if target is None:
                raise NotFound(f"Unrecognized servable version label: {label}")
            v = m.versions.get(target)
            version = target
        elif version is None:
            v = m.latest
        else:
            v = m.versions.get(version)
        if v is not None:
            with v.lock:
                if v.state is State.AVAILABLE and v.model is not None:
                    v.refs += 1
                    return Handle(name, v.version, v.model, v)
            if version is None and m.latest is not None and m.latest is not v:
                # Raced with a swap (another thread): the latest moved on; take the new one.
                return self.acquire(name)
        raise self._not_serving(m, version, label)

    def _not_serving(self, m: _Model, version: int | None, label: str | None) -> Exception:
        name = m.config.name
        if label is not None:
            v = m.versions.get(version or 0)
            what = "unknown" if v is None else v.state.value
            return Unavailable(f"Version label {label!r} of model {name!r} points to version "
                               f"{version}, which is not AVAILABLE ({what})")
        if version is None:
            states = ", ".join(f"{v.version} {v.state.value}"
                               for v in sorted(m.versions.values(), key=lambda v: -v.version))
            return Unavailable(f"Model {name!r} has no AVAILABLE version yet"
                               + (f" (versions: {states})" if states else ""))
        v = m.versions.get(version)
        if v is not None and v.state in (State.START, State.LOADING):
            return Unavailable(f"Version {version} of model {name!r} is {v.state.value}, "
                               "not AVAILABLE yet")
        return NotFound(f"Servable not found for request: {_request(name, version, None)}")

    # ------------------------------------------------------------------ read API
    def _model(self, name: str) -> _Model:
        m = self._models.get(name)
        if m is None:
            raise NotFound(f"Could not find any versions of model {name}")
        return m

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]:
        """TF's GetModelStatus: every known version (highest first), or the one asked for.

        NotFound for an unknown model, a model with no versions, an unknown version or label.
        """
        m = self._model(name)
        if label is not None:
            target = m.labels.get(label)
            if target is None:
                raise NotFound(f"Unrecognized servable version label: {label}")
            version = target
        if version is not None:
            v = m.versions.get(version)
            if v is None:
                raise NotFound(f"Could not find version {version} of model {name}")
            return [v.status(name)]
        if not m.versions:
            raise NotFound(f"Could not find any versions of model {name}")
        return [v.status(name) for v in sorted(m.versions.values(), key=lambda v: -v.version)]

    def models(self) -> list[ModelSummary]:
        """Every configured model, by name."""
        return [
            ModelSummary(
                name=m.config.name,
                base_path=m.config.base_path,
                versions=[v.status(m.config.name)
                          for v in sorted(m.versions.values(), key=lambda v: -v.version)],
                labels=dict(m.labels),
                policy=m.config.version_policy.to_json(),
            )
            for m in sorted(self._models.values(), key=lambda m: m.config.name)
        ]

    def labels(self, name: str) -> dict[str, int]:
        return dict(self._model(name).labels)

    def ready(self) -> bool:
        """True when every configured model has an AVAILABLE version (and not stopped)."""
        return not self._stopped and all(
            m.latest is not None for m in self._models.values() if not m.disabled
        )

    def effective_config(self) -> dict[str, Any]:
        """The config in force (current labels included) and the lifecycle settings; never
        the admin token."""
        s = self.settings
        models = []
        for m in sorted(self._models.values(), key=lambda m: m.config.name):
            doc = m.config.to_json()
            doc["version_labels"] = dict(m.labels)
            doc["pinned_versions"] = sorted(m.pinned)
            doc["excluded_versions"] = sorted(m.excluded)
            models.append(doc)
        return {
            "model_config_list": models,
            "model_config_file": s.model_config_file,
            "model_config_file_error": self._config_error,
            "file_system_poll_wait_seconds": s.file_system_poll_wait_seconds,
            "model_config_file_poll_wait_seconds": s.model_config_file_poll_wait_seconds,
            "allow_version_labels_for_unavailable_models":
                s.allow_version_labels_for_unavailable_models,
            "max_num_load_retries": s.max_num_load_retries,
            "load_retry_interval_micros": s.load_retry_interval_micros,
            "num_load_threads": s.num_load_threads,
        }

    # ------------------------------------------------------------------ management
    async def poll_now(self) -> None:
        """Scan every model's base path and converge: load, retry, unload (awaited)."""
        async with self._lock:
            await self._poll_locked()

    async def load_version(self, name: str, version: int) -> VersionStatus:
        """Load ``version`` (pinning it: it stays loaded whatever the policy says) and wait.

        NotFound if the model or the version directory does not exist; FailedPrecondition
        (with the engine's message) if it fails to load, and then the pin is dropped.
        """
        async with self._lock:
            m = self._model(name)
            if self._stopped:
                raise Unavailable("the server is shutting down")
            await self._scan(m)
            if m.on_disk is None or version not in m.on_disk:
                raise NotFound(f"Could not find version {version} of model {name} under "
                               f"{m.config.base_path}")
            m.excluded.discard(version)
            m.pinned.add(version)
            v = m.versions.get(version)
            if v is not None and v.unload_task is not None:
                await asyncio.shield(v.unload_task)
            if v is None or v.state is State.END:
                await self._load(m, version, m.on_disk[version])
            v = m.versions[version]
            if v.state is not State.AVAILABLE:
                m.pinned.discard(version)
                raise FailedPrecondition(
                    f"Loading version {version} of model {name} failed: {v.error}")
            self._retire(m)
            return v.status(name)

    async def unload_version(self, name: str, version: int) -> VersionStatus:
        """Unload ``version`` and keep it unloaded (until ``load_version``). The policy's
        next choice is loaded first when there is one; waits for the version's handles."""
        async with self._lock:
            m = self._model(name)
            v = m.versions.get(version)
            if v is None or v.state not in (State.AVAILABLE, State.UNLOADING):
                raise NotFound(f"Version {version} of model {name} is not loaded")
            m.pinned.discard(version)
            m.excluded.add(version)
            await self._poll_model(m)  # load the replacement first, if the policy has one
            if v.state is State.AVAILABLE:
                self._begin_unload(m, v)
            task = v.unload_task
        if task is not None:
            await asyncio.shield(task)
        return v.status(name)

    async def load_model(self, name: str) -> None:
        """Serve ``name`` again after ``unload_model``: admin overrides cleared, the policy's
        versions loaded and awaited; FailedPrecondition if none of them loads."""
        async with self._lock:
            m = self._model(name)
            if self._stopped:
                raise Unavailable("the server is shutting down")
            m.disabled = False
            m.excluded.clear()
            m.pinned.clear()
            await self._poll_model(m)
            if m.latest is None:
                errors = "; ".join(f"version {v.version}: {v.error}"
                                   for v in m.versions.values() if v.error)
                raise FailedPrecondition(
                    f"model {name} has no version that loads" + (f" ({errors})" if errors else ""))

    async def unload_model(self, name: str) -> None:
        """Unload every version of ``name`` and keep the model unloaded (new versions
        included) until ``load_model``; waits for in-flight requests to finish."""
        async with self._lock:
            m = self._model(name)
            m.disabled = True
            for v in list(m.versions.values()):
                if v.state is State.AVAILABLE:
                    self._begin_unload(m, v)
            tasks = [v.unload_task for v in m.versions.values() if v.unload_task is not None]
        for task in tasks:
            await asyncio.shield(task)

    async def set_label(self, name: str, label: str, version: int) -> None:
        """Point ``label`` at ``version``; FailedPrecondition unless that version is
        AVAILABLE (or ``allow_version_labels_for_unavailable_models``)."""
        async with self._lock:
            m = self._model(name)
            if not label:
                raise InvalidArgument("a version label must not be empty")
            self._check_label(m, label, version)
            m.labels[label] = version

    async def remove_label(self, name: str, label: str) -> None:
        async with self._lock:
            m = self._model(name)
            if label not in m.labels:
                raise NotFound(f"Unrecognized servable version label: {label}")
            del m.labels[label]

    async def reload_config(self, configs: list[ModelConfig] | None = None) -> None:
        """Serve ``configs`` (default: re-read the config file / flags): models added are
        loaded, models removed are unloaded, changed policies converge as on a poll. Labels
        are applied after the loads; a label on a version that is not AVAILABLE is refused
        (FailedPrecondition, the rest of the reload stands) unless the TF flag allows it.
        InvalidArgument for an unreadable or malformed config file."""
        if configs is None:
            try:
                configs = config_from_settings(self.settings)
            except ConfigError as exc:
                raise InvalidArgument(str(exc)) from None
            self._config_text = self._read_config_text()
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise InvalidArgument("a model is configured twice")
        async with self._lock:
            await self._apply_config(configs)

    # ------------------------------------------------------------------ internals
    async def _apply_config(self, configs: list[ModelConfig]) -> None:
        self._start_labels.clear()  # labels now come from this config
        new = {c.name: c for c in configs}
        for name in list(self._models):
            old = self._models[name]
            c = new.get(name)
            # A moved base path is a new model: version numbers there name other files.
            if c is None or c.base_path != old.config.base_path:
                del self._models[name]
                for v in old.versions.values():
                    if v.state is State.AVAILABLE:
                        self._begin_unload(old, v)
                log.info("model %r removed from the config", name)
        label_updates: dict[str, dict[str, int]] = {}
        for c in configs:
            m = self._models.get(c.name)
            if m is None:
                m = self._models[c.name] = _Model(c)
                label_updates[c.name] = dict(c.version_labels)
                log.info("model %r added to the config", c.name)
                continue
            if c.version_labels != m.config.version_labels:
                label_updates[c.name] = dict(c.version_labels)
            m.config = c
        await self._poll_locked()
        problems: list[str] = []
        for name, labels in label_updates.items():
            m = self._models[name]
            accepted = {k: v for k, v in m.labels.items() if k in labels}
            for label, version in labels.items():
                try:
                    self._check_label(m, label, version)
                except FailedPrecondition as exc:
                    problems.append(exc.message)
                    continue
                accepted[label] = version
            m.labels = accepted
        if problems:
            raise FailedPrecondition("; ".join(problems))

    def _check_label(self, m: _Model, label: str, version: int) -> None:
        if self.settings.allow_version_labels_for_unavailable_models:
            return
        if not self._is_available(m, version):
            raise FailedPrecondition(
                f"Request to assign label to version {version} of model {m.config.name}, "
                "which is not currently available for inference")

    @staticmethod
    def _is_available(m: _Model, version: int) -> bool:
        v = m.versions.get(version)
        return v is not None and v.state is State.AVAILABLE

    async def _every(self, seconds: float, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background poll failed")

    def _read_config_text(self) -> str | None:
        path = self.settings.model_config_file
        if not path:
            return None
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError:
            return None

    async def _poll_config(self) -> None:
        text = await asyncio.to_thread(self._read_config_text)
        if text is None or text == self._config_text:
            return
        self._config_text = text
        path = Path(self.settings.model_config_file or "")
        try:
            configs = parse_model_config_list(text, base_dir=path.resolve().parent,
                                              source=str(path))
        except ConfigError as exc:
            self._config_error = str(exc)
            log.error("model config file not applied: %s", exc)
            return
        self._config_error = None
        log.info("model config file changed; reloading")
        async with self._lock:
            try:
                await self._apply_config(configs)
            except FailedPrecondition as exc:
                log.error("model config reload: %s", exc.message)

    async def _scan(self, m: _Model) -> None:
        found = await asyncio.to_thread(scan, m.config.base_path)
        note = ("cannot list the base path; serving what is loaded" if found is None
                else "no versions found under the base path" if not found else "")
        if note and note != m.scan_note:  # once per change, not every poll
            log.warning("model %r: %s (%s)", m.config.name, note, m.config.base_path)
        m.scan_note = note
        m.on_disk = found

    async def _poll_locked(self) -> None:
        if self._stopped:
            return
        await asyncio.gather(*(self._poll_model(m) for m in list(self._models.values())))

    async def _poll_model(self, m: _Model) -> None:
        await self._scan(m)
        if m.on_disk is None:
            return
        # Versions whose directory went away: unload now, whatever else serves.
        for v in list(m.versions.values()):
            if v.version not in m.on_disk and v.state is State.AVAILABLE:
                log.info("model %r version %d: directory gone; unloading",
                         m.config.name, v.version)
                self._begin_unload(m, v)
        loads = []
        now = time.monotonic()
        for version in sorted(m.aspired(), reverse=True):
            path = m.on_disk[version]
            entry = m.versions.get(version)
            if entry is None or (entry.state is State.END and entry.error is None):
                loads.append(self._load(m, version, path))
            elif entry.state is State.END and await self._should_retry(entry, path, now):
                loads.append(self._load(m, version, path))
        if loads:
            await asyncio.gather(*loads)
        if m.config.name in self._models and self._models[m.config.name] is m:
            self._retire(m)

    async def _should_retry(self, v: _Version, path: Path, now: float) -> bool:
        if await asyncio.to_thread(fingerprint, path) != v.fingerprint:
            v.failures = 0
            return True
        interval = self.settings.load_retry_interval_micros / 1e6
        return (v.failures <= self.settings.max_num_load_retries
                and now - v.last_failure >= interval)

    async def _load(self, m: _Model, version: int, path: Path) -> None:
        name = m.config.name
        v = m.versions.get(version)
        if v is None:
            v = m.versions[version] = _Version(version, path)
        v.path, v.state, v.unload_task = path, State.START, None
        try:
            async with self._load_slots:
                v.state = State.LOADING
                log.info("loading model %r version %d from %s", name, version, path)
                result: LoadResult = await self._loader.load(path)
        except asyncio.CancelledError:
            v.state, v.error = State.END, "load cancelled"
            raise
        v.fingerprint = result.fingerprint
        if self._stopped or self._models.get(name) is not m:
            v.state = State.END  # model removed or server stopping while it loaded
            return
        if result.model is None:
            v.state, v.error = State.END, result.error
            v.failures += 1
            v.last_failure = time.monotonic()
            log.error("model %r version %d failed to load: %s", name, version, result.error)
            self._emit("load_failed", name, version, result.seconds, result.error)
            return
        with v.lock:
            v.model, v.error, v.failures = result.model, None, 0
            v.state = State.AVAILABLE
        m.refresh()
        log.info("model %r version %d AVAILABLE (%.3f s)", name, version, result.seconds)
        self._emit("load", name, version, result.seconds, None)

    def _retire(self, m: _Model) -> None:
        """Unload AVAILABLE versions no longer aspired, once an aspired one is AVAILABLE;
        forget old END versions beyond a few."""
        aspired = m.aspired()
        if any(self._is_available(m, a) for a in aspired):
            for v in list(m.versions.values()):
                if v.state is State.AVAILABLE and v.version not in aspired:
                    self._begin_unload(m, v)
        ended = sorted((v.version for v in m.versions.values()
                        if v.state is State.END and v.version not in aspired), reverse=True)
        for version in ended[_KEEP_ENDED:]:
            del m.versions[version]

    def _begin_unload(self, m: _Model, v: _Version) -> None:
        with v.lock:
            v.state = State.UNLOADING
        m.refresh()
        log.info("unloading model %r version %d", m.config.name, v.version)
        task = asyncio.create_task(self._drain(m, v))
        v.unload_task = task
        self._unloads.add(task)
        task.add_done_callback(self._unloads.discard)

    async def _drain(self, m: _Model, v: _Version) -> None:
        t0 = time.monotonic()
        delay = 0.001
        while v.refs > 0:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        self._finish_unload(m, v, time.monotonic() - t0)

    def _finish_unload(self, m: _Model, v: _Version, seconds: float | None) -> None:
        was_unloading = v.state is State.UNLOADING
        with v.lock:
            v.state = State.END
            v.model = None  # the memory goes with the last handle that still refers to it
        m.refresh()
        if was_unloading:
            self._emit("unload", m.config.name, v.version, seconds, None)

    def _emit(self, kind: str, name: str, version: int, seconds: float | None,
              error: str | None) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, name, version, seconds, error)
        except Exception:
            log.exception("on_event listener failed")

