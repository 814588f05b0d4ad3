# syntax=docker/dockerfile:1
# FastTrack's image: the `fasttrack` CLI; by default `fasttrack serve` on 0.0.0.0:$PORT (8000 unless set).
#
#   docker build -t fasttrack .
#   docker run -p 8000:8000 -e MLFLOW_TRACKING_URI=http://mlflow:5000 -e FASTTRACK_MODEL=models:/sample@champion fasttrack
#   docker run -p 8000:8000 -v "$PWD/model:/models/sample:ro" -e FASTTRACK_MODEL=/models/sample fasttrack
#   docker run -v fasttrack-home:/app/.fasttrack fasttrack train --config configs/sample.yaml
#   docker build --target with-model --build-arg MODEL_DIR=path/to/model -t fasttrack:model .   (model baked in)
#   docker build --target mlflow-server -t fasttrack-mlflow .   (the team's MLflow server, PostgreSQL driver included)
#   docker build --target dask -t fasttrack-dask .   (scheduler, workers and client of a Dask cluster: docs/scale.md)
#
# Every stage starts from the same pinned base, so a virtual environment built in one runs in another.
# hadolint checks this file (`make lint`); tests/unit/test_deploy.py checks that it agrees with the Makefile, the
# server's settings and the other deployment files.

# ---------------------------------------------------------------------------------------------------- builder
FROM python:3.11-slim-bookworm AS builder

# The install steps mirror the Makefile's `make install`: pip installs the pinned uv (UV_VERSION, the same
# version as in the Makefile), then `uv sync --locked --no-dev` installs exactly what uv.lock says.
ARG UV_VERSION=0.13.9
ENV UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /app
# Dependencies first, in their own layer: it is rebuilt only when the lock changes, not on every code change.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --locked --no-dev --no-install-project
COPY src/ ./src/
RUN --mount=type=cache,target=/root/.cache/uv uv sync --locked --no-dev

# ---------------------------------------------------------------------------------------------------- runtime
FROM python:3.11-slim-bookworm AS runtime

# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it (deploy/k8s/deployment.yaml uses the same).
RUN groupadd --system --gid 10001 fasttrack \
    && useradd --system --no-log-init --create-home --uid 10001 --gid fasttrack --home-dir /home/fasttrack \
        --shell /usr/sbin/nologin fasttrack \
    && mkdir -p /app/.fasttrack \
    && chown fasttrack:fasttrack /app/.fasttrack

WORKDIR /app
# Code and data stay owned by root (read-only to the server); only FASTTRACK_HOME is the user's.
# The project is installed editable (as `make install` does), so src/ lives at the same path as in the builder.
COPY --from=builder /app/.venv /app/.venv
COPY src/ ./src/
# The bundled sample and its configs, so `fasttrack train --config configs/sample.yaml` works in the image
# (docker-compose.yml's one-shot trainer and the CI smoke test use it).
COPY configs/ ./configs/
COPY data/sample/ ./data/sample/
COPY deploy/docker/entrypoint.sh deploy/docker/healthcheck.py ./deploy/docker/

# FASTTRACK_HOME holds the downloaded-model cache (and the embedded MLflow store when no tracking URI is set);
# mount a volume there to keep it. PORT is the listening port unless FASTTRACK_PORT is set (entrypoint.sh).
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FASTTRACK_HOME=/app/.fasttrack \
    FASTTRACK_HOST=0.0.0.0 \
    PORT=8000

USER 10001:10001
EXPOSE 8000
# Liveness. /ready (model loaded) is for orchestrators' readiness probes: deploy/k8s, docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --start-interval=2s --retries=3 \
    CMD ["python", "/app/deploy/docker/healthcheck.py", "/health"]
ENTRYPOINT ["/bin/sh", "/app/deploy/docker/entrypoint.sh"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------------- mlflow-server
# The team's MLflow tracking server (docker-compose.yml's `mlflow`): exactly the MLflow of uv.lock, the version the
# clients and the integration tests run, with the extras `make mlflow-server` installs: sql (psycopg, the driver of
# its PostgreSQL backend store) and s3 (boto3, for the artifacts it proxies to MinIO or S3). Its own virtual
# environment, so the FastTrack image above stays without extras; the install steps are the builder's, with the
# extras (`make install EXTRAS="s3 sql"`) and without the project, which the server does not run.
FROM python:3.11-slim-bookworm AS mlflow-builder
ARG UV_VERSION=0.13.9
ENV UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --locked --no-dev --no-install-project --extra=s3 --extra=sql

FROM python:3.11-slim-bookworm AS mlflow-server
RUN groupadd --system --gid 10001 mlflow \
    && useradd --system --no-log-init --create-home --uid 10001 --gid mlflow --home-dir /home/mlflow \
        --shell /usr/sbin/nologin mlflow
WORKDIR /app
COPY --from=mlflow-builder /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 5000
# Liveness: MLflow's /health (the slim base has no curl; compose's healthcheck does the same).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["mlflow", "server"]
CMD ["--host", "0.0.0.0", "--port", "5000"]

# ------------------------------------------------------------------------------------------------------- dask
# FastTrack on a Dask cluster (docs/scale.md): one image for the scheduler, the workers and the client, so all
# three run the same packages (fasttrack.cluster refuses workers whose versions differ from the client's).
#   docker build --target dask -t fasttrack-dask .
#   docker run fasttrack-dask dask scheduler                                     (8786; dashboard and /health 8787)
#   docker run fasttrack-dask dask worker tcp://scheduler:8786 --nthreads 1 --memory-limit 4GiB
#   docker run fasttrack-dask fasttrack predict --engine dask --scheduler tcp://scheduler:8786 --data ... --out ...
# Its own virtual environment with the extras dask (dask, distributed, xgboost) and s3 (s3fs: the workers read
# s3:// data themselves), installed exactly as `make install EXTRAS="dask s3"` does; the default image stays
# without extras. deploy/k8s/dask/ runs it through the Dask Kubernetes operator or the dask/dask Helm chart.
FROM python:3.11-slim-bookworm AS dask-builder
ARG UV_VERSION=0.13.9
ENV UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --locked --no-dev --no-install-project --extra=dask --extra=s3
COPY src/ ./src/
RUN --mount=type=cache,target=/root/.cache/uv uv sync --locked --no-dev --extra=dask --extra=s3

FROM python:3.11-slim-bookworm AS dask
# The runtime stage's user (uid 10001), so the same runAsUser and runAsNonRoot apply on Kubernetes.
RUN groupadd --system --gid 10001 fasttrack \
    && useradd --system --no-log-init --create-home --uid 10001 --gid fasttrack --home-dir /home/fasttrack \
        --shell /usr/sbin/nologin fasttrack \
    && mkdir -p /app/.fasttrack \
    && chown fasttrack:fasttrack /app/.fasttrack
WORKDIR /app
# src/ at the builder's path: the project is installed editable, as in the runtime stage.
COPY --from=dask-builder /app/.venv /app/.venv
COPY src/ ./src/
# The bundled sample, so a client container can score it (the CI smoke test does, on a scheduler and a worker).
COPY configs/ ./configs/
COPY data/sample/ ./data/sample/
COPY deploy/docker/dask-entrypoint.sh ./deploy/docker/
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FASTTRACK_HOME=/app/.fasttrack
USER 10001:10001
# The scheduler's port and its dashboard (which also answers /health); workers listen on ports of their own.
EXPOSE 8786 8787
# No HEALTHCHECK: the scheduler, a worker and a one-shot client need different ones (deploy/k8s/dask/ sets probes).
# The entry point runs its arguments; it also accepts the dask-scheduler and dask-worker commands that Dask
# 2026.6 removed and that Helm charts released before it still run.
ENTRYPOINT ["/bin/sh", "/app/deploy/docker/dask-entrypoint.sh"]
CMD ["dask", "scheduler"]

# ------------------------------------------------------------------------------------------------- with-model
# Optional: a model folder copied in at build time, served without any tracking server:
#   docker build --target with-model --build-arg MODEL_DIR=path/to/model -t fasttrack:model .
# (A model folder is what `mlflow artifacts download --artifact-uri models:/NAME@champion --dst-path DIR` writes.)
FROM runtime AS with-model
ARG MODEL_DIR=model
COPY ${MODEL_DIR}/ /app/model/
ENV FASTTRACK_MODEL=/app/model

# ---------------------------------------------------------------------------------------------------- default
# Keep this stage last: `docker build .` builds the last stage, and the default image must not need a model.
FROM runtime AS default
