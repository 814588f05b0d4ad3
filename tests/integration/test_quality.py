"""Model quality on real public data sets, against published results (quality asserted, never time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fasttrack.config import TrainConfig
from fasttrack.data.describe import infer_schema
from fasttrack.data.ingest import ingest
from fasttrack.training.train import TrainResult, train

pytestmark = [pytest.mark.datasets, pytest.mark.integration]


def train_config(path: Path, **overrides: object) -> TrainResult:
    config = TrainConfig.load(**overrides, data=str(path))
    data = ingest(config.data, target=config.target)
    return train(data.frame, config, infer_schema(data.frame, config.target, config.task))


def test_adult_hist_gbdt_accuracy(datasets_dir: Path) -> None:
    # Published GBDT results on Adult: accuracy 0.87, ROC AUC 0.925 (../shared/datasets/README.md).
    result = train_config(datasets_dir / "adult.csv", target="income", model="hist_gradient_boosting", cv_folds=0)
    metrics = result.evaluation.metrics
    assert metrics["accuracy"] >= 0.86, metrics
    assert metrics["roc_auc"] >= 0.91, metrics
    assert result.labels == ["<=50K", ">50K"]  # the leading spaces of the raw file are gone
    assert result.evaluation.gate.passed


def test_housing_hist_gbdt_r2(datasets_dir: Path) -> None:
    # Hands-On ML's tuned random forest: RMSE 47,730 (about R² 0.83).
    result = train_config(
        datasets_dir / "housing.csv", target="median_house_value", model="hist_gradient_boosting", cv_folds=0
    )
    metrics = result.evaluation.metrics
    assert result.task == "regression"
    assert metrics["r2"] >= 0.80, metrics
    assert metrics["rmse"] < result.evaluation.baseline["rmse"] / 2
