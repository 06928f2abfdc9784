"""GRUSeq through its binding vs the float64 reference (both reset modes, directions, initial
state, serial and parallel recurrences); float32 kernels, 1e-4 relative / 2e-5 absolute."""

from __future__ import annotations

import numpy as np
import pytest

from engine.executor.bindings import recurrent as B
from engine.kernels.reference.recurrent import gru_seq as ref
from tests.unit.kernels.harness import run_op

RTOL, ATOL = 1e-4, 2e-5


@pytest.mark.parametrize("batch", [1, 5, B.FUSED_MIN_BATCH + 1])
@pytest.mark.parametrize("units", [3, 8])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("init", [False, True])
def test_gru_seq(batch: int, units: int, reset_after: bool, reverse: bool, init: bool) -> None:
    rng = np.random.default_rng(batch * 11 + units)
    steps, feat = 6, 5
    x = rng.normal(size=(batch, steps, feat)).astype(np.float32)
    k = (rng.normal(size=(feat, 3 * units)) / 2).astype(np.float32)
    r = (rng.normal(size=(units, 3 * units)) / 2).astype(np.float32)
    b = rng.normal(size=(2, 3 * units)).astype(np.float32) * 0.5
    h0 = [rng.normal(size=(batch, units)).astype(np.float32)] if init else []
    got = run_op("GRUSeq", "recurrent", [x, k, r, b, *h0],
                 {"reset_after": reset_after, "reverse": reverse},
                 const=[False, True, True, True] + [False] * len(h0))
    want = ref(x, k, r, b, h0[0] if init else None, reset_after, reverse)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def test_gru_seq_runtime_weights() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 3)).astype(np.float32)
    k, r = rng.normal(size=(3, 6)).astype(np.float32), rng.normal(size=(2, 6)).astype(np.float32)
    b = rng.normal(size=(2, 6)).astype(np.float32)
    got = run_op("GRUSeq", "recurrent", [x, k, r, b], {"reset_after": False})
    for g, w in zip(got, ref(x, k, r, b, None, False), strict=True):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
