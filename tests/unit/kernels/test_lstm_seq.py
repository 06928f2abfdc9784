"""LSTMSeq (initial state, reverse direction, final h and c) through its binding vs the float64
reference; float32 kernels, 1e-4 relative / 2e-5 absolute as for LSTM."""

from __future__ import annotations

import numpy as np
import pytest

from engine.executor.bindings import recurrent as B
from engine.kernels.reference.recurrent import lstm_seq as ref
from tests.unit.kernels.harness import run_op

RTOL, ATOL = 1e-4, 2e-5


@pytest.mark.parametrize("batch", [1, 3, B.FUSED_MIN_BATCH + 1])
@pytest.mark.parametrize("n_state", [0, 1, 2])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("const", [True, False])
def test_lstm_seq(batch: int, n_state: int, reverse: bool, const: bool) -> None:
    rng = np.random.default_rng(batch * 7 + n_state)
    steps, feat, units = 5, 4, 3
    x = rng.normal(size=(batch, steps, feat)).astype(np.float32)
    k = (rng.normal(size=(feat, 4 * units)) / 2).astype(np.float32)
    r = (rng.normal(size=(units, 4 * units)) / 2).astype(np.float32)
    b = rng.normal(size=4 * units).astype(np.float32) * 0.5
    state = [rng.normal(size=(batch, units)).astype(np.float32) for _ in range(n_state)]
    ins = [x, k, r, b, *state]
    got = run_op("LSTMSeq", "recurrent", ins, {"reverse": reverse},
                 const=[False, const, const, const] + [False] * n_state)
    h0 = state[0] if n_state else None
    c0 = state[1] if n_state == 2 else (np.zeros_like(state[0]) if n_state else None)
    want = ref(x, k, r, b, h0, c0, reverse)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
