"""``fasttrack models``: list, show and promote registered models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fasttrack import exit_codes
from fasttrack.cli import render
from fasttrack.cli.options import DbOption, SqlOption
from fasttrack.cli.render import err, out
from fasttrack.config import get_settings
from fasttrack.errors import ConfigError

models_app = typer.Typer(help="List, show and promote registered models.", no_args_is_help=True)

PROMOTE_HELP = f"""Compare a challenger with the champion on the same rows; move @champion only if it is better.

Both versions are scored on the challenger's held-out test part (or on --data / --sql), and the alias moves
when the challenger beats the champion's primary metric by at least --margin. The decision and both scores
are recorded as fasttrack.promotion.* tags on both versions. Servers following the alias pick it up.

Exit codes: {exit_codes.OK} the alias moved after a comparison (promoted, or --force) or the challenger already
held it; {exit_codes.NOT_BETTER} the challenger was not better and the alias stays (the reason in one line on
stderr; Airflow's BashOperator shows the task as skipped); {exit_codes.NO_CHAMPION} no version held the alias,
so the challenger took it without a comparison; {exit_codes.ERROR} an error; {exit_codes.USAGE} a usage error.
"""


@models_app.command("list")
def models_list(name: Annotated[str | None, typer.Argument(help="Only this registered model.")] = None) -> None:
    """Show registered models: versions, aliases and the primary metric."""
    from fasttrack.api import list_versions

    settings = get_settings()
    rows = list_versions(name, settings=settings)
    if not rows:
        out.print("no registered models yet: train one with `fasttrack train`")
        return
    table = Table(title=f"registered models at {settings.resolved_tracking_uri()}", title_justify="left")
    for column in ("name", "version", "aliases", "primary metric", "value", "created", "run"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.name,
            row.version,
            ", ".join(row.aliases),
            row.primary_metric or "",
            render.number(row.primary_metric_value),
            row.created.strftime("%Y-%m-%d %H:%M"),
            row.run_id or "",
        )
    out.print(table)


@models_app.command("promote", help=PROMOTE_HELP)
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str | None, typer.Argument(help="Challenger version (same as --challenger).")] = None,
    challenger: Annotated[
        str | None, typer.Option("--challenger", help="Version that challenges the current champion.")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Labelled data to compare on (default: the challenger's held-out test part)."),
    ] = None,
    sql: SqlOption = None,
    db: DbOption = None,
    margin: Annotated[
        float | None,
        typer.Option(
            min=0, help="How much better the challenger must be (default: FASTTRACK_PROMOTION_MARGIN, else 0)."
        ),
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Metric to compare (default: the primary metric).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Move the alias even if the challenger loses.")] = False,
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
) -> None:
    """Compare a challenger with the champion; move the alias if it wins (help: :data:`PROMOTE_HELP`)."""
    import fasttrack

    if version and challenger and version != challenger:
        raise ConfigError(f"two challengers given ({version} and --challenger {challenger}): give one")
    candidate = challenger or version
    if not candidate:
        raise ConfigError("give the challenger version: fasttrack models promote NAME --challenger VERSION")
    with render.steps() as step:
        result = fasttrack.promote(
            name,
            candidate,
            alias=alias,
            data=data,
            sql=sql,
            db=db,
            margin=margin,
            metric=metric,
            force=force,
            on_step=step,
        )
    if result.champion is not None:
        table = Table(
            title=f"{name}: challenger vs @{alias} on {result.rows} rows of {result.data}", title_justify="left"
        )
        for column in ("version", "role", f"{result.metric}"):
            table.add_column(column, justify="right" if column == result.metric else "left")
        table.add_row(result.challenger.version, "challenger", render.number(result.challenger.score))
        table.add_row(result.champion.version, f"@{alias}", render.number(result.champion.score))
        out.print(table)
        if result.decision != "rejected":  # a rejection says why on stderr
            out.print(result.reason, highlight=False)
    if result.decision == "rejected":
        # An outcome, not a failure: one line saying why, and the exit code schedulers skip on.
        err.print(
            f"not promoted: {name}@{alias} stays at version {result.champion.version if result.champion else '?'}: "
            f"{result.reason} (use --force to promote anyway)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(exit_codes.NOT_BETTER)
    if result.decision == "already-champion":
        out.print(f"{name}@{alias} is already version {result.challenger.version}: nothing to do")
        return
    if result.decision == "no-champion":
        out.print(
            f"[green]promoted[/] {name}@{alias} -> version {result.challenger.version} "
            "(no version held it: taken without a comparison)"
        )
        raise typer.Exit(exit_codes.NO_CHAMPION)
    note = " (forced)" if result.decision == "forced" else ""
    out.print(f"[green]promoted[/] {name}@{alias} -> version {result.challenger.version}{note}")


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version number or alias.")] = "champion",
) -> None:
    """Show one registered version: aliases, run, metrics, data lineage and the last promotion decision."""
    from fasttrack.api import describe_version

    settings = get_settings()
    details = describe_version(name, version, settings=settings)
    out.print(f"[bold]{details.name} version {details.version}[/]", highlight=False)
    info = {
        "aliases": ", ".join(details.aliases) or "-",
        "created": details.created.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "status": details.status or "",
        "run": details.run_id or "-",
        "source": details.source or "",
        "tracking": settings.resolved_tracking_uri(),
    }
    for key, value in info.items():
        out.print(f"  {key}: {value}", highlight=False)
    test_metrics = {k.removeprefix("test_"): v for k, v in details.metrics.items() if k.startswith("test_")}
    if test_metrics:
        table = Table(title="metrics (held-out test part)", title_justify="left")
        table.add_column("metric")
        table.add_column("test", justify="right")
        table.add_column("baseline", justify="right")
        for metric, score in sorted(test_metrics.items()):
            table.add_row(metric, f"{score:.4f}", render.number(details.metrics.get(f"baseline_{metric}")))
        out.print(table)
    out.print("[bold]data lineage[/]")
    for key, value in details.lineage.items():
        out.print(f"  {key}: {value}", highlight=False)
    promotion = {k.removeprefix("fasttrack.promotion."): v for k, v in details.tags.items() if "promotion." in k}
    if promotion:
        out.print("[bold]last promotion decision[/]")
        for key, value in sorted(promotion.items()):
            out.print(f"  {key}: {value}", highlight=False)
