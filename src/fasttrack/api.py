"""FastTrack's Python API: the pipeline's stages as plain functions, the same ones the ``fasttrack`` command calls::

    import fasttrack

    trained = fasttrack.train("configs/sample.yaml")
    model = fasttrack.load(f"models:/{trained.name}@champion")
    model.predict([{"feature_1": 5.3, "feature_2": 2.1}])

Each function takes the :class:`~fasttrack.config.Settings` to run with (default: :func:`get_settings`, that is the
``FASTTRACK_*`` environment), raises a :class:`~fasttrack.errors.FastTrackError` subclass with one readable
sentence for every failure it expects, and prints nothing: progress goes to ``on_step`` when given. Importing this
module is cheap; each function imports what it needs when called.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fasttrack.cluster import COMPUTE_ENGINES, check_engine
from fasttrack.config import Engine, Margin, Settings, Task, TrainConfig, get_settings, higher_is_better
from fasttrack.errors import ConfigError, Violation

if TYPE_CHECKING:
    from distributed import Client

    from fasttrack.batch.dask_score import DaskScoreSummary, PartitionProgress
    from fasttrack.batch.score import ScoreProgress, ScoreSummary
    from fasttrack.data.clean import CleanOptions
    from fasttrack.data.compat import Purpose
    from fasttrack.data.dask_ingest import DaskIngestResult
    from fasttrack.data.ingest import IngestResult
    from fasttrack.monitoring.drift_report import ReportData, VersionDrift
    from fasttrack.monitoring.log_reader import LogReader, Period
    from fasttrack.registry.history import AliasEvent, AliasHistory
    from fasttrack.registry.model_folder import LoadedModel
    from fasttrack.registry.promotion import PromotionResult
    from fasttrack.registry.runs import TrackedRun
    from fasttrack.registry.versions import VersionDetails, VersionInfo
    from fasttrack.runtime.model import Model
    from fasttrack.serving.keys import ApiKey, NewKey
    from fasttrack.training.evaluate import GateDecision
    from fasttrack.training.train import TrainResult

__all__ = [
    "DataCheck",
    "DriftReport",
    "LogDataset",
    "ModelEvaluation",
    "TrainOutcome",
    "alias_history",
    "api_key_entry",
    "check_data",
    "dataset_from_log",
    "describe_version",
    "drift_report",
    "evaluate",
    "ingest",
    "list_versions",
    "load",
    "new_api_key",
    "promote",
    "rollback",
    "score_file",
    "train",
]

#: Receives a short description before each long step (the CLI shows them as spinners).
OnStep = Callable[[str], None]


def _silent(_: str) -> None:
    pass


# --------------------------------------------------------------------------------------------------- ingest
def check_source(data: str | Path | None, sql: str | None, db: str | None) -> None:
    """Exactly one data source: a file or URL (``data``), or a query (``sql``) with its database (``db``).

    Raises
    ------
    ConfigError
        When both or neither are given, or ``sql`` without ``db`` (or the reverse).
    """
    if data and (sql or db):
        raise ConfigError("give either a data file or an SQL query (sql with db), not both")
    if (sql or db) and not (sql and db):
        raise ConfigError("sql and db go together: the query and the database URL it runs on")
    if not (data or sql):
        raise ConfigError("no data: give a file or URL, or an SQL query (sql) with its database URL (db)")


def ingest(
    data: str | Path | None = None,
    *,
    sql: str | None = None,
    db: str | None = None,
    target: str | None = None,
    task: Task = "auto",
    drop: Sequence[str] = (),
    keep: Sequence[str] | None = None,
    format: str | None = None,
    options: CleanOptions | None = None,
    output: str | Path | None = None,
    engine: str = "local",
    scheduler: str | Client | None = None,
) -> IngestResult | DaskIngestResult:
    """Read and clean a data set, and infer its schema when a target is named.

    Parameters
    ----------
    data
        A CSV, JSON, JSON Lines or Parquet file: a path or a URL (``s3://...``, ``https://...``). On Dask: a CSV or
        Parquet file, a glob (``data/part-*.csv``) or a folder, local to every worker or a URL.
    sql, db
        Instead of ``data``: a query and the SQLAlchemy URL of the database it runs on (local engine).
    target
        The column to predict: rows without it are dropped, and the result carries the inferred schema.
    task
        ``auto``, ``classification`` or ``regression``: the schema's task for the target.
    drop, keep
        Columns to drop; the only feature columns to keep (the target always stays).
    format
        ``csv``, ``json``, ``jsonl`` or ``parquet`` when the name does not say (default: the extension).
    options
        Every cleaning option (:class:`~fasttrack.data.clean.CleanOptions`); ``drop`` and ``keep`` add to it.
    output
        Also write the cleaned data there: locally a ``.parquet`` or ``.csv`` file; on Dask a folder (or ``s3://``
        prefix) of Parquet parts with a ``_SUCCESS`` marker, written by the workers.
    engine
        ``local`` (this process) or ``dask``: read and clean out of core on a Dask cluster (docs/scale.md); the
        cleaning report, fingerprint and schema equal the local engine's on the same rows.
    scheduler
        With ``engine="dask"``: the scheduler's address, or a ``distributed.Client`` of yours (left open); default:
        ``DASK_SCHEDULER_ADDRESS``, else a local cluster of worker processes for this call.

    Returns
    -------
    IngestResult | DaskIngestResult
        The cleaned ``frame``, the cleaning ``report``, ``source``, ``fingerprint``, ``lineage`` and, with a
        target, the inferred ``schema`` (the dropped columns and missing markers included). On Dask the frame is a
        lazy Dask DataFrame on the cluster: computable after the call only on a cluster you passed as
        ``scheduler`` (a ``Client``).

    Raises
    ------
    DataError
        The source cannot be read or parsed (one line naming the file and the problem).
    ConfigError
        No source, two sources, an unknown format, or SQL with the Dask engine.
    ClusterError
        The Dask scheduler cannot be reached (one line, within seconds).
    """
    from fasttrack.data.clean import CleanOptions
    from fasttrack.data.describe import infer_schema

    check_source(data, sql, db)
    compute = check_engine(engine)
    base = options or CleanOptions()
    options = base.model_copy(
        update={
            "drop_columns": [*base.drop_columns, *drop],
            "keep_columns": list(keep) if keep is not None else base.keep_columns,
        }
    )
    if compute == "dask":
        if data is None:
            raise ConfigError("the Dask engine reads files (a file, glob or folder), not SQL: use --engine local")
        return _ingest_on_dask(str(data), target, task, options, format, output, scheduler)
    result = _read(data, sql, db, target=target, options=options, format=format)
    if target is not None:
        schema = infer_schema(
            result.frame,
            target,
            task,
            dropped_columns=result.report.dropped_columns,
            missing_markers=options.missing_markers,
        )
        result = replace(result, schema=schema)
    if output is not None:
        from fasttrack.data.ingest import save_frame

        save_frame(result.frame, output)
    return result


def _ingest_on_dask(
    data: str,
    target: str | None,
    task: Task,
    options: CleanOptions,
    format: str | None,
    output: str | Path | None,
    scheduler: str | Client | None,
) -> DaskIngestResult:
    """:func:`ingest` on a Dask cluster: read, clean, describe and, with ``output``, save the cleaned parts while the
    cluster is up."""
    from fasttrack.cluster import dask_client
    from fasttrack.data.dask_ingest import ingest_dask
    from fasttrack.data.parts import save_parts

    with dask_client(scheduler) as client:
        result = ingest_dask(
            data,
            target=target,
            options=options,
            format=format,
            task=task,
            client=client,
        )
        if output is not None:
            marker = {"source": result.source, "fingerprint": result.fingerprint}
            save_parts(result.frame, str(output), what="cleaned data set", marker=marker, client=client)
    return result


def _read(
    data: str | Path | None,
    sql: str | None,
    db: str | None,
    *,
    target: str | None,
    options: CleanOptions,
    format: str | None = None,
) -> IngestResult:
    """Read and clean a file or URL, or a query's result (the caller checked there is exactly one:
    :func:`check_source`, or a valid :class:`~fasttrack.config.TrainConfig`)."""
    from fasttrack.data.ingest import ingest as read_file
    from fasttrack.data.ingest import ingest_query

    if data:
        return read_file(data, target=target, options=options, format=format)
    return ingest_query(str(sql), str(db), target=target, options=options)


def _labelled_data(data: str | Path | None, sql: str | None, db: str | None, target: str) -> IngestResult:
    """Labelled data to score a model on: cleaned like training data, but no column dropped (the model says which
    columns it needs)."""
    from fasttrack.data.clean import CleanOptions

    return _read(data, sql, db, target=target, options=CleanOptions(drop_identifiers=False, drop_constant=False))


# ----------------------------------------------------------------------------------------------- check_data
@dataclass(frozen=True)
class DataCheck:
    """What :func:`check_data` found: the version the data was held against, and what differs, one line each.

    ``breaking`` lists what stops the data from being used as it is (``compatible`` is then false), ``notes``
    what is worth a look but breaks nothing; each is a :class:`~fasttrack.errors.Violation` (``field``,
    ``reason``).
    """

    name: str
    version: str | None
    model_uri: str
    source: str
    rows: int
    purpose: Purpose
    breaking: list[Violation]
    notes: list[Violation]

    @property
    def compatible(self) -> bool:
        """Whether nothing breaks (notes allowed)."""
        return not self.breaking


def check_data(
    data: str | Path | None = None,
    *,
    against: str | Path | None = None,
    sql: str | None = None,
    db: str | None = None,
    purpose: Purpose = "train",
    format: str | None = None,
    settings: Settings | None = None,
    on_step: OnStep | None = None,
) -> DataCheck:
    """Compare new data with the training schema of a registered version, before retraining on it or scoring it.

    The data is read and cleaned as training would read it (the version's missing markers; for ``train``, the
    constant and identifier columns cleaning drops), then compared column by column
    (:func:`fasttrack.data.compat.compare`). Breaking for ``train``: a feature the data lacks or that cleaning
    would drop, a changed kind (numbers now text, categories now numbers), values a feature cannot take, a
    missing target, labels the model never had or a target of the other task. Breaking for ``score``: an absent
    feature the training data always had, values a feature cannot take. Notes: new columns, unseen categories,
    numbers outside the training range, missing values where training had none.

    Parameters
    ----------
    data, sql, db
        The new data: a file or URL, or a query and its database.
    against
        The version whose schema the data must fit: a model URI (``models:/NAME@champion``) or a model folder;
        default: ``FASTTRACK_MODEL``, else the default model's champion.
    purpose
        ``train`` (the data is to retrain the model: it carries the target) or ``score`` (it is to be scored).
    format
        The file's format when its name does not say.
    settings, on_step
        As for :func:`train`.

    Returns
    -------
    DataCheck
        The version checked against, the rows read, the ``breaking`` changes and the ``notes``; nothing is raised
        for a breaking change (``compatible`` says whether there is one).

    Raises
    ------
    ModelNotFoundError
        No such model, version or alias (no version to check against yet).
    DataError
        The data cannot be read.
    ConfigError
        No source, two sources, or an unknown ``purpose``.
    """
    from fasttrack.data.compat import clean_options, compare
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.registry.resolve import resolve_model

    step = on_step or _silent
    check_source(data, sql, db)
    if purpose not in ("train", "score"):
        raise ConfigError(f"purpose must be train or score, not {purpose!r}")
    settings = settings or get_settings()
    step("finding the model")
    resolved = resolve_model(str(against) if against is not None else None, settings)
    folder = load_model_folder(resolved.path, settings)
    schema = folder.schema
    step(f"reading {data or 'the query'}")
    ingested = _read(data, sql, db, target=None, options=clean_options(schema, purpose), format=format)
    step("comparing with the training schema")
    found = compare(ingested.frame, schema, purpose=purpose, dropped=ingested.report.dropped_columns)
    return DataCheck(
        name=resolved.name or folder.metadata.name,
        version=resolved.version,
        model_uri=resolved.uri,
        source=ingested.source,
        rows=ingested.report.rows_in,
        purpose=purpose,
        breaking=found.breaking,
        notes=found.notes,
    )


# ---------------------------------------------------------------------------------------------------- train
@dataclass(frozen=True)
class TrainOutcome:
    """What :func:`train` did: the run it recorded and, when the quality gate passed, the registered version.

    ``metrics`` are the test metrics, ``baseline`` the prior/mean baseline's on the same rows, ``cv`` the
    cross-validation mean and standard deviation per metric. ``version`` is ``None`` when the model was not
    registered: the gate failed (``gate.reasons`` say why) or registration was not asked for. ``result`` holds
    the fitted pipeline and the full evaluation; ``data`` the ingested data set and its cleaning report.
    """

    name: str
    run_id: str
    experiment_id: str
    tracking_uri: str
    model_uri: str
    version: str | None
    aliases: list[str]
    primary_metric: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    cv: dict[str, tuple[float, float]]
    gate: GateDecision
    result: TrainResult = field(repr=False)
    data: IngestResult | DaskIngestResult = field(repr=False)

    @property
    def registered(self) -> bool:
        """Whether the model became a registered version."""
        return self.version is not None


def train(
    config: TrainConfig | str | Path | None = None,
    *,
    register: bool = True,
    settings: Settings | None = None,
    on_step: OnStep | None = None,
    engine: str = "local",
    scheduler: str | Client | None = None,
    **overrides: Any,
) -> TrainOutcome:
    """Ingest, train, evaluate against a baseline, record the run in MLflow, and register a model that passes.

    Parameters
    ----------
    config
        A :class:`~fasttrack.config.TrainConfig`, or the path of a YAML train config (``configs/*.yaml``), or
        ``None`` to give everything as ``overrides``.
    register
        Register the model (as a new version of ``name``) when it passes the quality gate.
    settings
        Where to track and register (default: :func:`~fasttrack.config.get_settings`).
    on_step
        Called with a short description before each long step.
    engine
        ``local`` (this process) or ``dask`` (docs/scale.md): the data (a file, glob or folder of CSV or Parquet) is
        read, cleaned and described on a Dask cluster; ``xgboost`` then trains there with ``xgboost.dask``
        (cross-validation skipped, with a note: each fold would be another full distributed fit), while any
        other model is fitted here on the collected rows, its cross-validation folds run on the cluster. The model
        folder is the same as the local engine's.
    scheduler
        With ``engine="dask"``: the scheduler's address, or a ``distributed.Client`` of yours (left open); default:
        ``DASK_SCHEDULER_ADDRESS``, else a local cluster of worker processes for this call.
    **overrides
        Any :class:`~fasttrack.config.TrainConfig` field (``data``, ``target``, ``model``, ``params``, ...),
        applied over ``config`` as :meth:`~fasttrack.config.TrainConfig.merged` says; ``None`` values are ignored.

    Returns
    -------
    TrainOutcome
        The metrics, run id, registered version (``None`` if not registered) and everything behind them.

    Raises
    ------
    ConfigError
        The config is invalid (one line naming the field), or the tracking store cannot be reached.
    DataError
        The data cannot be read, or cannot train a model (too few rows, a constant target, ...).
    ClusterError
        The Dask scheduler cannot be reached, or the cluster lost work it could not recover.
    """
    from fasttrack.data.describe import infer_schema
    from fasttrack.registry.store import check_tracking
    from fasttrack.training.train import train as fit

    step = on_step or _silent
    cfg = _train_config(config, overrides)
    cfg.resolved_name()  # a SQL source without a name fails here, before any work
    compute = check_engine(engine)
    if compute == "dask" and not cfg.data:
        raise ConfigError("the Dask engine reads files (a file, glob or folder), not SQL: use --engine local")
    settings = settings or get_settings()
    step("connecting to the tracking store")
    tracking_uri = check_tracking(settings)
    options = _clean_options(cfg)
    ingested: IngestResult | DaskIngestResult
    if compute == "dask":
        ingested, result = _train_on_dask(cfg, options, scheduler, step)
        schema = result.schema
    else:
        step(f"reading {cfg.source}")
        ingested = _read(cfg.data, cfg.sql, cfg.db, target=cfg.target, options=options)
        schema = infer_schema(
            ingested.frame,
            cfg.target,
            cfg.task,
            max_categories=cfg.max_categories,
            min_category_count=cfg.min_category_count,
            dropped_columns=ingested.report.dropped_columns,
            missing_markers=options.missing_markers,
        )
        result = fit(ingested.frame, cfg, schema, on_step=step)
    step("recording the run in MLflow")
    tracked = _record(result, ingested, settings, register=register)
    evaluation = result.evaluation
    return TrainOutcome(
        name=tracked.name,
        run_id=tracked.run_id,
        experiment_id=tracked.experiment_id,
        tracking_uri=tracking_uri,
        model_uri=f"models:/{tracked.name}/{tracked.version}" if tracked.version else tracked.model_uri,
        version=tracked.version,
        aliases=list(tracked.aliases),
        primary_metric=evaluation.primary_metric,
        metrics=dict(evaluation.metrics),
        baseline=dict(evaluation.baseline),
        cv=dict(evaluation.cv),
        gate=evaluation.gate,
        result=result,
        data=replace(ingested, schema=schema),
    )


def _train_on_dask(
    cfg: TrainConfig, options: CleanOptions, scheduler: str | Client | None, step: OnStep
) -> tuple[DaskIngestResult, TrainResult]:
    """Read, clean and describe ``cfg.data`` on a Dask cluster, then train: XGBoost on the cluster
    (:func:`~fasttrack.training.dask_train.train_dask`), any other model here on the collected rows with its
    cross-validation folds on the cluster."""
    from fasttrack.cluster import dask_client, describe
    from fasttrack.data.dask_ingest import ingest_dask
    from fasttrack.training.dask_train import train_dask
    from fasttrack.training.train import train as fit

    with dask_client(scheduler) as client:
        step(f"reading {cfg.source} on Dask ({describe(client)})")
        ingested = ingest_dask(
            str(cfg.data),
            target=cfg.target,
            options=options,
            task=cfg.task,
            max_categories=cfg.max_categories,
            min_category_count=cfg.min_category_count,
            client=client,
        )
        assert ingested.schema is not None  # a target gives a schema
        if cfg.model == "xgboost":
            return ingested, train_dask(ingested.frame, cfg, ingested.schema, client=client, on_step=step)
        step(f"collecting {ingested.report.rows_out} cleaned rows to fit {cfg.model} here")
        frame = ingested.frame.compute().reset_index(drop=True)  # type: ignore[no-untyped-call]
        return ingested, fit(frame, cfg, ingested.schema, on_step=step, cv_client=client)


def _train_config(config: TrainConfig | str | Path | None, overrides: Mapping[str, Any]) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config.merged(**overrides)
    return TrainConfig.load(config, **overrides)


def _clean_options(cfg: TrainConfig) -> CleanOptions:
    from fasttrack.data.clean import CleanOptions

    return CleanOptions(drop_columns=cfg.drop_columns, keep_columns=cfg.keep_columns)


def _record(
    result: TrainResult, ingested: IngestResult | DaskIngestResult, settings: Settings, *, register: bool
) -> TrackedRun:
    """Export the model to ONNX, log the run (with its plots) in MLflow and register the model when the gate passed
    and ``register`` (:func:`fasttrack.training.publish.publish`)."""
    import tempfile

    from fasttrack.training.plots import save_plots
    from fasttrack.training.publish import publish

    with tempfile.TemporaryDirectory(prefix="fasttrack-plots-") as tmp:
        return publish(
            result,
            settings=settings,
            source=ingested.source,
            fingerprint=ingested.fingerprint,
            lineage=ingested.lineage,
            clean_report=ingested.report,
            plots=save_plots(result, Path(tmp)),
            register=register,
        )


# ----------------------------------------------------------------------------------------------------- load
def load(
    uri: str | Path | None = None,
    *,
    runtime: Engine = "auto",
    settings: Settings | None = None,
    engine: str | None = None,
) -> Model:
    """A model ready to predict, from the registry or a local model folder.

    Parameters
    ----------
    uri
        ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME`` (latest), ``runs:/RUN/model``, or a
        model folder; default: ``FASTTRACK_MODEL``, else the default model's champion.
    runtime
        ``auto`` (ONNX Runtime when the model has a graph that agreed with scikit-learn at registration, else
        scikit-learn), ``onnx`` or ``sklearn``.
    settings
        Where to resolve registered models (default: :func:`~fasttrack.config.get_settings`).
    engine
        The former name of ``runtime``, still accepted with a ``DeprecationWarning``.

    Returns
    -------
    Model
        ``.predict`` and ``.predict_proba`` on a DataFrame, records (dicts) or an Arrow table; the same input
        gives the same answer as the server and ``fasttrack predict``.

    Raises
    ------
    ModelNotFoundError
        No such folder, registered model, version or alias.
    ModelLoadError
        The model cannot be opened (``runtime="onnx"`` for a model without a usable graph, among others).
    """
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.registry.resolve import resolve_model
    from fasttrack.runtime.model import Model
    from fasttrack.runtime.select import open_runtime

    settings = settings or get_settings()
    resolved = resolve_model(str(uri) if uri is not None else None, settings)
    folder = load_model_folder(resolved.path, settings)
    return Model(folder, open_runtime(folder, _former_engine(engine, runtime, "load")), resolved)


def _former_engine(engine: str | None, runtime: Engine, function: str) -> Engine:
    """``runtime``, or the runtime given under its former name ``engine`` (``auto``, ``onnx``, ``sklearn``), which
    now says where work runs (``local`` or ``dask``), with a warning."""
    from fasttrack.runtime.select import ENGINES

    if engine is None or engine in COMPUTE_ENGINES:
        return runtime
    if engine in ENGINES:
        warnings.warn(
            f"{function}(engine={engine!r}) is now {function}(runtime={engine!r}): engine says where work runs "
            "(local or dask)",
            DeprecationWarning,
            stacklevel=3,
        )
        return engine
    raise ConfigError(f"unknown engine {engine!r}: use local or dask (and runtime= for auto, onnx or sklearn)")


def _model(model: Model | str | Path | None, settings: Settings, runtime: Engine = "auto") -> Model:
    from fasttrack.runtime.model import Model

    return model if isinstance(model, Model) else load(model, runtime=runtime, settings=settings)


# ------------------------------------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class ModelEvaluation:
    """A model's metrics on a labelled data set, beside the test metrics it was registered with.

    ``trained_on`` counts the rows of the data the model was trained on (by the record of its training rows;
    ``None`` when there is no record to compare with, and ``overlap_note`` then says why); ``warnings`` holds the
    sentence :func:`evaluate` warned with when that count is not zero.
    """

    name: str
    version: str | None
    source: str
    rows: int
    metrics: dict[str, float]
    at_registration: dict[str, float]
    trained_on: int | None = None
    overlap_note: str | None = None
    warnings: list[str] = field(default_factory=list)


def evaluate(
    model: Model | str | Path | None = None,
    data: str | Path | None = None,
    *,
    sql: str | None = None,
    db: str | None = None,
    settings: Settings | None = None,
    on_step: OnStep | None = None,
) -> ModelEvaluation:
    """Score a model on labelled data, through the runtime it serves with.

    Parameters
    ----------
    model
        A loaded :class:`~fasttrack.runtime.model.Model`, or a URI or folder for :func:`load`.
    data, sql, db
        Labelled data holding the model's target column: a file or URL, or a query and its database.
    settings, on_step
        As for :func:`train`.

    Returns
    -------
    ModelEvaluation
        The metrics on this data, the test metrics recorded at registration, and how many of the rows the model
        was trained on.

    Raises
    ------
    SchemaValidationError
        A value a feature cannot take, or a feature the data lacks (every one named).
    DataError
        The data cannot be read, or lacks the target column.

    Warns
    -----
    UserWarning
        When some of the rows are rows the model was trained on (its training run's record of them), saying how
        many: metrics on them overstate how the model does on new data.
    """
    import warnings as python_warnings

    from fasttrack.training.evaluate import evaluate_runtime

    step = on_step or _silent
    check_source(data, sql, db)
    settings = settings or get_settings()
    step("loading the model")
    loaded = _model(model, settings)
    step("reading the data")
    ingested = _labelled_data(data, sql, db, loaded.metadata.target)
    step("scoring")
    metrics = evaluate_runtime(loaded.runtime, ingested.frame, ingested.frame[loaded.metadata.target])
    step("checking the rows against the model's training rows")
    trained_on, note = _training_overlap(loaded, ingested.frame, settings)
    said: list[str] = []
    if trained_on:
        said.append(
            f"{trained_on} of the {len(ingested.frame)} rows of {ingested.source} are rows the model was trained on: "
            "its metrics on them overstate how it does on new data"
        )
        python_warnings.warn(said[0], UserWarning, stacklevel=2)
    return ModelEvaluation(
        name=loaded.name,
        version=loaded.version,
        source=ingested.source,
        rows=len(ingested.frame),
        metrics=metrics,
        at_registration=dict(loaded.metadata.metrics),
        trained_on=trained_on,
        overlap_note=note,
        warnings=said,
    )


def _training_overlap(model: Model, frame: Any, settings: Settings) -> tuple[int | None, str | None]:
    """How many rows of ``frame`` the model trained on, by its training run's record; or ``None`` and why not."""
    from fasttrack.errors import DataError, FastTrackError
    from fasttrack.training.promotion import trained_mask

    try:
        trained = trained_mask(settings, model.metadata.run_id, model.schema, frame)
    except DataError as exc:
        return None, f"these rows cannot be matched with its training rows: {exc}"
    except FastTrackError as exc:
        return None, f"its training rows could not be read: {exc}"
    if trained is None:
        return None, (
            "no record of the rows it trained on was found in the tracking store (no training run named, trained "
            "before FastTrack kept one, or recorded in another store)"
        )
    return int(trained.sum()), None


# -------------------------------------------------------------------------------------------------- promote
def promote(
    name: str,
    challenger: str,
    *,
    alias: str = "champion",
    data: str | Path | None = None,
    sql: str | None = None,
    db: str | None = None,
    margin: Margin | None = None,
    metric: str | None = None,
    force: bool = False,
    settings: Settings | None = None,
    on_step: OnStep | None = None,
) -> PromotionResult:
    """Compare version ``challenger`` of ``name`` with the version holding ``alias``; move the alias if it wins.

    Both versions are scored on the same rows minus every row either trained on (each run records its training
    rows); a paired bootstrap gives the confidence interval of the challenger's improvement, and the alias moves
    only when the interval's lower bound is above ``margin`` (docs/promotion.md).

    Parameters
    ----------
    name, challenger
        The registered model and the version that challenges the current holder of ``alias``.
    alias
        The alias to move (``champion``).
    data, sql, db
        Labelled data to compare on; default: the challenger's held-out test part.
    margin
        How much better the challenger must surely be on ``metric``: the interval's lower bound must exceed it.
        A number >= 0, or ``"cv"``: the challenger's cross-validation spread (std) of ``metric``, 0 without one
        (default: ``FASTTRACK_PROMOTION_MARGIN``, itself ``"cv"`` by default).
    metric
        The metric compared (default: the challenger's primary metric).
    force
        Move the alias even when the challenger loses (the decision is recorded as forced).
    settings, on_step
        As for :func:`train` (``settings`` also give the minimum rows, the resamples and the confidence).

    Returns
    -------
    PromotionResult
        The ``decision`` (``promoted``, ``rejected``, ``forced``, ``no-champion``, ``already-champion``), its
        ``reason``, both versions' scores, the ``improvement`` and its ``interval``, the ``rows`` compared and
        ``excluded``, and whether the alias ``moved``; recorded as tags on both versions and as an event of the
        alias history (:func:`alias_history`). When another promotion or a rollback moves the alias during the
        comparison, the challenger is compared again with the new holder.

    Raises
    ------
    ModelNotFoundError
        No such model or version.
    ConfigError
        An unknown metric, or versions that cannot be compared (different targets or tasks).
    DataError
        Fewer rows that neither version trained on than ``FASTTRACK_PROMOTION_MIN_ROWS`` (nothing is moved or
        recorded, ``force`` or not), or comparison data the versions cannot be scored on.
    AliasError
        The alias kept moving during three comparisons, or another move of it held its lock too long.
    """
    from fasttrack.registry.promotion import model_target
    from fasttrack.training.promotion import promote_until_settled

    step = on_step or _silent
    if metric:
        higher_is_better(metric)  # an unknown metric fails before any work
    settings = settings or get_settings()
    frame, source = None, None
    if data or sql or db:
        check_source(data, sql, db)
        step("reading the comparison data")
        ingested = _labelled_data(data, sql, db, model_target(settings, name, challenger))
        frame, source = ingested.frame, ingested.source
    step(f"comparing version {challenger} with @{alias}")
    return promote_until_settled(
        settings,
        name,
        challenger,
        on_moved=lambda moved: step(f"@{alias} moved meanwhile (now version {moved.holder}): comparing again"),
        alias=alias,
        margin=margin,
        metric=metric,
        force=force,
        frame=frame,
        frame_source=source,
    )


def list_versions(name: str | None = None, *, settings: Settings | None = None) -> list[VersionInfo]:
    """Registered versions (of ``name``, or of every model), newest first, with their aliases and primary metric.

    Raises
    ------
    ConfigError
        The tracking store cannot be reached.
    """
    from fasttrack.registry.versions import list_versions as listed

    return listed(settings or get_settings(), name)


def describe_version(name: str, version: str = "champion", *, settings: Settings | None = None) -> VersionDetails:
    """One registered version (a number or an alias): aliases, run, metrics, data lineage and promotion tags.

    Raises
    ------
    ModelNotFoundError
        No such model, version or alias.
    """
    from fasttrack.registry.versions import describe_version as described

    return described(settings or get_settings(), name, version)


def alias_history(name: str, *, alias: str | None = None, settings: Settings | None = None) -> AliasHistory:
    """Every recorded move of the aliases of registered model ``name``, and where each alias points now.

    Parameters
    ----------
    name
        The registered model.
    alias
        Only this alias (default: every alias).
    settings
        As for :func:`train`.

    Returns
    -------
    AliasHistory
        ``events`` oldest first (:class:`~fasttrack.registry.history.AliasEvent`: ``at``, ``alias``, ``before``,
        ``after``, ``decision``, ``by``, ``host``, ``reason`` and, after a comparison, ``comparison`` with both
        scores), ``holders`` (alias -> version now) and ``notes``. Promotion decisions that kept the alias are
        events too (``before == after``). A move made outside FastTrack (MLflow's UI or API) leaves no event: a
        note says so when an alias points elsewhere than its last recorded move.

    Raises
    ------
    ModelNotFoundError
        No such registered model.
    """
    from fasttrack.registry.history import read_history

    return read_history(settings or get_settings(), name, alias)


def rollback(
    name: str,
    *,
    to: str | None = None,
    alias: str = "champion",
    settings: Settings | None = None,
) -> AliasEvent | None:
    """Move ``alias`` back to the version it pointed at before its last recorded move, or to version ``to``.

    The move is recorded in the alias history as a ``rollback`` event, made under the same lock and holder check as
    a promotion; a server following ``models:/NAME@ALIAS`` picks the version up at its next poll. Rolling back
    twice returns to where the first rollback started, as ``kubectl rollout undo`` does.

    Parameters
    ----------
    name
        The registered model.
    to
        The version to move the alias to (default: the previous holder, from the history).
    alias
        The alias to move (``champion``).
    settings
        As for :func:`train`.

    Returns
    -------
    AliasEvent | None
        The recorded event (``before``, ``after``, ``by``, ``at``), or ``None`` when that version already holds
        the alias (nothing moved or recorded).

    Raises
    ------
    AliasError
        Nothing to roll back to: the alias is not set, has no recorded move, was moved outside FastTrack since its
        last recorded move, or was first set by it (give ``to``).
    ModelNotFoundError
        No such model, or the target version does not exist (deleted).
    ConfigError
        ``to`` is not a version number.
    """
    from fasttrack.registry.history import rollback as move_back

    return move_back(settings or get_settings(), name, alias, to)


# ----------------------------------------------------------------------------------------------- score_file
def score_file(
    model: Model | str | Path | None,
    data: str | Path,
    output: str | Path,
    *,
    probabilities: bool = False,
    runtime: Engine = "auto",
    batch_rows: int = 100_000,
    format: str | None = None,
    settings: Settings | None = None,
    progress: ScoreProgress | PartitionProgress | None = None,
    engine: str = "local",
    scheduler: str | Client | None = None,
) -> ScoreSummary | DaskScoreSummary:
    """Score a data set of any size and write its columns plus ``prediction``: streamed in batches through this
    process (``engine="local"``), or partition by partition on a Dask cluster (``engine="dask"``).

    Parameters
    ----------
    model
        A loaded :class:`~fasttrack.runtime.model.Model`, or a URI or folder (resolved as :func:`load` does;
        from a folder, ONNX scoring never unpickles scikit-learn).
    data
        Locally: a CSV, JSON, JSON Lines or Parquet file, a path or a URL. On Dask: a CSV or Parquet file, a glob
        (``data/part-*.csv``) or a folder, local to every worker or a URL (``s3://...``).
    output
        Locally: a ``.csv``, ``.parquet``, ``.json`` or ``.jsonl`` file, written only once every row is scored. On
        Dask: a folder (or ``s3://`` prefix) of ``part-NNNNN.parquet`` files in input order, complete once its
        ``_SUCCESS`` marker is there (locally it appears under its name only then; docs/scale.md).
    probabilities
        Add one ``probability_<label>`` column per class (classifiers).
    runtime
        ``auto``, ``onnx`` or ``sklearn``, as for :func:`load` (ignored for a loaded ``Model``).
    batch_rows
        Rows read, scored and written at a time (memory stays flat as the file grows); local engine only.
    format
        The input's format when its name does not say.
    settings
        As for :func:`train`.
    progress
        Locally: receives the open input, then the rows scored after each batch (a ``ScoreProgress``). On Dask:
        called with (partitions done, partitions).
    engine
        ``local`` (this process) or ``dask`` (a Dask cluster; docs/scale.md). ``auto``, ``onnx`` and ``sklearn``,
        the former meaning of ``engine``, are still taken as ``runtime`` with a ``DeprecationWarning``.
    scheduler
        With ``engine="dask"``: the scheduler's address, or a ``distributed.Client`` of yours (left open);
        default: ``DASK_SCHEDULER_ADDRESS``, else a local cluster of worker processes for this call.

    Returns
    -------
    ScoreSummary | DaskScoreSummary
        Rows (and batches or partitions) scored, the runtime used, the output and the seconds taken.

    Raises
    ------
    SchemaValidationError
        A value a feature cannot take or a missing feature column (named); nothing is left at ``output``.
    DataError
        The input cannot be read; nothing is left at ``output``.
    ClusterError
        The Dask scheduler cannot be reached (one line, within seconds).
    """
    from fasttrack.registry.resolve import resolve_model
    from fasttrack.runtime.model import Model

    runtime = _former_engine(engine, runtime, "score_file")
    compute = check_engine(engine if engine in COMPUTE_ENGINES else "local")
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be at least 1, not {batch_rows}")
    if compute == "local":
        from fasttrack.batch.score import output_format

        output_format(Path(output))  # an unusable output name fails before any work
    if isinstance(model, Model):
        folder: LoadedModel | Path = model.folder
        runtime = model.runtime.name
    else:
        folder = resolve_model(str(model) if model is not None else None, settings or get_settings()).path
    if compute == "dask":
        from fasttrack.batch.dask_score import score_dataset
        from fasttrack.cluster import dask_client

        with dask_client(scheduler) as client:
            return score_dataset(
                folder,
                str(data),
                str(output),
                client=client,
                probabilities=probabilities,
                runtime=runtime,
                format=format,
                progress=progress if callable(progress) else None,
            )
    from fasttrack.batch.score import score_file as score

    return score(
        folder,
        data,
        Path(output),
        batch_rows=batch_rows,
        probabilities=probabilities,
        engine=runtime,
        format=format,
        progress=progress if progress is not None and not callable(progress) else None,
    )


# ---------------------------------------------------------------------------------------- the inference log
@dataclass(frozen=True)
class LogDataset:
    """What :func:`dataset_from_log` wrote: the labelled rows, and how many predictions and labels it read.

    ``predictions`` = ``labelled`` + ``unlabelled`` (the rows written are the labelled ones). ``labels`` counts the
    valid labels read, ``repeated_labels`` the later labels of ids already labelled (not used: the first wins), and
    ``orphan_labels`` the labelled ids whose prediction is not in the period. The columns are the features of
    ``schema_version`` (the newest version served in the period) and its target.
    """

    name: str
    log: str
    output: Path
    period: str
    versions: list[str]
    schema_version: str
    predictions: int
    labelled: int
    unlabelled: int
    labels: int
    repeated_labels: int
    orphan_labels: int
    columns: list[str]


def dataset_from_log(
    name: str,
    output: str | Path,
    *,
    log: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    settings: Settings | None = None,
    on_step: OnStep | None = None,
) -> LogDataset:
    """Labelled data from the inference log: a model's predictions in a period joined with their labels, written as
    a training file (``.parquet`` or ``.csv``) for ``fasttrack train`` or the retraining DAG.

    Each prediction takes the first valid label received for its id (a later one for the same id is counted, not
    used); predictions without a label are counted and left out. The columns are the features of the newest version
    that served in the period, typed as its training data had them (whole numbers, booleans and numeric labels
    back to their training types; categories as text; a feature an older version did not log is missing in its
    rows), then its target. The file is written atomically.

    Parameters
    ----------
    name
        The registered model whose predictions are read.
    output
        The file to write (``.parquet``, ``.csv``, ``.json`` or ``.jsonl``).
    log
        The inference log: a folder or an ``s3://`` / ``gs://`` prefix (default: ``FASTTRACK_INFERENCE_LOG``).
    since, until
        The period (UTC; ``since`` included, ``until`` excluded): datetimes, or text as the command line takes it
        (``2026-12-03``, ``2026-12-03T10:30``, or an age such as ``7d``); default: the whole log.
    settings, on_step
        As for :func:`train`.

    Returns
    -------
    LogDataset
        The file written, the rows labelled and unlabelled, the labels read, repeated and orphaned.

    Raises
    ------
    ConfigError
        No log given or set, an unreadable time, or an output name that cannot be written.
    DataError
        The log cannot be read, holds no prediction of the model in the period, or none with a label.
    ModelNotFoundError
        The newest version that served is not registered (its schema types the columns).
    """
    import pyarrow.compute as pc

    from fasttrack.data.ingest import frame_suffix, save_frame
    from fasttrack.errors import DataError
    from fasttrack.monitoring.labelled import labelled_frame
    from fasttrack.monitoring.log_layout import LABEL
    from fasttrack.monitoring.log_reader import join_labels, versions_served

    step = on_step or _silent
    target = Path(output)
    frame_suffix(target)
    settings = settings or get_settings()
    reader, period = _log_reader(log, since, until, settings)
    step(f"reading the predictions of {name}")
    predictions = reader.read("predictions", name, period)
    versions = versions_served(predictions)
    if not versions:
        _no_log(reader)
        raise DataError(f"no predictions of {name} in {reader.root} {period.describe()}")
    registered = [v for v in versions if v.isdigit()]
    if not registered:
        raise DataError(
            f"the predictions of {name} in {reader.root} were made by versions that are not registered "
            f"({', '.join(versions)}): no training schema to type the columns by"
        )
    newest = registered[-1]
    step(f"loading version {newest}'s schema")
    schema = _version_folder(name, newest, settings).schema
    step("reading the labels")
    feedback = reader.read("feedback", name, period, bounded=False)
    joined = join_labels(predictions, feedback)
    if not joined.labelled:
        raise DataError(
            f"none of the {predictions.num_rows} predictions of {name} in {reader.root} {period.describe()} has a "
            "label yet (labels come from POST /feedback)"
        )
    step(f"writing {joined.labelled} labelled rows")
    labelled = joined.table.filter(pc.is_valid(joined.table[LABEL]))
    frame = labelled_frame(labelled, schema)
    try:
        save_frame(frame, target)
    except OSError as exc:
        raise DataError(f"cannot write {target}: {exc.strerror or exc}") from None
    return LogDataset(
        name=name,
        log=reader.root,
        output=target,
        period=period.describe(),
        versions=versions,
        schema_version=newest,
        predictions=predictions.num_rows,
        labelled=joined.labelled,
        unlabelled=joined.unlabelled,
        labels=joined.labels,
        repeated_labels=joined.repeated,
        orphan_labels=joined.orphans,
        columns=[str(c) for c in frame.columns],
    )


@dataclass(frozen=True)
class DriftReport:
    """What :func:`drift_report` wrote: the HTML file and, per version, the drift it found.

    ``versions`` holds each version's :class:`~fasttrack.monitoring.drift_report.VersionDrift`: ``rows``,
    ``labelled``, ``features`` (drifted first; each with ``scores``, ``threshold`` and ``drifted``),
    ``prediction`` and ``performance``. ``notes`` says what was left out and why.
    """

    name: str
    output: Path
    source: str
    period: str
    versions: list[VersionDrift]
    notes: list[str]

    @property
    def drifted(self) -> dict[str, list[str]]:
        """The drifted features of each version."""
        return {v.version: [f.name for f in v.drifted] for v in self.versions}


def drift_report(
    name: str,
    output: str | Path = "drift.html",
    *,
    log: str | None = None,
    data: str | Path | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    version: str | None = None,
    settings: Settings | None = None,
    on_step: OnStep | None = None,
) -> DriftReport:
    """Write one self-contained HTML drift report of a model: what it was asked in a period against what it was
    trained on, and how it did.

    From the inference log, for every version that served in the period (or ``version``): a summary listing the
    drifted features first (PSI above ``FASTTRACK_DRIFT_THRESHOLD`` or the feature's own in
    ``FASTTRACK_DRIFT_THRESHOLDS``, as the server judges), each feature's live distribution against its training
    profile with PSI and KS (numbers) or JS (categories), the predictions against the target's profile, PSI per
    feature and time window, and where labels exist, the live accuracy (or RMSE and MAE) per window, beside the
    accuracy estimated from the probabilities for a classifier whose calibration was recorded and is trusted
    (``FASTTRACK_CALIBRATION_MAX_ERROR``).
    From a data file (``data``): the features' drift from a version's profile only. The HTML holds its figures
    and styles inline (no network needed to open it) and is written atomically.

    Parameters
    ----------
    name
        The registered model.
    output
        The HTML file to write.
    log
        The inference log (default: ``FASTTRACK_INFERENCE_LOG``); not with ``data``.
    data
        A data file (CSV, JSON, JSON Lines, Parquet; path or URL) to compare with a version's training profile.
    since, until
        The period of the log read, as for :func:`dataset_from_log`.
    version
        Only this version (a number or an alias); with ``data``, the version whose profile is compared (default:
        ``champion``).
    settings, on_step
        As for :func:`train`.

    Returns
    -------
    DriftReport
        The file written and each version's drift.

    Raises
    ------
    ConfigError
        Both ``log`` and ``data``, no log given or set, or an unreadable time.
    DataError
        The log or the file cannot be read, or holds no row of the model in the period.
    ModelNotFoundError
        No such model or version.
    """
    from fasttrack.errors import DataError
    from fasttrack.monitoring.report_html import write_report

    step = on_step or _silent
    target = Path(output)
    if log and data:
        raise ConfigError("give either an inference log (log) or a data file (data), not both")
    settings = settings or get_settings()

    from fasttrack.monitoring.statistics import psi_threshold

    def threshold(feature: str) -> float:
        return psi_threshold(feature, settings.drift_thresholds, settings.drift_threshold)

    if data:
        report, notes = _data_report(name, data, version, threshold, settings, step)
    else:
        report, notes = _log_report(name, log, since, until, version, threshold, settings, step)
    if not report.versions:
        raise DataError(f"nothing to report for {name}: " + "; ".join(notes))
    step(f"drawing the report ({sum(len(v.features) for v in report.versions)} features)")
    write_report(report, target)
    return DriftReport(
        name=name, output=target, source=report.source, period=report.period, versions=report.versions, notes=notes
    )


def _log_reader(
    log: str | None, since: str | datetime | None, until: str | datetime | None, settings: Settings
) -> tuple[LogReader, Period]:
    from fasttrack.monitoring.log_reader import LogReader, Period, parse_instant

    root = log or settings.inference_log
    if not root:
        raise ConfigError(
            "no inference log: give --log (a folder or an s3:// / gs:// prefix) or set FASTTRACK_INFERENCE_LOG"
        )

    def instant(value: str | datetime | None) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
        return parse_instant(value)

    return LogReader(root), Period(instant(since), instant(until))


def _no_log(reader: LogReader) -> None:
    """Raise a DataError when nothing is at the log's root: a wrong path says so, not that a model made nothing."""
    from fasttrack.errors import DataError

    if not reader.exists():
        raise DataError(
            f"no inference log at {reader.root}: nothing is there (the server writes it where its "
            "FASTTRACK_INFERENCE_LOG points)"
        )


def _version_folder(name: str, version: str, settings: Settings) -> LoadedModel:
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.registry.resolve import resolve_model

    return load_model_folder(resolve_model(f"models:/{name}/{version}", settings).path, settings)


def _log_report(
    name: str,
    log: str | None,
    since: str | datetime | None,
    until: str | datetime | None,
    version: str | None,
    threshold: Callable[[str], float],
    settings: Settings,
    step: OnStep,
) -> tuple[ReportData, list[str]]:
    """The report's numbers from the inference log (:func:`drift_report`)."""
    import pyarrow.compute as pc

    from fasttrack.errors import DataError, ModelNotFoundError
    from fasttrack.features.rules import category_text
    from fasttrack.monitoring.drift_report import ReportData, Windows, version_drift
    from fasttrack.monitoring.log_layout import VERSION
    from fasttrack.monitoring.log_reader import join_labels, timestamps_us, versions_served
    from fasttrack.registry.resolve import resolve_model

    reader, period = _log_reader(log, since, until, settings)
    only = None
    if version is not None:
        only = version if version.isdigit() else resolve_model(f"models:/{name}@{version}", settings).version
    step(f"reading the predictions of {name}")
    predictions = reader.read("predictions", name, period, versions=[only] if only else None)
    versions = versions_served(predictions)
    if not versions:
        _no_log(reader)
        which = f" by version {only}" if only else ""
        raise DataError(f"no predictions of {name}{which} in {reader.root} {period.describe()}")
    step("reading the labels")
    joined = join_labels(predictions, reader.read("feedback", name, period, bounded=False)).table
    stamps = timestamps_us(joined)
    windows = Windows.covering(int(stamps.min()), int(stamps.max()))
    notes: list[str] = []
    drifts = []
    for served in versions:
        mask = pc.equal(joined[VERSION], served)
        rows = joined.filter(mask)
        try:
            folder = _version_folder(name, served, settings) if served.isdigit() else None
        except ModelNotFoundError:
            folder = None
        if folder is None:
            notes.append(
                f"version {served} is not a registered version of {name}: its {rows.num_rows} rows are left out"
            )
            continue
        step(f"scoring version {served} ({rows.num_rows:,} rows)")
        labels = folder.metadata.labels
        drifts.append(
            version_drift(
                served,
                rows,
                folder.schema,
                threshold,
                windows=windows,
                timestamps_us=stamps[mask.to_numpy(zero_copy_only=False)],
                labels=None if labels is None else [str(category_text(label)) for label in labels],
                calibration=folder.metadata.calibration,
                max_calibration_error=settings.calibration_max_error,
                min_rows=settings.drift_min_rows,
                min_labels=settings.live_min_samples,
            )
        )
    report = ReportData(
        model=name, source=reader.root, period=period.describe(), versions=drifts, windows=windows, notes=notes
    )
    return report, notes


def _data_report(
    name: str,
    data: str | Path,
    version: str | None,
    threshold: Callable[[str], float],
    settings: Settings,
    step: OnStep,
) -> tuple[ReportData, list[str]]:
    """The report's numbers for a data file against a version's training profile (:func:`drift_report`)."""
    from fasttrack.data.compat import clean_options
    from fasttrack.features.frames import frame_input
    from fasttrack.monitoring.drift_report import ReportData, data_drift
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.registry.resolve import resolve_model

    step("finding the model")
    uri = f"models:/{name}/{version}" if version and version.isdigit() else f"models:/{name}@{version or 'champion'}"
    resolved = resolve_model(uri, settings)
    folder = load_model_folder(resolved.path, settings)
    step(f"reading {data}")
    # Every row counts, as in the server's windows: a repeated row is traffic, not a duplicate to drop.
    options = clean_options(folder.schema, "score").model_copy(update={"drop_duplicates": False})
    ingested = _read(data, None, None, target=None, options=options)
    step("reading the features")
    prepared = frame_input(ingested.frame, folder.schema)
    prepared.raise_for_violations()
    drift = data_drift(resolved.version or "local", folder.schema, prepared.columns, prepared.rows, threshold)
    notes = [f"{ingested.source}: a data file compared with version {drift.version}'s training profile (drift only)"]
    report = ReportData(model=name, source=ingested.source, period="a data file", versions=[drift], notes=notes)
    return report, notes


def new_api_key(key_id: str, scopes: Sequence[str]) -> NewKey:
    """Make a new API key for the server's access control (``FASTTRACK_AUTH``; see docs/security.md).

    Parameters
    ----------
    key_id
        The key's name, shown in logs and metrics instead of the key (letters, digits, ``.``, ``_``, ``-``).
    scopes
        What the key may do: any of ``predict``, ``feedback`` and ``admin`` (none: only the probes and
        ``/metrics``, when ``FASTTRACK_AUTH_OPEN_PROBES`` is off).

    Returns
    -------
    NewKey
        ``secret``: the key, 256 random bits (give it to the client; it is not stored anywhere), and ``entry``:
        the ``ID:SCOPES:SHA256`` line for ``FASTTRACK_API_KEYS`` or the key file, which holds only the key's hash.

    Raises
    ------
    ConfigError
        An invalid id or an unknown scope.
    """
    from fasttrack.serving.keys import new_key

    return new_key(key_id, scopes)


def api_key_entry(key_id: str, scopes: Sequence[str], secret: str) -> ApiKey:
    """The server's entry for an API key made elsewhere (e.g. kept in a secret manager): its SHA-256, id and scopes.

    Parameters
    ----------
    key_id, scopes
        As for :func:`new_api_key`.
    secret
        The key: a random token of at least 32 characters (a shorter one could be guessed from its hash).

    Returns
    -------
    ApiKey
        ``entry()`` is the ``ID:SCOPES:SHA256`` line.

    Raises
    ------
    ConfigError
        An invalid id, an unknown scope or a key too short.
    """
    from fasttrack.serving.keys import hash_key

    return hash_key(key_id, scopes, secret)
