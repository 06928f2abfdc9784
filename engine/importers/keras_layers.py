"""One Keras layer config -> one ``engine.layers`` layer (plus the tags of its weights).

Every converter reads the options it understands through ``keras_config.Opts``, which reports
each one it cannot honour to a shared ``Problems`` list instead of raising, so one load names
every unsupported layer and option at once. Options that only matter for training
(initializers, regularizers, constraints, dropout rates, momentum) are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.importers.keras_config import Opts, Problems, dtype_policy
from engine.importers.keras_ops import (
    CastingEmbedding,
    Conv1D,
    MergeOp,
    OpLayer,
    Pool1D,
    Rescaling,
    SeparableConv2D,
)
from engine.importers.keras_rnn import CONVERTERS as RNN_CONVERTERS
from engine.importers.keras_rnn import convert_recurrent
from engine.layers import (
    LSTM,
    Activation,
    Add,
    AveragePooling2D,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Layer,
    LayerNormalization,
    MaxPooling2D,
    MultiHeadAttention,
    Multiply,
    Reshape,
    Subtract,
)

__all__ = ["SUPPORTED_LAYERS", "Converted", "convert_layer"]

Converted = tuple[Layer, list[str]]  # the engine layer, its weight tags in Keras order


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    a, b = value
    return int(a), int(b)


# --- converters -------------------------------------------------------------------------------


def _conv_common(o: Opts) -> dict[str, Any]:
    o.channels_last()
    o.only("padding", ("valid", "same"), "valid")
    kw = {"kernel_size": _pair(o.get("kernel_size")), "strides": _pair(o.get("strides", 1)),
          "padding": o.get("padding", "valid"), "dilation_rate": _pair(o.get("dilation_rate", 1)),
          "activation": o.activation(), "use_bias": bool(o.get("use_bias", True))}
    if kw["strides"] != (1, 1) and kw["dilation_rate"] != (1, 1):
        o.bad("strides > 1 together with dilation_rate > 1 is not supported")
    return kw


def _bias(o: Opts, *tags: str) -> list[str]:
    return [*tags, "bias"] if o.get("use_bias", True) else list(tags)


def _conv2d(o: Opts) -> Converted:
    o.falsy("lora_rank", "quantization_config")
    kw = _conv_common(o)
    layer = Conv2D(int(o.get("filters")), groups=int(o.get("groups", 1)), name=o.name, **kw)
    return layer, _bias(o, "kernel")


def _depthwise(o: Opts) -> Converted:
    kw = _conv_common(o)
    layer = DepthwiseConv2D(depth_multiplier=int(o.get("depth_multiplier", 1)), name=o.name, **kw)
    return layer, _bias(o, "depthwise_kernel")


def _separable(o: Opts) -> Converted:
    kw = _conv_common(o)
    act, use_bias = kw.pop("activation"), kw.pop("use_bias")
    dw = DepthwiseConv2D(depth_multiplier=int(o.get("depth_multiplier", 1)), use_bias=False,
                         name=o.name, **kw)
    pw = Conv2D(int(o.get("filters")), 1, activation=act, use_bias=use_bias, name=o.name)
    return SeparableConv2D(dw, pw, name=o.name), _bias(o, "depthwise_kernel", "pointwise_kernel")


def _pool(cls: Callable[..., Layer]) -> Callable[[Opts], Converted]:
    def convert(o: Opts) -> Converted:
        o.channels_last()
        o.only("padding", ("valid", "same"), "valid")
        pool = _pair(o.get("pool_size", 2))
        strides = o.get("strides")
        return cls(pool_size=pool, strides=pool if strides is None else _pair(strides),
                   padding=o.get("padding", "valid"), name=o.name), []
    return convert


def _global_pool(cls: Callable[..., Layer]) -> Callable[[Opts], Converted]:
    def convert(o: Opts) -> Converted:
        o.channels_last()
        return cls(keepdims=bool(o.get("keepdims", False)), name=o.name), []
    return convert


def _dense(o: Opts) -> Converted:
    o.falsy("lora_rank", "quantization_config")
    return (Dense(int(o.get("units")), activation=o.activation(),
                  use_bias=bool(o.get("use_bias", True)), name=o.name), _bias(o, "kernel"))


def _flatten(o: Opts) -> Converted:
    o.channels_last()
    return Flatten(name=o.name), []


def _identity(o: Opts) -> Converted:
    return Dropout(0.0, name=o.name), []


def _one_axis(o: Opts, key: str = "axis", default: int = -1) -> int:
    axis = o.get(key, default)
    if isinstance(axis, list | tuple):
        if len(axis) != 1:
            o.bad(f"{key}={axis!r} is not supported (a single axis only)")
            return default
        axis = axis[0]
    return int(axis)


def _batchnorm(o: Opts) -> Converted:
    o.falsy("renorm", "synchronized_placeholder")
    center, scale = bool(o.get("center", True)), bool(o.get("scale", True))
    layer = BatchNormalization(axis=_one_axis(o), epsilon=float(o.get("epsilon", 1e-3)),
                               center=center, scale=scale, name=o.name)
    tags = (["gamma"] if scale else []) + (["beta"] if center else [])
    return layer, [*tags, "moving_mean", "moving_variance"]


def _layernorm(o: Opts) -> Converted:
    o.falsy("rms_scaling")
    center, scale = bool(o.get("center", True)), bool(o.get("scale", True))
    layer = LayerNormalization(axis=_one_axis(o), epsilon=float(o.get("epsilon", 1e-3)),
                               center=center, scale=scale, name=o.name)
    return layer, (["gamma"] if scale else []) + (["beta"] if center else [])


def _activation(o: Opts) -> Converted:
    return Activation(o.activation(), name=o.name), []


def _relu(o: Opts) -> Converted:
    max_value = o.get("max_value")
    slope = float(o.get("negative_slope", 0.0) or 0.0)
    if float(o.get("threshold", 0.0) or 0.0) != 0.0:
        o.bad(f"threshold={o.get('threshold')!r} is not supported (only 0)")
    if slope and max_value is not None:
        o.bad("negative_slope together with max_value is not supported")
    if slope:
        return OpLayer("LeakyRelu", {"alpha": slope}, name=o.name), []
    if max_value is None:
        return OpLayer("Relu", name=o.name), []
    if float(max_value) == 6.0:
        return OpLayer("Relu6", name=o.name), []
    return OpLayer("Clip", {"min": 0.0, "max": float(max_value)}, name=o.name), []


def _leaky_relu(o: Opts) -> Converted:
    slope = o.get("negative_slope", o.get("alpha", 0.3))
    return OpLayer("LeakyRelu", {"alpha": float(slope)}, name=o.name), []


def _softmax(o: Opts) -> Converted:
    return OpLayer("Softmax", {"axis": _one_axis(o)}, name=o.name), []


def _embedding(o: Opts) -> Converted:
    o.falsy("mask_zero", "quantization_config", "lora_rank")
    layer = CastingEmbedding(int(o.get("input_dim")), int(o.get("output_dim")), name=o.name)
    return layer, ["embeddings"]


def _lstm(o: Opts) -> Converted:
    if o.get("go_backwards"):  # on LSTMSeq with reverse, as a GRU
        return convert_recurrent(o, "LSTM")
    o.only("activation", ("tanh",), "tanh")
    o.only("recurrent_activation", ("sigmoid",), "sigmoid")
    o.falsy("return_state", "stateful", "time_major")
    layer = LSTM(int(o.get("units")), use_bias=bool(o.get("use_bias", True)),
                 return_sequences=bool(o.get("return_sequences", False)), name=o.name)
    return layer, _bias(o, "kernel", "recurrent_kernel")


def _merge(cls: Callable[..., Layer]) -> Callable[[Opts], Converted]:
    def convert(o: Opts) -> Converted:
        return cls(name=o.name), []
    return convert


def _merge_op(op: str, mean: bool = False) -> Callable[[Opts], Converted]:
    def convert(o: Opts) -> Converted:
        return MergeOp(op, mean, name=o.name), []
    return convert


def _concatenate(o: Opts) -> Converted:
    return Concatenate(axis=int(o.get("axis", -1)), name=o.name), []


def _reshape(o: Opts) -> Converted:
    return Reshape([int(d) for d in o.get("target_shape")], name=o.name), []


def _permute(o: Opts) -> Converted:
    dims = [int(d) for d in o.get("dims")]
    return OpLayer("Transpose", {"perm": (0, *dims)}, name=o.name), []


def _rescaling(o: Opts) -> Converted:
    return Rescaling(o.get("scale", 1.0), o.get("offset", 0.0), name=o.name), []


def _int(value: Any) -> int:
    return int(value[0]) if isinstance(value, list | tuple) else int(value)


def _conv1d(o: Opts) -> Converted:
    o.channels_last()
    o.falsy("lora_rank", "quantization_config")
    padding = o.only("padding", ("valid", "same", "causal"), "valid")
    strides, dilation = _int(o.get("strides", 1)), _int(o.get("dilation_rate", 1))
    if strides != 1 and dilation != 1:
        o.bad("strides > 1 together with dilation_rate > 1 is not supported")
    layer = Conv1D(int(o.get("filters")), _int(o.get("kernel_size")), strides, padding,
                   dilation, int(o.get("groups", 1)), o.activation(),
                   bool(o.get("use_bias", True)), name=o.name)
    return layer, _bias(o, "kernel")


def _pool1d(op: str) -> Callable[[Opts], Converted]:
    def convert(o: Opts) -> Converted:
        o.channels_last()
        padding = o.only("padding", ("valid", "same"), "valid")
        pool = _int(o.get("pool_size", 2))
        strides = o.get("strides")
        return Pool1D(op, pool, pool if strides is None else _int(strides), padding,
                      name=o.name), []
    return convert


def _global_pool1d(op: str) -> Callable[[Opts], Converted]:
    def convert(o: Opts) -> Converted:
        o.channels_last()
        attrs = {"axes": (1,), "keepdims": bool(o.get("keepdims", False))}
        return OpLayer(op, attrs, name=o.name), []
    return convert


def _attention(o: Opts) -> Converted:
    o.falsy("use_gate", "sliding_window")
    if o.get("attention_axes") not in (None, 1, [1], (1,)):
        o.bad(f"attention_axes={o.get('attention_axes')!r} is not supported (only axis 1)")
    use_bias = bool(o.get("use_bias", True))
    layer = MultiHeadAttention(int(o.get("num_heads")), int(o.get("key_dim")),
                               o.get("value_dim"), use_bias=use_bias,
                               output_shape=o.get("output_shape"), name=o.name)
    tags = [f"{part}/{w}" for part in ("query", "key", "value", "attention_output")
            for w in ("kernel", "bias") if w == "kernel" or use_bias]
    return layer, tags


_CONVERTERS: dict[str, Callable[[Opts], Converted]] = {
    "Conv1D": _conv1d,
    "MaxPooling1D": _pool1d("MaxPool2D"),
    "AveragePooling1D": _pool1d("AvgPool2D"),
    "GlobalAveragePooling1D": _global_pool1d("ReduceMean"),
    "GlobalMaxPooling1D": _global_pool1d("ReduceMax"),
    "MultiHeadAttention": _attention,
    "Conv2D": _conv2d,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv2D": _separable,
    "MaxPooling2D": _pool(MaxPooling2D),
    "AveragePooling2D": _pool(AveragePooling2D),
    "GlobalAveragePooling2D": _global_pool(GlobalAveragePooling2D),
    "GlobalMaxPooling2D": _global_pool(GlobalMaxPooling2D),
    "Dense": _dense,
    "Flatten": _flatten,
    "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "Activation": _activation,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
    "Softmax": _softmax,
    "Embedding": _embedding,
    "LSTM": _lstm,
    "Add": _merge(Add),
    "Subtract": _merge(Subtract),
    "Multiply": _merge(Multiply),
    "Maximum": _merge_op("Maximum"),
    "Minimum": _merge_op("Minimum"),
    "Average": _merge_op("Add", mean=True),
    "Concatenate": _concatenate,
    "Reshape": _reshape,
    "Permute": _permute,
    "Rescaling": _rescaling,
    **RNN_CONVERTERS,
}
# Inference-time identities.
for _name in ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
              "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization"):
    _CONVERTERS[_name] = _identity
_ALIASES = {"Convolution2D": "Conv2D", "Convolution1D": "Conv1D", "MaxPool1D": "MaxPooling1D",
            "AvgPool1D": "AveragePooling1D", "GlobalAvgPool1D": "GlobalAveragePooling1D",
            "GlobalMaxPool1D": "GlobalMaxPooling1D", "MaxPool2D": "MaxPooling2D",
            "AvgPool2D": "AveragePooling2D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
            "GlobalMaxPool2D": "GlobalMaxPooling2D"}

SUPPORTED_LAYERS: tuple[str, ...] = tuple(sorted([*_CONVERTERS, "InputLayer"]))  # + _ALIASES


def convert_layer(class_name: str, name: str, config: Mapping[str, Any],
                  problems: Problems) -> Converted | None:
    """The engine layer for one Keras layer, or None (with the reasons in ``problems``)."""
    converter = _CONVERTERS.get(_ALIASES.get(class_name, class_name))
    if converter is None:
        problems.add(name, class_name, "layer type is not supported")
        return None
    o = Opts(name, class_name, config, problems)
    policy = dtype_policy(config.get("dtype"))
    if policy not in (None, "float32"):
        o.bad(f"dtype policy {policy!r} is not supported (only float32)")
    try:
        converted = converter(o)
    except (KeyError, TypeError, ValueError) as exc:  # a missing or malformed option
        o.bad(f"config is not understood ({type(exc).__name__}: {exc})")
        return None
    return converted if o.ok else None
