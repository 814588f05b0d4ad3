"""Configuration: ``Settings`` for running things, ``TrainConfig`` for what a training run does.

``Settings`` come from the environment (prefix ``FASTTRACK_``) and are built by :func:`get_settings`, never at
import time, so tests can build any variant. ``TrainConfig`` comes from a YAML file with command-line flags
overriding it, and is copied into every model's metadata.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from fasttrack.errors import ConfigError

Task = Literal["auto", "classification", "regression"]
ResolvedTask = Literal["classification", "regression"]
ModelKind = Literal["linear", "random_forest", "hist_gradient_boosting", "xgboost"]
#: Inference runtime: ONNX Runtime on the checked model.onnx, the scikit-learn pipeline, or ONNX when it has one.
Engine = Literal["auto", "onnx", "sklearn"]
#: What the server does with a field the model never saw: refuse the request naming it, or ignore it (counted).
ExtraFields = Literal["refuse", "ignore"]
#: The promotion margin that is the challenger's cross-validation spread of the compared metric.
CV_MARGIN: Final = "cv"
#: A promotion margin: a number >= 0, or :data:`CV_MARGIN`.
Margin = float | Literal["cv"]

#: Metrics the training step computes, and whether a larger value is better.
CLASSIFICATION_METRICS: dict[str, bool] = {
    "accuracy": True,
    "balanced_accuracy": True,
    "precision_macro": True,
    "recall_macro": True,
    "f1_macro": True,
    "roc_auc": True,
    "log_loss": False,
}
REGRESSION_METRICS: dict[str, bool] = {"rmse": False, "mae": False, "r2": True, "mape": False}
DEFAULT_PRIMARY_METRIC: dict[ResolvedTask, str] = {"classification": "roc_auc", "regression": "rmse"}
#: Where the inference log can go besides a plain folder (s3a is Hadoop's name for s3, gcs gcsfs's for gs).
_LOG_SCHEMES = frozenset({"file", "s3", "s3a", "gs", "gcs"})


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` means a better model."""
    if metric in CLASSIFICATION_METRICS:
        return CLASSIFICATION_METRICS[metric]
    if metric in REGRESSION_METRICS:
        return REGRESSION_METRICS[metric]
    raise ConfigError(f"unknown metric {metric!r}; known: {', '.join([*CLASSIFICATION_METRICS, *REGRESSION_METRICS])}")


class Settings(BaseSettings):
    """Runtime settings, read from ``FASTTRACK_*`` environment variables (and MLflow's own variables)."""

    model_config = SettingsConfigDict(env_prefix="FASTTRACK_", extra="ignore")

    home: Path = Field(Path(".fasttrack"), description="Folder of the embedded tracking store and artifacts.")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default: MLFLOW_TRACKING_URI, else SQLite under `home`."
    )
    model: str | None = Field(None, description="Model to serve: an MLflow model URI or a local model folder.")
    model_name: str = Field("sample", description="Registered model served when `model` is not set.")
    promotion_margin: Margin = Field(
        CV_MARGIN,
        description="How much better a challenger must surely be to take @champion (`fasttrack models promote`): "
        "the lower bound of the improvement's confidence interval must exceed it. A number >= 0, or `cv` (the "
        "default): the challenger's cross-validation spread (std) of the compared metric, 0 when it has none.",
    )
    promotion_min_rows: int = Field(
        200,
        ge=1,
        description="Fewest comparison rows that neither version trained on for `fasttrack models promote` to "
        "decide; with fewer it refuses (exit 1) and moves nothing.",
    )
    promotion_resamples: int = Field(
        1000, ge=100, description="Paired bootstrap resamples behind the promotion gate's confidence interval."
    )
    promotion_confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="Confidence level of the interval of the challenger's improvement (two-sided; the gate reads "
        "its lower bound).",
    )
    actor: str | None = Field(
        None,
        description="Who moves an alias, as `fasttrack models history` records it (default: the Airflow DAG and run "
        "inside an Airflow task, else the OS user).",
    )
    host: str = Field("127.0.0.1", description="Interface `fasttrack serve` binds (the container sets 0.0.0.0).")
    port: int = Field(8000, ge=1, le=65535, description="Port `fasttrack serve` listens on.")
    workers: int = Field(1, ge=1, description="Server worker processes (metrics are aggregated across them).")
    reload_interval: float = Field(10.0, ge=0, description="Seconds between registry polls; 0 turns polling off.")
    max_batch_rows: int = Field(10_000, ge=1, description="Most rows one request may carry; more is answered 413.")
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest request body in bytes; larger is answered 413."
    )
    extra_fields: ExtraFields = Field(
        "refuse",
        description="Fields the model never saw, in /predict and V2 requests: refuse (422 naming them) or ignore "
        "(counted in fasttrack_ignored_field_total). /invocations always ignores them, as MLflow does; columns of "
        "the training data (identifiers, the target) are always ignored.",
    )
    access_log: bool = Field(False, description="JSON access log line per request (costs throughput).")
    drain_timeout: float = Field(
        30.0, ge=0, description="Seconds a stopping server (SIGTERM) waits for in-flight requests to finish."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Server log level.")
    runtime: Engine = Field(
        "auto",
        # FASTTRACK_ENGINE is the setting's former name, still read: "engine" now says where work runs (local or
        # a Dask cluster, docs/scale.md), "runtime" what predicts.
        validation_alias=AliasChoices("runtime", "FASTTRACK_RUNTIME", "engine", "FASTTRACK_ENGINE"),
        description="Inference runtime: onnx (the model's checked model.onnx, refused if it has none), sklearn, "
        "or auto (onnx when the model has one that agreed with scikit-learn at registration). FASTTRACK_ENGINE, "
        "its former name, is still read.",
    )
    # Live monitoring (serving/drift.py, serving/feedback.py): per model version, per server process.
    drift_window: int = Field(1000, ge=1, description="Recent rows kept per feature to measure drift on.")
    drift_min_rows: int = Field(100, ge=1, description="Rows a feature's window needs before its drift is exported.")
    drift_threshold: float = Field(0.2, gt=0, description="PSI above which a feature counts as drifted (alerts).")
    drift_thresholds: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description='Per-feature PSI thresholds, as JSON: {"feature_1": 0.3} ("__prediction__" for the '
        "predictions); a name the model does not monitor refuses the model at load.",
    )
    feedback_capacity: int = Field(10_000, ge=1, description="Recent predictions kept for /feedback to join.")
    feedback_ttl: float = Field(
        0.0, ge=0, description="Seconds a prediction waits for its label (older ones are expired); 0 = no limit."
    )
    live_window: int = Field(1000, ge=1, description="Last joined labels the live accuracy (or RMSE, MAE) covers.")
    live_min_samples: int = Field(100, ge=1, description="Joined labels needed before live metrics are exported.")
    # The default is fasttrack.monitoring.performance.DEFAULT_MAX_CALIBRATION_ERROR (a test ties them): importing
    # that module here would load numpy into every command's start-up.
    calibration_max_error: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Largest expected calibration error (recorded at training) for which a classifier's accuracy "
        "is estimated from its confidences and exported as fasttrack_estimated_accuracy; a model above it, or "
        "without a recorded calibration, says so and exports no estimate.",
    )
    # The inference log (monitoring/log_writer.py writes it, one writer per server process; docs/inference-log.md).
    inference_log: str | None = Field(
        None,
        description="Where the inference log is: a folder or an s3:// / gs:// prefix (the server writes every "
        "prediction and label there as Parquet; `fasttrack dataset from-log` and `fasttrack report drift` read it). "
        "Off when unset.",
    )
    inference_log_queue_rows: int = Field(
        100_000,
        ge=1,
        description="Rows waiting for the inference log's writer beyond which new rows are dropped and counted "
        "(never waited for).",
    )
    inference_log_rotate_rows: int = Field(
        100_000, ge=1, description="Rows per inference log file (of one model, table and day) before it is written."
    )
    inference_log_rotate_seconds: float = Field(
        60.0,
        gt=0,
        description="Seconds a logged row waits at most before its file is written (what kill -9 can lose; SIGTERM "
        "writes everything).",
    )

    # Access control (serving/auth.py, serving/keys.py; docs/security.md): API keys with scopes, off by default.
    api_keys: str = Field(
        "",
        description="API keys as `ID:SCOPES:SHA256` entries separated by spaces or newlines: the key's name, its "
        "scopes (comma-separated: predict, feedback, admin) and the SHA-256 of the key, never the key itself "
        "(`fasttrack keys new` prints one). Read at start.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="A file of `ID:SCOPES:SHA256` entries, one per line (# comments), besides FASTTRACK_API_KEYS; "
        "re-read within a second when it changes, so keys are added and revoked without a restart.",
    )
    auth: bool = Field(
        False,
        description="Require an API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`) on every route of the "
        "server: 401 without a known key, 403 when its scopes do not cover the route (docs/security.md).",
    )
    auth_open_probes: bool = Field(
        True,
        description="With FASTTRACK_AUTH: /health, /ready, /v2/health/live, /v2/health/ready and /metrics answer "
        "without a key (for probes and Prometheus); false: any known key reads them, whatever its scopes.",
    )

    @field_validator("api_keys")
    @classmethod
    def _key_entries(cls, value: str) -> str:
        from fasttrack.serving.keys import merge, parse_entries

        try:
            merge(parse_entries(value, ""))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("auth")
    @classmethod
    def _keys_when_auth(cls, value: bool, info: ValidationInfo) -> bool:
        # Declared after api_keys and api_keys_file, so both are in info.data (when they were valid).
        given = info.data.get("api_keys", "x").strip() or info.data.get("api_keys_file")  # "x": invalid, said already
        if value and not given:
            raise ValueError(
                "on, but no key is given: set FASTTRACK_API_KEYS or FASTTRACK_API_KEYS_FILE (`fasttrack keys new` "
                "makes a key)"
            )
        return value

    # Overload and feedback bounds (helper C of issue 17: serving/limits.py, serving/feedback.py).
    max_in_flight: int = Field(
        64,
        ge=0,
        description="Most requests served at once per worker process (probes excluded); more wait up to "
        "queue_timeout in a queue of max_queued, else are answered 503 with Retry-After. 0 = no limit.",
    )
    max_queued: int = Field(64, ge=0, description="Most requests waiting for a slot when max_in_flight is reached.")
    queue_timeout: float = Field(
        0.005, ge=0, description="Seconds a request waits for a slot before its 503; 0 = answer 503 at once."
    )
    request_timeout: float = Field(
        30.0,
        ge=0,
        description="Seconds a request may take before it is cancelled and answered 504 (a model call already "
        "running finishes in its thread, its answer dropped); 0 = no limit.",
    )
    retry_after: int = Field(1, ge=1, description="Seconds in the Retry-After header of a 503 for overload.")
    feedback_max_items: int = Field(
        1000, ge=1, description="Most labels one POST /feedback may carry; more is answered 413."
    )
    feedback_client_capacity: int = Field(
        1000,
        ge=1,
        description="Most predictions of one client (API key, else address) waiting for their label: a client's "
        "newer predictions push out only its own older ones, never another client's.",
    )
    feedback_client_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Largest share of the live accuracy window one client's labels may hold: beyond it, a client's "
        "new label replaces its own oldest one, so no one client decides the live metrics.",
    )
    # Safe model loading (issue 17, helper D: registry/pipeline_file.py, registry/manifest.py; docs/security.md).
    allow_pickle: bool = Field(
        False,
        description="Load the pickled scikit-learn pipeline of model folders saved before FastTrack used skops "
        "(unpickling runs code from the file; MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false refuses it regardless). "
        "Off: such a folder serves only through its checked ONNX graph.",
    )
    trusted_types: list[str] = Field(
        default_factory=list,
        description='Types skops may rebuild besides its own and FastTrack\'s, as JSON: ["mypackage.MyTransformer"]. '
        "Never read from the model folder.",
    )

    @field_validator("promotion_margin")
    @classmethod
    def _margin(cls, value: Margin) -> Margin:
        if value != CV_MARGIN and not (isinstance(value, float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"must be a number >= 0 or {CV_MARGIN!r}, got {value!r}")
        return value

    @field_validator("drift_min_rows", "live_min_samples")
    @classmethod
    def _within_window(cls, value: int, info: ValidationInfo) -> int:
        window = "drift_window" if info.field_name == "drift_min_rows" else "live_window"
        size = info.data.get(window)
        if size is not None and value > size:
            raise ValueError(f"must not exceed FASTTRACK_{window.upper()} ({size}), got {value}")
        return value

    @field_validator("inference_log")
    @classmethod
    def _log_location(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # set but empty: off, as when unset
        value = value.strip()
        if "://" in value:
            scheme, rest = value.split("://", 1)
            if scheme.lower() not in _LOG_SCHEMES:
                raise ValueError(f"must be a folder or an s3:// or gs:// prefix, got {value!r}")
            if not rest.strip("/"):
                raise ValueError(f"names no bucket or folder: {value!r}")
        return value

    def resolved_tracking_uri(self) -> str:
        """The tracking URI in force: this setting, else ``MLFLOW_TRACKING_URI``, else the embedded store."""
        if self.tracking_uri:
            return self.tracking_uri
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        return self.embedded_store_uri()

    def embedded_store(self) -> Path:
        """The embedded tracking store's SQLite file (used when no tracking URI is set)."""
        return (self.home / "mlflow.db").resolve()

    def embedded_store_uri(self) -> str:
        """The embedded tracking store's URI."""
        return f"sqlite:///{self.embedded_store()}"

    def artifact_root(self) -> str:
        """Where the embedded store keeps artifacts (used only when FastTrack creates the store)."""
        return (self.home / "artifacts").resolve().as_uri()


def get_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, with explicit overrides on top (``None`` values ignored)."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, prefix="FASTTRACK_")) from None
    except SettingsError as exc:  # a value pydantic-settings cannot even parse, e.g. malformed JSON for a mapping
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"FASTTRACK_{field.group(1).upper()}" if field else "a FASTTRACK_ setting"
        raise ConfigError(
            f"invalid {name}: cannot parse it (a mapping is JSON, e.g. '{{\"feature_1\": 0.3}}')"
        ) from None


class TrainConfig(BaseModel):
    """What one training run does. Loaded from YAML; every field can be overridden on the command line."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(
        None, description="Data source: a path or URL of a CSV, JSON, JSON Lines or Parquet file (or sql + db)."
    )
    sql: str | None = Field(None, description="SQL query whose result is the data (with db, instead of data).")
    db: str | None = Field(None, description="SQLAlchemy URL of the database `sql` runs on (its password is redacted).")
    target: str = Field(description="Name of the column to predict.")
    name: str | None = Field(None, description="Registered model name; default: the data file's stem.")
    task: Task = "auto"
    model: ModelKind = "hist_gradient_boosting"
    params: dict[str, Any] = Field(default_factory=dict, description="Hyperparameters of the estimator.")
    test_size: float = Field(0.2, gt=0, lt=1, description="Share of the rows held out for testing (approximately).")
    split_salt: str = Field(
        "fasttrack",
        min_length=1,
        description="Salt of the content hash that decides each row's part (train or test): the same rows and salt "
        "give the same split in every run; another salt gives another split.",
    )
    cv_folds: int = Field(5, ge=0, description="k of k-fold cross-validation on the training part; 0 = off.")
    seed: int = Field(
        42, description="Random seed of the cross-validation folds and the estimator (split_salt decides the split)."
    )
    primary_metric: str | None = Field(None, description="Default: roc_auc (classification), rmse (regression).")
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Quality gate: metric -> the worst acceptable value on the test part."
    )
    drop_columns: list[str] = Field(default_factory=list)
    keep_columns: list[str] | None = Field(None, description="Use only these feature columns.")
    max_categories: int = Field(50, ge=1, description="Most frequent categories one-hot encoded per feature.")
    min_category_count: int = Field(5, ge=1, description="Rarer categories are grouped with unseen ones.")

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        if value == 1:
            raise ValueError("cv_folds must be 0 (off) or at least 2")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> TrainConfig:
        if self.data and (self.sql or self.db):
            raise ValueError("give either data (a file) or sql and db (a database query), not both")
        if not self.data and not (self.sql and self.db):
            if self.sql or self.db:
                raise ValueError("sql and db go together: the query and the database URL it runs on")
            raise ValueError("no data source: give data (a file or URL), or sql and db")
        return self

    @field_serializer("db", when_used="json")
    def _redacted_db(self, db: str | None) -> str | None:
        # JSON is what leaves the process (run params, model metadata): never with the password.
        from fasttrack.data.sql import redact_url

        return redact_url(db) if db else db

    @property
    def source(self) -> str:
        """The data source for people and lineage: the file or URL, or the database URL without its password."""
        if self.data:
            return self.data
        from fasttrack.data.sql import redact_url

        return redact_url(self.db or "")

    @model_validator(mode="after")
    def _metrics_known(self) -> TrainConfig:
        for metric in [*([self.primary_metric] if self.primary_metric else []), *self.thresholds]:
            if metric not in CLASSIFICATION_METRICS and metric not in REGRESSION_METRICS:
                known = ", ".join([*CLASSIFICATION_METRICS, *REGRESSION_METRICS])
                raise ValueError(f"unknown metric {metric!r}; known: {known}")
        return self

    def resolved_name(self) -> str:
        """The registered model name: ``name`` or the data source's file stem (a SQL source needs ``name``)."""
        if self.name:
            return self.name
        if not self.data:
            raise ConfigError("data from a SQL query needs a model name: give --name (or name: in the config)")
        stem = Path(self.data.split("?")[0].rstrip("/")).name.split(".")[0]
        return stem or "model"

    def primary_metric_for(self, task: ResolvedTask) -> str:
        """The primary metric for a resolved task, checked to belong to it."""
        metric = self.primary_metric or DEFAULT_PRIMARY_METRIC[task]
        allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
        if metric not in allowed:
            raise ConfigError(f"primary metric {metric!r} does not apply to {task}; use one of {', '.join(allowed)}")
        return metric

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> TrainConfig:
        """Read a YAML config (optional) and apply ``overrides`` (see :meth:`merged`; ``None`` ones are ignored)."""
        values: dict[str, Any] = {}
        if path is not None:
            file = Path(path)
            if not file.is_file():
                raise ConfigError(f"config file not found: {file}")
            try:
                loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise ConfigError(f"config file {file} is not valid YAML: {exc}") from None
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"config file {file} must hold a mapping of options")
            values.update(loaded)
        return cls._build(_merge(values, overrides))

    def merged(self, **overrides: Any) -> TrainConfig:
        """This config with ``overrides`` applied; ``None`` overrides are ignored.

        An override replaces the value it names, except that ``params`` and ``thresholds`` are merged key by key,
        and a data source replaces the other kind (``data`` replaces ``sql`` and ``db``, and the reverse).
        """
        return self._build(_merge(self.model_dump(exclude_unset=True), overrides))

    @classmethod
    def _build(cls, values: dict[str, Any]) -> TrainConfig:
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_first_error(exc)) from None


def _merge(values: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with ``overrides`` applied as :meth:`TrainConfig.merged` says."""
    given = {key: value for key, value in overrides.items() if value is not None}
    merged = dict(values)
    if "data" in given:
        merged.pop("sql", None)
        merged.pop("db", None)
    if "sql" in given or "db" in given:
        merged.pop("data", None)
    for key in ("params", "thresholds"):
        if isinstance(merged.get(key), dict) and isinstance(given.get(key), dict):
            given[key] = {**merged[key], **given[key]}
    return {**merged, **given}


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "config"
    if prefix:  # the setting's environment variable, then the key inside it (FASTTRACK_DRIFT_THRESHOLDS.feature_1)
        head, dot, rest = where.partition(".")
        where = prefix + head.upper() + dot + rest
    count = len(exc.errors())
    more = f" (and {count - 1} more)" if count > 1 else ""
    return f"invalid {where}: {err['msg']}{more}"
