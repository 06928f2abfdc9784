"""Compile every kernel ahead of time (``numbaserve warm``), filling numba's on-disk cache.

Each op runs once on a small example of every dtype/layout the bindings specialize on, so a
server started afterwards loads machine code instead of compiling on its first request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.executor import build_plan
from engine.ir import SCHEMAS, Graph, Node, TensorType, verify
from engine.kernels.quant_hybrid import hybrid_tile_shape

__all__ = ["EXAMPLES", "warm"]

F = "float32"
# op -> list of (inputs as (shape, dtype, is_constant) or a constant's value, attrs)
Example = tuple[Sequence[tuple[tuple[int, ...], str, bool] | np.ndarray], Mapping[str, Any]]
_ACTS = ("linear", "relu", "relu6", "sigmoid", "tanh", "leaky_relu", "gelu", "gelu_tanh")

# every float conv tile width (16..64 output channels) serial, as a one-thread batch thread
# runs them, and the usual widths threaded (>= CONV_PAR_MIN_FMA, several engine threads);
# each as the direct GEMM (< 16 input channels) and as Winograd (3x3 stride 1, >= 16)
def _conv3x3(x: tuple[int, int, int, int], o: int) -> Example:
    return [(x, F, False), ((3, 3, x[3], o), F, True), ((o,), F, True)], {"activation": "relu"}


_CONV_WIDTHS = [_conv3x3((1, 4, 4, c), o) for o in (16, 32, 48, 64) for c in (4, 16)] + [
    _conv3x3(x, o) for o in (32, 64) for x in ((4, 34, 34, 15), (2, 34, 34, 32))]

EXAMPLES: dict[str, Sequence[Example]] = {
    "Conv2D": _CONV_WIDTHS + [
        ([((2, 8, 8, 4), F, False), ((3, 3, 4, 8), F, True), ((8,), F, True)],
         {"pads": (1, 1, 1, 1), "activation": a}) for a in _ACTS
    ] + [
        ([((2, 8, 8, 4), F, False), ((1, 1, 4, 8), F, True)], {}),
        ([((2, 8, 8, 4), F, False), ((3, 3, 1, 4), F, True), ((4,), F, True)],
         {"groups": 4, "strides": (2, 2), "pads": (1, 1, 1, 1), "activation": "relu6"}),
        ([((2, 8, 8, 4), F, False), ((3, 3, 2, 8), F, True)], {"groups": 2,
                                                               "dilations": (2, 2)}),
    ],
    "MaxPool2D": [([((2, 8, 8, 4), F, False)], {"pool_size": (2, 2), "strides": (2, 2)}),
                  ([((2, 8, 8, 4), F, False)], {"pool_size": (3, 3), "strides": (1, 1),
                                                 "pads": (1, 1, 1, 1)})],
    "AvgPool2D": [([((2, 8, 8, 4), F, False)], {"pool_size": (2, 2), "strides": (2, 2)}),
                  ([((2, 8, 8, 4), F, False)], {"pool_size": (3, 3), "strides": (1, 1),
                                                 "pads": (1, 1, 1, 1),
                                                 "count_include_pad": True})],
    "GlobalAvgPool2D": [([((2, 4, 4, 8), F, False)], {})],
    "GlobalMaxPool2D": [([((2, 4, 4, 8), F, False)], {})],
    "Dense": [([((2, 8), F, False), ((8, 4), F, True), ((4,), F, True)], {"activation": a})
              for a in _ACTS] + [([((2, 3, 8), F, False), ((8, 4), F, True)], {})],
    "MatMul": [([((2, 3, 4), F, False), ((4, 5), F, True)], {}),
               ([((2, 2, 3, 4), F, False), ((2, 2, 4, 3), F, False)], {})],
    "Softmax": [([((2, 3, 8), F, False)], {"axis": -1}), ([((2, 3, 8), F, False)], {"axis": 1})],
    "BatchNorm": [([((2, 4, 4, 8), F, False)] + [((8,), F, True)] * 4, {})],
    "LayerNorm": [([((2, 3, 8), F, False), ((8,), F, True), ((8,), F, True)], {}),
                  ([((2, 3, 8), F, False), ((8,), F, True)], {})],
    "LSTM": [([((2, 5, 4), F, False), ((4, 32), F, True), ((8, 32), F, True), ((32,), F, True)],
              {"return_sequences": r}) for r in (False, True)],
    "Gather": [([((10, 4), F, True), ((2, 3), d, False)], {}) for d in ("int32", "int64")],
    "Reshape": [([((2, 3, 4), F, False)], {"shape": (0, -1)})],
    "Flatten": [([((2, 3, 4), F, False)], {})],
    "Transpose": [([((2, 3, 4, 5), F, False)], {"perm": (0, 2, 1, 3)})],
    "Concat": [([((2, 3), F, False), ((2, 4), F, False)], {"axis": 1})],
    "Squeeze": [([((2, 1, 3), F, False)], {"axes": (1,)})],
    "Unsqueeze": [([((2, 3), F, False)], {"axes": (1,)})],
    "Slice": [([((2, 6, 4), F, False)], {"starts": (1,), "ends": (5,), "axes": (1,)})],
    "Cast": [([((2, 3), "int64", False)], {"to": F})],
    "Where": [([((2, 3), "bool", False), ((2, 3), F, False), ((2, 3), F, False)], {})],
    "Not": [([((2, 3), "bool", False)], {})],
    "Clip": [([((2, 3), F, False)], {"min": 0.0, "max": 1.0})],
}
I8, I64 = "int8", "int64"


def _i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def _packed_example(m: int, n: int, bias: bool, k: int = 8) -> Example:
    """DenseW8Packed of (m, k) rows by a (k, n) weight packed as engine.passes.pack does
    (quant_hybrid.hybrid_tile_shape's MR x NR): the kernel compiles one body per
    (min(MR, m), NR), and a threaded one per (MR, NR) for GEMMs big enough to split."""
    mr, nr = hybrid_tile_shape(n)
    blocks = -(-n // nr)
    ins: list[tuple[tuple[int, ...], str, bool]] = [
        ((m, k), F, False), ((blocks, -(-k // 4), nr), "int32", True),
        ((blocks * nr,), "int32", True), ((blocks * nr,), F, True)]
    return (ins + [((n,), F, True)] if bias else ins,
            {"k": k, "n": n, "mr": mr, "nr": nr})


def _conv_packed_example(x: tuple[int, int, int, int], kernel: int, o: int, bias: bool,
                         attrs: Mapping[str, Any]) -> Example:
    """Conv2DW8Packed of x NHWC by a (kernel, kernel, C, o) weight packed as
    engine.passes.pack does; the GEMM compiles one body per (min(MR, rows of a block), NR)."""
    mr, nr = hybrid_tile_shape(o)
    k = kernel * kernel * x[3]
    blocks = -(-o // nr)
    ins: list[tuple[tuple[int, ...], str, bool]] = [
        (x, F, False), ((blocks, -(-k // 4), nr), "int32", True),
        ((blocks * nr,), "int32", True), ((blocks * nr,), F, True)]
    return (ins + [((o,), F, True)] if bias else ins,
            {**attrs, "kernel_h": kernel, "kernel_w": kernel, "k": k, "n": o, "mr": mr,
             "nr": nr})


_Q = {"x_scale": 0.05, "x_zero_point": 3, "y_scale": 0.1, "y_zero_point": -2}
EXAMPLES.update({
    "LRN": [([((2, 4, 4, 8), F, False)], {"size": 3}),
            ([((2, 8, 4, 4), F, False)], {"size": 5, "axis": 1})],
    # n in {2, 9}: the two kernel paths (per-row and blocked)
    "LSTMSeq": [([((n, 5, 4), F, False), ((4, 32), F, True), ((8, 32), F, True),
                  ((32,), F, True)] + [((n, 8), F, False)] * states, {"reverse": r})
                for n in (2, 9) for r in (False, True) for states in (0, 2)],
    "GRUSeq": [([((n, 5, 4), F, False), ((4, 24), F, True), ((8, 24), F, True),
                 ((2, 24), F, True)], {"reset_after": r})
               for n in (2, 9) for r in (True, False)],
    "Shape": [([((2, 3, 4), F, False)], {})],
    "DynamicReshape": [([((2, 3, 4), F, False), _i64(0, -1)], {})],
    "DynamicSlice": [([((2, 6, 4), F, False), _i64(1), _i64(5), _i64(1)], {})],
    "Expand": [([((3, 1), F, False), _i64(2, 3, 4)], {})],
    "Tile": [([((2, 3), F, False), _i64(2, 2)], {})],
    "Range": [([np.array(v, dt) for v in (0, 7, 2)], {}) for dt in (np.int64, np.float32)],
    "ConstantOfShape": [([_i64(2, 3)], {"value": 1.0})],
    "Mod": [([((2, 3), I64, False), _i64(1, 2, 3)], {}),
            ([((2, 3), F, False), np.array([1.5, 2.0, 3.0], np.float32)], {"fmod": 1})],
    "Quantize": [([((2, 3, 4), F, False)], {"scale": 0.1, "zero_point": 3})],
    "Dequantize": [([((2, 3, 4), I8, False)], {"scale": 0.1, "zero_point": 3})],
    "QConv2D": [([((2, 8, 8, 4), I8, False), ((3, 3, 4, 8), I8, True), ((8,), F, True),
                  ((8,), "int32", True)], {**_Q, "pads": (1, 1, 1, 1), "activation": a})
                for a in ("linear", "relu", "relu6")]
    + [([((2, 8, 8, 4), I8, False), ((3, 3, 1, 4), I8, True), ((4,), F, True)],
        {**_Q, "groups": 4})],
    "QDense": [([((2, 8), I8, False), ((8, 4), I8, True), ((4,), F, True), ((4,), "int32", True)],
                {**_Q, "activation": a}) for a in ("linear", "relu", "relu6")],
    # compute int8 without the packing pass (weights fed at run time, or not optimized)
    "DenseW8": [([((n, 8), F, False), ((8, 4), I8, True), ((4,), F, True), ((4,), F, True)],
                 {"activation": a}) for n in (2, 16) for a in _ACTS]
    + [([((16, 8), F, False), ((8, u), I8, True), ((u,), F, True)], {})
       for u in (20, 40, 64)]  # quant_dense's other tile widths
    + [([((m, 8), F, False), ((8, 16), I8, c), ((16,), F, c), ((16,), F, True)],
        {"compute": "int8"}) for m in (1, 2, 8) for c in (True, False)],
    # every NR at every tile height (1..MR rows; more rows reuse the MR body), ~0.5 s of
    # compile each; with and without bias (a constant bias is a read-only array, the zeros
    # standing in for none are not: two epilogue signatures)
    "DenseW8Packed": [_packed_example(m, n, m == 1) for n in (16, 32, 48, 64)
                      for m in range(1, hybrid_tile_shape(n)[0] + 1)]
    # the threaded GEMM (>= 4 * CONV_PAR_MIN_FMA multiply-adds with several engine threads)
    # for the tiles of wide layers (BERT's 768 / 3072 columns: 8x48) and of 64 columns;
    # narrower ones compile on first use
    + [_packed_example(512, 768, False, 256), _packed_example(1024, 64, False, 1024)],
    "Conv2DW8": [([((2, 8, 8, 4), F, False), ((3, 3, 4, 8), I8, True), ((8,), F, True),
                   ((8,), F, True)], {"pads": (1, 1, 1, 1), "activation": a}) for a in _ACTS]
    # compute int8 without the packing pass: constant weight packed at plan time, and weight,
    # scale and bias fed at run time (a writable bias: the epilogue's other signature)
    + [([((2, 8, 8, 4), F, False), ((3, 3, 4, 8), I8, c), ((8,), F, c), ((8,), F, c)],
        {"pads": (1, 1, 1, 1), "activation": "relu", "compute": "int8"}) for c in (True, False)],
    # the conv's paths (im2col of 4-byte words, of bytes (C=3), stride 2, the 1x1 direct
    # path; bias or none), then every NR at every tile height: a 1x1 conv over m pixels is
    # a GEMM of m rows (the same kernels as DenseW8Packed's: compiled once for both)
    "Conv2DW8Packed": [
        _conv_packed_example((2, 8, 8, 4), 3, 8, True, {"pads": (1, 1, 1, 1),
                                                         "activation": "relu"}),
        _conv_packed_example((2, 9, 9, 3), 3, 8, False, {"strides": (2, 2),
                                                         "activation": "relu6"}),
        _conv_packed_example((2, 4, 4, 8), 1, 16, True, {}),
    ] + [_conv_packed_example((1, 1, m, 4), 1, o, False, {}) for o in (16, 32, 48, 64)
         for m in range(1, hybrid_tile_shape(o)[0] + 1)]
    # blocks over threads (>= 4 * CONV_PAR_MIN_FMA multiply-adds, several engine threads) for
    # the tiles of 32 and >= 64 output channels, the usual widths; others compile on first use
    + [_conv_packed_example((4 if o == 32 else 2, 56, 56, 32), 3, o, True,
                            {"pads": (1, 1, 1, 1), "activation": "relu"}) for o in (32, 64)],
    "DenseF16": [([((2, 8), F, False), ((8, 4), "float16", True), ((4,), F, True)],
                  {"activation": a}) for a in _ACTS],
    "Conv2DF16": [([((2, 8, 8, 4), F, False), ((3, 3, 4, 8), "float16", True), ((8,), F, True)],
                   {"pads": (1, 1, 1, 1), "activation": a}) for a in _ACTS],
})
# the last example of each: big enough for the parallel kernel
EXAMPLES["GatherElements"] = [
    ([((2, 6, 4), F, False), ((2, 3, 4), I64, False)], {"axis": 1}),
    ([((2, 6), F, False), ((2, 3), "int32", False)], {"axis": 1}),
    ([((2, 6), I64, False), ((2, 3), I64, False)], {"axis": -1}),
    ([((64, 2048), F, False), ((64, 2048), I64, False)], {"axis": 1}),
]
EXAMPLES["Pad"] = [
    ([((1, 3, 4, 5), F, False), _i64(0, 0, 1, 1, 0, 0, 1, 1), np.array(0.5, np.float32)], {}),
    ([((2, 3), I64, False), _i64(1, 2, 0, 1)], {"mode": "edge"}),
    ([((2, 4, 4, 3), "uint8", False), _i64(1, 1, 1, 1)], {"mode": "reflect", "axes": (1, 2)}),
    ([((2, 4, 128, 128), F, False), _i64(0, 0, 1, 1, 0, 0, 1, 1)], {}),
]
for _op in ("ArgMax", "ArgMin"):
    EXAMPLES[_op] = [([((2, 3, 4), F, False)], {"axis": -1}),
                     ([((2, 3, 4), F, False)], {"axis": 1, "select_last_index": True}),
                     ([((2, 3, 4), I64, False)], {"axis": 1, "keepdims": False}),
                     ([((64, 32, 64), F, False)], {"axis": 1})]
for _op in ("And", "Or", "Xor"):
    EXAMPLES[_op] = [([((2, 3), "bool", False), ((2, 3), "bool", False)], {})]
for _op in ("LessEqual", "GreaterEqual"):
    EXAMPLES[_op] = [([((2, 3, 4), F, False), ((2, 3, 4), F, False)], {}),
                     ([((2, 3, 4), F, False), ((), F, True)], {})]
for _op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"):
    EXAMPLES[_op] = [([((2, 3, 4), F, False)], {"axes": (-1,)}),
                     ([((2, 3, 4), F, False)], {"axes": (1, 2), "keepdims": False})]
for _op in ("Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Minimum", "Equal", "Less", "Greater"):
    EXAMPLES[_op] = [([((2, 3, 4), F, False), ((2, 3, 4), F, False)], {}),
                     ([((2, 3, 4), F, False), ((4,), F, True)], {}),
                     ([((2, 3, 4), F, False), ((), F, True)], {})]


def _unary_default(op: str) -> list[Example]:
    return [([((2, 3, 4), F, False)], {})]


def _example_graph(op: str, example: Example) -> tuple[Graph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    ins, attrs = example
    inputs, consts, feeds, names = [], {}, {}, []
    for i, spec in enumerate(ins):
        name = f"in{i}"
        names.append(name)
        if isinstance(spec, np.ndarray):
            consts[name] = spec
            continue
        shape, dtype, is_const = spec
        if dtype == "bool":
            arr = rng.random(shape) > 0.5
        elif dtype.startswith("int"):
            arr = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            arr = rng.uniform(0.5, 1.5, size=shape).astype(dtype)
        if is_const:
            consts[name] = arr
        else:
            inputs.append((name, TensorType(dtype, shape)))
            feeds[name] = arr
    outs = ["out"] + [f"out{i}" for i in range(1, SCHEMAS[op].num_outputs)]
    graph = Graph.make(inputs, outs, [Node.make(op, names, outs, attrs)], consts)
    return verify(graph), feeds


def warm(progress: Callable[[str], None] | None = None) -> int:
    """Compile every op's kernels; returns the number of examples run."""
    count = 0
    ops = sorted(SCHEMAS)
    for i, op in enumerate(ops, 1):
        start = time.perf_counter()
        examples = EXAMPLES.get(op) or _unary_default(op)
        for example in examples:
            graph, feeds = _example_graph(op, example)
            build_plan(graph, {k: v.shape for k, v in feeds.items()}).run(feeds)
            count += 1
        if progress:
            progress(f"[{i}/{len(ops)}] {op}: {len(examples)} example(s) "
                     f"in {time.perf_counter() - start:.1f}s")
    return count
