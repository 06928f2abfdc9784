"""cancel_transposes on NCHW graphs shaped like the ONNX importer's output: the outputs before
and after the pass agree (float32, 1e-5 relative and absolute) and the Transposes go."""

from __future__ import annotations

import numpy as np

from engine import Graph, Node, TensorType
from engine.executor import build_plan
from engine.passes import cancel_transposes, optimize

NHWC, NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
rng = np.random.default_rng(3)


def _run(g: Graph, x: np.ndarray) -> np.ndarray:
    g = optimize(g, pipeline=[])
    return build_plan(g, {"x": x.shape}).run({"x": x})[g.outputs[0]]


def _count(g: Graph, op: str = "Transpose") -> int:
    return sum(n.op == op for n in g.nodes)


def _conv(nodes: list[Node], consts: dict[str, np.ndarray], x: str, out: str, c_in: int,
          c_out: int) -> None:
    """NCHW x -> Transpose -> Conv2D (same padding) -> Transpose -> out (NCHW)."""
    consts[f"{out}_w"] = (rng.standard_normal((3, 3, c_in, c_out)) / 5).astype(np.float32)
    consts[f"{out}_b"] = rng.standard_normal(c_out).astype(np.float32)
    nodes += [
        Node.make("Transpose", [x], [f"{out}_t"], {"perm": NHWC}),
        Node.make("Conv2D", [f"{out}_t", f"{out}_w", f"{out}_b"], [f"{out}_c"],
                  {"pads": (1, 1, 1, 1)}),
        Node.make("Transpose", [f"{out}_c"], [out], {"perm": NCHW}),
    ]


def _resnet_block() -> Graph:
    """conv -> BN(axis 1) -> Relu -> conv -> Add(skip) -> Mul(const) -> Clip -> max pool."""
    c = 4
    nodes: list[Node] = []
    consts: dict[str, np.ndarray] = {}
    _conv(nodes, consts, "x", "c1", 3, c)
    for k, v in {"g": rng.uniform(0.5, 1.5, c), "be": rng.standard_normal(c),
                 "m": rng.standard_normal(c), "v": rng.uniform(0.5, 2, c)}.items():
        consts[k] = v.astype(np.float32)
    consts["scale"] = rng.uniform(0.5, 2, (c, 1, 1)).astype(np.float32)
    nodes += [Node.make("BatchNorm", ["c1", "g", "be", "m", "v"], ["bn"], {"axis": 1}),
              Node.make("Relu", ["bn"], ["r1"])]
    _conv(nodes, consts, "r1", "c2", c, c)
    nodes += [
        Node.make("Add", ["c2", "r1"], ["sum"]),
        Node.make("Mul", ["sum", "scale"], ["scaled"]),
        Node.make("Clip", ["scaled"], ["clip"], {"min": 0.0, "max": 6.0}),
        Node.make("Transpose", ["clip"], ["p_t"], {"perm": NHWC}),
        Node.make("MaxPool2D", ["p_t"], ["p"], {"pool_size": (2, 2), "strides": (2, 2)}),
        Node.make("Transpose", ["p"], ["y"], {"perm": NCHW}),
    ]
    return Graph.make([("x", TensorType("float32", (None, 3, 6, 6)))], ["y"], nodes, consts)


def test_cancel_transposes_resnet_block() -> None:
    g = _resnet_block()
    after = cancel_transposes(optimize(g, pipeline=[]))
    assert _count(g) == 6
    assert _count(after) == 2  # one at the input, one at the output
    bn = next(n for n in after.nodes if n.op == "BatchNorm")
    assert bn.attr("axis") == 3  # renumbered for NHWC
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, 6, 6)).astype(np.float32)
        np.testing.assert_allclose(_run(after, x), _run(g, x), rtol=1e-5, atol=1e-5)


def test_full_pipeline_folds_batchnorm_after_cancelling() -> None:
    g = _resnet_block()
    opt = optimize(g)
    assert _count(opt) == 2
    assert _count(opt, "BatchNorm") == 0  # folded into the first Conv2D
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(_run(opt, x), _run(g, x), rtol=1e-5, atol=1e-5)


def test_unchanged_when_nothing_cancels() -> None:
    """A lone Transpose in front of a Flatten must stay (it changes the element order)."""
    g = Graph.make(
        [("x", TensorType("float32", (None, 2, 3, 4)))], ["y"],
        [Node.make("Transpose", ["x"], ["t"], {"perm": NHWC}),
         Node.make("Relu", ["t"], ["r"]),
         Node.make("Flatten", ["r"], ["y"])])
    verified = optimize(g, pipeline=[])
    assert cancel_transposes(verified) is verified
