"""The conversion report's measurements: sizes, output differences, top-1 agreement, speed."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.importers import find_foreign_file
from engine.model import Model

__all__ = ["compare_outputs", "feeds_from_npz", "random_feeds", "sizes", "speed", "take_batch"]


def _file_bytes(model: Model) -> int:
    """The weights file(s) of a saved version; for a foreign one (model.onnx, .keras, .h5,
    .tflite: weights and graph in one file), that file."""
    assert model.path is not None
    path = Path(model.path)
    if path.is_file():
        return path.stat().st_size
    saved = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    if saved:
        return saved
    foreign = find_foreign_file(path)
    return foreign.stat().st_size if foreign is not None else 0


def sizes(before: Model, after: Model) -> dict[str, Any]:
    """Bytes of the weights file(s) and of the loaded model's constants, before and after."""
    out: dict[str, Any] = {}
    for key, b, a in (("weights_file_bytes", _file_bytes(before), _file_bytes(after)),
                      ("in_memory_weight_bytes", before.weights_nbytes, after.weights_nbytes)):
        out[key] = {"before": b, "after": a, "ratio": round(a / b, 4) if b else None}
    return out


def feeds_from_npz(path: str | Path, model: Model) -> dict[str, np.ndarray]:
    """Arrays keyed by the default signature's input aliases; a file holding a single array
    feeds a single-input signature whatever its key."""
    sig = model.signature()
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    if len(arrays) == 1 and len(sig.inputs) == 1:
        ((_, arr),) = arrays.items()
        return {next(iter(sig.inputs)): arr}
    missing = sorted(set(sig.inputs) - set(arrays))
    if missing:
        raise ValueError(f"{path}: needs arrays named {sorted(sig.inputs)} (the signature's "
                         f"inputs); missing {missing}, found {sorted(arrays)}")
    return {k: arrays[k] for k in sig.inputs}


def random_feeds(model: Model, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard normal inputs of the signature's shapes (dynamic dims: n, then 1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for alias, spec in model.signature().inputs.items():
        shape = [n if i == 0 and d is None else (d or 1) for i, d in enumerate(spec.shape)]
        feeds[alias] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def take_batch(feeds: Mapping[str, np.ndarray], start: int, size: int) -> dict[str, np.ndarray]:
    """Rows [start, start + size) of every feed, wrapping around (a batch of any size)."""
    out = {}
    for k, v in feeds.items():
        idx = (start + np.arange(size)) % v.shape[0]
        out[k] = np.ascontiguousarray(v[idx])
    return out


def _run_all(model: Model, feeds: Mapping[str, np.ndarray], batch: int = 64
             ) -> dict[str, np.ndarray]:
    n = next(iter(feeds.values())).shape[0]
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, batch):
        size = min(batch, n - start)
        for k, v in model.run(take_batch(feeds, start, size)).items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def compare_outputs(before: Model, after: Model, feeds: Mapping[str, np.ndarray]
                    ) -> dict[str, Any]:
    """Per output alias: max / mean |after - before|, and top-1 agreement for classifiers
    (rank-2 outputs with more than one class)."""
    ya, yb = _run_all(before, feeds), _run_all(after, feeds)
    out: dict[str, Any] = {}
    for alias, a in ya.items():
        b = yb[alias].astype(np.float64)
        diff = np.abs(b - a.astype(np.float64))
        entry: dict[str, Any] = {"max_abs_diff": float(diff.max()) if diff.size else 0.0,
                                 "mean_abs_diff": float(diff.mean()) if diff.size else 0.0}
        if a.ndim == 2 and a.shape[1] > 1:
            entry["top1_agreement"] = float(np.mean(a.argmax(1) == b.argmax(1)))
        out[alias] = entry
    return out


def _median_ms(model: Model, feeds: Mapping[str, np.ndarray], repeats: int) -> float:
    model.run(feeds)  # plan + compile outside the timing
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.run(feeds)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def speed(before: Model, after: Model, feeds: Mapping[str, np.ndarray],
          batches: tuple[int, ...] = (1, 32), repeats: int = 7) -> dict[str, Any]:
    """Median ms per run of both models at each batch size, interleaved in one process."""
    out: dict[str, Any] = {}
    for size in batches:
        batch = take_batch(feeds, 0, size)
        t_before = _median_ms(before, batch, repeats)
        t_after = _median_ms(after, batch, repeats)
        t_before = min(t_before, _median_ms(before, batch, repeats))  # both measured twice,
        t_after = min(t_after, _median_ms(after, batch, repeats))  # alternating, for noise
        out[f"batch_{size}"] = {"float_ms": round(t_before, 4), "converted_ms": round(t_after, 4),
                                "speedup": round(t_before / t_after, 3) if t_after else None}
    return out
