"""Tracking and registry: every training run in MLflow, every passing model a registered version.

The embedded default is a SQLite store with local artifacts under ``Settings.home`` (``./.fasttrack/``), made on
first use; ``MLFLOW_TRACKING_URI`` (or ``FASTTRACK_TRACKING_URI``) points everything at a real server instead.

Registration is the last step and the only one that makes a model servable: the model is logged, downloaded back
from the store and checked to load and predict, and only then registered. A run killed half-way leaves at most
an unregistered logged model, never a registered version that cannot be loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fasttrack.config import Settings
from fasttrack.errors import FastTrackError, ModelNotFoundError, RegistryError
from fasttrack.registry.model_folder import (
    DataLineage,
    ModelMetadata,
    library_versions,
    load_model_folder,
    metadata_for,
    write_extra_files,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from fasttrack.data.clean import CleanReport
    from fasttrack.runtime.base import Prediction
    from fasttrack.training.train import TrainResult

log = logging.getLogger(__name__)

CHAMPION = "champion"
TAG_PRIMARY = "fasttrack.primary_metric"
TAG_PRIMARY_VALUE = "fasttrack.primary_metric_value"
#: Run tags of the training data's lineage: ``fasttrack.data.source``, ``.fingerprint``, ``.rows``, ``.etag``, ...
TAG_DATA_PREFIX = "fasttrack.data."
#: The training run's held-out test part (features and target), for champion/challenger comparisons.
HOLDOUT_ARTIFACT = "reports/holdout.parquet"
# MLflow refuses longer tag values.
_MAX_TAG_CHARS = 5000


@dataclass(frozen=True)
class TrackedRun:
    """What :func:`log_training` did: the run, the logged model and, when registered, its version."""

    run_id: str
    experiment_id: str
    model_uri: str
    name: str
    version: str | None = None
    aliases: list[str] = field(default_factory=list)

    @property
    def registered(self) -> bool:
        """Whether the model became a registered version."""
        return self.version is not None


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, as ``fasttrack models list`` shows it."""

    name: str
    version: str
    aliases: list[str]
    primary_metric: str | None
    primary_metric_value: float | None
    run_id: str | None
    created: pd.Timestamp


@dataclass(frozen=True)
class ResolvedModel:
    """A model URI resolved to a local folder, with its registry coordinates where it has them."""

    uri: str
    path: Path
    name: str | None = None
    version: str | None = None
    alias: str | None = None


def configure(settings: Settings) -> str:
    """Point MLflow at the tracking URI in force and return it; creates the embedded store's folder if used."""
    import mlflow

    from fasttrack.data.object_store import apply_network_defaults

    apply_network_defaults()  # an unreachable server or object store fails in seconds, not minutes
    uri = settings.resolved_tracking_uri()
    if _is_embedded(uri, settings):
        settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _is_embedded(uri: str, settings: Settings) -> bool:
    return uri == settings.embedded_store_uri()


def client(settings: Settings) -> MlflowClient:
    """An MLflow client on the configured tracking and registry URIs (the embedded store made if missing)."""
    from mlflow import MlflowClient

    uri = configure(settings)
    if _is_embedded(uri, settings):
        create_embedded_store(settings.embedded_store())
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def create_embedded_store(db: Path) -> bool:
    """Create the embedded SQLite store at ``db`` with MLflow's own schema, if it does not exist yet.

    MLflow creates a new SQLite store by running its initial DDL and then every one of its schema migrations
    (about 70) on the file itself, with SQLite syncing the file to disk at every commit: 1-2 s of a first
    ``fasttrack train`` on a two-core VM, of which 0.5-1.2 s was spent waiting for the disk; a process killed
    half-way leaves a half-migrated store behind. Here the same MLflow code (``_initialize_tables``) runs on a
    temporary file next to ``db`` with ``synchronous=OFF``, as MLflow's own ``fs2db`` does when it builds a
    database; the finished file is synced once and linked into place. So ``db`` is either absent or complete,
    and of two processes creating it at once the first one's file wins (a link never replaces a file).
    Returns whether this call created it.

    MLflow's helpers are private: when they are missing (another MLflow version), or the file system cannot
    link files, nothing is done here and MLflow creates the store as before when it is opened.
    """
    if db.exists():
        return False
    try:
        import sqlalchemy
        from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine
    except ImportError:  # pragma: no cover - depends on MLflow's internals
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        engine = create_sqlalchemy_engine(f"sqlite:///{tmp}")  # type: ignore[no-untyped-call]

        def unsynced(connection: Any, _record: Any) -> None:
            # Safe on a file nobody else sees yet: it is synced once, as a whole, before it becomes the store.
            connection.execute("PRAGMA synchronous=OFF")
            connection.execute("PRAGMA journal_mode=MEMORY")

        sqlalchemy.event.listen(engine, "connect", unsynced)
        try:
            _initialize_tables(engine)  # type: ignore[no-untyped-call]
        finally:
            engine.dispose()
        with tmp.open("rb+") as written:
            os.fsync(written.fileno())
        try:
            os.link(tmp, db)
        except FileExistsError:
            return False  # another process made it meanwhile: theirs is complete too
        except OSError:  # pragma: no cover - file systems without hard links: MLflow makes the store itself
            log.debug("cannot link %s to %s: MLflow creates the store", tmp, db, exc_info=True)
            return False
        _sync_folder(db.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    """Make a new directory entry durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform-dependent
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def registry_errors(what: str) -> Iterator[None]:
    """Turn MLflow's and the network's exceptions into one-line FastTrack errors."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except FastTrackError:
        raise
    except MlflowException as exc:
        message = str(exc.message).splitlines()[0] if exc.message else type(exc).__name__
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise ModelNotFoundError(f"{what}: {message}") from None
        failed = _download_failure(str(exc.message or ""))
        if failed is not None:
            raise (ModelNotFoundError if "not found" in failed else RegistryError)(f"{what}: {failed}") from None
        raise RegistryError(f"{what}: {_unreachable_server(message) or message}") from None
    except Exception as exc:
        store_message = _object_store_message(exc)
        if store_message is not None:
            raise RegistryError(f"{what}: {store_message}") from None
        if isinstance(exc, OSError | ConnectionError):
            raise RegistryError(f"{what}: {exc}") from None
        raise


def _download_failure(message: str) -> str | None:
    """One line for MLflow's multi-line "The following failures occurred while downloading ..." message."""
    import re

    head = re.match(r"The following failures occurred while downloading one or more artifacts from (\S+?):?\n", message)
    detail = re.search(r"##### File (.*?) #####\n(.+)", message)
    if head is None or detail is None:
        return None
    where = f"{head.group(1).rstrip('/')}/{detail.group(1)}"
    reason = detail.group(2).strip()
    if "(404)" in reason or "NoSuchKey" in reason or "Not Found" in reason:
        return f"not found: {where}"
    return f"cannot download {where}: {reason}"


def _unreachable_server(message: str) -> str | None:
    """A short line for MLflow's long "API request to ... failed ... Max retries exceeded" messages."""
    import re

    match = re.search(r"API request to (\S+?)(/api/|/ajax-api/)\S* failed", message)
    if match and ("Max retries exceeded" in message or "Connection" in message):
        reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", message)
        why = f" ({reason.group(1).strip()})" if reason else ""
        return f"cannot reach the tracking server at {match.group(1)}{why}; is it running? (MLFLOW_TRACKING_URI)"
    return None


def _object_store_message(exc: BaseException) -> str | None:
    """One line for an object-store failure under MLflow (botocore's errors when artifacts are on S3)."""
    from fasttrack.data.object_store import error_message, is_object_store_error

    if not is_object_store_error(exc):
        return None
    return error_message(exc) or str(exc).strip().splitlines()[0]


def _experiment_id(mlflow_client: MlflowClient, name: str, settings: Settings) -> str:
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = settings.artifact_root() if _is_embedded(settings.resolved_tracking_uri(), settings) else None
    return str(mlflow_client.create_experiment(name, artifact_location=location))


def git_commit() -> str | None:
    """The current git commit, when running inside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _pip_requirements(pipeline: Any) -> list[str]:
    from fasttrack.training.estimators import uses_xgboost

    versions = library_versions()
    names = ["scikit-learn", "numpy", "pandas", "cloudpickle"]
    # By type: the pipeline's repr renders every category list of the preprocessing (tens of milliseconds).
    if uses_xgboost(_final_estimator(pipeline)):
        names.append("xgboost-cpu")
    from importlib.metadata import version

    return [f"{n}=={versions[n] if n in versions else version(n)}" for n in names]


def _final_estimator(pipeline: Any) -> Any:
    return pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline


def log_training(
    result: TrainResult,
    *,
    settings: Settings,
    source: str,
    fingerprint: str,
    clean_report: CleanReport | None = None,
    plots: list[Path] | None = None,
    register: bool = True,
    lineage: Mapping[str, str] | None = None,
) -> TrackedRun:
    """Record a training run in MLflow and, if its quality gate passed and ``register`` is set, register it.

    The run gets the config as params; test, baseline and cross-validation metrics; the data fingerprint,
    source, git commit and library versions as tags; the evaluation, cleaning report, schema and plots as
    artifacts; and the model itself (an MLflow sklearn model with FastTrack's metadata and schema inside).
    ``lineage`` (e.g. an object's ``etag`` and ``version_id``, a query's ``db`` and ``query``) is added to the
    ``fasttrack.data.*`` tags and the model's ``data`` record; the held-out test part is logged as
    ``reports/holdout.parquet`` so that promotion can score a champion on the same rows.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from fasttrack.export.check import export_to_folder, run_tags
    from fasttrack.training.threads import prediction_threads

    # The model's requirements are given explicitly: MLflow must not copy this project's uv files into it.
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    config = result.config
    name = config.resolved_name()
    evaluation = result.evaluation
    with registry_errors(f"recording the run of model {name!r}"):
        mlflow_client = client(settings)
        experiment_id = _experiment_id(mlflow_client, name, settings)
        commit = git_commit()
        with tempfile.TemporaryDirectory(prefix="fasttrack-") as tmp:
            staging = Path(tmp)
            # The ONNX fast path, checked against sklearn on the held-out rows (against the predictions train()
            # made of them); it never fails the run. Exported first, so that its tags join the run's batch.
            onnx_info, onnx_file = export_to_folder(
                result.pipeline,
                result.schema,
                result.task,
                result.X_test,
                staging / "onnx",
                labels=result.labels,
                reference=_reference(result),
            )
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"{config.model}") as run:
                run_id = run.info.run_id
                tags = {
                    "fasttrack.task": result.task,
                    "fasttrack.model": config.model,
                    "fasttrack.data.source": source,
                    "fasttrack.data.fingerprint": fingerprint,
                    "fasttrack.data.rows": str(result.train_rows + result.test_rows),
                    **{TAG_DATA_PREFIX + k: str(v)[:_MAX_TAG_CHARS] for k, v in (lineage or {}).items() if v},
                    "fasttrack.gate": "passed" if evaluation.gate.passed else "failed",
                    **(
                        {"fasttrack.gate.reasons": " | ".join(evaluation.gate.reasons)}
                        if evaluation.gate.reasons
                        else {}
                    ),
                    **({"mlflow.source.git.commit": commit} if commit else {}),
                    **{f"fasttrack.version.{k}": v for k, v in library_versions().items()},
                    **run_tags(onnx_info),
                }
                _log_batch(mlflow_client, run_id, params=_params(result), tags=tags, metrics=_metrics(result))
                metadata = metadata_for(
                    result,
                    name=name,
                    data=DataLineage(
                        source=source,
                        fingerprint=fingerprint,
                        rows=result.train_rows + result.test_rows,
                        columns=len(result.schema.features) + 1,
                        **{k: v for k, v in (lineage or {}).items() if k not in _LINEAGE_FIELDS},
                    ),
                    run_id=run_id,
                    git_commit=commit,
                    onnx=onnx_info,
                )
                extras = write_extra_files(staging / "extras", metadata, result.schema)
                extras += [onnx_file] if onnx_file else []
                reports = staging / "reports"
                reports.mkdir()
                (reports / "evaluation.json").write_text(json.dumps(evaluation.to_dict(), indent=2), "utf-8")
                if clean_report is not None:
                    (reports / "clean_report.json").write_text(clean_report.model_dump_json(indent=2), "utf-8")
                _holdout(result).to_parquet(staging / HOLDOUT_ARTIFACT, index=False)
                mlflow.log_artifacts(str(reports), artifact_path="reports")
                for plot in plots or []:
                    mlflow.log_artifact(str(plot), artifact_path="plots")
                # prediction_threads: the input example is predicted here and, to validate it, in log_model.
                with warnings.catch_warnings(), prediction_threads(len(result.input_example)):
                    # MLflow warns about integer columns and input example conversions we already handle.
                    warnings.simplefilter("ignore")
                    signature = infer_signature(result.input_example, result.pipeline.predict(result.input_example))
                    info = mlflow.sklearn.log_model(
                        result.pipeline,
                        name="model",
                        signature=signature,
                        input_example=result.input_example,
                        pip_requirements=_pip_requirements(result.pipeline),
                        extra_files=[str(p) for p in extras],
                        metadata={"fasttrack_format": metadata.format_version},
                        # skops would need an allow-list of every type in the pipeline; the folder loader reads
                        # cloudpickle, and only from this project's own registry or a folder the operator names.
                        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
                    )
                if not (register and evaluation.gate.passed):
                    return TrackedRun(run_id=run_id, experiment_id=experiment_id, model_uri=info.model_uri, name=name)
                _check_loadable(info.model_uri, metadata)
                return _register(mlflow_client, info.model_uri, name, run_id, experiment_id, evaluation)


def _reference(result: TrainResult) -> Prediction | None:
    """The predictions train() made of the held-out rows, for the ONNX agreement check (``None`` if none)."""
    from fasttrack.runtime.base import Prediction

    if result.test_predictions is None:
        return None
    return Prediction(result.test_predictions, result.test_proba)


def _log_batch(
    mlflow_client: MlflowClient,
    run_id: str,
    *,
    params: Mapping[str, Any],
    tags: Mapping[str, Any],
    metrics: Mapping[str, float],
) -> None:
    """Params, tags and metrics in one ``log_batch``: one transaction (or request) instead of one per kind.

    Values are recorded exactly as ``mlflow.log_params`` / ``set_tags`` / ``log_metrics`` record them (text
    for params and tags; metrics at step 0, now). MLflow splits the batch where the store's limits require.
    """
    import time

    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    mlflow_client.log_batch(
        run_id,
        metrics=[Metric(key, value, now, 0, run_id=run_id) for key, value in metrics.items()],
        params=[Param(key, str(value)) for key, value in params.items()],
        tags=[RunTag(key, str(value)) for key, value in tags.items()],
    )


_LINEAGE_FIELDS = frozenset({"source", "fingerprint", "rows", "columns"})


def _holdout(result: TrainResult) -> pd.DataFrame:
    """The held-out test part as one frame: the prepared features and the target column."""
    return result.X_test.assign(**{result.schema.target.name: result.y_test.to_numpy()})


def _params(result: TrainResult) -> dict[str, Any]:
    config = result.config.model_dump(mode="json")
    params = {k: v for k, v in config.items() if k not in ("params", "thresholds") and v is not None}
    params.update({f"param.{k}": v for k, v in result.config.params.items()})
    params.update({f"threshold.{k}": v for k, v in result.config.thresholds.items()})
    params["resolved_task"] = result.task
    params["primary_metric"] = result.evaluation.primary_metric
    return {k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in params.items()}


def _metrics(result: TrainResult) -> dict[str, float]:
    evaluation = result.evaluation
    metrics = {f"test_{k}": v for k, v in evaluation.metrics.items()}
    metrics.update({f"baseline_{k}": v for k, v in evaluation.baseline.items()})
    for k, (mean, std) in evaluation.cv.items():
        metrics[f"cv_{k}_mean"] = mean
        metrics[f"cv_{k}_std"] = std
    metrics["fit_seconds"] = result.fit_seconds
    return metrics


def _check_loadable(model_uri: str, metadata: ModelMetadata) -> None:
    """Download the logged model from the store and predict its input example, before it is registered."""
    import mlflow
    import pandas as pd

    from fasttrack.features.frames import frame_input
    from fasttrack.runtime.select import open_runtime
    from fasttrack.training.threads import prediction_threads

    with tempfile.TemporaryDirectory(prefix="fasttrack-check-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        loaded = load_model_folder(local)
        example = frame_input(pd.DataFrame(metadata.input_example, columns=metadata.features), loaded.schema)
        example.raise_for_violations()
        with prediction_threads(example.rows):  # the pickled pipeline itself must load and predict
            open_runtime(loaded, "sklearn").predict(example.columns, example.rows)


def _register(
    mlflow_client: MlflowClient, model_uri: str, name: str, run_id: str, experiment_id: str, evaluation: Any
) -> TrackedRun:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    primary = evaluation.primary_metric
    version = mlflow_client.create_model_version(
        name,
        source=model_uri,
        run_id=run_id,
        model_id=model_uri.removeprefix("models:/"),
        tags={TAG_PRIMARY: primary, TAG_PRIMARY_VALUE: str(evaluation.metrics[primary])},
    )
    aliases: list[str] = []
    if CHAMPION not in mlflow_client.get_registered_model(name).aliases:
        mlflow_client.set_registered_model_alias(name, CHAMPION, version.version)
        aliases.append(CHAMPION)
    return TrackedRun(
        run_id=run_id,
        experiment_id=experiment_id,
        model_uri=model_uri,
        name=name,
        version=str(version.version),
        aliases=aliases,
    )


def list_versions(settings: Settings, name: str | None = None) -> list[VersionInfo]:
    """Registered model versions (of one model, or of all), newest first within each model."""
    import pandas as pd

    with registry_errors("listing models"):
        mlflow_client = client(settings)
        names = [name] if name else sorted(m.name for m in mlflow_client.search_registered_models())
        rows: list[VersionInfo] = []
        for model_name in names:
            aliases_by_version: dict[str, list[str]] = {}
            for alias, version in mlflow_client.get_registered_model(model_name).aliases.items():
                aliases_by_version.setdefault(str(version), []).append(alias)
            versions = mlflow_client.search_model_versions(f"name='{model_name}'")
            for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
                value = mv.tags.get(TAG_PRIMARY_VALUE)
                rows.append(
                    VersionInfo(
                        name=model_name,
                        version=str(mv.version),
                        aliases=sorted(aliases_by_version.get(str(mv.version), [])),
                        primary_metric=mv.tags.get(TAG_PRIMARY),
                        primary_metric_value=float(value) if value is not None else None,
                        run_id=mv.run_id,
                        created=pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC"),
                    )
                )
        return rows


def promote(settings: Settings, name: str, version: str, alias: str = CHAMPION) -> None:
    """Point ``alias`` (default ``champion``) of registered model ``name`` at ``version``."""
    with registry_errors(f"promoting {name} version {version}"):
        mlflow_client = client(settings)
        mlflow_client.get_model_version(name, version)  # raises "not found" with MLflow's message
        mlflow_client.set_registered_model_alias(name, alias, version)


def check_tracking(settings: Settings) -> str:
    """Make one cheap call to the tracking store in force and return its URI; a store that cannot be reached
    raises a one-line :class:`~fasttrack.errors.RegistryError` now, before a long training run, not after it."""
    uri = settings.resolved_tracking_uri()
    if _is_embedded(uri, settings):
        return uri  # made on first use
    with registry_errors("connecting to the tracking store"):
        client(settings).search_experiments(max_results=1)
    return uri


@dataclass(frozen=True)
class VersionDetails:
    """One registered version in full, as ``fasttrack models show`` prints it."""

    name: str
    version: str
    aliases: list[str]
    created: pd.Timestamp
    status: str | None
    source: str | None
    run_id: str | None
    tags: dict[str, str]
    metrics: dict[str, float]
    lineage: dict[str, str]


def describe_version(settings: Settings, name: str, version: str) -> VersionDetails:
    """A registered version (a number, or an alias such as ``champion``) with its run's metrics and data lineage.

    The lineage comes from the training run's ``fasttrack.data.*`` tags, or from the model folder's
    ``fasttrack.json`` when the run is gone.
    """
    import pandas as pd
    from mlflow.exceptions import MlflowException

    with registry_errors(f"reading {name} version {version}"):
        mlflow_client = client(settings)
        if version.isdigit():
            mv = mlflow_client.get_model_version(name, version)
        else:
            mv = mlflow_client.get_model_version_by_alias(name, version.removeprefix("@"))
        number = str(mv.version)
        aliases = sorted(a for a, v in mlflow_client.get_registered_model(name).aliases.items() if str(v) == number)
        metrics: dict[str, float] = {}
        lineage: dict[str, str] = {}
        if mv.run_id:
            try:
                run = mlflow_client.get_run(mv.run_id)
            except MlflowException:
                run = None  # deleted run: the model folder still knows its data
            if run is not None:
                metrics = dict(run.data.metrics)
                lineage = {
                    k.removeprefix(TAG_DATA_PREFIX): v
                    for k, v in run.data.tags.items()
                    if k.startswith(TAG_DATA_PREFIX)
                }
        if not lineage:
            from fasttrack.registry.model_folder import read_metadata

            data = read_metadata(resolve_model(f"models:/{name}/{number}", settings).path).data.model_dump()
            lineage = {k: str(v) for k, v in data.items() if v is not None}
        return VersionDetails(
            name=name,
            version=number,
            aliases=aliases,
            created=pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC"),
            status=mv.status,
            source=mv.source,
            run_id=mv.run_id,
            tags=dict(mv.tags),
            metrics=metrics,
            lineage=lineage,
        )


def default_model_uri(settings: Settings) -> str:
    """The model served or used when none is named: ``FASTTRACK_MODEL``, else the default model's champion."""
    return settings.model or f"models:/{settings.model_name}@{CHAMPION}"


def resolve_model(uri: str | None, settings: Settings) -> ResolvedModel:
    """Resolve a model URI (or a local folder) to a local model folder, downloading registered versions once.

    ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME`` (latest version), ``runs:/...`` and any
    other MLflow artifact URI work; a ``@champion`` that is not set falls back to the latest version.

    A local folder, and an explicit version already in the local cache (registered versions are immutable),
    resolve without MLflow: no import (over a second of start-up), no call to the tracking store.
    """
    uri = uri or default_model_uri(settings)
    local = Path(uri)
    if "://" not in uri and local.exists():
        return ResolvedModel(uri=uri, path=local)
    if not uri.startswith("models:/"):
        if "://" not in uri and ":/" not in uri:
            raise ModelNotFoundError(f"model not found: {uri} is neither a folder nor a model URI (models:/NAME@ALIAS)")
        return ResolvedModel(uri=uri, path=_download(uri, settings, key=uri))
    name, version, alias = _parse_models_uri(uri)
    if version:
        cached = _cached(settings, _version_key(settings, name, version))
        if cached is not None:
            return ResolvedModel(uri=uri, path=cached, name=name, version=version)
    with registry_errors(f"resolving {uri}"):
        mlflow_client = client(settings)
        if alias:
            try:
                mv = mlflow_client.get_model_version_by_alias(name, alias)
            except Exception:
                if alias != CHAMPION:
                    raise
                mv = _latest(mlflow_client, name, uri)
        elif version:
            mv = mlflow_client.get_model_version(name, version)
        else:
            mv = _latest(mlflow_client, name, uri)
        path = _download(f"models:/{name}/{mv.version}", settings, key=_version_key(settings, name, str(mv.version)))
    return ResolvedModel(uri=uri, path=path, name=name, version=str(mv.version), alias=alias)


def _latest(mlflow_client: MlflowClient, name: str, uri: str) -> Any:
    versions = mlflow_client.search_model_versions(f"name='{name}'")
    if not versions:
        raise ModelNotFoundError(f"no registered model {name!r} (from {uri}); train one with `fasttrack train`")
    return max(versions, key=lambda v: int(v.version))


def _parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    rest = uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, None, alias
    parts = rest.split("/")
    if len(parts) == 2 and parts[1].isdigit():
        return parts[0], parts[1], None
    if len(parts) == 1 and parts[0]:
        return parts[0], None, None
    raise ModelNotFoundError(f"cannot parse model URI {uri!r}: use models:/NAME@ALIAS or models:/NAME/VERSION")


def _version_key(settings: Settings, name: str, version: str) -> str:
    """The cache key of a registered version: versions are numbered per tracking store."""
    return f"{settings.resolved_tracking_uri()}|{name}|{version}"


def _cache_folder(settings: Settings, key: str) -> Path:
    return settings.home / "models" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _cached(settings: Settings, key: str) -> Path | None:
    """The cached model folder of ``key``, when it was downloaded before (complete: downloads are atomic)."""
    cache = _cache_folder(settings, key)
    return cache if (cache / "MLmodel").is_file() else None


def _download(artifact_uri: str, settings: Settings, *, key: str) -> Path:
    """Download once into the local cache (registered versions are immutable), atomically."""
    cached = _cached(settings, key)
    if cached is not None:
        return cached
    import mlflow

    cache = _cache_folder(settings, key)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with registry_errors(f"downloading {artifact_uri}"):
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache.parent))
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(tmp)))
            if not (local / "MLmodel").is_file():
                raise ModelNotFoundError(f"{artifact_uri} is not a model (no MLmodel file)")
            try:
                local.rename(cache)
            except OSError:
                if not (cache / "MLmodel").is_file():  # another process won the race: use its copy
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return cache
