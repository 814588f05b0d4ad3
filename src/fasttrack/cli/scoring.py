"""``fasttrack predict``: score a data set of any size with a model, streaming or on a Dask cluster, with a
progress bar."""

from __future__ import annotations

from typing import Annotated

import typer

from fasttrack import process
from fasttrack.cli.options import EngineOption, ModelOption, RuntimeOption, SchedulerOption, runtime_and_engine
from fasttrack.cli.render import PartitionBar, ScoreBar, out
from fasttrack.cluster import check_engine


def predict(
    data: Annotated[
        str,
        typer.Option(
            help="Input: a CSV, JSON, JSON Lines or Parquet file or URL; with --engine dask, a CSV or Parquet file, "
            "glob (quoted: 'data/part-*.csv') or folder."
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--out",
            help="Output file (.csv, .parquet, .json, .jsonl); with --engine dask, a folder or s3:// prefix of "
            "Parquet parts, complete once its _SUCCESS marker is there.",
        ),
    ],
    model: ModelOption = None,
    probabilities: Annotated[bool, typer.Option(help="Add a probability column per class.")] = False,
    batch_rows: Annotated[
        int, typer.Option(min=1, help="Rows read, scored and written at a time (local engine).")
    ] = 100_000,
    runtime: RuntimeOption = "auto",
    engine: EngineOption = "local",
    scheduler: SchedulerOption = None,
) -> None:
    """Score a data set with a model and write the input columns plus ``prediction``.

    Locally the file is streamed in batches (memory stays flat as it grows) and the output appears only once
    every row is scored. With --engine dask each partition is scored on a worker of a Dask cluster and written
    as one Parquet part, in input order (docs/scale.md).
    """
    import fasttrack

    engine, runtime = runtime_and_engine(engine, runtime)
    compute = check_engine(engine)
    # Huge pages off while scoring: see fasttrack.process.small_pages.
    bar = PartitionBar(data) if compute == "dask" else ScoreBar(data)
    with bar, process.small_pages():
        summary = fasttrack.score_file(
            model,
            data,
            output,
            batch_rows=batch_rows,
            probabilities=probabilities,
            runtime=runtime,
            engine=compute,
            scheduler=scheduler,
            progress=bar,
        )
    rate = summary.rows / summary.seconds if summary.seconds > 0 else 0.0
    where = ""
    if compute == "dask":
        from fasttrack.batch.dask_score import DaskScoreSummary

        assert isinstance(summary, DaskScoreSummary)
        where = f", {summary.partitions} partitions on {summary.workers} Dask workers"
    out.print(
        f"{summary.rows} predictions written to {output} "
        f"({summary.engine}{where}, {summary.seconds:.1f} s, {rate:,.0f} rows/s)",
        markup=False,
        highlight=False,
    )
