"""DenseW8's tiled int8-reading GEMM (engine.kernels.quant_dense) vs the float64 reference.

Through the binding (every row count 1..70 around the tile heights, odd K and N, bias or
not, every activation, weights constant or inputs) and the kernels' serial and parallel
entries directly. Tolerance as the other weight-only tests: float32 accumulation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.executor.bindings import quant as QB
from engine.kernels import quant_dense as QD
from engine.kernels.activations import ACTIVATION_CODES
from engine.kernels.reference import quant as R
from tests.unit.kernels.harness import run_op

RTOL, ATOL = 1e-4, 1e-4


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng([abs(hash(str(key))) % (1 << 32)])


def _case(rng: np.random.Generator, rows: int, k: int, n: int) -> tuple[np.ndarray, ...]:
    x = rng.normal(size=(rows, k)).astype(np.float32)
    w = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
    s = (rng.random(n) * 0.02 + 1e-3).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32)
    return x, w, s, b


@pytest.mark.parametrize("n", [13, 45])  # tile widths 16 and 48 on AVX-512 (16, 48 on AVX2)
@pytest.mark.parametrize("rows", range(1, 71))
def test_every_row_count(rows: int, n: int) -> None:
    x, w, s, b = _case(_rng("rows", rows, n), rows, 37, n)
    (got,) = run_op("DenseW8", "quant", [x, w, s, b], {"activation": "relu"},
                    const=[False, True, True, True])
    np.testing.assert_allclose(got, R.dense_w8(x, w, s, b, "relu"), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("activation", sorted(ACTIVATION_CODES))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("const", [True, False])
def test_activations_bias_and_weight_inputs(activation: str, bias: bool, const: bool) -> None:
    rng = _rng("act", activation, bias, const)
    x, w, s, b = _case(rng, 23, 31, 70)  # 23 rows: a partial row block; 70: a partial col one
    ins = [x, w, s, b] if bias else [x, w, s]
    attrs = {"activation": activation, "alpha": 0.3}
    (got,) = run_op("DenseW8", "quant", ins, attrs, const=[False] + [const] * (len(ins) - 1))
    want = R.dense_w8(x, w, s, b if bias else None, activation, 0.3)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_rank4_input_and_wide_output() -> None:
    rng = _rng("rank4")
    x = rng.normal(size=(2, 3, 5, 19)).astype(np.float32)
    _, w, s, b = _case(rng, 1, 19, 131)
    (got,) = run_op("DenseW8", "quant", [x, w, s, b], {}, const=[False, True, True, True])
    want = R.dense_w8(x.reshape(-1, 19), w, s, b).reshape(2, 3, 5, 131)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("path", ["blas", "parallel"])
def test_other_binding_paths(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above W8_TILED_MAX_FMA: widen + BLAS; from CONV_PAR_MIN_FMA: the parallel entry."""
    if path == "blas":
        monkeypatch.setattr(QB, "W8_TILED_MAX_FMA", 0)
    else:
        monkeypatch.setattr(QB.CB, "CONV_PAR_MIN_FMA", 0)
    x, w, s, b = _case(_rng("path", path), 29, 17, 150)
    (got,) = run_op("DenseW8", "quant", [x, w, s, b], {"activation": "tanh"},
                    const=[False, True, True, True])
    want = R.dense_w8(x, w, s, b, "tanh")
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("nchunks", [1, 2, 3, 7])
@pytest.mark.parametrize("shape", [(9, 5, 3), (70, 33, 17), (40, 64, 100), (13, 129, 257)])
def test_kernel_entries(shape: tuple[int, int, int], nchunks: int) -> None:
    """Serial (nchunks 1) and parallel entries, including more chunks than column blocks."""
    rows, k, n = shape
    x, w, s, _ = _case(_rng("kernel", shape), rows, k, n)
    mr, nr = QD.w8_tile_shape(n)
    serial, par = QD.w8_gemm_kernels(mr, nr)
    y = np.full((rows, n), np.nan, dtype=np.float32)
    (serial if nchunks == 1 else par)(x, w, QD.pack_tail(w, nr), s, y, nchunks)
    np.testing.assert_allclose(y, R.dense_w8(x, w, s), rtol=RTOL, atol=ATOL)
