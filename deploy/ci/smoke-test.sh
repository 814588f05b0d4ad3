#!/usr/bin/env bash
# Smoke-test a running FastTrack server serving the bundled sample model:
#   deploy/ci/smoke-test.sh [BASE_URL] [TIMEOUT_SECONDS]      (default http://127.0.0.1:8000, 180 s)
# Waits for GET /ready, then checks GET /health and the first brief's POST /predict example.
# Used by .github/workflows/ci-cd.yml against the server started from .venv and against the Docker image.
set -euo pipefail
base="${1:-http://127.0.0.1:8000}"
timeout="${2:-180}"

deadline=$((SECONDS + timeout))
until curl -fsS --max-time 5 "$base/ready" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
        echo "error: $base/ready did not answer 200 within ${timeout}s" >&2
        exit 1
    fi
    sleep 2
done
echo "ready:   $(curl -fsS --max-time 5 "$base/ready")"
echo "health:  $(curl -fsS --max-time 5 "$base/health")"

answer="$(curl -fsS --max-time 10 -X POST "$base/predict" \
    -H "Content-Type: application/json" \
    -d '{"feature_1": 5.3, "feature_2": 2.1}')"
echo "predict: $answer"
if [[ "$answer" != '{"prediction":"positive"}' ]]; then
    echo 'error: expected {"prediction":"positive"} from the sample model' >&2
    exit 1
fi
echo "smoke test passed: $base"
