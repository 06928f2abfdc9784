"""Each pass: the graph before and after, and outputs unchanged by the rewrite."""

from __future__ import annotations

import numpy as np

import engine
from engine import Graph, Node, TensorType
from engine.passes import (
    fold_batchnorm,
    fold_constants,
    fuse_bias_activation,
    optimize,
    remove_dead_nodes,
)


def _run(graph: Graph, x: np.ndarray) -> np.ndarray:
    model = engine.compile_graph(graph)
    # compile_graph optimizes; compare against the graph run with no passes at all
    return model.predict(x)


def _run_raw(graph: Graph, x: np.ndarray) -> np.ndarray:
    from engine.executor import build_plan

    g = optimize(graph, pipeline=[])
    return build_plan(g, {"x": x.shape}).run({"x": x})[g.outputs[0]]


def _ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


rng = np.random.default_rng(0)


def _conv_bn_graph() -> Graph:
    c = 8
    return Graph.make(
        [("x", TensorType("float32", (None, 6, 6, 3)))],
        ["y"],
        [
            Node.make("Conv2D", ["x", "w", "b"], ["c"], {"pads": (1, 1, 1, 1)}),
            Node.make("BatchNorm", ["c", "g", "be", "m", "v"], ["n"], {"epsilon": 1e-3}),
            Node.make("Relu", ["n"], ["y"]),
        ],
        {
            "w": rng.standard_normal((3, 3, 3, c)).astype(np.float32),
            "b": rng.standard_normal(c).astype(np.float32),
            "g": rng.uniform(0.5, 1.5, c).astype(np.float32),
            "be": rng.standard_normal(c).astype(np.float32),
            "m": rng.standard_normal(c).astype(np.float32),
            "v": rng.uniform(0.5, 2.0, c).astype(np.float32),
        },
    )


def test_fold_batchnorm_then_fuse_relu() -> None:
    g = _conv_bn_graph()
    folded = fold_batchnorm(optimize(g, []))
    assert _ops(g) == ["Conv2D", "BatchNorm", "Relu"]
    assert _ops(folded) == ["Conv2D", "Relu"]
    fused = fuse_bias_activation(optimize(folded, []))
    assert _ops(fused) == ["Conv2D"]
    assert fused.nodes[0].attr("activation") == "relu"
    assert fused.nodes[0].outputs == ("y",)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(g, x), _run_raw(g, x), rtol=1e-4, atol=1e-4)


def test_fuse_bias_add_into_dense() -> None:
    g = Graph.make(
        [("x", TensorType("float32", (None, 4)))],
        ["y"],
        [
            Node.make("Dense", ["x", "w"], ["d"]),
            Node.make("Add", ["d", "bias"], ["a"]),
            Node.make("Sigmoid", ["a"], ["y"]),
        ],
        {"w": rng.standard_normal((4, 5)).astype(np.float32),
         "bias": rng.standard_normal(5).astype(np.float32)},
    )
    after = fuse_bias_activation(optimize(g, []))
    assert _ops(after) == ["Dense"]
    assert after.nodes[0].attr("activation") == "sigmoid"
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(g, x), _run_raw(g, x), rtol=1e-5, atol=1e-6)


def test_no_fusion_when_intermediate_is_shared() -> None:
    g = Graph.make(
        [("x", TensorType("float32", (None, 4)))],
        ["y", "d"],
        [Node.make("Dense", ["x", "w"], ["d"]), Node.make("Relu", ["d"], ["y"])],
        {"w": rng.standard_normal((4, 5)).astype(np.float32)},
    )
    assert _ops(fuse_bias_activation(optimize(g, []))) == ["Dense", "Relu"]


def test_fold_constants() -> None:
    g = Graph.make(
        [("x", TensorType("float32", (None, 3)))],
        ["y"],
        [
            Node.make("Mul", ["a", "b"], ["ab"]),  # constant * constant
            Node.make("Add", ["x", "ab"], ["y"]),
        ],
        {"a": np.array([1, 2, 3], np.float32), "b": np.array([4, 5, 6], np.float32)},
    )
    after = remove_dead_nodes(fold_constants(optimize(g, [])))
    assert _ops(after) == ["Add"]
    np.testing.assert_array_equal(after.constants["ab"], [4, 10, 18])
    assert set(after.constants) == {"ab"}
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(g, x), _run_raw(g, x))


def test_remove_dead_nodes_and_identities() -> None:
    g = Graph.make(
        [("x", TensorType("float32", (None, 3)))],
        ["y"],
        [
            Node.make("Exp", ["x"], ["unused"]),
            Node.make("Identity", ["x"], ["i"]),
            Node.make("Relu", ["i"], ["y"]),
        ],
        {"orphan": np.zeros(2, np.float32)},
    )
    after = remove_dead_nodes(optimize(g, []))
    assert _ops(after) == ["Relu"]
    assert after.nodes[0].inputs == ("x",)
    assert not after.constants
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(g, x), _run_raw(g, x))
