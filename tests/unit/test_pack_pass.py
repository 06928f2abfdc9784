"""engine.passes.pack_hybrid_weights, DenseW8Packed and (the pass's side) Conv2DW8Packed.

DenseW8Packed runs the same kernel on the same packed weight as DenseW8 compute="int8" (which
packs at plan time), so the packed model must give the unpacked model's outputs to float32
rounding of nothing at all: compared at 1e-6 relative, and both against the numpy reference
engine.kernels.reference.quant_hybrid (1e-6 relative; gelu 1e-5, its float32 epilogue vs the
reference's float64 activation). Sizes are the graph constants' bytes (Model.weights_nbytes).
Conv2DW8 compute="int8" likewise against engine.kernels.reference.quant_hybrid_conv (the
packed op's kernels: tests/unit/kernels/test_conv_w8_int8.py).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engine
from engine.errors import DTypeError, ShapeError, UnsupportedOpError
from engine.ir import Graph, Node, TensorType, verify
from engine.kernels import quant_hybrid as QH
from engine.kernels.reference import quant_hybrid as R
from engine.kernels.reference import quant_hybrid_conv as RC
from engine.passes import PIPELINE, optimize, pack_hybrid_weights
from tests.unit.kernels.harness import run_op

RTOL = 1e-6
INT8 = {"compute": "int8"}
UNPACKED = [p for p in PIPELINE if p is not pack_hybrid_weights]
K = 256  # the packing adds 4 bytes a column (colsum): 1.6% of an int8 column of 256


def _weight(rng: np.random.Generator, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    w = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
    return w, (rng.random(n) * 0.02 + 1e-3).astype(np.float32)


def _model_graph(rng: np.random.Generator) -> tuple[Graph, dict[str, np.ndarray]]:
    """x (M, K) and x3 (B, S, K); w1 shared by a rank-2 (bias, relu) and a rank-3 (gelu, no
    bias) node; w2 (NR 48) on the first's output; a float32-compute node on w4."""
    w1, s1 = _weight(rng, K, K)
    w2, s2 = _weight(rng, K, 96)
    w4, s4 = _weight(rng, K, 32)
    c = {"w1": w1, "s1": s1, "b1": rng.normal(size=K).astype(np.float32),
         "w2": w2, "s2": s2, "b2": rng.normal(size=96).astype(np.float32),
         "w4": w4, "s4": s4}
    nodes = [
        Node.make("DenseW8", ["x", "w1", "s1", "b1"], ["y1"], {**INT8, "activation": "relu"}),
        Node.make("DenseW8", ["x3", "w1", "s1"], ["y3"], {**INT8, "activation": "gelu"}),
        Node.make("DenseW8", ["y1", "w2", "s2", "b2"], ["y2"], {**INT8, "activation": "tanh"}),
        Node.make("DenseW8", ["x", "w4", "s4"], ["y4"], {"compute": "float32"}),
    ]
    graph = Graph.make([("x", TensorType("float32", (None, K))),
                        ("x3", TensorType("float32", (None, None, K)))],
                       ["y1", "y2", "y3", "y4"], nodes, c)
    return graph, c


def _feeds(rng: np.random.Generator, m: int, b: int, s: int) -> dict[str, np.ndarray]:
    return {"x": (rng.normal(size=(m, K)) * 3).astype(np.float32),
            "x3": (rng.normal(size=(b, s, K)) * 3).astype(np.float32)}


def _reference(c: dict[str, np.ndarray], f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    y1 = R.dense_w8_int8(f["x"], c["w1"], c["s1"], c["b1"], "relu")
    return {"y1": y1, "y2": R.dense_w8_int8(y1, c["w2"], c["s2"], c["b2"], "tanh"),
            "y3": R.dense_w8_int8(f["x3"], c["w1"], c["s1"], None, "gelu")}


@pytest.fixture(scope="module")
def models() -> tuple[engine.Model, engine.Model, dict[str, np.ndarray]]:
    graph, consts = _model_graph(np.random.default_rng(7))
    packed = engine.compile_graph(graph)
    unpacked = engine.Model(optimize(graph, pipeline=UNPACKED), packed.signatures)
    return packed, unpacked, consts


def test_graph_rewritten(models: Any) -> None:
    packed, unpacked, c = models
    ops = [n.op for n in packed.graph.nodes]
    assert ops == ["DenseW8Packed"] * 3 + ["DenseW8"]
    assert packed.graph.nodes[3].attr("compute") == "float32"
    # w1 is packed once for its two nodes; the int8 weights nothing reads any more are gone
    assert sorted(packed.graph.constants) == sorted(
        ["b1", "b2", "w4", "s4"] + [f"{w}/{part}" for w in ("w1", "w2")
                                   for part in ("packed", "colsum", "pscale")])
    n1, n3 = packed.graph.nodes[0], packed.graph.nodes[1]
    assert n1.inputs[1:4] == n3.inputs[1:4] == ("w1/packed", "w1/colsum", "w1/pscale")
    assert dict(n1.attrs) == {"activation": "relu", "alpha": 0.2, "k": K, "n": K, "mr": 6,
                              "nr": 64}
    assert packed.graph.nodes[2].attr("nr") == 48 and packed.graph.nodes[2].attr("mr") == 8
    # the constants are QH.pack's layout, exactly
    for w in ("w1", "w2"):
        p = QH.pack(c[w], c["s" + w[1]])
        for part, arr in (("packed", p.data), ("colsum", p.colsum), ("pscale", p.scale)):
            got = packed.graph.constants[f"{w}/{part}"]
            assert got.dtype == arr.dtype and got.shape == arr.shape
            np.testing.assert_array_equal(got, arr)
    assert [n.op for n in unpacked.graph.nodes] == ["DenseW8"] * 4
    assert pack_hybrid_weights(packed.graph) is packed.graph  # nothing left to pack


def test_resident_weights_one_copy(models: Any) -> None:
    packed, unpacked, c = models
    int8_and_scales = sum(c[n].nbytes for n in ("w1", "s1", "w2", "s2", "w4", "s4"))
    rest = c["b1"].nbytes + c["b2"].nbytes
    assert unpacked.weights_nbytes == int8_and_scales + rest
    assert packed.weights_nbytes <= 1.02 * int8_and_scales + rest


@pytest.mark.parametrize(("m", "b", "s"), [(1, 1, 1), (2, 1, 2), (5, 2, 3), (33, 3, 11)])
def test_outputs_equal_unpacked_and_reference(models: Any, m: int, b: int, s: int) -> None:
    packed, unpacked, c = models
    feeds = _feeds(np.random.default_rng([m, b, s]), m, b, s)
    got, base = packed.run(feeds), unpacked.run(feeds)
    for name in ("y1", "y2", "y3", "y4"):
        np.testing.assert_allclose(got[name], base[name], rtol=RTOL, atol=0, err_msg=name)
    want = _reference(c, feeds)
    np.testing.assert_allclose(got["y1"], want["y1"], rtol=RTOL, atol=0)
    np.testing.assert_allclose(got["y2"], want["y2"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["y3"], want["y3"], rtol=1e-5, atol=1e-6)


def test_save_and_load_a_packed_graph(models: Any, tmp_path: Path) -> None:
    packed, _, _ = models
    engine.save(tmp_path / "1", packed.graph, packed.signatures)
    loaded = engine.load(tmp_path / "1")
    assert [n.op for n in loaded.graph.nodes] == [n.op for n in packed.graph.nodes]
    assert loaded.weights_nbytes == packed.weights_nbytes
    feeds = _feeds(np.random.default_rng(3), 4, 2, 5)
    got, want = loaded.run(feeds), packed.run(feeds)
    for name, arr in want.items():
        np.testing.assert_array_equal(got[name], arr)


def test_weight_read_elsewhere_is_kept_and_scales_packed_apart() -> None:
    rng = np.random.default_rng(11)
    w, s = _weight(rng, 40, 20)
    s2 = s * np.float32(2)
    graph = Graph.make(
        [("x", TensorType("float32", (None, 40)))], ["a", "b", "c"],
        [Node.make("DenseW8", ["x", "w", "s"], ["a"], INT8),
         Node.make("DenseW8", ["x", "w", "s2"], ["b"], INT8),
         Node.make("DenseW8", ["x", "w", "s"], ["c"], {"compute": "float32"})],
        {"w": w, "s": s, "s2": s2})
    out = optimize(graph)
    assert [n.op for n in out.nodes] == ["DenseW8Packed", "DenseW8Packed", "DenseW8"]
    assert out.nodes[0].inputs[1] != out.nodes[1].inputs[1]
    assert {"w", "s"} <= set(out.constants) and "s2" not in out.constants
    x = rng.normal(size=(3, 40)).astype(np.float32)
    got = engine.Model(out, engine.compile_graph(graph).signatures).run({"x": x})
    np.testing.assert_allclose(got["a"], R.dense_w8_int8(x, w, s, None), rtol=RTOL, atol=0)
    np.testing.assert_allclose(got["b"], R.dense_w8_int8(x, w, s2, None), rtol=RTOL, atol=0)


def test_runtime_weight_left_alone() -> None:
    graph = verify(Graph.make(
        [("x", TensorType("float32", (None, 8))), ("w", TensorType("int8", (8, 4)))], ["y"],
        [Node.make("DenseW8", ["x", "w", "s"], ["y"], INT8)],
        {"s": np.ones(4, np.float32)}))
    assert pack_hybrid_weights(graph) is graph


@pytest.mark.parametrize("lead", [(1,), (7,), (2, 9)])
@pytest.mark.parametrize("portable", [False, True])
def test_packed_op_with_runtime_inputs(lead: tuple[int, ...], portable: bool,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # the binding wraps whatever arrays arrive; the portable kernel (no VNNI) agrees
    if portable:
        monkeypatch.setattr(QH, "HYBRID_AVAILABLE", False)
    rng = np.random.default_rng(len(lead) * 10 + lead[-1])
    w, s = _weight(rng, 70, 53)
    b = rng.normal(size=53).astype(np.float32)
    x = (rng.normal(size=(*lead, 70)) * 3).astype(np.float32)
    p = QH.pack(w, s)
    attrs = {"k": 70, "n": 53, "mr": p.mr, "nr": p.nr, "activation": "relu"}
    (got,) = run_op("DenseW8Packed", "quant_hybrid", [x, p.data, p.colsum, p.scale, b], attrs,
                    const=[False, False, True, False, False])
    np.testing.assert_allclose(got, R.dense_w8_int8(x, w, s, b, "relu"), rtol=RTOL, atol=0)


def _packed_types(k: int = 10, n: int = 20, nr: int = 32) -> list[TensorType]:
    blocks = -(-n // nr)
    return [TensorType("float32", (None, k)), TensorType("int32", (blocks, -(-k // 4), nr)),
            TensorType("int32", (blocks * nr,)), TensorType("float32", (blocks * nr,))]


@pytest.mark.parametrize(("change", "error", "match"), [
    (lambda t, a: (t, {**a, "nr": 24}), UnsupportedOpError, "nr must be a multiple of 16"),
    (lambda t, a: (t, {**a, "k": 0}), UnsupportedOpError, "k must be a positive int"),
    (lambda t, a: ([t[0], TensorType("int32", (1, 2, 32)), *t[2:]], a), ShapeError,
     r"packed weight must have shape \(ceil\(n/nr\), ceil\(k/4\), nr\) = \(1, 3, 32\)"),
    (lambda t, a: ([t[0], TensorType("int8", (1, 3, 32)), *t[2:]], a), DTypeError,
     "packed weight must be int32"),
    (lambda t, a: ([*t[:2], TensorType("int32", (20,)), t[3]], a), ShapeError,
     "colsum length vs ceil"),
    (lambda t, a: ([*t[:3], TensorType("float16", (32,))], a), DTypeError,
     "scale must be float32"),
    (lambda t, a: ([*t, TensorType("float32", (32,))], a), ShapeError,
     "bias length vs attribute n: 32 != 20"),
    (lambda t, a: ([TensorType("float32", (None, 12)), *t[1:]], a), ShapeError,
     "input features vs attribute k: 12 != 10"),
])
def test_schema_rejects(change: Any, error: type[Exception], match: str) -> None:
    from engine.ir import schema_for
    schema = schema_for("DenseW8Packed")
    types, attrs = change(_packed_types(), {"k": 10, "n": 20, "mr": 8, "nr": 32})
    with pytest.raises(error, match=match):
        schema.infer(types, schema.resolve_attrs(attrs, "DenseW8Packed"))


def test_warm_examples_cover_every_tile_variant() -> None:
    warm = importlib.import_module("engine.warm")
    variants = set()
    for example in warm.EXAMPLES["DenseW8Packed"]:
        graph, feeds = warm._example_graph("DenseW8Packed", example)  # verifies
        a = graph.nodes[0].attrs
        assert (a["mr"], a["nr"]) == QH.hybrid_tile_shape(a["n"])
        variants.add((min(a["mr"], feeds["in0"].shape[0]), a["nr"]))
    want = {(m, nr) for n in (16, 32, 48, 64) for nr in [QH.hybrid_tile_shape(n)[1]]
            for m in range(1, QH.hybrid_tile_shape(n)[0] + 1)}
    assert variants == want


# ------------------------------------------------------------------------------ Conv2DW8

HW = 10


def _conv_weight(rng: np.random.Generator, kh: int, kw: int, c: int,
                 o: int) -> tuple[np.ndarray, np.ndarray]:
    w = rng.integers(-127, 128, size=(kh, kw, c, o)).astype(np.int8)
    return w, (rng.random(o) * 0.02 + 1e-3).astype(np.float32)


def _conv(x: str, w: str, y: str, bias: str | None = None, **attrs: Any) -> Node:
    names = [x, w, "s" + w[1:]] + ([bias] if bias else [])
    return Node.make("Conv2DW8", names, [y], {"compute": "int8", **attrs})


def _conv_graph(rng: np.random.Generator) -> tuple[Graph, dict[str, np.ndarray]]:
    """x (N, 10, 10, 3): a 3x3 same conv (C=3, bias, relu) to 64 channels; w2 shared by a
    valid conv (relu6, no bias) and a stride-2 one (bias, leaky_relu); a 1x1 conv (bias,
    sigmoid) after the valid one; a depthwise compute-int8 and a compute-float32 conv left
    as they are."""
    c: dict[str, np.ndarray] = {}
    for name, shape in (("w1", (3, 3, 3, 64)), ("w2", (3, 3, 64, 64)), ("w4", (1, 1, 64, 16)),
                        ("w5", (3, 3, 1, 64)), ("w6", (3, 3, 64, 8))):
        c[name], c["s" + name[1:]] = _conv_weight(rng, *shape)
    for name, o in (("b1", 64), ("b3", 64), ("b4", 16)):
        c[name] = rng.normal(size=o).astype(np.float32)
    same = (1, 1, 1, 1)
    nodes = [
        _conv("x", "w1", "y1", "b1", pads=same, activation="relu"),
        _conv("y1", "w2", "y2", activation="relu6"),
        _conv("y1", "w2", "y3", "b3", strides=(2, 2), pads=(0, 1, 0, 1),
              activation="leaky_relu", alpha=0.1),
        _conv("y2", "w4", "y4", "b4", activation="sigmoid"),
        _conv("y1", "w5", "y5", groups=64, pads=same),
        Node.make("Conv2DW8", ["y1", "w6", "s6"], ["y6"], {"pads": same}),
    ]
    graph = Graph.make([("x", TensorType("float32", (None, HW, HW, 3)))],
                       [f"y{i}" for i in range(1, 7)], nodes, c)
    return graph, c


@pytest.fixture(scope="module")
def conv_models() -> tuple[engine.Model, engine.Model, dict[str, np.ndarray]]:
    graph, consts = _conv_graph(np.random.default_rng(17))
    packed = engine.compile_graph(graph)
    unpacked = engine.Model(optimize(graph, pipeline=UNPACKED), packed.signatures)
    return packed, unpacked, consts


def test_conv_graph_rewritten(conv_models: Any) -> None:
    packed, unpacked, c = conv_models
    assert [n.op for n in packed.graph.nodes] == ["Conv2DW8Packed"] * 4 + ["Conv2DW8"] * 2
    assert [n.op for n in unpacked.graph.nodes] == ["Conv2DW8"] * 6
    n1, n2, n3 = packed.graph.nodes[:3]
    assert dict(n1.attrs) == {"strides": (1, 1), "dilations": (1, 1), "pads": (1, 1, 1, 1),
                              "groups": 1, "activation": "relu", "alpha": 0.2, "kernel_h": 3,
                              "kernel_w": 3, "k": 27, "n": 64, "mr": 6, "nr": 64}
    assert n3.attr("strides") == (2, 2) and n3.attr("alpha") == 0.1
    assert n2.inputs[1:4] == n3.inputs[1:4] == ("w2/packed", "w2/colsum", "w2/pscale")
    assert packed.graph.nodes[3].attr("nr") == 16 and packed.graph.nodes[3].attr("mr") == 8
    # the grouped and the float32-compute convs keep their int8 weights; the rest are gone
    assert sorted(packed.graph.constants) == sorted(
        ["b1", "b3", "b4", "w5", "s5", "w6", "s6"]
        + [f"{w}/{part}" for w in ("w1", "w2", "w4") for part in ("packed", "colsum", "pscale")])
    for w in ("w1", "w2", "w4"):
        wa = c[w]
        p = QH.pack(wa.reshape(-1, wa.shape[3]), c["s" + w[1:]])
        for part, arr in (("packed", p.data), ("colsum", p.colsum), ("pscale", p.scale)):
            got = packed.graph.constants[f"{w}/{part}"]
            assert got.dtype == arr.dtype and got.shape == arr.shape
            np.testing.assert_array_equal(got, arr)
    assert pack_hybrid_weights(packed.graph) is packed.graph


def test_conv_resident_weights_one_copy(conv_models: Any) -> None:
    packed, unpacked, c = conv_models
    int8_and_scales = sum(c[n].nbytes for n in ("w1", "s1", "w2", "s2", "w4", "s4"))
    rest = sum(c[n].nbytes for n in ("b1", "b3", "b4", "w5", "s5", "w6", "s6"))
    assert unpacked.weights_nbytes == int8_and_scales + rest
    assert packed.weights_nbytes <= 1.02 * int8_and_scales + rest
    # exactly: K padded to a multiple of 4, O to NR, and int32 colsum + float32 scale per
    # padded column
    assert packed.weights_nbytes - rest == sum(_packed_bytes(c[w]) for w in ("w1", "w2", "w4"))


def _packed_bytes(w: np.ndarray) -> int:
    k, o = w[..., 0].size, w.shape[3]
    npad = -(-o // QH.hybrid_tile_shape(o)[1]) * QH.hybrid_tile_shape(o)[1]
    return -(-k // 4) * 4 * npad + 8 * npad


@pytest.mark.parametrize("batch", [1, 3])
def test_conv_outputs_equal_unpacked_and_reference(conv_models: Any, batch: int) -> None:
    packed, unpacked, c = conv_models
    rng = np.random.default_rng(batch)
    x = (rng.normal(size=(batch, HW, HW, 3)) * rng.random((batch, 1, 1, 1)) * 4)
    got, base = packed.run({"x": x.astype(np.float32)}), unpacked.run({"x": x.astype(np.float32)})
    for name in base:
        np.testing.assert_allclose(got[name], base[name], rtol=RTOL, atol=0, err_msg=name)
    # each node against the reference on the engine's own input to it: 1e-6 relative
    # (sigmoid: float32 epilogue vs float64, within an ulp or so)
    same = (1, 1, 1, 1)
    want = {
        "y1": RC.conv2d_w8_int8(x, c["w1"], c["s1"], c["b1"], pads=same, activation_name="relu"),
        "y2": RC.conv2d_w8_int8(got["y1"], c["w2"], c["s2"], activation_name="relu6"),
        "y3": RC.conv2d_w8_int8(got["y1"], c["w2"], c["s2"], c["b3"], strides=(2, 2),
                                pads=(0, 1, 0, 1), activation_name="leaky_relu", alpha=0.1),
        "y4": RC.conv2d_w8_int8(got["y2"], c["w4"], c["s4"], c["b4"],
                                activation_name="sigmoid"),
    }
    for name, arr in want.items():
        atol = 1e-7 if name == "y4" else 0
        np.testing.assert_allclose(got[name], arr, rtol=RTOL, atol=atol, err_msg=name)


def test_conv_save_and_load_a_packed_graph(conv_models: Any, tmp_path: Path) -> None:
    packed, _, _ = conv_models
    engine.save(tmp_path / "1", packed.graph, packed.signatures)
    loaded = engine.load(tmp_path / "1")
    assert [n.op for n in loaded.graph.nodes] == [n.op for n in packed.graph.nodes]
    assert loaded.weights_nbytes == packed.weights_nbytes
    x = np.random.default_rng(5).normal(size=(2, HW, HW, 3)).astype(np.float32)
    got, want = loaded.run({"x": x}), packed.run({"x": x})
    for name, arr in want.items():
        np.testing.assert_array_equal(got[name], arr)


def test_conv_runtime_weight_left_alone() -> None:
    graph = verify(Graph.make(
        [("x", TensorType("float32", (None, 6, 6, 4))), ("w", TensorType("int8", (3, 3, 4, 8)))],
        ["y"], [Node.make("Conv2DW8", ["x", "w", "s"], ["y"], INT8)],
        {"s": np.ones(8, np.float32)}))
    assert pack_hybrid_weights(graph) is graph
