"""Dense and MatMul through their bindings vs the float64 numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels.reference.linalg import dense as ref_dense
from engine.kernels.reference.linalg import matmul as ref_matmul
from tests.unit.kernels.harness import run_op

ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "tanh", "leaky_relu", "gelu", "gelu_tanh")
RTOL, ATOL = 1e-4, 1e-4  # float32 GEMM, K up to a few hundred
CONST_WB = [False, True, True]  # weights and bias are graph constants, as in a saved model


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def _dense_case(x_shape: tuple[int, ...], units: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = _rng(seed, len(x_shape), units)
    k = x_shape[-1]
    x = rng.normal(size=x_shape).astype(np.float32)
    w = (rng.normal(size=(k, units)) / np.sqrt(k) * 2).astype(np.float32)
    b = rng.normal(size=(units,)).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(
    ("x_shape", "units"),
    [((1, 20), 7),  # batch 1
     ((5, 32), 16),  # rank 2
     ((2, 6, 24), 10),  # rank 3 (sequence)
     ((2, 4, 4, 8), 12),  # rank 4, Keras Dense on NHWC without Flatten
     ((256, 96), 300)],  # big enough for the parallel epilogue
)
@pytest.mark.parametrize("bias", [True, False])
def test_dense(activation: str, x_shape: tuple[int, ...], units: int, bias: bool) -> None:
    x, w, b = _dense_case(x_shape, units)
    attrs = {"activation": activation, "alpha": 0.1}
    inputs = [x, w, b] if bias else [x, w]
    (got,) = run_op("Dense", "linalg", inputs, attrs, const=[False] + [True] * (len(inputs) - 1))
    want = ref_dense(x, w, b if bias else None, activation, 0.1)
    assert got.shape == x_shape[:-1] + (units,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("activation", ["linear", "relu", "gelu"])
@pytest.mark.parametrize("const", [(False, False, False), (False, True, False),
                                   (False, False, True), (True, True, True)])
def test_dense_runtime_weights(activation: str, const: tuple[bool, bool, bool]) -> None:
    x, w, b = _dense_case((3, 5, 9), 4, seed=1)
    (got,) = run_op("Dense", "linalg", [x, w, b], {"activation": activation}, const=list(const))
    np.testing.assert_allclose(got, ref_dense(x, w, b, activation), rtol=RTOL, atol=ATOL)


def test_dense_rank1_input() -> None:
    x, w, b = _dense_case((11,), 6, seed=2)
    (got,) = run_op("Dense", "linalg", [x, w, b], {"activation": "tanh"}, const=CONST_WB)
    assert got.shape == (6,)
    np.testing.assert_allclose(got, ref_dense(x, w, b, "tanh"), rtol=RTOL, atol=ATOL)


def test_dense_empty_batch() -> None:
    x, w, b = _dense_case((0, 8), 3)
    (got,) = run_op("Dense", "linalg", [x, w, b], {"activation": "relu"}, const=CONST_WB)
    assert got.shape == (0, 3)


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "gelu_tanh"])
def test_dense_float64(activation: str) -> None:
    x, w, b = (a.astype(np.float64) for a in _dense_case((4, 3, 6), 5, seed=3))
    (got,) = run_op("Dense", "linalg", [x, w, b], {"activation": activation}, const=CONST_WB)
    assert got.dtype == np.float64
    tol = 1e-6 if activation == "gelu_tanh" else 1e-12
    np.testing.assert_allclose(got, ref_dense(x, w, b, activation), rtol=tol, atol=tol)


@settings(max_examples=25, deadline=None)
@given(
    lead=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    k=st.integers(1, 40),
    units=st.integers(1, 40),
    activation=st.sampled_from(ACTIVATIONS),
)
def test_dense_property(lead: list[int], k: int, units: int, activation: str) -> None:
    x, w, b = _dense_case((*lead, k), units, seed=k)
    (got,) = run_op("Dense", "linalg", [x, w, b], {"activation": activation}, const=CONST_WB)
    np.testing.assert_allclose(got, ref_dense(x, w, b, activation), rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- MatMul


@pytest.mark.parametrize(
    ("sa", "sb"),
    [((4, 5), (5, 3)),
     ((1, 784), (784, 64)),
     ((5,), (5, 3)),  # rank-1 left: row vector, dim dropped
     ((4, 5), (5,)),  # rank-1 right: column vector, dim dropped
     ((5,), (5,)),  # dot product, rank-0 result
     ((2, 3, 4, 5), (5, 6)),  # shared right matrix: one big GEMM
     ((2, 1, 3, 4), (5, 4, 6)),  # broadcast batch dims
     ((3, 4), (2, 4, 5)),  # rank-2 left against a batch
     ((2, 3, 4), (4,)),  # batch @ vector
     ((6,), (2, 6, 3)),  # vector @ batch
     ((2, 8, 16, 32), (2, 8, 32, 16))],  # attention scores
)
@pytest.mark.parametrize("const_b", [False, True])
def test_matmul(sa: tuple[int, ...], sb: tuple[int, ...], const_b: bool) -> None:
    rng = _rng(len(sa), len(sb), sa[-1])
    a = rng.normal(size=sa).astype(np.float32)
    b = rng.normal(size=sb).astype(np.float32)
    (got,) = run_op("MatMul", "linalg", [a, b], const=[False, const_b])
    want = ref_matmul(a, b)
    assert got.shape == want.shape == np.matmul(a, b).shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_matmul_integers() -> None:
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    b = np.arange(8, dtype=np.int32).reshape(4, 2) - 3
    (got,) = run_op("MatMul", "linalg", [a, b])
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, a.astype(np.int64) @ b)


@settings(max_examples=25, deadline=None)
@given(
    batch_a=st.lists(st.integers(1, 3), max_size=2),
    batch_b=st.lists(st.integers(1, 3), max_size=2),
    m=st.integers(1, 6), k=st.integers(1, 6), n=st.integers(1, 6),
    vec=st.sampled_from(["none", "left", "right"]),
)
def test_matmul_property(batch_a: list[int], batch_b: list[int], m: int, k: int, n: int,
                         vec: str) -> None:
    # make the batch dims broadcastable: where both have a dim, one of them is 1 or they agree
    lb = min(len(batch_a), len(batch_b))
    for i in range(1, lb + 1):
        if batch_a[-i] != batch_b[-i]:
            batch_b[-i] = 1
    sa = (k,) if vec == "left" else (*batch_a, m, k)
    sb = (k,) if vec == "right" else (*batch_b, k, n)
    rng = _rng(m, k, n)
    a = rng.normal(size=sa).astype(np.float32)
    b = rng.normal(size=sb).astype(np.float32)
    (got,) = run_op("MatMul", "linalg", [a, b])
    np.testing.assert_allclose(got, ref_matmul(a, b), rtol=RTOL, atol=ATOL)
