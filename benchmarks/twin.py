"""Build one model twice from the same numpy weights: our IR and an equivalent ONNX model.

Each ``Twin`` method adds one layer to both graphs. Our graph is written as a Keras user (or an
importer) would write it: NHWC images, HWIO conv weights, Dense over the last axis, Keras LSTM
gate order. The ONNX graph uses ONNX's natural layout: NCHW images (OIHW weights), seq-major
LSTM with gate order i, o, f, c. Every value remembers the permutation that takes our tensor to
the ONNX tensor (``V.perm``), so the feeds and outputs are converted outside any timed region
and a Transpose is added to the ONNX graph only where an op needs another layout.

``reference_run`` evaluates our IR with plain numpy (float64): a third, independent opinion
that checks the ONNX twin even when an engine kernel is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

from engine import Graph, Node, TensorType
from engine.ir import schema_for

__all__ = ["V", "Twin", "TwinModel", "reference_run", "OPSET"]

OPSET = 20  # Gelu is a standard op from 20; LayerNormalization from 17
NCHW = (0, 3, 1, 2)
F32 = "float32"
_ONNX_ACT = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "gelu": "Gelu"}


@dataclass(frozen=True)
class V:
    """A value in both graphs: our name and shape, the ONNX name and its permutation."""

    ours: str
    onnx: str
    shape: tuple[int | None, ...]
    perm: tuple[int, ...] | None = None  # onnx tensor == ours.transpose(perm); None: same

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass
class TwinModel:
    """Both graphs of one model plus what converts feeds and outputs between them."""

    name: str
    graph: Graph
    onnx_model: onnx.ModelProto
    input_name: str
    input_shape: tuple[int, ...]  # without the batch
    input_perm: tuple[int, ...] | None
    output_name: str
    output_perm: tuple[int, ...] | None
    onnx_input: str
    onnx_output: str
    meta: dict[str, Any] = field(default_factory=dict)

    def example(self, batch: int, seed: int = 1) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, *self.input_shape)).astype(np.float32)

    def to_onnx(self, x: np.ndarray) -> np.ndarray:
        return x if self.input_perm is None else np.ascontiguousarray(x.transpose(self.input_perm))

    def from_onnx(self, y: np.ndarray) -> np.ndarray:
        if self.output_perm is None:
            return y
        return np.ascontiguousarray(y.transpose(np.argsort(self.output_perm)))


class Twin:
    """Emit the same layers into our IR and into ONNX; weights from one seeded RNG."""

    def __init__(self, name: str, seed: int = 0, dense4: str = "conv", gelu: str = "op") -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.dense4 = dense4  # ONNX form of Dense on an NCHW tensor: "conv" (1x1) | "matmul"
        self.gelu_form = gelu  # ONNX Gelu: "op" (opset 20) | "erf" (Div, Erf, Add, Mul, Mul)
        self._nodes: list[Node] = []
        self._consts: dict[str, np.ndarray] = {}
        self._types: dict[str, TensorType] = {}
        self._inputs: list[tuple[str, TensorType]] = []
        self._onodes: list[onnx.NodeProto] = []
        self._oinits: list[onnx.TensorProto] = []
        self._oinputs: list[onnx.ValueInfoProto] = []
        self._transposed: dict[tuple[str, tuple[int, ...]], str] = {}
        self._count = 0
        self._input: V | None = None

    # ---------------------------------------------------------------- plumbing
    def _fresh(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def weight(self, shape: Sequence[int], scale: float) -> np.ndarray:
        return (self.rng.standard_normal(tuple(shape)) * scale).astype(np.float32)

    def _const(self, arr: np.ndarray, base: str) -> str:
        name = self._fresh(base)
        self._consts[name] = np.ascontiguousarray(arr, dtype=arr.dtype)
        self._types[name] = TensorType(arr.dtype.name, tuple(arr.shape))
        return name

    def _oconst(self, arr: np.ndarray, base: str) -> str:
        name = self._fresh("o_" + base)
        self._oinits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def _ours(self, op: str, inputs: Sequence[str], attrs: Mapping[str, Any] | None = None,
              base: str | None = None) -> tuple[str, tuple[int | None, ...]]:
        schema = schema_for(op)
        resolved = schema.resolve_attrs(dict(attrs or {}), op)
        (out_t,) = schema.infer([self._types[n] for n in inputs], resolved)
        name = self._fresh(base or op.lower())
        self._nodes.append(Node.make(op, inputs, [name], attrs or {}, name=name))
        self._types[name] = out_t
        return name, out_t.shape

    def _on(self, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = self._fresh("o_" + op.lower())
        self._onodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def _as(self, v: V, want: tuple[int, ...] | None) -> str:
        """The ONNX name of ``v`` laid out as ours.transpose(want); adds a Transpose if needed."""
        ident = tuple(range(v.rank))
        have, want = v.perm or ident, want or ident
        if have == want:
            return v.onnx
        key = (v.onnx, want)
        if key not in self._transposed:
            perm = [have.index(q) for q in want]
            self._transposed[key] = self._on("Transpose", [v.onnx], perm=perm)
        return self._transposed[key]

    def _oact(self, name: str, activation: str) -> str:
        if activation == "linear":
            return name
        if activation == "gelu":
            return self._ogelu(name)
        return self._on(_ONNX_ACT[activation], [name])

    def _ogelu(self, name: str) -> str:
        if self.gelu_form == "op":
            return self._on("Gelu", [name])
        # the Erf form onnxruntime's optimizer fuses into its own Gelu kernel
        d = self._on("Div", [name, self._oconst(np.array(math.sqrt(2.0), np.float32), "sqrt2")])
        e = self._on("Erf", [d])
        one = self._on("Add", [e, self._oconst(np.array(1.0, np.float32), "one")])
        m = self._on("Mul", [name, one])
        return self._on("Mul", [m, self._oconst(np.array(0.5, np.float32), "half")])

    # ---------------------------------------------------------------- layers
    def input(self, shape: Sequence[int], perm: tuple[int, ...] | None = None,
              name: str = "x") -> V:
        """A float32 input of shape (batch, *shape); ``perm`` lays it out for ONNX."""
        full: tuple[int | None, ...] = (None, *shape)
        self._inputs.append((name, TensorType(F32, full)))
        self._types[name] = TensorType(F32, full)
        order = perm or tuple(range(len(full)))
        dims = ["N" if full[p] is None else full[p] for p in order]
        oname = "input"
        self._oinputs.append(helper.make_tensor_value_info(oname, TensorProto.FLOAT, dims))
        self._input = V(name, oname, full, perm)
        return self._input

    def image(self, h: int, w: int, c: int) -> V:
        return self.input((h, w, c), NCHW)

    def conv2d(self, x: V, filters: int, kernel: int, strides: int = 1,
               pads: int | tuple[int, int, int, int] = 0, activation: str = "linear",
               bias: bool = True) -> V:
        cin = x.shape[3]
        assert cin is not None
        w = self.weight((kernel, kernel, cin, filters), math.sqrt(2.0 / (kernel * kernel * cin)))
        b = self.weight((filters,), 0.1) if bias else None
        p = (pads,) * 4 if isinstance(pads, int) else tuple(pads)
        attrs: dict[str, Any] = {"strides": (strides, strides), "pads": p}
        if activation != "linear":
            attrs["activation"] = activation
        ins = [x.ours, self._const(w, "kernel")] + ([self._const(b, "bias")] if b is not None
                                                     else [])
        ours, shape = self._ours("Conv2D", ins, attrs, "conv")
        oins = [self._as(x, NCHW), self._oconst(w.transpose(3, 2, 0, 1), "W")]
        if b is not None:
            oins.append(self._oconst(b, "B"))
        oconv = self._on("Conv", oins, kernel_shape=[kernel, kernel], strides=[strides, strides],
                         pads=[p[0], p[2], p[1], p[3]])
        return V(ours, self._oact(oconv, activation), shape, NCHW)

    def maxpool(self, x: V, size: int, stride: int | None = None) -> V:
        s = stride or size
        ours, shape = self._ours("MaxPool2D", [x.ours],
                                 {"pool_size": (size, size), "strides": (s, s)}, "pool")
        o = self._on("MaxPool", [self._as(x, NCHW)], kernel_shape=[size, size], strides=[s, s])
        return V(ours, o, shape, NCHW)

    def batchnorm(self, x: V, epsilon: float = 1e-3) -> V:
        c = x.shape[-1]
        assert c is not None and x.rank == 4
        gamma = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        beta = self.weight((c,), 0.1)
        mean = self.weight((c,), 0.1)
        var = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        names = [self._const(a, n) for a, n in
                 ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var"))]
        ours, shape = self._ours("BatchNorm", [x.ours, *names], {"epsilon": epsilon}, "bn")
        onames = [self._oconst(a, n) for a, n in
                  ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var"))]
        o = self._on("BatchNormalization", [self._as(x, NCHW), *onames], epsilon=epsilon)
        return V(ours, o, shape, NCHW)

    def relu(self, x: V) -> V:
        ours, shape = self._ours("Relu", [x.ours])
        return V(ours, self._on("Relu", [x.onnx]), shape, x.perm)

    def gelu(self, x: V) -> V:
        ours, shape = self._ours("Gelu", [x.ours])
        return V(ours, self._ogelu(x.onnx), shape, x.perm)

    def add(self, a: V, b: V) -> V:
        ours, shape = self._ours("Add", [a.ours, b.ours])
        return V(ours, self._on("Add", [a.onnx, self._as(b, a.perm)]), shape, a.perm)

    def scale(self, x: V, s: float) -> V:
        ours, shape = self._ours("Mul", [x.ours, self._const(np.array(s, np.float32), "scale")])
        o = self._on("Mul", [x.onnx, self._oconst(np.array(s, np.float32), "scale")])
        return V(ours, o, shape, x.perm)

    def global_avg_pool(self, x: V) -> V:
        ours, shape = self._ours("GlobalAvgPool2D", [x.ours], {}, "gap")
        o = self._on("GlobalAveragePool", [self._as(x, NCHW)])
        return V(ours, self._on("Flatten", [o], axis=1), shape)

    def dense(self, x: V, units: int, activation: str = "linear", bias: bool = True) -> V:
        k = x.shape[-1]
        assert k is not None
        gain = 2.0 if activation == "relu" else 1.0
        w = self.weight((k, units), math.sqrt(gain / k))
        b = self.weight((units,), 0.1) if bias else None
        attrs = {"activation": activation} if activation != "linear" else {}
        ins = [x.ours, self._const(w, "kernel")] + ([self._const(b, "bias")] if b is not None
                                                     else [])
        ours, shape = self._ours("Dense", ins, attrs, "dense")
        perm: tuple[int, ...] | None = None
        if x.rank == 4 and x.perm == NCHW and self.dense4 == "conv":
            oins = [x.onnx, self._oconst(w.T.reshape(units, k, 1, 1), "W")]
            if b is not None:
                oins.append(self._oconst(b, "B"))
            o = self._on("Conv", oins, kernel_shape=[1, 1])
            perm = NCHW
        elif x.rank == 2:
            oins = [x.onnx if x.perm is None else self._as(x, None), self._oconst(w, "W")]
            if b is not None:
                oins.append(self._oconst(b, "B"))
            o = self._on("Gemm", oins)
        else:
            o = self._on("MatMul", [self._as(x, None), self._oconst(w, "W")])
            if b is not None:
                o = self._on("Add", [o, self._oconst(b, "B")])
        return V(ours, self._oact(o, activation), shape, perm)

    def layernorm(self, x: V, epsilon: float = 1e-5) -> V:
        c = x.shape[-1]
        assert c is not None
        gamma = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        beta = self.weight((c,), 0.1)
        ours, shape = self._ours("LayerNorm", [x.ours, self._const(gamma, "gamma"),
                                               self._const(beta, "beta")],
                                 {"epsilon": epsilon}, "ln")
        o = self._on("LayerNormalization", [self._as(x, None), self._oconst(gamma, "gamma"),
                                            self._oconst(beta, "beta")],
                     axis=-1, epsilon=epsilon)
        return V(ours, o, shape)

    def reshape(self, x: V, shape: Sequence[int]) -> V:
        ours, out = self._ours("Reshape", [x.ours], {"shape": tuple(shape)})
        o = self._on("Reshape", [self._as(x, None),
                                 self._oconst(np.array(shape, np.int64), "shape")])
        return V(ours, o, out)

    def transpose(self, x: V, perm: Sequence[int]) -> V:
        ours, out = self._ours("Transpose", [x.ours], {"perm": tuple(perm)})
        o = self._on("Transpose", [self._as(x, None)], perm=list(perm))
        return V(ours, o, out)

    def matmul(self, a: V, b: V) -> V:
        ours, out = self._ours("MatMul", [a.ours, b.ours])
        return V(ours, self._on("MatMul", [self._as(a, None), self._as(b, None)]), out)

    def softmax(self, x: V, axis: int = -1) -> V:
        ours, out = self._ours("Softmax", [x.ours], {"axis": axis})
        return V(ours, self._on("Softmax", [self._as(x, None)], axis=axis), out)

    def lstm(self, x: V, units: int) -> V:
        """Keras LSTM returning the last h; the ONNX twin wants x seq-major, (T, N, F)."""
        f = x.shape[2]
        assert f is not None
        kernel = self.weight((f, 4 * units), math.sqrt(1.0 / f))
        recurrent = self.weight((units, 4 * units), math.sqrt(1.0 / units))
        bias = self.weight((4 * units,), 0.1)
        ins = [x.ours, self._const(kernel, "kernel"), self._const(recurrent, "recurrent"),
               self._const(bias, "bias")]
        ours, out = self._ours("LSTM", ins, {}, "lstm")
        # Keras blocks i, f, c, o -> ONNX i, o, f, c
        order = [0, 3, 1, 2]

        def regate(m: np.ndarray) -> np.ndarray:
            blocks = np.split(m, 4, axis=-1)
            return np.concatenate([blocks[g] for g in order], axis=-1)

        w = regate(kernel).T[None]  # (1, 4U, F)
        r = regate(recurrent).T[None]  # (1, 4U, U)
        b = np.concatenate([regate(bias), np.zeros(4 * units, np.float32)])[None]  # (1, 8U)
        xs = self._as(x, (1, 0, 2))
        out_name = self._fresh("o_lstm_h")
        self._onodes.append(helper.make_node(
            "LSTM", [xs, self._oconst(w, "W"), self._oconst(r, "R"), self._oconst(b, "B")],
            ["", out_name], name=out_name, hidden_size=units))
        o = self._on("Squeeze", [out_name, self._oconst(np.array([0], np.int64), "axes")])
        return V(ours, o, out)

    # ---------------------------------------------------------------- result
    def build(self, out: V, **meta: Any) -> TwinModel:
        assert self._input is not None
        ours_out = self._fresh("y")
        # rename our last value to a stable output name with an Identity-free rewrite
        nodes = list(self._nodes)
        last = nodes[-1]
        assert last.outputs == (out.ours,), "the output must be the last layer added"
        nodes[-1] = Node(last.op, last.inputs, (ours_out,), last.attrs, last.name)
        graph = Graph.make(self._inputs, [ours_out], nodes, self._consts)
        order = out.perm or tuple(range(out.rank))
        dims = ["N" if out.shape[p] is None else out.shape[p] for p in order]
        ograph = helper.make_graph(
            self._onodes, self.name, self._oinputs,
            [helper.make_tensor_value_info(out.onnx, TensorProto.FLOAT, dims)],
            self._oinits)
        model = helper.make_model(ograph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="numbaserve-benchmarks")
        model.ir_version = 10
        onnx.checker.check_model(model)
        shape = tuple(int(d) for d in self._input.shape[1:] if d is not None)
        return TwinModel(self.name, graph, model, self._input.ours, shape, self._input.perm,
                         ours_out, out.perm, self._input.onnx, out.onnx, dict(meta))


# -------------------------------------------------------------------- numpy reference
def _act(y: np.ndarray, name: str) -> np.ndarray:
    if name == "linear":
        return y
    if name == "relu":
        return np.maximum(y, 0.0)
    if name == "gelu":
        return _gelu(y)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-y))
    if name == "tanh":
        return np.tanh(y)
    raise NotImplementedError(name)


def _gelu(y: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * y * (1.0 + erf(y / math.sqrt(2.0)))


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, a: Mapping[str, Any]) -> np.ndarray:
    assert a["groups"] == 1 and tuple(a["dilations"]) == (1, 1)
    pt, pb, pl, pr = a["pads"]
    sh, sw = a["strides"]
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    kh, kw = w.shape[:2]
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # N,OH,OW,C,KH,KW
    y = np.einsum("nhwcij,ijco->nhwo", win, w, optimize=True)
    return _act(y + (0.0 if b is None else b), a["activation"])


def _reshape(x: np.ndarray, target: Sequence[int]) -> np.ndarray:
    shape = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return x.reshape(shape)


def _lstm(x: np.ndarray, k: np.ndarray, r: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    n, t, _ = x.shape
    u = r.shape[0]
    h = np.zeros((n, u))
    c = np.zeros((n, u))
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    for step in range(t):
        z = x[:, step] @ k + h @ r + (0.0 if b is None else b)
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
    return h


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_REF: dict[str, Callable[..., np.ndarray]] = {
    "Conv2D": lambda a, x, w, b=None: _conv(x, w, b, a),
    "MaxPool2D": lambda a, x: sliding_window_view(x, tuple(a["pool_size"]), axis=(1, 2))[
        :, :: a["strides"][0], :: a["strides"][1]].max(axis=(-2, -1)),
    "BatchNorm": lambda a, x, g, b, m, v: (x - m) / np.sqrt(v + a["epsilon"]) * g + b,
    "Relu": lambda a, x: np.maximum(x, 0.0),
    "Gelu": lambda a, x: _gelu(x),
    "Add": lambda a, x, y: x + y,
    "Mul": lambda a, x, y: x * y,
    "GlobalAvgPool2D": lambda a, x: x.mean(axis=(1, 2), keepdims=a["keepdims"]),
    "Dense": lambda a, x, w, b=None: _act(x @ w + (0.0 if b is None else b), a["activation"]),
    "MatMul": lambda a, x, y: x @ y,
    "LayerNorm": lambda a, x, g, b=None: (x - x.mean(-1, keepdims=True))
    / np.sqrt(x.var(-1, keepdims=True) + a["epsilon"]) * g + (0.0 if b is None else b),
    "Reshape": lambda a, x: _reshape(x, a["shape"]),
    "Transpose": lambda a, x: x.transpose(a["perm"]),
    "Softmax": lambda a, x: _softmax(x, a["axis"]),
    "LSTM": lambda a, x, k, r, b=None: _lstm(x, k, r, b),
}


def reference_run(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate our IR op by op in float64 numpy (only the ops the benchmark models use)."""
    env: dict[str, np.ndarray] = {k: np.asarray(v, np.float64) for k, v in feeds.items()}
    env.update({k: np.asarray(v, np.float64) for k, v in graph.constants.items()})
    for node in graph.nodes:
        if node.op == "LayerNorm":
            assert node.attr("axis", -1) == -1
        attrs = schema_for(node.op).resolve_attrs(node.attrs, node.op)
        (out,) = node.outputs
        env[out] = _REF[node.op](attrs, *(env[n] for n in node.inputs))
    return {name: env[name] for name in graph.outputs}
