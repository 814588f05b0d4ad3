"""The public Python API: train, load, predict, evaluate, promote and score from Python, on a real embedded store."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import fasttrack
from fasttrack.api import TrainOutcome
from fasttrack.errors import ConfigError, ModelNotFoundError, SchemaValidationError
from support import REPO, serving_settings

SAMPLE = REPO / "data" / "sample" / "classification.csv"
CONFIG = REPO / "configs" / "sample.yaml"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-home")


@pytest.fixture(scope="module")
def settings(home: Path) -> Any:
    return serving_settings(home)


@pytest.fixture(scope="module")
def trained(settings: Any) -> TrainOutcome:
    steps: list[str] = []
    outcome = fasttrack.train(CONFIG, data=str(SAMPLE), cv_folds=0, settings=settings, on_step=steps.append)
    assert steps[0] == "connecting to the tracking store" and steps[-1] == "recording the run in MLflow"
    return outcome


def test_train_returns_the_metrics_run_and_registered_version(trained: TrainOutcome, settings: Any) -> None:
    assert trained.registered and trained.version == "1" and trained.aliases == ["champion"]
    assert trained.name == "sample" and trained.model_uri == "models:/sample/1"
    assert trained.primary_metric == "roc_auc" and trained.gate.passed
    assert trained.metrics["roc_auc"] > trained.baseline["roc_auc"] == 0.5
    assert trained.cv == {}  # cv_folds=0 overrode the config's 5
    assert trained.tracking_uri == settings.resolved_tracking_uri()
    assert trained.data.schema is not None and trained.data.schema.feature_names == ["feature_1", "feature_2"]
    run = _client(settings).get_run(trained.run_id)
    assert run.data.metrics["test_roc_auc"] == pytest.approx(trained.metrics["roc_auc"])


def test_a_model_below_the_gate_is_logged_not_registered(trained: TrainOutcome, settings: Any) -> None:
    failed = fasttrack.train(
        CONFIG, data=str(SAMPLE), name="strict", cv_folds=0, thresholds={"accuracy": 0.999}, settings=settings
    )
    assert not failed.gate.passed and not failed.registered and failed.version is None
    assert failed.gate.reasons == [f"accuracy {failed.metrics['accuracy']:.3f} is below the required minimum of 0.999"]
    # The config's own threshold was merged with the override, not replaced by it.
    assert failed.result.config.thresholds == {"accuracy": 0.999}
    assert _client(settings).get_run(failed.run_id).info.status == "FINISHED"


def test_load_predicts_frames_records_and_arrow_alike(trained: TrainOutcome, settings: Any) -> None:
    model = fasttrack.load("models:/sample@champion", settings=settings)
    assert (model.name, model.version, model.task) == ("sample", "1", "classification")
    frame = pd.read_csv(SAMPLE).head(50)
    by_frame = model.predict_proba(frame)
    assert np.allclose(by_frame, model.predict_proba(frame.to_dict(orient="records")), atol=1e-6)
    assert np.allclose(by_frame, model.predict_proba(pa.Table.from_pandas(frame)), atol=1e-6)
    assert list(model.predict(frame)) == [model.labels[i] for i in by_frame.argmax(axis=1)]  # type: ignore[index]
    # One record, with a number written as text, as the server takes it.
    assert model.predict({"feature_1": "5.3", "feature_2": 2.1})[0] in ("negative", "positive")


def test_load_by_folder_and_by_runtime(trained: TrainOutcome, settings: Any) -> None:
    onnx = fasttrack.load("models:/sample/1", settings=settings)
    sklearn = fasttrack.load(onnx.folder.path, runtime="sklearn", settings=settings)
    assert (onnx.runtime.name, sklearn.runtime.name) == ("onnx", "sklearn")
    assert sklearn.version is None and sklearn.name == "sample"  # a folder has no registry coordinates
    frame = pd.read_csv(SAMPLE).head(20)
    assert np.allclose(onnx.predict_proba(frame), sklearn.predict_proba(frame), atol=1e-5)


def test_the_former_engine_keyword_still_chooses_the_runtime(trained: TrainOutcome, settings: Any) -> None:
    with pytest.warns(DeprecationWarning, match=r"load\(runtime='sklearn'\)"):
        model = fasttrack.load("models:/sample/1", engine="sklearn", settings=settings)
    assert model.runtime.name == "sklearn"
    with pytest.raises(ConfigError, match="unknown engine 'tensorrt'"):
        fasttrack.load("models:/sample/1", engine="tensorrt", settings=settings)


def test_load_names_what_it_cannot_find(settings: Any) -> None:
    with pytest.raises(ModelNotFoundError, match="nope"):
        fasttrack.load("models:/nope@champion", settings=settings)


def test_predict_refuses_bad_values_naming_the_feature(trained: TrainOutcome, settings: Any) -> None:
    model = fasttrack.load(trained.model_uri, settings=settings)
    with pytest.raises(SchemaValidationError, match="feature_1"):
        model.predict([{"feature_1": "five", "feature_2": 2.1}])
    with pytest.raises(SchemaValidationError, match="unknown field"):
        model.predict([{"feature_1": 1.0, "feature_2": 2.1, "colour": "red"}], extra="refuse")


def test_evaluate_scores_labelled_data_beside_the_registered_metrics(trained: TrainOutcome, settings: Any) -> None:
    with pytest.warns(UserWarning, match=r"(\d+) of the (\d+) rows of .* are rows the model was trained on"):
        scored = fasttrack.evaluate("models:/sample/1", SAMPLE, settings=settings)
    assert (scored.name, scored.version, scored.rows) == ("sample", "1", len(pd.read_csv(SAMPLE).drop_duplicates()))
    assert 0.85 < scored.metrics["roc_auc"] <= 1
    assert scored.at_registration["roc_auc"] == pytest.approx(trained.metrics["roc_auc"])
    # The whole file holds every training row: the warning says how many.
    assert scored.trained_on == trained.result.train_rows and scored.overlap_note is None
    assert scored.warnings == [
        f"{trained.result.train_rows} of the {scored.rows} rows of {SAMPLE} are rows the model was trained on: "
        "its metrics on them overstate how it does on new data"
    ]


def test_evaluate_on_rows_the_model_never_saw_does_not_warn(
    trained: TrainOutcome, settings: Any, tmp_path: Path
) -> None:
    held_out = tmp_path / "held_out.csv"
    trained.result.X_test.assign(label=trained.result.y_test.to_numpy()).to_csv(held_out, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        scored = fasttrack.evaluate("models:/sample/1", held_out, settings=settings)
    assert (scored.trained_on, scored.warnings, scored.rows) == (0, [], trained.result.test_rows)
    assert scored.metrics["roc_auc"] == pytest.approx(trained.metrics["roc_auc"])
    # A model folder used directly still names its run, and the run its training rows.
    folder = fasttrack.load("models:/sample/1", settings=settings).folder.path
    assert fasttrack.evaluate(folder, held_out, settings=settings).trained_on == 0


def test_score_file_writes_every_row(trained: TrainOutcome, settings: Any, tmp_path: Path) -> None:
    output = tmp_path / "scored.parquet"
    summary = fasttrack.score_file(trained.model_uri, SAMPLE, output, probabilities=True, settings=settings)
    scored = pd.read_parquet(output)
    assert summary.rows == len(scored) == len(pd.read_csv(SAMPLE)) and summary.engine == "onnx"
    assert list(scored.columns[-3:]) == ["prediction", "probability_negative", "probability_positive"]
    model = fasttrack.load(trained.model_uri, settings=settings)
    assert np.allclose(scored["probability_positive"], model.predict_proba(pd.read_csv(SAMPLE))[:, 1], atol=1e-5)


def test_score_file_refuses_an_unknown_output_before_any_work(tmp_path: Path, settings: Any) -> None:
    with pytest.raises(ConfigError, match=r"use \.csv, \.parquet"):
        fasttrack.score_file("models:/not-even-looked-up/1", SAMPLE, tmp_path / "out.txt", settings=settings)


def test_promote_compares_a_challenger_with_the_champion(trained: TrainOutcome, settings: Any) -> None:
    challenger = fasttrack.train(CONFIG, data=str(SAMPLE), cv_folds=0, params={"C": 0.05}, settings=settings)
    assert challenger.version == "2" and challenger.aliases == []  # the champion stays until promotion
    result = fasttrack.promote("sample", "2", metric="accuracy", settings=settings)
    assert result.decision in ("promoted", "rejected") and result.champion is not None
    assert result.interval is not None and result.rows == challenger.result.test_rows and result.excluded == 0
    assert result.moved == (result.interval[0] > 0)
    assert fasttrack.promote("sample", "1" if result.moved else "2", force=True, settings=settings).moved


def test_alias_history_and_rollback(trained: TrainOutcome, settings: Any) -> None:
    from fasttrack import api

    other = fasttrack.train(CONFIG, data=str(SAMPLE), cv_folds=0, params={"C": 0.2}, settings=settings).version
    assert other is not None
    start = api.alias_history("sample", alias="champion", settings=settings).holders["champion"]
    assert fasttrack.promote("sample", other, force=True, settings=settings).moved
    last = api.alias_history("sample", alias="champion", settings=settings).events[-1]
    assert (last.before, last.after, last.decision) == (start, other, "forced")
    assert last.comparison is not None and last.comparison.champion == start and last.by

    back = api.rollback("sample", settings=settings)
    assert back is not None and (back.before, back.after, back.decision) == (other, start, "rollback")
    assert api.rollback("sample", to=start, settings=settings) is None
    with pytest.raises(ModelNotFoundError):
        api.alias_history("nothing", settings=settings)


def test_ingest_infers_the_schema_for_a_target() -> None:
    ingested = fasttrack.ingest(SAMPLE, target="label", drop=["feature_2"])
    assert ingested.schema is not None and ingested.schema.feature_names == ["feature_1"]
    assert ingested.schema.dropped_columns == {"feature_2": "requested"}
    assert fasttrack.ingest(SAMPLE).schema is None


def test_ingest_wants_exactly_one_source() -> None:
    with pytest.raises(ConfigError, match="not both"):
        fasttrack.ingest(SAMPLE, sql="SELECT 1", db="sqlite://")
    with pytest.raises(ConfigError, match="no data"):
        fasttrack.ingest()


def test_importing_fasttrack_loads_nothing_heavy() -> None:
    code = (
        "import sys, fasttrack\n"
        "heavy = [m for m in ('pandas', 'numpy', 'sklearn', 'mlflow', 'pyarrow', 'pydantic') if m in sys.modules]\n"
        "assert callable(fasttrack.train) and 'fasttrack.api' in sys.modules\n"
        "print(heavy)"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


def test_the_public_names_are_documented() -> None:
    from fasttrack import api

    assert set(fasttrack.__all__) - {"__version__"} <= set(api.__all__)
    for name in api.__all__:
        doc = getattr(api, name).__doc__ or ""
        assert doc.strip(), name
        if callable(getattr(api, name)) and not isinstance(getattr(api, name), type):
            assert "Raises" in doc, f"{name} does not say what it raises"
    for name in ("ingest", "train", "load", "evaluate", "promote", "score_file"):
        assert "Parameters" in (getattr(api, name).__doc__ or "") and "Returns" in (getattr(api, name).__doc__ or "")


def _client(settings: Any) -> Any:
    from mlflow import MlflowClient

    uri = settings.resolved_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)
