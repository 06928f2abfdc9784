"""The saved-model format: round trip, and one specific error for each kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import engine
from engine import Graph, Node, TensorType
from engine.errors import (
    ChecksumError,
    GraphError,
    ModelFormatError,
    ShapeError,
    UnsupportedOpError,
)
from tests.unit.graphs import dense_graph, mlp_reference


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return engine.save(tmp_path / "m" / "1", dense_graph())


def _edit_json(path: Path, fn) -> None:
    doc = json.loads((path / "model.json").read_text())
    fn(doc)
    (path / "model.json").write_text(json.dumps(doc))


def test_round_trip_matches_reference(saved: Path) -> None:
    model = engine.load(saved)
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    out = model.run({"x": x})["y"]
    np.testing.assert_allclose(out, mlp_reference(dense_graph(), x), rtol=1e-5, atol=1e-5)
    sig = model.signatures["serving_default"]
    assert sig.inputs["x"].shape == (None, 4)
    assert sig.outputs["y"].shape == (None, 3)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="not a directory"):
        engine.load(tmp_path / "nope")


def test_missing_model_json(saved: Path) -> None:
    (saved / "model.json").unlink()
    with pytest.raises(ModelFormatError, match=r"model\.json: not found"):
        engine.load(saved)


def test_bad_json(saved: Path) -> None:
    (saved / "model.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        engine.load(saved)


def test_wrong_format_tag(saved: Path) -> None:
    _edit_json(saved, lambda d: d.update(format="other/9"))
    with pytest.raises(ModelFormatError, match="format is 'other/9'"):
        engine.load(saved)


def test_unknown_op(saved: Path) -> None:
    _edit_json(saved, lambda d: d["graph"]["nodes"][1].update(op="Frobnicate"))
    with pytest.raises(UnsupportedOpError, match="unknown op 'Frobnicate'") as info:
        engine.load(saved)
    assert "model.json" in str(info.value)


def test_unknown_attribute(saved: Path) -> None:
    _edit_json(saved, lambda d: d["graph"]["nodes"][0].update(attrs={"colour": "red"}))
    with pytest.raises(UnsupportedOpError, match="no attribute"):
        engine.load(saved)


def test_shape_mismatch(tmp_path: Path) -> None:
    g = Graph.make(
        [("x", TensorType("float32", (None, 4)))],
        ["y"],
        [Node.make("Dense", ["x", "w"], ["y"])],
        {"w": np.zeros((5, 3), np.float32)},
    )
    path = tmp_path / "1"
    path.mkdir()
    # save() verifies, so write the bad graph by editing a good one
    good = engine.save(tmp_path / "good", dense_graph())
    _edit_json(good, lambda d: d["graph"]["inputs"][0].update(shape=[None, 5]))
    with pytest.raises(ShapeError, match="Dense input features vs weight rows"):
        engine.load(good)
    with pytest.raises(ShapeError):
        engine.save(path, g)


def test_undefined_value(saved: Path) -> None:
    _edit_json(saved, lambda d: d["graph"]["nodes"][1].update(inputs=["ghost"]))
    with pytest.raises(GraphError, match="'ghost' is not defined"):
        engine.load(saved)


def test_checksum_mismatch(saved: Path) -> None:
    wfile = saved / "weights.safetensors"
    blob = bytearray(wfile.read_bytes())
    blob[-1] ^= 0xFF  # same size, still parses, different bytes
    wfile.write_bytes(bytes(blob))
    with pytest.raises(ChecksumError, match="does not match"):
        engine.load(saved)


def test_truncated_weights(saved: Path) -> None:
    wfile = saved / "weights.safetensors"
    wfile.write_bytes(wfile.read_bytes()[:-7])
    with pytest.raises(ModelFormatError, match="truncated or corrupt") as info:
        engine.load(saved)
    assert not isinstance(info.value, ChecksumError)


def test_missing_weights_file(saved: Path) -> None:
    (saved / "weights.safetensors").unlink()
    with pytest.raises(ModelFormatError, match=r"weights\.safetensors: not found"):
        engine.load(saved)


def test_constant_missing_from_weights(saved: Path) -> None:
    _edit_json(saved, lambda d: d["graph"]["constants"].append("extra"))
    with pytest.raises(ModelFormatError, match=r"\['extra'\].*missing"):
        engine.load(saved)


def test_signature_naming_unknown_tensor(saved: Path) -> None:
    def edit(d):
        d["signatures"]["serving_default"]["outputs"]["y"]["name"] = "nothing"

    _edit_json(saved, edit)
    with pytest.raises(ModelFormatError, match="unknown tensor 'nothing'"):
        engine.load(saved)


def test_save_refuses_non_empty_dir(saved: Path) -> None:
    with pytest.raises(FileExistsError):
        engine.save(saved, dense_graph())
    assert not any(p.name.endswith(".partial") for p in saved.parent.iterdir())


def test_weights_get_the_same_mode_as_model_json(saved: Path) -> None:
    """Readable by whoever may read model.json (a server running as another user)."""
    mode = (saved / "model.json").stat().st_mode & 0o777
    assert (saved / "weights.safetensors").stat().st_mode & 0o777 == mode
