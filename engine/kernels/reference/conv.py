"""Reference convolution and pooling (numpy, float64): direct loops over output pixels.

Slow and obviously correct; used only by tests. Images NHWC, conv weights
(KH, KW, C/groups, O), pads (top, bottom, left, right), as in ``engine.ir.schemas.conv``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.kernels.reference.activations import activation

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "global_max_pool2d"]


def _out_size(size: int, k: int, stride: int, dilation: int, pad_a: int, pad_b: int) -> int:
    return (size + pad_a + pad_b - ((k - 1) * dilation + 1)) // stride + 1


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Sequence[int] = (1, 1),
    dilations: Sequence[int] = (1, 1),
    pads: Sequence[int] = (0, 0, 0, 0),
    groups: int = 1,
    activation_name: str = "linear",
    alpha: float = 0.2,
) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, h, wd, c = x.shape
    kh, kw, cg, o = w.shape
    assert c == cg * groups and o % groups == 0
    og = o // groups
    sh, sw = strides
    dh, dw = dilations
    pt, pb, pl, pr = pads
    xp = np.zeros((n, h + pt + pb, wd + pl + pr, c))
    xp[:, pt:pt + h, pl:pl + wd, :] = x
    oh = _out_size(h, kh, sh, dh, pt, pb)
    ow = _out_size(wd, kw, sw, dw, pl, pr)
    y = np.zeros((n, oh, ow, o))
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                # the (KH, KW, C) window of input pixels under output pixel (oy, ox)
                ys = [oy * sh + i * dh for i in range(kh)]
                xs = [ox * sw + j * dw for j in range(kw)]
                win = xp[b][np.ix_(ys, xs)]
                for g in range(groups):
                    part = win[:, :, g * cg:(g + 1) * cg]
                    wg = w[:, :, :, g * og:(g + 1) * og]
                    y[b, oy, ox, g * og:(g + 1) * og] = np.einsum("ijc,ijco->o", part, wg)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return activation(y, activation_name, alpha)


def _windows(x: np.ndarray, pool_size: Sequence[int], strides: Sequence[int],
             pads: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Zero-padded input, its validity mask (False on padding) and the output size."""
    n, h, w, c = x.shape
    kh, kw = pool_size
    sh, sw = strides
    pt, pb, pl, pr = pads
    xp = np.zeros((n, h + pt + pb, w + pl + pr, c))
    xp[:, pt:pt + h, pl:pl + w, :] = x
    valid = np.zeros((h + pt + pb, w + pl + pr), dtype=bool)
    valid[pt:pt + h, pl:pl + w] = True
    return xp, valid, _out_size(h, kh, sh, 1, pt, pb), _out_size(w, kw, sw, 1, pl, pr)


def max_pool2d(x: np.ndarray, pool_size: Sequence[int], strides: Sequence[int],
               pads: Sequence[int] = (0, 0, 0, 0)) -> np.ndarray:
    """Max over the real pixels of each window (-inf if it holds none)."""
    x = np.asarray(x, dtype=np.float64)
    xp, valid, oh, ow = _windows(x, pool_size, strides, pads)
    kh, kw = pool_size
    sh, sw = strides
    y = np.full((x.shape[0], oh, ow, x.shape[3]), -np.inf)
    for oy in range(oh):
        for ox in range(ow):
            for i in range(kh):
                for j in range(kw):
                    iy, ix = oy * sh + i, ox * sw + j
                    if valid[iy, ix]:
                        y[:, oy, ox, :] = np.maximum(y[:, oy, ox, :], xp[:, iy, ix, :])
    return y


def avg_pool2d(x: np.ndarray, pool_size: Sequence[int], strides: Sequence[int],
               pads: Sequence[int] = (0, 0, 0, 0), count_include_pad: bool = False) -> np.ndarray:
    """Sum of each window over the real pixels count, or over the window size."""
    x = np.asarray(x, dtype=np.float64)
    xp, valid, oh, ow = _windows(x, pool_size, strides, pads)
    kh, kw = pool_size
    sh, sw = strides
    y = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for oy in range(oh):
        for ox in range(ow):
            total = np.zeros((x.shape[0], x.shape[3]))
            count = 0
            for i in range(kh):
                for j in range(kw):
                    iy, ix = oy * sh + i, ox * sw + j
                    total += xp[:, iy, ix, :]
                    count += int(valid[iy, ix])
            divisor = kh * kw if count_include_pad else count
            y[:, oy, ox, :] = total / divisor if divisor else 0.0
    return y


def global_avg_pool2d(x: np.ndarray, keepdims: bool = False) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).mean(axis=(1, 2), keepdims=keepdims)


def global_max_pool2d(x: np.ndarray, keepdims: bool = False) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).max(axis=(1, 2), keepdims=keepdims)
