"""Training runs in MLflow: every run recorded with its config, metrics, lineage and artifacts, and its model.

Registration is the last step and the only one that makes a model servable: the model is logged, downloaded back
from the store and checked, the manifest of that checked copy (every file's SHA-256,
:mod:`fasttrack.registry.manifest`) stored beside it, and only then registered. A run killed half-way leaves at
most an unregistered logged model, never a registered version that cannot be loaded.

The registry stores models and runs none: what needs a model run -- the ONNX export and its agreement check, a
check that the stored copy predicts -- is computed by the caller (:mod:`fasttrack.training.publish`) and handed to
:func:`log_training` (``onnx``, ``check``). By itself it checks only that the stored copy loads
(:func:`loads_back`).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fasttrack.config import Settings
from fasttrack.registry import manifest
from fasttrack.registry.cache import download_artifacts
from fasttrack.registry.errors import registry_errors
from fasttrack.registry.history import actor
from fasttrack.registry.layout import (
    HOLDOUT_ARTIFACT,
    TAG_ABANDONED,
    TAG_DATA_PREFIX,
    TAG_ONNX,
    TAG_ONNX_REASON,
    TAG_OWNER,
    TRAIN_ROWS_ARTIFACT,
)
from fasttrack.registry.liveness import Owner, is_gone, this_process
from fasttrack.registry.model_folder import (
    DataLineage,
    ModelMetadata,
    OnnxInfo,
    library_versions,
    load_model_folder,
    metadata_for,
    write_extra_files,
)
from fasttrack.registry.pipeline_file import DEFAULT_TRUSTED_TYPES
from fasttrack.registry.store import client, is_embedded
from fasttrack.registry.versions import register_version

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from fasttrack.data.clean import CleanReport
    from fasttrack.training.train import TrainResult

log = logging.getLogger(__name__)

#: A check of a logged model before it is registered: given the model folder as downloaded back from the store,
#: and its metadata; raises (a ``FastTrackError``) when the model must not be registered.
LoadCheck = Callable[[Path, ModelMetadata], None]

# MLflow refuses longer tag values.
_MAX_TAG_CHARS = 5000
_LINEAGE_FIELDS = frozenset({"source", "fingerprint", "rows", "columns"})


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
class OnnxExport:
    """An ONNX export to store with the model: its outcome, and the graph file when it was checked and agreed."""

    info: OnnxInfo
    file: Path | None


def loads_back(folder: Path, metadata: ModelMetadata) -> None:
    """The check made when none is given: the stored copy is a complete model folder whose pipeline loads."""
    _ = load_model_folder(folder).pipeline


def onnx_tags(info: OnnxInfo) -> dict[str, str]:
    """The run tags that record an export: ``fasttrack.onnx`` (its status) and ``fasttrack.onnx.reason``."""
    tags: dict[str, str] = {TAG_ONNX: info.status}
    if info.reason:
        tags[TAG_ONNX_REASON] = info.reason[:_MAX_TAG_CHARS]
    return tags


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
    onnx: OnnxExport | None = None,
    check: LoadCheck = loads_back,
) -> TrackedRun:
    """Record a training run in MLflow and, if its quality gate passed and ``register`` is set, register it.

    The run gets the config as params; test, baseline and cross-validation metrics, and a classifier's expected
    calibration error on the test part (``calibration_error``); the data fingerprint, source, git commit and
    library versions as tags; the evaluation, cleaning report, schema and plots as artifacts; and the model itself
    (an MLflow sklearn model with FastTrack's metadata and schema inside).
    ``lineage`` (e.g. an object's ``etag`` and ``version_id``, a query's ``db`` and ``query``) is added to the
    ``fasttrack.data.*`` tags and the model's ``data`` record; the held-out test part is logged as
    ``reports/holdout.parquet`` so that promotion can score a champion on the same rows, and the rows the model
    trained on as ``reports/train_rows.parquet`` so that comparisons can leave them out.

    ``onnx`` is the ONNX export stored with the model and recorded in its metadata and the run's tags (none
    when not given). ``check`` runs on the stored copy before registration and refuses it by raising (default
    :func:`loads_back`). The model's signature takes its output from ``result.test_predictions``; nothing here
    predicts, though MLflow's ``log_model`` predicts the input example to validate it.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    # The model's requirements are given explicitly: MLflow must not copy this project's uv files into it.
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    config = result.config
    name = config.resolved_name()
    evaluation = result.evaluation
    with registry_errors(f"recording the run of model {name!r}"):
        mlflow_client = client(settings)
        experiment_id = _experiment_id(mlflow_client, name, settings)
        end_abandoned_runs(mlflow_client, experiment_id)
        commit = git_commit()
        owner = this_process()
        with tempfile.TemporaryDirectory(prefix="fasttrack-") as tmp:
            staging = Path(tmp)
            with mlflow.start_run(
                experiment_id=experiment_id,
                run_name=f"{config.model}",
                tags={TAG_OWNER: owner.encode()} if owner is not None else None,
            ) as run:
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
                    **(onnx_tags(onnx.info) if onnx is not None else {}),
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
                    onnx=onnx.info if onnx is not None else None,
                )
                extras = write_extra_files(staging / "extras", metadata, result.schema)
                extras += [onnx.file] if onnx is not None and onnx.file else []
                reports = staging / "reports"
                reports.mkdir()
                (reports / "evaluation.json").write_text(json.dumps(evaluation.to_dict(), indent=2), "utf-8")
                if clean_report is not None:
                    (reports / "clean_report.json").write_text(clean_report.model_dump_json(indent=2), "utf-8")
                _holdout(result).to_parquet(staging / HOLDOUT_ARTIFACT, index=False)
                if result.training_rows is not None:
                    result.training_rows.write(staging / TRAIN_ROWS_ARTIFACT)
                mlflow.log_artifacts(str(reports), artifact_path="reports")
                for plot in plots or []:
                    mlflow.log_artifact(str(plot), artifact_path="plots")
                with warnings.catch_warnings():
                    # MLflow warns about integer columns and input example conversions we already handle.
                    warnings.simplefilter("ignore")
                    signature = infer_signature(result.input_example, _example_output(result))
                    info = mlflow.sklearn.log_model(
                        result.pipeline,
                        name="model",
                        signature=signature,
                        input_example=result.input_example,
                        pip_requirements=_pip_requirements(result.pipeline),
                        extra_files=[str(p) for p in extras],
                        metadata={"fasttrack_format": metadata.format_version},
                        # skops, not pickle: loading it runs no code from the file (registry/pipeline_file.py). MLflow
                        # loads it back with these types to check it saved; FastTrack's loader never reads this
                        # list from the MLmodel file it is written to, but from its settings.
                        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                        skops_trusted_types=list(DEFAULT_TRUSTED_TYPES),
                    )
                if not (register and evaluation.gate.passed):
                    return TrackedRun(run_id=run_id, experiment_id=experiment_id, model_uri=info.model_uri, name=name)
                _check_stored(mlflow_client, info.model_id, info.model_uri, metadata, check)
                primary = evaluation.primary_metric
                registered = register_version(
                    mlflow_client,
                    info.model_uri,
                    name,
                    run_id,
                    primary_metric=primary,
                    value=evaluation.metrics[primary],
                    by=actor(settings),
                )
                return TrackedRun(
                    run_id=run_id,
                    experiment_id=experiment_id,
                    model_uri=info.model_uri,
                    name=name,
                    version=registered.version,
                    aliases=registered.aliases,
                )


def end_abandoned_runs(mlflow_client: MlflowClient, experiment_id: str) -> list[str]:
    """End as ``KILLED`` the runs of ``experiment_id`` still ``RUNNING`` whose process is gone; their ids.

    A training killed with ``kill -9`` (or stopped by a full disk before it could write its end) leaves its run
    ``RUNNING`` for ever: MLflow has no lease on a run, and ``mlflow gc`` only deletes runs already marked deleted.
    Each FastTrack run records its process (``fasttrack.owner``); the next training of the model ends those whose
    process :func:`~fasttrack.registry.liveness.is_gone` says is gone, with ``fasttrack.abandoned`` saying why.
    A run of another machine, container or of a process still running is left alone. Never fails a training: an
    error here is logged and the training goes on.
    """
    ended: list[str] = []
    try:
        running = mlflow_client.search_runs(
            [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=200
        )
        for run in running:
            owner = Owner.decode(run.data.tags.get(TAG_OWNER))
            if owner is None or not is_gone(owner):
                continue
            reason = f"its process (pid {owner.pid} on {owner.host}) ended without finishing the run"
            mlflow_client.set_tag(run.info.run_id, TAG_ABANDONED, reason)
            mlflow_client.set_terminated(run.info.run_id, status="KILLED")
            log.warning("run %s marked KILLED: %s", run.info.run_id, reason)
            ended.append(run.info.run_id)
    except Exception as exc:  # a clean-up: the training itself must not fail because of it
        log.warning("could not look for abandoned runs of experiment %s: %s", experiment_id, exc)
        log.debug("looking for abandoned runs failed", exc_info=True)
    return ended


def _check_stored(
    mlflow_client: MlflowClient, model_id: str, model_uri: str, metadata: ModelMetadata, check: LoadCheck
) -> None:
    """Download the logged model from the store, as a server would get it, write its manifest into that copy, run
    ``check`` on it (loading it checks the manifest too), then store the manifest beside the logged model: it
    records the files that passed the check, as the store holds them."""
    with tempfile.TemporaryDirectory(prefix="fasttrack-check-") as tmp:
        copy = download_artifacts(model_uri, Path(tmp))
        written = manifest.write(copy)
        check(copy, metadata)
        mlflow_client.log_model_artifact(model_id, str(written))


def git_commit() -> str | None:
    """The current git commit, when running inside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _experiment_id(mlflow_client: MlflowClient, name: str, settings: Settings) -> str:
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = settings.artifact_root() if is_embedded(settings.resolved_tracking_uri(), settings) else None
    return str(mlflow_client.create_experiment(name, artifact_location=location))


def _pip_requirements(pipeline: Any) -> list[str]:
    from importlib.metadata import version

    from fasttrack.training.estimators import uses_xgboost

    versions = library_versions()
    names = ["scikit-learn", "numpy", "pandas", "skops"]
    # By type: the pipeline's repr renders every category list of the preprocessing (tens of milliseconds).
    if uses_xgboost(_final_estimator(pipeline)):
        names.append("xgboost-cpu")
    return [f"{n}=={versions[n] if n in versions else version(n)}" for n in names]


def _final_estimator(pipeline: Any) -> Any:
    return pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline


def _example_output(result: TrainResult) -> Any:
    """What the pipeline predicted for the input example (the first held-out rows), for the model's signature:
    taken from the held-out predictions ``train()`` made, ``None`` (a signature of inputs only) without them."""
    if result.test_predictions is None:
        return None
    return result.test_predictions[: len(result.input_example)]


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
    if evaluation.calibration is not None:
        metrics["calibration_error"] = evaluation.calibration.error
    return metrics
