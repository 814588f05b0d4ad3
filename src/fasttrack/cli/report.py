"""``fasttrack report drift``: a self-contained HTML drift report from the inference log or a data file."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fasttrack.cli import render
from fasttrack.cli.options import LogOption, SinceOption, UntilOption
from fasttrack.cli.render import out

report_app = typer.Typer(help="Reports on a model in service.", no_args_is_help=True)


@report_app.command("drift")
def drift(
    name: Annotated[str, typer.Argument(help="Registered model.")],
    log: LogOption = None,
    data: Annotated[
        str | None,
        typer.Option(help="A data file to compare with the model's training profile instead of the log (drift only)."),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    version: Annotated[
        str | None,
        typer.Option(help="Only this version (number or alias); with --data, the version compared (default champion)."),
    ] = None,
    output: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path("drift.html"),
    open_it: Annotated[bool, typer.Option("--open", help="Open the report in a browser when written.")] = False,
) -> None:
    """Write one HTML file of drift (and live performance) per version that served in the period.

    Per feature: the live distribution against the training profile with PSI and KS or JS; the predictions
    against the target's profile; PSI per feature and time window; the accuracy (or RMSE and MAE) per window
    where labels exist, and for a calibrated classifier the accuracy estimated from its probabilities. A feature
    drifted when its PSI is above FASTTRACK_DRIFT_THRESHOLD (0.2) or its own in FASTTRACK_DRIFT_THRESHOLDS.
    """
    import fasttrack

    with render.steps() as step:
        report = fasttrack.drift_report(
            name, output, log=log, data=data, since=since, until=until, version=version, on_step=step
        )
    table = Table(title=f"{report.name}: {report.source}, {report.period}", title_justify="left")
    for column in ("version", "rows", "labelled", "drifted features"):
        table.add_column(column, justify="right" if column in ("rows", "labelled") else "left")
    for found in report.versions:
        drifted = ", ".join(f"{f.name} (PSI {f.psi:.2f})" for f in found.drifted if f.psi is not None) or "none"
        table.add_row(found.version, f"{found.rows:,}", f"{found.labelled:,}", drifted)
    out.print(table)
    for note in report.notes:
        out.print(f"note: {note}", markup=False, highlight=False)
    out.print(f"report written to {report.output}", markup=False, highlight=False)
    if open_it:
        webbrowser.open(report.output.resolve().as_uri())
