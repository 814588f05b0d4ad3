"""The ``fasttrack`` command line: thin wrappers around each stage's function.

Every failure FastTrack expects prints one readable line (``error: ...``) and exits 1; usage errors exit 2.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fasttrack import __version__
from fasttrack.config import Engine, ModelKind, Task, TrainConfig, get_settings, higher_is_better
from fasttrack.errors import ConfigError, FastTrackError, PromotionRejectedError, QualityGateError

if TYPE_CHECKING:
    from fasttrack.data.clean import CleanOptions, CleanReport
    from fasttrack.data.ingest import IngestResult
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
models_app = typer.Typer(help="List, show and promote registered models.", no_args_is_help=True)
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
SqlOption = Annotated[
    str | None, typer.Option("--sql", help="SQL query to read the data with, instead of a file (needs --db).")
]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL the --sql query runs on: postgresql://user@host/db, sqlite:///file.db."),
]


def _check_source(data: str | None, sql: str | None, db: str | None) -> None:
    """Exactly one data source: a file or URL, or a query with its database."""
    if data and (sql or db):
        raise ConfigError("give either a data file or --sql with --db, not both")
    if (sql or db) and not (sql and db):
        raise ConfigError("--sql and --db go together: the query and the database URL it runs on")
    if not (data or sql):
        raise ConfigError("no data: give a file or URL (--data), or --sql QUERY with --db URL")


def _ingest_source(
    data: str | None,
    sql: str | None,
    db: str | None,
    *,
    target: str | None,
    options: CleanOptions,
    fmt: str | None = None,
) -> IngestResult:
    """Read and clean a file or URL (``data``) or a SQL query's result (``sql`` on ``db``)."""
    from fasttrack.data.ingest import ingest as run_ingest
    from fasttrack.data.ingest import ingest_query

    _check_source(data, sql, db)
    if data:
        return run_ingest(data, target=target, options=options, format=fmt)
    return ingest_query(str(sql), str(db), target=target, options=options)


def _print_lineage(result: IngestResult) -> None:
    extra = {k: v for k, v in result.lineage.items() if k not in ("kind", "db")}
    out.print(f"source: {result.source}" + "".join(f"\n{k}: {v}" for k, v in extra.items()), highlight=False)


@app.command()
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
    from fasttrack.data.clean import CleanOptions
    from fasttrack.data.describe import infer_schema

    if schema_out and not target:
        raise ConfigError("--schema-out needs --target: the schema describes features against a target")
    options = CleanOptions(drop_columns=drop or [], keep_columns=keep or None)
    result = _ingest_source(data, sql, db, target=target, options=options, fmt=fmt)
    schema = (
        infer_schema(
            result.frame,
            target,
            task,
            dropped_columns=result.report.dropped_columns,
            missing_markers=options.missing_markers,
        )
        if target
        else None
    )
    _print_clean_report(result.report)
    if schema is not None:
        _print_schema(schema)
    _print_lineage(result)
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
    from fasttrack.data.describe import infer_schema
    from fasttrack.registry.tracking import log_training
    from fasttrack.training.plots import save_plots
    from fasttrack.training.train import train as run_train

    overrides: dict[str, Any] = {
        "data": data,
        "sql": sql,
        "db": db,
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
    if base is None and ((data is None and sql is None) or target is None):
        raise ConfigError("give --config, or --data (or --sql and --db) and --target")
    values = base.model_dump(exclude_unset=True) if base else {}
    # A source on the command line replaces the config's: a file replaces a query, a query replaces a file.
    if data is not None:
        values = {k: v for k, v in values.items() if k not in ("sql", "db")}
    if sql is not None or db is not None:
        values.pop("data", None)
    cfg = TrainConfig.load(None, **{**values, **{k: v for k, v in overrides.items() if v is not None}})
    cfg.resolved_name()  # a SQL source without a name fails here, before any work
    settings = get_settings()
    import tempfile

    from fasttrack.registry.tracking import check_tracking

    with _steps() as step:
        step("connecting to the tracking store")
        check_tracking(settings)
        step(f"reading {cfg.source}")
        options = CleanOptions(drop_columns=cfg.drop_columns, keep_columns=cfg.keep_columns)
        ingested = _ingest_source(cfg.data, cfg.sql, cfg.db, target=cfg.target, options=options)
        schema = infer_schema(
            ingested.frame,
            cfg.target,
            cfg.task,
            max_categories=cfg.max_categories,
            min_category_count=cfg.min_category_count,
            dropped_columns=ingested.report.dropped_columns,
            missing_markers=options.missing_markers,
        )
        result = run_train(ingested.frame, cfg, schema, on_step=step)
        step("recording the run in MLflow")
        with tempfile.TemporaryDirectory(prefix="fasttrack-plots-") as tmp:
            plots = save_plots(result, Path(tmp))
            tracked = log_training(
                result,
                settings=settings,
                source=ingested.source,
                fingerprint=ingested.fingerprint,
                lineage=ingested.lineage,
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
    data: Annotated[str | None, typer.Option(help="Labelled data file or URL to evaluate on.")] = None,
    sql: SqlOption = None,
    db: DbOption = None,
    model: ModelOption = None,
) -> None:
    """Score a model on labelled data and compare with the metrics it was registered with."""
    from fasttrack.data.clean import CleanOptions
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.registry.tracking import resolve_model
    from fasttrack.runtime.select import open_runtime
    from fasttrack.training.evaluate import evaluate_runtime

    _check_source(data, sql, db)
    settings = get_settings()
    with _steps() as step:
        step("loading the model")
        resolved = resolve_model(model, settings)
        loaded = load_model_folder(resolved.path)
        meta = loaded.metadata
        step("reading the data")
        ingested = _ingest_source(
            data, sql, db, target=meta.target, options=CleanOptions(drop_identifiers=False, drop_constant=False)
        )
        step("scoring")
        metrics = evaluate_runtime(open_runtime(loaded), ingested.frame, ingested.frame[meta.target])
    table = Table(
        title=f"{meta.name} v{resolved.version or '?'} on {len(ingested.frame)} rows of {ingested.source}",
        title_justify="left",
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
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows read, scored and written at a time.")] = 100_000,
    engine: Annotated[
        Engine, typer.Option(help="auto (ONNX Runtime when the model has a checked graph), onnx or sklearn.")
    ] = "auto",
) -> None:
    """Score a file with a model and write the input columns plus ``prediction`` to another file.

    The file is streamed in batches (memory stays flat as it grows) and the output appears only once every
    row is scored.
    """
    from fasttrack.registry.tracking import resolve_model
    from fasttrack.scoring import output_format, score_file

    output_format(output)  # an unusable output name fails before any work
    settings = get_settings()
    with _steps() as step:
        step("resolving the model")
        folder = resolve_model(model, settings).path
    with _ScoreBar(data) as bar:
        summary = score_file(
            folder,
            data,
            output,
            batch_rows=batch_rows,
            probabilities=probabilities,
            engine=engine,
            progress=bar,
        )
    rate = summary.rows / summary.seconds if summary.seconds > 0 else 0.0
    out.print(
        f"{summary.rows} predictions written to {output} "
        f"({summary.engine}, {summary.seconds:.1f} s, {rate:,.0f} rows/s)"
    )


class _ScoreBar:
    """A progress bar on stderr for :func:`fasttrack.scoring.score_file` (bytes or rows read, rows scored)."""

    def __init__(self, source: str) -> None:
        from rich.progress import BarColumn, TaskProgressColumn, TimeRemainingColumn

        self.source = source
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:,} rows"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self.task: Any = None

    def __enter__(self) -> _ScoreBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, stream: Any) -> None:
        self.task = self.progress.add_task(f"scoring {self.source}", total=stream.total, rows=0)

    def update(self, rows: int, position: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=position, rows=rows)


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
    """Compare a challenger with the champion on the same rows; move @champion only if it is better.

    Both versions are scored on the challenger's held-out test part (or on --data / --sql), and the alias moves
    when the challenger beats the champion's primary metric by at least --margin. The decision and both scores
    are recorded as fasttrack.promotion.* tags on both versions. Servers following the alias pick it up.
    """
    from fasttrack.data.clean import CleanOptions
    from fasttrack.registry.promotion import model_target, promote_challenger

    if version and challenger and version != challenger:
        raise ConfigError(f"two challengers given ({version} and --challenger {challenger}): give one")
    candidate = challenger or version
    if not candidate:
        raise ConfigError("give the challenger version: fasttrack models promote NAME --challenger VERSION")
    if data or sql or db:
        _check_source(data, sql, db)
    if metric:
        higher_is_better(metric)  # an unknown metric fails before any work
    settings = get_settings()
    frame, source = None, None
    with _steps() as step:
        if data or sql or db:
            step("reading the comparison data")
            options = CleanOptions(drop_identifiers=False, drop_constant=False)
            target = model_target(settings, name, candidate)
            ingested = _ingest_source(data, sql, db, target=target, options=options)
            frame, source = ingested.frame, ingested.source
        step(f"comparing version {candidate} with @{alias}")
        result = promote_challenger(
            settings,
            name,
            candidate,
            alias=alias,
            margin=margin,
            metric=metric,
            force=force,
            frame=frame,
            frame_source=source,
        )
    if result.champion is not None:
        table = Table(
            title=f"{name}: challenger vs @{alias} on {result.rows} rows of {result.data}", title_justify="left"
        )
        for column in ("version", "role", f"{result.metric}"):
            table.add_column(column, justify="right" if column == result.metric else "left")
        table.add_row(result.challenger.version, "challenger", _fmt(result.challenger.score))
        table.add_row(result.champion.version, f"@{alias}", _fmt(result.champion.score))
        out.print(table)
        if result.decision != "rejected":  # a rejection says why on stderr
            out.print(result.reason, highlight=False)
    if result.decision == "rejected":
        raise PromotionRejectedError(
            f"{name}@{alias} stays at version {result.champion.version if result.champion else '?'}: "
            f"{result.reason} (use --force to promote anyway)"
        )
    if result.decision == "already-champion":
        out.print(f"{name}@{alias} is already version {result.challenger.version}: nothing to do")
        return
    note = " (forced)" if result.decision == "forced" else ""
    out.print(f"[green]promoted[/] {name}@{alias} -> version {result.challenger.version}{note}")


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version number or alias.")] = "champion",
) -> None:
    """Show one registered version: aliases, run, metrics, data lineage and the last promotion decision."""
    from fasttrack.registry.tracking import describe_version

    settings = get_settings()
    details = describe_version(settings, name, version)
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
            table.add_row(metric, f"{score:.4f}", _fmt(details.metrics.get(f"baseline_{metric}")))
        out.print(table)
    out.print("[bold]data lineage[/]")
    for key, value in details.lineage.items():
        out.print(f"  {key}: {value}", highlight=False)
    promotion = {k.removeprefix("fasttrack.promotion."): v for k, v in details.tags.items() if "promotion." in k}
    if promotion:
        out.print("[bold]last promotion decision[/]")
        for key, value in sorted(promotion.items()):
            out.print(f"  {key}: {value}", highlight=False)


# ---------------------------------------------------------------------------------------------------- serve
@app.command()
def serve(
    model: ModelOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    reload_interval: Annotated[
        float | None, typer.Option(help="Seconds between registry checks for a new version (default 10; 0 = off).")
    ] = None,
    access_log: Annotated[
        bool | None, typer.Option("--access-log/--no-access-log", help="One JSON log line per request (default off).")
    ] = None,
    engine: Annotated[
        Engine | None,
        typer.Option(help="Inference engine: auto (ONNX when the model has a checked model.onnx), onnx or sklearn."),
    ] = None,
) -> None:
    """Serve a model over HTTP: /predict, MLflow's /invocations, the V2 protocol, /metrics; follows the registry.

    The model is resolved before the port is bound (an unknown model fails at once) and loaded in the
    background; SIGTERM drains in-flight requests before exiting.
    """
    from fasttrack.serving.app import run

    settings = get_settings(
        model=model,
        host=host,
        port=port,
        workers=workers,
        reload_interval=reload_interval,
        access_log=access_log,
        engine=engine,
    )
    run(settings)


def _exit_now(code: int, *, cleanup: bool = False) -> None:
    """Exit without interpreter finalisation (``cleanup``: after running the ``atexit`` handlers).

    After a command has finished, tearing the interpreter down (every module of MLflow, scikit-learn, pandas...)
    took 1.3-1.5 s of `fasttrack train` (measured by bench/apps/train_stages.py) and is of no use: the command's
    files are closed and its runs ended. The ``atexit`` handlers still run (logging flushes its handlers, libraries
    stop their pools), then the process exits with ``code``.

    About one error exit in 25 of `fasttrack predict` aborted during finalisation ("terminate called without an
    active exception", SIGABRT) after the error line was printed: a native thread pool is torn down while still
    busy (the root cause is not yet found; pyarrow's CSV read-ahead was ruled out). By this point every
    ``finally`` has run (temporary files removed, MLflow runs ended), so only the interpreter's own teardown is
    skipped.
    """
    if cleanup:
        atexit._run_exitfuncs()  # what interpreter shutdown would have run first
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fasttrack`` command: one readable line per failure, tracebacks with ``--debug``."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, standalone_mode=True)
    except SystemExit as done:  # how Click's standalone mode ends every command, successful or not
        if debug:
            raise
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if isinstance(done.code, str):
            err.print(done.code, highlight=False, soft_wrap=True)
        _exit_now(code, cleanup=True)
    except FastTrackError as exc:
        if debug:
            raise
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        _exit_now(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        err.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {escape(str(exc))} (run with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
