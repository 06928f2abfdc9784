"""Write the .tflite test models and the reference interpreter's outputs.

    python tests/unit/importers/make_tflite.py OUTDIR

Run in its own process (the tflite tests start it once per session): TensorFlow is slow to
import and clashes with torch in one process. For every model NAME it writes NAME.tflite (made
by tf.lite.TFLiteConverter) and NAME.npz with ``x`` (a batch of inputs) and what
ai_edge_litert's Interpreter returns for them (input resized to that batch) three ways:
``y`` (the default: XNNPACK delegate), ``builtin_y`` (TF Lite's optimized kernels, no
delegate) and ``ref_y`` (TF Lite's reference kernels, which define its integer arithmetic),
with ``ref_t<i>``: the reference run's output of every operator, by tensor index. Weights are random
(seeded) with nonzero biases, so no trained model is needed; the representative datasets are a
few random inputs, so each conversion takes about a second.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The Keras tests pick the torch backend for their own process; this one builds with TF's.
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

BATCH = 3
SEED = 1234


def _init_biases(model: tf.keras.Model, rng: np.random.Generator) -> None:
    """Keras starts biases at zero; random ones make the bias path count in the comparison."""
    for layer in model.layers:
        ws = layer.get_weights()
        if len(ws) == 2:
            ws[1] = rng.normal(0.0, 0.1, ws[1].shape).astype(np.float32)
            layer.set_weights(ws)


def tutorial_cnn(rng: np.random.Generator) -> tf.keras.Model:
    """The TF tutorial CNN (CIFAR-10 shapes)."""
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((32, 32, 3)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10),
    ])
    _init_biases(model, rng)
    return model


def mlp(rng: np.random.Generator) -> tf.keras.Model:
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((20,)),
        layers.Dense(32, activation="relu"),
        layers.Dense(16, activation="tanh"),
        layers.Dense(4, activation="softmax"),
    ])
    _init_biases(model, rng)
    return model


def ops_function(rng: np.random.Generator) -> tf.types.experimental.ConcreteFunction:
    """One small graph touching every other builtin the importer covers."""

    def const(*shape: int, scale: float = 0.3) -> tf.Tensor:
        return tf.constant(rng.normal(0.0, scale, shape).astype(np.float32))

    dw, dw_b = const(3, 3, 4, 2), const(8, scale=0.1)
    cw, cb = const(3, 3, 8, 6), const(6, scale=0.1)
    fc1, fc1_b = const(12, 5), const(5, scale=0.1)
    fc2, fc2_b = const(576, 5, scale=0.05), const(5, scale=0.1)

    @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 4], tf.float32)])
    def ops(x: tf.Tensor) -> tf.Tensor:
        x = tf.pad(x, [[0, 0], [1, 1], [2, 1], [0, 0]])  # PAD -> 18x19
        y = tf.nn.depthwise_conv2d(x, dw, [1, 1, 1, 1], "VALID") + dw_b
        y = tf.nn.relu6(y)  # DEPTHWISE_CONV_2D (multiplier 2) with fused RELU6 -> 16x17x8
        p = tf.nn.avg_pool2d(y, 3, 2, "SAME")  # AVERAGE_POOL_2D, uneven SAME pads -> 8x9x8
        m = tf.pad(y, [[0, 0], [0, 0], [0, 1], [0, 0]])  # PAD not before a conv -> 16x18x8
        m = tf.nn.max_pool2d(m, 2, 2, "VALID")  # MAX_POOL_2D -> 8x9x8
        c = tf.nn.conv2d(p, cw, 2, "SAME") + cb  # CONV_2D stride 2 SAME -> 4x5x6
        s, t = tf.sigmoid(c), tf.nn.relu(tf.tanh(c))  # LOGISTIC, TANH, RELU
        cat = tf.concat([s * t, s + t], axis=-1)  # MUL, ADD, CONCATENATION
        mean = tf.nn.relu6(tf.reduce_mean(cat, axis=[1, 2]))  # MEAN, RELU6
        mean = tf.nn.relu(mean - 0.4)  # SUB with fused RELU
        flat = tf.nn.relu6(tf.reshape(m, [-1, 576]) * 3.0)  # RESHAPE, MUL with fused RELU6
        logits = tf.matmul(mean, fc1) + fc1_b + tf.matmul(flat, fc2) + fc2_b
        return tf.nn.softmax(logits)  # FULLY_CONNECTED, ADD, SOFTMAX

    return ops.get_concrete_function()


def _concrete(model: tf.keras.Model) -> tf.types.experimental.ConcreteFunction:
    spec = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), tf.float32)
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)


def unsupported_function() -> tf.types.experimental.ConcreteFunction:
    """Builtins the importer does not cover (SIN, CUMSUM, STRIDED_SLICE on a tensor)."""

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)])
    def bad(x: tf.Tensor) -> tf.Tensor:
        return tf.math.cumsum(tf.sin(x), axis=1)[:, 1:5] + 1.0

    return bad.get_concrete_function()


def convert(fn: tf.types.experimental.ConcreteFunction, mode: str,
            sample: Callable[[int], np.ndarray], owner: tf.keras.Model | None = None) -> bytes:
    """mode: float | f16 (float16 weights, DEQUANTIZE to float32) | int8 (int8 in and out) |
    int8f (int8 inside, float in and out).
    With ``owner`` (a Keras model) the converter starts from the model itself, and the file
    gets a serving_default SignatureDef; from ``fn`` it gets none."""
    conv = (tf.lite.TFLiteConverter.from_keras_model(owner) if owner is not None
            else tf.lite.TFLiteConverter.from_concrete_functions([fn]))
    if mode == "f16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode != "float":
        def representative() -> Iterator[list[np.ndarray]]:
            for i in range(8):
                yield [sample(i)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if mode == "int8":
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    data: bytes = conv.convert()
    return data


def reference(data: bytes, x: np.ndarray, kind: OpResolverType) -> dict[str, np.ndarray]:
    """The output ``y``; with TF Lite's reference kernels (BUILTIN_REF) also every operator's
    output as ``t<index>``."""
    everything = kind == OpResolverType.BUILTIN_REF
    interp = Interpreter(model_content=data, experimental_op_resolver_type=kind,
                         experimental_preserve_all_tensors=everything)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    out = {"y": np.array(interp.get_tensor(interp.get_output_details()[0]["index"]))}
    if everything:
        for op in interp._get_ops_details():
            for i in op["outputs"]:
                out[f"t{i}"] = np.array(interp.get_tensor(int(i)))
    return out


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    cnn, dense = tutorial_cnn(rng), mlp(rng)
    models = {
        "cnn": (_concrete(cnn), None, lambda r, n: r.uniform(0, 1, (n, 32, 32, 3))),
        "mlp": (_concrete(dense), dense, lambda r, n: r.normal(0, 1, (n, 20))),
        "ops": (ops_function(rng), None, lambda r, n: r.normal(0, 1, (n, 16, 16, 4))),
    }
    only = set(os.environ.get("TFLITE_MODELS", "").split(",")) - {""}
    (outdir / "unsupported.tflite").write_bytes(
        convert(unsupported_function(), "float", lambda i: np.zeros(0)))
    for base, (fn, owner, draw) in models.items():
        for mode in ("float", "int8", "int8f") + (("f16",) if base == "mlp" else ()):
            name = base if mode == "float" else f"{base}_{mode}"
            if only and name not in only:
                continue
            cal = np.random.default_rng(SEED + 1)
            data = convert(fn, mode, lambda i, d=draw, r=cal: d(r, 1).astype(np.float32), owner)
            batch = 256 if base == "mlp" else BATCH  # many rows: rare rounding cases show up
            x = draw(np.random.default_rng(SEED + 2), batch).astype(np.float32)
            if mode == "int8":
                x = np.random.default_rng(SEED + 3).integers(-128, 128, x.shape, dtype=np.int8)
            (outdir / f"{name}.tflite").write_bytes(data)
            runs = {"": OpResolverType.AUTO,
                    "builtin_": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                    "ref_": OpResolverType.BUILTIN_REF}
            arrays = {f"{prefix}{k}": v for prefix, kind in runs.items()
                      for k, v in reference(data, x, kind).items()}
            np.savez(outdir / f"{name}.npz", x=x, **arrays)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_tflite.py OUTDIR")
    main(Path(sys.argv[1]))
