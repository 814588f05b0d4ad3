"""The ``fasttrack`` command line: thin wrappers around each stage's function.

Every failure FastTrack expects prints one readable line (``error: ...``) and exits 1; usage errors exit 2.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fasttrack import __version__
from fasttrack.config import ModelKind, Task, TrainConfig, get_settings, higher_is_better
from fasttrack.errors import ConfigError, FastTrackError, QualityGateError

if TYPE_CHECKING:
    from fasttrack.data.clean import CleanReport
    from fasttrack.data.schema import Schema
    from fasttrack.training.train import TrainResult

app = typer.Typer(
    name="fasttrack",
    help="FastTrack: tabular data to a trained, tracked, served and monitored model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
models_app = typer.Typer(help="List and promote registered models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

out = Console(soft_wrap=True)
err = Console(stderr=True)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        out.print(f"fasttrack {__version__}")
        raise typer.Exit


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug
    import os

    # Read by MLflow when it is first imported, which happens later, inside the commands.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if debug else "ERROR")
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        for noisy in ("alembic", "mlflow", "urllib3", "botocore"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")


@contextmanager
def _steps() -> Iterator[Any]:
    """A spinner per long step on stderr: call the yielded function with each step's description."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        current: list[Any] = []

        def step(description: str) -> None:
            if current:
                progress.update(current[-1], completed=1, total=1)
            current.append(progress.add_task(description, total=None))

        try:
            yield step
        finally:
            if current:
                progress.update(current[-1], completed=1, total=1)


def _parse_pairs(values: list[str] | None, what: str) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------------- ingest
@app.command()
def ingest(
    data: Annotated[str, typer.Argument(help="CSV, JSON, JSON Lines or Parquet file: a path or a URL (s3://...).")],
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
    """Read and clean a data set, report what cleaning did, and optionally save the data and its schema."""
    from fasttrack.data.clean import CleanOptions
    from fasttrack.data.ingest import ingest as run_ingest
    from fasttrack.data.schema import infer_schema

    if schema_out and not target:
        raise ConfigError("--schema-out needs --target: the schema describes features against a target")
    options = CleanOptions(drop_columns=drop or [], keep_columns=keep or None)
    result = run_ingest(data, target=target, options=options, format=fmt)
    schema = infer_schema(result.frame, target, task) if target else None
    _print_clean_report(result.report)
    if schema is not None:
        _print_schema(schema)
    out.print(f"fingerprint: {result.fingerprint}")
    if output:
        _write_frame(result.frame, output)
        out.print(f"cleaned data written to {output}")
    if schema_out and schema is not None:
        schema.save(schema_out)
        out.print(f"schema written to {schema_out}")


def _print_clean_report(report: CleanReport) -> None:
    out.print("[bold]cleaning[/]")
    for line in report.summary():
        out.print(f"  - {line}")


def _print_schema(schema: Schema) -> None:
    table = Table(title=f"schema (target {schema.target.name}: {schema.target.task})", title_justify="left")
    for column in ("feature", "kind", "missing", "range / categories"):
        table.add_column(column)
    for f in schema.features:
        if f.kind == "numeric":
            detail = f"{f.min:g} .. {f.max:g}" if f.min is not None and f.max is not None else ""
        else:
            cats = f.categories or []
            detail = ", ".join(cats[:5]) + (f" (+{len(cats) - 5})" if len(cats) > 5 else "")
        table.add_row(f.name, f.kind, f"{f.missing_ratio:.1%}", detail)
    out.print(table)


def _write_frame(frame: Any, path: Path) -> None:
    """Write a frame by extension, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame.to_parquet(tmp, index=False)
    elif suffix == ".csv":
        frame.to_csv(tmp, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        frame.to_json(tmp, orient="records", lines=True)
    elif suffix == ".json":
        frame.to_json(tmp, orient="records")
    else:
        raise ConfigError(f"cannot write {path}: use .parquet, .csv, .json or .jsonl")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------- train
@app.command()
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML train config (configs/*.yaml).")] = None,
    data: Annotated[str | None, typer.Option(help="Data file or URL (overrides the config).")] = None,
    target: Annotated[str | None, typer.Option(help="Column to predict.")] = None,
    name: Annotated[str | None, typer.Option(help="Registered model name (default: data file name).")] = None,
    task: Annotated[Task | None, typer.Option(help="auto, classification or regression.")] = None,
    model: Annotated[ModelKind | None, typer.Option(help="Estimator.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Hyperparameter key=value (repeatable).")] = None,
    test_size: Annotated[float | None, typer.Option(help="Held-out share, 0..1.")] = None,
    cv_folds: Annotated[int | None, typer.Option(help="Cross-validation folds (0 = off).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    primary_metric: Annotated[str | None, typer.Option(help="Metric the gate and promotion compare.")] = None,
    threshold: Annotated[
        list[str] | None, typer.Option("--threshold", help="Gate: metric=worst acceptable value (repeatable).")
    ] = None,
    drop: Annotated[list[str] | None, typer.Option("--drop", help="Drop this column (repeatable).")] = None,
    keep: Annotated[list[str] | None, typer.Option("--keep", help="Use only these features (repeatable).")] = None,
    register: Annotated[bool, typer.Option(help="Register the model if it passes the gate.")] = True,
) -> None:
    """Ingest, train, evaluate against a baseline, track in MLflow and register a model that passes the gate."""
    from fasttrack.data.clean import CleanOptions
    from fasttrack.data.ingest import ingest as run_ingest
    from fasttrack.data.schema import infer_schema
    from fasttrack.registry.tracking import log_training
    from fasttrack.training.plots import save_plots
    from fasttrack.training.train import train as run_train

    overrides: dict[str, Any] = {
        "data": data,
        "target": target,
        "name": name,
        "task": task,
        "model": model,
        "test_size": test_size,
        "cv_folds": cv_folds,
        "seed": seed,
        "primary_metric": primary_metric,
        "drop_columns": drop or None,
        "keep_columns": keep or None,
    }
    base = TrainConfig.load(config) if config else None
    if param:
        overrides["params"] = {**(base.params if base else {}), **_parse_pairs(param, "--param")}
    if threshold:
        overrides["thresholds"] = {**(base.thresholds if base else {}), **_parse_pairs(threshold, "--threshold")}
    if base is None and (data is None or target is None):
        raise ConfigError("give --config, or both --data and --target")
    cfg = TrainConfig.load(config, **overrides)
    settings = get_settings()
    import tempfile

    with _steps() as step:
        step(f"reading {cfg.data}")
        options = CleanOptions(drop_columns=cfg.drop_columns, keep_columns=cfg.keep_columns)
        ingested = run_ingest(cfg.data, target=cfg.target, options=options)
        schema = infer_schema(
            ingested.frame,
            cfg.target,
            cfg.task,
            max_categories=cfg.max_categories,
            min_category_count=cfg.min_category_count,
        )
        result = run_train(ingested.frame, cfg, schema, on_step=step)
        step("recording the run in MLflow")
        with tempfile.TemporaryDirectory(prefix="fasttrack-plots-") as tmp:
            plots = save_plots(result, Path(tmp))
            tracked = log_training(
                result,
                settings=settings,
                source=cfg.data,
                fingerprint=ingested.fingerprint,
                clean_report=ingested.report,
                plots=plots,
                register=register,
            )
    _print_clean_report(ingested.report)
    _print_metrics(result)
    gate = result.evaluation.gate
    out.print(f"run {tracked.run_id} (experiment {tracked.experiment_id}) at {settings.resolved_tracking_uri()}")
    if not gate.passed:
        raise QualityGateError("quality gate failed, model not registered: " + "; ".join(gate.reasons))
    if tracked.registered:
        aliases = f" (alias: {', '.join(tracked.aliases)})" if tracked.aliases else ""
        out.print(f"[green]registered[/] {tracked.name} version {tracked.version}{aliases}")
    else:
        out.print("model logged, not registered (--no-register)")


def _print_metrics(result: TrainResult) -> None:
    ev = result.evaluation
    table = Table(
        title=f"{result.config.model} on {result.test_rows} held-out rows (trained on {result.train_rows})",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("test", justify="right")
    table.add_column("baseline", justify="right")
    if ev.cv:
        table.add_column(f"CV ({result.config.cv_folds} folds)", justify="right")
    for metric, value in ev.metrics.items():
        mark = " *" if metric == ev.primary_metric else ""
        row = [f"{metric}{mark}", f"{value:.4f}", _fmt(ev.baseline.get(metric))]
        if ev.cv:
            cv = ev.cv.get(metric)
            row.append(f"{cv[0]:.4f} ± {cv[1]:.4f}" if cv else "")
        table.add_row(*row)
    out.print(table)
    out.print(f"* primary metric ({'higher' if higher_is_better(ev.primary_metric) else 'lower'} is better)")
    if ev.confusion_matrix is not None and ev.labels is not None and len(ev.labels) <= 10:
        out.print("confusion matrix (rows: true label, columns: predicted)")
        cm = Table()
        cm.add_column("")
        for label in ev.labels:
            cm.add_column(str(label), justify="right")
        for label, counts in zip(ev.labels, ev.confusion_matrix, strict=True):
            cm.add_row(str(label), *map(str, counts))
        out.print(cm)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


# ------------------------------------------------------------------------------------------------- evaluate
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Model URI (models:/NAME@ALIAS, models:/NAME/3) or folder; default: FASTTRACK_MODEL."
    ),
]


@app.command()
def evaluate(
    data: Annotated[str, typer.Option(help="Labelled data file or URL to evaluate on.")],
    model: ModelOption = None,
) -> None:
    """Score a model on labelled data and compare with the metrics it was registered with."""
    from fasttrack.data.clean import CleanOptions
    from fasttrack.data.ingest import ingest as run_ingest
    from fasttrack.data.schema import prepare_features
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.registry.tracking import resolve_model
    from fasttrack.training.evaluate import evaluate_model

    settings = get_settings()
    with _steps() as step:
        step("loading the model")
        resolved = resolve_model(model, settings)
        loaded = load_model_folder(resolved.path)
        meta = loaded.metadata
        step(f"reading {data}")
        ingested = run_ingest(
            data, target=meta.target, options=CleanOptions(drop_identifiers=False, drop_constant=False)
        )
        step("scoring")
        features = prepare_features(ingested.frame, loaded.schema)
        y = ingested.frame[meta.target]
        metrics = evaluate_model(loaded.pipeline, features, y, task=meta.task, labels=meta.labels)
    table = Table(
        title=f"{meta.name} v{resolved.version or '?'} on {len(features)} rows of {data}", title_justify="left"
    )
    for column in ("metric", "this data", "at registration"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, value in metrics.items():
        table.add_row(metric, f"{value:.4f}", _fmt(meta.metrics.get(metric)))
    out.print(table)


# -------------------------------------------------------------------------------------------------- predict
@app.command()
def predict(
    data: Annotated[str, typer.Option(help="Input file or URL (CSV, JSON, JSON Lines, Parquet).")],
    output: Annotated[Path, typer.Option("--out", help="Output file (.csv, .parquet, .json, .jsonl).")],
    model: ModelOption = None,
    probabilities: Annotated[bool, typer.Option(help="Add a probability column per class.")] = False,
) -> None:
    """Score a file with a model and write the input columns plus ``prediction`` to another file."""
    from fasttrack.data.clean import normalize
    from fasttrack.data.ingest import read_table
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.registry.tracking import resolve_model

    settings = get_settings()
    with _steps() as step:
        step("loading the model")
        loaded = load_model_folder(resolve_model(model, settings).path)
        step(f"reading {data}")
        frame, _ = normalize(read_table(data))
        step(f"predicting {len(frame)} rows")
        result = frame.copy()
        result["prediction"] = loaded.predict(frame)
        if probabilities:
            if not loaded.is_classifier:
                raise ConfigError("--probabilities applies to classifiers; this model is a regressor")
            for label, values in _columns(loaded.predict_proba(frame)).items():
                result[f"probability_{label}"] = values
        step(f"writing {output}")
        _write_frame(result, output)
    out.print(f"{len(result)} predictions written to {output}")


def _columns(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    return {label: [row[label] for row in rows] for label in (rows[0] if rows else {})}


# --------------------------------------------------------------------------------------------------- models
@models_app.command("list")
def models_list(name: Annotated[str | None, typer.Argument(help="Only this registered model.")] = None) -> None:
    """Show registered models: versions, aliases and the primary metric."""
    from fasttrack.registry.tracking import list_versions

    settings = get_settings()
    rows = list_versions(settings, name)
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
            _fmt(row.primary_metric_value),
            row.created.strftime("%Y-%m-%d %H:%M"),
            row.run_id or "",
        )
    out.print(table)


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to promote.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
) -> None:
    """Move an alias (default ``champion``) to a version; servers following the alias pick it up."""
    from fasttrack.registry.tracking import promote

    promote(get_settings(), name, version, alias)
    out.print(f"{name}@{alias} -> version {version}")


# ---------------------------------------------------------------------------------------------------- serve
@app.command()
def serve(
    model: ModelOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Serve a model over HTTP (FastAPI + Uvicorn)."""
    from fasttrack.serving.app import run

    settings = get_settings(model=model, host=host, port=port)
    run(settings)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fasttrack`` command: one readable line per failure, tracebacks with ``--debug``."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, standalone_mode=True)
    except FastTrackError as exc:
        if debug:
            raise
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        err.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
