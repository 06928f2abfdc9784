"""merge_inputs against numpy's own concatenation: every dtype, layout and padding."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from service.batching.merge import merge_inputs
from service.batching.queue import Batch


def _batch(arrays: list[np.ndarray], padded: int, cut: tuple[int, int] | None = None) -> Batch:
    parts: list[tuple[Any, int, int]] = []
    for a in arrays:
        parts.append((SimpleNamespace(feeds={"x": a}, rows=a.shape[0]), 0, a.shape[0]))
    if cut is not None:  # the first request contributes only rows [start, stop)
        t = parts[0][0]
        parts[0] = (t, *cut)
    rows = sum(stop - start for _, start, stop in parts)
    return Batch(key=("x",), parts=parts, rows=rows, padded=padded)  # type: ignore[arg-type]


def _expected(b: Batch) -> np.ndarray:
    whole = np.concatenate([t.feeds["x"][start:stop] for t, start, stop in b.parts])
    pad = np.repeat(whole[-1:], b.padded - b.rows, axis=0)
    return np.concatenate([whole, pad])


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "int64", "bool", "uint16"])
def test_merged_rows_and_padding_are_numpys(dtype: str) -> None:
    rng = np.random.default_rng(3)
    arrays = [(rng.standard_normal((n, 5, 7)) * 50).astype(dtype) for n in (1, 3, 2)]
    b = _batch(arrays, padded=8)
    got = merge_inputs(b, ["x"], pad_variable=False)["x"]
    np.testing.assert_array_equal(got, _expected(b))
    assert got.dtype == np.dtype(dtype)


def test_non_contiguous_and_partial_requests_merge_like_numpy() -> None:
    rng = np.random.default_rng(4)
    base = rng.standard_normal((6, 4, 10)).astype(np.float32)
    strided = base[:, :, ::2]  # not C-contiguous: numpy's copy path
    readonly = np.frombuffer(rng.standard_normal(12).astype(np.float32).tobytes(),
                             np.float32).reshape(3, 4, 1).repeat(5, axis=2)
    b = _batch([strided, readonly], padded=8, cut=(2, 5))
    got = merge_inputs(b, ["x"], pad_variable=False)["x"]
    np.testing.assert_array_equal(got, _expected(b))


def test_strings_merge_like_numpy() -> None:
    arrays = [np.array([[b"a", b"bc"]], dtype=object), np.array([[b"", b"d"]] * 2, dtype=object)]
    b = _batch(arrays, padded=4)
    got = merge_inputs(b, ["x"], pad_variable=False)["x"]
    assert got.tolist() == _expected(b).tolist()
