"""Metrics: one registry per app, children made up front, the inference context manager, the exposition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fasttrack.config import Settings
from fasttrack.serving.metrics import LOG_DROP_REASONS, LOG_TABLES, MAX_LABELS, OTHER_LABEL, ServerMetrics
from fasttrack.serving.predictor import Predictor
from prometheus import METRICS, TARGET_LABELS, series_labels

LABELS = {"model": "m", "version": "3"}


def value(metrics: ServerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_children_exist_from_the_start() -> None:
    metrics = ServerMetrics()
    metrics.for_model("m", "3", classifier=True, labels=["a", "b"], categorical=["colour"], numeric=["x"])
    for outcome in ("success", "invalid", "error"):
        assert value(metrics, "fasttrack_predictions_total", outcome=outcome, **LABELS) == 0
    assert value(metrics, "fasttrack_predicted_label_total", label="a", **LABELS) == 0
    assert value(metrics, "fasttrack_unseen_category_total", feature="colour", **LABELS) == 0
    assert value(metrics, "fasttrack_out_of_range_total", feature="x", **LABELS) == 0
    assert value(metrics, "fasttrack_unseen_category_total", feature="x", **LABELS) is None


def test_inference_records_time_rows_and_outcome() -> None:
    metrics = ServerMetrics()
    bound = metrics.for_model("m", "3", classifier=False)
    with bound.inference(rows=5):
        pass
    with pytest.raises(ValueError), bound.inference(rows=2):
        raise ValueError("model failed")
    bound.invalid()
    assert value(metrics, "fasttrack_predictions_total", outcome="success", **LABELS) == 1
    assert value(metrics, "fasttrack_predictions_total", outcome="error", **LABELS) == 1
    assert value(metrics, "fasttrack_predictions_total", outcome="invalid", **LABELS) == 1
    assert value(metrics, "fasttrack_prediction_rows_total", **LABELS) == 5
    assert value(metrics, "fasttrack_inference_seconds_count", **LABELS) == 1


def test_outputs_count_labels_or_observe_values() -> None:
    metrics = ServerMetrics()
    classifier = metrics.for_model("m", "3", classifier=True, labels=["yes", "no"])
    classifier.outputs(["yes", "yes", "no"])
    classifier.outputs(["yes"])
    assert value(metrics, "fasttrack_predicted_label_total", label="yes", **LABELS) == 3
    assert value(metrics, "fasttrack_predicted_label_total", label="no", **LABELS) == 1
    regressor = metrics.for_model("r", "1", classifier=False)
    regressor.outputs([0.3, 7.0, -2.0])
    assert value(metrics, "fasttrack_prediction_value_count", model="r", version="1") == 3
    assert value(metrics, "fasttrack_prediction_value_bucket", model="r", version="1", le="0.5") == 2


def test_label_cardinality_is_bounded() -> None:
    metrics = ServerMetrics()
    bound = metrics.for_model("m", "3", classifier=True)
    bound.outputs([f"label-{i}" for i in range(MAX_LABELS + 20)])
    assert value(metrics, "fasttrack_predicted_label_total", label=OTHER_LABEL, **LABELS) == 20


def test_model_info_ready_and_training_metrics_follow_the_served_version() -> None:
    metrics = ServerMetrics()
    metrics.not_ready()
    assert value(metrics, "fasttrack_model_ready") == 0
    metrics.serving("m", "1", metrics={"accuracy": 0.9})
    metrics.serving("m", "2", previous=("m", "1"), metrics={"accuracy": 0.95})
    assert value(metrics, "fasttrack_model_ready") == 1
    assert value(metrics, "fasttrack_model_info", model="m", version="1") == 0
    assert value(metrics, "fasttrack_model_info", model="m", version="2") == 1
    assert value(metrics, "fasttrack_model_metric", model="m", version="2", metric="accuracy") == 0.95
    assert value(metrics, "fasttrack_model_metric", model="m", version="1", metric="accuracy") is None
    metrics.reload("m", "2", "success")
    metrics.reload("m", "3", "failure")
    assert value(metrics, "fasttrack_model_reloads_total", model="m", version="3", outcome="failure") == 1


def test_render_is_prometheus_text_with_process_metrics() -> None:
    metrics = ServerMetrics()
    metrics.for_model("m", "3", classifier=False)
    text = metrics.render().decode()
    assert 'fasttrack_predictions_total{model="m",outcome="success",version="3"} 0.0' in text
    assert "process_cpu_seconds_total" in text


def test_apps_do_not_share_registries() -> None:
    first, second = ServerMetrics(), ServerMetrics()
    first.reload("m", "1", "success")
    assert value(second, "fasttrack_model_reloads_total", model="m", version="1", outcome="success") is None


def test_both_reload_outcomes_of_the_served_version_start_at_zero() -> None:
    # A counter first seen at 1 has nothing to increase() from: the reload alert would miss the first failure.
    metrics = ServerMetrics()
    metrics.serving("m", "3")
    for outcome in ("success", "failure"):
        assert value(metrics, "fasttrack_model_reloads_total", outcome=outcome, **LABELS) == 0


def test_live_gauges_follow_the_served_version_only() -> None:
    from fasttrack.serving.feedback import FeedbackWindow

    metrics = ServerMetrics()
    assert value(metrics, "fasttrack_live_samples", **LABELS) is None  # nothing served yet
    window = FeedbackWindow("classification", min_samples=1, metrics_window=10)
    bound = metrics.for_model("m", "3", classifier=True, feedback=window)
    metrics.serving("m", "3", live=bound)
    window.record("a", "yes")
    window.join([("a", "yes")])
    assert value(metrics, "fasttrack_live_samples", **LABELS) == 1
    assert value(metrics, "fasttrack_live_accuracy", **LABELS) == 1.0
    assert value(metrics, "fasttrack_live_rmse", **LABELS) is None
    metrics.serving("m", "4", previous=("m", "3"), live=metrics.for_model("m", "4", classifier=True))
    assert value(metrics, "fasttrack_live_samples", **LABELS) is None
    assert "# TYPE fasttrack_feature_drift gauge" in metrics.render().decode()


def test_the_server_exports_every_series_monitoring_queries_with_its_labels(
    serve_app: Callable[..., Any], settings: Settings, mixed: Predictor, regressor: Predictor
) -> None:
    # prometheus.METRICS is what monitoring/ (alerts, dashboard) queries: a classifier with every feature kind and
    # a regressor, with small windows, export all of it, with exactly those labels (Prometheus adds job, instance);
    # every recorded calibration trusted, so that the classifier exports its estimated accuracy too.
    small = settings.model_copy(
        update={
            "drift_window": 10,
            "drift_min_rows": 1,
            "live_window": 10,
            "live_min_samples": 1,
            "calibration_max_error": 1.0,
        }
    )
    exported: dict[str, set[frozenset[str]]] = {}
    traffic = [(mixed, {"amount": 20.0, "colour": "purple", "member": True}, "yes"), (regressor, {"x": 3.1}, 7.0)]
    for predictor, record, truth in traffic:
        with serve_app(small, predictor) as (client, _):
            prediction_id = client.post("/predict", json=record).headers["X-Prediction-Id"]
            assert client.post("/feedback", json={"id": prediction_id, "label": truth}).status_code == 200
            for family in text_string_to_metric_families(client.get("/metrics").text):
                for sample in family.samples:
                    exported.setdefault(sample.name, set()).add(frozenset(sample.labels))
    for name, metric in METRICS.items():
        series = f"{name}_bucket" if metric.kind == "histogram" else name
        assert series in exported, f"{series} is in prometheus.METRICS but the server does not export it"
        for labels in exported[series]:
            assert labels | set(TARGET_LABELS) == series_labels(series), f"{series}: labels {set(labels)}"


def test_inference_log_series_exist_at_zero_and_name_the_writers_tables_and_reasons() -> None:
    from fasttrack.monitoring.log_layout import TABLES
    from fasttrack.monitoring.log_writer import DROP_REASONS

    assert (LOG_TABLES, LOG_DROP_REASONS) == (TABLES, DROP_REASONS)  # spelled twice, so held equal here
    metrics = ServerMetrics()
    for table in TABLES:
        assert value(metrics, "fasttrack_inference_log_written_rows_total", table=table) == 0
        assert value(metrics, "fasttrack_inference_log_files_total", table=table) == 0
        for reason in DROP_REASONS:
            assert value(metrics, "fasttrack_inference_log_dropped_rows_total", table=table, reason=reason) == 0
    assert value(metrics, "fasttrack_inference_log_queue_rows") == 0
    metrics.inference_log.written("feedback", 3)
    metrics.inference_log.dropped("predictions", "queue_full", 2)
    assert value(metrics, "fasttrack_inference_log_written_rows_total", table="feedback") == 3
    assert value(metrics, "fasttrack_inference_log_dropped_rows_total", table="predictions", reason="queue_full") == 2
