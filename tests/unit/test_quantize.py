"""engine.convert on the bundled seed CNN: int8 / float16 weights and full int8, measured on
the sklearn digits test split the model was trained on (as tools/train_models.py builds it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import engine
from engine.quantize import REPORT_FILE, quantize_per_channel

SEED = Path(__file__).resolve().parents[2] / "models" / "seed_cnn" / "2"


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """tools/train_models.py's digits_images(): 8x8 -> 32x32x3 in [0, 1], the fixed split."""
    d = load_digits()
    x = np.kron(d.images.astype(np.float32) / 16.0, np.ones((1, 4, 4), np.float32))
    x = np.repeat(x[..., None], 3, axis=-1)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, random_state=0)
    return xtr, xte, ytr, yte


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    xtr, xte, _, yte = _digits()
    root = tmp_path_factory.mktemp("digits")
    np.savez(root / "cal.npz", input_1=xtr[:256])
    np.savez(root / "test.npz", input_1=xte)
    return {"root": root, "xte": xte, "yte": yte, "cal": root / "cal.npz",
            "test": root / "test.npz"}


def _top1(model: engine.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x)).argmax(1)


@pytest.mark.parametrize(("weights", "activations", "compute", "max_size_ratio"),
                         [("int8", "float32", None, 0.3), ("int8", "float32", "float32", 0.3),
                          ("float16", "float32", None, 0.55), ("int8", "int8", None, 0.3)])
def test_convert_seed_cnn(tmp_path: Path, data: dict[str, object], weights: str,
                          activations: str, compute: str | None, max_size_ratio: float) -> None:
    dest = tmp_path / "3"
    report = engine.convert(SEED, dest, weights=weights, activations=activations,
                            compute=compute,
                            calibration=data["cal"] if activations == "int8" else None,
                            samples=data["test"])
    # --weights int8 alone computes in int8 (TF Lite's dynamic range); else float32
    expect_compute = compute or ("int8" if (weights, activations) == ("int8", "float32")
                                 else "float32")
    assert report["compute"] == expect_compute
    saved = json.loads((dest / "model.json").read_text())
    w8 = [n for n in saved["graph"]["nodes"] if n["op"] in ("DenseW8", "Conv2DW8")]
    assert all(n["attrs"]["compute"] == expect_compute for n in w8)
    assert len(w8) == (5 if weights == "int8" and activations == "float32" else 0)
    before, after = engine.load(SEED), engine.load(dest)
    ops = {n.op for n in after.graph.nodes}
    expected = {("int8", "float32"): ({"Conv2DW8Packed", "DenseW8Packed"}
                                      if expect_compute == "int8" else {"Conv2DW8", "DenseW8"}),
                ("float16", "float32"): {"Conv2DF16", "DenseF16"},
                ("int8", "int8"): {"QConv2D", "QDense", "Quantize", "Dequantize"}}
    assert expected[(weights, activations)] <= ops and not ops & {"Conv2D", "Dense"}

    size_file = (dest / "weights.safetensors").stat().st_size
    size_src = (SEED / "weights.safetensors").stat().st_size
    assert size_file <= max_size_ratio * size_src
    assert after.weights_nbytes <= max_size_ratio * before.weights_nbytes

    xte, yte = data["xte"], data["yte"]
    assert isinstance(xte, np.ndarray) and isinstance(yte, np.ndarray)
    agree = float(np.mean(_top1(after, xte) == _top1(before, xte)))
    assert agree >= 0.99
    acc_before = float(np.mean(_top1(before, xte) == yte))
    acc_after = float(np.mean(_top1(after, xte) == yte))
    assert acc_after >= acc_before - 0.01

    on_disk = json.loads((dest / REPORT_FILE).read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["weights"] == weights and on_disk["activations"] == activations
    assert on_disk["size"]["weights_file_bytes"] == {
        "before": size_src, "after": size_file, "ratio": round(size_file / size_src, 4)}
    assert on_disk["size"]["in_memory_weight_bytes"]["after"] == after.weights_nbytes
    out = on_disk["outputs"]
    assert out["samples"] == len(xte) and str(data["test"]) in out["data"]
    assert out["dense_1"]["top1_agreement"] == pytest.approx(agree)
    # the report ran batches of 64: another plan, float32 sums in another order
    y0 = before.predict(xte).astype(np.float64)
    diff = np.abs(after.predict(xte).astype(np.float64) - y0)
    assert out["dense_1"]["max_abs_diff"] == pytest.approx(diff.max(), rel=1e-3, abs=1e-5)
    assert out["dense_1"]["mean_abs_diff"] == pytest.approx(diff.mean(), rel=1e-3, abs=1e-6)
    for key in ("batch_1", "batch_32"):
        s = on_disk["speed"][key]
        assert s["float_ms"] > 0 and s["converted_ms"] > 0 and s["speedup"] > 0
    # the warm-up requests of the source version travel with it
    if (SEED / "assets.extra").is_dir():
        for f in (SEED / "assets.extra").iterdir():
            assert (dest / "assets.extra" / f.name).read_bytes() == f.read_bytes()


def test_convert_without_data_says_inputs_were_random(tmp_path: Path) -> None:
    report = engine.convert(SEED, tmp_path / "3", weights="int8")
    assert "random" in report["outputs"]["data"]
    assert report["outputs"]["samples"] > 0


def test_convert_refuses_a_used_destination_and_leaves_nothing_behind(tmp_path: Path) -> None:
    dest = tmp_path / "3"
    dest.mkdir()
    (dest / "model.json").write_text("{}")
    with pytest.raises(FileExistsError, match="not empty"):
        engine.convert(SEED, dest, weights="int8")
    with pytest.raises(ValueError, match="calibration"):
        engine.convert(SEED, tmp_path / "4", weights="int8", activations="int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3"]


def test_per_channel_quantization_bounds_the_error() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 8, 16)).astype(np.float32) * rng.random(16).astype(np.float32)
    w[..., 5] = 0.0
    q, s = quantize_per_channel(w)
    assert q.dtype == np.int8 and s.shape == (16,) and np.abs(q).max() <= 127
    assert np.all(np.abs(q * s - w) <= s / 2 + 1e-7)
    assert np.all(q[..., 5] == 0)


def test_convert_an_onnx_version(tmp_path: Path) -> None:
    # A version that arrived as model.onnx: its file holds the weights, so the report's file
    # size compares with that file; the converted version is ours (model.json + safetensors).
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3
    fc = rng.standard_normal((16 * 6 * 6, 10)).astype(np.float32) * 0.05
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")])
    src = tmp_path / "m" / "1"
    src.mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(src / "model.onnx"))
    report = engine.convert(src, tmp_path / "m" / "2", weights="int8")
    files = report["size"]["weights_file_bytes"]
    assert files["before"] == (src / "model.onnx").stat().st_size
    assert files["after"] == (tmp_path / "m" / "2" / "weights.safetensors").stat().st_size
    assert files["ratio"] is not None and files["ratio"] < 0.5
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    before, after = engine.load(src), engine.load(tmp_path / "m" / "2")
    ref = np.asarray(before.predict(x))
    got = np.asarray(after.predict(x))
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()
