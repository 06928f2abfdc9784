"""Models exported by PyTorch (torch.onnx.export, TorchScript exporter, opset 17 unless the
name says otherwise; see benchmarks/imported_models.py) load with ``engine.load`` and match
onnxruntime on the same file, at several batch sizes and sequence lengths. Tolerances: 1e-4
relative for the CNN and the RNNs, 1e-3 for the BERT encoder (longer float32 reduction chains:
2 x (attention + FFN + LayerNorm)); see ``rel_error`` for the measure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import engine
from benchmarks.imported_models import EXPORTS
from engine.errors import UnsupportedOpError
from tests.conformance.torch_models import (  # noqa: F401  (the fixtures by their names)
    exported_fixture,
    loaded_fixture,
    reference_fixture,
    rel_error,
    version_dir,
)

CNN_TOL = 1e-4
ENCODER_TOL = 1e-3

# Models the importer cannot load yet, with the reason. strict: when the importer learns the
# op, the XPASS fails the run so the entry is removed and the case guards the fix.
KNOWN_GAPS: dict[str, str] = {}


def _marks(name: str) -> list[Any]:
    if name not in KNOWN_GAPS:
        return []
    return [pytest.mark.xfail(raises=UnsupportedOpError, reason=KNOWN_GAPS[name], strict=True)]


def _case(name: str, batch: int, seq: int | None, tol: float) -> Any:
    return pytest.param(name, batch, seq, tol, marks=_marks(name),
                        id=f"{name}-b{batch}" + (f"-s{seq}" if seq else ""))


# (model, batch, seq or None, tolerance)
CASES: list[Any] = [
    *[_case("resnet18_64", b, None, CNN_TOL) for b in (1, 2, 5)],
    *[_case("resnet18_bn_64", b, None, CNN_TOL) for b in (1, 2)],
    *[_case("resnet18_224", b, None, CNN_TOL) for b in (1, 2, 5)],
    *[_case(m, b, s, CNN_TOL) for m in ("lstm_tokens", "lstm_float") for s in (7, 32)
      for b in (1, 2, 5)],
    *[_case("gru_tokens", b, s, CNN_TOL) for s, b in ((7, 1), (32, 5))],
    *[_case("bert", b, s, ENCODER_TOL) for s in (7, 32) for b in (1, 2, 5)],
    _case("bert", 1, 128, ENCODER_TOL),
    *[_case(m, b, s, ENCODER_TOL) for m in ("bert_eager", "bert_2in", "bert_opset14",
                                            "bert_opset20") for s, b in ((7, 2), (32, 5))],
]


def _check(model: engine.Model, sess: Any, name: str, batch: int, seq: int | None,
           tol: float) -> None:
    spec = EXPORTS[name]
    feeds = spec.feeds(batch, seq, 1)
    ours = model.run(feeds)
    want = dict(zip(spec.outputs, sess.run(list(spec.outputs), feeds), strict=True))
    assert sorted(ours) == sorted(want), f"output names {sorted(ours)}, expected {sorted(want)}"
    for out, ref in want.items():
        assert ours[out].shape == ref.shape, f"{out}: shape {ours[out].shape} != {ref.shape}"
        err = rel_error(ours[out], ref)
        assert err <= tol, f"{name} b{batch} seq {seq} {out}: rel error {err:.3g} > {tol}"


@pytest.mark.parametrize(("name", "batch", "seq", "tol"), CASES)
def test_matches_onnxruntime(name: str, batch: int, seq: int | None, tol: float,
                             loaded: Callable[[str], engine.Model],
                             reference: Callable[[str], Any]) -> None:
    _check(loaded(name), reference(name), name, batch, seq, tol)


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in (
    "resnet18_64", "lstm_tokens", "lstm_float", "bert", "bert_2in")])
def test_signature_keeps_onnx_names(name: str, loaded: Callable[[str], engine.Model]) -> None:
    spec = EXPORTS[name]
    sig = loaded(name).signature()
    assert sorted(sig.inputs) == sorted(spec.feeds(1, 4, 0))
    assert sorted(sig.outputs) == sorted(spec.outputs)


@pytest.mark.parametrize(("name", "seq", "tol"), [
    ("resnet18_64", None, CNN_TOL),
    ("lstm_tokens", 11, CNN_TOL),
    ("bert", 19, ENCODER_TOL),
])
def test_version_directory(name: str, seq: int | None, tol: float, tmp_path: Path,
                           exported: Callable[[str], Path],
                           reference: Callable[[str], Any]) -> None:
    """A version directory holding model.onnx loads like our own format does."""
    model = engine.load(version_dir(exported(name), tmp_path, name))
    _check(model, reference(name), name, 3, seq, tol)
