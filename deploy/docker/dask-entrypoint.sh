#!/bin/sh
# The Dask image's entry point (Dockerfile target `dask`): runs its arguments, e.g.
#   dask scheduler | dask worker tcp://scheduler:8786 ... | fasttrack predict --engine dask ...
# distributed 2026.6 removed the dask-scheduler and dask-worker commands (dask scheduler / dask worker since
# 2022.10), but dask/dask Helm charts released before it still start pods with them: they are run as the
# `dask` subcommands they were.
set -eu
case "${1:-}" in
    dask-scheduler) shift; set -- dask scheduler "$@" ;;
    dask-worker) shift; set -- dask worker "$@" ;;
esac
# exec: the command becomes PID 1 and receives the SIGTERM that stops the container itself.
exec "$@"
