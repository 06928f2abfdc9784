"""Chained native steps (engine/executor/fused.py): the same outputs as step by step, a
cached generated function, and a fallback when a chain cannot be compiled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest

import engine
from engine.executor import fused
from engine.executor.binding import Native
from engine.executor.plan import _Chain
from engine.ir import Graph, Node, TensorType
from engine.kernels import pool as PK
from engine.kernels._jit import cache_dir

SEED_CNN = Path(__file__).resolve().parents[2] / "models" / "seed_cnn" / "1"


def _depthwise_graph() -> Graph:
    """conv 3x3 -> depthwise 3x3 (multiplier 1 and 2) -> avg pool -> conv 1x1 -> max pool."""
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    return Graph.make(
        [("x", TensorType("float32", (None, 12, 12, 3)))], ["y"],
        [Node.make("Conv2D", ["x", "w1", "b1"], ["h1"],
                   {"pads": (1, 1, 1, 1), "activation": "relu"}),
         Node.make("Conv2D", ["h1", "w2", "b2"], ["h2"],
                   {"groups": 8, "pads": (1, 1, 1, 1), "activation": "relu6"}),
         Node.make("Conv2D", ["h2", "w3", "b3"], ["h3"], {"groups": 8}),
         Node.make("AvgPool2D", ["h3"], ["h4"], {"pool_size": (2, 2), "strides": (2, 2)}),
         Node.make("Conv2D", ["h4", "w5"], ["h5"]),
         Node.make("MaxPool2D", ["h5"], ["y"], {"pool_size": (2, 2), "strides": (2, 2)})],
        {"w1": w(3, 3, 3, 8), "b1": w(8), "w2": w(3, 3, 1, 8), "b2": w(8),
         "w3": w(3, 3, 1, 16), "b3": w(16), "w5": w(1, 1, 16, 24)},
    )


def _load(src: Path | Graph, tmp: Path, fuse: bool, monkeypatch: pytest.MonkeyPatch,
          x: np.ndarray) -> tuple[Any, np.ndarray]:
    """The model and its outputs for ``x``, its plan built with chaining on or off."""
    monkeypatch.setenv("NUMBASERVE_FUSED_RUNS", "1" if fuse else "0")
    if isinstance(src, Graph):
        path = tmp / ("fused" if fuse else "steps") / "1"
        engine.save(path, src)
        src = path
    model = engine.load(src)
    return model, model.predict(x)


def _resnet() -> Graph:
    from benchmarks.models import resnet

    return resnet(size=32, stem=16, channels=(16, 32), strides=(1, 2)).graph


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Plans made on this thread are sized for one engine thread, as a server's batch
    thread on a small machine: serial kernels, small Dense layers on the conv GEMM."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("which", ["seed_cnn", "depthwise", "resnet"])
@pytest.mark.parametrize("batch", [1, 7, 32])
def test_chained_steps_give_the_step_by_step_outputs(which: str, batch: int, threads: int,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        _check_chained(which, batch, threads, tmp_path, monkeypatch)
    finally:
        numba.set_num_threads(before)


def _check_chained(which: str, batch: int, threads: int, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    src: Path | Graph = {"seed_cnn": lambda: SEED_CNN, "depthwise": _depthwise_graph,
                         "resnet": _resnet}[which]()
    shape = (batch, 12, 12, 3) if which == "depthwise" else (batch, 32, 32, 3)
    x = np.random.default_rng(batch).random(shape, dtype=np.float32)
    chained, got = _load(src, tmp_path, True, monkeypatch, x)
    steps, want = _load(src, tmp_path, False, monkeypatch, x)
    # the same kernels on the same buffers: the same bits
    np.testing.assert_array_equal(got, want)
    (plan,) = chained._plans.values()
    chains = [s for s in plan._segments if isinstance(s, _Chain)]
    assert chains and sum(len(c) for c in chains) >= 4
    assert all(c.fused._fn is not None for c in chains)  # compiled, not fallen back
    (plain,) = steps._plans.values()
    assert not any(isinstance(s, _Chain) for s in plain._segments)
    if which == "seed_cnn" and threads == 1 and batch >= 8:
        # convs, pools, Flatten and both Dense layers (on the conv GEMM): one chain
        assert [type(s) for s in plan._segments] == [_Chain]


def test_the_generated_function_is_a_cached_file(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    model, _ = _load(SEED_CNN, tmp_path, True, monkeypatch, np.zeros((2, 32, 32, 3), np.float32))
    (plan,) = model._plans.values()
    chains = [s for s in plan._segments if isinstance(s, _Chain)]
    assert chains
    files = list((cache_dir() / "fused").glob("run_*.py"))
    for chain in chains:
        refs = tuple(n.kernel for n in chain.fused.natives)
        assert any(all(r in f.read_text() for r in refs) for f in files)
        assert fused.fused_kernel(refs) is chain.fused._fn  # one function per chain


def test_a_chain_that_cannot_compile_runs_step_by_step() -> None:
    x = np.random.default_rng(1).random((2, 8, 8, 4), dtype=np.float32)
    geo = np.zeros(PK.POOL_GEO_LEN, dtype=np.int64)
    geo[:12] = (2, 8, 8, 4, 4, 4, 2, 2, 2, 2, 0, 0)
    sched = np.zeros(64, np.int64)
    calls: list[str] = []

    def step(name: str) -> Any:
        def run(ins: Any, outs: Any, scr: Any) -> None:
            calls.append(name)
            np.copyto(outs[0], ins[0].reshape(2, 4, 2, 4, 2, 4).max(axis=(2, 4)))
        return run

    bogus = Native("PK.no_such_kernel", lambda i, o, s: (i[0], o[0], s[0], geo, PK.MODE_MAX))
    good = Native("PK.pool2d_serial", lambda i, o, s: (i[0], o[0], s[0], geo, PK.MODE_MAX))
    run = fused.FusedRun([good, bogus], [step("a"), step("b")])
    outs = [np.empty((2, 4, 4, 4), np.float32), np.empty((2, 4, 4, 4), np.float32)]
    run.run([([x], [outs[0]], [sched]), ([x], [outs[1]], [sched])])
    assert calls == ["a", "b"]
    np.testing.assert_array_equal(outs[0], x.reshape(2, 4, 2, 4, 2, 4).max(axis=(2, 4)))


@pytest.mark.parametrize("act", ["linear", "relu", "gelu", "leaky_relu"])
@pytest.mark.parametrize("shape", [(9, 24), (3, 4, 4, 24)])
def test_small_dense_runs_as_a_conv_step_that_chains(act: str, shape: tuple[int, ...],
                                                     tmp_path: Path, one_thread: None) -> None:
    from engine.kernels.reference.activations import activation

    rng = np.random.default_rng(len(shape))
    w1, w2 = rng.standard_normal((24, 40)).astype(np.float32), rng.standard_normal(
        (40, 8)).astype(np.float32)
    b1 = rng.standard_normal(40).astype(np.float32)
    g = Graph.make([("x", TensorType("float32", (None, *shape[1:])))], ["y"],
                   [Node.make("Dense", ["x", "w1", "b1"], ["h"], {"activation": act}),
                    Node.make("Dense", ["h", "w2"], ["y"])],
                   {"w1": w1, "b1": b1, "w2": w2})
    engine.save(tmp_path / "1", g)
    model = engine.load(tmp_path / "1")
    x = rng.standard_normal(shape).astype(np.float32)
    got = model.predict(x)
    want = activation(x.astype(np.float64) @ w1 + b1, act, 0.2) @ w2
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    (plan,) = model._plans.values()
    assert [type(s) for s in plan._segments] == [_Chain]
