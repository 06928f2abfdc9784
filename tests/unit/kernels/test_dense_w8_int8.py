"""DenseW8 with compute="int8" (bindings/quant_hybrid.py) vs the numpy reference.

The engine and engine.kernels.reference.quant_hybrid.dense_w8_int8 do the same arithmetic
(float32 row quantization, exact integer sums, float32 rescale, float32 bias), so outputs are
compared to 1e-6 relative (linear and relu are exact there). Against the float product, both
DenseW8 computes stay within the hybrid arithmetic's quantization bound (stated in
test_quant_hybrid.py); the float32 compute is far inside it.
"""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import pytest

import engine
from engine.executor.bindings import quant_hybrid as BH
from engine.ir import Graph, Node, TensorType
from engine.kernels import quant_hybrid as QH
from engine.kernels.reference import quant_hybrid as R
from tests.unit.kernels.harness import run_op

RTOL = 1e-6
INT8 = {"compute": "int8"}


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng([abs(hash(str(key))) % (1 << 32)])


def _case(rng: np.random.Generator, lead: tuple[int, ...], k: int,
          n: int) -> tuple[np.ndarray, ...]:
    x = (rng.normal(size=(*lead, k)) * 3).astype(np.float32)
    w = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
    s = (rng.random(n) * 0.02 + 1e-3).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32)
    return x, w, s, b


# rank-2 x with M = 1, 5, 33 rows and rank-3 (B, S, K) x giving the same row counts
LEADS = [(1,), (5,), (33,), (1, 1), (1, 5), (3, 11)]


@pytest.mark.parametrize("lead", LEADS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("const_w", [True, False])
def test_matches_reference(lead: tuple[int, ...], bias: bool, activation: str,
                           const_w: bool) -> None:
    x, w, s, b = _case(_rng("ref", lead, bias, activation, const_w), lead, 70, 53)
    ins = [x, w, s, b] if bias else [x, w, s]
    const = [False] + [const_w] * (len(ins) - 1)
    (got,) = run_op("DenseW8", "quant", ins, {**INT8, "activation": activation}, const=const)
    want = R.dense_w8_int8(x, w, s, b if bias else None, activation)
    assert got.shape == (*lead, 53)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
    if activation == "relu":
        assert (got >= 0).all() and (got == 0).any()


@pytest.mark.parametrize("activation", ["gelu", "leaky_relu"])
def test_other_activations(activation: str) -> None:
    # float32 epilogue vs a float64 activation of the same float32 sums
    x, w, s, b = _case(_rng("act", activation), (2, 7), 33, 40)
    attrs = {**INT8, "activation": activation, "alpha": 0.1}
    (got,) = run_op("DenseW8", "quant", [x, w, s, b], attrs, const=[False, True, True, True])
    want = R.dense_w8_int8(x, w, s, b, activation, 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _graph(k: int, n: int, w: np.ndarray, s: np.ndarray, b: np.ndarray,
           rank: int) -> Graph:
    shape = (None, k) if rank == 2 else (None, None, k)
    return Graph.make(
        [("x", TensorType("float32", shape))], ["y"],
        [Node.make("DenseW8", ["x", "w", "s", "b"], ["y"],
                   {**INT8, "activation": "relu"})],
        {"w": w, "s": s, "b": b},
    )


@pytest.mark.parametrize("rank", [2, 3])
def test_in_a_compiled_model(rank: int) -> None:
    """Through engine's Model and plans (arena scratch holding earlier runs' bytes, one plan
    per shape, all sharing one packed weight)."""
    x, w, s, b = _case(_rng("model", rank), (3, 11) if rank == 3 else (33,), 96, 70)
    model = engine.compile_graph(_graph(96, 70, w, s, b, rank))
    feeds = [x, x[:1], x * 7, x]
    for xi in feeds:
        got = model.run({"x": np.ascontiguousarray(xi)})["y"]
        np.testing.assert_allclose(got, R.dense_w8_int8(xi, w, s, b, "relu"), rtol=RTOL, atol=0)
    assert len(model._plans) == 2
    # compiling packs the constant weight once (engine.passes.pack): no plan-time copy
    assert [n.op for n in model.graph.nodes] == ["DenseW8Packed"]
    assert not any(v[0]() is w for v in BH._PACKED.values())


def test_packed_weight_shared_and_released() -> None:
    _, w, s, _ = _case(_rng("cache"), (1,), 20, 30)
    p = BH.packed_weight(w, s)
    assert BH.packed_weight(w, s) is p
    assert BH.packed_weight(w, s.copy()) is not p  # another scale array: its own packing
    key = (id(w), id(s))
    del w, p
    gc.collect()
    assert key not in BH._PACKED


def test_zero_rows() -> None:
    _, w, s, b = _case(_rng("empty"), (1,), 12, 9)
    (got,) = run_op("DenseW8", "quant", [np.zeros((0, 12), np.float32), w, s, b], INT8,
                    const=[False, True, True, True])
    assert got.shape == (0, 9)


@pytest.mark.parametrize("m", [1, 5, 33])
def test_both_computes_within_quantization_bound(m: int) -> None:
    x, w, s, b = _case(_rng("bound", m), (m,), 130, 45)
    wf = w.astype(np.float64) * s
    want = x.astype(np.float64) @ wf + b
    _, rs = R.quantize_rows(x)
    bound = (0.5 * rs.astype(np.float64)[:, None] * np.abs(wf).sum(axis=0)[None, :]
             * (1 + 1e-4) + 1e-5 * (np.abs(x).astype(np.float64) @ np.abs(wf) + np.abs(b)))
    errs = {}
    for compute in ("float32", "int8"):
        (got,) = run_op("DenseW8", "quant", [x, w, s, b], {"compute": compute},
                        const=[False, True, True, True])
        err = np.abs(got.astype(np.float64) - want)
        assert np.all(err <= bound), (compute, float(np.max(err / bound)))
        errs[compute] = float(np.max(err / bound))
    # the float32 compute only rounds in float32; the int8 compute uses the bound's scale
    assert errs["float32"] < 0.01 < errs["int8"]


@pytest.mark.parametrize("lead", [(1,), (3, 11)])
def test_portable_kernel_through_the_binding(lead: tuple[int, ...],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # what a CPU without AVX-512 VNNI runs: the same results
    monkeypatch.setattr(QH, "HYBRID_AVAILABLE", False)
    x, w, s, b = _case(_rng("portable", lead), lead, 77, 61)
    (got,) = run_op("DenseW8", "quant", [x, w, s, b], {**INT8, "activation": "relu"},
                    const=[False, True, True, False])
    np.testing.assert_allclose(got, R.dense_w8_int8(x, w, s, b, "relu"), rtol=RTOL, atol=0)


def test_threaded_when_big_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above 4 x CONV_PAR_MIN_FMA multiply-adds the GEMM splits its rows over the engine's
    threads (threshold lowered here to keep the test small): the same numbers."""
    from engine.executor.bindings import conv as CB

    assert BH.hybrid_threads(4 * CB.CONV_PAR_MIN_FMA - 1) == 1
    assert BH.hybrid_threads(4 * CB.CONV_PAR_MIN_FMA) == CB._threads()
    monkeypatch.setattr(CB, "CONV_PAR_MIN_FMA", 1)
    x, w, s, b = _case(_rng("threads"), (40,), 96, 70)
    model = engine.compile_graph(_graph(96, 70, w, s, b, 2))
    got = model.run({"x": np.ascontiguousarray(x)})["y"]
    np.testing.assert_allclose(got, R.dense_w8_int8(x, w, s, b, "relu"), rtol=RTOL, atol=0)
