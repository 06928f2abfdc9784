# The two commands a new user needs: `make serve` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PORT ?= 8501
MODELS_CONFIG ?= models/models.config

.PHONY: serve test warm install install-test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The Dockerfile runs the same install and warm commands (tests/integration/test_docker.py).
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP) install -e ".[importers]"
	touch $@

# constraints/test.txt pins torch to its CPU build (see the file).
$(VENV)/.installed-test: $(VENV)/.installed constraints/test.txt
	$(PIP) install -e ".[test]" -c constraints/test.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

warm: install
	$(BIN)/numbaserve warm

serve: warm
	$(BIN)/numbaserve --rest_api_host=127.0.0.1 --rest_api_port=$(PORT) --model_config_file=$(MODELS_CONFIG)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
