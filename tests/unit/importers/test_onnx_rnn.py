"""ONNX LSTM, GRU and RNN (directions, layouts, initial states, output subsets) and an LSTM
classifier exported by torch, through our importer vs onnxruntime.

Tolerance: float32, 1e-4 relative and 1e-5 absolute (``RTOL``/``ATOL``), at batch sizes 1 and
3 of a dynamic batch axis (and two sequence lengths for the torch model).
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnx.reference import ReferenceEvaluator

from engine.errors import UnsupportedOpError
from tests.unit.importers.test_onnx_util import assert_matches, engine_model, make_model, vi

RTOL, ATOL = 1e-4, 1e-5
BATCHES = (1, 3)
T, F, U = 5, 4, 3
rng = np.random.default_rng(0)


def _f32(*shape: int, scale: float = 0.5) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _rnn_model(op: str, gates: int, direction: str, layout: int, outputs: list[str],
               init: str, extra: dict[str, int] | None = None) -> onnx.ModelProto:
    """One LSTM/GRU node; ``init``: which initial states are graph inputs ('', 'h', 'hc',
    'c')."""
    d = 2 if direction == "bidirectional" else 1
    inits = {"W": _f32(d, gates * U, F), "R": _f32(d, gates * U, U),
             "B": _f32(d, 2 * gates * U)}
    x_shape = ["T", "N", F] if layout == 0 else ["N", "T", F]
    state_shape = [d, "N", U] if layout == 0 else ["N", d, U]
    inputs = [vi("x", np.float32, x_shape)]
    names = ["x", "W", "R", "B", "", "", ""]
    if "h" in init:
        names[5] = "h0"
        inputs.append(vi("h0", np.float32, state_shape))
    if "c" in init:
        names[6] = "c0"
        inputs.append(vi("c0", np.float32, state_shape))
    n_out = 3 if op == "LSTM" else 2
    outs = [o if o in outputs else "" for o in ("Y", "Y_h", "Y_c")[:n_out]]
    while outs and not outs[-1]:
        outs.pop()
    y_rank = {"Y": 4, "Y_h": 3, "Y_c": 3}
    while not names[-1]:
        names.pop()
    node = helper.make_node(op, names, outs,
                            hidden_size=U, direction=direction, layout=layout, **(extra or {}))
    out_vis = [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT,
                                             [f"{o}{i}" for i in range(y_rank[o])])
               for o in outs if o]
    return make_model([node], inputs, out_vis, inits)


def _feeds(model: onnx.ModelProto, batch: int, layout: int, steps: int = T
           ) -> dict[str, np.ndarray]:
    feeds = {}
    for inp in model.graph.input:
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        shape = [batch if d == "N" else steps if d == "T" else int(d) for d in dims]
        feeds[inp.name] = _f32(*shape, scale=1.0)
    return feeds


def _check(model: onnx.ModelProto, layout: int) -> None:
    """vs onnxruntime; layout 1 (batch-major) vs ONNX's reference evaluator, which
    onnxruntime's CPU LSTM/GRU kernels refuse."""
    ours = engine_model(model)
    for n in BATCHES:
        feeds = _feeds(model, n, layout)
        if layout == 0:
            assert_matches(model, feeds, ours, rtol=RTOL, atol=ATOL)
            continue
        want = ReferenceEvaluator(model).run(None, feeds)
        got = ours.run(feeds)
        for out, expected in zip(model.graph.output, want, strict=True):
            assert got[out.name].shape == expected.shape
            np.testing.assert_allclose(got[out.name], expected, rtol=RTOL, atol=ATOL)


DIRECTIONS = ["forward", "reverse", "bidirectional"]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("init", ["", "hc", "c"])
def test_lstm(direction: str, layout: int, init: str) -> None:
    _check(_rnn_model("LSTM", 4, direction, layout, ["Y", "Y_h", "Y_c"], init), layout)


@pytest.mark.parametrize("outputs", [["Y"], ["Y_h"], ["Y_c"], ["Y", "Y_c"]])
def test_lstm_output_subsets(outputs: list[str]) -> None:
    _check(_rnn_model("LSTM", 4, "bidirectional", 0, outputs, "h"), 0)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru(direction: str, layout: int, linear_before_reset: int) -> None:
    model = _rnn_model("GRU", 3, direction, layout, ["Y", "Y_h"], "h" if layout else "",
                       {"linear_before_reset": linear_before_reset})
    _check(model, layout)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("layout", [0, 1])
def test_rnn(direction: str, layout: int) -> None:
    """Plain RNN (run as a GRU with saturated gates: within float32 tolerance)."""
    _check(_rnn_model("RNN", 1, direction, layout, ["Y", "Y_h"], "h"), layout)


def test_unsupported_attributes_reported() -> None:
    model = _rnn_model("LSTM", 4, "forward", 0, ["Y"], "", {"input_forget": 1})
    model.graph.node[0].attribute.append(helper.make_attribute("clip", 3.0))
    with pytest.raises(UnsupportedOpError) as err:
        engine_model(model)
    assert "input_forget" in str(err.value) and "clip" in str(err.value)


class _Classifier(torch.nn.Module):
    """Two stacked bidirectional LSTM layers over (N, T, F), last step -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = torch.nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        return torch.softmax(self.fc(y[:, -1]), dim=-1)


class _GruTagger(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(8, 12, batch_first=True)
        self.fc = torch.nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gru(x)[0])


@pytest.mark.filterwarnings("ignore")  # the legacy exporter's deprecation/tracer warnings
@pytest.mark.parametrize("net", [_Classifier, _GruTagger])
def test_torch_recurrent_models(net: type[torch.nn.Module]) -> None:
    torch.manual_seed(0)
    module = net().eval()
    buf = io.BytesIO()
    torch.onnx.export(module, (torch.randn(2, 7, 8),), buf, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N", 1: "T"},
                                                        "y": {0: "N"}},
                      opset_version=17, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    ours = engine_model(model)
    for n in BATCHES:
        for steps in (7, 11):
            x = rng.standard_normal((n, steps, 8)).astype(np.float32)
            assert_matches(model, {"x": x}, ours, rtol=RTOL, atol=ATOL)
