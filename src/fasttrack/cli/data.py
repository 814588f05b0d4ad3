"""``fasttrack ingest``: read and clean a data set, report what cleaning did, save the data and its schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fasttrack.cli import render
from fasttrack.cli.options import DbOption, SqlOption
from fasttrack.cli.render import out
from fasttrack.config import Task
from fasttrack.errors import ConfigError


def ingest(
    data: Annotated[
        str | None,
        typer.Argument(help="CSV, JSON, JSON Lines or Parquet file: a path or a URL (s3://..., gs://...)."),
    ] = None,
    sql: SqlOption = None,
    db: DbOption = None,
    target: Annotated[str | None, typer.Option(help="Target column: rows without it are dropped.")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="Write the cleaned data here (.parquet/.csv).")] = None,
    schema_out: Annotated[
        Path | None, typer.Option("--schema-out", help="Write the inferred schema (JSON; needs --target).")
    ] = None,
    task: Annotated[Task, typer.Option(help="Task, for the schema's target.")] = "auto",
    drop: Annotated[list[str] | None, typer.Option("--drop", help="Drop this column (repeatable).")] = None,
    keep: Annotated[list[str] | None, typer.Option("--keep", help="Keep only these features (repeatable).")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, json, jsonl or parquet (default: extension).")
    ] = None,
) -> None:
    """Read and clean a data set (a file, a URL or a SQL query), report what cleaning did, and optionally save
    the data and its schema."""
    import fasttrack
    from fasttrack.data.ingest import save_frame

    if schema_out and not target:
        raise ConfigError("--schema-out needs --target: the schema describes features against a target")
    result = fasttrack.ingest(data, sql=sql, db=db, target=target, task=task, drop=drop or (), keep=keep, format=fmt)
    render.clean_report(result.report)
    if result.schema is not None:
        render.schema(result.schema)
    render.lineage(result)
    out.print(f"fingerprint: {result.fingerprint}")
    if output:
        save_frame(result.frame, output)
        out.print(f"cleaned data written to {output}")
    if schema_out and result.schema is not None:
        result.schema.save(schema_out)
        out.print(f"schema written to {schema_out}")
