"""Settings from the environment and TrainConfig from YAML with overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from fasttrack.config import TrainConfig, get_settings, higher_is_better
from fasttrack.errors import ConfigError


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTTRACK_PORT", "9001")
    monkeypatch.setenv("FASTTRACK_MODEL", "models:/x@champion")
    settings = get_settings(host="0.0.0.0")
    assert (settings.port, settings.model, settings.host) == (9001, "models:/x@champion", "0.0.0.0")


def test_bad_settings_say_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTTRACK_PORT", "eighty")
    with pytest.raises(ConfigError, match="FASTTRACK_PORT"):
        get_settings()


def test_monitoring_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = get_settings()
    assert (defaults.drift_window, defaults.drift_min_rows, defaults.drift_threshold) == (1000, 100, 0.2)
    assert (defaults.feedback_capacity, defaults.feedback_ttl) == (10_000, 0.0)
    assert (defaults.live_window, defaults.live_min_samples, defaults.drift_thresholds) == (1000, 100, {})
    monkeypatch.setenv("FASTTRACK_DRIFT_THRESHOLDS", '{"feature_1": 0.3, "__prediction__": 0.25}')
    monkeypatch.setenv("FASTTRACK_FEEDBACK_TTL", "3600")
    settings = get_settings()
    assert settings.drift_thresholds == {"feature_1": 0.3, "__prediction__": 0.25}
    assert settings.feedback_ttl == 3600


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FASTTRACK_DRIFT_THRESHOLDS", "feature_1=0.3", "invalid FASTTRACK_DRIFT_THRESHOLDS: cannot parse it"),
        ("FASTTRACK_DRIFT_THRESHOLDS", '{"feature_1": 0}', "invalid FASTTRACK_DRIFT_THRESHOLDS.feature_1:"),
        ("FASTTRACK_DRIFT_MIN_ROWS", "2000", "FASTTRACK_DRIFT_MIN_ROWS: .*must not exceed FASTTRACK_DRIFT_WINDOW"),
        ("FASTTRACK_LIVE_MIN_SAMPLES", "5000", "FASTTRACK_LIVE_MIN_SAMPLES: .*must not exceed FASTTRACK_LIVE_WINDOW"),
        ("FASTTRACK_DRIFT_THRESHOLD", "-1", "FASTTRACK_DRIFT_THRESHOLD"),
        ("FASTTRACK_FEEDBACK_CAPACITY", "0", "FASTTRACK_FEEDBACK_CAPACITY"),
        ("FASTTRACK_INFERENCE_LOG", "http://example.com/log", "FASTTRACK_INFERENCE_LOG: .*a folder or an s3://"),
        ("FASTTRACK_INFERENCE_LOG", "s3://", "FASTTRACK_INFERENCE_LOG: .*names no bucket"),
        ("FASTTRACK_INFERENCE_LOG_QUEUE_ROWS", "0", "FASTTRACK_INFERENCE_LOG_QUEUE_ROWS"),
        ("FASTTRACK_INFERENCE_LOG_ROTATE_ROWS", "many", "FASTTRACK_INFERENCE_LOG_ROTATE_ROWS"),
        ("FASTTRACK_INFERENCE_LOG_ROTATE_SECONDS", "0", "FASTTRACK_INFERENCE_LOG_ROTATE_SECONDS"),
    ],
)
def test_bad_monitoring_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message):
        get_settings()


def test_the_inference_log_is_off_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = get_settings()
    assert defaults.inference_log is None
    assert (defaults.inference_log_queue_rows, defaults.inference_log_rotate_rows) == (100_000, 100_000)
    assert defaults.inference_log_rotate_seconds == 60
    monkeypatch.setenv("FASTTRACK_INFERENCE_LOG", " ")
    assert get_settings().inference_log is None
    monkeypatch.setenv("FASTTRACK_INFERENCE_LOG", "s3://bucket/log/")
    assert get_settings().inference_log == "s3://bucket/log/"


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("FASTTRACK_TRACKING_URI", raising=False)
    settings = get_settings(home=tmp_path)
    assert settings.resolved_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert settings.resolved_tracking_uri() == "http://127.0.0.1:5000"
    assert get_settings(tracking_uri="sqlite:///x.db").resolved_tracking_uri() == "sqlite:///x.db"


def test_settings_make_no_folder(tmp_path: Path) -> None:
    get_settings(home=tmp_path / "home").resolved_tracking_uri()
    assert not (tmp_path / "home").exists()


def test_yaml_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data: d.csv\ntarget: y\nmodel: linear\nthresholds: {accuracy: 0.8}\n", encoding="utf-8")
    config = TrainConfig.load(path, model="xgboost", seed=None)
    assert (config.model, config.seed, config.thresholds) == ("xgboost", 42, {"accuracy": 0.8})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: d.csv\ntarget: y\nmodel: svm\n", "model"),
        ("data: d.csv\ntarget: y\ncv_folds: 1\n", "cv_folds"),
        ("data: d.csv\ntarget: y\nthresholds: {speed: 1}\n", "unknown metric 'speed'"),
        ("data: d.csv\ntarget: y\nsurprise: 1\n", "surprise"),
        ("- a\n- b\n", "mapping"),
        ("data: [\n", "not valid YAML"),
        ("target: y\n", "data"),
    ],
)
def test_bad_configs_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        TrainConfig.load(path)


@pytest.mark.parametrize(
    ("data", "name"),
    [("data/sample/classification.csv", "classification"), ("s3://bucket/x/adult.csv.gz", "adult"), ("t.parquet", "t")],
)
def test_model_name_defaults_to_the_file_stem(data: str, name: str) -> None:
    assert TrainConfig(data=data, target="y").resolved_name() == name


def test_primary_metric_must_fit_the_task() -> None:
    config = TrainConfig(data="d.csv", target="y", primary_metric="rmse")
    assert config.primary_metric_for("regression") == "rmse"
    with pytest.raises(ConfigError, match="does not apply to classification"):
        config.primary_metric_for("classification")
    assert TrainConfig(data="d.csv", target="y").primary_metric_for("classification") == "roc_auc"


def test_metric_directions() -> None:
    assert higher_is_better("accuracy") and not higher_is_better("rmse") and not higher_is_better("log_loss")
    with pytest.raises(ConfigError):
        higher_is_better("speed")


def test_overrides_merge_params_and_thresholds_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "data: d.csv\ntarget: y\nparams: {max_iter: 50, learning_rate: 0.1}\nthresholds: {accuracy: 0.8}\n",
        encoding="utf-8",
    )
    cfg = TrainConfig.load(path, params={"max_iter": 200}, thresholds={"roc_auc": 0.9}, seed=None)
    assert cfg.params == {"max_iter": 200, "learning_rate": 0.1}
    assert cfg.thresholds == {"accuracy": 0.8, "roc_auc": 0.9}
    assert cfg.seed == 42  # a None override leaves the value alone
    assert cfg.merged(params={"learning_rate": 0.5}).params == {"max_iter": 200, "learning_rate": 0.5}


def test_a_source_override_replaces_the_other_kind_of_source(tmp_path: Path) -> None:
    query = TrainConfig(sql="SELECT * FROM t", db="sqlite:///x.db", target="y", name="t")
    to_file = query.merged(data="d.csv")
    assert (to_file.data, to_file.sql, to_file.db) == ("d.csv", None, None)
    back = to_file.merged(sql="SELECT 1", db="sqlite:///y.db")
    assert (back.data, back.sql, back.db) == (None, "SELECT 1", "sqlite:///y.db")
    with pytest.raises(ConfigError, match="sql and db go together"):
        to_file.merged(sql="SELECT 1")
