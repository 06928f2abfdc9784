"""LSTM through its binding vs the per-timestep float64 reference (and onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.executor.bindings import recurrent as B
from engine.kernels.reference.recurrent import lstm as ref
from tests.unit.kernels.harness import run_op

RTOL, ATOL = 1e-4, 2e-5


def _weights(rng: np.random.Generator, feat: int, units: int) -> list[np.ndarray]:
    k = (rng.normal(size=(feat, 4 * units)) / np.sqrt(feat)).astype(np.float32)
    r = (rng.normal(size=(units, 4 * units)) / np.sqrt(units)).astype(np.float32)
    b = rng.normal(size=4 * units).astype(np.float32) * 0.5
    return [k, r, b]


@pytest.mark.parametrize("batch", [1, 3, 6, B.FUSED_MIN_BATCH, B.FUSED_MIN_BATCH + 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("const", [True, False])
def test_lstm(batch: int, bias: bool, return_sequences: bool, const: bool) -> None:
    rng = np.random.default_rng(batch * 10 + bias)
    steps, feat, units = 9, 6, 5
    x = rng.normal(size=(batch, steps, feat)).astype(np.float32) * 2
    k, r, b = _weights(rng, feat, units)
    ins = [x, k, r, b] if bias else [x, k, r]
    (got,) = run_op("LSTM", "recurrent", ins, {"return_sequences": return_sequences},
                    const=[False] + [const] * (len(ins) - 1))
    want = ref(x, k, r, b if bias else None, return_sequences)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("steps", [1, 50])
@pytest.mark.parametrize("batch", [1, 32])
def test_lstm_benchmark_shape(steps: int, batch: int) -> None:
    rng = np.random.default_rng(steps)
    x = rng.normal(size=(batch, steps, 64)).astype(np.float32)
    k, r, b = _weights(rng, 64, 128)
    (got,) = run_op("LSTM", "recurrent", [x, k, r, b], {"return_sequences": True},
                    const=[False, True, True, True])
    np.testing.assert_allclose(got, ref(x, k, r, b, True), rtol=RTOL, atol=ATOL)


def test_lstm_saturated_gates() -> None:
    """Large pre-activations drive sigmoid/tanh into their flat tails (clamped branch)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32) * 30
    k, r, b = _weights(rng, 3, 4)
    (got,) = run_op("LSTM", "recurrent", [x, k, r, b], {"return_sequences": True},
                    const=[False, True, True, True])
    np.testing.assert_allclose(got, ref(x, k, r, b, True), rtol=RTOL, atol=ATOL)


def test_lstm_matches_onnxruntime() -> None:
    """Independent check of the Keras gate order (i, f, c, o) against ONNX's (i, o, f, c)."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    n, steps, feat, units = 3, 7, 4, 6
    x = rng.normal(size=(n, steps, feat)).astype(np.float32)
    k, r, b = _weights(rng, feat, units)

    def to_onnx(m: np.ndarray) -> np.ndarray:
        i, f, c, o = np.split(m, 4, axis=-1)
        return np.concatenate([i, o, f, c], axis=-1)

    inits = [
        numpy_helper.from_array(np.ascontiguousarray(to_onnx(k).T[None]), "W"),
        numpy_helper.from_array(np.ascontiguousarray(to_onnx(r).T[None]), "R"),
        numpy_helper.from_array(np.concatenate([to_onnx(b), np.zeros_like(b)])[None], "B"),
    ]
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y"], hidden_size=units)
    graph = helper.make_graph(
        [node], "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, n, feat])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": np.ascontiguousarray(x.transpose(1, 0, 2))})  # (T, 1, N, U)
    (got,) = run_op("LSTM", "recurrent", [x, k, r, b], {"return_sequences": True},
                    const=[False, True, True, True])
    np.testing.assert_allclose(got, y[:, 0].transpose(1, 0, 2), rtol=RTOL, atol=ATOL)
