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

TOOLS_STAMP := .tools/node_modules/.installed

.PHONY: install lock lint test test-unit test-integration test-infra e2e e2e-local synth diff deploy lint-templates bench demo local-up local-down clean

# Installs exactly the locked versions: requirements.lock (Python, transitive pins included) and
# .tools/package-lock.json (npm ci). Nothing runs when neither lock nor pyproject.toml changed.
install: $(BIN)/.installed $(TOOLS_STAMP)

# A changed lock rebuilds the venv from scratch (--clear), so no package from an older lock stays behind.
$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

$(TOOLS_STAMP): .tools/package.json .tools/package-lock.json
	cd .tools && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Re-resolves the three locks from their sources (pyproject.toml, lambda_src/requirements.txt,
# .tools/package.json) to the newest versions the ranges allow. Review the diff, run `make test`, commit.
LOCK_VENV := .build/lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '1,/^[^#]/{/^#/p}' requirements.lock; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | LC_ALL=C sort -f; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	$(LOCK_VENV)/bin/python -m stacks.bundling lock
	rm -rf $(LOCK_VENV)
	cd .tools && npm install --package-lock-only --no-audit --no-fund --loglevel=error
	@echo "locks updated: git diff requirements.lock lambda_src .tools/package-lock.json"

lint: install
	$(BIN)/ruff check .

# The end-to-end suite runs here against a local stack it starts (never the cloud); its tests share one
# worker (--dist loadgroup), so one stack and one tenant serve them all.
test: install
	GATEWAY_E2E_TARGET=local $(BIN)/python -m pytest -n 2 --dist loadgroup --cov $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

test-infra: install
	$(BIN)/python -m pytest tests/infrastructure $(PYTEST_ARGS)

# After a deploy: the end-to-end suite against the deployed stack (GATEWAY_E2E_ENDPOINT,
# GATEWAY_E2E_COGNITO_DOMAIN, AWS credentials and region: docs/environments.md). Without them every
# test is skipped, and says which setting is missing.
e2e: install
	GATEWAY_E2E_TARGET=cloud $(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

# The same suite against a local stack it starts and stops.
e2e-local: install
	GATEWAY_E2E_TARGET=local $(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

# Real CDK CLI: no lookups, no version check, no notices. NAG=all adds the HIPAA and NIST packs.
# Staging and prod need their site settings: sites/$(ENV).json, or CDK_ARGS='-c NAME=VALUE ...'
# (docs/environments.md lists them); without them synthesis stops and names every missing one.
NAG ?= aws-solutions
CDK_ARGS ?=
CDK_APP = --app "$(BIN)/python app.py" -c env=$(ENV) -c nag=$(NAG) $(CDK_ARGS) --output cdk.out/$(ENV) --no-notices --no-version-reporting
synth: install
	$(CDK) synth $(CDK_APP) --quiet
	@echo "templates in cdk.out/$(ENV)"

# Against the AWS account of your credentials (AWS_PROFILE, ...); `cdk bootstrap` once per account/region first.
diff: install
	$(CDK) diff --all $(CDK_APP)

# Stateful stack first (CDK orders them). IAM and security-group widenings ask for approval.
deploy: install
	$(CDK) deploy --all --require-approval broadening $(CDK_APP)

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
