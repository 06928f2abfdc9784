"""Quantized versions against float32: size, speed (same run) and accuracy change.

    .venv/bin/python -m benchmarks.quantization [--quick] [--models seed,resnet,bert]
        [--modes int8,int8-float,float16,int8-full] [--write docs/quantization.md]

seed: the bundled models/seed_cnn/2 on the sklearn digits test split (accuracy and top-1
agreement against the labels); resnet and bert: benchmarks/models.py's residual CNN and
transformer encoder with seeded random weights, on random normal inputs (output differences
and, for the 10-class resnet, top-1 agreement). Every number comes from ``engine.convert``'s
report (medians of interleaved runs in one process). ``--quick`` shrinks bert (seq 32).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import engine
from benchmarks import models as M

ROOT = Path(__file__).resolve().parents[1]
# mode -> (weights, activations, compute); "int8" is what `--weights int8` gives by default
_MODES: dict[str, tuple[str, str, str | None]] = {
    "int8": ("int8", "float32", "int8"), "int8-float": ("int8", "float32", "float32"),
    "float16": ("float16", "float32", None), "int8-full": ("int8", "int8", None)}


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.kron(d.images.astype(np.float32) / 16.0, np.ones((1, 4, 4), np.float32))
    x = np.repeat(x[..., None], 3, axis=-1)  # as tools/train_models.py
    xtr, xte, _, yte = train_test_split(x, d.target, test_size=0.25, random_state=0)
    return xtr, xte, yte


def _source(name: str, tmp: Path, quick: bool) -> tuple[Path, np.ndarray, np.ndarray | None]:
    """(version dir, sample inputs, labels or None)."""
    if name == "seed":
        xtr, xte, yte = _digits()
        np.savez(tmp / "seed_cal.npz", input_1=xtr[:256])
        return ROOT / "models" / "seed_cnn" / "2", xte, yte
    twin = M.resnet() if name == "resnet" else M.bert(seq=32 if quick else 128)
    path = tmp / name / "1"
    engine.save(path, twin.graph)
    x = twin.example(64)
    (alias,) = engine.load(path).signature().inputs
    np.savez(tmp / f"{name}_cal.npz", **{alias: x})
    return path, x, None


def run(models: list[str], modes: list[str], quick: bool) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in models:
            src, x, labels = _source(name, tmp, quick)
            sig = engine.load(src).signature()
            (alias,) = sig.inputs
            np.savez(tmp / f"{name}_samples.npz", **{alias: x})
            for mode in modes:
                if mode == "int8-full" and name != "seed":
                    continue  # full int8 keeps attention/normalization in float: seed only
                weights, acts, compute = _MODES[mode]
                dest = tmp / f"{name}-{mode}" / "1"
                report = engine.convert(src, dest, weights=weights, activations=acts,
                                        compute=compute,
                                        calibration=tmp / f"{name}_cal.npz"
                                        if acts == "int8" else None,
                                        samples=tmp / f"{name}_samples.npz")
                row: dict[str, Any] = {"model": name, "mode": mode, "report": report}
                if labels is not None:
                    before, after = engine.load(src), engine.load(dest)
                    row["acc_before"] = float(np.mean(before.predict(x).argmax(1) == labels))
                    row["acc_after"] = float(np.mean(after.predict(x).argmax(1) == labels))
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    r = row["report"]
    (out,) = [v for v in r["outputs"].values() if isinstance(v, dict)]
    acc = (f"{row['acc_before']:.2%} -> {row['acc_after']:.2%}" if "acc_before" in row
           else "n/a (random inputs)")
    top1 = f"{out['top1_agreement']:.2%}" if "top1_agreement" in out else "n/a"
    s1, s32 = r["speed"]["batch_1"], r["speed"]["batch_32"]
    return (f"| {row['model']} | {row['mode']} | {r['size']['weights_file_bytes']['ratio']:.3f} | "
            f"{r['size']['in_memory_weight_bytes']['ratio']:.3f} | {s1['speedup']:.2f} | "
            f"{s32['speedup']:.2f} | {acc} | {top1} | {out['max_abs_diff']:.3g} |")


HEADER = ("| model | mode | file size ratio | in-memory ratio | speed ratio b1 | speed ratio b32 "
          "| accuracy (float -> converted) | top-1 agreement | max abs diff |\n"
          "|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="seed,resnet,bert")
    p.add_argument("--modes", default="int8,int8-float,float16,int8-full",
                   help=f"comma-separated, of {', '.join(_MODES)}")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--write", default=None, metavar="FILE.md",
                   help="replace the table between the markers in this file")
    ns = p.parse_args(argv)
    print(HEADER)
    rows = run(ns.models.split(","), ns.modes.split(","), ns.quick)
    if ns.write:
        path = Path(ns.write)
        text = path.read_text()
        start, end = "<!-- quantization-table -->", "<!-- /quantization-table -->"
        cmd = "python -m benchmarks.quantization " + " ".join(argv or sys.argv[1:])
        table = "\n".join([start, f"`{cmd.strip()}`", "", HEADER, *map(_line, rows), end])
        head, rest = text.split(start, 1)
        path.write_text(head + table + rest.split(end, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
