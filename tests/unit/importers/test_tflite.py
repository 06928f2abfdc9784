""".tflite import, float32 models: files made by TensorFlow's TFLiteConverter (in a subprocess,
once per session, by make_tflite.py), outputs compared with ai_edge_litert's Interpreter.

Tolerance for float32: rtol 1e-5 with atol 1e-6 (outputs are O(0.1..1); only the summation
order differs from the interpreter's XNNPACK kernels).
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.errors import ModelFormatError, UnsupportedOpError
from engine.importers.tflite import convert_model
from engine.importers.tflite_ops import same_pads
from engine.importers.tflite_read import TModel, TOperator, TTensor, read_tflite

FLOAT_TOL = {"rtol": 1e-5, "atol": 1e-6}
MAKE = Path(__file__).with_name("make_tflite.py")
NEEDS_TF = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None
    or importlib.util.find_spec("ai_edge_litert") is None,
    reason="making .tflite files needs tensorflow (TFLiteConverter) and ai-edge-litert "
           "(reference Interpreter): pip install numbaserve[importers]")


@functools.cache
def _generate(outdir: str) -> Path:
    # TensorFlow in its own process: slow to import, and it clashes with torch in one process
    proc = subprocess.run([sys.executable, str(MAKE), outdir], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"make_tflite.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(outdir)


@pytest.fixture(scope="session")
def tflite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated models; shared by every test_tflite*.py module (generated once)."""
    return _generate(str(tmp_path_factory.getbasetemp() / "tflite_models"))


def reference(d: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(d / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


@NEEDS_TF
@pytest.mark.parametrize("name", ["cnn", "mlp", "ops"])
def test_float_model_matches_interpreter(tflite_dir: Path, tmp_path: Path, name: str) -> None:
    version = tmp_path / name / "1"
    version.mkdir(parents=True)
    shutil.copy(tflite_dir / f"{name}.tflite", version / "model.tflite")
    model = engine.load(version)  # a version directory holding model.tflite
    ref = reference(tflite_dir, name)
    got = model.predict(ref["x"])
    assert got.dtype == np.float32 and got.shape == ref["y"].shape
    np.testing.assert_allclose(got, ref["y"], **FLOAT_TOL)
    # the batch stays dynamic: one row alone gives the same answer
    np.testing.assert_allclose(model.predict(ref["x"][1:2]), ref["y"][1:2], **FLOAT_TOL)


@NEEDS_TF
def test_float16_weights_are_widened_at_import(tflite_dir: Path) -> None:
    opcodes = [op.opcode for op in read_tflite((tflite_dir / "mlp_f16.tflite").read_bytes())
               .operators]
    assert "DEQUANTIZE" in opcodes  # float16 weights, widened by the interpreter at run time
    model = engine.load(tflite_dir / "mlp_f16.tflite")
    assert all(n.op != "Dequantize" for n in model.graph.nodes)  # ... and by us at import
    ref = reference(tflite_dir, "mlp_f16")
    np.testing.assert_allclose(model.predict(ref["x"]), ref["y"], **FLOAT_TOL)


@NEEDS_TF
def test_the_file_itself_loads_and_keeps_its_signature(tflite_dir: Path) -> None:
    model = engine.load(tflite_dir / "mlp.tflite")
    sig = model.signature("serving_default")  # the file's SignatureDef, with its aliases
    (alias, spec), = sig.inputs.items()
    assert alias.startswith("keras_tensor") and spec.shape == (None, 20)
    assert list(sig.outputs) == ["output_0"] and sig.outputs["output_0"].shape == (None, 4)
    ref = reference(tflite_dir, "mlp")
    out = model.run({alias: ref["x"]})["output_0"]
    np.testing.assert_allclose(out, ref["y"], **FLOAT_TOL)


@NEEDS_TF
def test_ops_model_covers_the_listed_builtins(tflite_dir: Path) -> None:
    wanted = {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D",
              "FULLY_CONNECTED", "ADD", "MUL", "RESHAPE", "SOFTMAX", "RELU6", "LOGISTIC", "TANH",
              "CONCATENATION", "MEAN", "PAD"}
    ops = {op.opcode for n in ("ops", "cnn", "mlp")
           for op in read_tflite((tflite_dir / f"{n}.tflite").read_bytes()).operators}
    assert wanted | {"RELU"} <= ops, sorted(wanted | {"RELU"} - ops)
    graph_ops = {n.op for n in engine.load(tflite_dir / "ops.tflite").graph.nodes}
    assert {"Conv2D", "MaxPool2D", "AvgPool2D", "Dense", "Softmax", "Sigmoid", "Tanh", "Concat",
            "ReduceMean", "Reshape"} <= graph_ops


@NEEDS_TF
def test_unsupported_builtins_fail_once_listing_all(tflite_dir: Path) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        engine.load(tflite_dir / "unsupported.tflite")
    msg = str(info.value)
    assert "cannot import 3 TF Lite" in msg
    for part in ("op 0 SIN", "op 1 CUMSUM", "op 2 STRIDED_SLICE", "output tensor"):
        assert part in msg


def _tensor(i: int, shape: tuple[int | None, ...], data: np.ndarray | None = None,
            ttype: str = "FLOAT32") -> TTensor:
    return TTensor(i, f"t{i}", ttype, shape, data)


def test_unsupported_options_are_listed_with_indices() -> None:
    """Option values no converter emits in our fixtures: hand-built records, same code path."""
    w = np.zeros((4, 3, 3, 2), np.float32)
    tensors = (
        _tensor(0, (None, 8, 8, 2)), _tensor(1, (4, 3, 3, 2), w), _tensor(2, (None, 6, 6, 4)),
        _tensor(3, (None, 6, 6, 4)), _tensor(4, (None, 3, 3, 4)), _tensor(5, (None, 3, 3, 4)),
        _tensor(6, (2,), np.zeros(2, np.int32), "INT32"), _tensor(7, (2,), None, "STRING"),
    )
    ops = (
        TOperator(0, "CONV_2D", 1, (0, 1, -1), (2,),
                  {"Padding": 1, "StrideH": 1, "StrideW": 1, "FusedActivationFunction": 5}),
        TOperator(1, "RELU", 1, (2,), (3,)),
        TOperator(2, "MAX_POOL_2D", 1, (3,), (4,),
                  {"Padding": 7, "FilterHeight": 2, "FilterWidth": 2, "StrideH": 2,
                   "StrideW": 2}),
        TOperator(3, "CUSTOM(MyOp)", 1, (4,), (5,)),
    )
    model = TModel(tensors, ops, (0,), (5,), (), "", 1)
    _, ctx = convert_model(model)
    assert len(ctx.problems) == 3, ctx.problems
    assert ctx.problems[0].startswith("op 0 CONV_2D (output tensor 2 't2')")
    assert "SIGN_BIT" in ctx.problems[0]
    assert ctx.problems[1].startswith("op 2 MAX_POOL_2D") and "padding 7" in ctx.problems[1]
    assert ctx.problems[2].startswith("op 3 CUSTOM(MyOp)")


def test_a_file_that_is_not_a_flatbuffer_is_a_format_error(tmp_path: Path) -> None:
    bad = tmp_path / "1"
    bad.mkdir()
    (bad / "model.tflite").write_bytes(b"\x00not a flatbuffer at all")
    with pytest.raises(ModelFormatError, match="model.tflite"):
        engine.load(bad)


@pytest.mark.parametrize(("size", "k", "s", "d", "pads"), [
    (16, 3, 2, 1, (0, 1)), (9, 3, 2, 1, (1, 1)), (8, 3, 1, 1, (1, 1)), (8, 3, 1, 2, (2, 2)),
    (7, 2, 2, 1, (0, 1)), (5, 1, 1, 1, (0, 0)), (4, 5, 3, 1, (2, 2)),
])
def test_same_padding_matches_tensorflows_rule(size: int, k: int, s: int, d: int,
                                               pads: tuple[int, int]) -> None:
    before, after = same_pads(size, k, s, d)
    assert (before, after) == pads
    span = (k - 1) * d + 1
    assert (size + before + after - span) // s + 1 == -(-size // s)  # out = ceil(in / stride)


@NEEDS_TF
def test_serving_a_tflite_file_needs_no_tensorflow_or_litert(tflite_dir: Path) -> None:
    code = (
        "import sys, numpy as np, engine\n"
        "assert 'tflite' not in sys.modules  # the importer loads only for .tflite files\n"
        f"m = engine.load({str(tflite_dir / 'cnn_int8.tflite')!r})\n"
        "m.predict(np.zeros((1, 32, 32, 3), np.int8))\n"
        "bad = [n for n in ('tensorflow', 'ai_edge_litert', 'tflite_runtime') "
        "if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).parents[3])
    assert proc.returncode == 0, proc.stderr[-2000:]
