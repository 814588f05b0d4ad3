"""``fasttrack serve``: serve a model over HTTP and follow the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fasttrack.cli.options import ModelOption
from fasttrack.config import Engine, get_settings


def serve(
    model: ModelOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    reload_interval: Annotated[
        float | None, typer.Option(help="Seconds between registry checks for a new version (default 10; 0 = off).")
    ] = None,
    access_log: Annotated[
        bool | None, typer.Option("--access-log/--no-access-log", help="One JSON log line per request (default off).")
    ] = None,
    runtime: Annotated[
        Engine | None,
        typer.Option(
            "--runtime",
            "--engine",
            help="Inference runtime: auto (ONNX when the model has a checked model.onnx), onnx or sklearn "
            "(default: FASTTRACK_RUNTIME, else auto; --engine is its former name).",
        ),
    ] = None,
    inference_log: Annotated[
        str | None,
        typer.Option(
            help="Log every prediction and label as Parquet to this folder or s3:// / gs:// prefix "
            "(default: FASTTRACK_INFERENCE_LOG, else off; see docs/inference-log.md)."
        ),
    ] = None,
    auth: Annotated[
        bool | None,
        typer.Option(
            "--auth/--no-auth",
            help="Require an API key with the route's scope on every route (default: FASTTRACK_AUTH, else off; "
            "keys from FASTTRACK_API_KEYS or --api-keys-file; see docs/security.md).",
        ),
    ] = None,
    api_keys_file: Annotated[
        Path | None,
        typer.Option(
            help="File of API key entries (`fasttrack keys new` prints them), one per line, re-read when it changes "
            "(default: FASTTRACK_API_KEYS_FILE)."
        ),
    ] = None,
) -> None:
    """Serve a model over HTTP: /predict, MLflow's /invocations, the V2 protocol, /metrics; follows the registry.

    The model is resolved before the port is bound (an unknown model fails at once) and loaded in the
    background; SIGTERM drains in-flight requests (and writes the inference log's last rows) before exiting.
    """
    from fasttrack.serving.app import run

    settings = get_settings(
        model=model,
        host=host,
        port=port,
        workers=workers,
        reload_interval=reload_interval,
        access_log=access_log,
        runtime=runtime,
        inference_log=inference_log,
        auth=auth,
        api_keys_file=api_keys_file,
    )
    run(settings)
