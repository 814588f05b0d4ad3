"""Metrics against hand-computed values, the confusion matrix, the quality gate and the evaluation record."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier

from fasttrack.config import CLASSIFICATION_METRICS, REGRESSION_METRICS
from fasttrack.monitoring.performance import calibration
from fasttrack.training.evaluate import (
    Evaluation,
    GateDecision,
    align_proba,
    compute_metrics,
    confusion,
    evaluate_model,
    quality_gate,
)

Y_TRUE = np.array(["a", "a", "b", "b"], dtype=object)
Y_PRED = np.array(["a", "b", "b", "b"], dtype=object)
P_B = np.array([0.1, 0.6, 0.7, 0.9])
PROBA = np.column_stack([1 - P_B, P_B])


class TestClassificationMetrics:
    def test_hand_computed_binary(self) -> None:
        metrics = compute_metrics("classification", Y_TRUE, Y_PRED, PROBA, ["a", "b"])
        assert set(metrics) == set(CLASSIFICATION_METRICS)
        assert metrics["accuracy"] == pytest.approx(0.75)
        # recall: a 1/2, b 2/2; precision: a 1/1, b 2/3
        assert metrics["balanced_accuracy"] == pytest.approx(0.75)
        assert metrics["recall_macro"] == pytest.approx(0.75)
        assert metrics["precision_macro"] == pytest.approx((1 + 2 / 3) / 2)
        assert metrics["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
        # every "b" scores above every "a"
        assert metrics["roc_auc"] == pytest.approx(1.0)
        # probability of the true label: 0.9, 0.4, 0.7, 0.9
        assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.9])))
        assert all(type(v) is float for v in metrics.values())

    def test_roc_auc_is_for_the_second_label(self) -> None:
        # With labels reversed the positive class is "a", whose probability is column 1.
        metrics = compute_metrics("classification", Y_TRUE, Y_PRED, PROBA[:, ::-1], ["b", "a"])
        assert metrics["roc_auc"] == pytest.approx(1.0)
        # sklearn's log_loss reads columns in sorted label order; unsorted labels must not change the value.
        assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.9])))
        scrambled = compute_metrics("classification", Y_TRUE, Y_PRED, np.column_stack([P_B, 1 - P_B]), ["a", "b"])
        assert scrambled["roc_auc"] == pytest.approx(0.0)

    def test_without_proba_no_probability_metrics(self) -> None:
        metrics = compute_metrics("classification", Y_TRUE, Y_PRED, None, None)
        assert "roc_auc" not in metrics
        assert "log_loss" not in metrics
        assert metrics["accuracy"] == pytest.approx(0.75)

    def test_multiclass_roc_auc_one_vs_rest_and_omitted_when_a_class_is_absent(self) -> None:
        y_true = np.array([0, 1, 2, 0, 1, 2])
        proba = np.array(
            [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]
        )
        metrics = compute_metrics("classification", y_true, proba.argmax(axis=1), proba, [0, 1, 2])
        assert metrics["roc_auc"] == pytest.approx(1.0)
        assert metrics["accuracy"] == pytest.approx(1.0)
        partial = compute_metrics("classification", y_true[:2], np.array([0, 1]), proba[:2], [0, 1, 2])
        assert "roc_auc" not in partial
        assert "log_loss" in partial

    def test_single_class_in_y_true_omits_roc_auc(self) -> None:
        metrics = compute_metrics(
            "classification", ["a", "a"], ["a", "b"], np.array([[0.9, 0.1], [0.4, 0.6]]), ["a", "b"]
        )
        assert "roc_auc" not in metrics
        assert metrics["accuracy"] == pytest.approx(0.5)

    def test_unknown_true_label_skips_probability_metrics(self) -> None:
        metrics = compute_metrics(
            "classification", ["a", "c"], ["a", "b"], np.array([[0.9, 0.1], [0.4, 0.6]]), ["a", "b"]
        )
        assert "log_loss" not in metrics
        assert "roc_auc" not in metrics

    def test_proba_shape_is_checked(self) -> None:
        with pytest.raises(ValueError, match="one column per label"):
            compute_metrics("classification", Y_TRUE, Y_PRED, PROBA, ["a", "b", "c"])


class TestRegressionMetrics:
    def test_hand_computed(self) -> None:
        metrics = compute_metrics("regression", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])
        assert set(metrics) == set(REGRESSION_METRICS)
        assert metrics["rmse"] == pytest.approx(0.5)
        assert metrics["mae"] == pytest.approx(0.25)
        assert metrics["r2"] == pytest.approx(1 - 1 / 5)
        assert metrics["mape"] == pytest.approx(0.25 / 4)

    def test_mape_omitted_when_a_true_value_is_zero(self) -> None:
        metrics = compute_metrics("regression", np.array([0.0, 2.0]), np.array([1.0, 2.0]))
        assert "mape" not in metrics
        assert metrics["mae"] == pytest.approx(0.5)

    def test_lengths_must_match(self) -> None:
        with pytest.raises(ValueError, match="y_pred has 1"):
            compute_metrics("regression", [1.0, 2.0], [1.0])


def test_confusion_rows_are_true_labels() -> None:
    assert confusion(Y_TRUE, Y_PRED, ["a", "b"]) == [[1, 1], [0, 2]]
    assert confusion(Y_TRUE, Y_PRED, ["b", "a"]) == [[2, 0], [1, 1]]
    matrix = confusion(Y_TRUE, Y_PRED, ["a", "b"])
    assert all(type(v) is int for row in matrix for v in row)


def test_align_proba_reorders_and_fills_missing_labels() -> None:
    proba = np.array([[0.2, 0.8], [0.6, 0.4]])
    aligned = align_proba(proba, ["b", "c"], ["a", "b", "c"])
    np.testing.assert_allclose(aligned, [[0.0, 0.2, 0.8], [0.0, 0.6, 0.4]])
    with pytest.raises(ValueError, match="not among the labels"):
        align_proba(proba, ["b", "z"], ["a", "b"])


def test_evaluate_model_aligns_a_model_that_missed_a_class() -> None:
    x = np.zeros((4, 1))
    dummy = DummyClassifier(strategy="prior").fit(x, ["a", "a", "a", "b"])
    metrics = evaluate_model(dummy, x, ["a", "b", "c", "a"], task="classification", labels=["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["roc_auc"] == pytest.approx(0.5)
    assert math.isfinite(metrics["log_loss"])


class TestQualityGate:
    def test_passes_when_better_than_baseline_and_thresholds_met(self) -> None:
        decision = quality_gate(
            {"roc_auc": 0.9, "accuracy": 0.85, "log_loss": 0.3},
            {"roc_auc": 0.5},
            primary_metric="roc_auc",
            thresholds={"accuracy": 0.8, "log_loss": 0.5},
        )
        assert decision == GateDecision(passed=True, reasons=[])

    def test_equal_to_baseline_does_not_beat_it(self) -> None:
        decision = quality_gate({"roc_auc": 0.5}, {"roc_auc": 0.5}, primary_metric="roc_auc", thresholds={})
        assert not decision.passed
        assert decision.reasons == ["roc_auc 0.500 does not beat the baseline's 0.500 (higher is better)"]

    def test_lower_is_better_primary_metric(self) -> None:
        assert quality_gate({"rmse": 1.0}, {"rmse": 2.0}, primary_metric="rmse", thresholds={}).passed
        decision = quality_gate({"rmse": 2.5}, {"rmse": 2.0}, primary_metric="rmse", thresholds={})
        assert decision.reasons == ["rmse 2.500 does not beat the baseline's 2.000 (lower is better)"]

    def test_thresholds_in_both_directions(self) -> None:
        decision = quality_gate(
            {"r2": 0.4, "rmse": 3.0, "mae": 1.0},
            {"rmse": 5.0},
            primary_metric="rmse",
            thresholds={"r2": 0.6, "rmse": 2.0, "mae": 1.0},
        )
        assert not decision.passed
        assert decision.reasons == [
            "r2 0.400 is below the required minimum of 0.600",
            "rmse 3.000 is above the allowed maximum of 2.000",
        ]

    def test_threshold_or_primary_metric_not_computed(self) -> None:
        decision = quality_gate(
            {"accuracy": 0.9}, {"accuracy": 0.5}, primary_metric="roc_auc", thresholds={"mape": 0.1}
        )
        assert not decision.passed
        assert len(decision.reasons) == 2
        assert "roc_auc was not computed for the model" in decision.reasons[0]
        assert "mape" in decision.reasons[1]
        assert "not computed" in decision.reasons[1]

    def test_close_numbers_are_shown_apart(self) -> None:
        decision = quality_gate({"accuracy": 0.80004}, {"accuracy": 0.80011}, primary_metric="accuracy", thresholds={})
        assert decision.reasons == ["accuracy 0.8000 does not beat the baseline's 0.8001 (higher is better)"]


def _evaluation(**overrides: Any) -> Evaluation:
    values: dict[str, Any] = {
        "task": "classification",
        "primary_metric": "roc_auc",
        "metrics": {"roc_auc": 0.9, "accuracy": 0.8},
        "baseline": {"roc_auc": 0.5, "accuracy": 0.6},
        "gate": GateDecision(passed=True, reasons=[]),
        "cv": {"roc_auc": (0.88, 0.02)},
        "cv_folds": 5,
        "labels": [np.int64(0), np.int64(1)],
        "confusion_matrix": [[4, 1], [1, 4]],
        "notes": ["a note"],
    }
    values.update(overrides)
    return Evaluation(**values)


def test_evaluation_to_dict_is_json_ready_and_round_trips() -> None:
    evaluation = _evaluation()
    data = evaluation.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert data["labels"] == [0, 1]
    assert type(data["labels"][0]) is int
    assert data["cv"] == {"roc_auc": {"mean": 0.88, "std": 0.02}}
    assert data["gate"] == {"passed": True, "reasons": []}
    back = Evaluation.from_dict(json.loads(text))
    assert back.to_dict() == data
    assert back.cv == {"roc_auc": (0.88, 0.02)}


def test_a_classifiers_calibration_round_trips_with_its_evaluation() -> None:
    recorded = calibration(np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]), [True, False, True])
    data = _evaluation(calibration=recorded).to_dict()
    assert data["calibration"]["error"] == pytest.approx(recorded.error)
    back = Evaluation.from_dict(json.loads(json.dumps(data, allow_nan=False)))
    assert back.calibration == recorded
    # Evaluations recorded before calibration was (no key) read back without one.
    older = {k: v for k, v in _evaluation().to_dict().items() if k != "calibration"}
    assert Evaluation.from_dict(older).calibration is None


@pytest.mark.parametrize(
    ("truth", "predicted"),
    [
        (["no", "yes", "yes", "no", "yes"], ["no", "no", "yes", "yes", "yes"]),
        ([0, 1, 2, 2, 1, 0, 2], [0, 2, 2, 1, 1, 0, 0]),
        ([True, False, True, True], [True, True, False, True]),
        ([1.0, 2.0, 2.0, 1.0], [2.0, 2.0, 1.0, 1.0]),
        (["a", "b", "c", "a"], ["a", "a", "a", "a"]),  # classes never predicted
        (["a", "a", "a"], ["a", "b", "c"]),  # predicted classes absent from the truth
        (["Adelie", "Gentoo", "Gentoo"], ["Gentoo", "Gentoo", "Gentoo"]),
    ],
)
def test_label_metrics_match_sklearn_on_the_labels_themselves(truth: list[Any], predicted: list[Any]) -> None:
    """compute_metrics scores integer codes of the labels; the numbers are those of the labels, exactly."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_score, recall_score

    y_true, y_pred = np.asarray(truth), np.asarray(predicted)  # each label's own type: what sklearn accepts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about absent classes; compute_metrics silences it
        expected = {
            "accuracy": accuracy_score(y_true, y_pred),
            "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
            "precision_macro": precision_score(y_true, y_pred, average="macro", zero_division=0),
            "recall_macro": recall_score(y_true, y_pred, average="macro", zero_division=0),
            "f1_macro": f1_score(y_true, y_pred, average="macro", zero_division=0),
        }
    assert compute_metrics("classification", y_true, y_pred) == expected
    as_objects = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    assert compute_metrics("classification", *as_objects) == expected
