"""``fasttrack ingest``: read and clean a data set, report what cleaning did, save the data and its schema.
``fasttrack check``: hold new data against a registered version's training schema before retraining or scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from fasttrack import exit_codes
from fasttrack.cli import render
from fasttrack.cli.options import DbOption, EngineOption, SchedulerOption, SqlOption
from fasttrack.cli.render import out
from fasttrack.config import Task
from fasttrack.errors import ConfigError, DataError, ModelNotFoundError


def ingest(
    data: Annotated[
        str | None,
        typer.Argument(help="CSV, JSON, JSON Lines or Parquet file: a path or a URL (s3://..., gs://...)."),
    ] = None,
    sql: SqlOption = None,
    db: DbOption = None,
    target: Annotated[str | None, typer.Option(help="Target column: rows without it are dropped.")] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Write the cleaned data here: a .parquet or .csv file; with --engine dask, a folder (or s3:// "
            "prefix) of Parquet parts with a _SUCCESS marker.",
        ),
    ] = None,
    schema_out: Annotated[
        Path | None, typer.Option("--schema-out", help="Write the inferred schema (JSON; needs --target).")
    ] = None,
    task: Annotated[Task, typer.Option(help="Task, for the schema's target.")] = "auto",
    drop: Annotated[list[str] | None, typer.Option("--drop", help="Drop this column (repeatable).")] = None,
    keep: Annotated[list[str] | None, typer.Option("--keep", help="Keep only these features (repeatable).")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, json, jsonl or parquet (default: extension).")
    ] = None,
    engine: EngineOption = "local",
    scheduler: SchedulerOption = None,
) -> None:
    """Read and clean a data set (a file, a URL or a SQL query), report what cleaning did, and optionally save
    the data and its schema.

    With --engine dask the data (a file, a quoted glob such as 'data/part-*.csv', or a folder of CSV or Parquet
    files) is read and cleaned out of core on a Dask cluster, with the same report, fingerprint and schema.
    """
    import fasttrack

    if schema_out and not target:
        raise ConfigError("--schema-out needs --target: the schema describes features against a target")
    with render.steps() as step:
        step(f"reading and cleaning {data or 'the query'}" + (" on Dask" if engine == "dask" else ""))
        result = fasttrack.ingest(
            data,
            sql=sql,
            db=db,
            target=target,
            task=task,
            drop=drop or (),
            keep=keep,
            format=fmt,
            output=output,
            engine=engine,
            scheduler=scheduler,
        )
    render.clean_report(result.report)
    if result.schema is not None:
        render.schema(result.schema)
    render.lineage(result)
    out.print(f"fingerprint: {result.fingerprint}")
    if output:
        out.print(f"cleaned data written to {output}", markup=False, highlight=False)
    if schema_out and result.schema is not None:
        result.schema.save(schema_out)
        out.print(f"schema written to {schema_out}")


def check(
    data: Annotated[
        str | None,
        typer.Argument(help="The new data: CSV, JSON, JSON Lines or Parquet, a path or a URL (s3://..., gs://...)."),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            help="Model whose training schema the data must fit: models:/NAME@champion, models:/NAME/3 or a "
            "folder (default: FASTTRACK_MODEL, else the default model's champion).",
        ),
    ] = None,
    sql: SqlOption = None,
    db: DbOption = None,
    purpose: Annotated[
        Literal["train", "score"],
        typer.Option(
            "--for", help="train: the data is to retrain the model (it needs the target); score: to be scored."
        ),
    ] = "train",
    skip_missing: Annotated[
        bool,
        typer.Option(
            "--skip-missing",
            help=f"No such model yet (a first training run): say so and exit {exit_codes.NO_MODEL_YET} "
            "instead of failing.",
        ),
    ] = False,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, json, jsonl or parquet (default: extension).")
    ] = None,
) -> None:
    """Check new data against a registered version's training schema: exit 1 on a breaking change.

    Breaking (one line each, exit 1): a missing feature, a changed kind or type, values a feature cannot take, a
    missing target, labels the model never had or a task change (with --for score: only what stops scoring).
    Reported, exit 0: new columns, unseen categories, values outside the training range, missing values.
    """
    import fasttrack

    try:
        with render.steps() as step:
            found = fasttrack.check_data(
                data, against=against, sql=sql, db=db, purpose=purpose, format=fmt, on_step=step
            )
    except ModelNotFoundError as exc:
        if not skip_missing:
            raise
        out.print(f"nothing to check against: {exc}", markup=False, highlight=False)
        raise typer.Exit(exit_codes.NO_MODEL_YET) from None
    model = f"{found.name} version {found.version}" if found.version else found.model_uri
    use = "to train on" if found.purpose == "train" else "to score"
    counts = f"{len(found.breaking)} breaking changes, {len(found.notes)} notes"
    out.print(
        f"{found.source} ({found.rows} rows) against {model}, as data {use}: {counts}", markup=False, highlight=False
    )
    for kind, lines in (("breaking", found.breaking), ("note", found.notes)):
        for line in lines:
            out.print(f"{kind}: {line}", markup=False, highlight=False)
    if not found.compatible:
        raise DataError(f"{found.source} does not fit {model} as data {use}: {len(found.breaking)} breaking changes")
    out.print(f"compatible: {found.source} fits {model} as data {use}", markup=False, highlight=False)
