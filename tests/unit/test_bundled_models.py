"""The bundled models/ load, classify their sample, and keep the accuracy their README states."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import engine

MODELS = Path(__file__).resolve().parents[2] / "models"


def _digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    x = np.asarray(d.images, dtype=np.float32) / 16.0
    x = np.repeat(np.kron(x, np.ones((1, 4, 4), np.float32))[..., None], 3, axis=-1)
    _, xte, _, yte = train_test_split(x, d.target, test_size=0.25, random_state=0)
    return xte, yte


@pytest.mark.parametrize("version", [1, 2])
def test_seed_cnn_accuracy_matches_its_metadata(version: int) -> None:
    path = MODELS / "seed_cnn" / str(version)
    model = engine.load(path)
    recorded = json.loads((path / "model.json").read_text())["metadata"]["test_accuracy"]
    xte, yte = _digits_test_split()
    accuracy = float((model.predict(xte).argmax(-1) == yte).mean())
    assert accuracy == pytest.approx(recorded, abs=1e-3)
    assert accuracy > 0.9


def test_seed_cnn_sample_request_is_classified() -> None:
    body = json.loads((MODELS / "seed_cnn" / "sample_request.json").read_text())
    label = int((MODELS / "seed_cnn" / "sample_label.txt").read_text())
    model = engine.load(MODELS / "seed_cnn" / "2")
    x = np.asarray(body["instances"], dtype=np.float32)
    assert x.shape == (1, 32, 32, 3)
    assert int(model.predict(x).argmax(-1)[0]) == label


def test_mlp_loads_and_outputs_probabilities() -> None:
    model = engine.load(MODELS / "mlp" / "1")
    body = json.loads((MODELS / "mlp" / "sample_request.json").read_text())
    p = model.predict(np.asarray(body["instances"], dtype=np.float32))
    assert p.shape == (2, 10)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)


def test_models_config_lists_every_bundled_model() -> None:
    text = (MODELS / "models.config").read_text()
    for d in MODELS.iterdir():
        if d.is_dir():
            assert f'name: "{d.name}"' in text
