"""The seed CNN (README's model): built with engine.layers, saved, loaded and run by the
engine, compared with an independent numpy forward pass to rtol = atol = 1e-4."""

from __future__ import annotations

import numpy as np

import engine
from engine.layers import Conv2D, Dense, Input, MaxPooling2D, Sequential

TOL = {"rtol": 1e-4, "atol": 1e-4}


def seed_model() -> Sequential:
    return Sequential([
        Input((32, 32, 3)),
        Conv2D(32, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"),
        Dense(64, activation="relu"),  # no Flatten: Dense applies to the last axis
    ])


def conv_valid_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 'valid' conv as one einsum over all patches (float64), then bias and relu."""
    kh, kw = w.shape[:2]
    n, h, wd, c = x.shape
    oh, ow = h - kh + 1, wd - kw + 1
    patches = np.stack([x[:, i:i + oh, j:j + ow, :] for i in range(kh) for j in range(kw)],
                       axis=3).reshape(n, oh, ow, kh, kw, c)
    return np.maximum(np.einsum("nyxijc,ijco->nyxo", patches, w) + b, 0.0)


def maxpool2(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2  # 'valid': a trailing odd row/column is dropped
    return x[:, :h2 * 2, :w2 * 2].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))


def forward(x: np.ndarray, ws: list[np.ndarray]) -> np.ndarray:
    y = maxpool2(conv_valid_relu(x, ws[0], ws[1]))
    y = maxpool2(conv_valid_relu(y, ws[2], ws[3]))
    y = conv_valid_relu(y, ws[4], ws[5])
    return np.maximum(np.tensordot(y, ws[6], axes=([-1], [0])) + ws[7], 0.0)


def test_seed_model_save_load_run_matches_numpy(tmp_path):
    m = seed_model()
    rng = np.random.default_rng(42)
    shapes = [w.shape for w in m.get_weights()]
    assert shapes == [(3, 3, 3, 32), (32,), (3, 3, 32, 64), (64,), (3, 3, 64, 64), (64,),
                      (64, 64), (64,)]
    ws = [(rng.normal(0, 0.2, s)).astype(np.float32) for s in shapes]
    m.set_weights(ws)
    path = m.save(tmp_path / "seed_cnn" / "1")

    model = engine.load(path)
    sig = model.signature("serving_default")
    assert list(sig.inputs) == ["input_1"]
    spec = sig.inputs["input_1"]
    assert (spec.name, spec.dtype, spec.shape) == ("input_1", "float32", (None, 32, 32, 3))
    assert list(sig.outputs) == ["dense"]
    assert sig.outputs["dense"].shape == (None, 4, 4, 64)

    x = rng.uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    expected = forward(x.astype(np.float64), [w.astype(np.float64) for w in ws])
    assert expected.shape == (4, 4, 4, 64) and (expected > 0).mean() > 0.1  # not all clipped
    out = model.run({"input_1": x})
    assert set(out) == {"dense"} and out["dense"].dtype == np.float32
    np.testing.assert_allclose(out["dense"], expected, **TOL)
    np.testing.assert_allclose(model.predict(x), expected, **TOL)
    np.testing.assert_allclose(m.predict(x), expected, **TOL)
    np.testing.assert_allclose(model.predict(x[:1]), expected[:1], **TOL)  # batch 1
