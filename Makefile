# berth — every command a newcomer or CI needs. Each target installs what it uses.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# what mypy checks (strict); cold, mostly aws-cdk-lib's stubs: ~1.5 min, so make test runs it
# beside pytest
TYPED := app.py infra functions client/berth_client containers/jobs/berth_jobs \
  containers/worker/berth_worker tests bench

# jsii (behind aws-cdk-lib) prints a banner on Node 20; it still works. Keep output readable.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
# Nothing here may reach a real AWS account.
export AWS_EC2_METADATA_DISABLED := true

.PHONY: help install local test lint docs typecheck unit synth deploy smoke destroy bench chaos clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY_STAMP): pyproject.toml client/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' -e ./client
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# the console's terminal widget, bundled from npm at build time (never a CDN)
CONSOLE_VENDOR := client/berth_client/console/vendor
$(CONSOLE_VENDOR)/.bundled: $(NODE_STAMP)
	@mkdir -p $(CONSOLE_VENDOR)
	cp node_modules/@xterm/xterm/lib/xterm.js node_modules/@xterm/xterm/css/xterm.css \
	  node_modules/@xterm/addon-fit/lib/addon-fit.js $(CONSOLE_VENDOR)/
	@touch $@

# headless Chromium for the console's browser tests (Debian's package; root installs it)
CHROMIUM := /usr/bin/chromium
$(CHROMIUM): export DEBIAN_FRONTEND := noninteractive
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium at $@ for the browser tests"; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium >/dev/null \
	  || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	       $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium >/dev/null; }

install: $(PY_STAMP) $(NODE_STAMP) $(CONSOLE_VENDOR)/.bundled ## venv + Python packages + the pinned CDK CLI + xterm.js

local: install ## run the API on http://127.0.0.1:8080 against an in-process AWS emulator
	$(BIN)/python -m infra.sandbox

test: install $(CHROMIUM) lint ## lint, type-check and run every test (the type check runs beside them)
	@$(BIN)/mypy $(TYPED) > $(VENV)/typecheck.log 2>&1 & checker=$$!; \
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=25; tested=$$?; \
	wait $$checker; typed=$$?; \
	echo "--- type check: mypy $(TYPED)"; cat $(VENV)/typecheck.log; \
	test $$tested -eq 0 && test $$typed -eq 0

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet  # a broken link or anchor fails

docs: $(PY_STAMP) ## serve the docs site on http://127.0.0.1:8000 (MkDocs, from docs/)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

typecheck: $(PY_STAMP)
	$(BIN)/mypy $(TYPED)

synth: install ## cdk synth into cdk.out/ (offline: no credentials, no Docker)
	npx --no-install cdk synth --quiet

deploy: install ## cdk deploy with the pinned CLI (AWS credentials and a Docker daemon needed)
	$(BIN)/python -m infra.preflight
	npx --no-install cdk deploy --require-approval never $(CDK_ARGS)

smoke: install ## the smoke subset, via the client: BERTH_STACK (or BERTH_API_URL), else make local
	$(BIN)/python -m pytest tests/e2e/test_smoke.py -v

destroy: install ## cdk destroy (retained buckets/tables stay: docs/deploying.md)
	npx --no-install cdk destroy --force $(CDK_ARGS)

bench: install ## print the bench/ ratios (each against a baseline measured in the same run)
	$(BIN)/python bench/synth_time.py
	$(BIN)/python bench/cold_import.py
	$(BIN)/python bench/sandbox_latency.py
	$(BIN)/python bench/job_cost.py
	$(BIN)/python bench/scaling_sim.py
	$(BIN)/python bench/idle_cost.py

chaos: install ## make local under AWS faults (10%, then 30%), the mixed workload, the audit
	$(BIN)/python -m infra.sandbox.chaos --faults all=0.1,seed=1
	$(BIN)/python -m infra.sandbox.chaos --faults all=0.3,seed=1

clean:
	rm -rf cdk.out .sandbox .pytest_cache .mypy_cache .ruff_cache .schemathesis build/site build/openapi.json
