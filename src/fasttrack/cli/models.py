"""``fasttrack models``: list, show, promote and roll back registered models, and the history of their aliases."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fasttrack import exit_codes
from fasttrack.cli import render
from fasttrack.cli.options import DbOption, SqlOption
from fasttrack.cli.render import err, out
from fasttrack.config import get_settings
from fasttrack.errors import ConfigError

if TYPE_CHECKING:
    from fasttrack.registry.history import AliasEvent
    from fasttrack.registry.versions import VersionInfo

#: The alias a first version takes and a server follows by default (``fasttrack.registry.layout.CHAMPION``).
CHAMPION = "champion"

models_app = typer.Typer(
    help="List, show, promote and roll back registered models; the history of their aliases.", no_args_is_help=True
)

PROMOTE_HELP = f"""Compare a challenger with the champion on the same rows; move @champion only if it is better.

Both versions are scored on the challenger's held-out test part (or on --data / --sql) minus every row either
version trained on; with fewer than FASTTRACK_PROMOTION_MIN_ROWS rows left it refuses to decide (exit 1). The
alias moves when the lower bound of the confidence interval of the challenger's improvement on the primary
metric (a paired bootstrap) is above --margin. The decision, both scores, the interval and the rows used and
left out are recorded as fasttrack.promotion.* tags on both versions and in the alias history (fasttrack models
history). Servers following the alias pick it up. If another promotion moves the alias meanwhile, the
challenger is compared again with the new holder.

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
            row.version or "none",
            ", ".join(row.aliases),
            row.primary_metric or "",
            render.number(row.primary_metric_value),
            row.created.strftime("%Y-%m-%d %H:%M"),
            row.run_id or "",
        )
    out.print(table)
    for note in _listing_notes(rows):
        out.print(note, highlight=False)


def _listing_notes(rows: list[VersionInfo]) -> list[str]:
    """What a listing shows that needs a word: a registered model without versions, and one whose versions none
    holds ``@champion`` (both what a registration killed half-way leaves; a server of ``@champion`` refuses them)."""
    notes: list[str] = []
    for name in dict.fromkeys(row.name for row in rows):
        mine = [row for row in rows if row.name == name]
        numbered = [row.version for row in mine if row.version is not None]
        if not numbered:
            notes.append(f"{name}: no usable version (a registration did not finish); train one with `fasttrack train`")
        elif not any(CHAMPION in row.aliases for row in mine):
            notes.append(
                f"{name}: no version holds @{CHAMPION}; set it with `fasttrack models promote {name} {numbered[0]}`"
            )
    return notes


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
        str | None,
        typer.Option(
            help="How much better the challenger must surely be: the interval's lower bound must exceed it. A "
            "number >= 0, or `cv`: the challenger's cross-validation spread of the metric (default: "
            "FASTTRACK_PROMOTION_MARGIN, itself `cv`).",
        ),
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Metric to compare (default: the primary metric).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Move the alias even if the challenger loses.")] = False,
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
) -> None:
    """Compare a challenger with the champion; move the alias if it wins (help: :data:`PROMOTE_HELP`)."""
    import fasttrack
    from fasttrack.training.promotion import parse_margin

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
            margin=None if margin is None else parse_margin(margin),
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
        if result.interval is not None and result.confidence is not None:
            out.print(
                f"improvement {result.improvement:+.4f}, {result.confidence:.0%} interval {result.interval[0]:+.4f} "
                f"to {result.interval[1]:+.4f} ({result.resamples} paired bootstrap resamples), margin "
                f"{result.margin:g}; {result.rows} rows compared, {result.excluded} left out as training rows",
                highlight=False,
            )
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


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    to: Annotated[
        str | None,
        typer.Option("--to", help="Version to move the alias to (default: the one it held before its last move)."),
    ] = None,
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
) -> None:
    """Move @champion back to the version it held before its last recorded move, or to --to VERSION.

    The move is recorded in the alias history as a rollback; servers following the alias pick it up at their next
    poll. Rolling back twice returns to where the first rollback started. Refused, saying why, when there is
    nothing to roll back to (no recorded move, or the alias was moved outside FastTrack since) or the version
    does not exist.
    """
    from fasttrack.api import rollback

    event = rollback(name, to=to, alias=alias, settings=get_settings())
    if event is None:
        where = f"version {to}" if to is not None else "where a rollback would take it"
        out.print(f"{name}@{alias} is already {where}: nothing to do")
        return
    out.print(f"[green]rolled back[/] {name}@{alias}: version {event.before} -> version {event.after}")
    out.print(f"servers following models:/{name}@{alias} pick it up at their next registry poll", highlight=False)


@models_app.command("history")
def models_history(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    alias: Annotated[str | None, typer.Option(help="Only this alias (default: every alias).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per event (JSON Lines), oldest first.")
    ] = False,
) -> None:
    """Every recorded move of a model's aliases: when, which version before and after, the decision, who or what
    made it (FASTTRACK_ACTOR, the Airflow DAG run, or the OS user) and both scores when there was a comparison.

    Promotion decisions that kept the alias are listed too. Moves made outside FastTrack (MLflow's UI or API)
    leave no event: the current holder of every alias is shown anyway, with a note when it differs from the last
    recorded move.
    """
    from fasttrack.api import alias_history

    history = alias_history(name, alias=alias, settings=get_settings())
    if as_json:
        for event in history.events:
            line = json.dumps({"id": event.id, **event.fields()}, ensure_ascii=False, allow_nan=False)
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    if history.events:
        table = Table(title=f"alias history of {name} (oldest first)", title_justify="left")
        table.add_column("time (UTC)", no_wrap=True)
        table.add_column("alias", no_wrap=True)
        table.add_column("version", no_wrap=True)
        table.add_column("decision", no_wrap=True)
        table.add_column("by", overflow="fold")  # an Airflow run id is one long word: shown whole
        table.add_column("scores")
        for event in history.events:
            table.add_row(
                event.at.strftime("%Y-%m-%d %H:%M:%S"),
                f"@{event.alias}",
                _move(event),
                event.decision,
                event.by,
                _scores(event),
            )
        out.print(table)
    else:
        out.print(f"no recorded alias moves of {name}{f' @{alias}' if alias else ''} yet")
    for held, version in history.holders.items():
        out.print(f"now: {name}@{held} -> version {version}", highlight=False)
    for note in history.notes:
        out.print(f"note: {note}", markup=False, highlight=False)


def _move(event: AliasEvent) -> str:
    if not event.moved:
        return f"{event.after} (kept)"
    return f"{event.before or '-'} -> {event.after or '-'}"


def _scores(event: AliasEvent) -> str:
    c = event.comparison
    if c is None:
        return ""
    challenger, champion = render.number(c.challenger_score), render.number(c.champion_score)
    return f"{c.metric}: v{c.challenger} {challenger} vs v{c.champion} {champion}"


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
    out.print(f"every move of its aliases: fasttrack models history {details.name}", highlight=False)
