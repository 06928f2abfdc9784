"""GatherElements, Pad, ArgMax and ArgMin imported from ONNX, ours vs onnxruntime (exact:
the ops select or move elements)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from engine.errors import InputError, ShapeError, UnsupportedOpError
from tests.unit.importers.test_onnx_util import assert_matches, engine_model, make_model, vi

n = helper.make_node
F32, I64 = np.float32, np.int64
RNG = np.random.default_rng(0)


def _x(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(F32)


# -- GatherElements ----------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_dynamic_batch(axis: int) -> None:
    m = make_model([n("GatherElements", ["data", "idx"], ["y"], axis=axis)],
                   [vi("data", F32, ["N", 6]), vi("idx", I64, ["N", 6])],
                   [vi("y", F32, ["N", 6])])
    ours = engine_model(m)
    for batch in (1, 3):
        size = batch if axis == 0 else 6
        idx = RNG.integers(-size, size, (batch, 6)).astype(I64)
        assert_matches(m, {"data": _x(batch, 6), "idx": idx}, ours)


def test_gather_elements_bad_index_is_an_input_error() -> None:
    m = make_model([n("GatherElements", ["data", "idx"], ["y"], axis=1)],
                   [vi("data", F32, [2, 5]), vi("idx", I64, [2, 3])], [vi("y", F32, [2, 3])])
    with pytest.raises(InputError, match="index 5 is out of range for axis 1 of size 5"):
        engine_model(m).run({"data": _x(2, 5), "idx": np.full((2, 3), 5, I64)})


def test_bert_token_types_fold_per_input_shape() -> None:
    """transformers' BERT without token_type_ids: its buffered zeros, sliced to the sequence
    length with GatherElements and expanded to the batch (all shape-derived)."""
    nodes = [
        n("Shape", ["ids"], ["shape"]),
        n("Gather", ["shape", "one"], ["seq"], axis=0),
        n("Unsqueeze", ["seq", "zero1"], ["end"]),
        n("Slice", ["positions", "zero1", "end", "one1", "one1"], ["idx"]),
        n("GatherElements", ["zeros", "idx"], ["types1"], axis=1),
        n("Expand", ["types1", "shape"], ["types"]),
    ]
    inits = {"zeros": np.arange(64, dtype=I64)[None] % 3, "positions": np.arange(64)[None],
             "one": np.array(1, I64), "zero1": np.array([0], I64), "one1": np.array([1], I64)}
    m = make_model(nodes, [vi("ids", I64, ["N", "L"])], [vi("types", I64, ["N", "L"])], inits)
    ours = engine_model(m)
    for shape in ((2, 7), (1, 64), (3, 1)):
        assert_matches(m, {"ids": RNG.integers(0, 9, shape).astype(I64)}, ours)


# -- Pad ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "opset"), [(m, o) for m in ("constant", "reflect", "edge")
                                             for o in (13, 18, 21)] + [("wrap", 19)])
def test_pad_constant_pads(mode: str, opset: int) -> None:
    inits = {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], I64), "value": np.array(0.5, F32)}
    ins = ["x", "pads"] + (["value"] if mode == "constant" else [])
    m = make_model([n("Pad", ins, ["y"], mode=mode)], [vi("x", F32, ["N", 3, 5, 6])],
                   [vi("y", F32, ["N", 3, 8, 9])], inits, opset=opset)
    ours = engine_model(m)
    for batch in (1, 2):
        assert_matches(m, {"x": _x(batch, 3, 5, 6)}, ours)


def test_pad_axes_and_negative_pads() -> None:
    inits = {"pads": np.array([2, -1, -2, 3], I64), "axes": np.array([-1, 1], I64)}
    m = make_model([n("Pad", ["x", "pads", "", "axes"], ["y"])], [vi("x", F32, [2, 4, 5])],
                   [vi("y", F32, [2, 6, 5])], inits, opset=18)
    assert_matches(m, {"x": _x(2, 4, 5)})


def test_pad_opset13_runtime_constant_value() -> None:
    inits = {"pads": np.array([1, 1, 1, 1], I64)}
    m = make_model([n("Pad", ["x", "pads", "v"], ["y"])],
                   [vi("x", I64, [2, 3]), vi("v", I64, [])], [vi("y", I64, [4, 5])], inits,
                   opset=13)
    assert_matches(m, {"x": np.arange(6, dtype=I64).reshape(2, 3), "v": np.array(-7, I64)})


def test_pad_to_a_multiple_of_the_input_length() -> None:
    """Pads computed from the input's shape (pad the sequence to a multiple of 8)."""
    nodes = [
        n("Shape", ["x"], ["shape"]),
        n("Gather", ["shape", "one"], ["len"], axis=0),
        n("Mod", ["len", "eight"], ["rem"]),
        n("Sub", ["eight", "rem"], ["gap"]),
        n("Mod", ["gap", "eight"], ["tail"]),
        n("Unsqueeze", ["tail", "zero1"], ["tail1"]),
        n("Concat", ["zeros3", "tail1"], ["pads"], axis=0),
        n("Pad", ["x", "pads"], ["y"]),
    ]
    inits = {"one": np.array(1, I64), "eight": np.array(8, I64), "zero1": np.array([0], I64),
             "zeros3": np.zeros(3, I64)}
    m = make_model(nodes, [vi("x", F32, ["N", "L"])], [vi("y", F32, ["N", "M"])], inits)
    ours = engine_model(m)
    for shape in ((2, 5), (1, 8), (3, 13)):
        got = assert_matches(m, {"x": _x(*shape)}, ours).run({"x": _x(*shape)})["y"]
        assert got.shape[1] % 8 == 0


def test_pad_runtime_pads_are_refused() -> None:
    m = make_model([n("Pad", ["x", "pads"], ["y"])],
                   [vi("x", F32, [2, 3]), vi("pads", I64, [4])], [vi("y", F32, [None, None])])
    with pytest.raises(UnsupportedOpError, match="pads .input 1. must be a constant"):
        engine_model(m)


def test_pad_runtime_pads_with_shapes_elsewhere_fail_at_plan() -> None:
    nodes = [n("Shape", ["x"], ["s"]), n("Add", ["s2", "pads"], ["p"]),
             n("Pad", ["x", "p"], ["y"]), n("Cast", ["s"], ["sf"], to=1)]
    m = make_model(nodes, [vi("x", F32, ["N", 3]), vi("pads", I64, [4]), vi("s2", I64, [4])],
                   [vi("y", F32, [None, None]), vi("sf", F32, [2])])
    ours = engine_model(m)
    with pytest.raises(ShapeError, match="depends on values computed at run time"):
        ours.run({"x": _x(2, 3), "pads": np.ones(4, I64), "s2": np.ones(4, I64)})


# -- ArgMax / ArgMin ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("last", [0, 1])
def test_arg(op: str, axis: int, keepdims: int, last: int) -> None:
    shape = [4, 5, 6]
    out = list(shape)
    if keepdims:
        out[axis] = 1
    else:
        del out[axis]
    m = make_model([n(op, ["x"], ["y"], axis=axis, keepdims=keepdims, select_last_index=last)],
                   [vi("x", F32, shape)], [vi("y", I64, out)])
    x = RNG.integers(0, 3, shape).astype(F32)  # ties
    assert_matches(m, {"x": x})


def test_argmax_of_logits_dynamic_batch() -> None:
    m = make_model([n("ArgMax", ["x"], ["y"], axis=1, keepdims=0)], [vi("x", F32, ["N", 10])],
                   [vi("y", I64, ["N"])])
    ours = engine_model(m)
    for batch in (1, 7):
        assert_matches(m, {"x": _x(batch, 10)}, ours)
