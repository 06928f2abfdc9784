"""engine.layers: each layer against a numpy computation written here, weights, naming, save.

Float32 engine vs float64 numpy references: rtol = atol = 1e-4 throughout.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

import engine
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
    Embedding,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    LayerNormalization,
    MaxPooling2D,
    Model,
    MultiHeadAttention,
    Reshape,
    Sequential,
    set_random_seed,
)

TOL = {"rtol": 1e-4, "atol": 1e-4}


# --- numpy references (independent of the engine's graph and kernels) --------------------


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ACT = {
    None: lambda x: x,
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.minimum(np.maximum(x, 0.0), 6.0),
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "softmax": softmax,
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "swish": lambda x: x * sigmoid(x),
}


def tf_same_pads(size, k, s, d=1):
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def conv_ref(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), groups=1):
    """Direct convolution: one einsum per output pixel and group."""
    x = x.astype(np.float64)
    kh, kw, ci, co = w.shape
    if padding == "same":
        (t, bt), (lf, r) = (tf_same_pads(x.shape[1], kh, strides[0], dilation[0]),
                            tf_same_pads(x.shape[2], kw, strides[1], dilation[1]))
        x = np.pad(x, ((0, 0), (t, bt), (lf, r), (0, 0)))
    n, h, wd, _ = x.shape
    eh, ew = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    oh, ow = (h - eh) // strides[0] + 1, (wd - ew) // strides[1] + 1
    out = np.zeros((n, oh, ow, co))
    og = co // groups
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * strides[0], j * strides[1]
            patch = x[:, y0:y0 + eh:dilation[0], x0:x0 + ew:dilation[1], :]
            for g in range(groups):
                out[:, i, j, g * og:(g + 1) * og] = np.einsum(
                    "nhwc,hwco->no", patch[..., g * ci:(g + 1) * ci], w[..., g * og:(g + 1) * og])
    return out if b is None else out + b


def pool_ref(x, k, s, padding, kind):
    x = x.astype(np.float64)
    n, h, w, c = x.shape
    if padding == "same":
        pads = (tf_same_pads(h, k[0], s[0]), tf_same_pads(w, k[1], s[1]))
    else:
        pads = ((0, 0), (0, 0))
    oh = (h + sum(pads[0]) - k[0]) // s[0] + 1
    ow = (w + sum(pads[1]) - k[1]) // s[1] + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * s[0] - pads[0][0], j * s[1] - pads[1][0]
            win = x[:, max(y0, 0):y0 + k[0], max(x0, 0):x0 + k[1], :]  # pads never counted
            out[:, i, j] = win.max(axis=(1, 2)) if kind == "max" else win.mean(axis=(1, 2))
    return out


def dense_ref(x, w, b, act=None):
    return ACT[act](np.tensordot(x.astype(np.float64), w, axes=([-1], [0])) + b)


def layernorm_ref(x, gamma, beta, eps=1e-3):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * gamma + beta


def lstm_ref(x, kernel, rec, bias, return_sequences=False):
    n, t, _ = x.shape
    u = rec.shape[0]
    h, c, hs = np.zeros((n, u)), np.zeros((n, u)), []
    for s in range(t):
        z = x[:, s] @ kernel + h @ rec + bias
        i, f, g, o = (z[:, k * u:(k + 1) * u] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, axis=1) if return_sequences else h


def mha_ref(q_in, v_in, ws, num_heads, key_dim):
    wq, bq, wk, bk, wv, bv, wo, bo = ws
    q = np.einsum("btd,dhk->bthk", q_in, wq) + bq
    k = np.einsum("btd,dhk->bthk", v_in, wk) + bk
    v = np.einsum("btd,dhk->bthk", v_in, wv) + bv
    scores = np.einsum("bqhk,bthk->bhqt", q, k) / math.sqrt(key_dim)
    ctx = np.einsum("bhqt,bthv->bqhv", softmax(scores, -1), v)
    return np.einsum("bqhv,hvd->bqd", ctx, wo) + bo


# --- helpers ------------------------------------------------------------------------------


def randomize(model, seed=1, scale=0.5):
    """Random weights (variances positive); returns them as float64 for the references."""
    rng = np.random.default_rng(seed)
    ws = []
    for name, w in zip(model.weight_names, model.get_weights(), strict=True):
        if name.endswith("moving_variance"):
            ws.append(rng.uniform(0.5, 1.5, w.shape))
        else:
            ws.append(rng.normal(0.0, scale, w.shape))
    model.set_weights(ws)
    return [w.astype(np.float32).astype(np.float64) for w in ws]


def single(layer, shape, dtype="float32", seed=1):
    m = Sequential([Input(shape, dtype=dtype), layer])
    return m, randomize(m, seed)


def image(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --- each layer vs numpy ------------------------------------------------------------------

CONV_CASES = [
    dict(kernel_size=(3, 3)),
    dict(kernel_size=3, padding="same", activation="relu"),
    dict(kernel_size=(3, 2), strides=2, padding="same", activation="relu6"),
    dict(kernel_size=(2, 3), strides=(2, 1), activation="sigmoid"),
    dict(kernel_size=3, dilation_rate=2, padding="same", activation="tanh"),
    dict(kernel_size=1, use_bias=False, activation="leaky_relu"),
    dict(kernel_size=3, groups=2, padding="same", activation="gelu"),
    dict(kernel_size=3, padding="same", activation="softmax"),
    dict(kernel_size=(5, 5), strides=3, padding="same"),
    dict(kernel_size=2, padding="same"),  # odd total padding: the extra row/col goes after
    dict(kernel_size=3, strides=2, padding="same", activation="relu"),
]


@pytest.mark.parametrize("kw", CONV_CASES)
def test_conv2d(kw):
    x = image((2, 9, 10, 4))
    m, ws = single(Conv2D(6, **kw), (9, 10, 4))
    b = ws[1] if kw.get("use_bias", True) else None
    ref = conv_ref(x, ws[0], b, strides=m.layers[0].strides, padding=kw.get("padding", "valid"),
                   dilation=m.layers[0].dilation_rate, groups=kw.get("groups", 1))
    np.testing.assert_allclose(m.predict(x), ACT[kw.get("activation")](ref), **TOL)


def test_same_padding_shapes_follow_tf():
    x = Input((7, 8, 3))
    assert Conv2D(4, 3, strides=2, padding="same")(x).shape == (None, 4, 4, 4)
    assert Conv2D(4, 3, padding="same")(x).shape == (None, 7, 8, 4)
    assert MaxPooling2D(3, strides=2, padding="same")(x).shape == (None, 4, 4, 3)
    assert MaxPooling2D(2)(x).shape == (None, 3, 4, 3)
    assert AveragePooling2D(2, strides=1)(x).shape == (None, 6, 7, 3)
    assert tf_same_pads(6, 3, 2) == (0, 1) and tf_same_pads(5, 3, 2) == (1, 1)


@pytest.mark.parametrize("kw", [dict(kernel_size=3), dict(kernel_size=3, padding="same",
                                depth_multiplier=2, activation="relu"),
                                dict(kernel_size=(3, 3), strides=2, padding="same")])
def test_depthwise_conv2d(kw):
    x = image((2, 8, 7, 3))
    m, (w, b) = single(DepthwiseConv2D(**kw), (8, 7, 3))
    mult = kw.get("depth_multiplier", 1)
    assert w.shape == (3, 3, 3, mult)
    s = m.layers[0].strides
    # depthwise by hand: each channel c convolved with its own (KH, KW, 1, M) filter
    refs = [conv_ref(x[..., c:c + 1], w[:, :, c:c + 1, :], None, s, kw.get("padding", "valid"))
            for c in range(3)]
    ref = np.concatenate(refs, axis=-1) + b  # output channel c * M + m
    np.testing.assert_allclose(m.predict(x), ACT[kw.get("activation")](ref), **TOL)


@pytest.mark.parametrize("layer,kind,k,s,pad", [
    (MaxPooling2D((2, 2)), "max", (2, 2), (2, 2), "valid"),
    (MaxPooling2D(3, strides=2, padding="same"), "max", (3, 3), (2, 2), "same"),
    (AveragePooling2D((2, 2)), "avg", (2, 2), (2, 2), "valid"),
    (AveragePooling2D((3, 2), strides=(2, 1), padding="same"), "avg", (3, 2), (2, 1), "same"),
])
def test_pooling(layer, kind, k, s, pad):
    x = image((2, 7, 8, 3))
    m = Sequential([Input((7, 8, 3)), layer])
    np.testing.assert_allclose(m.predict(x), pool_ref(x, k, s, pad, kind), **TOL)


def test_global_average_pooling():
    x = image((3, 5, 4, 6))
    m = Sequential([Input((5, 4, 6)), GlobalAveragePooling2D()])
    np.testing.assert_allclose(m.predict(x), x.mean(axis=(1, 2)), **TOL)
    assert m.outputs[0].shape == (None, 6)


@pytest.mark.parametrize("act", list(ACT))
def test_dense_activations(act):
    x = image((4, 7))
    m, (w, b) = single(Dense(5, activation=act), (7,))
    np.testing.assert_allclose(m.predict(x), dense_ref(x, w, b, act), **TOL)


def test_dense_on_rank4_applies_to_last_axis():
    x = image((2, 3, 4, 5))
    m, (w, b) = single(Dense(6, activation="relu"), (3, 4, 5))
    assert m.outputs[0].shape == (None, 3, 4, 6)
    np.testing.assert_allclose(m.predict(x), dense_ref(x, w, b, "relu"), **TOL)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "softmax", "gelu", "tanh", "swish"])
def test_activation_layer(act):
    x = image((3, 4, 5))
    m = Sequential([Input((4, 5)), Activation(act)])
    np.testing.assert_allclose(m.predict(x), ACT[act](x.astype(np.float64)), **TOL)


def test_batch_normalization():
    x = image((2, 4, 4, 3))
    m, (g, beta, mean, var) = single(BatchNormalization(), (4, 4, 3))
    ref = (x - mean) / np.sqrt(var + 1e-3) * g + beta
    np.testing.assert_allclose(m.predict(x), ref, **TOL)


def test_layer_normalization():
    x = image((2, 5, 8))
    m, (g, beta) = single(LayerNormalization(), (5, 8))
    np.testing.assert_allclose(m.predict(x), layernorm_ref(x.astype(np.float64), g, beta), **TOL)


def test_embedding():
    idx = np.array([[0, 3, 9], [2, 2, 1]], dtype=np.int32)
    m, (table,) = single(Embedding(10, 4), (3,), dtype="int32")
    assert table.shape == (10, 4)
    assert m.signatures()["serving_default"].inputs["input_1"].dtype == "int32"
    np.testing.assert_allclose(m.predict(idx), table[idx], **TOL)


def test_flatten_reshape_dropout():
    x = image((2, 3, 4, 5))
    m = Sequential([Input((3, 4, 5)), Dropout(0.5), Flatten(), Reshape((4, -1)), Dropout(0.1)])
    assert m.outputs[0].shape == (None, 4, 15)
    np.testing.assert_allclose(m.predict(x), x.reshape(2, 4, 15), **TOL)
    assert [n.op for n in m.to_graph().nodes] == ["Flatten", "Reshape"]  # Dropout: no node
    assert list(m.signatures()["serving_default"].outputs) == ["dropout_1"]


def test_concatenate_and_add():
    a, b = Input((4,)), Input((3,))
    da, db = Dense(3), Dense(3)
    y = Concatenate()([Add()([da(a), db(b)]), b])
    m = Model(inputs=[a, b], outputs=y)
    ws = randomize(m)
    xa, xb = image((2, 4), 1), image((2, 3), 2)
    ref = np.concatenate([dense_ref(xa, *ws[:2]) + dense_ref(xb, *ws[2:]), xb], axis=-1)
    np.testing.assert_allclose(m.predict([xa, xb]), ref, **TOL)
    np.testing.assert_allclose(m.predict({"input_1": xa, "input_2": xb}), ref, **TOL)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_lstm(return_sequences):
    x = image((3, 5, 4))
    m, (k, r, b) = single(LSTM(6, return_sequences=return_sequences), (5, 4))
    assert (k.shape, r.shape, b.shape) == ((4, 24), (6, 24), (24,))
    np.testing.assert_allclose(m.predict(x), lstm_ref(x, k, r, b, return_sequences), **TOL)


def test_lstm_text_model(tmp_path):
    m = Sequential([Embedding(20, 8, input_shape=(6,)), LSTM(5, return_sequences=True),
                    LSTM(4), Dense(3, activation="softmax")])
    ws = randomize(m)
    idx = np.random.default_rng(3).integers(0, 20, size=(4, 6)).astype(np.int32)
    h = lstm_ref(ws[0][idx], *ws[1:4], return_sequences=True)
    ref = dense_ref(lstm_ref(h, *ws[4:7]), *ws[7:], "softmax")
    np.testing.assert_allclose(m.predict(idx), ref, **TOL)
    m.save(tmp_path / "1")
    np.testing.assert_allclose(engine.load(tmp_path / "1").predict(idx), ref, **TOL)


def test_lstm_initial_weights_follow_keras():
    set_random_seed(0)
    m = Sequential([Input((3, 2)), LSTM(4)])
    k, r, b = m.get_weights()
    np.testing.assert_allclose(r @ r.T, np.eye(4), atol=1e-5)  # orthogonal recurrent kernel
    np.testing.assert_array_equal(b, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])


def test_mha_transformer_block(tmp_path):
    d, heads, kd = 16, 4, 8
    x_in = Input((6, d))
    attn = MultiHeadAttention(num_heads=heads, key_dim=kd)(x_in, x_in)
    h = LayerNormalization()(Add()([x_in, attn]))
    f = Dense(d)(Dense(32, activation="gelu")(h))
    out = LayerNormalization()(Add()([h, f]))
    m = Model(inputs=x_in, outputs=out)
    ws = randomize(m, scale=0.3)
    assert [w.shape for w in ws[:8]] == [(d, heads, kd), (heads, kd)] * 3 + [(heads, kd, d), (d,)]
    x = image((3, 6, d))
    h_ref = layernorm_ref(x + mha_ref(x, x, ws[:8], heads, kd), *ws[8:10])
    f_ref = dense_ref(dense_ref(h_ref, *ws[10:12], "gelu"), *ws[12:14])
    ref = layernorm_ref(h_ref + f_ref, *ws[14:16])
    np.testing.assert_allclose(m.predict(x), ref, **TOL)
    m.save(tmp_path / "1")
    np.testing.assert_allclose(engine.load(tmp_path / "1").run({"input_1": x})[
        "layer_normalization_1"], ref, **TOL)


def test_mha_cross_attention_with_key_and_value_dim():
    q_in, v_in = Input((3, 8)), Input((5, 6))
    mha = MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3, output_shape=7)
    m = Model([q_in, v_in], mha(q_in, v_in))
    wq, bq, wk, bk, wv, bv, wo, bo = randomize(m)
    assert (wv.shape, bv.shape, wo.shape, bo.shape) == ((6, 2, 3), (2, 3), (2, 3, 7), (7,))
    q, v = image((2, 3, 8), 1), image((2, 5, 6), 2)
    ref = mha_ref(q, v, [wq, bq, wk, bk, wv, bv, wo, bo], 2, 4)
    np.testing.assert_allclose(m.predict([q, v]), ref, **TOL)


# --- weights ------------------------------------------------------------------------------


def test_weight_shapes_in_keras_order():
    m = Sequential([Input((8, 8, 3)), Conv2D(4, 3), BatchNormalization(),
                    DepthwiseConv2D(3, depth_multiplier=2), Flatten(), Dense(5),
                    LayerNormalization()])
    assert [w.shape for w in m.get_weights()] == [
        (3, 3, 3, 4), (4,), (4,), (4,), (4,), (4,), (3, 3, 4, 2), (8,), (128, 5), (5,), (5,),
        (5,)]
    assert m.weight_names[:6] == ["conv2d/kernel", "conv2d/bias", "batch_normalization/gamma",
                                  "batch_normalization/beta", "batch_normalization/moving_mean",
                                  "batch_normalization/moving_variance"]
    g, beta, mean, var = m.get_weights()[2:6]
    assert (g == 1).all() and (beta == 0).all() and (mean == 0).all() and (var == 1).all()
    assert (m.get_weights()[1] == 0).all() and np.abs(m.get_weights()[0]).max() > 0


def test_get_set_weights_round_trip_and_errors():
    m = Sequential([Input((6,)), Dense(4, activation="relu"), Dense(2)])
    ws = [np.full_like(w, i + 1.0) for i, w in enumerate(m.get_weights())]
    m.set_weights(ws)
    for a, b in zip(m.get_weights(), ws, strict=True):
        np.testing.assert_array_equal(a, b)
    got = m.get_weights()
    got[0][...] = 99.0  # get_weights returns copies
    assert m.get_weights()[0][0, 0] == 1.0
    with pytest.raises(ValueError, match=r"expects 4 weight arrays \(dense: 2, dense_1: 2\)"):
        m.set_weights(ws[:3])
    bad = list(ws)
    bad[2] = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"'dense_1' weight 0 \('kernel'\) expects shape"):
        m.set_weights(bad)
    np.testing.assert_array_equal(m.get_weights()[0], ws[0])  # nothing changed
    with pytest.raises(ValueError, match="dense"):
        m.layers[0].set_weights([ws[0]])


def test_predict_sees_new_weights():
    m = Sequential([Input((3,)), Dense(2)])
    x = image((2, 3))
    m.set_weights([np.ones((3, 2)), np.zeros(2)])
    np.testing.assert_allclose(m.predict(x), x.sum(1, keepdims=True).repeat(2, 1), **TOL)
    m.set_weights([np.ones((3, 2)), np.full(2, 5.0)])
    np.testing.assert_allclose(m.predict(x), x.sum(1, keepdims=True).repeat(2, 1) + 5, **TOL)


def test_set_random_seed_is_deterministic():
    def weights():
        return Sequential([Input((4, 4, 2)), Conv2D(3, 2), Flatten(), Dense(3)]).get_weights()

    set_random_seed(7)
    a = weights()
    set_random_seed(7)
    b = weights()
    set_random_seed(8)
    c = weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    limit = math.sqrt(6 / (2 * 2 * 2 + 2 * 2 * 3))  # glorot_uniform bound
    assert np.abs(a[0]).max() <= limit


# --- building styles, naming, save/load ---------------------------------------------------


def test_add_style_and_input_shape_kwarg():
    m1 = Sequential()
    m1.add(Input((784,)))
    m1.add(Dense(512, activation="relu"))
    m1.add(Dropout(0.2))
    m1.add(Dense(10, activation="softmax"))
    m2 = Sequential([Dense(512, activation="relu", input_shape=(784,)), Dropout(0.2),
                     Dense(10, activation="softmax")])
    m3 = Sequential([Dense(512, activation="relu"), Dense(10, activation="softmax")])
    ws = randomize(m1, scale=0.05)
    m2.set_weights(ws)
    x = image((3, 784))
    ref = dense_ref(dense_ref(x, *ws[:2], "relu"), *ws[2:], "softmax")
    np.testing.assert_allclose(m1.predict(x), ref, **TOL)
    np.testing.assert_allclose(m2.predict(x), ref, **TOL)
    np.testing.assert_allclose(m3.predict(x).sum(axis=1), 1.0, **TOL)  # built on first predict
    assert m3.inputs[0].shape == (None, 784)
    assert [layer.name for layer in m1.layers] == ["dense", "dropout", "dense_1"]


def test_functional_residual_block(tmp_path):
    x = Input((8, 8, 4))
    y = Conv2D(4, 3, padding="same", activation="relu")(x)
    y = Conv2D(4, 3, padding="same")(y)
    z = Activation("relu")(Add()([x, y]))
    out = Dense(2)(GlobalAveragePooling2D()(z))
    m = Model(inputs=x, outputs=out)
    ws = randomize(m)
    xs = image((2, 8, 8, 4))
    r = conv_ref(conv_ref(xs, *ws[:2], padding="same").clip(0), *ws[2:4], padding="same")
    ref = dense_ref(np.maximum(xs + r, 0).mean(axis=(1, 2)), *ws[4:])
    np.testing.assert_allclose(m.predict(xs), ref, **TOL)
    m.save(tmp_path / "1")
    loaded = engine.load(tmp_path / "1")
    np.testing.assert_allclose(loaded.run({"input_1": xs})["dense"], ref, **TOL)


def test_names_are_unique_per_model_and_signature_uses_them():
    a = Input((4,), name="features")
    b = Input((2,))
    h = Dense(3, name="hidden")(a)
    o1 = Dense(1)(h)
    o2 = Dense(2, activation="softmax")(Concatenate()([h, b]))
    m = Model(inputs=[a, b], outputs=[o1, o2])
    assert m.input_names == ["features", "input_1"]
    assert [layer.name for layer in m.layers] == ["hidden", "dense", "concatenate", "dense_1"]
    sig = m.signatures()["serving_default"]
    assert list(sig.inputs) == ["features", "input_1"]
    assert list(sig.outputs) == ["dense", "dense_1"]
    assert sig.outputs["dense_1"].shape == (None, 2)
    outs = m.predict([image((3, 4)), image((3, 2))])
    assert isinstance(outs, list) and [o.shape for o in outs] == [(3, 1), (3, 2)]
    with pytest.raises(ValueError, match="used twice"):
        i = Input((3,))
        Model(i, Dense(2, name="x")(Dense(3, name="x")(i)))


def test_shared_layer_called_twice():
    a, b = Input((3,)), Input((3,))
    shared = Dense(2)
    m = Model([a, b], Add()([shared(a), shared(b)]))
    w, bias = randomize(m)
    assert len(m.get_weights()) == 2
    xa, xb = image((2, 3), 1), image((2, 3), 2)
    np.testing.assert_allclose(m.predict([xa, xb]), dense_ref(xa, w, bias) +
                               dense_ref(xb, w, bias), **TOL)
    assert sum(n.op == "Dense" for n in m.to_graph().nodes) == 2
    assert len(m.to_graph().constants) == 2


def test_save_load_same_outputs(tmp_path):
    m = Sequential([Input((10, 10, 3)), Conv2D(8, 3, padding="same", activation="relu"),
                    BatchNormalization(), MaxPooling2D(), DepthwiseConv2D(3), Flatten(),
                    Dense(4, activation="softmax")])
    randomize(m, scale=0.3)
    x = image((5, 10, 10, 3))
    expected = m.predict(x)
    path = m.save(tmp_path / "cnn" / "1")
    assert (path / "model.json").is_file() and (path / "weights.safetensors").is_file()
    loaded = engine.load(path)
    np.testing.assert_allclose(loaded.predict(x), expected, **TOL)
    np.testing.assert_allclose(loaded.run({"input_1": x})["dense"], expected, **TOL)
    sig = loaded.signature()
    assert sig.inputs["input_1"].shape == (None, 10, 10, 3)
    assert sig.outputs["dense"].shape == (None, 4)


def test_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match="'add'"):
        x = Input((4,))
        Add()([Dense(3)(x), Dense(5)(x)])
    with pytest.raises(ValueError, match="conv2d"):
        Conv2D(2, 5)(Input((3, 3, 1)))
    with pytest.raises(ValueError, match="unknown activation"):
        Dense(2, activation="nope")
    m = Sequential([Input((4,)), Dense(3)])
    with pytest.raises(ValueError, match="disconnected"):
        Model(Input((4,)), Dense(2)(Input((4,))))
    with pytest.raises(engine.errors.ShapeError):
        m.predict(image((2, 5)))
