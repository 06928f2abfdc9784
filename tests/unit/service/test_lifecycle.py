"""Source, policy, loader and manager: real saved models in tmp_path, asyncio via asyncio.run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engine
from engine import Graph, Node, TensorType
from service.config import ModelConfig, Settings, VersionPolicy
from service.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from service.lifecycle import ModelManager, State, VersionStatus
from service.lifecycle.loader import LoadError, load_and_warm_up, read_warmup
from service.lifecycle.policy import aspired_versions
from service.lifecycle.source import fingerprint, is_ignored, scan

# ---------------------------------------------------------------------------- helpers


def _ensure_dense_binding() -> None:
    """Until engine/executor/bindings/linalg.py binds Dense, run it with numpy here.

    ``import engine`` has already imported every bindings module, so this never clashes with
    the real binding: it only fills the gap while that kernel is being written.
    """
    from engine.executor.binding import BINDINGS, Prepared, bind

    if "Dense" in BINDINGS:
        return

    @bind("Dense")
    def _prepare(attrs: Any, in_types: Any, out_types: Any, consts: Any) -> Prepared:
        w, b = consts[1], consts[2] if len(consts) > 2 else None

        def run(ins: Any, outs: Any, scratch: Any) -> None:
            y = ins[0] @ (w if w is not None else ins[1])
            outs[0][...] = y if b is None else y + b

        return Prepared(run)


_ensure_dense_binding()


def save_version(base: Path, version: int | str, scale: float | None = None,
                 warmup: dict[str, Any] | None = None) -> Path:
    """x (None, 4) -> Dense(w = scale * ones(4, 3), b = 0); scale defaults to the version,
    so running ones(1, 4) gives 4 * version: a result tells which version ran."""
    digits = "".join(c for c in str(version) if c.isdigit()) or "1"
    s = float(digits) if scale is None else scale
    g = Graph.make(
        inputs=[("x", TensorType("float32", (None, 4)))],
        outputs=["y"],
        nodes=[Node.make("Dense", ["x", "w", "b"], ["y"])],
        constants={"w": np.full((4, 3), s, np.float32), "b": np.zeros(3, np.float32)},
    )
    path = engine.save(base / str(version), g)
    if warmup is not None:
        (path / "assets.extra").mkdir()
        (path / "assets.extra" / "warmup.json").write_text(json.dumps(warmup))
    return path


def corrupt_weights(version_dir: Path) -> None:
    w = version_dir / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))


def run_x(handle_model: engine.Model) -> float:
    return float(handle_model.run({"x": np.ones((1, 4), np.float32)})["y"][0, 0])


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"file_system_poll_wait_seconds": 0.05, "drain_seconds": 2.0,
                            "load_retry_interval_micros": 0}
    base.update(kw)
    return Settings(**base)


Events = list[tuple[str, str, int, float | None, str | None]]


def manager(configs: list[ModelConfig], **kw: Any) -> tuple[ModelManager, Events]:
    events: Events = []
    mgr = ModelManager(configs, settings(**kw), on_event=lambda *e: events.append(e))
    return mgr, events


def run(fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(fn(), timeout=30))


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def states(mgr: ModelManager, name: str) -> dict[int, State]:
    return {s.version: s.state for s in mgr.status(name)}


# ---------------------------------------------------------------------------- source / policy


def test_scan_ignores_hidden_partial_tmp_and_unready(tmp_path: Path) -> None:
    save_version(tmp_path, 1)
    save_version(tmp_path, 3)
    save_version(tmp_path, ".5")
    save_version(tmp_path, "6.partial")
    save_version(tmp_path, "7.tmp")
    save_version(tmp_path, "abc")
    (tmp_path / "8").mkdir()  # no model file yet: a copy in progress
    (tmp_path / "0").mkdir()
    (tmp_path / "9").write_text("a file, not a directory")
    (tmp_path / "10").mkdir()
    (tmp_path / "10" / "model.onnx").write_bytes(b"")  # an importer's file counts
    found = scan(tmp_path)
    assert found is not None
    assert sorted(found) == [1, 3, 10]
    assert found[3] == tmp_path / "3"
    assert scan(tmp_path / "missing") is None
    assert is_ignored(".x") and is_ignored("2.tmp") and is_ignored("2.partial")
    assert not is_ignored("2")


def test_fingerprint_changes_when_files_change(tmp_path: Path) -> None:
    p = save_version(tmp_path, 1)
    before = fingerprint(p)
    assert {name for name, _, _ in before} == {"model.json", "weights.safetensors"}
    (p / "assets.extra").mkdir()
    (p / "assets.extra" / "warmup.json").write_text("{}")
    assert fingerprint(p) != before


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(), {7}),
        (VersionPolicy("latest", num_versions=2), {5, 7}),
        (VersionPolicy("latest", num_versions=9), {1, 2, 5, 7}),
        (VersionPolicy("all"), {1, 2, 5, 7}),
        (VersionPolicy("specific", versions=(2, 3, 7)), {2, 7}),
    ],
)
def test_policy(policy: VersionPolicy, expected: set[int]) -> None:
    assert aspired_versions(policy, [1, 2, 5, 7]) == expected
    assert aspired_versions(policy, []) == set()


# ---------------------------------------------------------------------------- loader


def test_warmup_plans_are_the_batch_threads_plans(tmp_path: Path) -> None:
    """Warm-up runs on the load thread with the batch threads' engine thread count, so the
    plans it builds are the ones batches will use (a plan is sized for its thread count)."""
    import numba

    from service.lifecycle.loader import Loader

    path = save_version(tmp_path, 1, warmup={"requests": [{"inputs": {"x": [[1, 2, 3, 4]]}}]})
    for threads in (1, 2):
        loader = Loader(1, engine_threads=threads)
        try:
            result = asyncio.run(loader.load(path))
        finally:
            loader.shutdown()
        assert result.model is not None, result.error
        expected = min(threads, int(numba.config.NUMBA_NUM_THREADS))
        assert [key[0] for key in result.model._plans] == [expected]


def test_warmup_is_replayed_and_checked(tmp_path: Path) -> None:
    ok = save_version(tmp_path, 1, warmup={"requests": [
        {"inputs": {"x": [[1, 2, 3, 4]]}},
        {"signature_name": "serving_default", "inputs": {"x": [[0, 0, 0, 0], [1, 1, 1, 1]]}},
    ]})
    reqs = read_warmup(ok)
    assert [sig for sig, _ in reqs] == [None, "serving_default"]
    assert reqs[1][1]["x"].shape == (2, 4)
    model = load_and_warm_up(ok)
    assert len(model._plans) == 2  # both batch sizes were planned before serving

    bad = save_version(tmp_path, 2, warmup={"requests": [{"inputs": {"nope": [[1, 2, 3, 4]]}}]})
    with pytest.raises(LoadError, match="warmup request 0 failed.*nope"):
        load_and_warm_up(bad)
    malformed = save_version(tmp_path, 3, warmup={"reqs": []})
    with pytest.raises(LoadError, match="requests"):
        read_warmup(malformed)


# ---------------------------------------------------------------------------- manager


def test_load_acquire_status_and_errors(tmp_path: Path) -> None:
    base = tmp_path / "mlp"
    save_version(base, 1)
    save_version(base, 2)
    mgr, events = manager([ModelConfig("mlp", str(base), version_policy=VersionPolicy("all"))])

    async def go() -> None:
        assert not mgr.ready()
        with pytest.raises(Unavailable, match="no AVAILABLE version"):
            mgr.acquire("mlp")
        await mgr.start()
        assert mgr.ready()
        assert mgr.status("mlp") == [VersionStatus("mlp", 2, State.AVAILABLE),
                                     VersionStatus("mlp", 1, State.AVAILABLE)]
        assert mgr.status("mlp", 1)[0].to_json() == {
            "version": "1", "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}
        with mgr.acquire("mlp") as h:
            assert (h.name, h.version) == ("mlp", 2)
            assert run_x(h.model) == pytest.approx(8.0)
        with mgr.acquire("mlp", 1) as h:
            assert run_x(h.model) == pytest.approx(4.0)
        with pytest.raises(NotFound, match=r"Servable not found for request: Specific\(mlp, 7\)"):
            mgr.acquire("mlp", 7)
        with pytest.raises(NotFound, match=r"Servable not found for request: Latest\(nope\)"):
            mgr.acquire("nope")
        with pytest.raises(NotFound, match="Unrecognized servable version label: x"):
            mgr.acquire("mlp", label="x")
        with pytest.raises(InvalidArgument):
            mgr.acquire("mlp", 1, label="x")
        with pytest.raises(NotFound, match="Could not find version 7 of model mlp"):
            mgr.status("mlp", 7)
        with pytest.raises(NotFound, match="Could not find any versions of model nope"):
            mgr.status("nope")
        (summary,) = mgr.models()
        assert summary.name == "mlp" and summary.ready
        assert [v.version for v in summary.versions] == [2, 1]
        assert summary.to_json()["model_version_policy"] == {"all": {}}
        cfg = mgr.effective_config()
        assert cfg["model_config_list"][0]["name"] == "mlp"
        assert "admin_token" not in json.dumps(cfg)
        await mgr.stop()
        assert not mgr.ready()

    run(go)
    assert sorted((k, v) for k, _, v, _, _ in events if k == "load") == [("load", 1), ("load", 2)]
    assert all(s is not None and s >= 0 for k, _, _, s, _ in events if k == "load")


def test_hot_swap_new_version_available_before_old_unloads(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    mgr, events = manager([ModelConfig("m", str(base))])

    async def go() -> None:
        await mgr.start()
        held = mgr.acquire("m")
        assert held.version == 1
        save_version(base, 2)
        await mgr.poll_now()
        # v2 serves new requests; v1 drains the handle it still has out.
        assert states(mgr, "m") == {2: State.AVAILABLE, 1: State.UNLOADING}
        with mgr.acquire("m") as h:
            assert h.version == 2 and run_x(h.model) == pytest.approx(8.0)
        with pytest.raises(NotFound):
            mgr.acquire("m", 1)
        assert run_x(held.model) == pytest.approx(4.0)  # in-flight request finishes on v1
        await asyncio.sleep(0.05)
        assert states(mgr, "m")[1] is State.UNLOADING
        held.release()
        held.release()  # idempotent
        await wait_until(lambda: states(mgr, "m")[1] is State.END)
        await mgr.stop()

    run(go)
    order = [(k, v) for k, _, v, _, _ in events]
    assert order.index(("load", 2)) < order.index(("unload", 1))
    (unload_s,) = [s for k, _, v, s, _ in events if (k, v) == ("unload", 1)]
    assert unload_s is not None and unload_s >= 0.05  # it waited for the handle


def test_failing_version_is_reported_never_serves_and_is_retried(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    mgr, events = manager([ModelConfig("m", str(base))], max_num_load_retries=2)

    async def go() -> None:
        await mgr.start()
        corrupt_weights(save_version(base, 2))
        await mgr.poll_now()
        st = mgr.status("m", 2)[0]
        assert st.state is State.END and st.error_message and "sha256" in st.error_message
        assert st.to_json()["status"]["error_code"] != "OK"
        with mgr.acquire("m") as h:  # v1 keeps serving: a broken v2 never replaces it
            assert h.version == 1
        with pytest.raises(NotFound):
            mgr.acquire("m", 2)
        assert mgr.ready()
        for _ in range(4):  # retried up to max_num_load_retries (interval 0 here)
            await mgr.poll_now()
        failures = [v for k, _, v, _, _ in events if k == "load_failed"]
        assert failures == [2, 2, 2]
        # Fixed in place (new files): retried at once, then it replaces v1.
        shutil.rmtree(base / "2")
        save_version(base, 2)
        await mgr.poll_now()
        assert states(mgr, "m") == {2: State.AVAILABLE, 1: State.UNLOADING} or states(
            mgr, "m") == {2: State.AVAILABLE, 1: State.END}
        assert mgr.status("m", 2)[0].error_message is None
        await mgr.stop()

    run(go)


def test_retry_waits_for_the_interval(tmp_path: Path) -> None:
    base = tmp_path / "m"
    corrupt_weights(save_version(base, 1))
    mgr, events = manager([ModelConfig("m", str(base))], load_retry_interval_micros=150_000)

    async def go() -> None:
        await mgr.start()
        assert states(mgr, "m") == {1: State.END}
        with pytest.raises(Unavailable):
            mgr.acquire("m")
        assert not mgr.ready()
        await mgr.poll_now()  # too soon
        assert len([e for e in events if e[0] == "load_failed"]) == 1
        await asyncio.sleep(0.2)
        await mgr.poll_now()
        assert len([e for e in events if e[0] == "load_failed"]) == 2
        await mgr.stop()

    run(go)


def test_hidden_and_partial_dirs_are_ignored_until_renamed(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    save_version(base, "2.partial")
    save_version(base, ".3")
    mgr, _ = manager([ModelConfig("m", str(base), version_policy=VersionPolicy("all"))])

    async def go() -> None:
        await mgr.start()
        assert states(mgr, "m") == {1: State.AVAILABLE}
        os.rename(base / "2.partial", base / "2")
        await mgr.poll_now()
        assert states(mgr, "m") == {1: State.AVAILABLE, 2: State.AVAILABLE}
        await mgr.stop()

    run(go)


def test_version_whose_directory_disappears_is_unloaded(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    save_version(base, 2)
    mgr, _ = manager([ModelConfig("m", str(base), version_policy=VersionPolicy("all"))])

    async def go() -> None:
        await mgr.start()
        shutil.rmtree(base / "2")
        await mgr.poll_now()
        await wait_until(lambda: states(mgr, "m")[2] is State.END)
        with mgr.acquire("m") as h:
            assert h.version == 1
        # A base path that cannot be listed (unmounted volume) keeps what serves.
        shutil.rmtree(base)
        await mgr.poll_now()
        assert states(mgr, "m")[1] is State.AVAILABLE
        await mgr.stop()

    run(go)


def test_background_polling_picks_up_new_versions(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    mgr, _ = manager([ModelConfig("m", str(base))])

    async def go() -> None:
        await mgr.start()
        save_version(base, 2)
        await wait_until(lambda: mgr.status("m")[0] == VersionStatus("m", 2, State.AVAILABLE))
        await wait_until(lambda: states(mgr, "m")[1] is State.END)
        await mgr.stop()

    run(go)


def test_labels(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    save_version(base, 2)
    cfg = ModelConfig("m", str(base), version_policy=VersionPolicy("specific", versions=(1, 2)),
                      version_labels={"stable": 1, "canary": 2, "next": 3})
    mgr, _ = manager([cfg])

    async def go() -> None:
        await mgr.start()
        assert mgr.labels("m") == {"stable": 1, "canary": 2, "next": 3}
        with mgr.acquire("m", label="stable") as h:
            assert h.version == 1
        with mgr.acquire("m", label="canary") as h:
            assert h.version == 2
        assert mgr.status("m", label="canary")[0].version == 2
        with pytest.raises(Unavailable, match="points to version 3"):
            mgr.acquire("m", label="next")  # kept from the start config; resolves later
        with pytest.raises(FailedPrecondition, match="not currently available"):
            await mgr.set_label("m", "stable", 5)
        await mgr.set_label("m", "stable", 2)
        with mgr.acquire("m", label="stable") as h:
            assert h.version == 2
        await mgr.remove_label("m", "next")
        with pytest.raises(NotFound):
            await mgr.remove_label("m", "next")
        assert mgr.labels("m") == {"stable": 2, "canary": 2}
        # A reload that does not change the config's labels keeps labels set by hand.
        await mgr.reload_config([cfg])
        assert mgr.labels("m")["stable"] == 2
        await mgr.stop()

    run(go)


def test_labels_for_unavailable_versions_when_allowed(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    cfg = ModelConfig("m", str(base))
    mgr, _ = manager([cfg], allow_version_labels_for_unavailable_models=True)

    async def go() -> None:
        await mgr.start()
        await mgr.set_label("m", "canary", 2)
        with pytest.raises(Unavailable):
            mgr.acquire("m", label="canary")
        save_version(base, 2)
        await mgr.poll_now()
        with mgr.acquire("m", label="canary") as h:
            assert h.version == 2
        await mgr.stop()

    run(go)


def test_reload_config_adds_and_removes_models_and_checks_labels(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    save_version(a, 1)
    save_version(b, 4)
    conf = tmp_path / "models.config"
    conf.write_text('model_config_list { config { name: "a" base_path: "a" } }')
    mgr, _ = manager([], model_config_file=str(conf))

    async def go() -> None:
        await mgr.reload_config()
        assert [m.name for m in mgr.models()] == ["a"]
        held = mgr.acquire("a")
        conf.write_text('model_config_list { config { name: "b" base_path: "b"\n'
                        '  version_labels { key: "stable" value: 4 } } }')
        await mgr.reload_config()
        assert [m.name for m in mgr.models()] == ["b"]
        with pytest.raises(NotFound):
            mgr.acquire("a")
        assert run_x(held.model) == pytest.approx(4.0)  # removed, but the request finishes
        held.release()
        with mgr.acquire("b", label="stable") as h:
            assert h.version == 4
        # A label on a version that is not AVAILABLE is refused; the rest still applies.
        conf.write_text('model_config_list {\n'
                        ' config { name: "b" base_path: "b"\n'
                        '  version_labels { key: "stable" value: 5 } }\n'
                        ' config { name: "a" base_path: "a" } }')
        with pytest.raises(FailedPrecondition, match="version 5 of model b"):
            await mgr.reload_config()
        assert [m.name for m in mgr.models()] == ["a", "b"]
        assert mgr.labels("b") == {"stable": 4}
        conf.write_text("model_config_list { config { name: ")
        with pytest.raises(InvalidArgument, match="models.config:1:"):
            await mgr.reload_config()
        await mgr.stop()

    run(go)


def test_config_file_polling(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    save_version(a, 1)
    save_version(b, 1)
    conf = tmp_path / "models.config"
    conf.write_text('model_config_list { config { name: "a" base_path: "a" } }')
    s = settings(model_config_file=str(conf), model_config_file_poll_wait_seconds=0.05)
    from service.config import config_from_settings

    mgr = ModelManager(config_from_settings(s), s)

    async def go() -> None:
        await mgr.start()
        assert mgr.ready()
        conf.write_text("broken {")
        await asyncio.sleep(0.2)  # a bad file is reported and changes nothing
        assert mgr.effective_config()["model_config_file_error"]
        assert [m.name for m in mgr.models()] == ["a"]
        conf.write_text('model_config_list { config { name: "a" base_path: "a" }\n'
                        '                    config { name: "b" base_path: "b" } }')
        await wait_until(lambda: [m.name for m in mgr.models()] == ["a", "b"] and mgr.ready())
        assert mgr.effective_config()["model_config_file_error"] is None
        await mgr.stop()

    run(go)


def test_load_and_unload_version_overrides(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    save_version(base, 2)
    mgr, _ = manager([ModelConfig("m", str(base))])

    async def go() -> None:
        await mgr.start()
        assert states(mgr, "m") == {2: State.AVAILABLE}
        st = await mgr.load_version("m", 1)  # pinned next to the policy's choice
        assert st.state is State.AVAILABLE
        await mgr.poll_now()
        assert states(mgr, "m") == {1: State.AVAILABLE, 2: State.AVAILABLE}
        st = await mgr.unload_version("m", 2)  # roll back: v2 stays out
        assert st.state is State.END
        await mgr.poll_now()
        assert states(mgr, "m") == {1: State.AVAILABLE, 2: State.END}
        with mgr.acquire("m") as h:
            assert h.version == 1
        with pytest.raises(NotFound):
            await mgr.unload_version("m", 2)
        with pytest.raises(NotFound):
            await mgr.load_version("m", 9)
        corrupt_weights(save_version(base, 3))
        with pytest.raises(FailedPrecondition, match="sha256"):
            await mgr.load_version("m", 3)
        await mgr.load_version("m", 2)
        await mgr.poll_now()
        assert mgr.status("m", 2)[0].state is State.AVAILABLE
        await mgr.stop()

    run(go)


def test_stop_drains_handles_then_unloads(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    mgr, events = manager([ModelConfig("m", str(base))])

    async def go() -> None:
        await mgr.start()
        held = mgr.acquire("m")
        stopping = asyncio.create_task(mgr.stop(drain_seconds=5))
        await asyncio.sleep(0.1)
        assert not stopping.done()
        assert states(mgr, "m") == {1: State.UNLOADING}
        with pytest.raises(Unavailable):
            mgr.acquire("m")  # no new work while draining
        held.release()
        await asyncio.wait_for(stopping, 2)
        assert states(mgr, "m") == {1: State.END}
        assert not mgr.ready()

    run(go)
    assert [k for k, *_ in events] == ["load", "unload"]


def test_stop_gives_up_waiting_after_drain_seconds(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    mgr, _ = manager([ModelConfig("m", str(base))])

    async def go() -> None:
        await mgr.start()
        held = mgr.acquire("m")
        t0 = time.monotonic()
        await mgr.stop(drain_seconds=0.1)
        assert time.monotonic() - t0 < 1.5
        assert states(mgr, "m") == {1: State.END}
        assert run_x(held.model) == pytest.approx(4.0)  # the held model is still usable
        held.release()

    run(go)


def test_acquire_is_thread_safe(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_version(base, 1)
    mgr, _ = manager([ModelConfig("m", str(base))])

    async def go() -> None:
        await mgr.start()
        errors: list[BaseException] = []

        def worker() -> None:
            try:  # a version is AVAILABLE throughout: acquire never fails, even mid-swap
                for _ in range(5000):
                    with mgr.acquire("m") as h:
                        assert h.version in (1, 2)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        save_version(base, 2)
        await mgr.poll_now()
        for t in threads:
            await asyncio.to_thread(t.join)
        assert not errors
        await wait_until(lambda: states(mgr, "m")[1] is State.END)
        await mgr.stop(drain_seconds=1)

    run(go)


def test_loading_states_are_visible_and_start_can_be_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.lifecycle.loader as loader_mod

    real = loader_mod.load_and_warm_up
    gate = threading.Event()

    def slow(path: Path) -> engine.Model:
        gate.wait(5)
        return real(path)

    monkeypatch.setattr(loader_mod, "load_and_warm_up", slow)
    base = tmp_path / "m"
    save_version(base, 1)
    save_version(base, 2)
    mgr, events = manager([ModelConfig("m", str(base), version_policy=VersionPolicy("all"))],
                          num_load_threads=1)

    async def go() -> None:
        starting = asyncio.create_task(mgr.start())
        await wait_until(lambda: "m" in [s.name for s in mgr.models()]
                         and len(mgr.models()[0].versions) == 2)
        # One load thread: one version LOADING, the other waiting its turn in START.
        assert sorted(states(mgr, "m").values()) == [State.LOADING, State.START]
        with pytest.raises(Unavailable, match="no AVAILABLE version yet"):
            mgr.acquire("m")
        with pytest.raises(Unavailable, match="LOADING|START"):
            mgr.acquire("m", 2)
        starting.cancel()  # the app shuts down before the first loads finish
        with pytest.raises(asyncio.CancelledError):
            await starting
        gate.set()
        await mgr.stop(drain_seconds=0.5)
        assert set(states(mgr, "m").values()) == {State.END}
        assert not mgr.ready()

    run(go)
    assert not [e for e in events if e[0] == "load"]  # a cancelled load never turns AVAILABLE
