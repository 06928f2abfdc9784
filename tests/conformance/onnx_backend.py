"""Our engine as a backend for the ONNX project's own node tests (``onnx.backend.test``).

The onnx wheel here ships the test *generators* (``onnx/backend/test/case/node``) but not the
generated ``data/node`` directories, so ``node_test_dirs`` writes them once, exactly as
``onnx/backend/test/cmd_tools.py generate-data`` does (model.onnx + test_data_set_0/*.pb), to a
cache directory keyed by the onnx version. ``run_node_test(dir)`` runs one directory: import
with our ONNX importer, run with our kernels, compare with the expected outputs using the
tolerances onnx's own runner uses (rtol 1e-3, atol 1e-7), dtype and shape exactly.

Parameter inputs: many node tests feed an op's parameters (Reshape's shape, Slice's starts,
Unsqueeze's axes...) as graph inputs, where exported models have constants. Our engine
specializes each plan on such parameters, so the runner freezes those inputs to the test's
values as initializers (``PARAMETER_INPUTS``: op -> input positions) and says so in the result.

A test belongs to the op its single node runs; ``<test>_expanded`` variants (the op written
as its function body) belong to the same op and run when every op of the body is claimed too.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from engine.errors import EngineError
from engine.importers.onnx import MIN_OPSET, convert_model, load_converters
from engine.importers.onnx.registry import CONVERTERS
from engine.loader import compile_graph

__all__ = ["Result", "claimed_ops", "node_test_dirs", "run_node_test", "test_op"]

RTOL, ATOL = 1e-3, 1e-7  # onnx.backend.test.runner's defaults for node tests

PARAMETER_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Slice": (1, 2, 3, 4), "Unsqueeze": (1,), "Squeeze": (1,),
    "Split": (1,), "Expand": (1,), "Tile": (1,), "Range": (0, 1, 2), "ConstantOfShape": (0,),
    "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "ReduceProd": (1,), "ReduceSumSquare": (1,), "ReduceL1": (1,), "ReduceL2": (1,),
    "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "Dropout": (1, 2), "Pad": (1, 2, 3),
    "Resize": (1, 2, 3), "Upsample": (1,), "TopK": (1,), "OneHot": (1,), "CumSum": (1,),
}


@dataclass(frozen=True)
class Result:
    name: str
    op: str
    status: str  # "passed" | "failed" | "skipped"
    reason: str = ""


def claimed_ops() -> list[str]:
    load_converters()
    return sorted(CONVERTERS)


def _cache_root() -> Path:
    base = os.environ.get("NUMBASERVE_ONNX_NODE_TESTS")
    if base:
        return Path(base)
    return Path(tempfile.gettempdir()) / f"numbaserve-onnx-node-tests-{onnx.__version__}"


def _write_case(case: object, out: Path) -> None:
    model = case.model  # type: ignore[attr-defined]
    tmp = out.with_name(out.name + ".partial")
    data = tmp / "test_data_set_0"
    data.mkdir(parents=True, exist_ok=True)
    (tmp / "model.onnx").write_bytes(model.SerializeToString())
    inputs, outputs = case.data_sets[0]  # type: ignore[attr-defined]
    present_in = [i for i in model.graph.input]
    for j, arr in enumerate(inputs):
        proto = arr if isinstance(arr, onnx.TensorProto) else numpy_helper.from_array(
            np.asarray(arr), present_in[j].name)
        (data / f"input_{j}.pb").write_bytes(proto.SerializeToString())
    for j, arr in enumerate(outputs):
        proto = arr if isinstance(arr, onnx.TensorProto) else numpy_helper.from_array(
            np.asarray(arr), model.graph.output[j].name)
        (data / f"output_{j}.pb").write_bytes(proto.SerializeToString())
    tmp.rename(out)


def node_test_dirs() -> Path:
    """The directory holding one sub-directory per node test (generated on first use)."""
    root = _cache_root()
    if (root / ".complete").is_file():
        return root
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    root.mkdir(parents=True, exist_ok=True)
    for case in cases:
        out = root / case.name
        if not out.exists() and case.model is not None and case.data_sets:
            try:
                _write_case(case, out)
            except KeyboardInterrupt:
                raise
            except (ValueError, TypeError, NotImplementedError, AttributeError):
                continue  # sequences/optionals/maps: not tensors, not ours
    (root / ".complete").write_text(onnx.__version__)
    return root


def _base_name(name: str) -> str:
    if "_expanded" in name:
        return name[: name.index("_expanded")]
    return name


def test_op(test_dir: Path, model: onnx.ModelProto | None = None) -> str:
    """The op a node test is about (for an expanded test: that of its base test)."""
    base = test_dir.parent / _base_name(test_dir.name)
    if base != test_dir and (base / "model.onnx").is_file():
        model = onnx.load(str(base / "model.onnx"))
    elif model is None:
        model = onnx.load(str(test_dir / "model.onnx"))
    nodes = model.graph.node
    return nodes[0].op_type if len(nodes) == 1 else nodes[-1].op_type


def _load_pb(path: Path) -> np.ndarray:
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return np.asarray(numpy_helper.to_array(t))


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def run_node_test(test_dir: Path, claimed: Iterable[str] | None = None) -> Result:
    """Run one node test directory through our engine."""
    model = onnx.load(str(test_dir / "model.onnx"))
    op = test_op(test_dir, model)
    name = test_dir.name
    claimed_set = set(claimed_ops() if claimed is None else claimed)
    lift = ""
    if _opset(model) < MIN_OPSET:
        if not _same_at(model, MIN_OPSET):
            return Result(name, op, "skipped",
                          f"opset {_opset(model)} < {MIN_OPSET}: not claimed")
        lift = f"run at opset {MIN_OPSET}: its ops are unchanged since opset {_opset(model)}"
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                imp.version = MIN_OPSET
    used = {n.op_type for n in model.graph.node}
    if name != _base_name(name) and not used <= claimed_set:
        return Result(name, op, "skipped", "function body uses ops we do not claim: "
                      + ", ".join(sorted(used - claimed_set)))
    data_sets = sorted(test_dir.glob("test_data_set_*"))
    frozen = _freeze_parameters(model, data_sets[0]) if data_sets else []
    notes = ([f"parameter inputs frozen: {', '.join(frozen)}"] if frozen else []) + (
        [lift] if lift else [])
    note = f" ({'; '.join(notes)})" if notes else ""
    try:
        imported = convert_model(model, name)
        ours = compile_graph(imported.graph, imported.signatures)
    except EngineError as exc:
        return Result(name, op, "failed", f"load: {type(exc).__name__}: {exc}{note}")
    inits = {i.name for i in model.graph.initializer}
    in_names = [i.name for i in model.graph.input]
    for data in data_sets:
        feeds = {n: _load_pb(data / f"input_{j}.pb") for j, n in enumerate(in_names)
                 if n not in inits}
        try:
            got = ours.run(feeds)
        except EngineError as exc:
            return Result(name, op, "failed", f"run: {type(exc).__name__}: {exc}")
        for j, out in enumerate(model.graph.output):
            want = _load_pb(data / f"output_{j}.pb")
            have = got[out.name]
            if have.dtype != want.dtype or have.shape != want.shape:
                return Result(name, op, "failed", f"output {out.name}: got {have.dtype}"
                              f"{list(have.shape)}, expected {want.dtype}{list(want.shape)}")
            try:
                if want.dtype.kind in "fc":
                    np.testing.assert_allclose(have, want, rtol=RTOL, atol=ATOL)
                else:
                    np.testing.assert_array_equal(have, want)
            except AssertionError as exc:
                lines = [ln for ln in str(exc).splitlines() if ln.strip()][:4]
                return Result(name, op, "failed", f"output {out.name}: " + " ".join(lines)
                              + note)
    return Result(name, op, "passed", note.strip(" ()"))


def _same_at(model: onnx.ModelProto, opset: int) -> bool:
    """Whether every node's op has the same schema version at ``opset`` as in the model."""
    from onnx import defs

    old = _opset(model)
    try:
        return all(defs.get_schema(n.op_type, opset, n.domain).since_version
                   == defs.get_schema(n.op_type, old, n.domain).since_version
                   for n in model.graph.node)
    except Exception:  # an op unknown at either opset
        return False


def _freeze_parameters(model: onnx.ModelProto, data: Path) -> list[str]:
    """Turn graph inputs that feed parameter positions into initializers (in place)."""
    positions = {inp.name: i for i, inp in enumerate(model.graph.input)}
    wanted: set[str] = set()
    for node in model.graph.node:
        for k in PARAMETER_INPUTS.get(node.op_type, ()):
            if k < len(node.input) and node.input[k]:
                wanted.add(node.input[k])
    frozen = []
    for vi in list(model.graph.input):
        if vi.name in wanted:
            arr = _load_pb(data / f"input_{positions[vi.name]}.pb")
            model.graph.initializer.append(numpy_helper.from_array(arr, vi.name))
            frozen.append(vi.name)
    return frozen


def claimed_test_dirs(claimed: Iterable[str] | None = None) -> list[Path]:
    """Every generated node test directory whose op is claimed, sorted by name."""
    claimed_set = set(claimed_ops() if claimed is None else claimed)
    root = node_test_dirs()
    out = []
    for d in sorted(p for p in root.iterdir() if (p / "model.onnx").is_file()):
        if test_op(d) in claimed_set:
            out.append(d)
    return out
