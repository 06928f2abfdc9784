"""The benchmark's models, built small: our engine, onnxruntime and plain numpy must agree.

The benchmark (benchmarks/engine_vs_onnxruntime.py) compares timings of the two twins of each
model; these tests keep the twins honest: same weights, same semantics, same outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import engine  # noqa: E402
from benchmarks import models  # noqa: E402
from benchmarks.twin import TwinModel, reference_run  # noqa: E402

SMALL: dict[str, Callable[[], TwinModel]] = {
    "seed": lambda: models.seed_cnn(size=20),
    "seed_conv1x1": lambda: models.seed_cnn(size=20, dense4="conv"),
    "mlp": lambda: models.mlp(sizes=(32, 24, 24, 5)),
    "lstm": lambda: models.lstm(features=6, units=8, steps=7),
    "resnet": lambda: models.resnet(size=12, stem=4, channels=(4, 8, 8, 12)),
    "bert": lambda: models.bert(hidden=24, heads=4, seq=6, ffn=40, layers=2),
    "bert_erf": lambda: models.bert(hidden=24, heads=4, seq=6, ffn=40, layers=1, gelu="erf"),
}
BATCH = 3


def _ort(tm: TwinModel, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(tm.onnx_model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return tm.from_onnx(sess.run([tm.onnx_output], {tm.onnx_input: tm.to_onnx(x)})[0])


def _close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    assert got.shape == want.shape
    scale = float(np.max(np.abs(want)))
    assert scale > 1e-3, "degenerate model output"
    err = float(np.max(np.abs(got.astype(np.float64) - want)))
    assert err <= rtol * scale, f"max abs diff {err:.3g} vs output magnitude {scale:.3g}"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_onnx_twin_matches_numpy_reference(name: str) -> None:
    tm = SMALL[name]()
    x = tm.example(BATCH)
    want = reference_run(tm.graph, {tm.input_name: x})[tm.output_name]
    _close(_ort(tm, x), want, 1e-4)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_engine_matches_onnxruntime(name: str) -> None:
    tm = SMALL[name]()
    model = engine.compile_graph(tm.graph)
    for batch in (1, BATCH):
        x = tm.example(batch, seed=batch)
        got = model.run({tm.input_name: x})[tm.output_name]
        _close(got, _ort(tm, x), 1e-4)


def test_benchmark_list_names_every_builder() -> None:
    assert set(models.BENCHMARKS) == {"seed", "mlp", "lstm", "resnet", "bert"}
    seed = models.seed_cnn()
    assert seed.graph.type_of(seed.input_name).shape == (None, 32, 32, 3)
    # Keras semantics: Dense on the rank-4 tensor, no Flatten
    assert seed.graph.nodes[-1].op == "Dense"
