"""``convert``: a saved model version -> a quantized version directory plus its report."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from engine.loader import load, save
from engine.model import Model
from engine.quantize.calibrate import INT8_OPS, calibrate, candidates, quantize_full_int8
from engine.quantize.report import (
    compare_outputs,
    feeds_from_npz,
    random_feeds,
    sizes,
    speed,
    take_batch,
)
from engine.quantize.rewrite import quantize_weights

__all__ = ["REPORT_FILE", "convert", "format_report"]

REPORT_FILE = "assets.extra/convert.json"
_RANDOM_SAMPLES = 64
_CALIBRATION_BATCH = 32


def _calibrated_graph(model: Model, calibration: Path) -> tuple[Any, dict[str, int], int]:
    feeds = feeds_from_npz(calibration, model)
    graph = model.graph
    sig = model.signature()
    tensors = {spec.name: feeds[alias] for alias, spec in sig.inputs.items()}
    n = next(iter(tensors.values())).shape[0]
    names = [t for node in candidates(graph) for t in (node.inputs[0], node.outputs[0])]
    batches = (take_batch(tensors, s, min(_CALIBRATION_BATCH, n - s))
               for s in range(0, n, _CALIBRATION_BATCH))
    ranges = calibrate(graph, names, batches)
    out, counts = quantize_full_int8(graph, ranges)
    return out, counts, n


def convert(src: str | os.PathLike[str], dest: str | os.PathLike[str], *, weights: str = "int8",
            activations: str = "float32", compute: str | None = None,
            calibration: str | os.PathLike[str] | None = None,
            samples: str | os.PathLike[str] | None = None,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write a quantized copy of version ``src`` to the new version directory ``dest``.

    ``weights``: "int8" (per-output-channel symmetric, activations float: dynamic range) or
    "float16". ``compute`` (int8 weights, float activations only): "int8" (the default: TF
    Lite's dynamic-range arithmetic, activations quantized on the fly inside each Dense /
    Conv2D, int8 x int8 products summed in int32) or "float32" (weights widened inside the
    kernels, float32 arithmetic: slower, closer to the float model).
    ``activations="int8"`` (needs ``calibration``, an .npz of inputs keyed by the
    signature's input names) converts Dense/Conv2D to full int8 instead. Accuracy is measured
    on ``samples`` if given, else on the calibration set, else on random normal inputs. The
    report is returned and written to ``dest/assets.extra/convert.json``; ``dest`` appears
    complete or not at all (built in a hidden sibling directory, then renamed).
    """
    say = progress or (lambda _line: None)
    src_p, dest_p = Path(src), Path(dest)
    if weights not in ("int8", "float16"):
        raise ValueError(f"--weights must be int8 or float16, got {weights!r}")
    if activations not in ("float32", "int8"):
        raise ValueError(f"--activations must be int8 (or omitted), got {activations!r}")
    if activations == "int8" and (calibration is None or weights != "int8"):
        raise ValueError("--activations int8 needs --weights int8 and --calibration FILE.npz")
    if compute is not None and (weights != "int8" or activations != "float32"):
        raise ValueError("--compute applies to --weights int8 without --activations int8")
    if compute is None:
        compute = "int8" if weights == "int8" and activations == "float32" else "float32"
    if compute not in ("int8", "float32"):
        raise ValueError(f"--compute must be int8 or float32, got {compute!r}")
    if dest_p.exists() and any(dest_p.iterdir()):
        raise FileExistsError(f"{dest_p} already exists and is not empty")
    say(f"loading {src_p}")
    before = load(src_p)
    if activations == "int8":
        assert calibration is not None
        say(f"calibrating on {calibration}")
        graph, counts, n_cal = _calibrated_graph(before, Path(calibration))
    else:
        graph, counts = quantize_weights(before.graph, weights, compute)
    if not counts:
        raise ValueError(f"{src_p}: no Dense or Conv2D node with a constant float32 weight to "
                         f"quantize (ops: {sorted({n.op for n in before.graph.nodes})})")
    stage = dest_p.with_name(f".{dest_p.name}.converting")
    if stage.exists():
        shutil.rmtree(stage)
    meta = {"converted_from": str(src_p), "weights": weights, "activations": activations,
            "compute": compute}
    save(stage, graph, before.signatures, metadata=meta)
    try:
        extra = src_p / "assets.extra"
        if extra.is_dir():  # warm-up requests still fit: the signatures are unchanged
            shutil.copytree(extra, stage / "assets.extra",
                            ignore=shutil.ignore_patterns("convert.json"))
        after = load(stage)
        say("measuring")
        report = _report(before, after, src_p, dest_p, weights, activations, counts,
                         calibration, samples)
        report["compute"] = compute
        if activations == "int8":
            report["calibration_samples"] = n_cal
        (stage / "assets.extra").mkdir(exist_ok=True)
        (stage / REPORT_FILE).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        dest_p.parent.mkdir(parents=True, exist_ok=True)
        if dest_p.exists():
            dest_p.rmdir()
        os.replace(stage, dest_p)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return report


def _report(before: Model, after: Model, src: Path, dest: Path, weights: str, activations: str,
            counts: dict[str, int], calibration: Any, samples: Any) -> dict[str, Any]:
    if samples is not None:
        feeds, data = feeds_from_npz(samples, before), f"samples {samples}"
    elif calibration is not None:
        feeds, data = feeds_from_npz(calibration, before), f"calibration set {calibration}"
    else:
        feeds = random_feeds(before, _RANDOM_SAMPLES)
        data = (f"{_RANDOM_SAMPLES} random standard-normal inputs of the signature's shape "
                "(no --samples or --calibration given: differences only, not accuracy)")
    n = next(iter(feeds.values())).shape[0]
    remaining = sorted({node.op for node in after.graph.nodes
                        if node.op in ("Dense", "Conv2D", "MatMul")})
    return {
        "source": str(src),
        "dest": str(dest),
        "weights": weights,
        "activations": activations,
        "rewritten": counts,
        "left_float": remaining,
        "size": sizes(before, after),
        "outputs": {"data": data, "samples": int(n), **compare_outputs(before, after, feeds)},
        "speed": speed(before, after, feeds),
        "int8_ops": sorted(INT8_OPS.values()) if activations == "int8" else [],
    }


def format_report(report: dict[str, Any]) -> str:
    """A few human lines for the terminal (the JSON file has everything)."""
    size = report["size"]
    compute = f", compute {report['compute']}" if report["weights"] == "int8" else ""
    lines = [f"converted {report['source']} -> {report['dest']} (weights {report['weights']}, "
             f"activations {report['activations']}{compute}); rewritten: {report['rewritten']}"]
    for key, label in (("weights_file_bytes", "weights file"),
                       ("in_memory_weight_bytes", "weights in memory")):
        s = size[key]
        ratio = "n/a" if s["ratio"] is None else f"{s['ratio']}x"
        lines.append(f"  {label}: {s['before']:,} -> {s['after']:,} bytes ({ratio})")
    outs = report["outputs"]
    lines.append(f"  outputs on {outs['data']}:")
    for alias, entry in outs.items():
        if isinstance(entry, dict):
            top1 = (f", top-1 agreement {entry['top1_agreement']:.2%}"
                    if "top1_agreement" in entry else "")
            lines.append(f"    {alias}: max |diff| {entry['max_abs_diff']:.3g}, mean "
                         f"{entry['mean_abs_diff']:.3g}{top1}")
    for key, s in report["speed"].items():
        lines.append(f"  {key.replace('_', ' ')}: float {s['float_ms']:.3f} ms, converted "
                     f"{s['converted_ms']:.3f} ms ({s['speedup']}x)")
    return "\n".join(lines)
