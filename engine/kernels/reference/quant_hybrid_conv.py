"""Reference hybrid int8 Conv2D (numpy): Conv2DW8 with ``compute="int8"``, one group.

TF Lite's dynamic-range conv, in the engine kernel's order so the two agree to float32
rounding: each image quantized with one symmetric scale (engine.kernels.reference.
quant_hybrid's row quantization, one row = one whole image), exact int64 sums of q * w over
each output pixel's window (padding is q = 0), ``float32(sum) * float32(img_scale *
w_scale[o])``, then ``+ bias`` in float32 and the activation (float64, rounded to float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.kernels.reference.activations import activation
from engine.kernels.reference.quant_hybrid import quantize_rows

__all__ = ["quantize_images", "conv2d_w8_int8"]

_F32 = np.float32


def quantize_images(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q int64 (N, H, W, C) in [-127, 127], img_scale float32 (N,) = max|x[n]| / 127)."""
    x = np.asarray(x, dtype=_F32)
    q, scale = quantize_rows(x.reshape(x.shape[0], -1))
    return q.reshape(x.shape), scale


def conv2d_w8_int8(
    x: np.ndarray,
    w: np.ndarray,
    w_scale: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Sequence[int] = (1, 1),
    dilations: Sequence[int] = (1, 1),
    pads: Sequence[int] = (0, 0, 0, 0),
    activation_name: str = "linear",
    alpha: float = 0.2,
) -> np.ndarray:
    """x float32 NHWC, w int8 (KH, KW, C, O), w_scale float32 (O,) -> float32 NHWC."""
    q, img_scale = quantize_images(x)
    n, h, wd, c = q.shape
    kh, kw, cw, o = w.shape
    assert cw == c, f"one group only: weight C {cw} vs input C {c}"
    sh, sw = strides
    dh, dw = dilations
    pt, pb, pl, pr = pads
    qp = np.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=np.int64)
    qp[:, pt:pt + h, pl:pl + wd, :] = q
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    # acc[n, oy, ox, o] = sum over taps (i, j) of the window's pixel times w[i, j]
    acc = np.zeros((n, oh, ow, o), dtype=np.int64)
    w64 = np.asarray(w, dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            win = qp[:, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                     j * dw:j * dw + (ow - 1) * sw + 1:sw, :]
            acc += np.einsum("nyxc,co->nyxo", win, w64[i, j])
    scale = (img_scale[:, None] * np.asarray(w_scale, dtype=_F32)[None, :]).astype(_F32)
    y = acc.astype(_F32) * scale[:, None, None, :]
    if bias is not None:
        y = (y + np.asarray(bias, dtype=_F32)).astype(_F32)
    return activation(y, activation_name, alpha).astype(_F32)
