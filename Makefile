# One command each for set-up, synth and tests (the README's first screen).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export AWS_EC2_METADATA_DISABLED := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export HF_HUB_OFFLINE := 1

.PHONY: setup setup-browser synth test demo lint format

setup: ## Python venv with pinned requirements + the pinned CDK CLI
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -r requirements-dev.txt
	# DeepSpeed builds its ops lazily; without build isolation it installs on a CPU-only machine.
	$(BIN)/pip install --quiet --no-build-isolation deepspeed==0.19.8
	npm ci --no-audit --no-fund
	$(MAKE) setup-browser

setup-browser: ## Debian's headless Chromium + its driver for the review page's browser tests (skipped without)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

synth: ## CloudFormation templates into cdk.out/ (no AWS account needed)
	npx cdk synth --quiet

test: ## The whole suite: infrastructure assertions, handler tests, tiny-model training
	$(BIN)/pytest

demo: ## The whole pipeline offline (~2 min, 2 cores): tiny model, local endpoint, emulated S3/SQS/DynamoDB, real Lambda
	$(BIN)/python -m scripts.demo

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
