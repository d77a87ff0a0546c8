# cloudkeep — the two commands are `make demo` and `make test`; everything else hangs off `setup`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
BENCH_VENV := .venv-bench
DEPLOY_VENV := .venv-deploy
OSLS := .tools/osls/node_modules/.bin/osls

.PHONY: setup system-tools demo test lint bench bench-cold-start schema clean deploy-tools aws-package deploy-check

setup: $(VENV)/.installed node_modules/.installed system-tools

# Headless Chromium (the HTML report's test), zstd and jq (the snapshot-format doc's test):
# Debian packages, installed when missing and we may (root with apt-get); else a clear failure.
SYSTEM_TOOLS := chromium zstd jq
system-tools:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing (apt-get)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "missing:$$missing — install them (Debian: apt-get install$$missing)"; exit 1; fi; \
	fi

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

$(DEPLOY_VENV)/.installed: requirements-deploy.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PY) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q -r requirements-deploy.txt
	touch $@

.tools/osls/.installed:
	mkdir -p .tools/osls
	npm install --no-audit --no-fund --prefix .tools/osls osls@4.3.1
	touch $@

deploy-tools: $(DEPLOY_VENV)/.installed .tools/osls/.installed

# The Lambda bundle's dependencies (handlers/requirements-aws.txt) for arm64 / Python 3.12;
# boto3 and botocore come with the Lambda runtime.
.build/python/.installed: handlers/requirements-aws.txt
	rm -rf .build/python && mkdir -p .build/python
	$(BIN)/pip install -q --platform manylinux2014_aarch64 --python-version 3.12 --only-binary=:all: \
		--target .build/python -r handlers/requirements-aws.txt
	rm -rf .build/python/boto3* .build/python/botocore* .build/python/s3transfer* .build/python/jmespath*
	touch $@

aws-package: setup deploy-tools .build/python/.installed
	AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline SLS_TELEMETRY_DISABLED=1 \
		$(OSLS) package --stage ci

deploy-check: aws-package
	$(DEPLOY_VENV)/bin/cfn-lint .serverless/cloudformation-template-update-stack.json
	$(DEPLOY_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		-f .serverless/cloudformation-template-update-stack.json
	$(DEPLOY_VENV)/bin/checkov --quiet --compact --skip-download --framework terraform -d infra/gcp
	$(DEPLOY_VENV)/bin/checkov --quiet --compact --skip-download --framework terraform -d infra/azure

.PHONY: docs
# The documentation site (docs/ + mkdocs.yml) into ./site; strict: a broken link or anchor, or a
# page left out of the nav, fails the build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

demo: setup
	$(BIN)/python tools/demo.py

test: setup lint docs deploy-check
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/python tools/requirements.py
	$(BIN)/ruff check shared tests tools bench handlers
	$(BIN)/mypy

# The AWS handler's cold start: its import time against `import boto3` (median; printed, not asserted).
bench-cold-start: setup
	$(BIN)/python bench/bench_cold_start.py

bench: setup $(BENCH_VENV)/.installed
	$(BIN)/python bench/bench_cold_start.py
	$(BIN)/python bench/bench_dynamodb.py
	$(BIN)/python bench/bench_restore.py
	$(BIN)/python bench/bench_s3.py
	$(BIN)/python bench/bench_scale.py
	$(BIN)/python bench/bench_diff.py
	$(BIN)/python bench/bench_capture.py

schema: setup
	$(BIN)/python -m cloudkeep.manifest > schemas/manifest.schema.json
	$(BIN)/python -m cloudkeep.policy_doc schema > schemas/policy.schema.json
	$(BIN)/python -m cloudkeep.policy_doc reference > docs/policy-reference.md

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(DEPLOY_VENV) .tools .build .serverless node_modules .demo .bench \
		.pytest_cache .mypy_cache .ruff_cache site
