#!/bin/sh
# One-shot job of docker-compose.yml: create MinIO's artifact bucket for MLflow (idempotent), then exit 0.
# Environment: MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, MLFLOW_BUCKET, MINIO_URL.
set -eu
mc alias set minio "${MINIO_URL}" "${MINIO_ROOT_USER}" "${MINIO_ROOT_PASSWORD}"
mc mb --ignore-existing "minio/${MLFLOW_BUCKET}"
# MLflow reaches the bucket with the root credentials; nothing in it is public.
mc anonymous set none "minio/${MLFLOW_BUCKET}"
echo "bucket ${MLFLOW_BUCKET} ready"
