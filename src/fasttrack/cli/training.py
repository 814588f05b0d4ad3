"""``fasttrack train`` and ``fasttrack evaluate``: train, track and register a model; score one on labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fasttrack.cli import render
from fasttrack.cli.options import DbOption, EngineOption, ModelOption, SchedulerOption, SqlOption, parse_pairs
from fasttrack.cli.render import err, out
from fasttrack.config import ModelKind, Task, get_settings
from fasttrack.errors import ConfigError, QualityGateError


def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML train config (configs/*.yaml).")] = None,
    data: Annotated[str | None, typer.Option(help="Data file or URL (overrides the config).")] = None,
    sql: SqlOption = None,
    db: DbOption = None,
    target: Annotated[str | None, typer.Option(help="Column to predict.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Registered model name (default: data file name; needed with --sql).")
    ] = None,
    task: Annotated[Task | None, typer.Option(help="auto, classification or regression.")] = None,
    model: Annotated[ModelKind | None, typer.Option(help="Estimator.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Hyperparameter key=value (repeatable).")] = None,
    test_size: Annotated[float | None, typer.Option(help="Held-out share, 0..1.")] = None,
    cv_folds: Annotated[int | None, typer.Option(help="Cross-validation folds (0 = off).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (cross-validation folds, the estimator).")] = None,
    split_salt: Annotated[
        str | None, typer.Option(help="Salt of the content hash that assigns rows to the train or test part.")
    ] = None,
    primary_metric: Annotated[str | None, typer.Option(help="Metric the gate and promotion compare.")] = None,
    threshold: Annotated[
        list[str] | None, typer.Option("--threshold", help="Gate: metric=worst acceptable value (repeatable).")
    ] = None,
    drop: Annotated[list[str] | None, typer.Option("--drop", help="Drop this column (repeatable).")] = None,
    keep: Annotated[list[str] | None, typer.Option("--keep", help="Use only these features (repeatable).")] = None,
    register: Annotated[bool, typer.Option(help="Register the model if it passes the gate.")] = True,
    engine: EngineOption = "local",
    scheduler: SchedulerOption = None,
) -> None:
    """Ingest, train, evaluate against a baseline, track in MLflow and register a model that passes the gate.

    Flags override the config's values; --param and --threshold add to its params and thresholds.
    """
    import fasttrack

    if config is None and ((data is None and sql is None) or target is None):
        raise ConfigError("give --config, or --data (or --sql and --db) and --target")
    overrides: dict[str, Any] = {
        "data": data,
        "sql": sql,
        "db": db,
        "target": target,
        "name": name,
        "task": task,
        "model": model,
        "params": parse_pairs(param, "--param") or None,
        "thresholds": parse_pairs(threshold, "--threshold") or None,
        "test_size": test_size,
        "cv_folds": cv_folds,
        "seed": seed,
        "split_salt": split_salt,
        "primary_metric": primary_metric,
        "drop_columns": drop or None,
        "keep_columns": keep or None,
    }
    with render.steps() as step:
        trained = fasttrack.train(
            config, register=register, on_step=step, engine=engine, scheduler=scheduler, **overrides
        )
    result = trained.result
    render.clean_report(trained.data.report)
    render.training_metrics(
        result.evaluation,
        title=f"{result.config.model} on {result.test_rows} held-out rows (trained on {result.train_rows})",
    )
    render.calibration(result.evaluation, max_error=get_settings().calibration_max_error)
    out.print(f"run {trained.run_id} (experiment {trained.experiment_id}) at {trained.tracking_uri}")
    if not trained.gate.passed:
        raise QualityGateError("quality gate failed, model not registered: " + "; ".join(trained.gate.reasons))
    if trained.registered:
        aliases = f" (alias: {', '.join(trained.aliases)})" if trained.aliases else ""
        out.print(f"[green]registered[/] {trained.name} version {trained.version}{aliases}")
    else:
        out.print("model logged, not registered (--no-register)")


def evaluate(
    data: Annotated[str | None, typer.Option(help="Labelled data file or URL to evaluate on.")] = None,
    sql: SqlOption = None,
    db: DbOption = None,
    model: ModelOption = None,
) -> None:
    """Score a model on labelled data and compare with the metrics it was registered with.

    Warns (on stderr) when some of the rows are rows the model was trained on, saying how many.
    """
    import fasttrack

    with render.steps() as step:
        scored = fasttrack.evaluate(model, data, sql=sql, db=db, on_step=step)
    table = Table(
        title=f"{scored.name} v{scored.version or '?'} on {scored.rows} rows of {scored.source}", title_justify="left"
    )
    for column in ("metric", "this data", "at registration"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, value in scored.metrics.items():
        table.add_row(metric, f"{value:.4f}", render.number(scored.at_registration.get(metric)))
    out.print(table)
    for warning in scored.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if scored.trained_on is None and scored.overlap_note:
        err.print(f"note: cannot tell whether the model trained on these rows: {scored.overlap_note}", highlight=False)
