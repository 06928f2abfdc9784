"""Loading model.onnx through engine.load, and the one message listing every problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import engine
from engine.errors import UnsupportedOpError
from tests.unit.importers.test_onnx_util import ort_run, vi

n = helper.make_node
F32 = np.float32


def _model(nodes: list[onnx.NodeProto], opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [vi("x", F32, ["N", 4])], [vi("y", F32, ["N", 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_version_dir_and_file_load(tmp_path: Path) -> None:
    m = _model([n("Relu", ["x"], ["r"]), n("Softmax", ["r"], ["y"])])
    m.ir_version = 9
    (tmp_path / "1").mkdir()
    onnx.save(m, tmp_path / "1" / "model.onnx")
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(F32)
    want = ort_run(m, {"x": x})[0]
    for path in (tmp_path / "1", tmp_path / "1" / "model.onnx"):
        model = engine.load(path)
        sig = model.signature("serving_default")
        assert list(sig.inputs) == ["x"] and list(sig.outputs) == ["y"]
        np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-6)


def test_every_problem_in_one_message(tmp_path: Path) -> None:
    nodes = [
        n("Relu", ["x"], ["a"], name="ok_relu"),
        n("NonMaxSuppression", ["a"], ["b"], name="nms"),  # unsupported op
        n("Gelu", ["b"], ["c"], name="bad_gelu", approximate="cubic"),  # bad attribute value
        n("LeakyRelu", ["c"], ["d"], name="bad_attr", alpha=0.1, beta=2.0),  # unknown attr
        n("TopK", ["d"], ["e"], name="topk"),  # unsupported op, after a failure
        n("Identity", ["e"], ["y"], name="id"),
    ]
    onnx.save(_model(nodes, opset=20), tmp_path / "model.onnx")
    with pytest.raises(UnsupportedOpError) as info:
        engine.load(tmp_path)
    msg = str(info.value)
    assert msg.count("\n  - ") == 4, msg
    assert "unsupported ops: NonMaxSuppression, TopK" in msg
    for needle in ("'nms' (NonMaxSuppression)", "'bad_gelu' (Gelu): attribute approximate='cubic'",
                   "'bad_attr' (LeakyRelu): attribute 'beta'", "'topk' (TopK)"):
        assert needle in msg, (needle, msg)
    assert "ok_relu" not in msg and "'id'" not in msg


def test_old_opset_is_refused(tmp_path: Path) -> None:
    onnx.save(_model([n("Relu", ["x"], ["y"])], opset=11), tmp_path / "model.onnx")
    with pytest.raises(UnsupportedOpError, match="opset 11 is not supported; expected >= 13"):
        engine.load(tmp_path)


def test_other_domain_and_runtime_parameter_are_reported(tmp_path: Path) -> None:
    nodes = [n("FusedGemm", ["x"], ["a"], name="ms", domain="com.microsoft"),
             n("Unsqueeze", ["x", "x"], ["u"], name="unsq"),
             n("Relu", ["x"], ["y"])]
    m = _model(nodes)
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(m, tmp_path / "model.onnx")
    with pytest.raises(UnsupportedOpError) as info:
        engine.load(tmp_path)
    msg = str(info.value)
    assert "'ms' (FusedGemm): op domain 'com.microsoft'" in msg
    assert "'unsq' (Unsqueeze): axes (input 1) must be a constant" in msg
