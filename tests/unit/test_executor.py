"""Plans: caching per shape, buffer reuse, fresh outputs, and concurrent runs from threads."""

from __future__ import annotations

import threading
from typing import Any

import numba
import numpy as np
import pytest

import engine
from engine.errors import DTypeError, InputError, ShapeError
from engine.executor import build_plan
from engine.ir import Graph, Node, TensorType, verify
from tests.unit.graphs import dense_graph, mlp_graph, mlp_reference


def test_plan_cached_per_batch_size() -> None:
    model = engine.compile_graph(mlp_graph())
    x1 = np.ones((1, 16), np.float32)
    x8 = np.ones((8, 16), np.float32)
    model.run({"x": x1})
    model.run({"x": x8})
    model.run({"x": x1})
    assert len(model._plans) == 2


def test_arena_reuses_buffers() -> None:
    g = verify(mlp_graph((64, 64, 64, 64, 64, 64)))
    plan = build_plan(g, {"x": (32, 64)})
    per_value = 32 * 64 * 4
    intermediates = len(g.nodes) - 1  # every node output but the graph output
    assert plan.arena_bytes <= 3 * per_value < intermediates * per_value


def test_outputs_are_fresh_each_run() -> None:
    model = engine.compile_graph(dense_graph())
    a = model.run({"x": np.ones((2, 4), np.float32)})["y"]
    keep = a.copy()
    model.run({"x": -np.ones((2, 4), np.float32)})
    np.testing.assert_array_equal(a, keep)


def test_matches_reference_at_several_batches() -> None:
    g = mlp_graph()
    model = engine.compile_graph(g)
    rng = np.random.default_rng(0)
    for n in (1, 3, 17):
        x = rng.standard_normal((n, 16)).astype(np.float32)
        np.testing.assert_allclose(model.predict(x), mlp_reference(g, x), rtol=1e-4, atol=1e-5)


def test_input_checks_name_what_was_expected() -> None:
    model = engine.compile_graph(dense_graph())
    with pytest.raises(InputError, match=r"missing input\(s\) \['x'\]"):
        model.run({})
    with pytest.raises(InputError, match=r"unknown input\(s\) \['z'\]"):
        model.run({"x": np.ones((1, 4), np.float32), "z": 1})
    with pytest.raises(ShapeError, match=r"input 'x': expected shape \[-1, 4\], got \[1, 5\]"):
        model.run({"x": np.ones((1, 5), np.float32)})
    with pytest.raises(DTypeError, match="input 'x': expected dtype float32"):
        model.run({"x": np.array([["a", "b", "c", "d"]])})
    # numbers of another width or kind are cast, as TF Serving does for JSON numbers
    out = model.run({"x": np.ones((1, 4), np.int64)})["y"]
    assert out.dtype == np.float32
    with pytest.raises(InputError, match="signature 'nope' not found"):
        model.run({"x": np.ones((1, 4), np.float32)}, signature="nope")


def test_two_models_from_two_threads() -> None:
    """Kernels release the GIL and use numba's OpenMP pool: no crash, deadlock or mix-up."""
    g1, g2 = mlp_graph(seed=1), mlp_graph((16, 64, 8), seed=2)
    m1, m2 = engine.compile_graph(g1), engine.compile_graph(g2)
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((n, 16)).astype(np.float32) for n in (1, 4, 32)]
    errors: list[BaseException] = []

    def worker(model: engine.Model, graph: engine.Graph) -> None:
        try:
            for i in range(150):
                x = xs[i % len(xs)]
                np.testing.assert_allclose(
                    model.predict(x), mlp_reference(graph, x), rtol=1e-4, atol=1e-5
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=a) for a in [(m1, g1), (m2, g2), (m1, g1)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock: a worker did not finish"
    assert not errors, errors[0]


def test_two_conv_models_from_two_threads() -> None:
    """The bundled CNNs (OpenMP-parallel conv and pool kernels plus BLAS, as chained
    steps: engine/executor/fused.py) from 3 threads."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "models" / "seed_cnn"
    models = [engine.load(root / "1"), engine.load(root / "2")]
    rng = np.random.default_rng(5)
    xs = [rng.random((n, 32, 32, 3), dtype=np.float32) for n in (1, 5, 32)]
    expected = [[m.predict(x) for x in xs] for m in models]  # one thread at a time
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(60):
                j = (i + k) % len(xs)
                got = models[k % 2].predict(xs[j])
                np.testing.assert_allclose(got, expected[k % 2][j], rtol=1e-5, atol=1e-5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock: a worker did not finish"
    assert not errors, errors[0]


def test_outputs_after_an_input_output_get_their_own_buffers() -> None:
    """A graph input listed among the outputs before computed ones must not shift the
    computed outputs' buffers (it once gave them the wrong shapes)."""
    g = Graph.make(
        [("x", TensorType("float32", (None, 3)))], ["x", "y", "z"],
        [Node.make("Relu", ["x"], ["y"]), Node.make("ReduceSum", ["y"], ["z"], {"axes": (1,)})],
        {},
    )
    plan = build_plan(verify(g), {"x": (4, 3)})
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    out = plan.run({"x": x})
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0))
    np.testing.assert_allclose(out["z"], np.maximum(x, 0).sum(1, keepdims=True), rtol=1e-6)


def test_plan_cache_is_bounded() -> None:
    from engine.model import MAX_PLANS

    g = Graph.make([("x", TensorType("float32", (None, 3)))], ["y"],
                   [Node.make("Relu", ["x"], ["y"])], {})
    model = engine.compile_graph(g)
    for n in range(1, MAX_PLANS + 6):
        x = np.full((n, 3), -1.0 if n % 2 else 2.0, np.float32)
        np.testing.assert_array_equal(model.run({"x": x})["y"], np.maximum(x, 0))
    assert len(model._plans) == MAX_PLANS
    assert (1, 3) not in [k[0] for k in model._plans]  # the oldest went first


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs numba threads")
def test_a_plan_is_sized_for_the_calling_threads_numba_thread_count() -> None:
    """A thread that set numba to one thread gets its own plan, with the serial kernels
    (no parallel launch, which would take the GIL), and the same outputs to float32 rounding."""
    from pathlib import Path

    from engine.executor.threads import plan_threads, use_parallel

    model = engine.load(Path(__file__).resolve().parents[2] / "models" / "seed_cnn" / "1")
    x = np.random.default_rng(2).random((32, 32, 32, 3), dtype=np.float32)
    many = model.predict(x)
    seen: dict[str, Any] = {}

    def one_thread() -> None:
        numba.set_num_threads(1)
        seen["threads"], seen["parallel"] = plan_threads(), use_parallel(True)
        seen["y"] = model.predict(x)

    t = threading.Thread(target=one_thread)
    t.start()
    t.join(timeout=120)
    assert seen["threads"] == 1 and seen["parallel"] is False
    assert use_parallel(True) is (plan_threads() > 1)
    assert sorted(k[0] for k in model._plans) == [1, plan_threads()]
    # the one-thread plan runs its Dense layers on the conv GEMM (another summation order)
    np.testing.assert_allclose(seen["y"], many, rtol=1e-5, atol=1e-5)
