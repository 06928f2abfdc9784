"""Fixtures for the PyTorch -> ONNX -> engine conformance tests (test_torch_onnx.py).

The models and their export live in benchmarks/imported_models.py (the benchmark times the same
files); this module adds what the tests share: one export per model per session, one engine
load per model (a failed load is remembered and re-raised, not retried per case), one
onnxruntime session per model as the reference, and the error measure.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engine
from benchmarks.imported_models import EXPORTS, export

__all__ = ["exported_fixture", "loaded_fixture", "reference_fixture", "rel_error", "version_dir"]

pytest.importorskip("torch")
pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")


def rel_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """max |ours - ref| over the whole output, divided by max |ref| (floored at 1e-6): a
    relative error on the output's own scale, so near-zero elements (logits, post-LayerNorm
    activations cross zero) do not blow it up the way an elementwise ratio would."""
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    return float(diff.max()) / max(float(np.abs(ref).max()), 1e-6)


@pytest.fixture(scope="session", name="exported")
def exported_fixture(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """name -> the model's .onnx file, exported on first use (exports take seconds)."""
    root = tmp_path_factory.mktemp("torch_onnx")

    def get(name: str) -> Path:
        return export(EXPORTS[name], root)

    return get


@pytest.fixture(scope="session", name="loaded")
def loaded_fixture(exported: Callable[[str], Path]) -> Callable[[str], engine.Model]:
    """name -> engine.load(the .onnx file), once per session."""
    cache: dict[str, engine.Model | BaseException] = {}

    def get(name: str) -> engine.Model:
        if name not in cache:
            try:
                cache[name] = engine.load(exported(name))
            except Exception as exc:  # every case of this model fails with the same error
                cache[name] = exc
        got = cache[name]
        if isinstance(got, BaseException):
            raise got
        return got

    return get


@pytest.fixture(scope="session", name="reference")
def reference_fixture(exported: Callable[[str], Path]) -> Callable[[str], Any]:
    """name -> an onnxruntime session on the same file, graph optimizations off so the
    reference is the ops' plain semantics (no fused kernels with their own rounding)."""
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.intra_op_num_threads = 1
            cache[name] = ort.InferenceSession(str(exported(name)), so,
                                               providers=["CPUExecutionProvider"])
        return cache[name]

    return get


def version_dir(file: Path, root: Path, model: str) -> Path:
    """A model repository entry ``root/model/1/model.onnx`` holding ``file``."""
    target = root / model / "1"
    target.mkdir(parents=True)
    shutil.copyfile(file, target / "model.onnx")
    return target
