"""The paired bootstrap: each metric from resample counts is the metric of the resampled rows, and the interval
promotes a clearly better model, not one that differs by chance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fasttrack.config import CLASSIFICATION_METRICS, REGRESSION_METRICS
from fasttrack.errors import DataError
from fasttrack.training.compare import Outputs, metric_scorer, paired_bootstrap, resample_counts
from fasttrack.training.evaluate import compute_metrics

BINARY = ["no", "yes"]
THREE = ["Adelie", "Chinstrap", "Gentoo"]


def classifier_outputs(truth: np.ndarray[Any, Any], labels: list[str], noise: float, seed: int) -> Outputs:
    """Probabilities that lean towards the true label by an amount ``noise`` blurs; scores rounded to 0.05 so that
    ties occur, as they do with trees."""
    rng = np.random.default_rng(seed)
    position = {label: i for i, label in enumerate(labels)}
    logits = rng.normal(0, noise, (len(truth), len(labels)))
    logits[np.arange(len(truth)), [position[v] for v in truth]] += 1.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    proba = np.round(proba / 0.05) * 0.05
    proba = np.clip(proba, 0.0, 1.0)
    predicted = np.array(labels, dtype=object)[proba.argmax(axis=1)]
    return Outputs(predicted, proba, labels)


def truth_of(labels: list[str], rows: int, seed: int = 0, weights: list[float] | None = None) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    return np.array(labels, dtype=object)[rng.choice(len(labels), rows, p=weights)]


def regression_case(rows: int = 300, seed: int = 0) -> tuple[np.ndarray[Any, Any], Outputs]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(100.0, 20.0, rows)
    return truth, Outputs(truth + rng.normal(0, 8.0, rows))


CASES = [
    ("binary", "classification", list(CLASSIFICATION_METRICS)),
    ("three classes", "classification", list(CLASSIFICATION_METRICS)),
    ("regression", "regression", list(REGRESSION_METRICS)),
]


def case(name: str) -> tuple[np.ndarray[Any, Any], Outputs]:
    if name == "binary":
        truth = truth_of(BINARY, 300, weights=[0.8, 0.2])
        return truth, classifier_outputs(truth, BINARY, noise=1.2, seed=1)
    if name == "three classes":
        truth = truth_of(THREE, 300)
        outputs = classifier_outputs(truth, THREE, noise=1.5, seed=2)
        # A class the model never predicts: precision's zero_division and the labels of the macro metrics matter.
        never = np.where(outputs.values == "Chinstrap", "Gentoo", outputs.values)
        return truth, Outputs(never, outputs.probabilities, THREE)
    return regression_case()


@pytest.mark.parametrize(("name", "task", "metrics"), CASES)
def test_every_metric_from_counts_is_the_metric_of_the_resampled_rows(name: str, task: Any, metrics: list[str]) -> None:
    truth, outputs = case(name)
    rows = len(truth)
    every = compute_metrics(task, truth, outputs.values, outputs.probabilities, outputs.labels)
    rng = np.random.default_rng(9)
    counts = resample_counts([np.arange(rows)], rows, 3, rng)
    for metric in metrics:
        scorer = metric_scorer(task, metric, truth, outputs)
        assert scorer(np.ones((1, rows)))[0] == pytest.approx(every[metric], rel=1e-9, abs=1e-12), metric
        got = scorer(counts)
        for draw in range(3):
            picked = np.repeat(np.arange(rows), counts[draw].astype(int))
            expected = compute_metrics(
                task,
                truth[picked],
                outputs.values[picked],
                None if outputs.probabilities is None else outputs.probabilities[picked],
                outputs.labels,
            )
            assert got[draw] == pytest.approx(expected[metric], rel=1e-9, abs=1e-12), (metric, draw)


def test_class_resamples_keep_each_class_count() -> None:
    truth = truth_of(BINARY, 500, weights=[0.9, 0.1])
    strata = [np.flatnonzero(truth == label) for label in BINARY]
    counts = resample_counts(strata, len(truth), 50, np.random.default_rng(0))
    assert counts.shape == (50, 500) and (counts.sum(axis=1) == 500).all()
    assert (counts[:, truth == "yes"].sum(axis=1) == (truth == "yes").sum()).all()
    assert (counts.std(axis=0) > 0).mean() > 0.9  # rows are drawn, not fixed


def test_a_clearly_better_model_has_an_interval_above_zero() -> None:
    truth = truth_of(BINARY, 2000, weights=[0.85, 0.15])
    strong = classifier_outputs(truth, BINARY, noise=0.6, seed=1)
    weak = classifier_outputs(truth, BINARY, noise=2.0, seed=2)
    better = paired_bootstrap("classification", "roc_auc", truth, strong, weak, resamples=500)
    assert better.improvement > 0.1 and 0 < better.low < better.improvement < better.high
    assert (better.rows, better.resamples, better.confidence) == (2000, 500, 0.95)
    worse = paired_bootstrap("classification", "roc_auc", truth, weak, strong, resamples=500)
    assert worse.high < 0 and worse.improvement == pytest.approx(-better.improvement)
    # Lower is better for log loss and RMSE: the improvement is still positive for the better model.
    assert paired_bootstrap("classification", "log_loss", truth, strong, weak, resamples=200).low > 0
    target, good = regression_case(1000)
    sloppy = Outputs(good.values + np.random.default_rng(4).normal(0, 10.0, 1000))
    assert paired_bootstrap("regression", "rmse", target, good, sloppy, resamples=200).low > 0


def test_a_difference_by_chance_straddles_zero() -> None:
    truth = truth_of(BINARY, 3000, weights=[0.88, 0.12])
    # Two models of equal skill whose errors differ only by their random draw (a seed).
    first = classifier_outputs(truth, BINARY, noise=1.0, seed=11)
    second = classifier_outputs(truth, BINARY, noise=1.0, seed=12)
    interval = paired_bootstrap("classification", "roc_auc", truth, first, second)
    assert interval.low < 0 < interval.high
    assert interval.improvement != 0  # a bare difference would have picked a winner


def test_identical_predictions_tie_exactly_and_the_interval_is_reproducible() -> None:
    truth = truth_of(THREE, 400)
    outputs = classifier_outputs(truth, THREE, noise=1.0, seed=3)
    same = paired_bootstrap("classification", "f1_macro", truth, outputs, outputs, resamples=100)
    assert (same.improvement, same.low, same.high) == (0.0, 0.0, 0.0)
    other = classifier_outputs(truth, THREE, noise=1.0, seed=4)
    once = paired_bootstrap("classification", "roc_auc", truth, outputs, other, resamples=300)
    assert paired_bootstrap("classification", "roc_auc", truth, outputs, other, resamples=300) == once
    wider = paired_bootstrap("classification", "roc_auc", truth, outputs, other, resamples=300, confidence=0.99)
    assert wider.low <= once.low and wider.high >= once.high


def test_a_metric_that_cannot_be_computed_is_a_data_error() -> None:
    truth = np.array(["no"] * 50, dtype=object)
    outputs = classifier_outputs(truth, BINARY, noise=1.0, seed=0)
    with pytest.raises(DataError, match="single class"):
        paired_bootstrap("classification", "roc_auc", truth, outputs, outputs)
    unknown = truth.copy()
    unknown[0] = "maybe"
    with pytest.raises(DataError, match="unknown to the model"):
        paired_bootstrap("classification", "log_loss", unknown, outputs, outputs)
