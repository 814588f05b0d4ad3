"""``fasttrack predict``: score a file of any size with a model, streaming, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fasttrack import process
from fasttrack.cli.options import EngineOption, ModelOption, RuntimeOption, runtime_and_engine
from fasttrack.cli.render import ScoreBar, out


def predict(
    data: Annotated[str, typer.Option(help="Input file or URL (CSV, JSON, JSON Lines, Parquet).")],
    output: Annotated[Path, typer.Option("--out", help="Output file (.csv, .parquet, .json, .jsonl).")],
    model: ModelOption = None,
    probabilities: Annotated[bool, typer.Option(help="Add a probability column per class.")] = False,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows read, scored and written at a time.")] = 100_000,
    runtime: RuntimeOption = "auto",
    engine: EngineOption = "local",
) -> None:
    """Score a file with a model and write the input columns plus ``prediction`` to another file.

    The file is streamed in batches (memory stays flat as it grows) and the output appears only once every
    row is scored.
    """
    import fasttrack

    engine, runtime = runtime_and_engine(engine, runtime)
    # Huge pages off while scoring: see fasttrack.process.small_pages.
    with ScoreBar(data) as bar, process.small_pages():
        summary = fasttrack.score_file(
            model,
            data,
            output,
            batch_rows=batch_rows,
            probabilities=probabilities,
            runtime=runtime,
            engine=engine,
            progress=bar,
        )
    rate = summary.rows / summary.seconds if summary.seconds > 0 else 0.0
    out.print(
        f"{summary.rows} predictions written to {output} "
        f"({summary.engine}, {summary.seconds:.1f} s, {rate:,.0f} rows/s)"
    )
