"""Reference hybrid int8 GEMM (numpy): engine.kernels.quant_hybrid's arithmetic written out.

Per-row symmetric int8 quantization of the activations in float32, the integer product in
int64 (no offset trick: the signed values directly) and the float32 rescale, in the kernel's
order, so the kernel can be checked to float32 rounding of the final products.
"""

from __future__ import annotations

import numpy as np

from engine.kernels.reference.activations import activation

__all__ = ["quantize_rows", "hybrid_gemm", "dense_w8_int8"]

_F32 = np.float32


def quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q int8-valued int64 (M, K), row_scale float32 (M,)): q = rint(x * (127 / amax)),
    row_scale = amax / 127, an all-zero row giving q = 0 and scale 0."""
    x = np.asarray(x, dtype=_F32)
    amax = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0], _F32)
    safe = np.where(amax > 0, amax, _F32(1.0))
    inv = np.where(amax > 0, _F32(127.0) / safe, _F32(0.0)).astype(_F32)
    q = np.rint(x * inv[:, None]).astype(np.int64)
    return q, (amax / _F32(127.0)).astype(_F32)


def hybrid_gemm(x: np.ndarray, wq: np.ndarray, col_scale: np.ndarray) -> np.ndarray:
    """float32(q @ wq) * (row_scale * col_scale), the sums exact in int64."""
    q, rs = quantize_rows(x)
    acc = q @ np.asarray(wq, dtype=np.int64)
    scale = rs[:, None] * np.asarray(col_scale, dtype=_F32)[None, :]
    return (acc.astype(_F32) * scale.astype(_F32)).astype(_F32)


def dense_w8_int8(x: np.ndarray, wq: np.ndarray, w_scale: np.ndarray,
                  bias: np.ndarray | None = None, activation_name: str = "linear",
                  alpha: float = 0.2) -> np.ndarray:
    """DenseW8 with ``compute="int8"``: x (..., K) flattened to rows, ``hybrid_gemm``, then
    ``+ bias`` in float32 and the activation (computed in float64 on that float32 sum, as
    float32 at the end; exact for linear / relu)."""
    x = np.asarray(x, dtype=_F32)
    lead = x.shape[:-1]
    y = hybrid_gemm(x.reshape(-1, x.shape[-1]), wq, w_scale)
    if bias is not None:
        y = (y + np.asarray(bias, dtype=_F32)).astype(_F32)
    out = activation(y.astype(np.float64), activation_name, alpha).astype(_F32)
    return out.reshape(*lead, wq.shape[1])
