"""Options several commands share, and parsing of ``key=value`` pairs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fasttrack.config import Engine
from fasttrack.errors import ConfigError

SqlOption = Annotated[
    str | None, typer.Option("--sql", help="SQL query to read the data with, instead of a file (needs --db).")
]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL the --sql query runs on: postgresql://user@host/db, sqlite:///file.db."),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Model URI (models:/NAME@ALIAS, models:/NAME/3) or folder; default: FASTTRACK_MODEL."
    ),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        metavar="[local|dask]",
        help="Where the work runs: local (this process) or dask (a Dask cluster: --scheduler, else "
        "DASK_SCHEDULER_ADDRESS, else a local cluster of worker processes; docs/scale.md).",
    ),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        help="The Dask scheduler for --engine dask, e.g. tcp://scheduler:8786 (default: DASK_SCHEDULER_ADDRESS, "
        "else a local cluster sized to this machine).",
    ),
]
RuntimeOption = Annotated[
    Engine,
    typer.Option(
        "--runtime",
        help="Inference runtime: auto (ONNX Runtime when the model has a checked graph), onnx or sklearn.",
    ),
]

LogOption = Annotated[
    str | None,
    typer.Option(
        "--log", help="The inference log: a folder or an s3:// / gs:// prefix (default: FASTTRACK_INFERENCE_LOG)."
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(help="Start of the period, UTC: 2026-12-03, 2026-12-03T10:30, or an age (30m, 12h, 7d)."),
]
UntilOption = Annotated[str | None, typer.Option(help="End of the period (excluded), as --since; default: now.")]


def runtime_and_engine(engine: str, runtime: Engine) -> tuple[str, Engine]:
    """``--engine`` and ``--runtime``, taking ``--engine auto|onnx|sklearn`` (the option's former meaning, before
    it said where work runs) as ``--runtime`` with a one-line warning on stderr."""
    from fasttrack.runtime.select import ENGINES

    if engine in ENGINES:
        typer.echo(f"warning: --engine {engine} is now --runtime {engine}; --engine says where work runs", err=True)
        return "local", engine
    return engine, runtime


def parse_pairs(values: list[str] | None, what: str) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as YAML scalars (numbers, booleans, null) where they look like them."""
    import yaml

    parsed: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r} must look like key=value")
        try:
            parsed[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            parsed[key.strip()] = raw
    return parsed
