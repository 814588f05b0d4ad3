#!/bin/sh
# The container's entry point: `fasttrack "$@"` (the image's CMD is `serve`), e.g.
#   docker run IMAGE                                        -> fasttrack serve
#   docker run IMAGE train --config configs/sample.yaml     -> fasttrack train ...
# Platforms such as Cloud Run and Heroku tell a container its port in $PORT; the server listens there unless
# FASTTRACK_PORT is set explicitly. healthcheck.py picks the port by the same rule.
set -eu
FASTTRACK_PORT="${FASTTRACK_PORT:-${PORT:-8000}}"
export FASTTRACK_PORT
# exec: fasttrack becomes PID 1 and receives SIGTERM itself (Uvicorn then drains in-flight requests).
exec fasttrack "$@"
