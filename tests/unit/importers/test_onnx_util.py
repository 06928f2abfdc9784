"""Helpers for the ONNX importer tests: build a model with onnx.helper, run it through
onnxruntime (the reference) and through our engine, compare.

Tolerance for float32: 1e-5 relative, 1e-6 absolute (``RTOL``/``ATOL``), unless a test says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from engine.importers.onnx import convert_model
from engine.loader import compile_graph
from engine.model import Model

__all__ = ["RTOL", "ATOL", "make_model", "engine_model", "ort_run", "assert_matches", "vi"]

RTOL, ATOL = 1e-5, 1e-6


def vi(name: str, dtype: Any, shape: Sequence[int | str | None]) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return helper.make_tensor_value_info(name, elem, list(shape))


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes), "test", list(inputs), list(outputs),
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)  # what this onnxruntime reads
    onnx.checker.check_model(model, full_check=True)
    return model


def engine_model(model: onnx.ModelProto) -> Model:
    imported = convert_model(model)
    return compile_graph(imported.graph, imported.signatures)


def ort_run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(v) for v in sess.run(None, dict(feeds))]


def assert_matches(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    ours: Model | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> Model:
    """Our outputs equal onnxruntime's (dtype, shape, values within rtol/atol)."""
    ours = ours or engine_model(model)
    got = ours.run(dict(feeds))
    want = ort_run(model, feeds)
    for out, expected in zip(model.graph.output, want, strict=True):
        actual = got[out.name]
        assert actual.dtype == expected.dtype, (out.name, actual.dtype, expected.dtype)
        assert actual.shape == expected.shape, (out.name, actual.shape, expected.shape)
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=out.name)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=out.name)
    return ours
