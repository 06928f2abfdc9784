"""Hybrid int8 GEMM (engine.kernels.quant_hybrid: AVX-512 VNNI and portable) vs its reference.

Both kernels and engine.kernels.reference.quant_hybrid do the same arithmetic (float32 row
quantization, exact integer sums, float32 rescale in the same order), so they are compared to
1e-6 relative (they agree bit for bit here), and the two kernels to each other bit for bit. The
portable kernel is called explicitly (``portable_gemm_q``), so it is tested on VNNI machines
too; ``hybrid_gemm`` runs whichever the CPU has. Against the float product x @ (wq * scale), in
float64, the test bound is the quantization's worst case: each activation moves by at most
half a step, |x - q * row_scale| <= row_scale / 2, so

    |out - x @ (wq * s)|[i, j] <= 0.5 * row_scale[i] * sum_k |wq[k, j]| * s[j]  (* (1 + 1e-4))
                                  + 1e-5 * (|x| @ |wq * s|)[i, j]

(the second term and the factor cover float32 rounding of the scales and of the last
products).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.kernels import quant_hybrid as QH
from engine.kernels.reference import quant_hybrid as R

needs_vnni = pytest.mark.skipif(not QH.HYBRID_AVAILABLE, reason="no AVX-512 VNNI on this CPU")
RTOL = 1e-6


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng([abs(hash(str(key))) % (1 << 32)])


def _case(rng: np.random.Generator, m: int, k: int, n: int) -> tuple[np.ndarray, ...]:
    x = (rng.normal(size=(m, k)) * rng.random((m, 1)) * 4).astype(np.float32)
    w = rng.integers(-128, 128, size=(k, n)).astype(np.int8)
    s = (rng.random(n) * 0.02 + 1e-3).astype(np.float32)
    return x, w, s


def _run(x: np.ndarray, w: np.ndarray, s: np.ndarray, portable: bool = False) -> np.ndarray:
    out = np.full((x.shape[0], w.shape[1]), np.nan, dtype=np.float32)
    packed = QH.pack(w, s)
    if not portable:
        QH.hybrid_gemm(x, packed, out)
        return out
    xq, rs = QH.hybrid_scratch(x.shape[0], packed)
    QH.quantize_rows(x, xq, rs)
    QH.portable_gemm_q(xq, rs, x.shape[0], packed, out)
    return out


# every tile width (16, 32, 48, 64 columns) with partial column blocks, row counts around the
# tile heights (6, 8), K from 1 to past a multiple of 4
SHAPES = [(1, 1, 1), (1, 3, 5), (2, 5, 16), (5, 7, 17), (6, 8, 32), (7, 9, 33), (11, 37, 64),
          (12, 64, 70), (9, 40, 96), (13, 129, 130), (25, 130, 200), (32, 1024, 64), (3, 771, 31),
          (50, 770, 130)]


@pytest.mark.parametrize("portable", [False, True], ids=["default", "portable"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_equals_reference(m: int, k: int, n: int, portable: bool) -> None:
    x, w, s = _case(_rng("ref", m, k, n), m, k, n)
    np.testing.assert_allclose(_run(x, w, s, portable), R.hybrid_gemm(x, w, s), rtol=RTOL,
                               atol=0)


@needs_vnni
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_portable_equals_vnni_bit_for_bit(m: int, k: int, n: int) -> None:
    x, w, s = _case(_rng("same", m, k, n), m, k, n)
    np.testing.assert_array_equal(_run(x, w, s, True).view(np.int32),
                                  _run(x, w, s).view(np.int32))


@pytest.mark.parametrize("portable", [False, True], ids=["default", "portable"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_error_within_quantization_bound(m: int, k: int, n: int, portable: bool) -> None:
    x, w, s = _case(_rng("bound", m, k, n), m, k, n)
    got = _run(x, w, s, portable).astype(np.float64)
    wf = w.astype(np.float64) * s
    want = x.astype(np.float64) @ wf
    _, rs = R.quantize_rows(x)
    bound = (0.5 * rs.astype(np.float64)[:, None] * (np.abs(wf).sum(axis=0))[None, :]
             * (1 + 1e-4) + 1e-5 * (np.abs(x).astype(np.float64) @ np.abs(wf)))
    assert np.all(np.abs(got - want) <= bound), float(np.max(np.abs(got - want) / bound))


@pytest.mark.parametrize("portable", [False, True], ids=["default", "portable"])
def test_extremes_do_not_overflow(portable: bool) -> None:
    # every activation at +-amax (u8 255 or 1) against -128 weights over a long K: the largest
    # |u8 * s8| sums vpdpbusd can see (|acc| = 255 * 128 * K < 2^31)
    m, k, n = 7, 8191, 40
    rng = _rng("extremes")
    x = np.where(rng.random((m, k)) < 0.5, -3.0, 3.0).astype(np.float32)
    x[0] = 3.0
    w = np.full((k, n), -128, dtype=np.int8)
    w[:, 1] = 127
    s = np.full(n, 0.5, dtype=np.float32)
    got = _run(x, w, s, portable)
    np.testing.assert_allclose(got, R.hybrid_gemm(x, w, s), rtol=RTOL, atol=0)
    np.testing.assert_allclose(got[0, 0], -128 * k * 3.0 * 0.5, rtol=RTOL)


def test_zero_rows_and_scratch_reuse() -> None:
    x, w, s = _case(_rng("zero"), 9, 45, 50)
    x[3] = 0.0
    packed = QH.pack(w, s)
    xq, rs = QH.hybrid_scratch(9, packed)
    assert xq.shape == (-(-9 // packed.mr) * packed.mr, 48)  # whole row blocks and 4-groups
    for _ in range(2):
        out = np.empty((9, 50), dtype=np.float32)
        QH.hybrid_gemm(x, packed, out, xq, rs)
        np.testing.assert_allclose(out, R.hybrid_gemm(x, w, s), rtol=RTOL, atol=0)
    assert not out[3].any()
    with pytest.raises(ValueError, match="hybrid_scratch"):
        QH.hybrid_gemm(x, packed, out, xq[:, :44], rs)


@pytest.mark.parametrize("portable", [False, True], ids=["default", "portable"])
@pytest.mark.parametrize("m,k,n", [(1, 5, 3), (7, 64, 50), (13, 130, 96)])
def test_gemm_q_on_garbage_scratch(m: int, k: int, n: int, portable: bool) -> None:
    # hybrid_gemm_q on rows quantized by the caller, in scratch whose padding (rows past M,
    # columns past K) holds arbitrary bytes, as an arena's buffer does
    x, w, s = _case(_rng("gemm_q", m, k, n), m, k, n)
    packed = QH.pack(w, s)
    xs, rss = QH.hybrid_scratch_shapes(m, k, n)
    rng = _rng("garbage", m, k, n)
    xq = rng.integers(0, 256, size=xs).astype(np.uint8)
    rs = rng.normal(size=rss).astype(np.float32)
    QH.quantize_rows(x, xq, rs)
    out = np.full((m, n), np.nan, dtype=np.float32)
    (QH.portable_gemm_q if portable else QH.hybrid_gemm_q)(xq, rs, m, packed, out)
    np.testing.assert_allclose(out, R.hybrid_gemm(x, w, s), rtol=RTOL, atol=0)
    with pytest.raises(ValueError, match="hybrid_scratch"):
        QH.hybrid_gemm_q(xq[:, :-4], rs, m, packed, out)
    with pytest.raises(ValueError, match="C-contiguous"):
        QH.hybrid_gemm_q(xq, rs, m, packed, np.empty((m, n, 2), np.float32)[..., 0])


def test_quantize_rows_matches_reference() -> None:
    # the quantizer is plain numba (no VNNI needed): the same int8 values and scales
    x, _, _ = _case(_rng("quant"), 17, 203, 1)
    x[4] = 0.0
    x[5, 7] = -np.abs(x[5]).max() * 2  # a row whose max |x| is negative
    xq = np.zeros((18, 204), dtype=np.uint8)
    rs = np.zeros(18, dtype=np.float32)
    QH.quantize_rows(x, xq, rs)
    q, want_rs = R.quantize_rows(x)
    np.testing.assert_array_equal(xq[:17, :203].astype(np.int64) - 128, q)
    np.testing.assert_array_equal(rs[:17], want_rs)
    assert q.min() >= -127 and q.max() <= 127 and q[5, 7] == -127


def test_pack_rejects_wrong_inputs() -> None:
    w = np.zeros((8, 5), dtype=np.int8)
    with pytest.raises(ValueError, match="int8"):
        QH.pack(w.astype(np.float32), np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"\(5,\) column scales"):
        QH.pack(w, np.ones(4, np.float32))


@pytest.mark.parametrize(("m", "k", "n"), [(37, 70, 20), (64, 33, 130), (200, 96, 64), (5, 8, 48)])
@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_gemm_gives_the_same_bits(m: int, k: int, n: int, threads: int) -> None:
    # rows split over threads: every tile computed as the serial kernel computes it
    rng = np.random.default_rng(m * 1000 + n)
    x = rng.standard_normal((m, k)).astype(np.float32)
    wq = rng.integers(-127, 128, (k, n)).astype(np.int8)
    w = QH.pack(wq, (rng.random(n) * 0.01).astype(np.float32))
    serial, split = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
    xq, rs = QH.hybrid_scratch(m, w)
    QH.hybrid_gemm(x, w, serial, xq, rs)
    QH.hybrid_gemm(x, w, split, xq, rs, threads=threads)
    assert np.array_equal(serial, split)
    np.testing.assert_allclose(split, R.hybrid_gemm(x, wq, w.scale[:n]), rtol=1e-6, atol=0)
