"""``fasttrack dataset from-log``: labelled training data from the inference log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fasttrack.cli import render
from fasttrack.cli.options import LogOption, SinceOption, UntilOption
from fasttrack.cli.render import out

dataset_app = typer.Typer(help="Data sets made from what the server logged.", no_args_is_help=True)


@dataset_app.command("from-log")
def from_log(
    name: Annotated[str, typer.Argument(help="Registered model whose predictions are read.")],
    output: Annotated[Path, typer.Option("--out", help="File to write: .parquet or .csv (also .json, .jsonl).")],
    log: LogOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Join a model's logged predictions with their labels into a training file, for `fasttrack train`.

    Each prediction takes the first valid label received for its id (later ones are counted, not used);
    predictions without a label are counted and left out. The columns are the features of the newest version
    that served in the period, typed as its training data had them, and its target.
    """
    import fasttrack

    with render.steps() as step:
        made = fasttrack.dataset_from_log(name, output, log=log, since=since, until=until, on_step=step)
    versions = ", ".join(made.versions)
    out.print(
        f"{made.predictions:,} predictions of {made.name} {made.period} (versions {versions}): "
        f"{made.labelled:,} labelled, {made.unlabelled:,} without a label (left out)",
        markup=False,
        highlight=False,
    )
    if made.repeated_labels or made.orphan_labels:
        out.print(
            f"labels: {made.labels:,} read, {made.repeated_labels:,} repeats of an id already labelled (the first "
            f"wins), {made.orphan_labels:,} for predictions outside the period",
            markup=False,
            highlight=False,
        )
    out.print(
        f"{made.labelled:,} rows written to {made.output} (the columns of version {made.schema_version}: "
        f"{len(made.columns) - 1} features and {made.columns[-1]})",
        markup=False,
        highlight=False,
    )
