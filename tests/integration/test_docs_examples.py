"""The docs' examples work: build the quickstart's example model with the quickstart's own
code, serve it, run every ``curl`` in docs/rest-api.md (in order: some change state) and
compare status codes and, where the docs show one, the response.

Conventions in the docs: a ``<!-- status: N -->`` line before a block sets the expected
status (default 200); a ```json block right after a curl block is its response, where
``"..."`` matches any value, a string ending in ``...`` matches by prefix, and objects match
when the documented keys match (extra keys in the response are fine).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, Server

DOCS = REPO / "docs"
DOC_HOST = "http://localhost:8501"
FENCE = re.compile(r"^```(\w*)\s*$")
STATUS = re.compile(r"<!--\s*status:\s*(\d{3})\s*-->")


@dataclass
class Block:
    lang: str
    text: str
    marker: str  # comment lines right before the block
    after: Block | None = None  # the block that follows with only blank lines between


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    pending_marker: list[str] = []
    last_end = -2
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            if lines[i].strip().startswith("<!--"):
                pending_marker.append(lines[i])
            elif lines[i].strip():
                pending_marker = []
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        block = Block(m.group(1), "\n".join(lines[i + 1:j]), "\n".join(pending_marker))
        if out and all(not ln.strip() for ln in lines[last_end + 1:start]) and not block.marker:
            out[-1].after = block
        out.append(block)
        pending_marker = []
        last_end = j
        i = j + 1
    return out


def curl_commands(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang in ("bash", "sh") and b.text.startswith("curl ")]


def matches(expected: Any, actual: Any) -> bool:
    if expected == "...":
        return True
    if isinstance(expected, str) and expected.endswith("...") and isinstance(actual, str):
        return actual.startswith(expected[:-3])
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(matches(e, a) for e, a in zip(expected, actual, strict=True)))
    if isinstance(expected, float) and isinstance(actual, int | float):
        return abs(expected - actual) <= 1e-6 * max(1.0, abs(expected))
    return bool(expected == actual)


EXAMPLES = curl_commands(DOCS / "rest-api.md")


def example_model_code() -> str:
    for b in blocks(DOCS / "quickstart.md"):
        if b.lang == "python" and "example-model" in b.marker:
            return b.text
    raise AssertionError("docs/quickstart.md has no <!-- example-model --> python block")


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("docs-models")
    code = example_model_code().replace("/tmp/models", str(root))
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    base = root / "half_plus_two"
    assert (base / "1" / "model.json").is_file()
    return start_server([f"--model_base_path={base}", "--model_name=half_plus_two"])


def run_curl(server: Server, command: str, tmp_path: Path) -> tuple[int, str]:
    body = tmp_path / "body"
    script = (
        f'curl() {{ command curl -sS -o "{body}" -w "%{{http_code}}" "$@"; }}\n'
        + command.replace(DOC_HOST, server.base)
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip()[-3:]), body.read_text() if body.exists() else ""


def test_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 15
    assert shutil.which("curl"), "curl is needed to run the docs' examples"


@pytest.mark.parametrize("block", EXAMPLES, ids=[f"{i:02d}" for i in range(len(EXAMPLES))])
def test_rest_api_example(server: Server, block: Block, tmp_path: Path) -> None:
    m = STATUS.search(block.marker)
    want = int(m.group(1)) if m else 200
    status, text = run_curl(server, block.text, tmp_path)
    assert status == want, f"{block.text}\n-> {status} {text}"
    doc = json.loads(text) if text else None
    if want >= 400:
        assert isinstance(doc, dict) and set(doc) == {"error"}, text
    if block.after is not None and block.after.lang == "json":
        expected = json.loads(block.after.text)
        assert matches(expected, doc), f"{block.text}\ndocs: {expected}\ngot:  {doc}"


def test_quickstart_predict_example(server: Server, tmp_path: Path) -> None:
    for b in blocks(DOCS / "quickstart.md"):
        if b.lang == "bash" and "half_plus_two:predict" in b.text:
            command, _, comment = b.text.partition("\n# ")
            status, text = run_curl(server, command, tmp_path)
            assert status == 200, text
            assert json.loads(text) == json.loads(comment)
            return
    raise AssertionError("docs/quickstart.md has no half_plus_two:predict example")
