# The Makefile is the interface: `make demo` runs the local stack and its demo, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CDK := .tools/node_modules/.bin/cdk
ENV ?= dev
PYTEST_ARGS ?=

export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_CLI_NOTICES := false

.PHONY: install lint test test-unit test-integration test-infra synth lint-templates bench demo local-up local-down clean

install: $(BIN)/.installed $(CDK)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(CDK): .tools/package.json
	cd .tools && npm install --no-audit --no-fund --loglevel=error
	touch $@

lint: install
	$(BIN)/ruff check .

test: install
	$(BIN)/python -m pytest -n 2 --cov $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

test-infra: install
	$(BIN)/python -m pytest tests/infrastructure $(PYTEST_ARGS)

# Real CDK CLI, offline: no lookups, no version check, no notices. NAG=all adds the HIPAA and NIST packs.
NAG ?= aws-solutions
synth: install
	$(CDK) synth --app "$(BIN)/python app.py" -c env=$(ENV) -c nag=$(NAG) --output cdk.out/$(ENV) --quiet --no-notices --no-version-reporting
	@echo "templates in cdk.out/$(ENV)"

lint-templates: synth
	$(BIN)/cfn-lint cdk.out/$(ENV)/*.template.json

bench: install
	$(BIN)/python -m bench

# DEMO_ARGS: e.g. --keep (leave the stack up), --free-ports (not the `local up` default ports).
DEMO_ARGS ?=
demo: install
	$(BIN)/gatewayctl demo $(DEMO_ARGS)

# Returns once the stack is up (`make local-down` stops it). LOCAL_ARGS: e.g. --free-ports, --gateway-port 9700.
LOCAL_ARGS ?=
local-up: install
	$(BIN)/gatewayctl local up --detach $(LOCAL_ARGS)

local-down: install
	$(BIN)/gatewayctl local down

clean:
	rm -rf cdk.out .pytest_cache .local
