# cloudkeep — the two commands are `make demo` and `make test`; everything else hangs off `setup`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
BENCH_VENV := .venv-bench

.PHONY: setup demo test lint bench schema clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cloudkeep needs Python 3.11+")'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	@command -v java >/dev/null || { echo "java (17+) is needed for DynamoDB Local"; exit 1; }
	npm ci --no-audit --no-fund
	touch $@

$(BENCH_VENV)/.installed: bench/requirements-dynamodump.txt
	test -x $(BENCH_VENV)/bin/python || $(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q -r bench/requirements-dynamodump.txt
	touch $@

demo: setup
	$(BIN)/python tools/demo.py

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check shared tests tools bench handlers
	$(BIN)/mypy

bench: setup $(BENCH_VENV)/.installed
	$(BIN)/python bench/bench_dynamodb.py

schema: setup
	$(BIN)/python -m cloudkeep.manifest > schemas/manifest.schema.json

clean:
	rm -rf $(VENV) $(BENCH_VENV) node_modules .demo .bench .pytest_cache .mypy_cache .ruff_cache
