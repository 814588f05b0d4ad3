"""The model folder: an MLflow model directory that also describes itself to FastTrack.

A registered FastTrack model is a standard MLflow model (``MLmodel``, the scikit-learn pipeline saved with skops,
requirements, signature and input example), so ``mlflow.pyfunc`` and ``models:/`` URIs work on it, plus two files
under ``extra_files/``: ``fasttrack.json`` (:class:`ModelMetadata`: task, labels, metrics, config, data lineage,
library versions) and ``schema.json`` (the training :class:`~fasttrack.data.schema.Schema`), the checked
``model.onnx`` when the export agreed, and at the top the manifest of every file's SHA-256
(:mod:`fasttrack.registry.manifest`), written at registration.

:func:`load_model_folder` loads such a folder without importing MLflow (which costs over a second at start-up),
refuses one whose files differ from its manifest or whose scikit-learn version differs from the running one, and
reads the pipeline only when it is used, under the settings' policy (:mod:`fasttrack.registry.pipeline_file`:
skops with trusted types from the settings; pickle only when allowed).
"""

from __future__ import annotations

import json
import logging
import platform
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from fasttrack.config import ModelKind, ResolvedTask, Settings, get_settings
from fasttrack.data.schema import Label, Schema
from fasttrack.errors import ModelLoadError
from fasttrack.monitoring.performance import Calibration
from fasttrack.registry import manifest
from fasttrack.registry.pipeline_file import DEFAULT_TRUSTED_TYPES, SKOPS, LoadPolicy, load_pipeline

if TYPE_CHECKING:
    from fasttrack.training.train import TrainResult

log = logging.getLogger(__name__)

METADATA_FILE = "fasttrack.json"
SCHEMA_FILE = "schema.json"
ONNX_FILE = "model.onnx"
EXTRA_DIR = "extra_files"
FORMAT_VERSION = 1

#: Libraries whose versions are recorded with a model; those in ``_MUST_MATCH`` are checked on load.
TRACKED_LIBRARIES = ("scikit-learn", "numpy", "pandas", "xgboost-cpu", "mlflow", "fasttrack")
_MUST_MATCH = ("scikit-learn",)


class DataLineage(BaseModel):
    """Where the training data came from and what it was."""

    model_config = ConfigDict(extra="allow")
    source: str
    fingerprint: str
    rows: int
    columns: int


class OnnxInfo(BaseModel):
    """The outcome of exporting the model to ONNX at registration (see :mod:`fasttrack.export.check`).

    ``status`` is ``ok`` when ``extra_files/model.onnx`` exists and agreed with scikit-learn on the held-out
    rows; ``failed`` (conversion raised) and ``disagrees`` (predictions differ) mean the scikit-learn model is
    served, and ``reason`` says why.
    """

    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "failed", "disagrees"]
    reason: str | None = None
    rows_checked: int = 0
    mismatches: int = 0
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    tolerance: str | None = None
    seconds: float = 0.0
    libraries: dict[str, str] = Field(default_factory=dict)


class ModelMetadata(BaseModel):
    """Everything FastTrack records about a model, stored as ``fasttrack.json`` in the model folder."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = FORMAT_VERSION
    name: str
    task: ResolvedTask
    target: str
    model: ModelKind
    features: list[str]
    labels: list[Label] | None = None
    primary_metric: str
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    cv: dict[str, tuple[float, float]] = Field(default_factory=dict)
    config: dict[str, Any]
    data: DataLineage
    trained_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    run_id: str | None = None
    git_commit: str | None = None
    python: str = Field(default_factory=platform.python_version)
    libraries: dict[str, str] = Field(default_factory=dict)
    input_example: list[dict[str, Any]] = Field(default_factory=list)
    onnx: OnnxInfo | None = None
    calibration: Calibration | None = Field(
        None, description="Classifiers: reliability curve and ECE on the held-out rows (None: not measured)."
    )


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a model depends on (those installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for name in TRACKED_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def metadata_for(
    result: TrainResult,
    *,
    name: str,
    data: DataLineage,
    run_id: str | None = None,
    git_commit: str | None = None,
    onnx: OnnxInfo | None = None,
) -> ModelMetadata:
    """The metadata of the model ``result`` trained: the one place a :class:`ModelMetadata` is built from it."""
    evaluation = result.evaluation
    return ModelMetadata(
        name=name,
        task=result.task,
        target=result.schema.target.name,
        model=result.config.model,
        features=result.schema.feature_names,
        labels=result.labels,
        primary_metric=evaluation.primary_metric,
        metrics=evaluation.metrics,
        baseline_metrics=evaluation.baseline,
        cv=evaluation.cv,
        config=result.config.model_dump(mode="json"),
        data=data,
        run_id=run_id,
        git_commit=git_commit,
        libraries=library_versions(),
        input_example=json.loads(result.input_example.to_json(orient="records")),  # NaN becomes null
        onnx=onnx,
        calibration=evaluation.calibration,
    )


def save_model_folder(
    result: TrainResult, folder: Path, metadata: ModelMetadata, *, extra_files: list[Path] | None = None
) -> Path:
    """Write ``result`` as a model folder without a tracking store: what the registry logs, as a local folder.

    For model folders served or scored directly (``--model PATH``), tests and benchmarks; ``extra_files`` (such
    as an exported ``model.onnx``) go beside ``fasttrack.json`` and ``schema.json``. The pipeline is saved with
    skops and the folder gets its manifest, as a registered version does.
    """
    import tempfile

    import mlflow.sklearn

    with tempfile.TemporaryDirectory(prefix="fasttrack-folder-") as staging:
        extras = [*write_extra_files(Path(staging), metadata, result.schema), *(extra_files or [])]
        mlflow.sklearn.save_model(
            result.pipeline,
            str(folder),
            extra_files=[str(p) for p in extras],
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=list(DEFAULT_TRUSTED_TYPES),
            pip_requirements=[f"scikit-learn=={library_versions()['scikit-learn']}"],
        )
    manifest.write(folder)
    return folder


def write_extra_files(folder: Path, metadata: ModelMetadata, schema: Schema) -> list[Path]:
    """Write ``fasttrack.json`` and ``schema.json`` into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / METADATA_FILE
    meta_path.write_text(metadata.model_dump_json(indent=2), encoding="utf-8")
    schema_path = folder / SCHEMA_FILE
    schema.save(schema_path)
    return [meta_path, schema_path]


class LoadedModel:
    """A model folder in memory: the fitted pipeline with its schema and metadata.

    ``pipeline`` is the fitted pipeline, or the file it is read from: :func:`load_model_folder` defers reading
    it to the first use of :attr:`pipeline`, because a model served or scored through ONNX Runtime never needs
    it (and so never runs a pickle), and reading it imports scikit-learn and SciPy (over a second of a server's
    start-up).
    """

    def __init__(self, path: Path, pipeline: Any, schema: Schema, metadata: ModelMetadata) -> None:
        self.path = path
        self.schema = schema
        self.metadata = metadata
        self._pipeline: Any = None if isinstance(pipeline, _Deferred) else pipeline
        self._deferred = pipeline if isinstance(pipeline, _Deferred) else None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LoadedModel(path={str(self.path)!r}, name={self.metadata.name!r})"

    @property
    def pipeline(self) -> Any:
        """The fitted scikit-learn pipeline (read on first use; ``ModelLoadError`` if it cannot or may not be)."""
        if self._pipeline is None and self._deferred is not None:
            with self._lock:
                if self._pipeline is None:
                    self._pipeline = self._deferred.load()
        return self._pipeline

    @property
    def is_classifier(self) -> bool:
        """Whether the model predicts labels (and class probabilities)."""
        return self.metadata.task == "classification"

    @property
    def onnx_path(self) -> Path | None:
        """``extra_files/model.onnx`` when the model was exported and agreed with scikit-learn, else ``None``."""
        if self.metadata.onnx is None or self.metadata.onnx.status != "ok":
            return None
        path = self.path / EXTRA_DIR / ONNX_FILE
        return path if path.is_file() else None


def find_extra(folder: Path, name: str) -> Path:
    """Path of one of FastTrack's files in a model folder (``extra_files/NAME``, or ``NAME`` at the top)."""
    for candidate in (folder / EXTRA_DIR / name, folder / name):
        if candidate.is_file():
            return candidate
    raise ModelLoadError(f"{folder} is not a FastTrack model folder: {name} is missing")


def load_model_folder(path: str | Path, settings: Settings | None = None) -> LoadedModel:
    """Load a local model folder, checking its files against its manifest, that it is complete and that it was
    made with this scikit-learn version.

    ``settings`` (default: the environment's) say how its pipeline may be read when it is used
    (:class:`~fasttrack.registry.pipeline_file.LoadPolicy`). A folder without a manifest (registered before
    FastTrack wrote them) loads with a warning; one whose files differ from it is refused
    (:class:`~fasttrack.registry.manifest.IntegrityError`, naming the file).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelLoadError(f"model folder not found: {folder}")
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        raise ModelLoadError(f"{folder} is not an MLflow model folder: MLmodel is missing")
    if not manifest.verify(folder):
        log.warning(
            "%s has no %s (saved before FastTrack wrote them): its files are not checked",
            folder,
            manifest.MANIFEST_FILE,
        )
    policy = LoadPolicy.from_settings(settings if settings is not None else get_settings())
    try:
        metadata = ModelMetadata.model_validate_json(find_extra(folder, METADATA_FILE).read_text(encoding="utf-8"))
        schema = Schema.load(find_extra(folder, SCHEMA_FILE))
    except (ValueError, OSError) as exc:
        raise ModelLoadError(f"{folder}: unreadable model metadata ({exc})") from None
    _check_versions(metadata)
    deferred = _Deferred(*_pipeline_file(folder, mlmodel), policy)
    return LoadedModel(path=folder, pipeline=deferred, schema=schema, metadata=metadata)


@dataclass(frozen=True)
class _Deferred:
    """The pipeline file of a model folder (checked to exist), not read yet, and how it may be read."""

    model_file: Path
    serialization_format: str
    policy: LoadPolicy

    def load(self) -> Any:
        return load_pipeline(self.model_file, self.serialization_format, self.policy)


def _check_versions(metadata: ModelMetadata) -> None:
    installed = library_versions()
    for name in _MUST_MATCH:
        recorded = metadata.libraries.get(name)
        if recorded and installed.get(name) and recorded != installed[name]:
            raise ModelLoadError(
                f"model was trained with {name} {recorded} but {installed[name]} is installed; "
                f"retrain it or install {name}=={recorded}"
            )
    for name, recorded in metadata.libraries.items():
        if name not in _MUST_MATCH and installed.get(name) not in (None, recorded):
            log.info("model was trained with %s %s; %s is installed", name, recorded, installed[name])


def _pipeline_file(folder: Path, mlmodel: Path) -> tuple[Path, str]:
    """The pipeline's file named by ``MLmodel`` (checked to exist; not read) and its serialization format."""
    try:
        spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
        flavor = spec["flavors"]["sklearn"]
        model_file: Path = folder / str(flavor["pickled_model"])
        fmt = flavor.get("serialization_format", "cloudpickle")
    except (KeyError, TypeError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"{mlmodel}: not a scikit-learn MLflow model ({exc})") from None
    if fmt not in ("cloudpickle", "pickle", SKOPS):
        raise ModelLoadError(f"{mlmodel}: unsupported serialization format {fmt!r}")
    if not model_file.is_file():
        raise ModelLoadError(f"{model_file}: cannot load the model: the file is missing")
    return model_file, str(fmt)


def read_metadata(folder: str | Path) -> ModelMetadata:
    """Read only ``fasttrack.json`` from a model folder (cheap: no pipeline is read, no manifest checked)."""
    return ModelMetadata.model_validate(json.loads(find_extra(Path(folder), METADATA_FILE).read_text("utf-8")))
