"""DenseW8 with ``compute="int8"`` and DenseW8Packed: TF Lite's dynamic-range hybrid arithmetic.

Rows of x (every leading dim flattened) are quantized per row into the plan's scratch,
multiplied by the packed int8 weight (engine.kernels.quant_hybrid: AVX-512 VNNI, else its
portable kernel, same results), then bias and the activation as Dense.

DenseW8Packed (what engine.passes.pack makes of a DenseW8 with constant weights) carries the
packed weight as its inputs: the kernel reads the graph's arrays in place, so the model holds
one copy of each weight. DenseW8 with ``compute="int8"`` (bindings/quant.py calls
``prepare_dense_w8_int8``) is what runs when that pass did not: a constant weight is packed
once and shared by every plan through ``_PACKED``, keyed by the constant arrays themselves
(about K * N bytes besides the graph's int8 weight); a weight fed at run time is packed in
each run.

Packed arrays are made read-only wherever they come from, as graph constants are: numba
compiles one kernel per (read-only, writable) combination, so both ops share one set.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.executor.binding import Prepared, bind
from engine.executor.bindings import conv as CB
from engine.ir.graph import TensorType
from engine.kernels import quant_hybrid as QH
from engine.kernels.activations import activation_code
from engine.kernels.dense import dense_epilogue

__all__ = ["prepare_dense_w8_int8", "packed_weight", "pack_frozen", "packed_source",
           "hybrid_threads"]

Arrays = Sequence[np.ndarray]
_F32 = np.float32

# (id(w), id(scale)) -> (weakref w, weakref scale, packed); an entry goes when w does
_PACKED: dict[tuple[int, int], tuple[Any, Any, QH.HybridWeight]] = {}
_LOCK = threading.Lock()


def _frozen(w: QH.HybridWeight) -> QH.HybridWeight:
    for arr in (w.data, w.colsum, w.scale):
        arr.flags.writeable = False
    return w


def _read_only(arr: np.ndarray, dtype: type) -> np.ndarray:
    view: np.ndarray = np.ascontiguousarray(arr, dtype).view()
    view.flags.writeable = False
    return view


def hybrid_threads(macs: int) -> int:
    """Threads for a hybrid GEMM of ``macs`` multiply-adds: the float convs' rule (engine
    threads above ``CONV_PAR_MIN_FMA``), with a threshold 4x higher since int8 runs at ~4x
    the float rate: the same time before a thread's wake-up pays."""
    return CB._threads() if macs >= 4 * CB.CONV_PAR_MIN_FMA else 1


def pack_frozen(w: np.ndarray, scale: np.ndarray) -> QH.HybridWeight:
    """``QH.pack`` of a (K, N) weight (a conv's flattened to it), its arrays read-only: numba
    compiles one GEMM per (read-only, writable) combination, and graph constants are
    read-only, so every caller hands the kernels read-only arrays."""
    return _frozen(QH.pack(np.ascontiguousarray(w, np.int8),
                           np.ascontiguousarray(scale, _F32).reshape(-1)))


def packed_source(attrs: Mapping[str, Any],
                  consts: Sequence[np.ndarray | None]) -> Callable[[Arrays], QH.HybridWeight]:
    """The weight of a packed op (inputs 1-3: data, colsum, scale; attrs k, n, mr, nr) as
    read-only views, no copy: built once when all three are constants (the graph's arrays
    stay the only copy), else per run from the inputs."""
    k, n, mr, nr = (int(attrs[key]) for key in ("k", "n", "mr", "nr"))

    def wrap(data: np.ndarray, colsum: np.ndarray, scale: np.ndarray) -> QH.HybridWeight:
        # the kernels index these without bounds checks: C order, the schema's shapes
        return QH.HybridWeight(_read_only(data, np.int32), _read_only(colsum, np.int32),
                               _read_only(scale, _F32), k, n, mr, nr)

    parts = consts[1:4]
    if all(p is not None for p in parts):
        fixed = wrap(*parts)  # type: ignore[arg-type]
        return lambda ins: fixed
    return lambda ins: wrap(*(p if p is not None else ins[i + 1] for i, p in enumerate(parts)))


def packed_weight(w: np.ndarray, scale: np.ndarray) -> QH.HybridWeight:
    """``QH.pack(w, scale)`` of two graph constants, packed once per pair of arrays."""
    key = (id(w), id(scale))
    with _LOCK:
        hit = _PACKED.get(key)
        if hit is not None and hit[0]() is w and hit[1]() is scale:
            return hit[2]
    packed = pack_frozen(w, scale)
    with _LOCK:
        _PACKED[key] = (weakref.ref(w), weakref.ref(scale), packed)
    weakref.finalize(w, _PACKED.pop, key, None)
    return packed


def _size(shape: Sequence[int | None]) -> int:
    out = 1
    for d in shape:
        out *= int(d or 0)
    return out


def _scratch(rows: int, k: int, mr: int) -> tuple[tuple[tuple[int, ...], str], ...]:
    # hybrid_scratch's shapes for a weight packed with tile rows ``mr``: the kernel runs
    # tiles of min(mr, rows) rows and may read (not use) rows up to the last tile's end
    tile = min(mr, max(rows, 1))
    mpad = -(-rows // tile) * tile
    return (((mpad, -(-k // 4) * 4), "uint8"), ((mpad,), "float32"))


def _hybrid(rows: int, k: int, units: int, attrs: Mapping[str, Any],
            weight: Callable[[Arrays], QH.HybridWeight], bias_at: int | None,
            b_const: np.ndarray | None, mr: int) -> Prepared:
    """The run shared by both ops: ``weight(ins)`` gives the packed weight, the bias is
    ``b_const`` or input ``bias_at``."""
    code = activation_code(str(attrs["activation"]))
    alpha = float(attrs["alpha"])
    if bias_at is None:
        b_const = np.zeros(units, dtype=_F32)
    at = bias_at or 0  # read only when the bias is a runtime input
    threads = hybrid_threads(rows * k * units)

    def run(ins: Arrays, outs: Arrays, scr: Arrays) -> None:
        y = outs[0].reshape(rows, units)
        if rows == 0:
            return
        b = b_const if b_const is not None else np.ascontiguousarray(ins[at], _F32).reshape(-1)
        x = np.ascontiguousarray(ins[0], _F32).reshape(rows, k)
        QH.hybrid_gemm(x, weight(ins), y, scr[0], scr[1], threads)
        dense_epilogue(y, b, code, alpha)

    return Prepared(run, _scratch(rows, k, mr))


def _const_bias(in_types: Sequence[TensorType], consts: Sequence[np.ndarray | None],
                at: int) -> tuple[int | None, np.ndarray | None]:
    if len(in_types) <= at:
        return None, None
    c = consts[at]
    return at, None if c is None else np.ascontiguousarray(c, _F32).reshape(-1)


def prepare_dense_w8_int8(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                          out_types: Sequence[TensorType],
                          consts: Sequence[np.ndarray | None]) -> Prepared:
    k, units = int(in_types[1].shape[0] or 0), int(in_types[1].shape[1] or 0)
    rows = _size(in_types[0].shape[:-1])
    w_const, s_const = consts[1], consts[2]
    packed: QH.HybridWeight | None = None
    if w_const is not None and s_const is not None:
        packed = packed_weight(w_const, s_const)

    def weight(ins: Arrays) -> QH.HybridWeight:
        if packed is not None:
            return packed
        return pack_frozen(w_const if w_const is not None else ins[1],
                     s_const if s_const is not None else ins[2])

    bias_at, b_const = _const_bias(in_types, consts, 3)
    return _hybrid(rows, k, units, attrs, weight, bias_at, b_const,
                   QH.hybrid_tile_shape(units)[0])


@bind("DenseW8Packed")
def _prepare_dense_w8_packed(attrs: Mapping[str, Any], in_types: Sequence[TensorType],
                             out_types: Sequence[TensorType],
                             consts: Sequence[np.ndarray | None]) -> Prepared:
    k, n, mr = (int(attrs[key]) for key in ("k", "n", "mr"))
    rows = _size(in_types[0].shape[:-1])
    bias_at, b_const = _const_bias(in_types, consts, 4)
    return _hybrid(rows, k, n, attrs, packed_source(attrs, consts), bias_at, b_const, mr)
