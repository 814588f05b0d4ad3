"""train_dask(): XGBoost trained by xgboost.dask on a 2-worker LocalCluster, against single-machine training on the
same data, published into a real embedded MLflow store; other models' cross-validation on joblib's Dask backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, get_task_stream

from fasttrack.cluster import dask_client
from fasttrack.config import Settings, TrainConfig, get_settings
from fasttrack.data.clean import clean
from fasttrack.data.describe import infer_schema
from fasttrack.data.schema import Schema
from fasttrack.errors import ClusterError, DataError
from fasttrack.features.frames import prepare_features
from fasttrack.registry.model_folder import load_model_folder
from fasttrack.registry.resolve import ResolvedModel, resolve_model
from fasttrack.runtime.model import Model
from fasttrack.runtime.select import open_runtime
from fasttrack.training import dask_train
from fasttrack.training.dask_train import train_dask
from fasttrack.training.pipeline import MODEL_STEP, NUMERIC_PART, PREPROCESS_STEP, build_pipeline
from fasttrack.training.publish import publish
from fasttrack.training.train import TrainResult, _cross_validate, train

#: How far the distributed model's held-out ROC AUC and accuracy may be from the single-machine model's. Both are
#: fitted on the same rows, with the same preprocessing (checked exactly below) and parameters; they differ only in
#: the histogram bins, which xgboost.dask sketches per worker and merges. 0.01 is about one standard error of the
#: accuracy on this test part (about 3,000 rows: sqrt(0.8 * 0.2 / 3000) = 0.007), so a real fault (rows split
#: differently, labels encoded wrongly, a missing imputation) shows, while the bins' effect (1e-3 here) passes.
METRIC_TOLERANCE = 0.01
PARTITIONS = 12

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """One 2-worker local cluster for the module."""
    with dask_client(workers=2) as started:
        yield started


def raw_frame(rows: int, seed: int = 0, classes: int = 2) -> pd.DataFrame:
    """Generated raw data: numbers with missing values, a boolean, a category with a rare value and missing ones."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, rows).round(1)
    age[rng.random(rows) < 0.1] = np.nan
    income = rng.lognormal(10, 0.5, rows).round(2)
    member = rng.random(rows) < 0.4
    colours = np.array(["red", "green", "blue", "purple"], dtype=object)
    colour = rng.choice(colours, rows, p=[0.4, 0.3, 0.28, 0.02]).astype(object)
    colour[rng.random(rows) < 0.06] = None
    effect = {"red": 1.0, "green": 0.0, "blue": -1.0}
    signal = (
        np.nan_to_num((age - 40) / 12)
        + (np.log(income) - 10) / 0.5
        + 0.8 * member
        + np.array([effect.get(c, 0.0) for c in colour])
        + rng.normal(0, 1.0, rows)
    )
    if classes == 2:
        target: Any = np.where(signal > 0.3, "yes", "no")
    elif classes > 2:
        target = np.searchsorted(np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]), signal)
    else:
        target = 50.0 + 10.0 * signal
    return pd.DataFrame({"age": age, "income": income, "member": member, "colour": colour, "y": target})


def cleaned(rows: int, **kwargs: Any) -> tuple[pd.DataFrame, Schema]:
    """Cleaned data and its schema, as single-machine ingest makes them."""
    frame, _ = clean(raw_frame(rows, **kwargs), "y")
    return frame, infer_schema(frame, "y")


def config(model: str = "xgboost", **overrides: Any) -> TrainConfig:
    params = {"n_estimators": 40, "n_jobs": 1} if model == "xgboost" else {"n_estimators": 20}
    values: dict[str, Any] = {"data": "memory://generated.csv", "target": "y", "name": "generated", "model": model}
    return TrainConfig.model_validate({**values, "params": params, "cv_folds": 0, **overrides})


def on_cluster(frame: pd.DataFrame) -> dd.DataFrame:
    return dd.from_pandas(frame, npartitions=PARTITIONS)


def imputed(result: TrainResult) -> np.ndarray[Any, Any]:
    part = result.pipeline.named_steps[PREPROCESS_STEP].named_transformers_[NUMERIC_PART]
    return np.asarray(part.named_steps["impute"].statistics_)


@pytest.fixture(scope="module")
def binary() -> tuple[pd.DataFrame, Schema]:
    return cleaned(15_000)


@pytest.fixture(scope="module")
def pair(binary: tuple[pd.DataFrame, Schema], client: Client) -> tuple[TrainResult, TrainResult]:
    """The single-machine and the distributed XGBoost results on the same data (the distributed config asks for CV)."""
    frame, schema = binary
    return train(frame, config(), schema), train_dask(on_cluster(frame), config(cv_folds=3), schema, client=client)


def test_distributed_xgboost_is_the_single_machine_model_within_tolerance(
    pair: tuple[TrainResult, TrainResult],
) -> None:
    local, distributed = pair
    # The same split, row for row, and the same record of training rows.
    assert distributed.X_test.equals(local.X_test) and distributed.y_test.equals(local.y_test)
    assert (distributed.train_rows, distributed.test_rows) == (local.train_rows, local.test_rows)
    assert distributed.training_rows is not None and local.training_rows is not None
    assert np.array_equal(distributed.training_rows.hashes, local.training_rows.hashes)
    assert distributed.training_rows.rows == local.training_rows.rows
    # The same preprocessing (exact medians learned out of core), baseline and labels.
    assert np.array_equal(imputed(distributed), imputed(local))
    assert distributed.evaluation.baseline == local.evaluation.baseline
    assert distributed.labels == local.labels == ["no", "yes"]
    # The same pipeline shape and estimator parameters: ONNX export and serving see a single-machine pipeline.
    mine, theirs = distributed.pipeline.named_steps[MODEL_STEP], local.pipeline.named_steps[MODEL_STEP]
    assert type(mine) is type(theirs) and type(mine.estimator_) is type(theirs.estimator_)
    assert list(mine.classes_) == list(theirs.classes_)
    assert repr(mine.estimator_.get_params()) == repr(theirs.estimator_.get_params())
    # Metrics within tolerance, and most rows predicted alike.
    for metric in ("roc_auc", "accuracy"):
        assert abs(distributed.evaluation.metrics[metric] - local.evaluation.metrics[metric]) <= METRIC_TOLERANCE
    assert distributed.test_predictions is not None and local.test_predictions is not None
    assert np.mean(distributed.test_predictions == local.test_predictions) > 0.97
    assert distributed.evaluation.gate.passed
    assert distributed.evaluation.cv == {} and distributed.evaluation.cv_folds == 0
    assert any(note.startswith("cross-validation skipped") for note in distributed.evaluation.notes)


@pytest.mark.parametrize("classes", [0, 3], ids=["regression", "multiclass-int"])
def test_regression_and_integer_multiclass(client: Client, classes: int) -> None:
    frame, schema = cleaned(6_000, seed=1, classes=classes)
    local = train(frame, config(), schema)
    distributed = train_dask(on_cluster(frame), config(), schema, client=client)
    assert distributed.X_test.equals(local.X_test)
    assert np.array_equal(imputed(distributed), imputed(local))
    assert distributed.evaluation.baseline == pytest.approx(local.evaluation.baseline, rel=1e-9)
    metric = "r2" if classes == 0 else "accuracy"
    assert abs(distributed.evaluation.metrics[metric] - local.evaluation.metrics[metric]) <= METRIC_TOLERANCE
    if classes:
        assert distributed.labels == local.labels == [0, 1, 2]
        assert distributed.test_proba is not None and distributed.test_proba.shape == (distributed.test_rows, 3)


def test_a_bounded_held_out_part_is_chosen_by_content(
    binary: tuple[pd.DataFrame, Schema], pair: tuple[TrainResult, TrainResult], client: Client
) -> None:
    frame, schema = binary
    local, _ = pair
    bounded = train_dask(on_cluster(frame), config(), schema, client=client, max_test_rows=1_000)
    # About a third of the held-out rows (a binomial draw around 1,000), all of them held-out rows.
    assert 850 <= bounded.test_rows <= 1_150
    assert bounded.X_test.merge(local.X_test, how="left", indicator=True)["_merge"].eq("both").all()
    assert any(note.startswith("evaluated on about 1000 of the") for note in bounded.evaluation.notes)


def test_medians_are_exact_through_every_counting_pass(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # Gathering at most 3 values forces the selection through its counting passes, down to the last bits.
    monkeypatch.setattr(dask_train, "GATHER_VALUES", 3)
    rng = np.random.default_rng(5)
    rows = 4_001
    frame = pd.DataFrame(
        {
            "wide": rng.standard_cauchy(rows) * 1e6,  # both signs, huge and tiny values
            "ties": rng.integers(-2, 3, rows).astype(np.float64),  # many equal values, zeros, even split possible
            "zero": np.where(rng.random(rows) < 0.5, -0.0, 0.0),
            "empty": np.full(rows, np.nan),
            "y": rng.normal(size=rows),
        }
    )
    frame.loc[rng.random(rows) < 0.2, "wide"] = np.nan
    schema = infer_schema(frame, "y")
    split = dask_train._Split(schema, 0.2, "salt")
    numeric = ("wide", "ties", "zero", "empty")
    survey = dask_train._survey(on_cluster(frame), split, numeric, client)
    middle = dask_train._middle_values(on_cluster(frame), split, survey, numeric, client)
    pipeline = build_pipeline(schema, "xgboost", task="regression")
    preprocess = dask_train._fitted_preprocess(pipeline, schema, middle)

    x = prepare_features(frame, schema)
    hashes = dask_train.row_hashes(x.assign(y=frame["y"]), schema)
    training = x.loc[dask_train.split_fraction(hashes, "salt") >= 0.2]
    expected = pipeline.named_steps[PREPROCESS_STEP].fit(training)
    assert np.array_equal(
        preprocess.named_transformers_[NUMERIC_PART].named_steps["impute"].statistics_,
        expected.named_transformers_[NUMERIC_PART].named_steps["impute"].statistics_,
    )
    assert np.array_equal(preprocess.transform(x.head(200)), expected.transform(x.head(200)))


def test_an_empty_test_part_takes_the_row_nearest_the_threshold(client: Client) -> None:
    frame, schema = cleaned(12, seed=3)
    settings = {"test_size": 0.001}
    local = train(frame, config(**settings), schema)
    distributed = train_dask(dd.from_pandas(frame, npartitions=3), config(**settings), schema, client=client)
    assert local.test_rows == 1 and distributed.X_test.equals(local.X_test)
    assert distributed.evaluation.notes[0] == local.evaluation.notes[0]
    assert distributed.evaluation.notes[0].startswith("no row fell in the test part")


def test_bad_data_is_one_data_error(binary: tuple[pd.DataFrame, Schema], client: Client) -> None:
    frame, schema = binary
    with pytest.raises(DataError, match="only 3 rows"):
        train_dask(dd.from_pandas(frame.head(3), npartitions=2), config(), schema, client=client)
    strange = frame.head(400).assign(y=lambda f: f["y"].where(f.index != 7, "maybe"))
    with pytest.raises(DataError, match="labels the schema does not list: 'maybe'"):
        train_dask(on_cluster(strange), config(), schema, client=client)
    with pytest.raises(DataError, match="target column 'y' is not in the data"):
        train_dask(on_cluster(frame.drop(columns="y")), config(), schema, client=client)


def test_the_distributed_model_publishes_and_serves_through_onnx(
    pair: tuple[TrainResult, TrainResult],
    binary: tuple[pd.DataFrame, Schema],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "FASTTRACK_TRACKING_URI", "FASTTRACK_MODEL"):
        monkeypatch.delenv(var, raising=False)
    settings: Settings = get_settings(home=tmp_path / "home")
    _, distributed = pair
    run = publish(distributed, settings=settings, source="memory://generated.csv", fingerprint="d" * 64)
    assert run.registered

    resolved = resolve_model("models:/generated/1", settings)
    loaded = load_model_folder(resolved.path)
    assert loaded.onnx_path is not None
    info = loaded.metadata.onnx
    assert info is not None and (info.status, info.mismatches, info.rows_checked) == ("ok", 0, distributed.test_rows)
    served = Model(loaded, open_runtime(loaded), ResolvedModel("models:/generated/1", resolved.path, "generated", "1"))
    assert served.runtime.name == "onnx"
    raw = binary[0].drop(columns="y").head(300)
    expected = distributed.pipeline.predict(prepare_features(raw, loaded.schema))
    assert served.predict(raw).tolist() == expected.tolist()


def test_other_models_cross_validate_on_the_cluster_with_the_sequential_results(
    binary: tuple[pd.DataFrame, Schema], client: Client
) -> None:
    frame, schema = binary
    frame = frame.head(3_000)
    cfg = config("random_forest", cv_folds=3)
    local = train(frame, cfg, schema)
    with get_task_stream(client) as stream:
        distributed = train_dask(on_cluster(frame), cfg, schema, client=client)
    folds = [task for task in stream.data if "_score_fold" in str(task.get("key"))]
    assert len(folds) >= 1  # the folds ran as tasks on the workers
    assert distributed.evaluation.cv_folds == local.evaluation.cv_folds == 3
    # The same folds and fits; a worker runs one thread where this process runs two, and the forest sums its trees'
    # probabilities in thread order, so a fold's log loss may differ in the last bits (seen: 2e-17), never more.
    assert distributed.evaluation.cv.keys() == local.evaluation.cv.keys()
    for metric, (mean, std) in local.evaluation.cv.items():
        assert distributed.evaluation.cv[metric] == (pytest.approx(mean, rel=1e-9), pytest.approx(std, rel=1e-9))
    assert distributed.evaluation.metrics == local.evaluation.metrics


def test_cross_validate_gives_the_same_folds_in_order_either_way(
    binary: tuple[pd.DataFrame, Schema], client: Client
) -> None:
    frame, schema = binary
    x = prepare_features(frame.head(2_000), schema)
    y = frame["y"].head(2_000).astype(object)
    pipeline = build_pipeline(schema, "hist_gradient_boosting", task="classification", params={"max_iter": 20})
    arguments: dict[str, Any] = {
        "task": "classification",
        "labels": ["no", "yes"],
        "folds": 4,
        "seed": 3,
        "report": lambda _: None,
    }
    sequential = _cross_validate(pipeline, x, y, notes=[], **arguments)
    on_the_cluster = _cross_validate(pipeline, x, y, notes=[], client=client, **arguments)
    assert on_the_cluster == sequential and sequential[1] == 4


def test_a_column_of_few_distinct_values_needs_no_pass_after_the_split(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each counted digit carries its smallest and largest value: a digit holding one value settles its search.
    monkeypatch.setattr(dask_train, "GATHER_VALUES", 3)
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"flag": rng.random(3_000) < 0.7, "count": rng.integers(0, 4, 3_000), "y": rng.random(3_000)})
    schema = infer_schema(frame, "y")
    split = dask_train._Split(schema, 0.2, "salt")
    numeric = ("flag", "count")
    survey = dask_train._survey(on_cluster(frame), split, numeric, client)
    passes: list[object] = []
    monkeypatch.setattr(dask_train, "_each_partition", lambda *args: passes.append(args) or [])
    middle = dask_train._middle_values(on_cluster(frame), split, survey, numeric, client)
    assert passes == []
    training = prepare_features(frame, schema).loc[
        dask_train.split_fraction(dask_train.row_hashes(frame, schema), "salt") >= 0.2
    ]
    ranks = sorted({(len(training) - 1) // 2, len(training) // 2})
    assert middle == {name: np.sort(training[name].to_numpy())[ranks].tolist() for name in numeric}


def test_a_failed_distributed_fit_is_one_cluster_error_line(
    binary: tuple[pd.DataFrame, Schema], client: Client
) -> None:
    frame, schema = binary
    bad = config(params={"n_estimators": 5, "max_depth": -3})
    with pytest.raises(ClusterError, match="value -3 for Parameter max_depth should be greater equal to 0") as error:
        train_dask(on_cluster(frame.head(2_000)), bad, schema, client=client)
    assert "\n" not in str(error.value) and "Stack trace" not in str(error.value)


@pytest.mark.parametrize("model", ["xgboost", "linear"])
def test_the_python_api_trains_files_on_the_cluster_and_registers(client: Client, tmp_path: Path, model: str) -> None:
    import fasttrack

    raw = raw_frame(6000, seed=3)
    folder = tmp_path / "data"
    folder.mkdir()
    for number in range(4):
        raw.iloc[number * 1500 : (number + 1) * 1500].to_csv(folder / f"part-{number}.csv", index=False)
    settings = get_settings(home=tmp_path / "home")
    params = {"n_estimators": 30} if model == "xgboost" else {}
    outcome = fasttrack.train(
        data=str(folder / "part-*.csv"),
        target="y",
        name="files",
        model=model,
        params=params,
        cv_folds=2,
        engine="dask",
        scheduler=client,
        settings=settings,
    )
    assert outcome.registered and outcome.version == "1"
    # The same cleaning and schema as one machine on the same rows.
    whole = tmp_path / "whole.csv"
    raw.to_csv(whole, index=False)
    local = fasttrack.ingest(whole, target="y")
    assert outcome.data.fingerprint == local.fingerprint and outcome.data.report == local.report
    notes = outcome.result.evaluation.notes
    if model == "xgboost":  # trained by xgboost.dask: no CV, and a note says why
        assert outcome.cv == {} and any("cross-validation" in note for note in notes)
    else:  # fitted here, its two folds on the cluster
        assert set(outcome.cv) >= {"roc_auc", "accuracy"}
    served = fasttrack.load("models:/files/1", settings=settings)
    assert served.runtime.name == "onnx"
    frame = local.frame.drop(columns=["y"]).head(200)
    np.testing.assert_allclose(served.predict_proba(frame), outcome.result.pipeline.predict_proba(frame), atol=1e-5)
    assert client.status == "running"
