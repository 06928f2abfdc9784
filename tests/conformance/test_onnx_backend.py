"""The ONNX project's node tests (onnx.backend.test) for every op we claim, run by our engine.

Each test must pass, except those in ``EXPECTED_FAILURES`` (real semantic gaps, each with its
reason) and those the runner skips (opsets below 13, expanded function bodies using ops we do
not claim). Tolerances: onnx's runner defaults, rtol 1e-3 / atol 1e-7; dtypes and shapes exact.
"""

from __future__ import annotations

import re

import pytest

from tests.conformance.onnx_backend import claimed_ops, claimed_test_dirs, run_node_test

# test-name pattern -> why we do not pass it
EXPECTED_FAILURES: dict[str, str] = {
    r"bfloat16|BFLOAT16|FLOAT8|FLOAT4|INT4|UINT4|INT2|UINT2|e8m0":
        "bfloat16, float8, float4 and int4/int2 tensors are not supported by the engine",
    r"^test_equal_string": "string tensors are not supported by the engine",
    r"^test_identity_(opt|sequence)$": "optional and sequence values are not supported",
    r"^test_training_dropout": "Dropout in training mode (random masks) is inference-only here",
    r"^test_reduce_(max|min|log_sum_exp)_empty_set(_bool)?$":
        "max/min over an empty set is an error in the engine (ONNX defines -inf/+inf)",
    r"^test_batchnorm_.*training_mode": "BatchNormalization in training mode (batch statistics, "
        "running-stat outputs) is inference-only here",
    r"^test_maxpool_with_argmax": "MaxPool's Indices output is not supported",
    r"^test_(maxpool|averagepool|convtranspose)_3d": "3-D (volumetric) pooling and ConvTranspose "
        "are not supported; images are 1-D or 2-D",
    r"^test_lstm_with_peepholes": "LSTM peephole weights (input P) are not supported",
}


def _expected(name: str) -> str | None:
    for pattern, why in EXPECTED_FAILURES.items():
        if re.search(pattern, name):
            return why
    return None


_CLAIMED = claimed_ops()
_DIRS = claimed_test_dirs(_CLAIMED)


@pytest.mark.parametrize("test_dir", _DIRS, ids=[d.name for d in _DIRS])
def test_node(test_dir) -> None:  # type: ignore[no-untyped-def]
    result = run_node_test(test_dir, _CLAIMED)
    why = _expected(test_dir.name)
    if result.status == "skipped":
        pytest.skip(result.reason)
    if why is not None:
        if result.status == "passed":
            pytest.fail(f"expected to fail ({why}) but passed: update EXPECTED_FAILURES")
        pytest.xfail(why)
    assert result.status == "passed", result.reason
