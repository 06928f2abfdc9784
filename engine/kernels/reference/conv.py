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


def _pool_out(size: int, k: int, stride: int, dilation: int, pad_a: int, pad_b: int,
              ceil_mode: bool) -> int:
    span = (k - 1) * dilation + 1
    if not ceil_mode:
        return (size + pad_a + pad_b - span) // stride + 1
    out = -(-(size + pad_a + pad_b - span) // stride) + 1
    return out - 1 if (out - 1) * stride >= size + pad_a else out


def _pool(x: np.ndarray, pool_size: Sequence[int], strides: Sequence[int], pads: Sequence[int],
          dilations: Sequence[int], ceil_mode: bool, kind: str) -> np.ndarray:
    """kind: max (over real pixels, -inf if none), avg (sum / real pixels), avg_pad (sum /
    taps inside the padded image)."""
    x = np.asarray(x, dtype=np.float64)
    n, h, w, c = x.shape
    kh, kw = pool_size
    sh, sw = strides
    dh, dw = dilations
    pt, pb, pl, pr = pads
    oh = _pool_out(h, kh, sh, dh, pt, pb, ceil_mode)
    ow = _pool_out(w, kw, sw, dw, pl, pr, ceil_mode)
    y = np.zeros((n, oh, ow, c))
    for oy in range(oh):
        for ox in range(ow):
            ys = [oy * sh - pt + i * dh for i in range(kh)]
            xs = [ox * sw - pl + j * dw for j in range(kw)]
            real_y = [v for v in ys if 0 <= v < h]
            real_x = [v for v in xs if 0 <= v < w]
            win = x[:, real_y][:, :, real_x].reshape(n, -1, c)
            if kind == "max":
                y[:, oy, ox] = win.max(axis=1) if win.shape[1] else -np.inf
                continue
            if kind == "avg":
                count = win.shape[1]
            else:
                count = (sum(v < h + pb for v in ys)) * (sum(v < w + pr for v in xs))
            y[:, oy, ox] = win.sum(axis=1) / count if count else 0.0
    return y


def max_pool2d(x: np.ndarray, pool_size: Sequence[int], strides: Sequence[int],
               pads: Sequence[int] = (0, 0, 0, 0), dilations: Sequence[int] = (1, 1),
               ceil_mode: bool = False) -> np.ndarray:
    """Max over the real pixels of each window (-inf if it holds none)."""
    return _pool(x, pool_size, strides, pads, dilations, ceil_mode, "max")


def avg_pool2d(x: np.ndarray, pool_size: Sequence[int], strides: Sequence[int],
               pads: Sequence[int] = (0, 0, 0, 0), count_include_pad: bool = False,
               dilations: Sequence[int] = (1, 1), ceil_mode: bool = False) -> np.ndarray:
    """Sum of each window over the real pixels count, or over its taps in the padded image."""
    kind = "avg_pad" if count_include_pad else "avg"
    return _pool(x, pool_size, strides, pads, dilations, ceil_mode, kind)


def global_avg_pool2d(x: np.ndarray, keepdims: bool = False) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).mean(axis=(1, 2), keepdims=keepdims)


def global_max_pool2d(x: np.ndarray, keepdims: bool = False) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).max(axis=(1, 2), keepdims=keepdims)
