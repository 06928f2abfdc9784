"""Conv2DW8 with compute="int8" (TF Lite's hybrid conv) through the engine's plan vs numpy.

Each case is a one-node graph compiled and run by the engine (verify, optimize, plan, arena),
with the weight, scale and bias as graph constants (which engine.passes.pack turns into a
Conv2DW8Packed node on the packed weight) or as runtime inputs (Conv2DW8 itself). Against
engine.kernels.reference.quant_hybrid_conv (same per-image quantization, exact integer sums,
float32 rescale in the same order) the output agrees to 1e-6 relative (bit for bit here).
Against the float conv of the dequantized weight (float64), the error is the quantization's:
each activation moves by at most half a step, so per output

    |y - conv(x, w * s)| <= 0.5 * img_scale[n] * sum_window |w[..., o] * s[o]| * (1 + 1e-4)
                            + 1e-5 * conv(|x|, |w * s|)

(the window sum taken over the whole kernel, an upper bound at the borders; the second term
and the factor cover float32 rounding).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest

import engine
from engine import Graph, Node, TensorType
from engine.errors import DTypeError, ShapeError, UnsupportedOpError
from engine.executor.binding import binding_for
from engine.executor.bindings import conv as CB
from engine.executor.bindings import quant_hybrid_conv as HB
from engine.ir import schema_for
from engine.kernels import quant_hybrid as QH
from engine.kernels.reference import conv as RC
from engine.kernels.reference import quant_hybrid_conv as R
from tests.unit.kernels.harness import run_op

RTOL = 1e-6


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng([abs(hash(str(key))) % (1 << 32)])


def _weights(rng: np.random.Generator, kh: int, kw: int, c: int,
             o: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = rng.integers(-127, 128, size=(kh, kw, c, o)).astype(np.int8)
    s = (rng.random(o) * 0.02 + 1e-3).astype(np.float32)
    b = rng.normal(size=o).astype(np.float32)
    return w, s, b


def _images(rng: np.random.Generator, n: int, h: int, w: int, c: int) -> np.ndarray:
    # images of different ranges: each gets its own scale
    return (rng.normal(size=(n, h, w, c)) * rng.random((n, 1, 1, 1)) * 4).astype(np.float32)


def _run_engine(x: np.ndarray, w: np.ndarray, s: np.ndarray, b: np.ndarray | None,
                attrs: dict[str, Any], const: bool) -> np.ndarray:
    """One Conv2DW8 node compiled and run as a model."""
    names = ["x", "w", "s"] + (["b"] if b is not None else [])
    arrays = [x, w, s] + ([b] if b is not None else [])
    n_in = 1 if const else len(names)
    inputs = [("x", TensorType("float32", (None, *x.shape[1:])))]
    inputs += [(nm, TensorType(a.dtype.name, a.shape))
               for nm, a in zip(names[1:n_in], arrays[1:n_in], strict=True)]
    consts = dict(zip(names[n_in:], arrays[n_in:], strict=True))
    node = Node.make("Conv2DW8", names, ["y"], {**attrs, "compute": "int8"})
    model = engine.compile_graph(Graph.make(inputs, ["y"], [node], consts))
    assert [n.op for n in model.graph.nodes] == ["Conv2DW8Packed" if const else "Conv2DW8"]
    out = model.run(dict(zip(names[:n_in], arrays[:n_in], strict=True)))["y"]
    return np.asarray(out)


def _attrs(strides: tuple[int, int] = (1, 1), dilations: tuple[int, int] = (1, 1),
           pads: tuple[int, int, int, int] = (0, 0, 0, 0),
           activation: str = "linear") -> dict[str, Any]:
    return {"strides": strides, "dilations": dilations, "pads": pads, "activation": activation}


def _reference(x: np.ndarray, w: np.ndarray, s: np.ndarray, b: np.ndarray | None,
               a: dict[str, Any]) -> np.ndarray:
    return R.conv2d_w8_int8(x, w, s, b, a["strides"], a["dilations"], a["pads"],
                            a["activation"])


# (name, (H, W, C), (KH, KW, O), attrs, bias, weights constant)
CASES: list[tuple[str, tuple[int, int, int], tuple[int, int, int], dict[str, Any], bool,
                  bool]] = [
    ("cnn_conv1", (32, 32, 3), (3, 3, 32), _attrs(activation="relu"), True, True),
    ("cnn_conv2", (15, 15, 32), (3, 3, 64), _attrs(activation="relu"), True, False),
    ("cnn_conv3", (6, 6, 64), (3, 3, 64), _attrs(activation="relu6"), False, True),
    ("resnet_same_s1", (14, 14, 32), (3, 3, 32), _attrs(pads=(1, 1, 1, 1), activation="relu"),
     False, False),
    ("resnet_same_s2", (14, 14, 32), (3, 3, 64), _attrs((2, 2), pads=(0, 1, 0, 1)), True, True),
    ("resnet_s2_sym", (15, 15, 16), (3, 3, 48), _attrs((2, 2), pads=(1, 1, 1, 1),
                                                       activation="relu6"), True, False),
    ("pointwise", (7, 7, 64), (1, 1, 128), _attrs(activation="relu"), True, True),
    ("pointwise_runtime", (5, 6, 32), (1, 1, 40), _attrs(), False, False),
    ("pointwise_s2", (8, 8, 32), (1, 1, 64), _attrs((2, 2)), True, True),
    ("pointwise_c5", (6, 6, 5), (1, 1, 24), _attrs(activation="relu6"), True, True),
    ("dilation2", (12, 12, 8), (3, 3, 16), _attrs(dilations=(2, 2), pads=(2, 2, 2, 2)),
     True, True),
    ("dilation_mixed", (11, 13, 6), (3, 2, 17), _attrs((1, 2), (2, 1), pads=(0, 2, 1, 0),
                                                       activation="relu"), False, False),
    ("dilation_c3", (10, 10, 3), (3, 3, 8), _attrs(dilations=(2, 2), pads=(1, 1, 1, 1)),
     True, True),
    ("c7_span_21", (9, 9, 7), (3, 3, 10), _attrs(pads=(1, 1, 1, 1), activation="relu"),
     True, False),
    ("asym_pads", (9, 10, 12), (2, 3, 33), _attrs((2, 1), pads=(1, 0, 2, 1)), True, True),
]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_reference(case: tuple[Any, ...], batch: int) -> None:
    name, (h, wd, c), (kh, kw, o), attrs, bias, const = case
    rng = _rng("ref", name, batch)
    x = _images(rng, batch, h, wd, c)
    w, s, b = _weights(rng, kh, kw, c, o)
    got = _run_engine(x, w, s, b if bias else None, attrs, const)
    want = _reference(x, w, s, b if bias else None, attrs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


@pytest.mark.parametrize("activation", ["linear", "relu", "relu6", "leaky_relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("const", [True, False])
def test_activation_bias_and_runtime_weights(activation: str, bias: bool, const: bool) -> None:
    rng = _rng("act", activation, bias, const)
    x = _images(rng, 2, 7, 8, 12)
    w, s, b = _weights(rng, 3, 3, 12, 20)
    attrs = _attrs(pads=(1, 1, 1, 1), activation=activation)
    got = _run_engine(x, w, s, b if bias else None, attrs, const)
    want = _reference(x, w, s, b if bias else None, attrs)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "gelu"])
def test_transcendental_activations(activation: str) -> None:
    # float64 activation on both sides, then rounded to float32: within an ulp or so
    rng = _rng("transcendental", activation)
    x = _images(rng, 2, 6, 6, 8)
    w, s, b = _weights(rng, 3, 3, 8, 16)
    attrs = _attrs(activation=activation)
    got = _run_engine(x, w, s, b, attrs, True)
    np.testing.assert_allclose(got, _reference(x, w, s, b, attrs), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("pointwise", "c"), [(False, 32), (True, 32), (False, 3)])
def test_blocks_across_images(monkeypatch: pytest.MonkeyPatch, pointwise: bool, c: int) -> None:
    """Blocks of output rows smaller than an image's and straddling images (the binding's
    block size shrunk so a small batch has many): word and byte patch copies, and the
    1x1 conv reading the quantized image in place."""
    monkeypatch.setattr(HB, "BLOCK_BYTES", 4096)
    rng = _rng("blocks", pointwise, c)
    x = _images(rng, 3, 13, 11, c)
    k = 1 if pointwise else 3
    w, s, b = _weights(rng, k, k, c, 24)
    attrs = _attrs(pads=(0, 0, 0, 0) if pointwise else (1, 1, 1, 1), activation="relu")
    got = _run_engine(x, w, s, b, attrs, True)
    np.testing.assert_allclose(got, _reference(x, w, s, b, attrs), rtol=RTOL, atol=0)


@pytest.mark.parametrize(("pointwise", "c"), [(False, 32), (True, 32), (False, 3)])
@pytest.mark.parametrize("threads", [2, 3])
def test_blocks_over_threads(monkeypatch: pytest.MonkeyPatch, pointwise: bool, c: int,
                             threads: int) -> None:
    """Whole blocks handed to threads (each its own patches and row scales), blocks shrunk
    and the threshold lowered so a small conv has many: the serial path's bits."""
    monkeypatch.setattr(HB, "BLOCK_BYTES", 4096)
    rng = _rng("threads", pointwise, c)
    x = _images(rng, 3, 13, 11, c)
    k = 1 if pointwise else 3
    w, s, b = _weights(rng, k, k, c, 24)
    attrs = _attrs(pads=(0, 0, 0, 0) if pointwise else (1, 1, 1, 1), activation="relu")
    serial = _run_engine(x, w, s, b, attrs, True)
    monkeypatch.setattr(CB, "CONV_PAR_MIN_FMA", 1)
    monkeypatch.setattr(CB, "_threads", lambda: threads)
    split = _run_engine(x, w, s, b, attrs, True)
    assert np.array_equal(split, serial)
    np.testing.assert_allclose(split, _reference(x, w, s, b, attrs), rtol=RTOL, atol=0)


PORTABLE_CASES = [c for c in CASES if c[0] in ("cnn_conv1", "resnet_same_s2", "pointwise",
                                                "dilation_mixed")]


@pytest.mark.parametrize("case", PORTABLE_CASES, ids=[c[0] for c in PORTABLE_CASES])
def test_portable_gemm_matches_reference(monkeypatch: pytest.MonkeyPatch,
                                         case: tuple[Any, ...]) -> None:
    """As on a CPU without AVX-512 VNNI: hybrid_gemm_q runs its portable kernel."""
    monkeypatch.setattr(QH, "HYBRID_AVAILABLE", False)
    name, (h, wd, c), (kh, kw, o), attrs, bias, const = case
    rng = _rng("portable", name)
    x = _images(rng, 2, h, wd, c)
    w, s, b = _weights(rng, kh, kw, c, o)
    got = _run_engine(x, w, s, b if bias else None, attrs, const)
    np.testing.assert_allclose(got, _reference(x, w, s, b if bias else None, attrs),
                               rtol=RTOL, atol=0)


def test_zero_image_gives_bias() -> None:
    rng = _rng("zero")
    x = _images(rng, 3, 8, 8, 16)
    x[1] = 0.0
    w, s, b = _weights(rng, 3, 3, 16, 32)
    attrs = _attrs(pads=(1, 1, 1, 1), activation="relu")
    got = _run_engine(x, w, s, b, attrs, True)
    np.testing.assert_allclose(got, _reference(x, w, s, b, attrs), rtol=RTOL, atol=0)
    np.testing.assert_array_equal(got[1], np.broadcast_to(np.maximum(b, 0), got[1].shape))
    assert np.isfinite(got).all()


BOUND_CASES = [("cnn_conv1", 3, (32, 32, 3), (3, 3, 32), _attrs()),
               ("cnn_conv2", 2, (15, 15, 32), (3, 3, 64), _attrs()),
               ("resnet_same_s2", 2, (14, 14, 32), (3, 3, 64), _attrs((2, 2), pads=(1, 1, 1, 1))),
               ("pointwise", 2, (7, 7, 64), (1, 1, 128), _attrs()),
               ("dilation2", 2, (12, 12, 8), (3, 3, 16), _attrs(dilations=(2, 2),
                                                              pads=(2, 1, 0, 2)))]


@pytest.mark.parametrize("case", BOUND_CASES, ids=[c[0] for c in BOUND_CASES])
def test_error_within_quantization_bound(case: tuple[Any, ...]) -> None:
    name, batch, (h, wd, c), (kh, kw, o), attrs = case
    rng = _rng("bound", name)
    x = _images(rng, batch, h, wd, c)
    w, s, b = _weights(rng, kh, kw, c, o)
    got = _run_engine(x, w, s, b, attrs, True).astype(np.float64)
    wf = w.astype(np.float64) * s.astype(np.float64)
    geo = dict(strides=attrs["strides"], dilations=attrs["dilations"], pads=attrs["pads"])
    want = RC.conv2d(x, wf, b, **geo)
    mag = RC.conv2d(np.abs(x), np.abs(wf), None, **geo)
    _, img_scale = R.quantize_images(x)
    per_o = np.abs(wf).reshape(-1, o).sum(axis=0)
    bound = (0.5 * img_scale.astype(np.float64)[:, None, None, None] * per_o * (1 + 1e-4)
             + 1e-5 * mag)
    err = np.abs(got - want)
    assert np.all(err <= bound), float(np.max(err / bound))
    # the bound is not vacuous: the int8 result is not the float one
    assert err.max() > 0


def test_scratch_is_bounded() -> None:
    """A ResNet conv at batch 32: scratch is the quantized images (a quarter of the input's
    bytes, plus the border) and one block of patches per thread, not an im2col of the whole
    batch."""
    import engine.executor.bindings.quant  # noqa: F401 - registers Conv2DW8

    x_t = TensorType("float32", (32, 56, 56, 64))
    w_t = TensorType("int8", (3, 3, 64, 64))
    s_t, b_t = TensorType("float32", (64,)), TensorType("float32", (64,))
    attrs = schema_for("Conv2DW8").resolve_attrs(
        {"pads": (1, 1, 1, 1), "compute": "int8"}, "Conv2DW8")
    out_t = schema_for("Conv2DW8").infer([x_t, w_t, s_t, b_t], attrs)
    prepared = binding_for("Conv2DW8")(attrs, [x_t, w_t, s_t, b_t], out_t,
                                       [None, None, None, None])
    nbytes = sum(int(np.prod(sh)) * np.dtype(dt).itemsize for sh, dt in prepared.scratch)
    images = 32 * 58 * 58 * 64
    threads = CB._threads()  # the conv is big enough for the threaded blocks
    assert images <= nbytes <= images + threads * (HB.BLOCK_BYTES + (1 << 16))



def _packed_inputs(x: np.ndarray, w: np.ndarray, s: np.ndarray,
                   b: np.ndarray | None) -> tuple[list[np.ndarray], dict[str, Any]]:
    kh, kw, c, o = w.shape
    p = QH.pack(w.reshape(kh * kw * c, o), s)
    attrs = {"kernel_h": kh, "kernel_w": kw, "k": p.k, "n": p.n, "mr": p.mr, "nr": p.nr}
    return [x, p.data, p.colsum, p.scale] + ([b] if b is not None else []), attrs


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("case", PORTABLE_CASES, ids=[c[0] for c in PORTABLE_CASES])
def test_packed_op_with_runtime_inputs(monkeypatch: pytest.MonkeyPatch, case: tuple[Any, ...],
                                       portable: bool) -> None:
    """Conv2DW8Packed's binding wraps whatever packed arrays arrive (here the packed weight
    is a runtime input, colsum and scale constants), on either GEMM kernel."""
    if portable:
        monkeypatch.setattr(QH, "HYBRID_AVAILABLE", False)
    name, (h, wd, c), (kh, kw, o), attrs, bias, _ = case
    rng = _rng("packed_op", name)
    x = _images(rng, 2, h, wd, c)
    w, s, b = _weights(rng, kh, kw, c, o)
    ins, packing = _packed_inputs(x, w, s, b if bias else None)
    (got,) = run_op("Conv2DW8Packed", "quant_hybrid_conv", ins, {**attrs, **packing},
                    const=[False, False, True, True, True][:len(ins)])
    np.testing.assert_allclose(got, _reference(x, w, s, b if bias else None, attrs),
                               rtol=RTOL, atol=0)


def _packed_types(c: int = 3, o: int = 20) -> tuple[list[TensorType], dict[str, Any]]:
    mr, nr = QH.hybrid_tile_shape(o)
    k = 9 * c
    blocks = -(-o // nr)
    types = [TensorType("float32", (None, 8, 8, c)),
             TensorType("int32", (blocks, -(-k // 4), nr)),
             TensorType("int32", (blocks * nr,)), TensorType("float32", (blocks * nr,))]
    return types, {"kernel_h": 3, "kernel_w": 3, "k": k, "n": o, "mr": mr, "nr": nr}


def test_packed_schema_output_shape() -> None:
    schema = schema_for("Conv2DW8Packed")
    types, attrs = _packed_types()
    a = schema.resolve_attrs({**attrs, "strides": (2, 2), "pads": (0, 1, 0, 1)}, "t")
    assert schema.infer(types, a) == [TensorType("float32", (None, 4, 4, 20))]


@pytest.mark.parametrize(("change", "error", "match"), [
    (lambda t, a: (t, {**a, "groups": 3}), UnsupportedOpError, "groups must be 1"),
    (lambda t, a: (t, {**a, "kernel_w": 0}), UnsupportedOpError,
     "kernel_w must be a positive int"),
    (lambda t, a: (t, {**a, "k": 28}), UnsupportedOpError,
     "k must be kernel_h \\* kernel_w \\* channels, got k=28 for a 3x3 window"),
    (lambda t, a: ([TensorType("float32", (None, 8, 8, 4)), *t[1:]], a), ShapeError,
     "input channels \\* kernel_h \\* kernel_w vs attribute k: 36 != 27"),
    (lambda t, a: ([TensorType("float32", (8, 8, 3)), *t[1:]], a), ShapeError,
     "input must have rank 4"),
    (lambda t, a: ([TensorType("float16", (None, 8, 8, 3)), *t[1:]], a), DTypeError,
     "input must be float32"),
    (lambda t, a: ([t[0], TensorType("int32", (1, 6, 32)), *t[2:]], a), ShapeError,
     r"packed weight must have shape \(ceil\(n/nr\), ceil\(k/4\), nr\) = \(1, 7, 32\)"),
    (lambda t, a: ([*t, TensorType("float32", (32,))], a), ShapeError,
     "bias length vs attribute n: 32 != 20"),
    (lambda t, a: ([TensorType("float32", (None, 2, 8, 3)), *t[1:]], a), ShapeError,
     "does not fit input size 2"),
])
def test_packed_schema_rejects(change: Any, error: type[Exception], match: str) -> None:
    schema = schema_for("Conv2DW8Packed")
    types, attrs = change(*_packed_types())
    with pytest.raises(error, match=match):
        schema.infer(types, schema.resolve_attrs(attrs, "Conv2DW8Packed"))


def test_warm_examples_cover_every_variant() -> None:
    """engine.warm runs Conv2DW8Packed on im2col of words and of bytes, the direct 1x1 path,
    and a GEMM of every (row tile, NR) a conv can reach, packed as the pass packs."""
    warm = importlib.import_module("engine.warm")  # engine.warm is also a function's name
    paths, tiles = set(), set()
    for example in warm.EXAMPLES["Conv2DW8Packed"]:
        graph, feeds = warm._example_graph("Conv2DW8Packed", example)  # verifies
        a = graph.nodes[0].attrs
        assert (a["mr"], a["nr"]) == QH.hybrid_tile_shape(a["n"])
        n, h, wd, c = feeds["in0"].shape
        direct = a["kernel_h"] == a["kernel_w"] == 1 and c % 4 == 0
        paths.add("direct" if direct else "words" if c % 4 == 0 else "bytes")
        out = graph.types["out"].shape if graph.types else None
        rows = n * int(out[1]) * int(out[2]) if out else n * h * wd
        tiles.add((min(a["mr"], rows), a["nr"]))
    assert paths == {"direct", "words", "bytes"}
    assert {(m, nr) for n in (16, 32, 48, 64) for mr, nr in [QH.hybrid_tile_shape(n)]
            for m in range(1, mr + 1)} <= tiles
    assert any(ex[1].get("compute") == "int8" for ex in warm.EXAMPLES["Conv2DW8"])
