"""The batcher through ``Inference``: merging, padding, splitting, shapes, deadlines, refusals,
handles; the batching parameters (file, flags, validation); the JSON tensor decoder. A real
engine model whose ``run`` is wrapped to record (and optionally hold) every engine call."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import Graph, Node, TensorType
from service.batching import (
    QUEUE_FULL,
    BatchingParameters,
    params_from_settings,
    parse_batching_parameters,
)
from service.batching.jsondecode import JsonArray, decode_json
from service.config import ConfigError, Settings
from service.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from service.inference import Inference, as_array
from service.metrics import Metrics

W = np.arange(8, dtype=np.float32).reshape(4, 2) / 8


class Recorder:
    """Wraps ``model.run``: records the rows (and shapes) of every engine call; while
    ``hold`` is set the next call blocks until ``release()``."""

    def __init__(self, model: engine.Model) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.inputs: list[np.ndarray] = []
        self.hold = threading.Event()
        self.held = threading.Event()
        self._go = threading.Event()
        real = model.run

        def run(feeds: Any, **kwargs: Any) -> Any:
            x = next(iter(feeds.values()))
            self.calls.append(tuple(x.shape))
            self.inputs.append(np.array(x))
            if self.hold.is_set():
                self.hold.clear()
                self.held.set()
                self._go.wait(10)
            return real(feeds, **kwargs)

        model.run = run  # type: ignore[method-assign]

    def release(self) -> None:
        self._go.set()


class FakeHandle:
    def __init__(self, owner: FakeManager) -> None:
        self.name, self.version, self.model = "m", 1, owner.model
        self.owner = owner
        owner.acquired += 1

    def release(self) -> None:
        self.owner.released += 1


class FakeManager:
    def __init__(self, model: engine.Model) -> None:
        self.model = model
        self.acquired = 0
        self.released = 0

    def acquire(self, name: str, version: int | None = None,
                label: str | None = None) -> FakeHandle:
        return FakeHandle(self)


def dense_model(row: tuple[int | None, ...] = (4,)) -> engine.Model:
    g = Graph.make([("x", TensorType("float32", (None, *row)))], ["y"],
                   [Node.make("Dense", ["x", "w"], ["y"])], {"w": W})
    return engine.compile_graph(g)


def run(fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(fn(), timeout=30))


def setup(params: BatchingParameters | None = None, row: tuple[int | None, ...] = (4,),
          **kw: Any) -> tuple[Inference, Recorder, FakeManager]:
    model = dense_model(row)
    rec = Recorder(model)
    manager = FakeManager(model)
    inf = Inference(manager, params=params or BatchingParameters(num_batch_threads=1), **kw)
    return inf, rec, manager


def rows(n: int, seed: int, width: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32)


async def wait_for(event: threading.Event) -> None:
    for _ in range(1000):
        if event.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the engine call never started")


# ----------------------------------------------------------------------------- merging


def test_concurrent_requests_are_one_engine_call_with_each_callers_rows() -> None:
    # A batch window so that every request is queued before the batch closes.
    inf, rec, manager = setup(BatchingParameters(batch_timeout_micros=300_000,
                                                 num_batch_threads=1))
    xs = [rows(1 + i % 3, i) for i in range(12)]  # 24 rows: under the limit of 32

    async def go() -> None:
        results = await asyncio.gather(*(inf.infer("m", {"x": x}) for x in xs))
        for x, r in zip(xs, results, strict=True):
            assert r.outputs["y"].shape == (len(x), 2)
            np.testing.assert_allclose(r.outputs["y"], x @ W, rtol=1e-5, atol=1e-6)

    run(go)
    assert rec.calls == [(24, 4)]  # one call of all 24 rows (an allowed size: no padding)
    np.testing.assert_array_equal(rec.inputs[0][:24], np.concatenate(xs))
    assert manager.released == manager.acquired == 12
    inf.close()


def test_requests_arriving_during_a_run_form_the_next_batch_lone_request_never_waits() -> None:
    inf, rec, _ = setup()

    async def go() -> None:
        rec.hold.set()
        first = asyncio.ensure_future(inf.infer("m", {"x": rows(1, 0)}))
        await wait_for(rec.held)  # the lone request ran at once, alone
        xs = [rows(1, i) for i in range(1, 8)]
        rest = [asyncio.ensure_future(inf.infer("m", {"x": x})) for x in xs]
        await asyncio.sleep(0.05)
        rec.release()
        await first
        for x, r in zip(xs, await asyncio.gather(*rest), strict=True):
            np.testing.assert_allclose(r.outputs["y"], x @ W, rtol=1e-5, atol=1e-6)

    run(go)
    assert rec.calls == [(1, 4), (8, 4)]  # 7 waiting rows -> one call, padded to 8
    inf.close()


def test_padding_repeats_the_last_row_up_to_the_next_allowed_size() -> None:
    inf, rec, _ = setup(BatchingParameters(allowed_batch_sizes=(1, 4, 8),
                                           max_execution_batch_size=8,
                                           batch_timeout_micros=200_000, num_batch_threads=1))
    xs = [rows(1, i) for i in range(3)]

    async def go() -> None:
        results = await asyncio.gather(*(inf.infer("m", {"x": x}) for x in xs))
        for x, r in zip(xs, results, strict=True):
            np.testing.assert_allclose(r.outputs["y"], x @ W, rtol=1e-5, atol=1e-6)

    run(go)
    assert rec.calls == [(4, 4)]
    np.testing.assert_array_equal(rec.inputs[0][3], rec.inputs[0][2])
    inf.close()


def test_no_allowed_sizes_means_no_padding() -> None:
    inf, rec, _ = setup(BatchingParameters(allowed_batch_sizes=(), batch_timeout_micros=200_000,
                                           num_batch_threads=1))

    async def go() -> None:
        await asyncio.gather(*(inf.infer("m", {"x": rows(1, i)}) for i in range(3)))

    run(go)
    assert rec.calls == [(3, 4)]
    inf.close()


def test_large_requests_are_split_across_batches_and_reassembled_in_order() -> None:
    inf, rec, _ = setup(BatchingParameters(max_batch_size=64, max_execution_batch_size=4,
                                           num_batch_threads=1))
    x = rows(10, 5)

    async def go() -> None:
        r = await inf.infer("m", {"x": x})
        np.testing.assert_allclose(r.outputs["y"], x @ W, rtol=1e-5, atol=1e-6)

    run(go)
    assert rec.calls == [(4, 4), (4, 4), (2, 4)]
    inf.close()


def test_without_splitting_a_request_over_max_batch_size_is_refused() -> None:
    inf, rec, _ = setup(BatchingParameters(max_batch_size=8, enable_large_batch_splitting=False,
                                           num_batch_threads=1))

    async def go() -> None:
        with pytest.raises(InvalidArgument, match="Task size 9 is larger than maximum input "
                                                  "batch size 8"):
            await inf.infer("m", {"x": rows(9, 0)})
        r = await inf.infer("m", {"x": rows(8, 0)})
        assert r.outputs["y"].shape == (8, 2)

    run(go)
    assert rec.calls == [(8, 4)]
    inf.close()


def test_different_shapes_are_never_merged() -> None:
    inf, rec, _ = setup(BatchingParameters(batch_timeout_micros=200_000, num_batch_threads=1,
                                           allowed_batch_sizes=()), row=(None, 4))
    a = np.ones((1, 3, 4), np.float32)
    b = np.ones((1, 5, 4), np.float32)

    async def go() -> None:
        ra, rb, ra2 = await asyncio.gather(inf.infer("m", {"x": a}), inf.infer("m", {"x": b}),
                                           inf.infer("m", {"x": a * 2}))
        assert ra.outputs["y"].shape == (1, 3, 2) and rb.outputs["y"].shape == (1, 5, 2)
        np.testing.assert_allclose(ra2.outputs["y"], (a * 2) @ W, rtol=1e-5)

    run(go)
    assert sorted(rec.calls) == [(1, 5, 4), (2, 3, 4)]
    inf.close()


def test_pad_variable_length_inputs_merges_by_zero_padding() -> None:
    inf, rec, _ = setup(BatchingParameters(batch_timeout_micros=200_000, num_batch_threads=1,
                                           allowed_batch_sizes=(),
                                           pad_variable_length_inputs=True), row=(None, 4))
    a = np.ones((1, 3, 4), np.float32)
    b = np.ones((1, 5, 4), np.float32)

    async def go() -> None:
        ra, rb = await asyncio.gather(inf.infer("m", {"x": a}), inf.infer("m", {"x": b}))
        assert ra.outputs["y"].shape == (1, 5, 2)  # as TF: outputs keep the padded length
        np.testing.assert_allclose(ra.outputs["y"][:, :3], a @ W, rtol=1e-5)
        np.testing.assert_allclose(ra.outputs["y"][:, 3:], 0.0)

    run(go)
    assert rec.calls == [(2, 5, 4)]
    inf.close()


def test_batching_disabled_runs_every_request_alone() -> None:
    inf, rec, _ = setup(BatchingParameters(batch_timeout_micros=200_000, num_batch_threads=1),
                        batching=False)

    async def go() -> None:
        await asyncio.gather(*(inf.infer("m", {"x": rows(3, i)}) for i in range(3)))

    run(go)
    assert rec.calls == [(3, 4)] * 3  # not merged, not padded
    inf.close()


# ----------------------------------------------------------------------------- deadlines


def test_a_request_whose_deadline_passes_in_the_queue_is_504_and_never_run() -> None:
    inf, rec, manager = setup()

    async def go() -> None:
        rec.hold.set()
        first = asyncio.ensure_future(inf.infer("m", {"x": rows(1, 0)}))
        await wait_for(rec.held)
        with pytest.raises(DeadlineExceeded, match="deadline"):
            await inf.infer("m", {"x": rows(2, 1)}, timeout_s=0.05)
        rec.release()
        await first
        r = await inf.infer("m", {"x": rows(1, 2)})  # the queue works on
        assert r.outputs["y"].shape == (1, 2)

    run(go)
    assert rec.calls == [(1, 4), (1, 4)]  # the expired 2-row request never ran
    assert manager.released == manager.acquired == 3
    inf.close()


def test_the_server_default_deadline_applies() -> None:
    inf, rec, _ = setup(timeout_s=0.05)

    async def go() -> None:
        rec.hold.set()
        first = asyncio.ensure_future(inf.infer("m", {"x": rows(1, 0)}))
        await wait_for(rec.held)
        with pytest.raises(DeadlineExceeded):
            await inf.infer("m", {"x": rows(1, 1)})
        rec.release()
        with pytest.raises(DeadlineExceeded):  # the held one ran past its deadline too
            await first

    run(go)
    inf.close()


# ----------------------------------------------------------------------------- refusals


def test_full_queue_is_refused_at_once_with_retry_after() -> None:
    params = BatchingParameters(max_enqueued_batches=1, max_execution_batch_size=4,
                                max_batch_size=8, num_batch_threads=1)
    inf, rec, manager = setup(params)

    async def go() -> None:
        rec.hold.set()
        first = asyncio.ensure_future(inf.infer("m", {"x": rows(1, 0)}))
        await wait_for(rec.held)
        queued = [asyncio.ensure_future(inf.infer("m", {"x": rows(2, i)})) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(ResourceExhausted, match=QUEUE_FULL) as info:
            await inf.infer("m", {"x": rows(1, 3)})
        assert info.value.retry_after is not None and info.value.retry_after >= 1
        rec.release()
        await first
        await asyncio.gather(*queued)

    run(go)
    assert rec.calls == [(1, 4), (4, 4)]
    assert manager.released == manager.acquired == 4
    inf.close()


def test_a_request_larger_than_the_queue_gets_in_when_it_is_empty() -> None:
    params = BatchingParameters(max_enqueued_batches=1, max_execution_batch_size=4,
                                max_batch_size=16, num_batch_threads=1)
    inf, rec, _ = setup(params)
    x = rows(10, 0)

    async def go() -> None:
        r = await inf.infer("m", {"x": x})
        np.testing.assert_allclose(r.outputs["y"], x @ W, rtol=1e-5, atol=1e-6)

    run(go)
    assert [c[0] for c in rec.calls] == [4, 4, 2]
    inf.close()


def test_in_flight_cap_per_model() -> None:
    inf, rec, _ = setup(max_in_flight=2)

    async def go() -> None:
        rec.hold.set()
        a = asyncio.ensure_future(inf.infer("m", {"x": rows(1, 0)}))
        await wait_for(rec.held)
        b = asyncio.ensure_future(inf.infer("m", {"x": rows(1, 1)}))
        await asyncio.sleep(0)
        with pytest.raises(ResourceExhausted, match="2 requests in flight"):
            await inf.infer("m", {"x": rows(1, 2)})
        rec.release()
        await asyncio.gather(a, b)
        await inf.infer("m", {"x": rows(1, 3)})  # room again

    run(go)
    inf.close()


def test_bad_inputs_are_refused_before_queueing_and_release_the_handle() -> None:
    inf, rec, manager = setup()

    async def go() -> None:
        with pytest.raises(engine.errors.ShapeError, match="'x'"):
            await inf.infer("m", {"x": np.ones((1, 5), np.float32)})
        with pytest.raises(InvalidArgument, match="'x'"):
            await inf.infer("m", {"x": [["a", "b"]]})

    run(go)
    assert rec.calls == [] and manager.released == manager.acquired == 2
    inf.close()


# ----------------------------------------------------------------------------- metrics


def test_metrics_count_requests_and_batches() -> None:
    metrics = Metrics()
    inf, _, _ = setup(BatchingParameters(batch_timeout_micros=200_000, num_batch_threads=1),
                      metrics=metrics)

    async def go() -> None:
        await asyncio.gather(*(inf.infer("m", {"x": rows(1, i)}) for i in range(5)))
        with pytest.raises(engine.errors.ShapeError):
            await inf.infer("m", {"x": np.ones((1, 5), np.float32)})

    run(go)
    text = metrics.render().decode()
    ok = ('model_name="m",status="OK",version="1"} 5.0')
    assert ok in text
    assert 'status="INVALID_ARGUMENT",version="1"} 1.0' in text
    assert ':tensorflow:serving:batching:input_batch_size_sum{model_name="m",version="1"} 5.0' \
        in text
    assert ':tensorflow:serving:batching:processed_batch_size_count{model_name="m",' \
           'version="1"} 1.0' in text
    assert 'numbaserve_batch_queue_depth{model_name="m",version="1"} 0.0' in text
    inf.close()


# ----------------------------------------------------------------------------- parameters


def test_parameters_file_in_tf_text_format(tmp_path: Path) -> None:
    text = """
        max_batch_size { value: 256 }
        batch_timeout_micros { value: 1000 }
        max_enqueued_batches: 4
        num_batch_threads { value: 2 }
        allowed_batch_sizes: 16
        allowed_batch_sizes: 64
        enable_large_batch_splitting { value: true }
        max_execution_batch_size { value: 64 }
        pad_variable_length_inputs: true
        thread_pool_name: "ignored"
    """
    p = parse_batching_parameters(text)
    assert (p.max_batch_size, p.batch_timeout_micros, p.max_enqueued_batches,
            p.num_batch_threads) == (256, 1000, 4, 2)
    assert p.batch_sizes == (16, 64) and p.pad_variable_length_inputs
    assert p.execution_limit == 64 and p.queue_capacity == 256
    assert p.padded_size(17) == 64 and p.padded_size(3) == 16


def test_defaults_are_valid_and_pad_by_at_most_a_third() -> None:
    p = BatchingParameters().validate()
    assert p.batch_timeout_micros == 0 and p.enable_large_batch_splitting
    assert p.batch_sizes == (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    assert BatchingParameters(max_execution_batch_size=40).batch_sizes == (
        1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 40)
    assert all((p.padded_size(n) - n) * 3 <= p.padded_size(n) for n in range(1, 33))


@pytest.mark.parametrize("text, message", [
    ("max_batch_size { value: 0 }", "max_batch_size must be >= 1"),
    ("allowed_batch_sizes: 8 allowed_batch_sizes: 16", "must equal max_execution_batch_size"),
    ("allowed_batch_sizes: 16 allowed_batch_sizes: 8", "increasing"),
    ("max_execution_batch_size { value: 64 } max_batch_size { value: 32 }",
     "must not exceed max_batch_size"),
    ("batch_size_limit: 3", "unknown batching parameter 'batch_size_limit'"),
    ("max_batch_size: 1 max_batch_size: 2", "given twice"),
    ("pad_variable_length_inputs: maybe", "true or false"),
])
def test_bad_parameters_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_batching_parameters(text, source="batching.config")


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    f = tmp_path / "batching.config"
    f.write_text("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 500 }\n")
    s = Settings(batching_parameters_file=str(f), batch_timeout_micros=0,
                 allowed_batch_sizes="4,32")
    p = params_from_settings(s)
    assert p.max_batch_size == 128 and p.batch_timeout_micros == 0
    assert p.batch_sizes == (4, 32)
    assert params_from_settings(Settings(allowed_batch_sizes="")).batch_sizes == ()
    with pytest.raises(ConfigError, match="comma-separated"):
        params_from_settings(Settings(allowed_batch_sizes="4;8"))


# ----------------------------------------------------------------------------- JSON decoding

# Magnitudes below 1e-250 would be left to orjson (exponents beyond +-300): not tested here.
json_floats = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e30,
                        max_value=1e30).map(lambda v: 0.0 if abs(v) < 1e-250 else v)
json_ints = st.integers(min_value=-(2**62), max_value=2**62)


@st.composite
def rect_arrays(draw: Any) -> np.ndarray:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    n = int(np.prod(shape))
    if draw(st.booleans()):
        return np.array(draw(st.lists(json_ints, min_size=n, max_size=n)),
                        np.int64).reshape(shape)
    return np.array(draw(st.lists(json_floats, min_size=n, max_size=n))).reshape(shape)


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


@settings(max_examples=60, deadline=None)
@given(arr=rect_arrays(), pretty=st.booleans())
def test_decode_json_matches_orjson_on_numeric_arrays(arr: np.ndarray, pretty: bool) -> None:
    doc = {"signature_name": "s", "instances": arr.tolist(), "inputs": {"a": arr.tolist()}}
    body = json.dumps(doc, indent=2 if pretty else None).encode()
    got = decode_json(body)
    ref = orjson.loads(body)
    assert isinstance(got["instances"], JsonArray) and isinstance(got["inputs"]["a"], JsonArray)
    assert got["signature_name"] == "s"
    for value in (got["instances"], got["inputs"]["a"]):
        assert value.shape == arr.shape
        if arr.dtype == np.int64:
            assert value.dtype == np.int64 and value.tolist() == ref["instances"]
        elif value.exact:  # <= 15 digits, exponent within 22: orjson's float64 exactly
            assert np.array_equal(np.asarray(value), arr)
        else:  # far below float32's resolution (re-read by orjson for float64 inputs)
            np.testing.assert_allclose(np.asarray(value), arr, rtol=1e-14, atol=0)
            np.testing.assert_array_max_ulp(np.asarray(value, np.float32),
                                            arr.astype(np.float32), maxulp=1)


@pytest.mark.parametrize("whole", ["0", "-0", "7", "-123456789", "100000000"])
def test_decode_json_numbers_of_every_length(whole: str) -> None:
    # Fractions of 1..24 digits (eight at a time in the scanner, then one by one), with
    # leading zeros and exponents, and the last number ending right before the '}'.
    rng = np.random.default_rng(len(whole))
    texts = []
    for length in range(1, 25):
        for zeros in (0, 2):
            digits = "".join(str(d) for d in rng.integers(0, 10, length))
            for exp in ("", "e-3", "E+2"):
                texts.append(f"{whole}.{'0' * zeros}{digits}{exp}")
    body = ('{"instances": [' + ",".join(texts) + "]}").encode()
    got = decode_json(body)["instances"]
    ref = np.array(orjson.loads(body)["instances"])
    assert isinstance(got, JsonArray) and got.shape == ref.shape
    if got.exact:
        assert np.array_equal(np.asarray(got), ref)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-15, atol=0)
    np.testing.assert_array_max_ulp(np.asarray(got, np.float32), ref.astype(np.float32), 1)
    short = [t for t in texts if len(t.replace("-", "").replace(".", "")) <= 12]
    exact = decode_json(('{"instances": [' + ",".join(short) + "]}").encode())["instances"]
    assert exact.exact and np.array_equal(np.asarray(exact), [float(t) for t in short])


@pytest.mark.parametrize("body", [
    b'{"instances": []}', b'{"instances": [[1, 2], [3]]}', b'{"instances": [1, true]}',
    b'{"instances": [1, null]}', b'{"instances": [1, "2"]}', b'{"instances": [{"a": 1}]}',
    b'{"instances": [123456789012345678901234]}', b'{"instances": [1e-999]}',
    b'{"instances": [[[[[[[[[1]]]]]]]]]}', b'{"other": [1, 2]}', b'[1, 2]', b'{}',
    b'{"inputs": {"a": [1], "b": "text", "c": {"d": [2]}}}', b'{"inputs": [{"x": 1}]}',
    b'{"a\\"b": 1, "instances": [-0, 0.0, 1E+2, -2.5e-3]}',
])
def test_decode_json_gives_orjsons_values_for_anything_else(body: bytes) -> None:
    assert _plain(decode_json(body)) == orjson.loads(body)


@pytest.mark.parametrize("body", [
    b"", b"{", b'{"instances": [1, 2]', b'{"instances": [01]}', b'{"instances": [1.]}',
    b'{"instances": [1,]}', b'{"instances": [1] , }', b'{"instances": [1]} x',
    b'{"instances": [.5]}', b'{"instances": [+1]}', b'{"instances": [1e]}',
    b'{"instances" [1]}', b'{"a": tru}', b'{"a": "\\x"}', b'{"instances": [1] "b": 2}',
    b'{"instances": [1e999]}',
])
def test_decode_json_refuses_what_orjson_refuses(body: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    with pytest.raises(orjson.JSONDecodeError):
        decode_json(body)


def test_json_arrays_cast_as_their_lists_would() -> None:
    spec = engine.TensorSpec("x", "float32", (None, 2))
    got = as_array("x", decode_json(b'{"inputs": [[1, 2.5], [3, 4]]}')["inputs"], spec)
    assert type(got) is np.ndarray and got.dtype == np.float32
    assert got.tolist() == [[1.0, 2.5], [3.0, 4.0]]
    ints = engine.TensorSpec("x", "int8", (None,))
    assert as_array("x", decode_json(b'{"inputs": [1, -3]}')["inputs"], ints).tolist() == [1, -3]
    with pytest.raises(InvalidArgument, match="'x'"):  # as np.asarray([300], int8) refuses
        as_array("x", decode_json(b'{"inputs": [1, 300]}')["inputs"], ints)
    f64 = engine.TensorSpec("x", "float64", (None,))
    text = b'{"inputs": [0.10000000000000000555, 0.3]}'  # 20 digits: re-read exactly
    value = decode_json(text)["inputs"]
    assert not value.exact
    assert as_array("x", value, f64).tolist() == orjson.loads(text)["inputs"]
