"""A mini transformer block with dynamic batch and sequence length, built with onnx.helper
the way PyTorch exports one (Shape -> Gather -> Unsqueeze -> Concat -> Reshape, MatMul with
batch dims, causal mask from Range, Softmax, LayerNormalization, Erf-GELU, Expand), run by our
engine at two batch sizes and two sequence lengths vs onnxruntime.

Tolerance: rtol 1e-5, atol 1e-5. The outputs are O(5) after ~20 float32 ops (two LayerNorms,
two residuals), so an element that cancels to ~1e-3 carries ~1e-6 of absolute rounding in
either engine; 1e-6 absolute would test summation order, not correctness. The mask uses -1e4,
not -inf, so no row is all masked."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from engine.passes.specialize import needs_specialize
from tests.unit.importers.test_onnx_util import assert_matches, engine_model, make_model, vi

D, H, FF = 16, 2, 32
HD = D // H


def _block() -> onnx.ModelProto:
    rng = np.random.default_rng(7)

    def w(*shape: int, scale: float = 0.3) -> np.ndarray:
        return (rng.normal(size=shape) * scale).astype(np.float32)

    inits = {
        "ln1_g": 1 + w(D), "ln1_b": w(D), "ln2_g": 1 + w(D), "ln2_b": w(D),
        "wq": w(D, D), "bq": w(D), "wk": w(D, D), "bk": w(D), "wv": w(D, D), "bv": w(D),
        "wo": w(D, D), "bo": w(D), "w1": w(D, FF), "b1": w(FF), "w2": w(FF, D), "b2": w(D),
        "pos": w(1, 1, D),
        "i0": np.array(0, np.int64), "i1": np.array(1, np.int64), "ax0": np.array([0], np.int64),
        "ax1": np.array([1], np.int64), "heads": np.array([H, HD], np.int64),
        "dmodel": np.array([D], np.int64), "scale": np.array(np.sqrt(HD), np.float32),
        "neg": np.array(-1e4, np.float32), "half": np.array(0.5, np.float32),
        "one": np.array(1.0, np.float32), "sqrt2": np.array(np.sqrt(2.0), np.float32),
    }
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["shp"]),
        n("Gather", ["shp", "i0"], ["bsz"], axis=0),
        n("Gather", ["shp", "i1"], ["seq"], axis=0),
        n("Unsqueeze", ["bsz", "ax0"], ["bsz1"]),
        n("Unsqueeze", ["seq", "ax0"], ["seq1"]),
        n("Concat", ["bsz1", "seq1", "heads"], ["split_shape"], axis=0),
        n("Concat", ["bsz1", "seq1", "dmodel"], ["merge_shape"], axis=0),
        # a positional bias broadcast to x's shape by Expand
        n("Expand", ["pos", "shp"], ["pos_full"]),
        n("Add", ["x", "pos_full"], ["xp"]),
        n("LayerNormalization", ["xp", "ln1_g", "ln1_b"], ["ln1"], axis=-1, epsilon=1e-5),
    ]
    for p in ("q", "k", "v"):
        nodes += [
            n("MatMul", ["ln1", f"w{p}"], [f"{p}0"]),
            n("Add", [f"{p}0", f"b{p}"], [f"{p}1"]),
            n("Reshape", [f"{p}1", "split_shape"], [f"{p}2"]),
        ]
    nodes += [
        n("Transpose", ["q2"], ["q3"], perm=[0, 2, 1, 3]),
        n("Transpose", ["k2"], ["k3"], perm=[0, 2, 3, 1]),
        n("Transpose", ["v2"], ["v3"], perm=[0, 2, 1, 3]),
        n("MatMul", ["q3", "k3"], ["s0"]),
        n("Div", ["s0", "scale"], ["s1"]),
        # causal mask: Range(0, seq) compared with itself
        n("Range", ["i0", "seq", "i1"], ["r"]),
        n("Unsqueeze", ["r", "ax0"], ["r_row"]),
        n("Unsqueeze", ["r", "ax1"], ["r_col"]),
        n("LessOrEqual", ["r_row", "r_col"], ["causal"]),
        n("Where", ["causal", "s1", "neg"], ["s2"]),
        n("Softmax", ["s2"], ["p"], axis=-1),
        n("MatMul", ["p", "v3"], ["a0"]),
        n("Transpose", ["a0"], ["a1"], perm=[0, 2, 1, 3]),
        n("Reshape", ["a1", "merge_shape"], ["a2"]),
        n("MatMul", ["a2", "wo"], ["o0"]),
        n("Add", ["o0", "bo"], ["o1"]),
        n("Add", ["xp", "o1"], ["h1"]),
        n("LayerNormalization", ["h1", "ln2_g", "ln2_b"], ["ln2"], axis=-1, epsilon=1e-5),
        n("MatMul", ["ln2", "w1"], ["f0"]),
        n("Add", ["f0", "b1"], ["f1"]),
        # GELU as PyTorch exports it: 0.5 * x * (1 + erf(x / sqrt(2)))
        n("Div", ["f1", "sqrt2"], ["g0"]),
        n("Erf", ["g0"], ["g1"]),
        n("Add", ["g1", "one"], ["g2"]),
        n("Mul", ["f1", "g2"], ["g3"]),
        n("Mul", ["g3", "half"], ["g4"]),
        n("MatMul", ["g4", "w2"], ["f2"]),
        n("Add", ["f2", "b2"], ["f3"]),
        n("Add", ["h1", "f3"], ["y"]),
    ]
    return make_model(nodes, [vi("x", np.float32, ["batch", "seq", D])],
                      [vi("y", np.float32, ["batch", "seq", D])], inits, opset=17)


@pytest.fixture(scope="module")
def block() -> onnx.ModelProto:
    return _block()


def test_block_keeps_dynamic_axes(block: onnx.ModelProto) -> None:
    ours = engine_model(block)
    sig = ours.signature()
    assert sig.inputs["x"].shape == (None, None, D)
    assert sig.outputs["y"].shape == (None, None, D)
    assert needs_specialize(ours.graph)  # shape arithmetic is left for each plan


def test_block_matches_onnxruntime(block: onnx.ModelProto) -> None:
    ours = engine_model(block)
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        for seq in (5, 9):
            x = rng.normal(size=(batch, seq, D)).astype(np.float32)
            assert_matches(block, {"x": x}, ours, rtol=1e-5, atol=1e-5)
    assert len(ours._plans) == 4  # one specialized plan per input shape
    for plan in ours._plans.values():
        assert all(t.is_static() for t in plan.types.values())
