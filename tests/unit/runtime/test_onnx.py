"""The ONNX Runtime runtime: labels in their own type and order, the batch variant, threads, slices, slices on
threads."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest

from fasttrack.export import onnx as export_onnx
from fasttrack.export.check import check_agreement
from fasttrack.features.arrow import ArrowDriver
from fasttrack.features.records import RecordDriver
from fasttrack.runtime.onnx import MISSING_CATEGORY, OnnxRuntime
from fasttrack.runtime.sklearn import SklearnRuntime
from fasttrack.serving.predictor import Predictor
from fasttrack.training import pipeline as pipeline_module
from support import fit, kinds_frame

MIXED = [
    {"amount": 30.0, "colour": "red", "member": True},
    {"amount": 75.5, "colour": "blue", "member": False},
    {"colour": "purple", "member": False},
    {"amount": 50.0, "colour": None, "member": True},
]


def opened(predictor: Predictor, **options: object) -> OnnxRuntime:
    path = predictor.model.onnx_path
    assert path is not None
    metadata = predictor.metadata
    return OnnxRuntime.open(path, predictor.schema, metadata.task, options.pop("labels", metadata.labels), **options)  # type: ignore[arg-type]


def test_labels_come_back_in_their_own_type_and_the_order_asked_for(mixed: Predictor) -> None:
    columns = mixed.validate(MIXED).columns
    runtime = opened(mixed)
    assert runtime.labels == ["no", "yes"]
    forward = runtime.predict(columns, 4, probabilities=True)
    backward = opened(mixed, labels=["yes", "no"]).predict(columns, 4, probabilities=True)
    assert forward.values.tolist() == backward.values.tolist()
    assert all(type(v) is str for v in forward.values.tolist())
    assert forward.probabilities is not None and backward.probabilities is not None
    np.testing.assert_array_equal(forward.probabilities, backward.probabilities[:, ::-1])


@pytest.mark.parametrize("model", ["linear", "hist_gradient_boosting", "xgboost"])
def test_the_graph_takes_codes_and_predicts_as_the_exported_one(model: str) -> None:
    # Two categorical features: each string input feeds its own one-hot encoder, which can take codes instead.
    trained = fit(model, "binary")
    onnx = export_onnx.convert(trained.pipeline, trained.schema, trained.task)
    text = OnnxRuntime.open(onnx, trained.schema, trained.task, trained.labels, categorical_codes=False)
    coded = OnnxRuntime.open(onnx, trained.schema, trained.task, trained.labels)
    assert text.category_codes is None
    assert coded.category_codes is not None and set(coded.category_codes) == {"colour", "size"}
    raw = kinds_frame("binary").drop(columns=["y"]).head(60)
    raw.loc[raw.index[::5], "colour"] = "purple"  # never seen in training
    as_records = RecordDriver(trained.schema).validate(raw.to_dict("records"))
    batch = ArrowDriver(trained.schema, list(raw.columns)).normalize(pa.Table.from_pandas(raw, preserve_index=False))
    expected = text.predict(as_records.columns, 60, probabilities=True)
    for runtime, columns in ((coded, batch.features()), (coded, as_records.columns), (text, batch.features())):
        got = runtime.predict(columns, 60, probabilities=True)
        assert got.values.tolist() == expected.values.tolist()
        assert got.probabilities is not None and expected.probabilities is not None
        np.testing.assert_array_equal(got.probabilities, expected.probabilities)


def test_a_graph_that_cannot_take_codes_takes_text(mixed: Predictor) -> None:
    # One categorical feature: skl2onnx gathers it from the string columns first, so the graph keeps its text.
    assert opened(mixed, categorical_codes=True).category_codes is None


def test_an_absent_feature_is_all_missing(mixed: Predictor) -> None:
    runtime = opened(mixed)
    columns = dict(mixed.validate(MIXED).columns)
    with_missing = mixed.validate([{**r, "amount": None} for r in MIXED]).columns
    del columns["amount"]
    assert runtime.predict(columns, 4).values.tolist() == runtime.predict(with_missing, 4).values.tolist()


def test_slices_give_the_answers_of_one_call() -> None:
    trained = fit("hist_gradient_boosting", "multiclass")
    onnx = export_onnx.convert(trained.pipeline, trained.schema, trained.task)
    runtime = OnnxRuntime.open(onnx, trained.schema, trained.task, trained.labels, categorical_codes=True)
    raw = kinds_frame("multiclass").drop(columns=["y"])
    batch = ArrowDriver(trained.schema, list(raw.columns)).normalize(pa.Table.from_pandas(raw, preserve_index=False))
    whole = runtime.predict(batch.features(), batch.rows, probabilities=True)
    runtime.run_rows = 7
    sliced = runtime.predict(batch.features(), batch.rows, probabilities=True)
    assert sliced.values.tolist() == whole.values.tolist()
    assert sliced.codes is not None and whole.codes is not None
    np.testing.assert_array_equal(sliced.codes, whole.codes)
    assert sliced.probabilities is not None and whole.probabilities is not None
    np.testing.assert_array_equal(sliced.probabilities, whole.probabilities)


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("linear", "binary"),
        ("random_forest", "binary"),
        ("hist_gradient_boosting", "multiclass"),
        ("xgboost", "binary"),
        ("random_forest", "regression"),
        ("xgboost", "regression"),
    ],
)
def test_slices_on_threads_answer_as_one_thread_and_agree_with_sklearn(model: str, task: str) -> None:
    # Batch scoring runs a batch's slices on several threads: every row must come out as in the server's one-thread
    # call (bit for bit, not within a tolerance) and pass the agreement check registration applies to the graph.
    trained = fit(model, task)
    onnx = export_onnx.convert(trained.pipeline, trained.schema, trained.task)
    single = OnnxRuntime.open(onnx, trained.schema, trained.task, trained.labels)
    threaded = OnnxRuntime.open(onnx, trained.schema, trained.task, trained.labels, threads=3)
    assert threaded.threads == 3
    assert threaded.session.get_session_options().intra_op_num_threads == 1
    raw = kinds_frame(task).drop(columns=["y"])
    batch = ArrowDriver(trained.schema, list(raw.columns)).normalize(pa.Table.from_pandas(raw, preserve_index=False))
    classifier = task != "regression"
    expected = single.predict(batch.features(), batch.rows, probabilities=classifier)
    threaded.run_rows = 13  # 31 slices of the 400 rows, on 3 threads
    got = threaded.predict(batch.features(), batch.rows, probabilities=classifier)
    assert got.values.dtype == expected.values.dtype
    np.testing.assert_array_equal(got.values, expected.values)
    if classifier:
        assert got.codes is not None and expected.codes is not None
        np.testing.assert_array_equal(got.codes, expected.codes)
        assert got.probabilities is not None and expected.probabilities is not None
        np.testing.assert_array_equal(got.probabilities, expected.probabilities)
    sklearn = SklearnRuntime(trained.pipeline, trained.schema, trained.task, trained.labels)
    agreement = check_agreement(threaded, sklearn, trained.X_test)
    assert agreement.rows == len(trained.X_test) > 0
    assert agreement.ok, agreement.describe()


def test_threads_are_at_least_one(classifier: Predictor) -> None:
    with pytest.raises(ValueError, match="threads must be at least 1"):
        opened(classifier, threads=0)


def test_sessions_are_single_threaded_quiet_and_shared_by_threads(classifier: Predictor) -> None:
    runtime = opened(classifier)
    options = runtime.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level) == (1, 1, 3)
    records = [{"feature_1": a / 10, "feature_2": 8 - a / 10} for a in range(80)]
    columns = classifier.validate(records).columns
    expected = runtime.predict(columns, 80).values.tolist()
    failures: list[str] = []

    def work() -> None:
        for _ in range(20):
            if runtime.predict(columns, 80).values.tolist() != expected:
                failures.append("different labels")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_the_missing_category_is_the_pipelines() -> None:
    assert MISSING_CATEGORY == pipeline_module.MISSING_CATEGORY
